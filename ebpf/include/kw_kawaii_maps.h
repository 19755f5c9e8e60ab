/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* kw_kawaii_maps.h - the Kawaii program's own maps: banked config, rules, rule index. */
#ifndef KW_KAWAII_MAPS_H
#define KW_KAWAII_MAPS_H

#include "kw_maps.h"

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
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct kw_rule_addr_key);
	__type(value, struct kw_rule_node);
	__uint(max_entries, KW_RULE_ADDR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kw_rule_addr SEC(".maps");

/* IPv6 firewall.ingress: listing and address trie (port entries: kw_rule_exact/kw_rule_port) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kw_rule6);
	__uint(max_entries, KW_RULE_ADDR6_ENTRIES);
} kw_rules6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct kw_rule_addr6_key);
	__type(value, struct kw_rule_node);
	__uint(max_entries, KW_RULE_ADDR6_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kw_rule_addr6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct kw_rule_port_key);
	__type(value, struct kw_rule_hit);
	__uint(max_entries, KW_RULE_PORT_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kw_rule_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kw_rule_port);
	__type(value, struct kw_rule_hit);
	__uint(max_entries, KW_RULE_EXACT_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kw_rule_exact SEC(".maps");

/*
 * IPsec remote subnets whose child SA is installed, written by kowabungad's
 * IPsec role from charon's events: a key present with a non-zero value lets
 * the project's traffic to that subnet go to the kernel (XFRM); anything
 * else is dropped (fail closed).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kw_cidr);
	__type(value, __u32);
	__uint(max_entries, KW_IPSEC_UP_ENTRIES);
} kw_ipsec_up SEC(".maps");

#endif /* KW_KAWAII_MAPS_H */
