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
 * Each CPU also keeps one bit per set (kw_fc_live): set when a slot of the
 * set is filled, cleared when a probe finds none of its slots usable. A
 * packet whose set has no bit skips the probe, so a flood of new flows does
 * not pay a cache miss on the slots per packet (the bitmap is 32 KiB per
 * CPU at most: it stays in the CPU's cache). The slow path never trusts the
 * bit: it always looks for the flow's slot (pending counters).
 *
 * A slot is filled by kw_established() after a successful FIB lookup, only
 * for a confirmed entry in state ESTABLISHED. A packet takes it when its
 * tuple and ingress role match, the slot's generation is current, it is
 * younger than KW_FC_LIFE_UNITS (about 2 s), and the packet needs nothing the slow path
 * does: no SYN, FIN or RST, TTL above 1, no longer than a packet the FIB
 * lookup accepted (MTU). Anything else takes the slow path, which folds the
 * slot's pending counters into the conntrack entry and refills it. A slot
 * is refilled in place; a flow without one takes an empty way or one whose
 * slot is no longer usable (stale generation, expired), never a slot still
 * live: when more flows than ways meet in one set, the first two keep their
 * slots (filling the older would have every flow of the set evict another,
 * none ever hitting) and the others take the slow path until a way frees
 * (counted: KW_FC_SET_FULL). So:
 *  - the daemon bumps kw_fc_gen[0] on every rtnetlink route, neighbour,
 *    address or link message (fcache::RouteWatch); without it a routing
 *    change would reach a cached flow within the slot's life, and a failing
 *    FIB lookup empties the slot at once;
 *  - the entry's packets and bytes lag by the packets counted in the slot
 *    (folded back at the next slow-path packet of the flow, or when the
 *    slot is evicted), and last_seen by at most about 3 s (the slot's life
 *    and the entry's refresh interval; the shortest timeout is 60 s);
 *  - whatever changes conntrack from user space (the sweep's deletions,
 *    inserts) bumps kw_fc_gen[0], which empties every slot.
 */
#ifndef KW_FCACHE_H
#define KW_FCACHE_H

#include "kw_maps.h"
#include "kw_parse.h"
#include "kw_nat.h"
#include "kw_fwd.h"

/*
 * Slot life, in units of 2^20 ns (about 1.05 ms): about 2 s. Each live flow
 * takes the slow path once per life; with 500 ms that was about 5 % of the
 * packets of 65,536 flows at 2.6 Mpps.
 */
#define KW_FC_LIFE_UNITS 1907
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

/*
 * One bit per set, a word per 64 sets: CPUs x sets / 64 words, sized by the
 * loader. Not pinned.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2 * 1024 / 64);
} kw_fc_live SEC(".maps");

/* kw_fc_gen[0]: the generation slots must carry; user space bumps it. Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} kw_fc_gen SEC(".maps");

/* kw_fc_stats[i]: what the cache did on each CPU (not outcomes: every
 * packet is still counted once in kw_stats). */
enum kw_fc_stat {
	KW_FC_HIT = 0,   /* a packet forwarded from a slot */
	KW_FC_FILL = 1,  /* a slot (re)filled on the slow path */
	KW_FC_EVICT = 2, /* a slot holding another flow taken over */
	KW_FC_SET_FULL = 3, /* not filled: every way holds another live flow */
	KW_FC_STAT_COUNT = 4,
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

/* The tuple's hash: murmur3's 64-bit finalizer, so every input bit reaches the set index. */
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

/* Where a tuple's slots and bit are on this CPU. */
struct kw_fc_pos {
	__u32 slot; /* index of way 0 of the set in kw_fcache */
	__u32 word; /* index of the set's word in kw_fc_live */
	__u64 bit;  /* the set's bit in it */
};

static __always_inline void kw_fc_pos_of(const struct kw_ct_key *k, struct kw_fc_pos *pos)
{
	__u32 sets = kw_fc_set_mask + 1;
	__u32 set = kw_fc_hash(k) & kw_fc_set_mask;
	__u32 cpu = bpf_get_smp_processor_id();

	pos->slot = (cpu * sets + set) * KW_FC_WAYS;
	pos->word = (cpu * sets + set) / 64;
	pos->bit = 1ull << (set % 64);
}

/* The two ways of pos's set; 0 if either is out of the map. */
static __always_inline int kw_fc_ways(const struct kw_fc_pos *pos, struct kw_fc_slot **a,
				      struct kw_fc_slot **b)
{
	__u32 i = pos->slot;

	*a = bpf_map_lookup_elem(&kw_fcache, &i);
	i++;
	*b = bpf_map_lookup_elem(&kw_fcache, &i);
	return *a && *b;
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

/* Whether slot s holds (k, role), filled or stale. */
static __always_inline int kw_fc_holds(const struct kw_fc_slot *s, const struct kw_ct_key *k,
				       __u8 role)
{
	return s->ifindex && s->role == role && kw_fc_key_eq(&s->key, k);
}

/* The slot of this CPU holding (k, role) in k's set pos, filled or stale; NULL if none. */
static __always_inline struct kw_fc_slot *kw_fc_slot_of(const struct kw_fc_pos *pos,
							const struct kw_ct_key *k, __u8 role)
{
	struct kw_fc_slot *a, *b;

	if (!kw_fc_ways(pos, &a, &b))
		return 0;
	if (kw_fc_holds(a, k, role))
		return a;
	if (kw_fc_holds(b, k, role))
		return b;
	return 0;
}

/* Whether packet p, arriving on role, may be forwarded from a slot. */
static __always_inline int kw_fc_cacheable(const struct kw_pkt *p)
{
	return p->ip->ttl > 1 &&
	       !(p->kind == KW_L4_TCP && (p->tcp_flags & (KW_TCP_SYN | KW_TCP_FIN | KW_TCP_RST)));
}

/* Whether slot s can still forward packets (generation gen, time t in units). */
static __always_inline int kw_fc_usable(const struct kw_fc_slot *s, __u32 gen, __u32 t)
{
	return s->ifindex && s->gen == gen && t - s->since < KW_FC_LIFE_UNITS;
}

/*
 * The slot p may take (see the top of this file), or NULL. A set whose bit
 * is clear is not probed; a probe that finds neither way usable clears it.
 * Built with -DKW_NO_FCACHE (the benches' baseline) there is never one, and
 * nothing is filled.
 */
static __always_inline struct kw_fc_slot *kw_fc_find(const struct kw_pkt *p, __u8 role, __u64 now)
{
	struct kw_fc_slot *a, *b, *s;
	struct kw_fc_pos pos;
	__u32 gen, t;
	__u64 *live;

#ifdef KW_NO_FCACHE
	return 0;
#endif
	if (!kw_fc_cacheable(p))
		return 0;
	kw_fc_pos_of(&p->key, &pos);
	live = bpf_map_lookup_elem(&kw_fc_live, &pos.word);
	if (!live || !(*live & pos.bit))
		return 0;
	if (!kw_fc_ways(&pos, &a, &b))
		return 0;
	gen = kw_fc_current_gen();
	t = kw_fc_now(now);
	if (kw_fc_holds(a, &p->key, role)) {
		s = a;
	} else if (kw_fc_holds(b, &p->key, role)) {
		s = b;
	} else {
		if (!kw_fc_usable(a, gen, t) && !kw_fc_usable(b, gen, t))
			*live &= ~pos.bit;
		return 0;
	}
	if (!kw_fc_usable(s, gen, t) || s->pkts == 0xffff ||
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
 * Cache p's flow (entry v, translation n, next hop fib) on this CPU, in its
 * set pos: in `mine` (the slot that held the flow, its counters folded already), else
 * in the set's empty way, else in a way no longer usable (the older if
 * both), whose counters are folded into its entry; not at all when both
 * ways hold live flows. Sets the set's bit.
 */
static __always_inline void kw_fc_fill(const struct kw_fc_pos *pos, struct kw_fc_slot *mine,
				       const struct kw_pkt *p, const struct kw_ct_value *v,
				       const struct kw_nat *n, const struct bpf_fib_lookup *fib,
				       __u64 now)
{
	struct kw_fc_slot *s = mine, *a, *b;
	__u32 gen, t;
	__u64 *live;
	int ua, ub;

#ifdef KW_NO_FCACHE
	return;
#endif
	gen = kw_fc_current_gen();
	t = kw_fc_now(now);
	live = bpf_map_lookup_elem(&kw_fc_live, &pos->word);
	if (!live)
		return;
	if (!s) {
		if (!kw_fc_ways(pos, &a, &b))
			return;
		if (!a->ifindex) {
			s = a;
		} else if (!b->ifindex) {
			s = b;
		} else {
			ua = kw_fc_usable(a, gen, t);
			ub = kw_fc_usable(b, gen, t);
			if (ua && ub) {
				kw_fc_count(KW_FC_SET_FULL);
				return;
			}
			if (ua)
				s = b;
			else if (ub)
				s = a;
			else
				s = (__s32)(b->since - a->since) < 0 ? b : a;
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
	s->since = t;
	s->gen = gen;
	s->ifindex = fib->ifindex;
	*live |= pos->bit;
}

#endif /* KW_FCACHE_H */
