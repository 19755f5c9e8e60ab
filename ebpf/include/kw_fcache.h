/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_fcache.h - the per-CPU flow cache: what the established path decided
 * for a confirmed flow (its translation and next hop), so that the next
 * packets of the flow skip the conntrack hash lookup and the FIB lookup.
 *
 * With tens of thousands of flows the conntrack lookup costs two dependent
 * cache misses (the bucket, then the entry); a slot is one cache line found
 * by one index. Each CPU owns its own sets (2 ways), so no slot is ever
 * written by two CPUs; the loader sizes them (kw_fc_set_mask) and seeds the
 * hash (kw_fc_seed).
 *
 * A slot is filled by kw_established() after a successful FIB lookup, only
 * for a confirmed entry in state ESTABLISHED. A packet takes it when its
 * tuple and ingress role match, the slot's generation is current, it is
 * younger than KW_FC_LIFE_UNITS (about 500 ms), and the packet needs nothing the slow path
 * does: no SYN, FIN or RST, TTL above 1, no longer than a packet the FIB
 * lookup accepted (MTU). Anything else takes the slow path, which folds the
 * slot's pending counters into the conntrack entry and refills it. So:
 *  - the daemon bumps kw_fc_gen[0] on every rtnetlink route, neighbour,
 *    address or link message (fcache::RouteWatch); without it a routing
 *    change would reach a cached flow within the slot's life, and a failing
 *    FIB lookup empties the slot at once;
 *  - the entry's packets and bytes lag by the packets counted in the slot
 *    (folded back at the next slow-path packet of the flow, or when the
 *    slot is evicted), and last_seen by at most about 1.5 s;
 *  - whatever changes conntrack from user space (the sweep's deletions,
 *    inserts) bumps kw_fc_gen[0], which empties every slot.
 */
#ifndef KW_FCACHE_H
#define KW_FCACHE_H

#include "kw_maps.h"
#include "kw_parse.h"
#include "kw_nat.h"
#include "kw_fwd.h"

/* slot life, in units of 2^20 ns (about 1.05 ms): about 500 ms */
#define KW_FC_LIFE_UNITS 477
#define KW_FC_UNIT_SHIFT 20

/* Sets per CPU minus one (a power of two minus one) and the hash seed: set by the loader. */
const volatile __u32 kw_fc_set_mask = 1023;
const volatile __u64 kw_fc_seed = 0;

/* max_entries is set by the loader: CPUs x sets x KW_FC_WAYS. Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kw_fc_slot);
	__uint(max_entries, 2 * 1024 * KW_FC_WAYS);
} kw_fcache SEC(".maps");

/* kw_fc_gen[0]: the generation slots must carry; user space bumps it. Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} kw_fc_gen SEC(".maps");

/* The tuple's hash: murmur3's 64-bit finalizer, so every input bit reaches the set index. */
/* kw_fc_stats[i]: what the cache did on each CPU (not outcomes: every
 * packet is still counted once in kw_stats). */
enum kw_fc_stat {
	KW_FC_HIT = 0,   /* a packet forwarded from a slot */
	KW_FC_FILL = 1,  /* a slot (re)filled on the slow path */
	KW_FC_EVICT = 2, /* a slot holding another flow taken over */
	KW_FC_STAT_COUNT = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, KW_FC_STAT_COUNT);
} kw_fc_stats SEC(".maps");

static __always_inline void kw_fc_count(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&kw_fc_stats, &what);

	if (c)
		*c += 1;
}

static __always_inline __u32 kw_fc_hash(const struct kw_ct_key *k)
{
	__u64 h = ((__u64)k->saddr << 32 | k->daddr) ^ kw_fc_seed;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= (__u64)k->sport << 32 | (__u64)k->dport << 16 | k->proto;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return (__u32)h;
}

/* Index of way 0 of k's set among this CPU's slots. */
static __always_inline __u32 kw_fc_index(const struct kw_ct_key *k)
{
	__u32 sets = kw_fc_set_mask + 1;

	return (bpf_get_smp_processor_id() * sets + (kw_fc_hash(k) & kw_fc_set_mask)) * KW_FC_WAYS;
}

static __always_inline int kw_fc_key_eq(const struct kw_ct_key *a, const struct kw_ct_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline __u32 kw_fc_now(__u64 now_ns)
{
	return (__u32)(now_ns >> KW_FC_UNIT_SHIFT);
}

static __always_inline __u32 kw_fc_current_gen(void)
{
	__u32 zero = 0, *g = bpf_map_lookup_elem(&kw_fc_gen, &zero);

	return g ? *g : 0;
}

/* The slot of this CPU holding (k, role), filled or stale; NULL if none. */
static __always_inline struct kw_fc_slot *kw_fc_slot_of(const struct kw_ct_key *k, __u8 role)
{
	__u32 i = kw_fc_index(k);
	struct kw_fc_slot *s = bpf_map_lookup_elem(&kw_fcache, &i);

	if (s && s->ifindex && s->role == role && kw_fc_key_eq(&s->key, k))
		return s;
	i++;
	s = bpf_map_lookup_elem(&kw_fcache, &i);
	if (s && s->ifindex && s->role == role && kw_fc_key_eq(&s->key, k))
		return s;
	return 0;
}

/* Whether packet p, arriving on role, may be forwarded from a slot. */
static __always_inline int kw_fc_cacheable(const struct kw_pkt *p)
{
	return p->ip->ttl > 1 &&
	       !(p->kind == KW_L4_TCP && (p->tcp_flags & (KW_TCP_SYN | KW_TCP_FIN | KW_TCP_RST)));
}

/*
 * The slot p may take (see the top of this file), or NULL. Built with
 * -DKW_NO_FCACHE (the benches' baseline) there is never one, and nothing
 * is filled.
 */
static __always_inline struct kw_fc_slot *kw_fc_find(const struct kw_pkt *p, __u8 role, __u64 now)
{
	struct kw_fc_slot *s;

#ifdef KW_NO_FCACHE
	return 0;
#endif
	if (!kw_fc_cacheable(p))
		return 0;
	s = kw_fc_slot_of(&p->key, role);
	if (!s || s->gen != kw_fc_current_gen() || s->pkts == 0xffff ||
	    kw_fc_now(now) - s->since >= KW_FC_LIFE_UNITS ||
	    bpf_ntohs(p->ip->tot_len) > s->len_ok)
		return 0;
	return s;
}

/* Forward p from slot s (found by kw_fc_find). */
static __always_inline int kw_fc_forward(struct xdp_md *ctx, struct kw_pkt *p, struct kw_fc_slot *s)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct kw_nat n = {
		.saddr = s->nat_saddr,
		.daddr = s->nat_daddr,
		.sport = s->nat_sport,
		.dport = s->nat_dport,
	};

	s->pkts += 1;
	s->bytes += p->len;
	kw_fc_count(KW_FC_HIT);
	kw_rewrite(p, data_end, &n);
	return kw_fwd_commit_to(p, data_end, s->ifindex, s->smac, s->dmac);
}

/* Add a slot's pending counters to entry v and clear them. */
static __always_inline void kw_fc_fold(struct kw_fc_slot *s, struct kw_ct_value *v)
{
	v->packets += s->pkts;
	v->bytes += s->bytes;
	s->pkts = 0;
	s->bytes = 0;
}

/* Fold an evicted slot's pending counters into its confirmed entry, if it still exists. */
static __always_inline void kw_fc_evict(struct kw_fc_slot *s)
{
	struct kw_ct_value *v;

	if (!s->pkts)
		return;
	v = bpf_map_lookup_elem(&kw_ct4, &s->key);
	if (v)
		kw_fc_fold(s, v);
}

/*
 * Cache p's flow (entry v, translation n, next hop fib) on this CPU: in
 * `mine` (the slot that held the flow, its counters folded already) or in
 * the set's empty or older way, whose counters are folded into its entry.
 */
static __always_inline void kw_fc_fill(struct kw_fc_slot *mine, const struct kw_pkt *p,
				       const struct kw_ct_value *v, const struct kw_nat *n,
				       const struct bpf_fib_lookup *fib, __u64 now)
{
	struct kw_fc_slot *s = mine, *b;
	__u32 i;

#ifdef KW_NO_FCACHE
	return;
#endif
	if (!s) {
		i = kw_fc_index(&p->key);
		s = bpf_map_lookup_elem(&kw_fcache, &i);
		i++;
		b = bpf_map_lookup_elem(&kw_fcache, &i);
		if (!s || !b)
			return;
		if (s->ifindex && (!b->ifindex || (__s32)(b->since - s->since) < 0))
			s = b;
		if (s->ifindex) {
			kw_fc_evict(s);
			kw_fc_count(KW_FC_EVICT);
		}
	}
	kw_fc_count(KW_FC_FILL);
	s->key = p->key;
	s->nat_saddr = n->saddr;
	s->nat_daddr = n->daddr;
	s->nat_sport = n->sport;
	s->nat_dport = n->dport;
	__builtin_memcpy(s->smac, fib->smac, ETH_ALEN);
	__builtin_memcpy(s->dmac, fib->dmac, ETH_ALEN);
	s->len_ok = bpf_ntohs(p->ip->tot_len);
	s->role = v->in_role;
	s->flags = v->flags;
	s->lb_slot = v->lb_slot;
	s->pkts = 0;
	s->bytes = 0;
	s->since = kw_fc_now(now);
	s->gen = kw_fc_current_gen();
	s->ifindex = fib->ifindex;
}

#endif /* KW_FCACHE_H */
