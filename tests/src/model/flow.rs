//! The flow life cycle Kawaii and Konvey share, mirroring `kw_parse.h`,
//! `kw_ct.h`, `kw_nat.h`, `kw_fwd.h` and `kw_flow.h`: L4 parsing, conntrack
//! pairs in two tables (embryonic, confirmed) and their book-keeping,
//! confirmation, SNAT port probing, the tuple rewrite with incremental
//! checksums and forwarding.
//!
//! The embryonic table is an LRU hash in the kernel; the model never fills
//! it (its evictions are the kernel's choice), so it is unbounded here. The
//! confirmed table has `confirmed_max` entries, like `kw_ct4`'s max_entries.
//!
//! Each function names the C function it restates. Offsets are those of
//! option-less IPv4 (both programs keep options off translated paths).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use kowabunga_bindings::{kw_ct_state, kw_stat, KW_CT_F_REPLY, KW_SNAT_MAX_PROBES};

use super::csum::{replace2, replace4};
use super::fib::{FibModel, FibResult};
use super::{XDP_DROP, XDP_PASS, XDP_REDIRECT};

pub(crate) const ETH: usize = 14;
pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Conntrack state `KW_CT_NEW`: one direction seen.
pub const CT_NEW: u8 = kw_ct_state::KW_CT_NEW as u8;
/// Conntrack state `KW_CT_ESTABLISHED`: the reply direction was seen.
pub const CT_ESTABLISHED: u8 = kw_ct_state::KW_CT_ESTABLISHED as u8;
/// Conntrack state `KW_CT_CLOSING`: FIN or RST seen.
pub const CT_CLOSING: u8 = kw_ct_state::KW_CT_CLOSING as u8;

/// A conntrack tuple; addresses and ports are host-order values of the
/// wire fields (`u32::from(Ipv4Addr)`, `u16::from_be_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// The tuple of the other direction (`kw_ct_reverse`).
    pub fn reverse(&self) -> Tuple {
        Tuple {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    /// A TCP or UDP tuple from addresses and ports.
    pub fn new(proto: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Tuple {
        Tuple {
            saddr: u32::from(src),
            daddr: u32::from(dst),
            sport,
            dport,
            proto,
        }
    }
}

/// A conntrack entry of the model: everything of `kw_ct_value` but the
/// timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtEntry {
    /// Rewritten tuple.
    pub nat: Tuple,
    /// Role the packet must arrive on.
    pub in_role: u8,
    /// `KW_CT_F_*`.
    pub flags: u8,
    /// `kw_ct_state` ([`CT_NEW`], [`CT_ESTABLISHED`], [`CT_CLOSING`]).
    pub state: u8,
    /// Packets counted in this entry.
    pub packets: u64,
    /// Frame bytes counted in this entry.
    pub bytes: u64,
}

/// The conntrack tables of a model: `kw_ct4` (confirmed) and `kw_ct4_new`
/// (embryonic).
#[derive(Debug, Clone)]
pub struct Conntrack {
    /// `kw_ct4`: flows confirmed (both directions seen), never evicted.
    pub confirmed: HashMap<Tuple, CtEntry>,
    /// `kw_ct4_new`: new flows, until confirmed.
    pub embryonic: HashMap<Tuple, CtEntry>,
    /// max_entries of `kw_ct4`: a confirmation that would exceed it fails.
    pub confirmed_max: usize,
    /// `kw_noport`: port spaces (reply tuples with dport 0) found full.
    pub full_spaces: std::collections::HashSet<Tuple>,
}

impl Default for Conntrack {
    fn default() -> Self {
        Self::new()
    }
}

impl Conntrack {
    /// Both tables empty, the confirmed one unbounded.
    pub fn new() -> Self {
        Conntrack {
            confirmed: HashMap::new(),
            embryonic: HashMap::new(),
            confirmed_max: usize::MAX,
            full_spaces: std::collections::HashSet::new(),
        }
    }

    /// Empties both tables.
    pub fn clear(&mut self) {
        self.confirmed.clear();
        self.embryonic.clear();
        self.full_spaces.clear();
    }

    /// Entries in both tables.
    pub fn len(&self) -> usize {
        self.confirmed.len() + self.embryonic.len()
    }

    /// Whether both tables are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `kw_ct_lookup()`: the entry keyed `k`, confirmed first.
    pub fn get(&self, k: &Tuple) -> Option<&CtEntry> {
        self.confirmed.get(k).or_else(|| self.embryonic.get(k))
    }

    /// Whether `k` is in either table.
    pub fn contains_key(&self, k: &Tuple) -> bool {
        self.get(k).is_some()
    }

    /// Whether the entry `k` is (only) embryonic.
    pub fn is_embryonic(&self, k: &Tuple) -> bool {
        !self.confirmed.contains_key(k) && self.embryonic.contains_key(k)
    }

    /// Every entry: confirmed, then embryonic ones not shadowed by a confirmed key.
    pub fn iter(&self) -> impl Iterator<Item = (&Tuple, &CtEntry)> {
        self.confirmed.iter().chain(
            self.embryonic
                .iter()
                .filter(|(k, _)| !self.confirmed.contains_key(k)),
        )
    }

    fn table_mut(&mut self, emb: bool) -> &mut HashMap<Tuple, CtEntry> {
        if emb {
            &mut self.embryonic
        } else {
            &mut self.confirmed
        }
    }

    // kw_ct_promote(): both entries to the confirmed table, or neither.
    fn promote(&mut self, key: Tuple) {
        let Some(v) = self.embryonic.get(&key).copied() else {
            return;
        };
        let pk = v.nat.reverse();
        let Some(pv) = self.embryonic.get(&pk).copied() else {
            return;
        };
        for k in [key, pk] {
            // BPF_NOEXIST (EEXIST), then E2BIG when full; the first is undone
            if self.confirmed.contains_key(&k) || self.confirmed.len() >= self.confirmed_max {
                if k == pk {
                    self.confirmed.remove(&key);
                }
                return;
            }
            self.confirmed.insert(k, if k == key { v } else { pv });
        }
        self.embryonic.remove(&key);
        self.embryonic.remove(&pk);
    }
}

/// What a model says about one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// XDP verdict code.
    pub verdict: u32,
    /// Frame after the program ran.
    pub packet: Vec<u8>,
    /// The `kw_stat` counter the frame was counted in.
    pub stat: u32,
}

/// `enum kw_l4_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Other,
    Tcp,
    Udp,
    EchoReq,
    EchoReply,
    IcmpError,
    IcmpOther,
}

impl Kind {
    // kw_trackable()
    pub(crate) fn trackable(self) -> bool {
        matches!(
            self,
            Kind::Tcp | Kind::Udp | Kind::EchoReq | Kind::EchoReply
        )
    }
    pub(crate) fn has_ports(self) -> bool {
        matches!(self, Kind::Tcp | Kind::Udp)
    }
}

/// `struct kw_pkt` over an owned frame.
pub(crate) struct Pkt {
    pub(crate) buf: Vec<u8>,
    pub(crate) key: Tuple,
    pub(crate) kind: Kind,
    pub(crate) tcp_flags: u8,
}

impl Pkt {
    pub(crate) fn new(frame: &[u8]) -> Self {
        Pkt {
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
        }
    }
    pub(crate) fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.buf[off], self.buf[off + 1]])
    }
    pub(crate) fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes([
            self.buf[off],
            self.buf[off + 1],
            self.buf[off + 2],
            self.buf[off + 3],
        ])
    }
    pub(crate) fn set16(&mut self, off: usize, v: u16) {
        self.buf[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn set32(&mut self, off: usize, v: u32) {
        self.buf[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn tot_len(&self) -> u16 {
        self.u16_at(ETH + 2)
    }
    // kw_ttl_expiring()
    pub(crate) fn ttl_expiring(&self) -> bool {
        self.buf[ETH + 8] <= 1
    }
    /// The L2/L3 checks both programs make first, after the configuration
    /// check; `Err` is the verdict, `Ok` the IHL, with the key's addresses
    /// and protocol filled in.
    pub(crate) fn parse_l3(&mut self) -> Result<usize, (u32, u32)> {
        if self.buf.len() < ETH {
            return Err(drop(kw_stat::KW_STAT_DROP_MALFORMED));
        }
        if self.buf[12..14] != [0x08, 0x00] {
            return Err(pass(kw_stat::KW_STAT_PASS_NOT_IPV4));
        }
        if self.buf.len() < ETH + 20 {
            return Err(drop(kw_stat::KW_STAT_DROP_MALFORMED));
        }
        let vihl = self.buf[ETH];
        let ihl = usize::from(vihl & 0x0f);
        let tot_len = usize::from(self.tot_len());
        if vihl >> 4 != 4 || ihl < 5 || tot_len < ihl * 4 || ETH + tot_len > self.buf.len() {
            return Err(drop(kw_stat::KW_STAT_DROP_MALFORMED));
        }
        self.key.saddr = self.u32_at(ETH + 12);
        self.key.daddr = self.u32_at(ETH + 16);
        self.key.proto = self.buf[ETH + 9];
        Ok(ihl)
    }
    /// MF set or a non-zero fragment offset.
    pub(crate) fn is_fragment(&self) -> bool {
        self.u16_at(ETH + 6) & 0x3fff != 0
    }
}

/// How a new flow is created (the trailing arguments of `kw_new_flow`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) in_role: u8,
    pub(crate) reply_role: u8,
    pub(crate) flags: u8,
    pub(crate) snat: bool,
}

/// `struct kw_flow_env`: the SNAT port range, host order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlowEnv {
    pub(crate) port_min: u16,
    pub(crate) port_max: u16,
}

pub(crate) fn pass(stat: u32) -> (u32, u32) {
    (XDP_PASS, stat)
}

pub(crate) fn drop(stat: u32) -> (u32, u32) {
    (XDP_DROP, stat)
}

// kw_parse_l4()
pub(crate) fn parse_l4(p: &mut Pkt) -> bool {
    let l4 = ETH + 20;
    let l4_len = usize::from(p.tot_len().wrapping_sub(20));
    let avail = p.buf.len();
    p.key.sport = 0;
    p.key.dport = 0;
    p.tcp_flags = 0;
    p.kind = Kind::Other;
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
        _ => {}
    }
    true
}

/// A TCP segment that may not open a flow (not a bare SYN).
pub(crate) fn tcp_not_syn(p: &Pkt) -> bool {
    p.kind == Kind::Tcp && p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) != TCP_SYN
}

// kw_ct_touch(), on the entry keyed `key` of the table `emb` says (which
// exists): counters, state, confirmation.
fn ct_touch(ct: &mut Conntrack, key: Tuple, emb: bool, p: &Pkt) {
    let table = ct.table_mut(emb);
    let Some(v) = table.get_mut(&key) else {
        return;
    };
    let mut state = v.state;
    let reply = v.flags & KW_CT_F_REPLY as u8 != 0;
    v.packets += 1;
    v.bytes += p.buf.len() as u64;
    let closing = p.kind == Kind::Tcp && p.tcp_flags & (TCP_FIN | TCP_RST) != 0;
    let new_state = if closing {
        (state != CT_CLOSING).then_some(CT_CLOSING)
    } else if state == CT_NEW && reply {
        Some(CT_ESTABLISHED)
    } else {
        None
    };
    if let Some(s) = new_state {
        v.state = s;
        state = s;
        // kw_ct_set_state(): the other entry of the flow, same table
        let peer = v.nat.reverse();
        if let Some(pv) = table.get_mut(&peer) {
            pv.state = s;
        }
    }
    // UDP, ICMP: the first reply confirms; TCP: the initiator's next packet
    if !closing && emb && state == CT_ESTABLISHED && (p.kind != Kind::Tcp || !reply) {
        ct.promote(key);
    }
}

// kw_established(): a packet of the tracked flow keyed `key`.
pub(crate) fn established(
    ct: &mut Conntrack,
    fib: &FibModel,
    p: &mut Pkt,
    key: Tuple,
) -> (u32, u32) {
    let emb = ct.is_embryonic(&key);
    let Some(n) = ct.get(&key).map(|v| v.nat) else {
        return pass(kw_stat::KW_STAT_PASS_FIB);
    };
    ct_touch(ct, key, emb, p);
    if p.ttl_expiring() {
        return ttl_path(p, &n);
    }
    translate_forward(fib, p, n)
}

// kw_dst_kept()
fn dst_kept(p: &Pkt, n: &Tuple) -> bool {
    n.daddr == p.key.daddr
}

// kw_ttl_path()
pub(crate) fn ttl_path(p: &Pkt, n: &Tuple) -> (u32, u32) {
    if dst_kept(p, n) {
        pass(kw_stat::KW_STAT_PASS_TTL)
    } else {
        drop(kw_stat::KW_STAT_DROP_TTL)
    }
}

// The DF bit of the IPv4 header.
fn dont_fragment(p: &Pkt) -> bool {
    p.u16_at(ETH + 6) & 0x4000 != 0
}

// kw_translate_forward()
pub(crate) fn translate_forward(fib: &FibModel, p: &mut Pkt, n: Tuple) -> (u32, u32) {
    match fib.lookup(Ipv4Addr::from(n.daddr), p.tot_len()) {
        FibResult::Success { smac, dmac } => {
            rewrite(p, &n);
            fwd_commit(p, smac, dmac)
        }
        FibResult::NoNeigh => {
            rewrite(p, &n);
            pass(kw_stat::KW_STAT_PASS_NO_NEIGH)
        }
        FibResult::FragNeeded if !dont_fragment(p) => {
            rewrite(p, &n);
            pass(kw_stat::KW_STAT_PASS_FRAGMENT)
        }
        FibResult::FragNeeded | FibResult::Other if dst_kept(p, &n) => {
            pass(kw_stat::KW_STAT_PASS_FIB)
        }
        FibResult::FragNeeded | FibResult::Other => drop(kw_stat::KW_STAT_DROP_FIB),
    }
}

// kw_new_flow()
pub(crate) fn new_flow(
    ct: &mut Conntrack,
    fib: &FibModel,
    p: &mut Pkt,
    env: FlowEnv,
    mut n: Tuple,
    plan: Plan,
) -> (u32, u32) {
    let Plan {
        in_role,
        reply_role,
        flags,
        snat,
    } = plan;
    if tcp_not_syn(p) {
        return drop(kw_stat::KW_STAT_DROP_TCP_NOT_SYN);
    }
    if p.ttl_expiring() {
        return ttl_path(p, &n);
    }
    let rv = CtEntry {
        nat: p.key.reverse(),
        in_role: reply_role,
        flags: flags | KW_CT_F_REPLY as u8,
        state: CT_NEW,
        packets: 0,
        bytes: 0,
    };
    let mut rk = n.reverse();
    if snat {
        match snat_reserve(ct, env, &p.key, p.key.sport, rk, rv) {
            Some(port) => {
                rk.dport = port;
                n.sport = port;
            }
            None => return drop(kw_stat::KW_STAT_DROP_NO_PORT),
        }
    } else {
        if ct.contains_key(&rk) {
            return drop(kw_stat::KW_STAT_DROP_CT_COLLISION);
        }
        ct.embryonic.insert(rk, rv);
    }
    if ct.contains_key(&p.key) {
        ct.embryonic.remove(&rk);
        return drop(kw_stat::KW_STAT_DROP_CT_COLLISION);
    }
    ct.embryonic.insert(
        p.key,
        CtEntry {
            nat: n,
            in_role,
            flags,
            state: CT_NEW,
            packets: 1,
            bytes: p.buf.len() as u64,
        },
    );
    translate_forward(fib, p, n)
}

// kw_snat_reserve(): returns the reserved port.
fn snat_reserve(
    ct: &mut Conntrack,
    env: FlowEnv,
    ok: &Tuple,
    orig_port: u16,
    mut rk: Tuple,
    rv: CtEntry,
) -> Option<u16> {
    let lo = u32::from(env.port_min);
    let hi = u32::from(env.port_max);
    let keep = u32::from(orig_port);
    if hi < lo || lo == 0 {
        return None;
    }
    let range = hi - lo + 1;
    // kw_noport: a space found full refuses new flows (within the hold,
    // which the model's tests never outlast)
    let space = Tuple { dport: 0, ..rk };
    if ct.full_spaces.contains(&space) {
        return None;
    }
    // kw_ct_insert_reply(): taken when confirmed, else BPF_NOEXIST embryonic
    let mut try_port = |ct: &mut Conntrack, port: u16| {
        rk.dport = port;
        if ct.contains_key(&rk) {
            false
        } else {
            ct.embryonic.insert(rk, rv);
            true
        }
    };
    if keep >= lo && keep <= hi && try_port(ct, orig_port) {
        return Some(orig_port);
    }
    let h = port_hash(ok);
    for i in 0..KW_SNAT_MAX_PROBES {
        let port = (lo + probe_mix(h, i) % range) as u16;
        if try_port(ct, port) {
            return Some(port);
        }
    }
    // the whole range from the hash on (bpf_loop)
    let start = h % range;
    for i in 0..range {
        let port = (lo + (start + i) % range) as u16;
        if try_port(ct, port) {
            return Some(port);
        }
    }
    ct.full_spaces.insert(space);
    None
}

// kw_probe_mix()
pub(crate) fn probe_mix(h: u32, i: u32) -> u32 {
    let mut x = h.wrapping_add(i.wrapping_mul(0x9E37_79B9));
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x
}

// kw_rewrite()
pub(crate) fn rewrite(p: &mut Pkt, n: &Tuple) {
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
pub(crate) fn fwd_commit(p: &mut Pkt, smac: [u8; 6], dmac: [u8; 6]) -> (u32, u32) {
    let old = p.u16_at(ETH + 8);
    p.buf[ETH + 8] -= 1;
    let s = replace2(p.u16_at(ETH + 10), old, p.u16_at(ETH + 8));
    p.set16(ETH + 10, s);
    p.buf[0..6].copy_from_slice(&dmac);
    p.buf[6..12].copy_from_slice(&smac);
    (XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT)
}

// kw_port_hash(), on host-order values of the original tuple.
pub(crate) fn port_hash(k: &Tuple) -> u32 {
    let mut h = k.saddr.wrapping_mul(0x9E37_79B1);
    h ^= k.daddr.wrapping_mul(0x85EB_CA77);
    h ^= ((u32::from(k.sport) << 16) | u32::from(k.dport)).wrapping_mul(0xC2B2_AE3D);
    h ^= u32::from(k.proto);
    h ^= h >> 15;
    h
}
