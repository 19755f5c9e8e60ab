/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* kw_maps.h - map definitions of the Kawaii program (see ebpf/README.md). */
#ifndef KW_MAPS_H
#define KW_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kw_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} kw_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kw_config);
	__uint(max_entries, KW_BANKS);
} kw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kw_rule);
	__uint(max_entries, KW_BANKS * KW_RULES_PER_BANK);
} kw_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kw_ct_key);
	__type(value, struct kw_ct_value);
	__uint(max_entries, KW_CT_DEFAULT_ENTRIES);
} kw_ct4 SEC(".maps");

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

#endif /* KW_MAPS_H */
