//! The Kawaii semantics over raw Ethernet frames, mirroring `ebpf/kawaii.c`.
//!
//! Each function below names the C function it restates. Offsets are those
//! of option-less IPv4 (the program drops options on translated paths).

use kowabunga_bindings::{
    kw_config, kw_role, kw_rule, kw_rule6, kw_stat, kw_table, KW_CT_F_DNAT, KW_CT_F_SNAT,
    KW_MAX_RULES_PER_TABLE,
};

use super::fib::FibModel;
use super::flow::{self, drop, parse_l4, pass, Conntrack, FlowEnv, Kind, Pkt, Plan, ETH};
pub use super::flow::{CtEntry, Outcome, Tuple};
use super::icmp;

const POLICY_ACCEPT: u8 = 0;

/// The reference model: configuration, rule tables, conntrack and FIB.
#[derive(Debug, Clone)]
pub struct KawaiiModel {
    cfg: Option<kw_config>,
    tables: Vec<Vec<kw_rule>>,
    /// The IPv6 rules of firewall.ingress (`kw_rules6`).
    rules6: Vec<kw_rule6>,
    ct: Conntrack,
    /// The forwarding table the fixture network gives the kernel.
    pub fib: FibModel,
    /// Tuples (as they arrive) that local sockets own as flows of the node
    /// itself: a TCP socket that is not listening, a connected UDP socket.
    /// The fixtures open those sockets and list them here.
    pub host_flows: std::collections::HashSet<Tuple>,
    /// The same for IPv6: (protocol, source, source port, destination,
    /// destination port) as they arrive.
    pub host_flows6: std::collections::HashSet<HostFlow6>,
    /// IPsec remote subnets (network, mask, host order) whose child SA is
    /// up: `kw_ipsec_up`.
    pub ipsec_up: std::collections::HashSet<(u32, u32)>,
}

/// An IPv6 flow of the node: (protocol, source, source port, destination,
/// destination port), as its packets arrive.
pub type HostFlow6 = (u8, [u8; 16], u16, [u8; 16], u16);

// kw_ipv6_link_scope(): an IPv6 frame (header present) to a multicast or
// link-local destination.
fn ipv6_link_scope(frame: &[u8]) -> bool {
    let (b0, b1) = (frame[14 + 24], frame[14 + 25]);
    b0 == 0xff || (b0 == 0xfe && b1 & 0xc0 == 0x80)
}

fn be32(v: u32) -> u32 {
    u32::from_be(v)
}

impl KawaiiModel {
    /// A model with no configuration: everything passes (`pass_no_config`).
    pub fn unconfigured(fib: FibModel) -> Self {
        Self {
            cfg: None,
            tables: vec![Vec::new(); kw_table::KW_TABLE_COUNT as usize],
            rules6: Vec::new(),
            ct: Conntrack::new(),
            fib,
            host_flows: std::collections::HashSet::new(),
            host_flows6: std::collections::HashSet::new(),
            ipsec_up: std::collections::HashSet::new(),
        }
    }

    /// A model programmed with the same input as `Kawaii::apply`.
    pub fn new(cfg: kw_config, tables: &[Vec<kw_rule>], fib: FibModel) -> Self {
        let mut m = Self::unconfigured(fib);
        m.apply(cfg, tables);
        m
    }

    /// Replace configuration and rules; conntrack is kept, as in the kernel.
    /// Rule counts are taken from `tables`, as the dataplane packs them.
    pub fn apply(&mut self, cfg: kw_config, tables: &[Vec<kw_rule>]) {
        self.apply6(cfg, tables, &[]);
    }

    /// [`KawaiiModel::apply`] with the IPv6 rules of firewall.ingress, as
    /// `Kawaii::apply_raw6`.
    pub fn apply6(&mut self, mut cfg: kw_config, tables: &[Vec<kw_rule>], ingress6: &[kw_rule6]) {
        for (t, rules) in tables.iter().enumerate().take(cfg.rule_count.len()) {
            cfg.rule_count[t] = u16::try_from(rules.len()).unwrap_or(u16::MAX);
        }
        cfg.rule6_count = u16::try_from(ingress6.len()).unwrap_or(u16::MAX);
        self.cfg = Some(cfg);
        self.tables = tables.to_vec();
        self.rules6 = ingress6.to_vec();
    }

    /// Both conntrack tables (confirmed, embryonic).
    pub fn conntrack(&self) -> &flow::Conntrack {
        &self.ct
    }

    /// Both conntrack tables, mutably (to size the confirmed one).
    pub fn conntrack_mut(&mut self) -> &mut flow::Conntrack {
        &mut self.ct
    }

    /// Number of conntrack entries (two per flow).
    pub fn ct_len(&self) -> usize {
        self.ct.len()
    }

    /// A conntrack entry, by tuple.
    pub fn ct_get(&self, t: &Tuple) -> Option<&CtEntry> {
        self.ct.get(t)
    }

    /// Run one frame through the program of `role` (`kw_role::KW_ROLE_*`).
    pub fn process(&mut self, role: u32, frame: &[u8]) -> Outcome {
        let mut p = Pkt::new(frame);
        let (verdict, stat) = self.kawaii(role as u8, &mut p);
        Outcome {
            verdict,
            packet: p.buf,
            stat,
        }
    }

    // kawaii()
    fn kawaii(&mut self, role: u8, p: &mut Pkt) -> (u32, u32) {
        let Some(cfg) = self.cfg else {
            return pass(kw_stat::KW_STAT_PASS_NO_CONFIG);
        };
        // kw_ipv6_inner()
        if p.buf.len() >= 14
            && p.buf[12..14] == [0x86, 0xdd]
            && role != kw_role::KW_ROLE_PUBLIC as u8
        {
            if p.buf.len() < 14 + 40 {
                return drop(kw_stat::KW_STAT_DROP_MALFORMED);
            }
            if ipv6_link_scope(&p.buf) {
                return pass(kw_stat::KW_STAT_PASS_NOT_IPV4);
            }
            return drop(kw_stat::KW_STAT_DROP_IPV6);
        }
        if p.buf.len() >= 14 && p.buf[12..14] == [0x86, 0xdd] {
            return self.host_inbound6(p, &cfg);
        }
        let ihl = match p.parse_l3() {
            Ok(ihl) => ihl,
            Err(verdict) => return verdict,
        };
        let (saddr, daddr) = (p.key.saddr, p.key.daddr);
        let mut peer = None;

        if is_mcast_bcast(daddr) {
            return pass(kw_stat::KW_STAT_PASS_LOCAL);
        }
        let private_net = (be32(cfg.private_net.addr), be32(cfg.private_net.mask));
        match u32::from(role) {
            kw_role::KW_ROLE_PUBLIC => {
                if !is_vip(&cfg, daddr) {
                    if in_cidr(daddr, private_net) || peering_of(&cfg, daddr).is_some() {
                        return drop(kw_stat::KW_STAT_DROP_TO_PRIVATE);
                    }
                    return self.host_inbound(p, &cfg, ihl);
                }
            }
            kw_role::KW_ROLE_PRIVATE => {
                if in_cidr(daddr, private_net) {
                    return pass(kw_stat::KW_STAT_PASS_LOCAL);
                }
                if !in_cidr(saddr, private_net) {
                    return drop(kw_stat::KW_STAT_DROP_SPOOFED);
                }
                if let Some(net) = ipsec_of(&cfg, daddr) {
                    if !self.ipsec_up.contains(&net) {
                        return drop(kw_stat::KW_STAT_DROP_IPSEC_DOWN);
                    }
                    return pass(kw_stat::KW_STAT_PASS_IPSEC);
                }
            }
            _ => {
                if !in_cidr(daddr, private_net) {
                    return pass(kw_stat::KW_STAT_PASS_NOT_OURS);
                }
                peer = peering_of(&cfg, saddr);
                if peer.is_none() {
                    return drop(kw_stat::KW_STAT_DROP_SPOOFED);
                }
            }
        }

        if ihl != 5 {
            return drop(kw_stat::KW_STAT_DROP_IP_OPTIONS);
        }
        if p.is_fragment() {
            return drop(kw_stat::KW_STAT_DROP_FRAGMENT);
        }
        if !parse_l4(p) {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED_L4);
        }

        if p.kind.trackable() {
            if let Some(v) = self.ct.get(&p.key).copied() {
                if v.in_role == role {
                    let key = p.key;
                    return flow::established(&mut self.ct, &self.fib, p, key);
                }
            }
        } else if p.kind == Kind::IcmpError {
            return self.icmp_error(p, role);
        }

        match u32::from(role) {
            kw_role::KW_ROLE_PUBLIC => self.new_inbound(p, &cfg),
            kw_role::KW_ROLE_PRIVATE => self.new_outbound(p, &cfg),
            _ => self.new_peer_inbound(p, &cfg, peer),
        }
    }

    // kw_rule_match6(): the first IPv6 ingress rule matching, linearly.
    fn rule_match6(&self, cfg: &kw_config, saddr: [u8; 16], proto: u8, dport: Option<u16>) -> bool {
        let count = usize::from(cfg.rule6_count).min(KW_MAX_RULES_PER_TABLE as usize);
        let src = u128::from_be_bytes(saddr);
        self.rules6.iter().take(count).any(|r| {
            let len = u32::from(r.prefix_len);
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            (src ^ u128::from_be_bytes(r.addr)) & mask == 0
                && (r.proto == 0 || r.proto == proto)
                && dport.is_none_or(|p| r.port_lo <= p && p <= r.port_hi)
        })
    }

    // kw_host_allowed6(): to the host unless the kernel would forward it.
    fn host_allowed6(&self, daddr: [u8; 16]) -> (u32, u32) {
        if self.fib.forwards6(std::net::Ipv6Addr::from(daddr)) {
            return drop(kw_stat::KW_STAT_DROP_IPV6);
        }
        pass(kw_stat::KW_STAT_PASS_TO_HOST)
    }

    // kw_host_inbound6()
    fn host_inbound6(&self, p: &Pkt, cfg: &kw_config) -> (u32, u32) {
        let b = &p.buf;
        if b.len() < 14 + 40 {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED);
        }
        if ipv6_link_scope(b) {
            return pass(kw_stat::KW_STAT_PASS_NOT_IPV4);
        }
        let next = b[14 + 6];
        let l4 = 14 + 40;
        if next == 58 {
            if b.len() < l4 + 1 {
                return drop(kw_stat::KW_STAT_DROP_MALFORMED_L4);
            }
            let t = b[l4];
            if t <= 4 || t == 129 || (133..=137).contains(&t) {
                return pass(kw_stat::KW_STAT_PASS_HOST_REPLY);
            }
            let saddr: [u8; 16] = b[14 + 8..14 + 24].try_into().expect("16 bytes");
            if self.rule_match6(cfg, saddr, 58, None) {
                let daddr: [u8; 16] = b[14 + 24..14 + 40].try_into().expect("16 bytes");
                return self.host_allowed6(daddr);
            }
            return drop(kw_stat::KW_STAT_DROP_HOST_DENIED);
        }
        if next != 6 && next != 17 {
            return drop(kw_stat::KW_STAT_DROP_HOST_DENIED);
        }
        if b.len() < l4 + 4 {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED_L4);
        }
        let addr = |at: usize| -> [u8; 16] { b[at..at + 16].try_into().expect("16 bytes") };
        let key = (
            next,
            addr(14 + 8),
            u16::from_be_bytes([b[l4], b[l4 + 1]]),
            addr(14 + 24),
            u16::from_be_bytes([b[l4 + 2], b[l4 + 3]]),
        );
        if self.host_flows6.contains(&key) {
            return pass(kw_stat::KW_STAT_PASS_HOST_REPLY);
        }
        if self.rule_match6(cfg, key.1, next, Some(key.4)) {
            return self.host_allowed6(key.3);
        }
        drop(kw_stat::KW_STAT_DROP_HOST_DENIED)
    }

    // kw_host_inbound()
    fn host_inbound(&self, p: &mut Pkt, cfg: &kw_config, ihl: usize) -> (u32, u32) {
        if p.u16_at(ETH + 6) & 0x1fff != 0 {
            return pass(kw_stat::KW_STAT_PASS_HOST_FRAGMENT);
        }
        if p.key.proto == 112 && p.buf[ETH + 8] == 255 {
            return pass(kw_stat::KW_STAT_PASS_VRRP);
        }
        if ihl != 5 {
            return drop(kw_stat::KW_STAT_DROP_IP_OPTIONS);
        }
        if !parse_l4(p) {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED_L4);
        }
        // kw_host_owns(): the fixtures' sockets, listed in host_flows
        let owned = matches!(p.kind, Kind::Tcp | Kind::Udp) && self.host_flows.contains(&p.key);
        if matches!(p.kind, Kind::EchoReply | Kind::IcmpError) || owned {
            return pass(kw_stat::KW_STAT_PASS_HOST_REPLY);
        }
        if self
            .rule_match(cfg, kw_table::KW_TABLE_INGRESS, p.key.saddr, p)
            .is_some()
        {
            return pass(kw_stat::KW_STAT_PASS_TO_HOST);
        }
        drop(kw_stat::KW_STAT_DROP_HOST_DENIED)
    }

    // kw_new_flow()
    fn new_flow(&mut self, p: &mut Pkt, cfg: &kw_config, n: Tuple, plan: Plan) -> (u32, u32) {
        let env = FlowEnv {
            port_min: cfg.port_min,
            port_max: cfg.port_max,
        };
        flow::new_flow(&mut self.ct, &self.fib, p, env, n, plan)
    }

    // kw_icmp_error()
    fn icmp_error(&mut self, p: &mut Pkt, role: u8) -> (u32, u32) {
        match icmp::find(&self.ct, p, role) {
            Ok(r) => icmp::forward(&self.fib, p, &r),
            Err(why) => drop(why),
        }
    }

    // kw_new_inbound()
    fn new_inbound(&mut self, p: &mut Pkt, cfg: &kw_config) -> (u32, u32) {
        if p.kind.has_ports() {
            if let Some(target) = self.rule_match(cfg, kw_table::KW_TABLE_DNAT, p.key.saddr, p) {
                let n = Tuple {
                    daddr: target,
                    ..p.key
                };
                return self.new_flow(
                    p,
                    cfg,
                    n,
                    Plan {
                        in_role: kw_role::KW_ROLE_PUBLIC as u8,
                        reply_role: kw_role::KW_ROLE_PRIVATE as u8,
                        flags: KW_CT_F_DNAT as u8,
                        snat: false,
                    },
                );
            }
        }
        if self
            .rule_match(cfg, kw_table::KW_TABLE_INGRESS, p.key.saddr, p)
            .is_some()
        {
            return pass(kw_stat::KW_STAT_PASS_TO_HOST);
        }
        drop(kw_stat::KW_STAT_DROP_INGRESS_DENIED)
    }

    // kw_new_outbound()
    fn new_outbound(&mut self, p: &mut Pkt, cfg: &kw_config) -> (u32, u32) {
        let daddr = p.key.daddr;
        let snat_ip = be32(cfg.snat_ip);
        if is_vip(cfg, daddr) {
            if p.kind.has_ports() {
                if let Some(target) = self.rule_match(cfg, kw_table::KW_TABLE_DNAT, p.key.saddr, p)
                {
                    let n = Tuple {
                        saddr: snat_ip,
                        daddr: target,
                        ..p.key
                    };
                    let role = kw_role::KW_ROLE_PRIVATE as u8;
                    let flags = (KW_CT_F_SNAT | KW_CT_F_DNAT) as u8;
                    return self.new_flow(
                        p,
                        cfg,
                        n,
                        Plan {
                            in_role: role,
                            reply_role: role,
                            flags,
                            snat: true,
                        },
                    );
                }
            }
            return pass(kw_stat::KW_STAT_PASS_TO_HOST);
        }
        if !p.kind.trackable() || p.kind == Kind::EchoReply {
            return drop(kw_stat::KW_STAT_DROP_UNSUPPORTED);
        }
        if let Some(peer) = peering_of(cfg, daddr) {
            let policy = cfg.peerings[peer].policy;
            if policy != POLICY_ACCEPT
                && self
                    .rule_match(cfg, kw_table::KW_TABLE_PEER_OUT, daddr, p)
                    .is_none()
            {
                return drop(kw_stat::KW_STAT_DROP_PEERING_DENIED);
            }
            let n = p.key;
            return self.new_flow(
                p,
                cfg,
                n,
                Plan {
                    in_role: kw_role::KW_ROLE_PRIVATE as u8,
                    reply_role: kw_role::KW_ROLE_PEERING as u8,
                    flags: 0,
                    snat: false,
                },
            );
        }
        let matched = self
            .rule_match(cfg, kw_table::KW_TABLE_EGRESS, daddr, p)
            .is_some();
        if (cfg.egress_policy == POLICY_ACCEPT) == matched {
            return drop(kw_stat::KW_STAT_DROP_EGRESS_DENIED);
        }
        let n = Tuple {
            saddr: snat_ip,
            ..p.key
        };
        self.new_flow(
            p,
            cfg,
            n,
            Plan {
                in_role: kw_role::KW_ROLE_PRIVATE as u8,
                reply_role: kw_role::KW_ROLE_PUBLIC as u8,
                flags: KW_CT_F_SNAT as u8,
                snat: true,
            },
        )
    }

    // kw_new_peer_inbound()
    fn new_peer_inbound(
        &mut self,
        p: &mut Pkt,
        cfg: &kw_config,
        peer: Option<usize>,
    ) -> (u32, u32) {
        if !p.kind.trackable() || p.kind == Kind::EchoReply {
            return drop(kw_stat::KW_STAT_DROP_UNSUPPORTED);
        }
        let policy = peer.map_or(1, |i| cfg.peerings[i].policy);
        if policy != POLICY_ACCEPT
            && self
                .rule_match(cfg, kw_table::KW_TABLE_PEER_IN, p.key.saddr, p)
                .is_none()
        {
            return drop(kw_stat::KW_STAT_DROP_PEERING_DENIED);
        }
        let n = p.key;
        self.new_flow(
            p,
            cfg,
            n,
            Plan {
                in_role: kw_role::KW_ROLE_PEERING as u8,
                reply_role: kw_role::KW_ROLE_PRIVATE as u8,
                flags: 0,
                snat: false,
            },
        )
    }

    // kw_rule_match(): the target (wire value) of the first matching rule.
    fn rule_match(&self, cfg: &kw_config, table: u32, addr: u32, p: &Pkt) -> Option<u32> {
        let t = table as usize;
        let count = usize::from(cfg.rule_count[t]).min(KW_MAX_RULES_PER_TABLE as usize);
        let rules = self.tables.get(t)?;
        let dport = p.key.dport;
        rules.iter().take(count).find_map(|r| {
            if !in_cidr(addr, (be32(r.cidr.addr), be32(r.cidr.mask))) {
                return None;
            }
            if r.proto != 0 && r.proto != p.key.proto {
                return None;
            }
            if p.kind.has_ports() && (dport < r.port_lo || dport > r.port_hi) {
                return None;
            }
            Some(be32(r.target))
        })
    }
}

fn in_cidr(addr: u32, (net, mask): (u32, u32)) -> bool {
    (addr ^ net) & mask == 0
}

fn is_mcast_bcast(daddr: u32) -> bool {
    daddr & 0xf000_0000 == 0xe000_0000 || daddr == 0xffff_ffff
}

fn is_vip(cfg: &kw_config, addr: u32) -> bool {
    cfg.vips
        .iter()
        .take(usize::from(cfg.n_vips))
        .any(|v| be32(*v) == addr)
}

fn peering_of(cfg: &kw_config, addr: u32) -> Option<usize> {
    cfg.peerings
        .iter()
        .take(usize::from(cfg.n_peerings))
        .position(|p| in_cidr(addr, (be32(p.subnet.addr), be32(p.subnet.mask))))
}

// kw_ipsec_of(): the IPsec remote subnet holding addr.
fn ipsec_of(cfg: &kw_config, addr: u32) -> Option<(u32, u32)> {
    cfg.ipsec
        .iter()
        .take(usize::from(cfg.n_ipsec))
        .map(|c| (be32(c.addr), be32(c.mask)))
        .find(|&net| in_cidr(addr, net))
}
