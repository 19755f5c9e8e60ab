/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_abi.h - the kernel/user ABI of the Kowabunga XDP programs.
 *
 * This is the single source of truth for every struct and constant shared
 * by the BPF programs and userspace. The Rust crate `kowabunga-bindings`
 * generates its types from this file with bindgen; nothing is mirrored by
 * hand.
 *
 * Conventions
 *  - Addresses and ports inside keys and values are in network byte order
 *    (they are compared to and copied into packets as they are).
 *  - Port ranges of rules and the SNAT range are in host byte order.
 *  - IPv4 first: IPv6 gets its own maps (ct6, ...) and rule tables, the way
 *    Cilium splits ct4/ct6, so these structs never need an address family.
 *
 * This header must stay includable by both clang -target bpf and bindgen
 * on the host: only fixed-width types, no kernel headers.
 */
#ifndef KW_ABI_H
#define KW_ABI_H

#include <linux/types.h>

/* ------------------------------------------------------------------ */
/* ABI version of the maps.                                            */
/* ------------------------------------------------------------------ */
/*
 * Bump KW_ABI_VERSION whenever anything a map holds changes its layout or
 * its meaning: a struct field added, removed, reordered or reinterpreted,
 * an enum value stored in a map renumbered, a map added, removed or
 * resized. The loader writes it into the pinned kw_meta map (kw_maps.h)
 * when it creates the pins, and refuses pins that carry another version or
 * none, before it opens any other map (ebpf/README.md, "Pinned maps and the
 * ABI version"). Same-size changes are exactly what only this number
 * catches.
 */
#define KW_ABI_VERSION 7 /* 2: rule index tries; kw_ct4 confirmed HASH + kw_ct4_new embryonic LRU; 3: kw_rule_exact, kw_rule_node.flags; 4: kw_ipsec_up, drop_ipsec_down; 5: IPv6 ingress rules (kw_rules6, kw_rule_addr6, kw_config.rule6_count); 6: kv_config.snat_ips (several Konvey source addresses); 7: per-backend counters (kv_backend.slot, kv_backend_stats, kw_ct_value.lb_slot, KW_CT_F_LB) */

/* ------------------------------------------------------------------ */
/* Interface roles: one XDP entry point per role.                      */
/* ------------------------------------------------------------------ */
enum kw_role {
	KW_ROLE_PUBLIC = 1,  /* Internet side: public VIPs live here */
	KW_ROLE_PRIVATE = 2, /* project subnet side */
	KW_ROLE_PEERING = 3, /* VPC peering links */
	KW_ROLE_KONVEY = 4,  /* Konvey load balancer: every interface, both directions */
};

/* ------------------------------------------------------------------ */
/* Configuration (double-buffered: two banks, one active).             */
/* ------------------------------------------------------------------ */
#define KW_BANKS 2
#define KW_MAX_VIPS 16
#define KW_MAX_PEERINGS 16
#define KW_MAX_IPSEC 16
#define KW_IPSEC_UP_ENTRIES (2 * KW_MAX_IPSEC) /* both banks' subnets during a reload */

enum kw_policy {
	KW_POLICY_ACCEPT = 0,
	KW_POLICY_DROP = 1,
};

/* Rule tables, stored one after another in the kw_rules array of a bank. */
enum kw_table {
	KW_TABLE_INGRESS = 0,  /* firewall.ingress: src cidr, proto, dst ports -> host */
	KW_TABLE_EGRESS = 1,   /* firewall.egress: dst cidr, proto, dst ports -> exception */
	KW_TABLE_DNAT = 2,     /* dnat: proto, dst ports -> target */
	KW_TABLE_PEER_IN = 3,  /* peering ingress: src cidr = peer subnet */
	KW_TABLE_PEER_OUT = 4, /* peering egress: dst cidr = peer subnet */
	KW_TABLE_COUNT = 5,
};

/*
 * The IPv6 rules of firewall.ingress (source prefix IPv6, for the node's own
 * IPv6 addresses): a table of the rule index only. Its listing is kw_rules6,
 * its address trie kw_rule_addr6; its port entries share kw_rule_exact and
 * kw_rule_port under this table number.
 */
#define KW_TABLE_INGRESS6 5
_Static_assert(KW_TABLE_INGRESS6 == KW_TABLE_COUNT, "the IPv6 table follows the others");

/*
 * Rules per table and per bank. kw_rules holds them in order (the listing the
 * daemon reads back); packets never scan it: they use the two LPM tries below.
 * rule_start is a __u16, so KW_RULES_PER_BANK must stay below 65536.
 */
#define KW_MAX_RULES_PER_TABLE 12288
#define KW_RULES_PER_BANK (KW_MAX_RULES_PER_TABLE * KW_TABLE_COUNT)

/* An IPv4 prefix; mask is the netmask in network byte order. */
struct kw_cidr {
	__be32 addr;
	__be32 mask;
};

/* A VPC peering: a subnet routed without NAT, with its default policy. */
struct kw_peering {
	struct kw_cidr subnet;
	__u8 policy; /* enum kw_policy */
	__u8 _pad[3];
};

/*
 * One firewall / DNAT rule. A packet matches when
 *   (addr & mask) == (packet address & mask)   (source for INGRESS and
 *                                               PEER_IN, destination for
 *                                               EGRESS and PEER_OUT, unused
 *                                               for DNAT: mask 0)
 *   && proto == packet protocol (0 matches any protocol)
 *   && port_lo <= dst port <= port_hi            (TCP and UDP only; ignored
 *                                                 for other protocols)
 */
struct kw_rule {
	struct kw_cidr cidr;
	__be32 target; /* DNAT: new destination address; 0 otherwise */
	__u16 port_lo; /* host order */
	__u16 port_hi; /* host order */
	__u8 proto;    /* IPPROTO_*, 0 = any */
	__u8 _pad[3];
};

/*
 * An IPv6 firewall.ingress rule (kw_rules6, the listing). A packet matches
 * when its source is in addr/prefix_len, proto == its next header (0 any,
 * 58 ICMPv6) and port_lo <= dst port <= port_hi (TCP and UDP only).
 */
struct kw_rule6 {
	__u8 addr[16];    /* prefix, bits beyond prefix_len zero */
	__u8 prefix_len;  /* 0..128 */
	__u8 proto;       /* IPPROTO_*, 0 = any */
	__u16 port_lo;    /* host order */
	__u16 port_hi;    /* host order */
	__u8 _pad[2];
};

/*
 * Rule index (see ebpf/README.md, "Rule tables"): per bank and table, the
 * rules are compiled by userspace into two LPM tries.
 *
 * kw_rule_addr: (bank, table, address prefix) -> kw_rule_node. One entry per
 * distinct rule prefix (DNAT: the single /0). A node holds every rule whose
 * prefix contains the node's prefix, so the longest match for an address
 * holds exactly the rules that match it.
 *
 * Per node and protocol (0: the protocol-any rules), the port space is cut
 * into disjoint intervals, each labelled with the first rule (lowest index)
 * covering it. Rules of a protocol without ports cover every port.
 *
 * kw_rule_exact: (bank, table, proto, node, port) -> kw_rule_hit, a HASH
 * holding the intervals of one port, and for protocols without ports (not 0,
 * TCP or UDP: only port 0 is ever looked up) their single interval at port 0.
 *
 * kw_rule_port: (bank, table, proto, node, dst port prefix) -> kw_rule_hit,
 * an LPM trie holding the wider intervals of protocols 0, TCP and UDP, each
 * split into aligned power-of-two blocks.
 *
 * kw_rule_node.flags says which of the two a node has entries in, per
 * protocol class, so that lookups that cannot hit are skipped.
 *
 * A packet: one lookup in kw_rule_addr, then for its protocol and, with
 * ports, for protocol 0 (without ports: the node's any_index): kw_rule_exact
 * first, kw_rule_port on a miss (the intervals are disjoint); the lower index
 * wins. With exact ports only, no trie keyed by node is walked at all.
 */
#define KW_RULE_NONE 0xffffffffu
/* Prefix length of a full kw_rule_addr key: bank, table, pad, address. */
#define KW_RULE_ADDR_FULL 64
/* Prefix length of a full kw_rule_port key: up to and including the port. */
#define KW_RULE_PORT_FULL 80
/* Entries of kw_rule_addr (a prefix per rule at most) and kw_rule_port. */
#define KW_RULE_ADDR_ENTRIES (KW_BANKS * KW_RULES_PER_BANK)
#define KW_RULE_PORT_ENTRIES (1u << 20)
#define KW_RULE_EXACT_ENTRIES (1u << 20)
/* Prefix length of a full kw_rule_addr6 key: bank, table, pad, address. */
#define KW_RULE_ADDR6_FULL 160
/* Entries of kw_rule_addr6 and kw_rules6: one table per bank. */
#define KW_RULE_ADDR6_ENTRIES (KW_BANKS * KW_MAX_RULES_PER_TABLE)

/* kw_rule_node.flags: class 0 protocol-any, 1 TCP, 2 UDP. */
#define KW_RULE_CLASS_ANY 0
#define KW_RULE_CLASS_TCP 1
#define KW_RULE_CLASS_UDP 2
#define KW_RULE_F_EXACT(class) (1u << (2 * (class)))     /* kw_rule_exact entries */
#define KW_RULE_F_WIDE(class) (1u << (2 * (class) + 1))  /* kw_rule_port entries */
#define KW_RULE_F_OTHER (1u << 6) /* protocols without ports: kw_rule_exact at port 0 */

struct kw_rule_addr {
	__u8 bank;
	__u8 table;  /* enum kw_table */
	__u8 _pad[2];
	__be32 addr; /* prefix, bits beyond the length zero */
};

struct kw_rule_addr_key {
	__u32 prefixlen; /* 32 + prefix length */
	struct kw_rule_addr data;
};

/* kw_rule_addr6: the same for the IPv6 ingress table (KW_TABLE_INGRESS6). */
struct kw_rule_addr6 {
	__u8 bank;
	__u8 table;  /* KW_TABLE_INGRESS6 */
	__u8 _pad[2];
	__u8 addr[16]; /* prefix, bits beyond the length zero */
};

struct kw_rule_addr6_key {
	__u32 prefixlen; /* 32 + prefix length */
	struct kw_rule_addr6 data;
};

struct kw_rule_port {
	__u8 bank;
	__u8 table;
	__u8 proto;   /* IPPROTO_*, 0: the protocol-any rules */
	__u8 _pad;
	__u32 node;   /* kw_rule_node.node */
	__be16 port;  /* block start */
	__u8 _pad2[2];
};

struct kw_rule_port_key {
	__u32 prefixlen; /* 64 + port block prefix length */
	struct kw_rule_port data;
};

struct kw_rule_node {
	__u32 node;       /* id, unique in its bank and table */
	__u32 any_index;  /* first protocol-any rule of the node, or KW_RULE_NONE */
	__be32 any_target;
	__u32 flags;      /* KW_RULE_F_* */
};

struct kw_rule_hit {
	__u32 index;   /* index of the rule in its table */
	__be32 target; /* its target */
};

/* Bank-level configuration: everything but the rule tables. */
struct kw_config {
	__be32 snat_ip;            /* this zone's public VIP: source of SNAT */
	struct kw_cidr private_net; /* the project subnet */
	__u16 port_min;            /* SNAT port range, host order, inclusive */
	__u16 port_max;
	__u8 egress_policy;        /* enum kw_policy */
	__u8 sample_shift;         /* drop events: one in 2^shift per reason and CPU */
	__u8 n_vips;
	__u8 n_peerings;
	__u8 n_ipsec;
	__u8 _pad[3];
	__be32 vips[KW_MAX_VIPS];  /* all public VIPs handled here */
	struct kw_peering peerings[KW_MAX_PEERINGS];
	struct kw_cidr ipsec[KW_MAX_IPSEC]; /* IPsec remote subnets: to the kernel while kw_ipsec_up says up */
	__u16 rule_start[KW_TABLE_COUNT];  /* first index inside the bank */
	__u16 rule_count[KW_TABLE_COUNT];
	__u16 rule6_count; /* IPv6 ingress rules, kw_rules6[bank * KW_MAX_RULES_PER_TABLE + i] */
	__u16 _pad6;
};

/*
 * kw_active[0] holds the bank the programs read, plus one: a fresh map
 * reads 0, KW_ACTIVE_NONE, and the programs pass everything until the
 * daemon has written a bank and flipped this word.
 */
#define KW_ACTIVE_NONE 0

/* ------------------------------------------------------------------ */
/* Connection tracking: two entries per flow.                          */
/* ------------------------------------------------------------------ */

/*
 * A tuple as seen on the wire. For ICMP echo the identifier stands in for
 * a port: requests carry it in sport (dport 0), replies in dport (sport 0),
 * so a reply's tuple is the reverse of its request's.
 */
struct kw_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 _pad[3];
};

enum kw_ct_state {
	KW_CT_NEW = 0,         /* one direction seen (TCP: SYN sent) */
	KW_CT_ESTABLISHED = 1, /* reply direction seen */
	KW_CT_CLOSING = 2,     /* FIN or RST seen */
};

/* kw_ct_value.flags */
#define KW_CT_F_REPLY 0x01 /* entry keys the reply direction */
#define KW_CT_F_SNAT 0x02  /* flow source-translated (egress or hairpin) */
#define KW_CT_F_DNAT 0x04  /* flow destination-translated (dnat rule) */
#define KW_CT_F_LB 0x08    /* lb_slot names the flow's Konvey backend counters */

/*
 * What to do with a packet whose tuple equals the key: rewrite its tuple to
 * (nat_saddr, nat_daddr, nat_sport, nat_dport) and forward it. The other
 * entry of the flow is keyed by the reverse of that rewritten tuple.
 */
struct kw_ct_value {
	__be32 nat_saddr;
	__be32 nat_daddr;
	__be16 nat_sport;
	__be16 nat_dport;
	__u8 in_role; /* enum kw_role the packet must arrive on */
	__u8 flags;   /* KW_CT_F_* */
	__u8 state;   /* enum kw_ct_state */
	__u8 _pad;
	__u64 last_seen_ns; /* bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC) */
	__u64 packets;
	__u64 bytes;
	__u16 lb_slot; /* with KW_CT_F_LB: the backend's kv_backend_stats slot */
	__u8 _pad2[6];
};

/*
 * One slot of the per-CPU flow cache (kw_fcache.h): what the established
 * path decided for a confirmed flow. Not pinned; user space reads it only
 * to add the counters it holds to a conntrack entry's.
 */
#define KW_FC_WAYS 2

struct kw_fc_slot {
	struct kw_ct_key key; /* the flow's tuple as it arrives */
	__be32 nat_saddr;     /* its translation */
	__be32 nat_daddr;
	__be16 nat_sport;
	__be16 nat_dport;
	__u32 ifindex; /* next hop: egress interface (0: empty slot) */
	__u8 smac[6];
	__u8 dmac[6];
	__u16 len_ok;   /* largest IP total length the FIB lookup accepted */
	__u8 role;      /* ingress role of the entry */
	__u8 flags;     /* the entry's KW_CT_F_* */
	__u16 lb_slot;  /* with KW_CT_F_LB: the backend's counter slot */
	__u16 pkts;     /* packets forwarded from the slot, not yet in the entry */
	__u32 bytes;    /* their bytes */
	__u32 since;    /* fill time, in KW_FC_UNIT_SHIFT units */
	__u32 gen;      /* kw_fc_gen[0] when filled */
};

_Static_assert(sizeof(struct kw_fc_slot) == 64, "a flow cache slot is one cache line");

/* Timeouts (RFC 5382 / RFC 4787), applied by the daemon's sweeper. */
#define KW_CT_TIMEOUT_TCP_ESTABLISHED_S 7440
#define KW_CT_TIMEOUT_TCP_TRANSITORY_S 240
#define KW_CT_TIMEOUT_UDP_S 120
#define KW_CT_TIMEOUT_ICMP_S 60

/*
 * Default sizes; the loader may override the conntrack size (both tables:
 * kw_ct4, confirmed flows, and kw_ct4_new, embryonic flows).
 */
#define KW_CT_DEFAULT_ENTRIES 262144
#define KW_SNAT_MAX_PROBES 32
/* A port space found full refuses new flows this long without a scan. */
#define KW_NOPORT_HOLD_NS 1000000000ull
/* Port spaces remembered as full (LRU). */
#define KW_NOPORT_ENTRIES 4096

/* ------------------------------------------------------------------ */
/* Counters: one per-CPU slot per outcome.                             */
/* ------------------------------------------------------------------ */
enum kw_stat {
	/* forwarded */
	KW_STAT_FWD_REDIRECT = 0,   /* translated and redirected */
	/* passed to the kernel */
	KW_STAT_PASS_NOT_IPV4,      /* ARP, IPv6, ...: not ours yet */
	KW_STAT_PASS_NO_CONFIG,     /* no active bank */
	KW_STAT_PASS_LOCAL,         /* project subnet, broadcast or multicast */
	KW_STAT_PASS_NOT_OURS,      /* not addressed to a VIP / routed subnet */
	KW_STAT_PASS_TO_HOST,       /* firewall.ingress accepted: gateway itself */
	KW_STAT_PASS_IPSEC,         /* to an IPsec remote subnet whose child SA is up: kernel XFRM */
	KW_STAT_PASS_TTL,           /* TTL <= 1, destination kept: the kernel answers */
	KW_STAT_PASS_NO_NEIGH,      /* next hop unresolved: kernel resolves */
	KW_STAT_PASS_FIB,           /* destination kept, cannot be forwarded: untranslated to the kernel, which answers as a router */
	/* dropped, one reason each */
	KW_STAT_DROP_MALFORMED,     /* truncated or invalid L2/L3 */
	KW_STAT_DROP_MALFORMED_L4,  /* truncated L4 header */
	KW_STAT_DROP_IP_OPTIONS,    /* IPv4 options on a translated path */
	KW_STAT_DROP_FRAGMENT,      /* IPv4 fragment on a translated path */
	KW_STAT_DROP_SPOOFED,       /* private side, source outside the subnet */
	KW_STAT_DROP_TO_PRIVATE,    /* public side, aimed straight at a private subnet */
	KW_STAT_DROP_INGRESS_DENIED,/* new inbound flow to a VIP, no rule */
	KW_STAT_DROP_EGRESS_DENIED, /* egress_policy / egress rules */
	KW_STAT_DROP_PEERING_DENIED,/* VPC peering policy / rules */
	KW_STAT_DROP_TCP_NOT_SYN,   /* new TCP flow without a bare SYN */
	KW_STAT_DROP_UNSUPPORTED,   /* protocol or ICMP type that cannot be translated */
	KW_STAT_DROP_ICMP_UNMATCHED,/* ICMP error about no tracked flow */
	KW_STAT_DROP_NO_PORT,       /* SNAT port range exhausted */
	KW_STAT_DROP_CT_COLLISION,  /* reply tuple already taken */
	KW_STAT_DROP_CT_FULL,       /* conntrack insert failed */
	KW_STAT_DROP_NO_SERVICE,    /* Konvey: TCP/UDP to a VIP port with no service */
	KW_STAT_DROP_NO_BACKEND,    /* Konvey: new flow, no healthy backend */
	KW_STAT_PASS_FRAGMENT,      /* oversized, DF clear: translated, the kernel fragments it */
	KW_STAT_DROP_FIB,           /* destination translated, cannot be forwarded (route, DF + MTU) */
	KW_STAT_DROP_TTL,           /* destination translated, TTL <= 1 */
	KW_STAT_DROP_IPV6,          /* Kawaii: IPv6 that would cross: from the project side beyond link-local/multicast, transit an IPv6 rule matched */
	KW_STAT_PASS_HOST_REPLY,    /* public side, to the node: a flow it opened (socket, ICMP reply/error) */
	KW_STAT_PASS_HOST_FRAGMENT, /* public side, to the node: a later fragment (its first was decided) */
	KW_STAT_PASS_VRRP,          /* public side, to the node: VRRP with TTL 255 */
	KW_STAT_DROP_HOST_DENIED,   /* public side, to the node or transit: no flow of its own, no rule */
	KW_STAT_DROP_IPSEC_DOWN,    /* private side, to an IPsec remote subnet whose child SA is not up */
	/* not a packet outcome (the packet is also counted in its outcome): */
	KW_STAT_CT_CONFIRM_FULL,    /* confirmed table full: a flow stays embryonic (never evicts) */
	KW_STAT_COUNT,
};

/* Per-CPU counter slot. */
struct kw_counter {
	__u64 packets;
	__u64 bytes;
};

/* A sampled drop, sent to the kw_events ring buffer. */
struct kw_drop_event {
	__u64 ts_ns;
	__u32 ifindex;
	__u8 reason; /* enum kw_stat */
	__u8 proto;
	__u16 _pad;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};

#define KW_EVENTS_BYTES (256 * 1024)

/* ------------------------------------------------------------------ */
/* Konvey: L4 load balancer (konvey.c).                                */
/* ------------------------------------------------------------------ */
#define KV_MAX_SERVICES 1024
#define KV_MAX_BACKENDS 64

/* Most full-NAT source addresses of one balancer (node.konvey.source_ips). */
#define KV_MAX_SOURCE_IPS 8

/* Node-wide settings, kv_config[0]; configured = 0 passes everything. */
struct kv_config {
	/*
	 * The balancer's own addresses, sources of full NAT: the first
	 * snat_count (1..KV_MAX_SOURCE_IPS) are used. Each multiplies the
	 * concurrent flows a backend can take (one port range per address).
	 */
	__be32 snat_ips[KV_MAX_SOURCE_IPS];
	__u16 port_min;     /* source port range, host order, inclusive */
	__u16 port_max;
	__u8 sample_shift;  /* drop events: one in 2^shift per reason and CPU */
	__u8 configured;
	__u8 snat_count;
	__u8 _pad;
};

/* A service: (VIP, protocol, port). */
struct kv_service_key {
	__be32 vip;
	__be16 port;
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 _pad;
};

struct kv_backend {
	__be32 addr;
	__be16 port;
	/*
	 * Its counters in kv_backend_stats: service id * KV_MAX_BACKENDS + a
	 * position the daemon keeps while the backend stays in the rotation.
	 */
	__u16 slot;
};

/* Counter slots of kv_backend_stats: one per (service, backend position). */
#define KV_BACKEND_SLOTS (KV_MAX_SERVICES * KV_MAX_BACKENDS)

/* One backend's traffic, per CPU (kv_backend_stats). */
struct kv_backend_counter {
	__u64 new_flows; /* flows created towards it (their first packet forwarded or passed) */
	__u64 packets;   /* packets of its flows, both directions */
	__u64 bytes;
};

/*
 * A service's rotation: the backends that take new flows, in order. The
 * daemon replaces the whole value (a hash map update is atomic for readers);
 * id indexes kv_rr, the service's round-robin counter, which survives
 * rotation updates. count = 0: the service exists but has no healthy backend.
 */
struct kv_service {
	__u32 id;    /* < KV_MAX_SERVICES */
	__u32 count; /* <= KV_MAX_BACKENDS */
	struct kv_backend backends[KV_MAX_BACKENDS];
};

#endif /* KW_ABI_H */
