// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * konvey.c - the Konvey L4 load balancer in XDP: services keyed by (VIP,
 * protocol, port), strict round-robin over the backends in rotation, full
 * NAT (destination -> backend:backend_port, source -> the balancer's own
 * address and an allocated port), replies translated back, flows pinned to
 * their backend by conntrack.
 *
 * One entry point, attached to every Konvey interface; both directions of a
 * flow may use any of them (conntrack entries carry KW_ROLE_KONVEY). What is
 * neither for a VIP nor a reply to the balancer's address passes untouched.
 * Semantics: ../shared design, section 3 "Konvey", and ebpf/README.md; the
 * reference model in tests/src/model/konvey.rs mirrors this file.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kw_konvey_maps.h"
#include "kw_parse.h"
#include "kw_counters.h"
#include "kw_ct.h"
#include "kw_flow.h"
#include "kw_icmp.h"
#include "kw_lb.h"
#include "kw_lb_source.h"
#include "kw_lb_stats.h"

/* A TCP or UDP packet to a VIP that is not part of a tracked flow. */
static __always_inline int kv_new_flow(struct xdp_md *ctx, struct kw_pkt *p,
				       const struct kv_config *cfg, const struct kw_flow_env *fe)
{
	struct kv_service_key sk = {
		.vip = p->key.daddr,
		.port = p->key.dport,
		.proto = p->key.proto,
	};
	const struct kv_service *svc = bpf_map_lookup_elem(&kv_services, &sk);
	const struct kv_backend *be;
	struct kw_flow_env f = *fe;
	struct kw_nat n;
	int verdict;

	if (!svc)
		return kw_drop(ctx, p, KW_STAT_DROP_NO_SERVICE, fe->sample_shift);
	/* checked before a backend is picked, so such a packet takes no turn */
	if (p->kind == KW_L4_TCP &&
	    (p->tcp_flags & (KW_TCP_SYN | KW_TCP_ACK | KW_TCP_RST | KW_TCP_FIN)) != KW_TCP_SYN)
		return kw_drop(ctx, p, KW_STAT_DROP_TCP_NOT_SYN, fe->sample_shift);
	/* the destination (the VIP) is translated: see kw_ttl_path() */
	if (kw_ttl_expiring(p))
		return kw_drop(ctx, p, KW_STAT_DROP_TTL, fe->sample_shift);
	be = kv_pick(svc);
	if (!be)
		return kw_drop(ctx, p, KW_STAT_DROP_NO_BACKEND, fe->sample_shift);
	n.saddr = kv_source_of(cfg, p, be->addr, be->port, bpf_ktime_get_coarse_ns());
	if (!n.saddr)
		return kw_drop(ctx, p, KW_STAT_DROP_NO_PORT, fe->sample_shift);
	n.daddr = be->addr;
	n.sport = p->key.sport;
	n.dport = be->port;
	f.lb = 1;
	f.lb_slot = be->slot;
	verdict = kw_new_flow(ctx, p, &f, &n, KW_ROLE_KONVEY, KW_ROLE_KONVEY,
			      KW_CT_F_SNAT | KW_CT_F_DNAT, 1);
	if (verdict != XDP_DROP)
		kv_backend_count(f.lb_slot, p->len, 1);
	return verdict;
}

/*
 * ICMP to a VIP or to the balancer's address: an error about one of our
 * flows is translated like Kawaii's (path MTU discovery through the
 * balancer); anything else (ping, errors about the host's own traffic such
 * as a UDP health check's port unreachable) is the host's.
 */
static __always_inline int kv_icmp(struct xdp_md *ctx, struct kw_pkt *p, int to_vip,
				   const struct kw_flow_env *fe)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u32 host = to_vip ? KW_STAT_PASS_TO_HOST : KW_STAT_PASS_NOT_OURS;
	struct kw_icmp_ref ref;

	if (p->ip->ihl != 5 || (p->ip->frag_off & bpf_htons(KW_IP_MF | KW_IP_OFFSET)))
		return kw_pass(p, host);
	if (kw_parse_l4(p, data_end) < 0 || p->kind != KW_L4_ICMP_ERROR)
		return kw_pass(p, host);
	if (kw_icmp_find(ctx, p, KW_ROLE_KONVEY, &ref) != KW_ICMP_FOUND)
		return kw_pass(p, host);
	return kw_icmp_forward(ctx, p, &ref, fe->sample_shift);
}

SEC("xdp")
int konvey(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct kw_pkt p = { .len = data_end - data };
	const struct kv_config *cfg;
	struct kw_flow_env fe;
	struct kw_ct_value *v;
	struct kw_fc_slot *fc;
	int emb;
	__u32 zero = 0;
	__u16 tot_len;
	int to_vip;

	p.eth = data;
	cfg = bpf_map_lookup_elem(&kv_config, &zero);
	if (!cfg || !cfg->configured)
		return kw_pass(&p, KW_STAT_PASS_NO_CONFIG);
	fe.port_min = cfg->port_min;
	fe.port_max = cfg->port_max;
	fe.sample_shift = cfg->sample_shift;
	fe.lb = 0;
	fe.lb_slot = 0;

	if ((void *)(p.eth + 1) > data_end)
		return kw_drop(ctx, &p, KW_STAT_DROP_MALFORMED, fe.sample_shift);
	if (p.eth->h_proto != bpf_htons(ETH_P_IP))
		return kw_pass(&p, KW_STAT_PASS_NOT_IPV4);
	p.ip = (void *)(p.eth + 1);
	if ((void *)(p.ip + 1) > data_end)
		return kw_drop(ctx, &p, KW_STAT_DROP_MALFORMED, fe.sample_shift);
	tot_len = bpf_ntohs(p.ip->tot_len);
	if (p.ip->version != 4 || p.ip->ihl < 5 || tot_len < p.ip->ihl * 4 ||
	    (void *)p.ip + tot_len > data_end)
		return kw_drop(ctx, &p, KW_STAT_DROP_MALFORMED, fe.sample_shift);
	p.key.saddr = p.ip->saddr;
	p.key.daddr = p.ip->daddr;
	p.key.proto = p.ip->protocol;

	/* classify by destination: a VIP, the balancer's own address, or not ours */
	to_vip = bpf_map_lookup_elem(&kv_vips, &p.key.daddr) != 0;
	if (!to_vip && !kv_is_source(cfg, p.key.daddr))
		return kw_pass(&p, KW_STAT_PASS_NOT_OURS);
	if (p.key.proto == IPPROTO_ICMP)
		return kv_icmp(ctx, &p, to_vip, &fe);
	if (p.key.proto != IPPROTO_TCP && p.key.proto != IPPROTO_UDP)
		/* other protocols: the host's business */
		return kw_pass(&p, to_vip ? KW_STAT_PASS_TO_HOST : KW_STAT_PASS_NOT_OURS);
	if (!to_vip && (p.ip->ihl != 5 || (p.ip->frag_off & bpf_htons(KW_IP_MF | KW_IP_OFFSET))))
		/* cannot be one of our replies' translatable packets: the host's */
		return kw_pass(&p, KW_STAT_PASS_NOT_OURS);

	/* to a VIP, a translated path from here on */
	if (p.ip->ihl != 5)
		return kw_drop(ctx, &p, KW_STAT_DROP_IP_OPTIONS, fe.sample_shift);
	if (p.ip->frag_off & bpf_htons(KW_IP_MF | KW_IP_OFFSET))
		return kw_drop(ctx, &p, KW_STAT_DROP_FRAGMENT, fe.sample_shift);
	if (kw_parse_l4(&p, data_end) < 0)
		return kw_drop(ctx, &p, KW_STAT_DROP_MALFORMED_L4, fe.sample_shift);

	fc = kw_fc_find(&p, KW_ROLE_KONVEY, bpf_ktime_get_coarse_ns());
	if (fc) {
		if (fc->flags & KW_CT_F_LB)
			kv_backend_count(fc->lb_slot, p.len, 0);
		return kw_fc_forward(ctx, &p, fc);
	}
	v = kw_ct_lookup(&p.key, &emb);
	p.ct_absent = !v;
	if (v && v->in_role == KW_ROLE_KONVEY) {
		if (v->flags & KW_CT_F_LB)
			kv_backend_count(v->lb_slot, p.len, 0);
		return kw_established(ctx, &p, v, emb, fe.sample_shift);
	}
	if (!to_vip)
		/* to our address, no flow: health checks and the host's own traffic */
		return kw_pass(&p, KW_STAT_PASS_NOT_OURS);
	return kv_new_flow(ctx, &p, cfg, &fe);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
