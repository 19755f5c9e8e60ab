/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * live_gw.c - the live bench's own gateway programs (the modes that are not
 * kowabungad): XDP_PASS under kernel forwarding and nftables, XDP_DROP to
 * calibrate the generator, and the trivial XDP forwarder that is the limit:
 * MAC rewrite, TTL decrement and bpf_redirect to a fixed egress interface
 * (no FIB lookup, no state).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

const volatile __u32 out_ifindex = 0;
const volatile __u8 src_mac[ETH_ALEN] = { 0 };
const volatile __u8 dst_mac[ETH_ALEN] = { 0 };

SEC("xdp")
int xdp_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u32 csum;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP || ip->ttl <= 1)
		return XDP_PASS;
	csum = ip->check; /* ip_decrease_ttl() */
	csum += bpf_htons(0x0100);
	ip->check = (__u16)(csum + (csum >= 0xFFFF));
	ip->ttl--;
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = dst_mac[i];
		eth->h_source[i] = src_mac[i];
	}
	return bpf_redirect(out_ifindex, 0);
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* frames dropped by xdp_drop (a veth does not count XDP drops as received) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gw_drops SEC(".maps");

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	__u32 z = 0;
	__u64 *c = bpf_map_lookup_elem(&gw_drops, &z);

	if (c)
		(*c)++;
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
