// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * kawaii.c - the Kawaii project gateway in XDP: SNAT egress to the zone's
 * public VIP, DNAT ingress, a stateful deny-by-default firewall, VPC peering
 * without NAT, IPsec subnets handed to the kernel, ICMP error translation.
 *
 * One entry point per interface role; the role is a constant, so each is
 * specialised by the compiler. Semantics: ../shared design, section 3, and
 * ebpf/README.md. The reference model in tests/src/model mirrors this file.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kw_kawaii_maps.h"
#include "kw_parse.h"
#include "kw_host.h"
#include "kw_csum.h"
#include "kw_counters.h"
#include "kw_ct.h"
#include "kw_rules.h"
#include "kw_nat.h"
#include "kw_fwd.h"
#include "kw_flow.h"
#include "kw_icmp.h"

/* Everything a decision needs besides the packet. */
struct kw_env {
	const struct kw_config *cfg;
	__u32 bank;
	struct kw_flow_env flow;
};

/* An ICMP error: translated when it is about a flow, else dropped. */
static __always_inline int kw_icmp_error(struct xdp_md *ctx, struct kw_pkt *p,
					 const struct kw_env *env, __u8 role)
{
	struct kw_icmp_ref ref;
	__u32 why = kw_icmp_find(ctx, p, role, &ref);

	if (why != KW_ICMP_FOUND)
		return kw_drop(ctx, p, why, env->cfg->sample_shift);
	return kw_icmp_forward(ctx, p, &ref, env->cfg->sample_shift);
}

/* New flow arriving on the public side, addressed to a VIP. */
static __always_inline int kw_new_inbound(struct xdp_md *ctx, struct kw_pkt *p,
					  const struct kw_env *env)
{
	__be32 target = 0;

	if ((p->kind == KW_L4_TCP || p->kind == KW_L4_UDP) &&
	    kw_rule_match(env->cfg, env->bank, KW_TABLE_DNAT, p->key.saddr, p, &target)) {
		struct kw_nat n = {
			.saddr = p->key.saddr,
			.daddr = target,
			.sport = p->key.sport,
			.dport = p->key.dport,
		};
		return kw_new_flow(ctx, p, &env->flow, &n, KW_ROLE_PUBLIC, KW_ROLE_PRIVATE, KW_CT_F_DNAT, 0);
	}
	if (kw_rule_match(env->cfg, env->bank, KW_TABLE_INGRESS, p->key.saddr, p, 0))
		return kw_pass(p, KW_STAT_PASS_TO_HOST);
	return kw_drop(ctx, p, KW_STAT_DROP_INGRESS_DENIED, env->cfg->sample_shift);
}

/* New flow from the project subnet (to a VIP, a peering, or the Internet). */
static __always_inline int kw_new_outbound(struct xdp_md *ctx, struct kw_pkt *p,
					   const struct kw_env *env)
{
	const struct kw_config *cfg = env->cfg;
	__be32 daddr = p->key.daddr;
	__be32 target = 0;
	int peer;

	if (kw_is_vip(cfg, daddr)) {
		/* hairpin: a dnat port of our own VIP, from inside */
		if ((p->kind == KW_L4_TCP || p->kind == KW_L4_UDP) &&
		    kw_rule_match(cfg, env->bank, KW_TABLE_DNAT, p->key.saddr, p, &target)) {
			struct kw_nat n = {
				.saddr = cfg->snat_ip,
				.daddr = target,
				.sport = p->key.sport,
				.dport = p->key.dport,
			};
			return kw_new_flow(ctx, p, &env->flow, &n, KW_ROLE_PRIVATE, KW_ROLE_PRIVATE,
					   KW_CT_F_SNAT | KW_CT_F_DNAT, 1);
		}
		return kw_pass(p, KW_STAT_PASS_TO_HOST);
	}
	if (!kw_trackable(p->kind) || p->kind == KW_L4_ECHO_REPLY)
		return kw_drop(ctx, p, KW_STAT_DROP_UNSUPPORTED, cfg->sample_shift);

	peer = kw_peering_of(cfg, daddr);
	if (peer >= 0) {
		struct kw_nat n = {
			.saddr = p->key.saddr,
			.daddr = daddr,
			.sport = p->key.sport,
			.dport = p->key.dport,
		};
		__u8 policy = KW_POLICY_DROP;

		if (peer < KW_MAX_PEERINGS)
			policy = cfg->peerings[peer].policy;
		if (policy != KW_POLICY_ACCEPT &&
		    !kw_rule_match(cfg, env->bank, KW_TABLE_PEER_OUT, daddr, p, 0))
			return kw_drop(ctx, p, KW_STAT_DROP_PEERING_DENIED, cfg->sample_shift);
		return kw_new_flow(ctx, p, &env->flow, &n, KW_ROLE_PRIVATE, KW_ROLE_PEERING, 0, 0);
	}

	/* Internet: egress_policy, with the egress rules as its exceptions */
	if ((cfg->egress_policy == KW_POLICY_ACCEPT) ==
	    kw_rule_match(cfg, env->bank, KW_TABLE_EGRESS, daddr, p, 0))
		return kw_drop(ctx, p, KW_STAT_DROP_EGRESS_DENIED, cfg->sample_shift);
	{
		struct kw_nat n = {
			.saddr = cfg->snat_ip,
			.daddr = daddr,
			.sport = p->key.sport,
			.dport = p->key.dport,
		};
		return kw_new_flow(ctx, p, &env->flow, &n, KW_ROLE_PRIVATE, KW_ROLE_PUBLIC, KW_CT_F_SNAT, 1);
	}
}

/* New flow from a peered subnet into the project subnet. */
static __always_inline int kw_new_peer_inbound(struct xdp_md *ctx, struct kw_pkt *p,
					       const struct kw_env *env, int peer)
{
	const struct kw_config *cfg = env->cfg;
	struct kw_nat n = {
		.saddr = p->key.saddr,
		.daddr = p->key.daddr,
		.sport = p->key.sport,
		.dport = p->key.dport,
	};
	__u8 policy = KW_POLICY_DROP;

	if (!kw_trackable(p->kind) || p->kind == KW_L4_ECHO_REPLY)
		return kw_drop(ctx, p, KW_STAT_DROP_UNSUPPORTED, cfg->sample_shift);
	if (peer >= 0 && peer < KW_MAX_PEERINGS)
		policy = cfg->peerings[peer].policy;
	if (policy != KW_POLICY_ACCEPT &&
	    !kw_rule_match(cfg, env->bank, KW_TABLE_PEER_IN, p->key.saddr, p, 0))
		return kw_drop(ctx, p, KW_STAT_DROP_PEERING_DENIED, cfg->sample_shift);
	return kw_new_flow(ctx, p, &env->flow, &n, KW_ROLE_PEERING, KW_ROLE_PRIVATE, 0, 0);
}

/*
 * IPv6 on the private or a peering side. The project is IPv4: link-local and
 * multicast destinations (neighbour discovery, MLD) are the host's business;
 * anything else could only be forwarded by the kernel, whatever its
 * forwarding sysctl says: dropped and counted. (On the public side IPv6 goes
 * to the host, whose nftables backstop forwards none of it.)
 */
static __always_inline int kw_ipv6_inner(struct xdp_md *ctx, struct kw_pkt *p, void *data_end,
					 __u8 shift)
{
	struct ipv6hdr *ip6 = (void *)(p->eth + 1);

	if ((void *)(ip6 + 1) > data_end)
		return kw_drop(ctx, p, KW_STAT_DROP_MALFORMED, shift);
	if (kw_ipv6_link_scope(ip6))
		return kw_pass(p, KW_STAT_PASS_NOT_IPV4);
	return kw_drop(ctx, p, KW_STAT_DROP_IPV6, shift);
}

static __always_inline int kawaii(struct xdp_md *ctx, const __u8 role)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct kw_pkt p = { .len = data_end - data };
	struct kw_env env;
	struct kw_ct_value *v;
	struct kw_fc_slot *fc;
	int emb;
	__u32 zero = 0, *active;
	__u16 tot_len;
	int peer = -1;
	const struct kw_cidr *ipsec;

	p.eth = data;
	active = bpf_map_lookup_elem(&kw_active, &zero);
	if (!active || *active == KW_ACTIVE_NONE || *active > KW_BANKS)
		return kw_pass(&p, KW_STAT_PASS_NO_CONFIG);
	env.bank = *active - 1;
	env.cfg = bpf_map_lookup_elem(&kw_config, &env.bank);
	if (!env.cfg)
		return kw_pass(&p, KW_STAT_PASS_NO_CONFIG);
	env.flow.port_min = env.cfg->port_min;
	env.flow.port_max = env.cfg->port_max;
	env.flow.sample_shift = env.cfg->sample_shift;
	env.flow.lb = 0;
	env.flow.lb_slot = 0;

	if ((void *)(p.eth + 1) > data_end)
		return kw_drop(ctx, &p, KW_STAT_DROP_MALFORMED, env.cfg->sample_shift);
	if (p.eth->h_proto != bpf_htons(ETH_P_IP)) {
		if (p.eth->h_proto == bpf_htons(ETH_P_IPV6) && role != KW_ROLE_PUBLIC)
			return kw_ipv6_inner(ctx, &p, data_end, env.cfg->sample_shift);
		if (p.eth->h_proto == bpf_htons(ETH_P_IPV6))
			return kw_host_inbound6(ctx, &p, data_end, env.cfg, env.bank);
		return kw_pass(&p, KW_STAT_PASS_NOT_IPV4);
	}
	p.ip = (void *)(p.eth + 1);
	if ((void *)(p.ip + 1) > data_end)
		return kw_drop(ctx, &p, KW_STAT_DROP_MALFORMED, env.cfg->sample_shift);
	tot_len = bpf_ntohs(p.ip->tot_len);
	if (p.ip->version != 4 || p.ip->ihl < 5 || tot_len < p.ip->ihl * 4 ||
	    (void *)p.ip + tot_len > data_end)
		return kw_drop(ctx, &p, KW_STAT_DROP_MALFORMED, env.cfg->sample_shift);
	p.key.saddr = p.ip->saddr;
	p.key.daddr = p.ip->daddr;
	p.key.proto = p.ip->protocol;

	/* classify by address: what is not ours goes to the kernel untouched */
	if (kw_is_mcast_bcast(p.key.daddr))
		return kw_pass(&p, KW_STAT_PASS_LOCAL);
	if (role == KW_ROLE_PUBLIC) {
		if (!kw_is_vip(env.cfg, p.key.daddr)) {
			if (kw_in_cidr(p.key.daddr, &env.cfg->private_net) ||
			    kw_peering_of(env.cfg, p.key.daddr) >= 0)
				return kw_drop(ctx, &p, KW_STAT_DROP_TO_PRIVATE,
					       env.cfg->sample_shift);
			return kw_host_inbound(ctx, &p, data_end, env.cfg, env.bank);
		}
	} else if (role == KW_ROLE_PRIVATE) {
		if (kw_in_cidr(p.key.daddr, &env.cfg->private_net))
			return kw_pass(&p, KW_STAT_PASS_LOCAL);
		if (!kw_in_cidr(p.key.saddr, &env.cfg->private_net))
			return kw_drop(ctx, &p, KW_STAT_DROP_SPOOFED, env.cfg->sample_shift);
		ipsec = kw_ipsec_of(env.cfg, p.key.daddr);
		if (ipsec) {
			struct kw_cidr key = *ipsec;
			__u32 *up = bpf_map_lookup_elem(&kw_ipsec_up, &key);

			if (!up || !*up)
				return kw_drop(ctx, &p, KW_STAT_DROP_IPSEC_DOWN,
					       env.cfg->sample_shift);
			return kw_pass(&p, KW_STAT_PASS_IPSEC);
		}
	} else {
		if (!kw_in_cidr(p.key.daddr, &env.cfg->private_net))
			return kw_pass(&p, KW_STAT_PASS_NOT_OURS);
		peer = kw_peering_of(env.cfg, p.key.saddr);
		if (peer < 0)
			return kw_drop(ctx, &p, KW_STAT_DROP_SPOOFED, env.cfg->sample_shift);
	}

	/* a translated path from here on */
	if (p.ip->ihl != 5)
		return kw_drop(ctx, &p, KW_STAT_DROP_IP_OPTIONS, env.cfg->sample_shift);
	if (p.ip->frag_off & bpf_htons(KW_IP_MF | KW_IP_OFFSET))
		return kw_drop(ctx, &p, KW_STAT_DROP_FRAGMENT, env.cfg->sample_shift);
	if (kw_parse_l4(&p, data_end) < 0)
		return kw_drop(ctx, &p, KW_STAT_DROP_MALFORMED_L4, env.cfg->sample_shift);

	if (kw_trackable(p.kind)) {
		fc = kw_fc_find(&p, role, bpf_ktime_get_coarse_ns());
		if (fc)
			return kw_fc_forward(ctx, &p, fc);
		v = kw_ct_lookup(&p.key, &emb);
		p.ct_absent = !v;
		if (v && v->in_role == role)
			return kw_established(ctx, &p, v, emb, env.cfg->sample_shift);
	} else if (p.kind == KW_L4_ICMP_ERROR) {
		return kw_icmp_error(ctx, &p, &env, role);
	}

	if (role == KW_ROLE_PUBLIC)
		return kw_new_inbound(ctx, &p, &env);
	if (role == KW_ROLE_PRIVATE)
		return kw_new_outbound(ctx, &p, &env);
	return kw_new_peer_inbound(ctx, &p, &env, peer);
}

SEC("xdp")
int kawaii_public(struct xdp_md *ctx)
{
	return kawaii(ctx, KW_ROLE_PUBLIC);
}

SEC("xdp")
int kawaii_private(struct xdp_md *ctx)
{
	return kawaii(ctx, KW_ROLE_PRIVATE);
}

SEC("xdp")
int kawaii_peering(struct xdp_md *ctx)
{
	return kawaii(ctx, KW_ROLE_PEERING);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
