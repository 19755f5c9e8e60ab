//! The Kawaii semantics over raw Ethernet frames, mirroring `ebpf/kawaii.c`.
//!
//! Each function below names the C function it restates. Offsets are those
//! of option-less IPv4 (the program drops options on translated paths).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use kowabunga_bindings::{
    kw_config, kw_role, kw_rule, kw_stat, kw_table, KW_CT_F_DNAT, KW_CT_F_REPLY, KW_CT_F_SNAT,
    KW_MAX_RULES_PER_TABLE, KW_SNAT_MAX_PROBES,
};

use super::csum::{replace2, replace4};
use super::fib::{FibModel, FibResult};
use super::{XDP_DROP, XDP_PASS, XDP_REDIRECT};

const ETH: usize = 14;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const POLICY_ACCEPT: u8 = 0;

/// A conntrack tuple, addresses and ports as on the wire (big-endian values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub saddr: u32,
    /// Destination address.
    pub daddr: u32,
    /// Source port (or echo id of a request).
    pub sport: u16,
    /// Destination port (or echo id of a reply).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
}

impl Tuple {
    fn reverse(&self) -> Tuple {
        Tuple {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// A conntrack entry of the model (what the verdict and bytes depend on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtEntry {
    /// Rewritten tuple.
    pub nat: Tuple,
    /// Role the packet must arrive on.
    pub in_role: u8,
    /// `KW_CT_F_*`.
    pub flags: u8,
}

/// How a new flow is created (the trailing arguments of `kw_new_flow`).
#[derive(Debug, Clone, Copy)]
struct Plan {
    in_role: u8,
    reply_role: u8,
    flags: u8,
    snat: bool,
}

/// What the model says about one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// XDP verdict code.
    pub verdict: u32,
    /// Frame after the program ran.
    pub packet: Vec<u8>,
    /// The `kw_stat` counter the frame was counted in.
    pub stat: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Other,
    Tcp,
    Udp,
    EchoReq,
    EchoReply,
    IcmpError,
    IcmpOther,
}

impl Kind {
    fn trackable(self) -> bool {
        matches!(
            self,
            Kind::Tcp | Kind::Udp | Kind::EchoReq | Kind::EchoReply
        )
    }
    fn has_ports(self) -> bool {
        matches!(self, Kind::Tcp | Kind::Udp)
    }
}

struct Pkt {
    buf: Vec<u8>,
    key: Tuple,
    kind: Kind,
    tcp_flags: u8,
}

impl Pkt {
    fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.buf[off], self.buf[off + 1]])
    }
    fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes([
            self.buf[off],
            self.buf[off + 1],
            self.buf[off + 2],
            self.buf[off + 3],
        ])
    }
    fn set16(&mut self, off: usize, v: u16) {
        self.buf[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    fn set32(&mut self, off: usize, v: u32) {
        self.buf[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn tot_len(&self) -> u16 {
        self.u16_at(ETH + 2)
    }
}

/// The reference model: configuration, rule tables, conntrack and FIB.
#[derive(Debug, Clone)]
pub struct KawaiiModel {
    cfg: Option<kw_config>,
    tables: Vec<Vec<kw_rule>>,
    ct: HashMap<Tuple, CtEntry>,
    /// The forwarding table the fixture network gives the kernel.
    pub fib: FibModel,
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
            ct: HashMap::new(),
            fib,
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
    pub fn apply(&mut self, mut cfg: kw_config, tables: &[Vec<kw_rule>]) {
        for (t, rules) in tables.iter().enumerate().take(cfg.rule_count.len()) {
            cfg.rule_count[t] = u16::try_from(rules.len()).unwrap_or(u16::MAX);
        }
        self.cfg = Some(cfg);
        self.tables = tables.to_vec();
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
        let mut p = Pkt {
            buf: frame.to_vec(),
            key: Tuple {
                saddr: 0,
                daddr: 0,
                sport: 0,
                dport: 0,
                proto: 0,
            },
            kind: Kind::Other,
            tcp_flags: 0,
        };
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
        if p.buf.len() < ETH {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED);
        }
        if p.buf[12..14] != [0x08, 0x00] {
            return pass(kw_stat::KW_STAT_PASS_NOT_IPV4);
        }
        if p.buf.len() < ETH + 20 {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED);
        }
        let vihl = p.buf[ETH];
        let ihl = usize::from(vihl & 0x0f);
        let tot_len = usize::from(p.tot_len());
        if vihl >> 4 != 4 || ihl < 5 || tot_len < ihl * 4 || ETH + tot_len > p.buf.len() {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED);
        }
        p.key.saddr = p.u32_at(ETH + 12);
        p.key.daddr = p.u32_at(ETH + 16);
        p.key.proto = p.buf[ETH + 9];
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
                    return pass(kw_stat::KW_STAT_PASS_NOT_OURS);
                }
            }
            kw_role::KW_ROLE_PRIVATE => {
                if in_cidr(daddr, private_net) {
                    return pass(kw_stat::KW_STAT_PASS_LOCAL);
                }
                if !in_cidr(saddr, private_net) {
                    return drop(kw_stat::KW_STAT_DROP_SPOOFED);
                }
                if is_ipsec(&cfg, daddr) {
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
        if p.u16_at(ETH + 6) & 0x3fff != 0 {
            return drop(kw_stat::KW_STAT_DROP_FRAGMENT);
        }
        if !parse_l4(p) {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED_L4);
        }

        if p.kind.trackable() {
            if let Some(v) = self.ct.get(&p.key).copied() {
                if v.in_role == role {
                    return self.established(p, v);
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

    // kw_established()
    fn established(&mut self, p: &mut Pkt, v: CtEntry) -> (u32, u32) {
        if p.buf[ETH + 8] <= 1 {
            return pass(kw_stat::KW_STAT_PASS_TTL);
        }
        self.translate_forward(p, v.nat)
    }

    // kw_translate_forward()
    fn translate_forward(&mut self, p: &mut Pkt, n: Tuple) -> (u32, u32) {
        match self.fib.lookup(Ipv4Addr::from(n.daddr), p.tot_len()) {
            FibResult::Success { smac, dmac } => {
                rewrite(p, &n);
                fwd_commit(p, smac, dmac)
            }
            FibResult::NoNeigh => {
                rewrite(p, &n);
                pass(kw_stat::KW_STAT_PASS_NO_NEIGH)
            }
            FibResult::Other => pass(kw_stat::KW_STAT_PASS_FIB),
        }
    }

    // kw_new_flow()
    fn new_flow(&mut self, p: &mut Pkt, cfg: &kw_config, mut n: Tuple, plan: Plan) -> (u32, u32) {
        let Plan {
            in_role,
            reply_role,
            flags,
            snat,
        } = plan;
        if p.kind == Kind::Tcp && p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) != TCP_SYN {
            return drop(kw_stat::KW_STAT_DROP_TCP_NOT_SYN);
        }
        if p.buf[ETH + 8] <= 1 {
            return pass(kw_stat::KW_STAT_PASS_TTL);
        }
        let rv = CtEntry {
            nat: p.key.reverse(),
            in_role: reply_role,
            flags: flags | KW_CT_F_REPLY as u8,
        };
        let mut rk = n.reverse();
        if snat {
            match self.snat_reserve(cfg, &p.key, p.key.sport, rk, rv) {
                Some(port) => {
                    rk.dport = port;
                    n.sport = port;
                }
                None => return drop(kw_stat::KW_STAT_DROP_NO_PORT),
            }
        } else {
            if self.ct.contains_key(&rk) {
                return drop(kw_stat::KW_STAT_DROP_CT_COLLISION);
            }
            self.ct.insert(rk, rv);
        }
        if self.ct.contains_key(&p.key) {
            self.ct.remove(&rk);
            return drop(kw_stat::KW_STAT_DROP_CT_COLLISION);
        }
        self.ct.insert(
            p.key,
            CtEntry {
                nat: n,
                in_role,
                flags,
            },
        );
        self.translate_forward(p, n)
    }

    // kw_snat_reserve(): returns the reserved port (wire order value).
    fn snat_reserve(
        &mut self,
        cfg: &kw_config,
        ok: &Tuple,
        orig_port: u16,
        mut rk: Tuple,
        rv: CtEntry,
    ) -> Option<u16> {
        let lo = u32::from(cfg.port_min);
        let hi = u32::from(cfg.port_max);
        let keep = u32::from(orig_port);
        if hi < lo || lo == 0 {
            return None;
        }
        let range = hi - lo + 1;
        let mut try_port = |ct: &mut HashMap<Tuple, CtEntry>, port: u16| {
            rk.dport = port;
            if let std::collections::hash_map::Entry::Vacant(e) = ct.entry(rk) {
                e.insert(rv);
                true
            } else {
                false
            }
        };
        if keep >= lo && keep <= hi && try_port(&mut self.ct, orig_port) {
            return Some(orig_port);
        }
        let h = port_hash(ok);
        for i in 0..KW_SNAT_MAX_PROBES {
            let port = (lo + h.wrapping_add(i) % range) as u16;
            if try_port(&mut self.ct, port) {
                return Some(port);
            }
        }
        None
    }

    // kw_icmp_error()
    fn icmp_error(&mut self, p: &mut Pkt, role: u8) -> (u32, u32) {
        let icmp = ETH + 20;
        let inner = icmp + 8;
        let il4 = inner + 20;
        let avail = usize::from(p.tot_len()) - 20;
        if il4 + 8 > p.buf.len() || avail < 8 + 20 + 8 {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED_L4);
        }
        if p.buf[inner] != 0x45 {
            return drop(kw_stat::KW_STAT_DROP_UNSUPPORTED);
        }
        let iproto = p.buf[inner + 9];
        let (mut isport, mut idport, mut itype) = (0u16, 0u16, 0u8);
        match iproto {
            IPPROTO_TCP | IPPROTO_UDP => {
                isport = p.u16_at(il4);
                idport = p.u16_at(il4 + 2);
            }
            IPPROTO_ICMP => {
                itype = p.buf[il4];
                match itype {
                    8 => isport = p.u16_at(il4 + 4),
                    0 => idport = p.u16_at(il4 + 4),
                    _ => return drop(kw_stat::KW_STAT_DROP_UNSUPPORTED),
                }
            }
            _ => return drop(kw_stat::KW_STAT_DROP_UNSUPPORTED),
        }
        let in_saddr = p.u32_at(inner + 12);
        let in_daddr = p.u32_at(inner + 16);
        let k = Tuple {
            saddr: in_daddr,
            daddr: in_saddr,
            sport: idport,
            dport: isport,
            proto: iproto,
        };
        let Some(v) = self.ct.get(&k).copied() else {
            return drop(kw_stat::KW_STAT_DROP_ICMP_UNMATCHED);
        };
        if v.in_role != role || p.key.daddr != in_saddr {
            return drop(kw_stat::KW_STAT_DROP_ICMP_UNMATCHED);
        }
        if p.buf[ETH + 8] <= 1 {
            return pass(kw_stat::KW_STAT_PASS_TTL);
        }
        let n_daddr = v.nat.daddr;
        let n_saddr = if p.key.saddr == k.saddr {
            v.nat.saddr
        } else {
            p.key.saddr
        };
        let fib = self.fib.lookup(Ipv4Addr::from(n_daddr), p.tot_len());
        if fib == FibResult::Other {
            return pass(kw_stat::KW_STAT_PASS_FIB);
        }

        let icmp_sum = icmp + 2;
        let ip_sum = inner + 10;
        let l4sum = match iproto {
            IPPROTO_UDP if p.u16_at(il4 + 6) != 0 => Some(il4 + 6),
            IPPROTO_TCP if il4 + 18 <= p.buf.len() && avail >= 8 + 20 + 18 => Some(il4 + 16),
            _ => None,
        };
        icmp_addr(p, icmp_sum, ip_sum, l4sum, inner + 12, v.nat.daddr);
        icmp_addr(p, icmp_sum, ip_sum, l4sum, inner + 16, v.nat.saddr);
        if iproto == IPPROTO_ICMP {
            let nid = if itype == 8 { v.nat.dport } else { v.nat.sport };
            icmp_field2(p, icmp_sum, Some(il4 + 2), il4 + 4, nid);
        } else {
            icmp_field2(p, icmp_sum, l4sum, il4, v.nat.dport);
            icmp_field2(p, icmp_sum, l4sum, il4 + 2, v.nat.sport);
            if iproto == IPPROTO_UDP {
                if let Some(off) = l4sum {
                    if p.u16_at(off) == 0 {
                        p.set16(off, 0xffff);
                        let s = replace2(p.u16_at(icmp_sum), 0, 0xffff);
                        p.set16(icmp_sum, s);
                    }
                }
            }
        }
        // outer header
        let old_s = p.u32_at(ETH + 12);
        if old_s != n_saddr {
            let s = replace4(p.u16_at(ETH + 10), old_s, n_saddr);
            p.set16(ETH + 10, s);
            p.set32(ETH + 12, n_saddr);
        }
        let old_d = p.u32_at(ETH + 16);
        if old_d != n_daddr {
            let s = replace4(p.u16_at(ETH + 10), old_d, n_daddr);
            p.set16(ETH + 10, s);
            p.set32(ETH + 16, n_daddr);
        }
        match fib {
            FibResult::Success { smac, dmac } => fwd_commit(p, smac, dmac),
            _ => pass(kw_stat::KW_STAT_PASS_NO_NEIGH),
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

fn pass(stat: u32) -> (u32, u32) {
    (XDP_PASS, stat)
}

fn drop(stat: u32) -> (u32, u32) {
    (XDP_DROP, stat)
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

fn is_ipsec(cfg: &kw_config, addr: u32) -> bool {
    cfg.ipsec
        .iter()
        .take(usize::from(cfg.n_ipsec))
        .any(|c| in_cidr(addr, (be32(c.addr), be32(c.mask))))
}

// kw_parse_l4()
fn parse_l4(p: &mut Pkt) -> bool {
    let l4 = ETH + 20;
    let l4_len = usize::from(p.tot_len().wrapping_sub(20));
    let avail = p.buf.len();
    match p.key.proto {
        IPPROTO_TCP => {
            if l4 + 20 > avail || l4_len < 20 {
                return false;
            }
            p.key.sport = p.u16_at(l4);
            p.key.dport = p.u16_at(l4 + 2);
            p.tcp_flags = p.buf[l4 + 13];
            p.kind = Kind::Tcp;
        }
        IPPROTO_UDP => {
            if l4 + 8 > avail || l4_len < 8 {
                return false;
            }
            p.key.sport = p.u16_at(l4);
            p.key.dport = p.u16_at(l4 + 2);
            p.kind = Kind::Udp;
        }
        IPPROTO_ICMP => {
            if l4 + 8 > avail || l4_len < 8 {
                return false;
            }
            p.kind = match p.buf[l4] {
                8 => {
                    p.key.sport = p.u16_at(l4 + 4);
                    Kind::EchoReq
                }
                0 => {
                    p.key.dport = p.u16_at(l4 + 4);
                    Kind::EchoReply
                }
                3 | 11 | 12 => Kind::IcmpError,
                _ => Kind::IcmpOther,
            };
        }
        _ => p.kind = Kind::Other,
    }
    true
}

// kw_rewrite()
fn rewrite(p: &mut Pkt, n: &Tuple) {
    let l4 = ETH + 20;
    let mut l4sum = None;
    let udp = p.kind == Kind::Udp;
    match p.kind {
        Kind::Tcp => l4sum = Some(l4 + 16),
        Kind::Udp if p.u16_at(l4 + 6) != 0 => l4sum = Some(l4 + 6),
        _ => {}
    }
    for (off, new) in [(ETH + 12, n.saddr), (ETH + 16, n.daddr)] {
        let old = p.u32_at(off);
        if old != new {
            let s = replace4(p.u16_at(ETH + 10), old, new);
            p.set16(ETH + 10, s);
            if let Some(c) = l4sum {
                let s = replace4(p.u16_at(c), old, new);
                p.set16(c, s);
            }
            p.set32(off, new);
        }
    }
    match p.kind {
        Kind::Tcp | Kind::Udp => {
            for (off, new) in [(l4, n.sport), (l4 + 2, n.dport)] {
                let old = p.u16_at(off);
                if old != new {
                    if let Some(c) = l4sum {
                        let s = replace2(p.u16_at(c), old, new);
                        p.set16(c, s);
                    }
                    p.set16(off, new);
                }
            }
            if udp {
                if let Some(c) = l4sum {
                    if p.u16_at(c) == 0 {
                        p.set16(c, 0xffff);
                    }
                }
            }
        }
        Kind::EchoReq | Kind::EchoReply => {
            let nid = if p.kind == Kind::EchoReq {
                n.sport
            } else {
                n.dport
            };
            let old = p.u16_at(l4 + 4);
            if old != nid {
                let s = replace2(p.u16_at(l4 + 2), old, nid);
                p.set16(l4 + 2, s);
                p.set16(l4 + 4, nid);
            }
        }
        _ => {}
    }
}

// kw_fwd_commit()
fn fwd_commit(p: &mut Pkt, smac: [u8; 6], dmac: [u8; 6]) -> (u32, u32) {
    let old = p.u16_at(ETH + 8);
    p.buf[ETH + 8] -= 1;
    let s = replace2(p.u16_at(ETH + 10), old, p.u16_at(ETH + 8));
    p.set16(ETH + 10, s);
    p.buf[0..6].copy_from_slice(&dmac);
    p.buf[6..12].copy_from_slice(&smac);
    (XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT)
}

// kw_icmp_field2()
fn icmp_field2(p: &mut Pkt, icmp_sum: usize, inner_sum: Option<usize>, field: usize, nv: u16) {
    let old = p.u16_at(field);
    if old == nv {
        return;
    }
    if let Some(is) = inner_sum {
        let before = p.u16_at(is);
        let after = replace2(before, old, nv);
        p.set16(is, after);
        let s = replace2(p.u16_at(icmp_sum), before, after);
        p.set16(icmp_sum, s);
    }
    p.set16(field, nv);
    let s = replace2(p.u16_at(icmp_sum), old, nv);
    p.set16(icmp_sum, s);
}

// kw_icmp_addr()
fn icmp_addr(
    p: &mut Pkt,
    icmp_sum: usize,
    ip_sum: usize,
    l4_sum: Option<usize>,
    field: usize,
    nv: u32,
) {
    let old = p.u32_at(field);
    if old == nv {
        return;
    }
    for sum in std::iter::once(ip_sum).chain(l4_sum) {
        let before = p.u16_at(sum);
        let after = replace4(before, old, nv);
        p.set16(sum, after);
        let s = replace2(p.u16_at(icmp_sum), before, after);
        p.set16(icmp_sum, s);
    }
    p.set32(field, nv);
    let s = replace4(p.u16_at(icmp_sum), old, nv);
    p.set16(icmp_sum, s);
}

// kw_port_hash(), on host-order values of the original tuple.
fn port_hash(k: &Tuple) -> u32 {
    let mut h = k.saddr.wrapping_mul(0x9E37_79B1);
    h ^= k.daddr.wrapping_mul(0x85EB_CA77);
    h ^= ((u32::from(k.sport) << 16) | u32::from(k.dport)).wrapping_mul(0xC2B2_AE3D);
    h ^= u32::from(k.proto);
    h ^= h >> 15;
    h
}
