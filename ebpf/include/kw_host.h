/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_host.h - the node's own traffic on the public side: deny by default.
 *
 * A packet on the public interface to an address that is neither a VIP nor
 * a routed (private, peered) subnet is for the node itself (its public
 * address, a management address) or transit. It reaches the kernel only if
 *   - it belongs to a flow the node opened: a local TCP socket that is not
 *     listening, or a connected UDP socket, owns its tuple (socket lookup
 *     in the node's network namespace, no state of our own), or it is an
 *     ICMP echo reply or error (the kernel matches those against its own
 *     sockets);
 *   - it is VRRP with TTL 255 (RFC 9568: sent on the link itself);
 *   - it is a later fragment: the first fragment carries the ports and was
 *     decided here, and the kernel reassembles nothing without it;
 *   - or firewall.ingress allows it (source prefix, protocol, port), as it
 *     allows new flows to a VIP for the gateway itself.
 * Everything else is dropped and counted (drop_host_denied).
 */
#ifndef KW_HOST_H
#define KW_HOST_H

#include "kw_rules.h"
#include "kw_counters.h"

#define KW_IPPROTO_VRRP 112
#define KW_TCP_ESTABLISHED 1 /* also the state of a connected UDP socket */
#define KW_TCP_LISTEN 10

/* Whether a local socket owns p as part of a flow the node itself opened. */
static __always_inline int kw_host_owns(struct xdp_md *ctx, const struct kw_pkt *p)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	int owned = 0;

	t.ipv4.saddr = p->key.saddr;
	t.ipv4.daddr = p->key.daddr;
	t.ipv4.sport = p->key.sport;
	t.ipv4.dport = p->key.dport;
	if (p->kind == KW_L4_TCP) {
		sk = bpf_skc_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			owned = sk->state != KW_TCP_LISTEN;
			bpf_sk_release(sk);
		}
	} else if (p->kind == KW_L4_UDP) {
		sk = bpf_sk_lookup_udp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			owned = sk->state == KW_TCP_ESTABLISHED;
			bpf_sk_release(sk);
		}
	}
	return owned;
}

static __always_inline int kw_host_inbound(struct xdp_md *ctx, struct kw_pkt *p, void *data_end,
					   const struct kw_config *cfg, __u32 bank)
{
	__u8 shift = cfg->sample_shift;

	if (p->ip->frag_off & bpf_htons(KW_IP_OFFSET))
		return kw_pass(p, KW_STAT_PASS_HOST_FRAGMENT);
	if (p->key.proto == KW_IPPROTO_VRRP && p->ip->ttl == 255)
		return kw_pass(p, KW_STAT_PASS_VRRP);
	if (p->ip->ihl != 5)
		return kw_drop(ctx, p, KW_STAT_DROP_IP_OPTIONS, shift);
	if (kw_parse_l4(p, data_end) < 0)
		return kw_drop(ctx, p, KW_STAT_DROP_MALFORMED_L4, shift);
	if (p->kind == KW_L4_ECHO_REPLY || p->kind == KW_L4_ICMP_ERROR || kw_host_owns(ctx, p))
		return kw_pass(p, KW_STAT_PASS_HOST_REPLY);
	if (kw_rule_match(cfg, bank, KW_TABLE_INGRESS, p->key.saddr, p, 0))
		return kw_pass(p, KW_STAT_PASS_TO_HOST);
	return kw_drop(ctx, p, KW_STAT_DROP_HOST_DENIED, shift);
}

#endif /* KW_HOST_H */
