/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_icmp.h - ICMP errors (unreachable, time exceeded, parameter problem)
 * about translated flows: found through the embedded header, translated in
 * the outer and the embedded headers, so path MTU discovery and error
 * reporting work through the NAT. Shared by Kawaii and Konvey.
 */
#ifndef KW_ICMP_H
#define KW_ICMP_H

#include "kw_counters.h"
#include "kw_ct.h"
#include "kw_nat.h"
#include "kw_fwd.h"

/* kw_icmp_find found the flow (not a kw_stat value). */
#define KW_ICMP_FOUND KW_STAT_COUNT

/* The flow an ICMP error is about. */
struct kw_icmp_ref {
	struct kw_ct_value *v;
	__be32 peer;  /* the embedded packet's destination: the flow's peer */
	__u8 itype;   /* embedded ICMP type, for an error about an echo */
};

/*
 * Find the flow an ICMP error (p, of kind KW_L4_ICMP_ERROR, arrived on an
 * interface of `role`) is about: the embedded packet travelled in the
 * opposite direction, so its reversed tuple is a conntrack key. Returns
 * KW_ICMP_FOUND with ref filled, or the kw_stat saying why not (the caller
 * drops or passes). Nothing is written to the packet.
 */
static __always_inline __u32 kw_icmp_find(struct xdp_md *ctx, struct kw_pkt *p, __u8 role,
					  struct kw_icmp_ref *ref)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *icmp = p->l4;
	struct iphdr *in = (void *)(icmp + KW_ICMP_LEN);
	__u8 *il4 = (void *)(in + 1);
	__u16 avail = bpf_ntohs(p->ip->tot_len) - sizeof(struct iphdr);
	struct kw_ct_key k;
	struct kw_ct_value *v;
	__be16 isport = 0, idport = 0;
	__u8 itype = 0;
	int emb;

	if ((void *)(il4 + 8) > data_end || avail < KW_ICMP_LEN + sizeof(struct iphdr) + 8)
		return KW_STAT_DROP_MALFORMED_L4;
	if (in->version != 4 || in->ihl != 5)
		return KW_STAT_DROP_UNSUPPORTED;
	if (in->protocol == IPPROTO_TCP || in->protocol == IPPROTO_UDP) {
		isport = *(__be16 *)il4;
		idport = *(__be16 *)(il4 + 2);
	} else if (in->protocol == IPPROTO_ICMP) {
		itype = il4[0];
		if (itype == KW_ICMP_ECHO)
			isport = *(__be16 *)(il4 + 4);
		else if (itype == KW_ICMP_ECHOREPLY)
			idport = *(__be16 *)(il4 + 4);
		else
			return KW_STAT_DROP_UNSUPPORTED;
	} else {
		return KW_STAT_DROP_UNSUPPORTED;
	}

	kw_ct_reverse(&k, in->saddr, in->daddr, isport, idport, in->protocol);
	v = kw_ct_lookup(&k, &emb);
	if (!v || v->in_role != role || p->ip->daddr != in->saddr)
		return KW_STAT_DROP_ICMP_UNMATCHED;
	ref->v = v;
	ref->peer = k.saddr;
	ref->itype = itype;
	return KW_ICMP_FOUND;
}

/*
 * Translate an ICMP error about the flow of ref (from kw_icmp_find) and
 * forward it: the outer header goes to the flow's original endpoint (from
 * the flow's translated address when the peer itself sent it), the embedded
 * header becomes the reverse of the flow's rewritten tuple.
 */
static __always_inline int kw_icmp_forward(struct xdp_md *ctx, struct kw_pkt *p,
					   const struct kw_icmp_ref *ref, __u8 shift)
{
	void *data_end = (void *)(long)ctx->data_end;
	const struct kw_ct_value *v = ref->v;
	__u8 *icmp = p->l4;
	struct iphdr *in = (void *)(icmp + KW_ICMP_LEN);
	__u8 *il4 = (void *)(in + 1);
	__u16 avail = bpf_ntohs(p->ip->tot_len) - sizeof(struct iphdr);
	__u16 *icmp_sum, *l4sum = 0, *idp = 0;
	__u8 itype = ref->itype;
	struct kw_nat n;
	struct bpf_fib_lookup fib;
	long rc;

	if (kw_ttl_expiring(p))
		return kw_pass(p, KW_STAT_PASS_TTL);

	/* outer: to the flow's original endpoint; from the VIP if the peer sent it */
	n.daddr = v->nat_daddr;
	n.saddr = p->ip->saddr == ref->peer ? v->nat_saddr : p->ip->saddr;
	rc = kw_fib(ctx, p, n.saddr, n.daddr, &fib);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return kw_pass(p, KW_STAT_PASS_FIB);

	/* re-check every byte we read or write, relative to data_end */
	if ((void *)(il4 + 8) > data_end)
		return kw_drop(ctx, p, KW_STAT_DROP_MALFORMED_L4, shift);
	icmp_sum = (__u16 *)(icmp + 2);
	if (in->protocol == IPPROTO_UDP) {
		if (*(__u16 *)(il4 + 6))
			l4sum = (__u16 *)(il4 + 6);
	} else if (in->protocol == IPPROTO_TCP) {
		if ((void *)(il4 + 18) <= data_end &&
		    avail >= KW_ICMP_LEN + sizeof(struct iphdr) + 18)
			l4sum = (__u16 *)(il4 + 16);
	}

	/* embedded packet: reverse of the flow's rewritten tuple */
	kw_icmp_addr(icmp_sum, (__u16 *)&in->check, l4sum, &in->saddr, v->nat_daddr);
	kw_icmp_addr(icmp_sum, (__u16 *)&in->check, l4sum, &in->daddr, v->nat_saddr);
	if (in->protocol == IPPROTO_ICMP) {
		idp = (__u16 *)(il4 + 4);
		kw_icmp_field2(icmp_sum, (__u16 *)(il4 + 2), idp,
			       itype == KW_ICMP_ECHO ? v->nat_dport : v->nat_sport);
	} else {
		kw_icmp_field2(icmp_sum, l4sum, (__u16 *)il4, v->nat_dport);
		kw_icmp_field2(icmp_sum, l4sum, (__u16 *)(il4 + 2), v->nat_sport);
		if (in->protocol == IPPROTO_UDP && l4sum && *l4sum == 0) {
			*l4sum = 0xffff;
			kw_csum_replace2(icmp_sum, 0, 0xffff);
		}
	}

	/* outer header (the ICMP checksum does not cover it) */
	{
		struct iphdr *ip = p->ip;

		if ((void *)(ip + 1) > data_end)
			return kw_drop(ctx, p, KW_STAT_DROP_MALFORMED, shift);
		if (ip->saddr != n.saddr) {
			kw_csum_replace4(&ip->check, ip->saddr, n.saddr);
			ip->saddr = n.saddr;
		}
		if (ip->daddr != n.daddr) {
			kw_csum_replace4(&ip->check, ip->daddr, n.daddr);
			ip->daddr = n.daddr;
		}
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return kw_pass(p, KW_STAT_PASS_NO_NEIGH);
	return kw_fwd_commit(p, data_end, &fib);
}

#endif /* KW_ICMP_H */
