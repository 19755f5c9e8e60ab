/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_lb.h - Konvey backend selection. Strict round-robin: one counter per
 * service, shared by every CPU and advanced with an atomic fetch-and-add, so
 * N new flows spread over k backends land exactly N/k on each whatever the
 * CPUs they arrive on. Selection is this one function: Maglev or another
 * consistent hash can replace it without touching the rest.
 */
#ifndef KW_LB_H
#define KW_LB_H

#include "kw_konvey_maps.h"

/*
 * The backend of a new flow of service svc, or 0 when the service has no
 * backend in rotation (or an id outside kv_rr: a daemon bug, same outcome).
 */
static __always_inline const struct kv_backend *kv_pick(const struct kv_service *svc)
{
	__u32 id = svc->id;
	__u32 count = svc->count;
	__u64 *rr, turn;
	__u32 idx;

	if (count == 0 || count > KV_MAX_BACKENDS)
		return 0;
	rr = bpf_map_lookup_elem(&kv_rr, &id);
	if (!rr)
		return 0;
	turn = __sync_fetch_and_add(rr, 1);
	idx = turn % count;
	if (idx >= KV_MAX_BACKENDS)
		return 0;
	return &svc->backends[idx];
}

#endif /* KW_LB_H */
