/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * live_sink.c - the live bench's sink: counts and drops the generator's
 * UDP (destination port sink_port), passes everything else (ARP, ICMP).
 * One packet in 64, at random, is also recorded by (source, destination) address, so
 * the harness can check what every measured repetition delivered: its
 * translated source, its backend spread.
 *
 * While sink_ctl[0] is set (the harness sets it for the first part of a
 * measurement's warm-up), every such frame is answered instead: addresses and
 * ports swapped, sent back (XDP_TX) to the gateway as a peer's reply, so the
 * flows are established (answered) before anything is measured, as real
 * traffic is; the answers are counted in sink_replies.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

const volatile __u16 sink_port = 9;

struct seen_key {
	__be32 saddr;
	__be32 daddr;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sink_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_replies SEC(".maps");

/*
 * Swap the frame's MACs, addresses and ports: both checksums are sums over
 * the same words, so they stay valid.
 */
static __always_inline int reflect(struct ethhdr *eth, struct iphdr *ip, struct udphdr *udp)
{
	__u8 mac[ETH_ALEN];
	__be32 a = ip->saddr;
	__be16 p = udp->source;
	__u32 z = 0;
	__u64 *c;

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	ip->saddr = ip->daddr;
	ip->daddr = a;
	udp->source = udp->dest;
	udp->dest = p;
	c = bpf_map_lookup_elem(&sink_replies, &z);
	if (c)
		(*c)++;
	return XDP_TX;
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct seen_key);
	__type(value, __u64);
} sink_seen SEC(".maps");

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	struct seen_key sk;
	__u64 one = 1, *c;
	__u32 z = 0, *ctl;

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP || ip->ihl != 5 || udp->dest != bpf_htons(sink_port))
		return XDP_PASS;
	ctl = bpf_map_lookup_elem(&sink_ctl, &z);
	if (ctl && *ctl)
		return reflect(eth, ip, udp);
	c = bpf_map_lookup_elem(&sink_cnt, &z);
	if (!c)
		return XDP_DROP;
	(*c)++;
	/* random, not every 64th: the generator's flows cycle in order */
	if ((bpf_get_prandom_u32() & 63) == 0) {
		sk.saddr = ip->saddr;
		sk.daddr = ip->daddr;
		c = bpf_map_lookup_elem(&sink_seen, &sk);
		if (c)
			__sync_fetch_and_add(c, 1);
		else
			bpf_map_update_elem(&sink_seen, &sk, &one, BPF_NOEXIST);
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
