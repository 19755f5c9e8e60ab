/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_fwd.h - forwarding: bpf_fib_lookup for the next hop and its MACs, then
 * bpf_redirect. The lookup runs on the translated addresses before the
 * packet is touched, so a packet the kernel must handle (MTU, unreachable)
 * reaches it untranslated and the kernel's ICMP answer goes to the sender.
 */
#ifndef KW_FWD_H
#define KW_FWD_H

#include "kw_csum.h"
#include "kw_counters.h"

#define KW_AF_INET 2
#define KW_AF_INET6 10

/* TTL <= 1: forwarding would expire it; the kernel answers instead. */
static __always_inline int kw_ttl_expiring(const struct kw_pkt *p)
{
	return p->ip->ttl <= 1;
}

static __always_inline long kw_fib(struct xdp_md *ctx, const struct kw_pkt *p, __be32 saddr,
				   __be32 daddr, struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = KW_AF_INET;
	fib->tos = p->ip->tos;
	fib->l4_protocol = p->ip->protocol;
	fib->tot_len = bpf_ntohs(p->ip->tot_len);
	fib->ipv4_src = saddr;
	fib->ipv4_dst = daddr;
	fib->ifindex = ctx->ingress_ifindex;
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* After the rewrite: TTL, MACs, redirect to the next hop (egress ifindex, MACs). */
static __always_inline int kw_fwd_commit_to(const struct kw_pkt *p, void *data_end, __u32 ifindex,
					    const __u8 *smac, const __u8 *dmac)
{
	struct iphdr *ip = p->ip;
	struct ethhdr *eth = p->eth;
	__u16 old;

	if ((void *)(eth + 1) > data_end || (void *)(ip + 1) > data_end) {
		kw_count(KW_STAT_DROP_MALFORMED, p->len);
		return XDP_DROP;
	}
	old = *(__u16 *)&ip->ttl;
	ip->ttl--;
	kw_csum_replace2(&ip->check, old, *(__u16 *)&ip->ttl);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	kw_count(KW_STAT_FWD_REDIRECT, p->len);
	return bpf_redirect(ifindex, 0);
}

/* After a successful lookup and the rewrite: TTL, MACs, redirect. */
static __always_inline int kw_fwd_commit(const struct kw_pkt *p, void *data_end,
					 const struct bpf_fib_lookup *fib)
{
	return kw_fwd_commit_to(p, data_end, fib->ifindex, fib->smac, fib->dmac);
}

#endif /* KW_FWD_H */
