/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_counters.h - one per-CPU counter per outcome, and sampled drop events.
 * Every return of the program goes through kw_pass / kw_drop / kw_fwd so no
 * verdict is ever uncounted.
 */
#ifndef KW_COUNTERS_H
#define KW_COUNTERS_H

#include "kw_maps.h"
#include "kw_parse.h"

static __always_inline struct kw_counter *kw_count(__u32 stat, __u32 len)
{
	struct kw_counter *c = bpf_map_lookup_elem(&kw_stats, &stat);

	if (c) {
		c->packets += 1; /* per-CPU slot: no atomics needed */
		c->bytes += len;
	}
	return c;
}

static __always_inline int kw_pass(const struct kw_pkt *p, __u32 stat)
{
	kw_count(stat, p->len);
	return XDP_PASS;
}

/*
 * Count a drop; one drop in 2^shift of each reason and CPU also goes to the
 * kw_events ring buffer (dropped silently if the buffer is full).
 */
static __always_inline int kw_drop(struct xdp_md *ctx, const struct kw_pkt *p,
				   __u32 reason, __u8 shift)
{
	struct kw_counter *c = kw_count(reason, p->len);

	if (c && (c->packets & ((1ull << (shift & 31)) - 1)) == 0) {
		struct kw_drop_event ev = {
			.ts_ns = bpf_ktime_get_ns(),
			.ifindex = ctx->ingress_ifindex,
			.reason = reason,
			.proto = p->key.proto,
			.saddr = p->key.saddr,
			.daddr = p->key.daddr,
			.sport = p->key.sport,
			.dport = p->key.dport,
		};
		bpf_ringbuf_output(&kw_events, &ev, sizeof(ev), 0);
	}
	return XDP_DROP;
}

#endif /* KW_COUNTERS_H */
