/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_lb_source.h - Konvey's full-NAT source addresses (kv_config.snat_ips).
 * A new flow's source is chosen by a hash of its original tuple, skipping
 * the addresses whose port space towards the chosen backend was found full
 * (kw_noport): the flow takes the next one. Each address brings its own
 * port range, so k addresses give a backend k times the concurrent flows.
 */
#ifndef KW_LB_SOURCE_H
#define KW_LB_SOURCE_H

#include "kw_konvey_maps.h"
#include "kw_nat.h"

_Static_assert((KV_MAX_SOURCE_IPS & (KV_MAX_SOURCE_IPS - 1)) == 0,
	       "KV_MAX_SOURCE_IPS must be a power of two (kv_source_of masks with it)");

/* Is addr one of the balancer's own source addresses? */
static __always_inline int kv_is_source(const struct kv_config *cfg, __be32 addr)
{
	__u32 count = cfg->snat_count;

	for (__u32 i = 0; i < KV_MAX_SOURCE_IPS; i++) {
		if (i >= count)
			break;
		if (cfg->snat_ips[i] == addr)
			return 1;
	}
	return 0;
}

/*
 * The source address of a new flow p to backend (bend, bport): the one its
 * hash points at, else the next whose port space towards the backend is not
 * marked full; when all are, the hashed one (whose reservation then fails
 * at the cost of the kw_noport lookup). 0 when none is configured.
 */
static __always_inline __be32 kv_source_of(const struct kv_config *cfg, const struct kw_pkt *p,
					   __be32 bend, __be16 bport, __u64 now)
{
	__u32 count = cfg->snat_count;
	__u32 start;
	struct kw_ct_key space = {
		.saddr = bend,
		.sport = bport,
		.dport = 0,
		.proto = p->key.proto,
	};

	if (count == 0 || count > KV_MAX_SOURCE_IPS)
		return 0;
	/* < count <= KV_MAX_SOURCE_IPS, a power of two: the mask only tells the verifier */
	start = (kw_port_hash(&p->key) % count) & (KV_MAX_SOURCE_IPS - 1);
	if (count == 1)
		return cfg->snat_ips[0];
	for (__u32 i = 0; i < KV_MAX_SOURCE_IPS; i++) {
		__u32 idx = start + i;

		if (i >= count)
			break;
		if (idx >= count)
			idx -= count;
		if (idx >= KV_MAX_SOURCE_IPS)
			break;
		space.daddr = cfg->snat_ips[idx];
		if (!kw_noport_held(&space, now))
			return space.daddr;
	}
	return cfg->snat_ips[start];
}

#endif /* KW_LB_SOURCE_H */
