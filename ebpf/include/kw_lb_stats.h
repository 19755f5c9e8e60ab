/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_lb_stats.h - Konvey's per-backend counters (kv_backend_stats): one
 * per-CPU slot per (service, backend position), found from the backend
 * (new flows) or from the flow's conntrack entry (lb_slot, KW_CT_F_LB): an
 * array lookup and plain adds, no hash lookup and no atomic on the path.
 */
#ifndef KW_LB_STATS_H
#define KW_LB_STATS_H

#include "kw_konvey_maps.h"

/* Count a packet of len bytes for slot; new_flow: it created the flow. */
static __always_inline void kv_backend_count(__u32 slot, __u32 len, int new_flow)
{
	/* the bench's baseline build (konvey-nostats.o) compiles the counting out */
#ifndef KV_NO_BACKEND_STATS
	struct kv_backend_counter *c = bpf_map_lookup_elem(&kv_backend_stats, &slot);

	if (!c)
		return;
	c->packets += 1;
	c->bytes += len;
	if (new_flow)
		c->new_flows += 1;
#endif
}

#endif /* KW_LB_STATS_H */
