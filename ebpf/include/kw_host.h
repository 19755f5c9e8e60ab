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
 *     allows new flows to a VIP for the gateway itself; IPv6 packets are
 *     matched against its IPv6 rules only, IPv4 ones against its IPv4 rules.
 * Everything else is dropped and counted (drop_host_denied).
 */
#ifndef KW_HOST_H
#define KW_HOST_H

#include "kw_rules.h"
#include "kw_counters.h"
#include "kw_fwd.h"

#define KW_IPPROTO_VRRP 112
#define KW_TCP_ESTABLISHED 1 /* also the state of a connected UDP socket */
#define KW_TCP_LISTEN 10

/*
 * Whether a local socket owns the tuple t (of size len: IPv4 or IPv6) as a
 * flow the node itself opened: a TCP socket that is not listening, or a
 * connected UDP socket.
 */
static __always_inline int kw_host_owns(struct xdp_md *ctx, struct bpf_sock_tuple *t, __u32 len,
					int tcp)
{
	struct bpf_sock *sk;
	int owned;

	if (tcp) {
		sk = bpf_skc_lookup_tcp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		owned = sk->state != KW_TCP_LISTEN;
	} else {
		sk = bpf_sk_lookup_udp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		owned = sk->state == KW_TCP_ESTABLISHED;
	}
	bpf_sk_release(sk);
	return owned;
}

static __always_inline int kw_host_inbound(struct xdp_md *ctx, struct kw_pkt *p, void *data_end,
					   const struct kw_config *cfg, __u32 bank)
{
	__u8 shift = cfg->sample_shift;
	struct bpf_sock_tuple t = {};

	if (p->ip->frag_off & bpf_htons(KW_IP_OFFSET))
		return kw_pass(p, KW_STAT_PASS_HOST_FRAGMENT);
	if (p->key.proto == KW_IPPROTO_VRRP && p->ip->ttl == 255)
		return kw_pass(p, KW_STAT_PASS_VRRP);
	if (p->ip->ihl != 5)
		return kw_drop(ctx, p, KW_STAT_DROP_IP_OPTIONS, shift);
	if (kw_parse_l4(p, data_end) < 0)
		return kw_drop(ctx, p, KW_STAT_DROP_MALFORMED_L4, shift);
	if (p->kind == KW_L4_ECHO_REPLY || p->kind == KW_L4_ICMP_ERROR)
		return kw_pass(p, KW_STAT_PASS_HOST_REPLY);
	if (p->kind == KW_L4_TCP || p->kind == KW_L4_UDP) {
		t.ipv4.saddr = p->key.saddr;
		t.ipv4.daddr = p->key.daddr;
		t.ipv4.sport = p->key.sport;
		t.ipv4.dport = p->key.dport;
		if (kw_host_owns(ctx, &t, sizeof(t.ipv4), p->kind == KW_L4_TCP))
			return kw_pass(p, KW_STAT_PASS_HOST_REPLY);
	}
	if (kw_rule_match(cfg, bank, KW_TABLE_INGRESS, p->key.saddr, p, 0))
		return kw_pass(p, KW_STAT_PASS_TO_HOST);
	return kw_drop(ctx, p, KW_STAT_DROP_HOST_DENIED, shift);
}

/*
 * Whether the kernel would forward this IPv6 packet (a route that is not
 * local, forwarding on): transit, which no rule opens. Local destinations
 * (NOT_FWDED), forwarding off, and no route all stay with the host.
 */
static __always_inline int kw_ipv6_transit(struct xdp_md *ctx, const struct ipv6hdr *ip6)
{
	struct bpf_fib_lookup fib;
	long rc;

	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = KW_AF_INET6;
	fib.l4_protocol = ip6->nexthdr;
	fib.tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	__builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
	fib.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	return rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH ||
	       rc == BPF_FIB_LKUP_RET_FRAG_NEEDED;
}

/*
 * A packet an IPv6 rule of firewall.ingress allows: to the host, unless the
 * kernel would forward it (IPv6 never crosses the gateway: drop_ipv6).
 */
static __always_inline int kw_host_allowed6(struct xdp_md *ctx, struct kw_pkt *p,
					    const struct ipv6hdr *ip6, __u8 shift)
{
	if (kw_ipv6_transit(ctx, ip6))
		return kw_drop(ctx, p, KW_STAT_DROP_IPV6, shift);
	return kw_pass(p, KW_STAT_PASS_TO_HOST);
}

/*
 * IPv6 on the public side to an address of the node (not link-local, not
 * multicast: neighbour discovery and MLD stay the host's). The same rule as
 * IPv4: flows the node opened (socket lookup), ICMPv6 errors, echo replies
 * and neighbour discovery pass, and the IPv6 rules of firewall.ingress
 * (kw_rule_match6: TCP, UDP by port, ICMPv6 such as echo requests) open the
 * rest for the node's own addresses, never for transit (kw_ipv6_transit);
 * anything else, extension headers and fragments included, is dropped
 * and counted.
 */
static __always_inline int kw_host_inbound6(struct xdp_md *ctx, struct kw_pkt *p, void *data_end,
					    const struct kw_config *cfg, __u32 bank)
{
	struct ipv6hdr *ip6 = (void *)(p->eth + 1);
	__u8 shift = cfg->sample_shift;
	struct bpf_sock_tuple t = {};
	__be16 *ports;
	__u8 *icmp;

	if ((void *)(ip6 + 1) > data_end)
		return kw_drop(ctx, p, KW_STAT_DROP_MALFORMED, shift);
	if (kw_ipv6_link_scope(ip6))
		return kw_pass(p, KW_STAT_PASS_NOT_IPV4);
	if (ip6->nexthdr == IPPROTO_ICMPV6) {
		icmp = (void *)(ip6 + 1);
		if ((void *)(icmp + 1) > data_end)
			return kw_drop(ctx, p, KW_STAT_DROP_MALFORMED_L4, shift);
		/* errors 1-4, echo reply 129, router/neighbour discovery 133-137 */
		if (icmp[0] <= 4 || icmp[0] == 129 || (icmp[0] >= 133 && icmp[0] <= 137))
			return kw_pass(p, KW_STAT_PASS_HOST_REPLY);
		if (kw_rule_match6(cfg, bank, &ip6->saddr, IPPROTO_ICMPV6, 0, 0))
			return kw_host_allowed6(ctx, p, ip6, shift);
		return kw_drop(ctx, p, KW_STAT_DROP_HOST_DENIED, shift);
	}
	if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP)
		return kw_drop(ctx, p, KW_STAT_DROP_HOST_DENIED, shift);
	ports = (void *)(ip6 + 1);
	if ((void *)(ports + 2) > data_end)
		return kw_drop(ctx, p, KW_STAT_DROP_MALFORMED_L4, shift);
	__builtin_memcpy(t.ipv6.saddr, &ip6->saddr, 16);
	__builtin_memcpy(t.ipv6.daddr, &ip6->daddr, 16);
	t.ipv6.sport = ports[0];
	t.ipv6.dport = ports[1];
	if (kw_host_owns(ctx, &t, sizeof(t.ipv6), ip6->nexthdr == IPPROTO_TCP))
		return kw_pass(p, KW_STAT_PASS_HOST_REPLY);
	if (kw_rule_match6(cfg, bank, &ip6->saddr, ip6->nexthdr, ports[1], 1))
		return kw_host_allowed6(ctx, p, ip6, shift);
	return kw_drop(ctx, p, KW_STAT_DROP_HOST_DENIED, shift);
}

#endif /* KW_HOST_H */
