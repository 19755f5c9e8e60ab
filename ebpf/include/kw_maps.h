/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_maps.h - the maps every Kowabunga XDP program has: conntrack, outcome
 * counters, drop events and the ABI version (see ebpf/README.md). Each program object gets its
 * own instances; program-specific maps live in kw_<program>_maps.h.
 */
#ifndef KW_MAPS_H
#define KW_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kw_abi.h"

/*
 * Conntrack, two tables (kw_ct.h). kw_ct4: confirmed flows (both directions
 * seen), a plain hash: nothing is ever evicted, a full table refuses new
 * confirmations and the daemon removes expired flows. kw_ct4_new: embryonic
 * flows (one direction seen), an LRU hash: a flood of new flows only evicts
 * other embryonic entries.
 *
 * kw_ct4 is preallocated (its memory is taken when the daemon starts,
 * max_entries x about 128 bytes). Measured with established flows (the live
 * bench answers every flow before it measures): at 65,536 flows a
 * preallocated kw_ct4 forwarded 2,052-2,305 kpps where BPF_F_NO_PREALLOC
 * (entries from the slab, one allocation per confirmed flow) gave
 * 1,544-1,619 in the same runs; the new-flow path did not change. Full:
 * E2BIG on insert.
 *
 * kw_ct4_new has one LRU list per CPU (BPF_F_NO_COMMON_LRU): taking a free
 * entry from the shared list (a global lock, a shrink of the shared list)
 * dominated the new-flow path; the entries are split evenly among the CPUs,
 * so a flood on one receive queue evicts only that CPU's embryonic flows.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kw_ct_key);
	__type(value, struct kw_ct_value);
	__uint(max_entries, KW_CT_DEFAULT_ENTRIES);
} kw_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kw_ct_key);
	__type(value, struct kw_ct_value);
	__uint(max_entries, KW_CT_DEFAULT_ENTRIES);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
} kw_ct4_new SEC(".maps");

/*
 * Port spaces found full (kw_nat.h kw_snat_reserve): key a reply tuple with
 * dport 0, value the bpf_ktime_get_coarse_ns() of the failed scan. Not
 * pinned: a cache, rebuilt after a restart.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kw_ct_key);
	__type(value, __u64);
	__uint(max_entries, KW_NOPORT_ENTRIES);
} kw_noport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kw_counter);
	__uint(max_entries, KW_STAT_COUNT);
} kw_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, KW_EVENTS_BYTES);
} kw_events SEC(".maps");

/*
 * kw_meta[0] = KW_ABI_VERSION of the maps pinned beside it, written by the
 * loader when it creates a pin directory; no program reads it. Its own
 * definition never changes, so that every build can read any pins' version.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} kw_meta SEC(".maps");

#endif /* KW_MAPS_H */
