/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * live_gen.c - the live bench's traffic generator (cargo xtask bench --live).
 *
 * BPF_F_TEST_XDP_LIVE_FRAMES is refused on some kernels (EPERM on the
 * development VMs), so frames are made by a loop: seed frames circulate
 * between the two ends of a veth pair inside the client namespace (xdp_tx
 * bounces them on one end, xdp_loop broadcasts them on the other through
 * gen_dm). Every pass sends one clone to the client's uplink per gen_dm
 * entry that points there; the entry's program xdp_gen writes each clone
 * from the template with the next flow and counts it. Everything runs in
 * the NET_RX softirq of the CPU that sent the seeds.
 *
 * Flow n (n counts frames): f = n & flow_mask; the low port_bits of f are
 * added to the UDP source port, the rest to the low 16 bits of the source
 * (vary_src) or destination address. A flow_mask of all ones makes every
 * frame a new 5-tuple (all-new-flows mode).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FRAME_LEN 64

const volatile __u32 flow_mask = 1023;
const volatile __u32 port_bits = 10;
const volatile __u32 vary_src = 0;

struct frame {
	__u8 b[FRAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct frame);
} gen_tmpl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_run SEC(".maps");

/* AMP entries to the uplink (with xdp_gen), then one back into the loop. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 9);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} gen_dm SEC(".maps");

/* RFC 1624: HC' = ~(~HC + ~m + m') */
static __always_inline __u16 csum_repl(__u16 check, __u16 old, __u16 new)
{
	__u32 s = (__u16)~check + (__u16)~old + new;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

SEC("xdp/devmap")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct udphdr *udp = (void *)(ip + 1);
	struct frame *t;
	__u32 k = 0, f, hi;
	__u64 *c;
	__u16 oldp, newp;

	if (data + FRAME_LEN > end)
		return XDP_DROP;
	t = bpf_map_lookup_elem(&gen_tmpl, &k);
	c = bpf_map_lookup_elem(&gen_cnt, &k);
	if (!t || !c)
		return XDP_DROP;
	__builtin_memcpy(data, t->b, FRAME_LEN);
	f = (__u32)((*c)++) & flow_mask;
	oldp = udp->source;
	newp = bpf_htons(bpf_ntohs(oldp) + (f & ((1u << port_bits) - 1)));
	if (udp->check) {
		__u16 ck = csum_repl(udp->check, oldp, newp);

		udp->check = ck ? ck : 0xffff;
	}
	udp->source = newp;
	hi = f >> port_bits;
	if (hi) { /* the low 16 bits of the address: octets 3 and 4 */
		__u16 *w = (__u16 *)(vary_src ? &ip->saddr : &ip->daddr) + 1;
		__u16 oldw = *w, neww = bpf_htons(bpf_ntohs(oldw) + (__u16)hi);

		ip->check = csum_repl(ip->check, oldw, neww);
		if (udp->check) {
			__u16 ck = csum_repl(udp->check, oldw, neww);

			udp->check = ck ? ck : 0xffff;
		}
		*w = neww;
	}
	return XDP_PASS;
}

SEC("xdp")
int xdp_loop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 k = 0, *run = bpf_map_lookup_elem(&gen_run, &k);

	if (!run || !*run || data + FRAME_LEN > end)
		return XDP_DROP; /* stopped: the loop drains */
	return bpf_redirect_map(&gen_dm, 0, BPF_F_BROADCAST);
}

SEC("xdp")
int xdp_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
