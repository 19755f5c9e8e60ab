/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_rules.h - address classification and rule-table matches.
 * Rule matches only run for packets of new flows; established flows are
 * decided by one conntrack lookup. A match costs one LPM lookup by address,
 * then per protocol a hash lookup and, for port ranges wider than one port,
 * an LPM lookup, whatever the number of rules.
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

/* The IPsec remote subnet holding addr, or NULL. */
static __always_inline const struct kw_cidr *kw_ipsec_of(const struct kw_config *cfg, __be32 addr)
{
#pragma unroll
	for (int i = 0; i < KW_MAX_IPSEC; i++) {
		if (i >= cfg->n_ipsec)
			break;
		if (kw_in_cidr(addr, &cfg->ipsec[i]))
			return &cfg->ipsec[i];
	}
	return NULL;
}

/*
 * The interval of (node, proto, port) in pk: kw_rule_exact first, then, on a
 * miss, kw_rule_port; each only when the node's flags say it may hit.
 */
static __always_inline struct kw_rule_hit *
kw_rule_port_hit(const struct kw_rule_node *n, struct kw_rule_port_key *pk)
{
	struct kw_rule_hit *h;
	__u32 exact, wide;

	switch (pk->data.proto) {
	case 0:
		exact = KW_RULE_F_EXACT(KW_RULE_CLASS_ANY);
		wide = KW_RULE_F_WIDE(KW_RULE_CLASS_ANY);
		break;
	case IPPROTO_TCP:
		exact = KW_RULE_F_EXACT(KW_RULE_CLASS_TCP);
		wide = KW_RULE_F_WIDE(KW_RULE_CLASS_TCP);
		break;
	case IPPROTO_UDP:
		exact = KW_RULE_F_EXACT(KW_RULE_CLASS_UDP);
		wide = KW_RULE_F_WIDE(KW_RULE_CLASS_UDP);
		break;
	default:
		exact = KW_RULE_F_OTHER;
		wide = 0;
		break;
	}
	if (n->flags & exact) {
		h = bpf_map_lookup_elem(&kw_rule_exact, &pk->data);
		if (h)
			return h;
	}
	if (n->flags & wide)
		return bpf_map_lookup_elem(&kw_rule_port, pk);
	return NULL;
}

/*
 * First rule of node n (of `table` in `bank`) matching (proto, dport): per
 * protocol (the packet's and, with ports, 0) one lookup in kw_rule_exact and
 * on a miss one in kw_rule_port. Without ports, the node's any_index stands
 * for the protocol-any rules. Returns 1 and sets *target on a match.
 */
static __always_inline int kw_rule_match_node(const struct kw_rule_node *n, __u32 bank,
					      __u32 table, __u8 proto, __be16 dport,
					      int has_ports, __be32 *target)
{
	struct kw_rule_port_key pk = {};
	struct kw_rule_hit *h;
	__u32 best = KW_RULE_NONE;
	__be32 best_target = 0;

	pk.prefixlen = KW_RULE_PORT_FULL;
	pk.data.bank = bank;
	pk.data.table = table;
	pk.data.node = n->node;
	if (has_ports) {
		/* protocol-any rules, with their port ranges */
		pk.data.port = dport;
		h = kw_rule_port_hit(n, &pk);
		if (h) {
			best = h->index;
			best_target = h->target;
		}
	} else {
		best = n->any_index;
		best_target = n->any_target;
	}
	if (proto) {
		pk.data.proto = proto;
		h = kw_rule_port_hit(n, &pk);
		if (h && h->index < best) {
			best = h->index;
			best_target = h->target;
		}
	}
	if (best == KW_RULE_NONE)
		return 0;
	if (target)
		*target = best_target;
	return 1;
}

/*
 * First rule of `table` matching (addr, proto, dport): one lookup in
 * kw_rule_addr, then kw_rule_match_node, whatever the table size (see
 * kw_abi.h, "Rule index"). Ports are compared for TCP and UDP only.
 * Returns 1 and sets *target on a match.
 */
static __always_inline int kw_rule_match(const struct kw_config *cfg, __u32 bank,
					 __u32 table, __be32 addr, const struct kw_pkt *p,
					 __be32 *target)
{
	struct kw_rule_addr_key ak = {};
	struct kw_rule_node *n;

	if (table >= KW_TABLE_COUNT || cfg->rule_count[table] == 0)
		return 0;
	ak.prefixlen = KW_RULE_ADDR_FULL;
	ak.data.bank = bank;
	ak.data.table = table;
	ak.data.addr = addr;
	n = bpf_map_lookup_elem(&kw_rule_addr, &ak);
	if (!n)
		return 0;
	return kw_rule_match_node(n, bank, table, p->key.proto, p->key.dport,
				  p->kind == KW_L4_TCP || p->kind == KW_L4_UDP, target);
}

/*
 * Whether an IPv6 rule of firewall.ingress (KW_TABLE_INGRESS6) lets
 * (saddr, proto, dport) in: one lookup in kw_rule_addr6, then the same port
 * structures as IPv4 under their own table number.
 */
static __always_inline int kw_rule_match6(const struct kw_config *cfg, __u32 bank,
					  const struct in6_addr *saddr, __u8 proto,
					  __be16 dport, int has_ports)
{
	struct kw_rule_addr6_key ak = {};
	struct kw_rule_node *n;

	if (cfg->rule6_count == 0)
		return 0;
	ak.prefixlen = KW_RULE_ADDR6_FULL;
	ak.data.bank = bank;
	ak.data.table = KW_TABLE_INGRESS6;
	__builtin_memcpy(ak.data.addr, saddr, 16);
	n = bpf_map_lookup_elem(&kw_rule_addr6, &ak);
	if (!n)
		return 0;
	return kw_rule_match_node(n, bank, KW_TABLE_INGRESS6, proto, dport, has_ports, NULL);
}

#endif /* KW_RULES_H */
