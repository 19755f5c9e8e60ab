//! The `kiwi` section compiled into what the server reads for every query:
//! [`Zones`], an immutable map of DNS records built once per (re)load and
//! swapped in whole ([`super::engine`] holds it in an `ArcSwap`), and the
//! authoritative answer to one question ([`Zones::answer`]).
//!
//! Each zone has a SOA and an NS record at its apex; the NS host is
//! `ns.<domain>`, answering the node's listen addresses unless the zone
//! names `ns` itself. A name answers its A and AAAA records; several
//! addresses are all returned, rotated by one between answers. A name that
//! only has names below it (`app` of `www.app`) exists without records
//! (NODATA); anything else under the apex is NXDOMAIN. Negative answers
//! carry the SOA.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::config::{ValidKiwi, ValidZone};

/// SOA timers (refresh, retry, expire), seconds: no secondaries pull the
/// zones, the values only have to be sane.
pub const SOA_TIMERS: (i32, i32, i32) = (3600, 600, 86_400);

/// FNV-1a: the maps' keys are the operator's names, never the client's, so
/// a fast hash without a secret key is safe here (a client's name is only
/// looked up).
#[derive(Debug, Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;
type Set<K> = HashSet<K, BuildHasherDefault<Fnv>>;

/// The records of one name, and its turn in the rotation.
#[derive(Debug, Default)]
struct Node {
    a: Vec<Record>,
    aaaa: Vec<Record>,
    /// A then AAAA, for `ANY`.
    all: Vec<Record>,
    turn: AtomicUsize,
}

/// One authoritative zone.
#[derive(Debug)]
pub struct Zone {
    apex: LowerName,
    allow_from: Vec<IpNet>,
    soa: Vec<Record>,
    ns: Vec<Record>,
    ns_host: LowerName,
    nodes: Map<LowerName, Node>,
    /// Names that exist only because names below them do.
    empty: Set<LowerName>,
}

/// Every zone of the node, by apex.
#[derive(Debug, Default)]
pub struct Zones {
    zones: Map<LowerName, Zone>,
    /// Most labels of an apex: a query walks up from there at most.
    max_apex_labels: u8,
}

/// A run of records: a rotated list is two slices.
pub type Rrs<'a> = std::iter::Chain<std::slice::Iter<'a, Record>, std::slice::Iter<'a, Record>>;

/// One slice as [`Rrs`].
pub fn rrs(records: &[Record]) -> Rrs<'_> {
    records.iter().chain([].iter())
}

/// No records.
pub fn no_rrs<'a>() -> Rrs<'a> {
    rrs(&[])
}

/// An authoritative answer.
#[derive(Debug, Clone)]
pub struct AuthAnswer<'a> {
    /// NOERROR or NXDOMAIN.
    pub code: ResponseCode,
    /// Answer section.
    pub answers: Rrs<'a>,
    /// Authority section (the SOA of negative answers).
    pub authorities: Rrs<'a>,
    /// Additional section (the NS host's addresses).
    pub additionals: Rrs<'a>,
}

/// What the zones say about a question.
#[derive(Debug, Clone)]
pub enum Verdict<'a> {
    /// The name is in a zone: the authoritative answer.
    Answer(AuthAnswer<'a>),
    /// The name is in a zone this client may not query.
    Refused,
    /// The name is in no zone: forward it.
    NotOurs,
}

fn name(text: &str) -> Name {
    // Validated names always parse; the root stands in otherwise.
    Name::from_str(&format!("{text}.")).unwrap_or_else(|_| Name::root())
}

fn address_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, rdata)
}

impl Node {
    fn new(owner: &Name, ttl: u32, addresses: &[IpAddr]) -> Self {
        let mut node = Node::default();
        for ip in addresses {
            let record = address_record(owner, ttl, *ip);
            match ip {
                IpAddr::V4(_) => node.a.push(record),
                IpAddr::V6(_) => node.aaaa.push(record),
            }
        }
        node.all = node.a.iter().chain(&node.aaaa).cloned().collect();
        node
    }

    /// `records` rotated by this node's next turn.
    fn rotated<'a>(&self, records: &'a [Record]) -> Rrs<'a> {
        if records.len() < 2 {
            return rrs(records);
        }
        let k = self.turn.fetch_add(1, Ordering::Relaxed) % records.len();
        records[k..].iter().chain(records[..k].iter())
    }
}

fn positive<'a>(answers: Rrs<'a>, additionals: Rrs<'a>) -> AuthAnswer<'a> {
    AuthAnswer {
        code: ResponseCode::NoError,
        answers,
        authorities: no_rrs(),
        additionals,
    }
}

impl Zone {
    fn new(zone: &ValidZone, ttl: u32, serial: u32, listen: &[SocketAddr]) -> Self {
        let apex_name = name(&zone.domain);
        let apex = LowerName::new(&apex_name);
        let ns_host_name = name(&format!("ns.{}", zone.domain));
        let ns_host = LowerName::new(&ns_host_name);
        let hostmaster = name(&format!("hostmaster.{}", zone.domain));
        let (refresh, retry, expire) = SOA_TIMERS;
        let soa = Record::from_rdata(
            apex_name.clone(),
            ttl,
            RData::SOA(SOA::new(
                ns_host_name.clone(),
                hostmaster,
                serial,
                refresh,
                retry,
                expire,
                ttl,
            )),
        );
        let ns = Record::from_rdata(apex_name, ttl, RData::NS(NS(ns_host_name.clone())));
        let mut nodes = Map::default();
        let mut empty = Set::default();
        for (label, addresses) in &zone.records {
            let owner = name(&format!("{label}.{}", zone.domain));
            let lower = LowerName::new(&owner);
            let mut up = lower.base_name();
            while up != apex && !up.is_root() {
                empty.insert(up.clone());
                up = up.base_name();
            }
            nodes.insert(lower, Node::new(&owner, ttl, addresses));
        }
        if !nodes.contains_key(&ns_host) {
            let own: Vec<IpAddr> = listen
                .iter()
                .map(SocketAddr::ip)
                .filter(|ip| !ip.is_unspecified())
                .collect();
            if !own.is_empty() {
                nodes.insert(ns_host.clone(), Node::new(&ns_host_name, ttl, &own));
            }
        }
        empty.retain(|n| !nodes.contains_key(n));
        Zone {
            apex,
            allow_from: zone.allow_from.clone(),
            soa: vec![soa],
            ns: vec![ns],
            ns_host,
            nodes,
            empty,
        }
    }

    /// Whether `client` may query this zone.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.allow_from.is_empty() || self.allow_from.iter().any(|net| net.contains(&client))
    }

    fn negative(&self, code: ResponseCode) -> AuthAnswer<'_> {
        AuthAnswer {
            code,
            answers: no_rrs(),
            authorities: rrs(&self.soa),
            additionals: no_rrs(),
        }
    }

    fn glue(&self) -> Rrs<'_> {
        match self.nodes.get(&self.ns_host) {
            Some(node) => rrs(&node.all),
            None => no_rrs(),
        }
    }

    /// The answer to `qname`/`qtype`, `qname` being in this zone.
    pub fn answer(&self, qname: &LowerName, qtype: RecordType) -> AuthAnswer<'_> {
        if *qname == self.apex {
            return match qtype {
                RecordType::SOA => positive(rrs(&self.soa), no_rrs()),
                RecordType::NS => positive(rrs(&self.ns), self.glue()),
                RecordType::ANY => AuthAnswer {
                    code: ResponseCode::NoError,
                    answers: rrs(&self.soa),
                    authorities: rrs(&self.ns),
                    additionals: self.glue(),
                },
                _ => self.negative(ResponseCode::NoError),
            };
        }
        let Some(node) = self.nodes.get(qname) else {
            return if self.empty.contains(qname) {
                self.negative(ResponseCode::NoError)
            } else {
                self.negative(ResponseCode::NXDomain)
            };
        };
        let records = match qtype {
            RecordType::A => &node.a,
            RecordType::AAAA => &node.aaaa,
            RecordType::ANY => &node.all,
            _ => return self.negative(ResponseCode::NoError),
        };
        if records.is_empty() {
            return self.negative(ResponseCode::NoError);
        }
        let answers = if qtype == RecordType::ANY {
            rrs(records)
        } else {
            node.rotated(records)
        };
        positive(answers, no_rrs())
    }
}

impl Zones {
    /// Compiles the zones of `kiwi`; `serial` is the SOA serial (the load
    /// time, so it grows with every reload).
    pub fn compile(kiwi: &ValidKiwi, serial: u32) -> Self {
        let mut zones = Map::default();
        let mut max_apex_labels = 0;
        for zone in &kiwi.zones {
            let compiled = Zone::new(zone, kiwi.ttl, serial, &kiwi.listen);
            max_apex_labels = max_apex_labels.max(compiled.apex.num_labels());
            zones.insert(compiled.apex.clone(), compiled);
        }
        Zones {
            zones,
            max_apex_labels,
        }
    }

    /// How many zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether there is no zone.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// How many names, all zones together (apexes not counted).
    pub fn names(&self) -> usize {
        self.zones.values().map(|z| z.nodes.len()).sum()
    }

    /// The zone `qname` belongs to (the longest apex it ends with).
    pub fn find(&self, qname: &LowerName) -> Option<&Zone> {
        if self.zones.is_empty() {
            return None;
        }
        let mut name = qname.clone();
        while name.num_labels() > self.max_apex_labels {
            name = name.base_name();
        }
        loop {
            if let Some(zone) = self.zones.get(&name) {
                return Some(zone);
            }
            if name.is_root() {
                return None;
            }
            name = name.base_name();
        }
    }

    /// What the zones say about `qname`/`qtype` asked by `client`.
    pub fn answer(&self, client: IpAddr, qname: &LowerName, qtype: RecordType) -> Verdict<'_> {
        match self.find(qname) {
            None => Verdict::NotOurs,
            Some(zone) if !zone.allows(client) => Verdict::Refused,
            Some(zone) => Verdict::Answer(zone.answer(qname, qtype)),
        }
    }
}
