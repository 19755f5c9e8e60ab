/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_parse.h - bounds-checked parsing of Ethernet, IPv4 and L4 headers.
 * Every access is preceded by an explicit check against data_end; lengths
 * are also checked against the IPv4 total length so Ethernet padding is
 * never read as a header.
 */
#ifndef KW_PARSE_H
#define KW_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include "kw_abi.h"

#define KW_IP_DF 0x4000
#define KW_IP_MF 0x2000
#define KW_IP_OFFSET 0x1fff

#define KW_TCP_FIN 0x01
#define KW_TCP_SYN 0x02
#define KW_TCP_RST 0x04
#define KW_TCP_ACK 0x10

#define KW_ICMP_ECHOREPLY 0
#define KW_ICMP_DEST_UNREACH 3
#define KW_ICMP_ECHO 8
#define KW_ICMP_TIME_EXCEEDED 11
#define KW_ICMP_PARAMETERPROB 12

/* What a parsed L4 header is, for the decisions that follow. */
enum kw_l4_kind {
	KW_L4_OTHER = 0,      /* no ports: matched by protocol only, never tracked */
	KW_L4_TCP = 1,
	KW_L4_UDP = 2,
	KW_L4_ECHO_REQ = 3,   /* ICMP echo request: id in key.sport */
	KW_L4_ECHO_REPLY = 4, /* ICMP echo reply: id in key.dport */
	KW_L4_ICMP_ERROR = 5, /* unreachable / time exceeded / parameter problem */
	KW_L4_ICMP_OTHER = 6, /* any other ICMP type */
};

/* Header sizes the program needs to read. */
#define KW_TCP_MIN 20
#define KW_UDP_LEN 8
#define KW_ICMP_LEN 8

struct kw_pkt {
	struct ethhdr *eth;
	struct iphdr *ip;
	void *l4;
	struct kw_ct_key key; /* tuple as on the wire (see kw_abi.h) */
	__u32 len;            /* frame length, for counters */
	__u8 kind;            /* enum kw_l4_kind */
	__u8 tcp_flags;
	__u8 ct_absent;       /* a conntrack lookup of key found nothing */
};

/* Is this ICMP / L4 kind one that connection tracking follows? */
static __always_inline int kw_trackable(__u8 kind)
{
	return kind >= KW_L4_TCP && kind <= KW_L4_ECHO_REPLY;
}

/*
 * Parse the L4 header of an option-less, unfragmented IPv4 packet.
 * Returns 0, or -1 when the header is truncated (in the frame or in tot_len).
 */
static __always_inline int kw_parse_l4(struct kw_pkt *p, void *data_end)
{
	struct iphdr *ip = p->ip;
	void *l4 = (void *)(ip + 1);
	__u16 l4_len = bpf_ntohs(ip->tot_len) - sizeof(*ip);

	p->l4 = l4;
	p->key.saddr = ip->saddr;
	p->key.daddr = ip->daddr;
	p->key.proto = ip->protocol;
	p->key.sport = 0;
	p->key.dport = 0;
	p->tcp_flags = 0;
	p->kind = KW_L4_OTHER;

	switch (ip->protocol) {
	case IPPROTO_TCP: {
		__u8 *t = l4;

		if (l4 + KW_TCP_MIN > data_end || l4_len < KW_TCP_MIN)
			return -1;
		p->key.sport = *(__be16 *)(t + 0);
		p->key.dport = *(__be16 *)(t + 2);
		p->tcp_flags = t[13];
		p->kind = KW_L4_TCP;
		return 0;
	}
	case IPPROTO_UDP: {
		__u8 *u = l4;

		if (l4 + KW_UDP_LEN > data_end || l4_len < KW_UDP_LEN)
			return -1;
		p->key.sport = *(__be16 *)(u + 0);
		p->key.dport = *(__be16 *)(u + 2);
		p->kind = KW_L4_UDP;
		return 0;
	}
	case IPPROTO_ICMP: {
		__u8 *c = l4;

		if (l4 + KW_ICMP_LEN > data_end || l4_len < KW_ICMP_LEN)
			return -1;
		switch (c[0]) {
		case KW_ICMP_ECHO:
			p->key.sport = *(__be16 *)(c + 4);
			p->kind = KW_L4_ECHO_REQ;
			break;
		case KW_ICMP_ECHOREPLY:
			p->key.dport = *(__be16 *)(c + 4);
			p->kind = KW_L4_ECHO_REPLY;
			break;
		case KW_ICMP_DEST_UNREACH:
		case KW_ICMP_TIME_EXCEEDED:
		case KW_ICMP_PARAMETERPROB:
			p->kind = KW_L4_ICMP_ERROR;
			break;
		default:
			p->kind = KW_L4_ICMP_OTHER;
		}
		return 0;
	}
	default:
		return 0;
	}
}

/* An IPv6 destination that stays on the link: multicast (ff00::/8) or
 * link-local (fe80::/10): neighbour discovery, MLD. */
static __always_inline int kw_ipv6_link_scope(const struct ipv6hdr *ip6)
{
	__u8 b0 = ip6->daddr.in6_u.u6_addr8[0];
	__u8 b1 = ip6->daddr.in6_u.u6_addr8[1];

	return b0 == 0xff || (b0 == 0xfe && (b1 & 0xc0) == 0x80);
}

#endif /* KW_PARSE_H */
