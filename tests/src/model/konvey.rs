//! The Konvey semantics over raw Ethernet frames, mirroring `ebpf/konvey.c`
//! and `kw_lb.h`; the flow life cycle (conntrack, port allocation, rewrite,
//! forwarding) is the one Kawaii uses, from [`super::flow`].
//!
//! Services are programmed with the inputs of the dataplane's
//! `Konvey::set_service` / `remove_service`, and the model allocates service
//! ids and resets round-robin counters the way those functions do, so the
//! turn every new flow takes is the kernel's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use kowabunga_bindings::{
    kw_role, kw_stat, KV_MAX_BACKENDS, KV_MAX_SERVICES, KV_MAX_SOURCE_IPS, KW_CT_F_DNAT,
    KW_CT_F_LB, KW_CT_F_REPLY, KW_CT_F_SNAT,
};
use kowabunga_dataplane::konvey::{Backend, KonveyConfig, ServiceKey};

use super::fib::FibModel;
use super::flow::{
    self, drop, pass, tcp_not_syn, Conntrack, CtEntry, FlowEnv, Kind, Outcome, Pkt, Plan, Tuple,
    IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
};
use super::icmp;

const ROLE: u8 = kw_role::KW_ROLE_KONVEY as u8;

/// A service as `kv_services` holds it: its id and rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Index of its round-robin counter in `kv_rr`.
    pub id: u32,
    /// The backends that take new flows, in order.
    pub rotation: Vec<Backend>,
}

/// The Konvey reference model: configuration, services, round-robin
/// counters, conntrack and FIB.
#[derive(Debug, Clone)]
pub struct KonveyModel {
    cfg: Option<KonveyConfig>,
    services: BTreeMap<ServiceKey, ServiceEntry>,
    /// VIPs without a service kept while their flows live (`kv_vips` = 0).
    draining: BTreeSet<u32>,
    rr: HashMap<u32, u64>,
    ct: Conntrack,
    /// The forwarding table the fixture network gives the kernel.
    pub fib: FibModel,
}

impl KonveyModel {
    /// A model with no configuration: everything passes (`pass_no_config`).
    pub fn unconfigured(fib: FibModel) -> Self {
        Self {
            cfg: None,
            services: BTreeMap::new(),
            draining: BTreeSet::new(),
            rr: HashMap::new(),
            ct: Conntrack::new(),
            fib,
        }
    }

    /// A model programmed with `cfg` (as `Konvey::set_config`).
    pub fn new(cfg: KonveyConfig, fib: FibModel) -> Self {
        let mut m = Self::unconfigured(fib);
        m.set_config(cfg);
        m
    }

    /// `Konvey::set_config`; services and conntrack are kept.
    pub fn set_config(&mut self, cfg: KonveyConfig) {
        self.cfg = Some(cfg);
    }

    /// `Konvey::set_service`: a new service takes the lowest free id and
    /// starts its round-robin at 0; an existing one keeps id and counter.
    pub fn set_service(&mut self, key: ServiceKey, rotation: &[Backend]) {
        let rotation = rotation.to_vec();
        if let Some(s) = self.services.get_mut(&key) {
            s.rotation = rotation;
            return;
        }
        let id = (0..KV_MAX_SERVICES)
            .find(|i| !self.services.values().any(|s| s.id == *i))
            .unwrap_or(KV_MAX_SERVICES);
        self.rr.insert(id, 0);
        self.services.insert(key, ServiceEntry { id, rotation });
    }

    /// `Konvey::remove_service`; conntrack is kept, and a VIP left without
    /// a service stays (draining) while clients' flows to it live.
    pub fn remove_service(&mut self, key: ServiceKey) {
        self.services.remove(&key);
        self.sync_vip(u32::from(key.vip));
    }

    /// A conntrack sweep at a time when every flow has expired.
    pub fn expire_all_flows(&mut self) {
        self.ct.clear();
    }

    /// `Konvey::purge_drained_vips`.
    pub fn purge_drained_vips(&mut self) {
        let drained: Vec<u32> = self.draining.iter().copied().collect();
        for vip in drained {
            self.sync_vip(vip);
        }
    }

    // sync_vip() of the dataplane, for a VIP without services.
    fn sync_vip(&mut self, vip: u32) {
        let served = self.services.keys().any(|k| u32::from(k.vip) == vip);
        let flows = self.ct.iter().any(|(k, v)| {
            k.daddr == vip && v.in_role == ROLE && v.flags & KW_CT_F_REPLY as u8 == 0
        });
        if !served && flows {
            self.draining.insert(vip);
        } else {
            self.draining.remove(&vip);
        }
    }

    /// The services and their entries.
    pub fn services(&self) -> &BTreeMap<ServiceKey, ServiceEntry> {
        &self.services
    }

    /// Round-robin turns a service has taken so far.
    pub fn turns(&self, key: &ServiceKey) -> Option<u64> {
        let s = self.services.get(key)?;
        self.rr.get(&s.id).copied()
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

    /// Every conntrack entry.
    pub fn ct_entries(&self) -> impl Iterator<Item = (&Tuple, &CtEntry)> {
        self.ct.iter()
    }

    // kv_source_of(): the hashed source, else the next whose port space
    // towards the backend is not marked full, else the hashed one.
    fn source_of(&self, cfg: &KonveyConfig, key: &Tuple, be: Backend) -> Option<u32> {
        let count = cfg.sources.len();
        if count == 0 || count > KV_MAX_SOURCE_IPS as usize {
            return None;
        }
        let start = flow::port_hash(key) as usize % count;
        if count == 1 {
            return Some(u32::from(cfg.sources[0]));
        }
        (0..count)
            .map(|i| u32::from(cfg.sources[(start + i) % count]))
            .find(|&source| {
                let space = Tuple {
                    saddr: u32::from(be.addr),
                    daddr: source,
                    sport: be.port,
                    dport: 0,
                    proto: key.proto,
                };
                !self.ct.full_spaces.contains(&space)
            })
            .or(Some(u32::from(cfg.sources[start])))
    }

    fn is_vip(&self, addr: u32) -> bool {
        // kv_vips holds a VIP while a service is on it, or while it drains
        self.services.keys().any(|k| u32::from(k.vip) == addr) || self.draining.contains(&addr)
    }

    /// Run one frame through the program.
    pub fn process(&mut self, frame: &[u8]) -> Outcome {
        let mut p = Pkt::new(frame);
        let (verdict, stat) = self.konvey(&mut p);
        Outcome {
            verdict,
            packet: p.buf,
            stat,
        }
    }

    // konvey()
    fn konvey(&mut self, p: &mut Pkt) -> (u32, u32) {
        let Some(cfg) = self.cfg.clone() else {
            return pass(kw_stat::KW_STAT_PASS_NO_CONFIG);
        };
        let ihl = match p.parse_l3() {
            Ok(ihl) => ihl,
            Err(verdict) => return verdict,
        };
        let to_vip = self.is_vip(p.key.daddr);
        // kv_is_source()
        if !to_vip && !cfg.sources.iter().any(|s| u32::from(*s) == p.key.daddr) {
            return pass(kw_stat::KW_STAT_PASS_NOT_OURS);
        }
        let host = if to_vip {
            kw_stat::KW_STAT_PASS_TO_HOST
        } else {
            kw_stat::KW_STAT_PASS_NOT_OURS
        };
        if p.key.proto == IPPROTO_ICMP {
            return self.icmp(p, ihl, host);
        }
        if p.key.proto != IPPROTO_TCP && p.key.proto != IPPROTO_UDP {
            return pass(host);
        }
        if !to_vip && (ihl != 5 || p.is_fragment()) {
            return pass(kw_stat::KW_STAT_PASS_NOT_OURS);
        }
        if ihl != 5 {
            return drop(kw_stat::KW_STAT_DROP_IP_OPTIONS);
        }
        if p.is_fragment() {
            return drop(kw_stat::KW_STAT_DROP_FRAGMENT);
        }
        if !flow::parse_l4(p) {
            return drop(kw_stat::KW_STAT_DROP_MALFORMED_L4);
        }
        if let Some(v) = self.ct.get(&p.key) {
            if v.in_role == ROLE {
                let key = p.key;
                return flow::established(&mut self.ct, &self.fib, p, key);
            }
        }
        if !to_vip {
            return pass(kw_stat::KW_STAT_PASS_NOT_OURS);
        }
        self.new_flow(p, &cfg)
    }

    // kv_icmp(): an error about one of our flows is translated, the rest is
    // the host's (`host`: the pass counter for this destination).
    fn icmp(&mut self, p: &mut Pkt, ihl: usize, host: u32) -> (u32, u32) {
        if ihl != 5 || p.is_fragment() {
            return pass(host);
        }
        if !flow::parse_l4(p) || p.kind != Kind::IcmpError {
            return pass(host);
        }
        match icmp::find(&self.ct, p, ROLE) {
            Ok(r) => icmp::forward(&self.fib, p, &r),
            Err(_) => pass(host),
        }
    }

    // kv_new_flow()
    fn new_flow(&mut self, p: &mut Pkt, cfg: &KonveyConfig) -> (u32, u32) {
        let key = ServiceKey {
            vip: Ipv4Addr::from(p.key.daddr),
            proto: match p.kind {
                Kind::Tcp => kowabunga_dataplane::konvey::Proto::Tcp,
                _ => kowabunga_dataplane::konvey::Proto::Udp,
            },
            port: p.key.dport,
        };
        let Some(svc) = self.services.get(&key) else {
            return drop(kw_stat::KW_STAT_DROP_NO_SERVICE);
        };
        if tcp_not_syn(p) {
            return drop(kw_stat::KW_STAT_DROP_TCP_NOT_SYN);
        }
        // the VIP is translated: kw_ttl_path()
        if p.ttl_expiring() {
            return drop(kw_stat::KW_STAT_DROP_TTL);
        }
        // kv_pick()
        let count = svc.rotation.len();
        if count == 0 || count > KV_MAX_BACKENDS as usize {
            return drop(kw_stat::KW_STAT_DROP_NO_BACKEND);
        }
        let Some(rr) = self.rr.get_mut(&svc.id) else {
            return drop(kw_stat::KW_STAT_DROP_NO_BACKEND);
        };
        let turn = *rr;
        *rr = rr.wrapping_add(1);
        let be = svc.rotation[(turn % count as u64) as usize];
        let Some(source) = self.source_of(cfg, &p.key, be) else {
            return drop(kw_stat::KW_STAT_DROP_NO_PORT);
        };
        let n = Tuple {
            saddr: source,
            daddr: u32::from(be.addr),
            sport: p.key.sport,
            dport: be.port,
            proto: p.key.proto,
        };
        let env = FlowEnv {
            port_min: cfg.port_min,
            port_max: cfg.port_max,
        };
        let plan = Plan {
            in_role: ROLE,
            reply_role: ROLE,
            // KW_CT_F_LB: the entries carry the backend's counter slot
            flags: (KW_CT_F_SNAT | KW_CT_F_DNAT | KW_CT_F_LB) as u8,
            snat: true,
        };
        flow::new_flow(&mut self.ct, &self.fib, p, env, n, plan)
    }
}

#[cfg(test)]
mod tests {
    //! The model alone, without privileges (the fixtures hold it to the
    //! kernel): round-robin, turns, port reallocation, reply translation.

    use super::*;
    use crate::fixture_konvey::{
        backend, config, fib_model, services, tcp_service, BACKENDS, CLIENTS, FRONT_MAC, SOURCE,
        TCP_BACKEND_PORT, TCP_PORT, VIP,
    };
    use crate::model::{XDP_DROP, XDP_REDIRECT};
    use crate::packets::{frame, verify_checksums, Ip, TcpFlags, L4};

    fn model() -> KonveyModel {
        let mut m = KonveyModel::new(config(), fib_model());
        for (k, r) in services() {
            m.set_service(k, &r);
        }
        m
    }

    fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: TcpFlags) -> Vec<u8> {
        let l4 = L4::Tcp {
            sport,
            dport,
            flags,
        };
        frame([2, 0, 0, 0, 0, 9], FRONT_MAC, &Ip::new(src, dst), &l4, b"x")
    }

    fn daddr(f: &[u8]) -> Ipv4Addr {
        Ipv4Addr::new(f[30], f[31], f[32], f[33])
    }

    #[test]
    fn new_flows_round_robin_and_non_syn_takes_no_turn() {
        let mut m = model();
        let c = CLIENTS[0].0;
        let ack = m.process(&tcp(c, 999, VIP, TCP_PORT, TcpFlags::ACK));
        assert_eq!(
            (ack.verdict, ack.stat),
            (XDP_DROP, kw_stat::KW_STAT_DROP_TCP_NOT_SYN)
        );
        for i in 0..6u16 {
            let o = m.process(&tcp(c, 2000 + i, VIP, TCP_PORT, TcpFlags::SYN));
            assert_eq!(o.verdict, XDP_REDIRECT);
            assert_eq!(daddr(&o.packet), BACKENDS[usize::from(i % 3)].0);
            verify_checksums(&o.packet).expect("checksums");
        }
        assert_eq!(m.turns(&tcp_service()), Some(6));
        assert_eq!(m.ct_len(), 12);
    }

    #[test]
    fn colliding_source_port_is_reallocated_and_replies_find_their_client() {
        let mut m = model();
        m.set_service(tcp_service(), &[backend(0, TCP_BACKEND_PORT)]);
        let (c0, c1) = (CLIENTS[0].0, CLIENTS[1].0);
        let a = m.process(&tcp(c0, 40000, VIP, TCP_PORT, TcpFlags::SYN));
        let b = m.process(&tcp(c1, 40000, VIP, TCP_PORT, TcpFlags::SYN));
        let port = |f: &[u8]| u16::from_be_bytes([f[34], f[35]]);
        assert_eq!(port(&a.packet), 40000);
        let p = port(&b.packet);
        assert_ne!(p, 40000);
        let reply = m.process(&tcp(
            BACKENDS[0].0,
            TCP_BACKEND_PORT,
            SOURCE,
            p,
            TcpFlags::SYN_ACK,
        ));
        assert_eq!(reply.verdict, XDP_REDIRECT);
        assert_eq!(daddr(&reply.packet), c1);
        assert_eq!(&reply.packet[26..30], &VIP.octets());
        let orig = Tuple::new(6, c1, 40000, VIP, TCP_PORT);
        assert_eq!(
            m.ct_get(&orig).map(|e| e.state),
            Some(crate::model::flow::CT_ESTABLISHED)
        );
    }
}
