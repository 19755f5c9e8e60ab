/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_rules.h - address classification and rule-table scans.
 * Scans only run for packets of new flows; established flows are decided by
 * one conntrack lookup. Tables are scanned with bpf_loop so the verifier
 * checks the body once, whatever the table size.
 */
#ifndef KW_RULES_H
#define KW_RULES_H

#include "kw_kawaii_maps.h"

static __always_inline int kw_in_cidr(__be32 addr, const struct kw_cidr *c)
{
	return ((addr ^ c->addr) & c->mask) == 0;
}

/* Multicast (224.0.0.0/4) or limited broadcast: always the kernel's. */
static __always_inline int kw_is_mcast_bcast(__be32 daddr)
{
	return (daddr & bpf_htonl(0xf0000000)) == bpf_htonl(0xe0000000) ||
	       daddr == bpf_htonl(0xffffffff);
}

static __always_inline int kw_is_vip(const struct kw_config *cfg, __be32 addr)
{
#pragma unroll
	for (int i = 0; i < KW_MAX_VIPS; i++) {
		if (i >= cfg->n_vips)
			break;
		if (cfg->vips[i] == addr)
			return 1;
	}
	return 0;
}

/* Index of the peering whose subnet holds addr, or -1. */
static __always_inline int kw_peering_of(const struct kw_config *cfg, __be32 addr)
{
#pragma unroll
	for (int i = 0; i < KW_MAX_PEERINGS; i++) {
		if (i >= cfg->n_peerings)
			break;
		if (kw_in_cidr(addr, &cfg->peerings[i].subnet))
			return i;
	}
	return -1;
}

static __always_inline int kw_is_ipsec(const struct kw_config *cfg, __be32 addr)
{
#pragma unroll
	for (int i = 0; i < KW_MAX_IPSEC; i++) {
		if (i >= cfg->n_ipsec)
			break;
		if (kw_in_cidr(addr, &cfg->ipsec[i]))
			return 1;
	}
	return 0;
}

struct kw_scan {
	__u32 base;      /* index of the table's first rule in kw_rules */
	__u32 count;     /* rules in the table */
	__be32 addr;     /* address compared with each rule's cidr */
	__be32 target;   /* out: target of the first matching rule */
	__u16 dport;     /* host order; only compared when has_ports */
	__u8 proto;
	__u8 has_ports;
	__u8 found;      /* out */
};

static long kw_scan_one(__u32 i, void *ctx)
{
	struct kw_scan *s = ctx;
	__u32 idx = s->base + i;
	struct kw_rule *r;

	if (i >= s->count)
		return 1;
	r = bpf_map_lookup_elem(&kw_rules, &idx);
	if (!r)
		return 1;
	if (!kw_in_cidr(s->addr, &r->cidr))
		return 0;
	if (r->proto && r->proto != s->proto)
		return 0;
	if (s->has_ports && (s->dport < r->port_lo || s->dport > r->port_hi))
		return 0;
	s->found = 1;
	s->target = r->target;
	return 1;
}

/*
 * First rule of `table` matching (addr, proto, dport). Ports are compared
 * for TCP and UDP only. Returns 1 and sets *target on a match.
 */
static __always_inline int kw_rule_match(const struct kw_config *cfg, __u32 bank,
					 __u32 table, __be32 addr, const struct kw_pkt *p,
					 __be32 *target)
{
	struct kw_scan s = {};

	if (table >= KW_TABLE_COUNT)
		return 0;
	s.count = cfg->rule_count[table];
	if (s.count == 0)
		return 0;
	if (s.count > KW_MAX_RULES_PER_TABLE)
		s.count = KW_MAX_RULES_PER_TABLE;
	s.base = bank * KW_RULES_PER_BANK + cfg->rule_start[table];
	s.addr = addr;
	s.proto = p->key.proto;
	s.has_ports = p->kind == KW_L4_TCP || p->kind == KW_L4_UDP;
	s.dport = bpf_ntohs(p->key.dport);
	bpf_loop(s.count, kw_scan_one, &s, 0);
	if (s.found && target)
		*target = s.target;
	return s.found;
}

#endif /* KW_RULES_H */
