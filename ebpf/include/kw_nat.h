/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_nat.h - tuple rewrite with incremental checksums, SNAT port
 * allocation, and translation of ICMP errors through their embedded header.
 */
#ifndef KW_NAT_H
#define KW_NAT_H

#include "kw_csum.h"
#include "kw_ct.h"

/* The rewritten tuple of a packet. */
struct kw_nat {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};

/*
 * Rewrite the packet's tuple to n, updating the IPv4 header checksum and the
 * TCP / UDP (pseudo-header) or ICMP echo checksum. A zero UDP checksum means
 * "none" and stays zero; an updated one that folds to zero is sent as 0xffff.
 */
static __always_inline void kw_rewrite(struct kw_pkt *p, void *data_end, const struct kw_nat *n)
{
	struct iphdr *ip = p->ip;
	__u8 *l4 = p->l4;
	__u16 *l4sum = 0;
	int udp = 0;

	if ((void *)(ip + 1) > data_end)
		return;
	if (p->kind == KW_L4_TCP) {
		if ((void *)l4 + KW_TCP_MIN > data_end)
			return;
		l4sum = (__u16 *)(l4 + 16);
	} else if (p->kind == KW_L4_UDP) {
		if ((void *)l4 + KW_UDP_LEN > data_end)
			return;
		udp = 1;
		if (*(__u16 *)(l4 + 6))
			l4sum = (__u16 *)(l4 + 6);
	} else if (p->kind == KW_L4_ECHO_REQ || p->kind == KW_L4_ECHO_REPLY) {
		if ((void *)l4 + KW_ICMP_LEN > data_end)
			return;
	}

	if (ip->saddr != n->saddr) {
		kw_csum_replace4(&ip->check, ip->saddr, n->saddr);
		if (l4sum)
			kw_csum_replace4(l4sum, ip->saddr, n->saddr);
		ip->saddr = n->saddr;
	}
	if (ip->daddr != n->daddr) {
		kw_csum_replace4(&ip->check, ip->daddr, n->daddr);
		if (l4sum)
			kw_csum_replace4(l4sum, ip->daddr, n->daddr);
		ip->daddr = n->daddr;
	}
	if (p->kind == KW_L4_TCP || p->kind == KW_L4_UDP) {
		__be16 *sp = (__be16 *)l4;
		__be16 *dp = (__be16 *)(l4 + 2);

		if (*sp != n->sport) {
			if (l4sum)
				kw_csum_replace2(l4sum, *sp, n->sport);
			*sp = n->sport;
		}
		if (*dp != n->dport) {
			if (l4sum)
				kw_csum_replace2(l4sum, *dp, n->dport);
			*dp = n->dport;
		}
		if (udp && l4sum && *l4sum == 0)
			*l4sum = 0xffff;
	} else if (p->kind == KW_L4_ECHO_REQ || p->kind == KW_L4_ECHO_REPLY) {
		__be16 *id = (__be16 *)(l4 + 4);
		__be16 nid = p->kind == KW_L4_ECHO_REQ ? n->sport : n->dport;

		if (*id != nid) {
			kw_csum_replace2((__u16 *)(l4 + 2), *id, nid);
			*id = nid;
		}
	}
}

/* Deterministic start of the SNAT port probe sequence (host-order inputs). */
static __always_inline __u32 kw_port_hash(const struct kw_ct_key *k)
{
	__u32 h = bpf_ntohl(k->saddr) * 0x9E3779B1u;

	h ^= bpf_ntohl(k->daddr) * 0x85EBCA77u;
	h ^= (((__u32)bpf_ntohs(k->sport) << 16) | bpf_ntohs(k->dport)) * 0xC2B2AE3Du;
	h ^= k->proto;
	h ^= h >> 15;
	return h;
}

/*
 * The i-th probe of a flow whose hash is h: probes land independently across
 * the range (consecutive ports from one hash would pile up into runs of taken
 * ports, which every later flow hashing into a run has to cross).
 */
static __always_inline __u32 kw_probe_mix(__u32 h, __u32 i)
{
	__u32 x = h + i * 0x9E3779B9u;

	x ^= x >> 16;
	x *= 0x7FEB352Du;
	x ^= x >> 15;
	return x;
}

/* State of the whole-range scan (bpf_loop callback below). */
struct kw_port_scan {
	struct kw_ct_key rk;
	struct kw_ct_value rv;
	__u32 lo;
	__u32 range;
	__u32 start;
	int rc;
};

static long kw_port_scan_step(__u32 i, void *data)
{
	struct kw_port_scan *s = data;

	if (s->range == 0)
		return 1;
	s->rk.dport = bpf_htons((__u16)(s->lo + (s->start + i) % s->range));
	s->rc = kw_ct_insert_reply(&s->rk, &s->rv);
	return s->rc != KW_CT_EXISTS; /* 1: stop */
}

/*
 * Was the port space (a reply tuple with dport 0) found full less than
 * KW_NOPORT_HOLD_NS before now (bpf_ktime_get_coarse_ns)?
 */
static __always_inline int kw_noport_held(const struct kw_ct_key *space, __u64 now)
{
	__u64 *full = bpf_map_lookup_elem(&kw_noport, space);

	return full && now - *full < KW_NOPORT_HOLD_NS;
}

/*
 * Reserve a translated port in [lo, hi] (host order) for a flow whose
 * original tuple is ok: insert the reply entry rk (its dport is the
 * candidate port) with BPF_NOEXIST. A port is unique per reply tuple, i.e.
 * per (translated address, remote address, remote port, protocol): every
 * destination has the whole range.
 * The original port is kept when it lies in the range and is free; else
 * KW_SNAT_MAX_PROBES ports spread by a hash of the tuple are tried, then the
 * whole range from the hash on (bpf_loop). A port space found full is marked
 * in kw_noport (key: rk with dport 0) for KW_NOPORT_HOLD_NS: its new flows
 * are refused at the cost of one lookup meanwhile, so a flood of flows that
 * cannot get a port does not scan the range per packet.
 * Returns KW_CT_OK with rk->dport set, KW_CT_EXISTS when no port was free,
 * or KW_CT_ERROR.
 */
static __always_inline int kw_snat_reserve(__u32 lo, __u32 hi, const struct kw_ct_key *ok,
					   __be16 orig_port, struct kw_ct_key *rk,
					   const struct kw_ct_value *rv)
{
	__u32 keep = bpf_ntohs(orig_port);
	struct kw_port_scan scan;
	struct kw_ct_key space;
	__u32 range, h;
	int rc;

	if (hi < lo || lo == 0)
		return KW_CT_EXISTS;
	range = hi - lo + 1;
	space = *rk;
	space.dport = 0;
	if (kw_noport_held(&space, rv->last_seen_ns))
		return KW_CT_EXISTS;
	if (keep >= lo && keep <= hi) {
		rk->dport = orig_port;
		rc = kw_ct_insert_reply(rk, rv);
		if (rc != KW_CT_EXISTS)
			return rc;
	}
	h = kw_port_hash(ok);
	for (__u32 i = 0; i < KW_SNAT_MAX_PROBES; i++) {
		__u32 port = lo + kw_probe_mix(h, i) % range;

		rk->dport = bpf_htons((__u16)port);
		rc = kw_ct_insert_reply(rk, rv);
		if (rc != KW_CT_EXISTS)
			return rc;
	}
	scan.rk = *rk;
	scan.rv = *rv;
	scan.lo = lo;
	scan.range = range;
	scan.start = h % range;
	scan.rc = KW_CT_EXISTS;
	bpf_loop(range, kw_port_scan_step, &scan, 0);
	rk->dport = scan.rk.dport;
	if (scan.rc != KW_CT_EXISTS)
		return scan.rc;
	bpf_map_update_elem(&kw_noport, &space, &rv->last_seen_ns, BPF_ANY);
	return KW_CT_EXISTS;
}

/* Replace a 16-bit field inside an ICMP error's payload. */
static __always_inline void kw_icmp_field2(__u16 *icmp_sum, __u16 *inner_sum, __u16 *field,
					   __u16 nv)
{
	__u16 old = *field;

	if (old == nv)
		return;
	if (inner_sum) {
		__u16 before = *inner_sum;

		kw_csum_replace2(inner_sum, old, nv);
		kw_csum_replace2(icmp_sum, before, *inner_sum);
	}
	*field = nv;
	kw_csum_replace2(icmp_sum, old, nv);
}

/* Replace an address inside an ICMP error's embedded IPv4 header. */
static __always_inline void kw_icmp_addr(__u16 *icmp_sum, __u16 *ip_sum, __u16 *l4_sum,
					 __be32 *field, __be32 nv)
{
	__be32 old = *field;

	if (old == nv)
		return;
	{
		__u16 before = *ip_sum;

		kw_csum_replace4(ip_sum, old, nv);
		kw_csum_replace2(icmp_sum, before, *ip_sum);
	}
	if (l4_sum) {
		__u16 before = *l4_sum;

		kw_csum_replace4(l4_sum, old, nv);
		kw_csum_replace2(icmp_sum, before, *l4_sum);
	}
	*field = nv;
	kw_csum_replace4(icmp_sum, old, nv);
}

#endif /* KW_NAT_H */
