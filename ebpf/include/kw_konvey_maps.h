/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* kw_konvey_maps.h - the Konvey program's own maps (see ebpf/README.md). */
#ifndef KW_KONVEY_MAPS_H
#define KW_KONVEY_MAPS_H

#include "kw_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kv_config);
	__uint(max_entries, 1);
} kv_config SEC(".maps");

/*
 * VIP -> number of services on it: "is this packet for a VIP?". 0: the VIP
 * lost its last service and drains (its flows go on, new ones are dropped).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, KV_MAX_SERVICES);
} kv_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kv_service_key);
	__type(value, struct kv_service);
	__uint(max_entries, KV_MAX_SERVICES);
} kv_services SEC(".maps");

/* Round-robin counter per service id, shared by all CPUs (atomic add). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, KV_MAX_SERVICES);
} kv_rr SEC(".maps");

/*
 * Per-backend traffic (kw_lb_stats.h), indexed by kv_backend.slot: per-CPU
 * slots, plain adds, no lock; the daemon sums the CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kv_backend_counter);
	__uint(max_entries, KV_BACKEND_SLOTS);
} kv_backend_stats SEC(".maps");

#endif /* KW_KONVEY_MAPS_H */
