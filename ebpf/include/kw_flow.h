/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_flow.h - the flow life cycle every translating program shares: forward
 * a packet of a tracked flow, or create both conntrack entries of a new flow
 * (allocating a source port when it is source-translated) and forward it.
 */
#ifndef KW_FLOW_H
#define KW_FLOW_H

#include "kw_counters.h"
#include "kw_ct.h"
#include "kw_nat.h"
#include "kw_fwd.h"
#include "kw_fcache.h"

/* What flow creation needs from a program's configuration. */
struct kw_flow_env {
	__u16 port_min;    /* source-translation port range, host order */
	__u16 port_max;
	__u8 sample_shift; /* drop events: one in 2^shift */
	__u8 lb;           /* Konvey: the flow's entries carry lb_slot (KW_CT_F_LB) */
	__u16 lb_slot;     /* with lb: the backend's counter slot */
};

/*
 * A packet that cannot be redirected as it is fails closed. Two paths reach
 * the kernel translated, where it does what a NAT router does: an unresolved
 * next hop (the kernel resolves it) and an oversized packet with DF clear
 * (the kernel fragments it). Otherwise (no route, blackhole, oversized with
 * DF set, TTL expiring): a packet whose destination the flow keeps goes to
 * the kernel untranslated, and the kernel answers its sender as a router
 * (unreachable, fragmentation needed, time exceeded) before its forward
 * hook, where the daemon's nftables backstop drops any untranslated egress;
 * a packet whose destination the flow translates (inbound DNAT, replies,
 * Konvey) would be delivered to the host itself untranslated: dropped and
 * counted.
 */
static __always_inline int kw_dst_kept(const struct kw_pkt *p, const struct kw_nat *n)
{
	return n->daddr == p->key.daddr;
}

/* TTL <= 1 on a forwarded path: see above. */
static __always_inline int kw_ttl_path(struct xdp_md *ctx, const struct kw_pkt *p,
				       const struct kw_nat *n, __u8 shift)
{
	if (kw_dst_kept(p, n))
		return kw_pass(p, KW_STAT_PASS_TTL);
	return kw_drop(ctx, p, KW_STAT_DROP_TTL, shift);
}

/* What a FIB lookup other than success (rc) leaves for packet p, to be translated to n. */
static __always_inline int kw_translate_failed(struct xdp_md *ctx, struct kw_pkt *p,
					       const struct kw_nat *n, long rc, __u8 shift)
{
	void *data_end = (void *)(long)ctx->data_end;

	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		/* the kernel resolves the neighbour and forwards it translated */
		kw_rewrite(p, data_end, n);
		return kw_pass(p, KW_STAT_PASS_NO_NEIGH);
	}
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && !(p->ip->frag_off & bpf_htons(KW_IP_DF))) {
		/* the kernel fragments the translated datagram, as Linux NAT does */
		kw_rewrite(p, data_end, n);
		return kw_pass(p, KW_STAT_PASS_FRAGMENT);
	}
	if (kw_dst_kept(p, n))
		return kw_pass(p, KW_STAT_PASS_FIB);
	return kw_drop(ctx, p, KW_STAT_DROP_FIB, shift);
}

/* Translate (possibly to the same tuple) and forward a packet. */
static __always_inline int kw_translate_forward(struct xdp_md *ctx, struct kw_pkt *p,
						const struct kw_nat *n, __u8 shift)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib;
	long rc = kw_fib(ctx, p, n->saddr, n->daddr, &fib);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		kw_rewrite(p, data_end, n);
		return kw_fwd_commit(p, data_end, &fib);
	}
	return kw_translate_failed(ctx, p, n, rc, shift);
}

/*
 * A packet of a tracked flow (v keyed p->key, emb: from kw_ct4_new), on the
 * slow path: the counters this CPU's flow cache holds for the flow are
 * folded into v first; a confirmed, established flow forwarded without
 * anything special is cached again (kw_fcache.h), a failing FIB lookup
 * empties its slot. The tuple is hashed once for both (pos).
 */
static __always_inline int kw_established(struct xdp_md *ctx, struct kw_pkt *p,
					  struct kw_ct_value *v, int emb, __u8 shift)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct kw_fc_pos pos;
	struct kw_fc_slot *s;
	struct kw_nat n = {
		.saddr = v->nat_saddr,
		.daddr = v->nat_daddr,
		.sport = v->nat_sport,
		.dport = v->nat_dport,
	};
	struct bpf_fib_lookup fib;
	__u64 now;
	long rc;

	kw_fc_pos_of(&p->key, &pos);
	s = kw_fc_slot_of(&pos, &p->key, v->in_role);
	if (s)
		kw_fc_fold(s, v);
	kw_ct_touch(v, p, emb); /* may confirm the flow: n is copied already */
	if (kw_ttl_expiring(p))
		return kw_ttl_path(ctx, p, &n, shift);
	rc = kw_fib(ctx, p, n.saddr, n.daddr, &fib);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (!emb && v->state == KW_CT_ESTABLISHED && kw_fc_cacheable(p)) {
			now = bpf_ktime_get_coarse_ns();
			kw_fc_fill(&pos, s, p, v, &n, &fib, now);
		}
		kw_rewrite(p, data_end, &n);
		return kw_fwd_commit(p, data_end, &fib);
	}
	if (s)
		s->ifindex = 0;
	return kw_translate_failed(ctx, p, &n, rc, shift);
}

/*
 * Create both entries of a flow whose original packet p is rewritten to n;
 * the reply entry is keyed by the reverse of n and rewritten to the reverse
 * of the original tuple. With snat, n.sport (the translated source port or
 * echo id) is allocated here. Then forward p.
 */
static __always_inline int kw_new_flow(struct xdp_md *ctx, struct kw_pkt *p,
				       const struct kw_flow_env *fe, struct kw_nat *n, __u8 in_role,
				       __u8 reply_role, __u8 flags, int snat)
{
	__u8 shift = fe->sample_shift;
	__u64 now = bpf_ktime_get_coarse_ns();
	struct kw_ct_key rk;
	struct kw_ct_value ov, rv;
	int rc;

	if (p->kind == KW_L4_TCP &&
	    (p->tcp_flags & (KW_TCP_SYN | KW_TCP_ACK | KW_TCP_RST | KW_TCP_FIN)) != KW_TCP_SYN)
		return kw_drop(ctx, p, KW_STAT_DROP_TCP_NOT_SYN, shift);
	if (kw_ttl_expiring(p))
		return kw_ttl_path(ctx, p, n, shift);

	if (fe->lb)
		flags |= KW_CT_F_LB;
	kw_ct_fill(&rv, p->key.daddr, p->key.saddr, p->key.dport, p->key.sport, reply_role,
		   flags | KW_CT_F_REPLY, now);
	rv.lb_slot = fe->lb_slot;
	kw_ct_reverse(&rk, n->saddr, n->daddr, n->sport, n->dport, p->key.proto);
	if (snat) {
		rc = kw_snat_reserve(fe->port_min, fe->port_max, &p->key, p->key.sport, &rk, &rv);
		if (rc == KW_CT_EXISTS)
			return kw_drop(ctx, p, KW_STAT_DROP_NO_PORT, shift);
		n->sport = rk.dport;
	} else {
		rc = kw_ct_insert_reply(&rk, &rv);
		if (rc == KW_CT_EXISTS)
			return kw_drop(ctx, p, KW_STAT_DROP_CT_COLLISION, shift);
	}
	if (rc != KW_CT_OK)
		return kw_drop(ctx, p, KW_STAT_DROP_CT_FULL, shift);

	kw_ct_fill(&ov, n->saddr, n->daddr, n->sport, n->dport, in_role, flags, now);
	ov.lb_slot = fe->lb_slot;
	ov.packets = 1;
	ov.bytes = p->len;
	if (kw_ct_insert_orig(&p->key, &ov, &rk, p->ct_absent) != KW_CT_OK)
		return kw_drop(ctx, p, KW_STAT_DROP_CT_COLLISION, shift);
	return kw_translate_forward(ctx, p, n, shift);
}

#endif /* KW_FLOW_H */
