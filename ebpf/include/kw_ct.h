/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_ct.h - connection tracking over two shared tables (kw_maps.h).
 * A flow is two entries, original and reply direction. A new flow is
 * embryonic: both entries go into the LRU hash kw_ct4_new, created with
 * BPF_NOEXIST (the reply first: it is what reserves a translated tuple) and
 * rolled back when the second insert fails; a tuple already confirmed is
 * taken. The flow is confirmed (both entries moved to the plain hash kw_ct4,
 * then removed from kw_ct4_new) when its initiator proves it hears the
 * other side: UDP and ICMP echo on the first reply, TCP on the first packet
 * from the initiator after the reply (the handshake's ACK), which a spoofed
 * SYN never sends. A flood of new flows only evicts embryonic entries; a
 * full kw_ct4 refuses the confirmation (KW_STAT_CT_CONFIRM_FULL, the flow
 * stays embryonic) and never evicts a confirmed flow. Lookups try kw_ct4
 * first, then kw_ct4_new. Expiry is the daemon's job (both tables).
 */
#ifndef KW_CT_H
#define KW_CT_H

#include "kw_maps.h"
#include "kw_parse.h"
#include "kw_counters.h"

/* Refresh last_seen at most once a second: fewer writes to shared lines. */
#define KW_CT_REFRESH_NS 1000000000ull

static __always_inline void kw_ct_reverse(struct kw_ct_key *out, __be32 saddr, __be32 daddr,
					  __be16 sport, __be16 dport, __u8 proto)
{
	out->saddr = daddr;
	out->daddr = saddr;
	out->sport = dport;
	out->dport = sport;
	out->proto = proto;
	out->_pad[0] = 0;
	out->_pad[1] = 0;
	out->_pad[2] = 0;
}

/* Key of the other entry of the flow that v belongs to. */
static __always_inline void kw_ct_peer_key(struct kw_ct_key *out, const struct kw_ct_value *v,
					   __u8 proto)
{
	kw_ct_reverse(out, v->nat_saddr, v->nat_daddr, v->nat_sport, v->nat_dport, proto);
}

/*
 * The entry keyed k: confirmed first, then embryonic; *emb says which table
 * it came from (1: kw_ct4_new).
 */
static __always_inline struct kw_ct_value *kw_ct_lookup(const struct kw_ct_key *k, int *emb)
{
	struct kw_ct_value *v = bpf_map_lookup_elem(&kw_ct4, k);

	*emb = 0;
	if (v)
		return v;
	v = bpf_map_lookup_elem(&kw_ct4_new, k);
	if (v)
		*emb = 1;
	return v;
}

/* The entry keyed k in one table (emb: kw_ct4_new, else kw_ct4). */
static __always_inline struct kw_ct_value *kw_ct_table_lookup(const struct kw_ct_key *k, int emb)
{
	if (emb)
		return bpf_map_lookup_elem(&kw_ct4_new, k);
	return bpf_map_lookup_elem(&kw_ct4, k);
}

static __always_inline void kw_ct_set_state(const struct kw_ct_value *v, __u8 proto, __u8 state,
					    int emb)
{
	struct kw_ct_key pk;
	struct kw_ct_value *pv;

	kw_ct_peer_key(&pk, v, proto);
	pv = kw_ct_table_lookup(&pk, emb);
	if (pv)
		pv->state = state;
}

/*
 * Confirm the embryonic flow of entry (k, v): both entries into kw_ct4
 * (BPF_NOEXIST, the first undone if the second fails), then both out of
 * kw_ct4_new. Without its other entry (evicted) the flow stays embryonic;
 * so does it when kw_ct4 is full (counted: KW_STAT_CT_CONFIRM_FULL).
 */
static __always_inline void kw_ct_promote(const struct kw_ct_key *k, struct kw_ct_value *v,
					  __u8 proto)
{
	struct kw_ct_key pk;
	struct kw_ct_value *pv;
	long rc;

	kw_ct_peer_key(&pk, v, proto);
	pv = bpf_map_lookup_elem(&kw_ct4_new, &pk);
	if (!pv)
		return;
	rc = bpf_map_update_elem(&kw_ct4, k, v, BPF_NOEXIST);
	if (rc == 0) {
		rc = bpf_map_update_elem(&kw_ct4, &pk, pv, BPF_NOEXIST);
		if (rc != 0)
			bpf_map_delete_elem(&kw_ct4, k);
	}
	if (rc != 0) {
		if (rc == -7 /* E2BIG: full */)
			kw_count(KW_STAT_CT_CONFIRM_FULL, 0);
		return;
	}
	bpf_map_delete_elem(&kw_ct4_new, k);
	bpf_map_delete_elem(&kw_ct4_new, &pk);
}

/*
 * Book-keeping for a packet of a tracked flow (p->key keys v, found in the
 * table emb says): counters, time, state, confirmation.
 */
static __always_inline void kw_ct_touch(struct kw_ct_value *v, const struct kw_pkt *p, int emb)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	__u8 state = v->state;

	/*
	 * Plain adds: an entry keys one direction of one flow, which one receive
	 * queue (one CPU) carries, so a lost increment is rare and only costs an
	 * operator's counter; a locked add on every packet costs every packet.
	 */
	v->packets += 1;
	v->bytes += p->len;
	if (now - v->last_seen_ns > KW_CT_REFRESH_NS)
		v->last_seen_ns = now;

	if (p->kind == KW_L4_TCP && (p->tcp_flags & (KW_TCP_FIN | KW_TCP_RST))) {
		if (state != KW_CT_CLOSING) {
			v->state = KW_CT_CLOSING;
			kw_ct_set_state(v, p->key.proto, KW_CT_CLOSING, emb);
		}
		return;
	}
	if (state == KW_CT_NEW && (v->flags & KW_CT_F_REPLY)) {
		v->state = KW_CT_ESTABLISHED;
		kw_ct_set_state(v, p->key.proto, KW_CT_ESTABLISHED, emb);
		state = KW_CT_ESTABLISHED;
	}
	/* UDP, ICMP: the first reply confirms; TCP: the initiator's next packet */
	if (emb && state == KW_CT_ESTABLISHED &&
	    (p->kind != KW_L4_TCP || !(v->flags & KW_CT_F_REPLY)))
		kw_ct_promote(&p->key, v, p->key.proto);
}

/* Result of kw_ct_create. */
enum kw_ct_create_rc {
	KW_CT_OK = 0,
	KW_CT_EXISTS = 1, /* the reply tuple is taken */
	KW_CT_RACE = 2,   /* the original tuple appeared meanwhile */
	KW_CT_ERROR = 3,  /* insert failed for another reason */
};

static __always_inline void kw_ct_fill(struct kw_ct_value *v, __be32 ns, __be32 nd, __be16 nsp,
				       __be16 ndp, __u8 role, __u8 flags, __u64 now)
{
	v->nat_saddr = ns;
	v->nat_daddr = nd;
	v->nat_sport = nsp;
	v->nat_dport = ndp;
	v->in_role = role;
	v->flags = flags;
	v->state = KW_CT_NEW;
	v->_pad = 0;
	v->last_seen_ns = now;
	v->packets = 0;
	v->bytes = 0;
	v->lb_slot = 0;
	__builtin_memset(v->_pad2, 0, sizeof(v->_pad2));
}

/*
 * Insert only the reply entry, embryonic (used to reserve a port while
 * probing); a tuple confirmed already is taken.
 */
static __always_inline int kw_ct_insert_reply(const struct kw_ct_key *rk,
					      const struct kw_ct_value *rv)
{
	long rc;

	if (bpf_map_lookup_elem(&kw_ct4, rk))
		return KW_CT_EXISTS;
	rc = bpf_map_update_elem(&kw_ct4_new, rk, rv, BPF_NOEXIST);
	if (rc == 0)
		return KW_CT_OK;
	return rc == -17 /* EEXIST */ ? KW_CT_EXISTS : KW_CT_ERROR;
}

/*
 * Insert the original entry once the reply entry is in; undo on failure.
 * known_absent: the caller's lookup of ok found nothing in either table a
 * moment ago (kw_pkt.ct_absent), so only kw_ct4_new's BPF_NOEXIST
 * guards the race; else kw_ct4 is looked at first.
 */
static __always_inline int kw_ct_insert_orig(const struct kw_ct_key *ok,
					     const struct kw_ct_value *ov,
					     const struct kw_ct_key *rk, int known_absent)
{
	if ((known_absent || !bpf_map_lookup_elem(&kw_ct4, ok)) &&
	    bpf_map_update_elem(&kw_ct4_new, ok, ov, BPF_NOEXIST) == 0)
		return KW_CT_OK;
	bpf_map_delete_elem(&kw_ct4_new, rk);
	return KW_CT_RACE;
}

#endif /* KW_CT_H */
