//! The rule index: rule tables compiled into the `kw_rule_addr` and
//! `kw_rule_port` LPM tries and the `kw_rule_exact` hash the programs look
//! up (see `kw_abi.h`, "Rule index", and `ebpf/README.md`, "Rule tables").
//!
//! Per bank and table:
//! - one *node* per distinct rule prefix, holding every rule whose prefix
//!   contains it: the longest prefix match of an address gives exactly the
//!   rules matching that address;
//! - per node and protocol (0 for the protocol-any rules), the destination
//!   port space cut into disjoint intervals, each labelled with the first rule
//!   (lowest index) covering it. Intervals of one port (and the single
//!   interval of a protocol without ports, at port 0) go to the
//!   `kw_rule_exact` hash; wider ones are split into aligned power-of-two
//!   blocks in the `kw_rule_port` trie. The node's flags say which of the
//!   two hold entries of each protocol class.
//!
//! A packet then costs one LPM lookup by address and, per protocol, one hash
//! lookup and at most one LPM lookup, whatever the rule count.
//! [`BankIndex::build`] is pure; [`BankIndex::diff`] gives the map updates
//! that turn one bank's index into another.

use std::collections::{BTreeMap, HashMap, HashSet};

use kowabunga_bindings::{
    kw_rule, kw_rule6, kw_rule_addr, kw_rule_addr6, kw_rule_hit, kw_rule_node, kw_rule_port,
    KW_BANKS, KW_RULE_ADDR6_FULL, KW_RULE_ADDR_FULL, KW_RULE_EXACT_ENTRIES, KW_RULE_F_OTHER,
    KW_RULE_NONE, KW_RULE_PORT_ENTRIES, KW_TABLE_INGRESS6,
};

use super::banks::{Error, Tables, TABLE_NAMES};

/// `kw_rule_addr_key` as (prefix length, data).
pub type AddrKey = (u32, kw_rule_addr);
/// `kw_rule_addr6_key` as (prefix length, data).
pub type Addr6Key = (u32, kw_rule_addr6);

/// Port entries of one bank in `kw_rule_port` (half the map: the other bank
/// keeps the active configuration while this one is written).
pub const PORT_ENTRIES_PER_BANK: usize = (KW_RULE_PORT_ENTRIES / KW_BANKS) as usize;
/// Entries of one bank in `kw_rule_exact`.
pub const EXACT_ENTRIES_PER_BANK: usize = (KW_RULE_EXACT_ENTRIES / KW_BANKS) as usize;

/// Index tables of a bank: the five `kw_table`s, then the IPv6 ingress
/// rules (`KW_TABLE_INGRESS6`).
pub const INDEX_TABLES: usize = KW_TABLE_INGRESS6 as usize + 1;

/// How many port entries each table of a bank takes in the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexUsage {
    /// `kw_rule_port` entries per table (index: `kw_table`, then
    /// `KW_TABLE_INGRESS6`).
    pub port: [usize; INDEX_TABLES],
    /// `kw_rule_exact` entries per table.
    pub exact: [usize; INDEX_TABLES],
}

impl IndexUsage {
    /// `kw_rule_port` entries of the bank.
    pub fn port_total(&self) -> usize {
        self.port.iter().sum()
    }

    /// `kw_rule_exact` entries of the bank.
    pub fn exact_total(&self) -> usize {
        self.exact.iter().sum()
    }

    /// Whether the bank fits both maps.
    pub fn fits(&self) -> bool {
        self.port_total() <= PORT_ENTRIES_PER_BANK && self.exact_total() <= EXACT_ENTRIES_PER_BANK
    }
}
/// `kw_rule_port_key` as (prefix length, data).
pub type PortKey = (u32, kw_rule_port);

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// `KW_RULE_F_EXACT` and `KW_RULE_F_WIDE` of the class of `proto` (0, TCP
/// or UDP; `KW_RULE_F_OTHER` and nothing for protocols without ports).
fn proto_flags(proto: u8) -> (u32, u32) {
    let class = match proto {
        0 => 0,
        IPPROTO_TCP => 1,
        IPPROTO_UDP => 2,
        _ => return (KW_RULE_F_OTHER, 0),
    };
    (1 << (2 * class), 1 << (2 * class + 1))
}

/// The entries one bank holds in the tries and the hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BankIndex {
    /// `kw_rule_addr` entries.
    pub addr: HashMap<AddrKey, kw_rule_node>,
    /// `kw_rule_addr6` entries (the IPv6 ingress rules).
    pub addr6: HashMap<Addr6Key, kw_rule_node>,
    /// `kw_rule_port` entries.
    pub port: HashMap<PortKey, kw_rule_hit>,
    /// `kw_rule_exact` entries.
    pub exact: HashMap<kw_rule_port, kw_rule_hit>,
}

/// Map updates from one [`BankIndex`] to another.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// `kw_rule_addr` keys to remove.
    pub addr_remove: Vec<AddrKey>,
    /// `kw_rule_addr` entries to insert or replace.
    pub addr_set: Vec<(AddrKey, kw_rule_node)>,
    /// `kw_rule_addr6` keys to remove.
    pub addr6_remove: Vec<Addr6Key>,
    /// `kw_rule_addr6` entries to insert or replace.
    pub addr6_set: Vec<(Addr6Key, kw_rule_node)>,
    /// `kw_rule_port` keys to remove.
    pub port_remove: Vec<PortKey>,
    /// `kw_rule_port` entries to insert or replace.
    pub port_set: Vec<(PortKey, kw_rule_hit)>,
    /// `kw_rule_exact` keys to remove.
    pub exact_remove: Vec<kw_rule_port>,
    /// `kw_rule_exact` entries to insert or replace.
    pub exact_set: Vec<(kw_rule_port, kw_rule_hit)>,
}

impl Diff {
    /// Number of map operations.
    pub fn len(&self) -> usize {
        self.addr_remove.len()
            + self.addr_set.len()
            + self.addr6_remove.len()
            + self.addr6_set.len()
            + self.port_remove.len()
            + self.port_set.len()
            + self.exact_remove.len()
            + self.exact_set.len()
    }

    /// No operation at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Prefix length of a contiguous netmask (host order), or `None`.
fn prefix_len(mask: u32) -> Option<u32> {
    let len = mask.leading_ones();
    (mask.checked_shl(len).unwrap_or(0) == 0).then_some(len)
}

fn mask_of(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len).unwrap_or(0)
}

/// Netmask of `len` bits in an address of `width` bits (32 or 128), in
/// the low bits of a u128.
fn mask_w(len: u32, width: u32) -> u128 {
    let all = u128::MAX >> (128 - width);
    all.checked_shl(width - len).unwrap_or(0) & all
}

/// A rule as the index sees it: protocol, effective ports, target.
#[derive(Clone, Copy)]
struct Item {
    proto: u8,
    lo: u32,
    hi: u32,
    target: u32,
}

fn item(r: &kw_rule) -> Item {
    let (lo, hi) = effective_ports(r);
    Item {
        proto: r.proto,
        lo,
        hi,
        target: r.target,
    }
}

fn item6(r: &kw_rule6) -> Item {
    let (lo, hi) = if r.proto == 0 || r.proto == IPPROTO_TCP || r.proto == IPPROTO_UDP {
        (u32::from(r.port_lo), u32::from(r.port_hi))
    } else {
        (0, 0xffff)
    };
    Item {
        proto: r.proto,
        lo,
        hi,
        target: 0,
    }
}

/// Port range a rule covers in the port trie of its protocol: protocols
/// without ports ignore the range.
fn effective_ports(r: &kw_rule) -> (u32, u32) {
    if r.proto == 0 || r.proto == IPPROTO_TCP || r.proto == IPPROTO_UDP {
        (u32::from(r.port_lo), u32::from(r.port_hi))
    } else {
        (0, 0xffff)
    }
}

/// First-match painting: `rules` in index order, each `(lo, hi, index,
/// target)`; returns the disjoint intervals each labelled with the first
/// rule covering it.
fn paint(rules: impl Iterator<Item = (u32, u32, u32, u32)>) -> Vec<(u32, u32, u32, u32)> {
    // covered intervals, start -> end (inclusive), disjoint and non-adjacent
    let mut covered: BTreeMap<u32, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for (lo, hi, index, target) in rules {
        let from = covered.range(..=lo).next_back().map_or(lo, |(&s, _)| s);
        let touching: Vec<(u32, u32)> = covered
            .range(from..=hi + 1)
            .map(|(&s, &e)| (s, e))
            .filter(|&(_, e)| e + 1 >= lo)
            .collect();
        let mut cur = lo;
        for &(s, e) in &touching {
            if s > cur {
                let gap_hi = (s - 1).min(hi);
                if cur <= gap_hi {
                    out.push((cur, gap_hi, index, target));
                }
            }
            cur = cur.max(e + 1);
        }
        if cur <= hi {
            out.push((cur, hi, index, target));
        }
        let (mut s0, mut e0) = (lo, hi);
        for &(s, e) in &touching {
            covered.remove(&s);
            s0 = s0.min(s);
            e0 = e0.max(e);
        }
        covered.insert(s0, e0);
    }
    out
}

/// Aligned power-of-two blocks covering `[lo, hi]` (ports), as (start,
/// prefix length over 16 bits).
fn blocks(mut lo: u32, hi: u32) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    while lo <= hi {
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        // lo < 65536 and size divides it
        out.push((lo as u16, 16 - size.trailing_zeros()));
        lo += size;
    }
    out
}

impl BankIndex {
    /// Compiles the rule tables of `bank` (validated by
    /// [`super::banks::validate`]). Fails on a netmask that is not a prefix
    /// and when the port trie or the exact hash would not hold the bank.
    pub fn build(bank: u32, tables: &Tables) -> Result<Self, Error> {
        Self::build_all(bank, tables, &[])
    }

    /// [`BankIndex::build`] with the IPv6 ingress rules (`kw_rules6`).
    pub fn build_all(bank: u32, tables: &Tables, ingress6: &[kw_rule6]) -> Result<Self, Error> {
        let index = Self::compile(bank, tables, ingress6)?;
        let usage = index.usage();
        for (entries, max) in [
            (usage.port_total(), PORT_ENTRIES_PER_BANK),
            (usage.exact_total(), EXACT_ENTRIES_PER_BANK),
        ] {
            if entries > max {
                return Err(Error::IndexTooLarge { entries, max });
            }
        }
        Ok(index)
    }

    /// The index, without the capacity check: what a configuration would
    /// take (see [`BankIndex::usage`]).
    pub fn compile(bank: u32, tables: &Tables, ingress6: &[kw_rule6]) -> Result<Self, Error> {
        let mut index = Self::default();
        for (t, rules) in tables.iter().enumerate() {
            index.build_table(bank as u8, t, rules)?;
        }
        index.build_table6(bank as u8, ingress6)?;
        Ok(index)
    }

    /// Port entries per table.
    pub fn usage(&self) -> IndexUsage {
        let mut usage = IndexUsage::default();
        for (_, k) in self.port.keys() {
            usage.port[usize::from(k.table).min(INDEX_TABLES - 1)] += 1;
        }
        for k in self.exact.keys() {
            usage.exact[usize::from(k.table).min(INDEX_TABLES - 1)] += 1;
        }
        usage
    }

    fn build_table(&mut self, bank: u8, t: usize, rules: &[kw_rule]) -> Result<(), Error> {
        let mut prefixes = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let mask = u32::from_be(r.cidr.mask);
            let len = prefix_len(mask).ok_or(Error::NotAPrefix {
                table: TABLE_NAMES[t],
                index: i,
                mask,
            })?;
            prefixes.push((len, u128::from(u32::from_be(r.cidr.addr) & mask)));
        }
        let items: Vec<Item> = rules.iter().map(item).collect();
        for ((len, net), node) in self.build_nodes(bank, t as u8, 32, &prefixes, &items) {
            self.addr.insert(
                (
                    KW_RULE_ADDR_FULL - 32 + len,
                    kw_rule_addr {
                        bank,
                        table: t as u8,
                        addr: (net as u32).to_be(),
                        ..Default::default()
                    },
                ),
                node,
            );
        }
        Ok(())
    }

    fn build_table6(&mut self, bank: u8, rules: &[kw_rule6]) -> Result<(), Error> {
        let mut prefixes = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let len = u32::from(r.prefix_len);
            if len > 128 {
                return Err(Error::BadPrefix6 { index: i, len });
            }
            prefixes.push((len, u128::from_be_bytes(r.addr) & mask_w(len, 128)));
        }
        let items: Vec<Item> = rules.iter().map(item6).collect();
        let table = KW_TABLE_INGRESS6 as u8;
        for ((len, net), node) in self.build_nodes(bank, table, 128, &prefixes, &items) {
            self.addr6.insert(
                (
                    KW_RULE_ADDR6_FULL - 128 + len,
                    kw_rule_addr6 {
                        bank,
                        table,
                        addr: net.to_be_bytes(),
                        ..Default::default()
                    },
                ),
                node,
            );
        }
        Ok(())
    }

    /// The nodes of one table (addresses of `width` bits): rule `i` has
    /// prefix `prefixes[i]` and ports `items[i]`. Writes the port entries
    /// and returns each node with its prefix.
    fn build_nodes(
        &mut self,
        bank: u8,
        table: u8,
        width: u32,
        prefixes: &[(u32, u128)],
        items: &[Item],
    ) -> Vec<((u32, u128), kw_rule_node)> {
        // rules of each prefix (len, network), in index order
        let mut by_prefix: BTreeMap<(u32, u128), Vec<u32>> = BTreeMap::new();
        for (i, p) in prefixes.iter().enumerate() {
            by_prefix.entry(*p).or_default().push(i as u32);
        }
        let mut nodes = Vec::with_capacity(by_prefix.len());
        for (node, (&(len, net), _)) in by_prefix.iter().enumerate() {
            // rules of every prefix containing this one, in index order
            let mut members: Vec<u32> = (0..=len)
                .filter_map(|l| by_prefix.get(&(l, net & mask_w(l, width))))
                .flatten()
                .copied()
                .collect();
            members.sort_unstable();
            let node = node as u32;
            let first_any = members
                .iter()
                .copied()
                .find(|&i| items[i as usize].proto == 0);
            let mut flags = 0u32;
            let protos: HashSet<u8> = members.iter().map(|&i| items[i as usize].proto).collect();
            for proto in protos {
                let painted = paint(
                    members
                        .iter()
                        .filter(|&&i| items[i as usize].proto == proto)
                        .map(|&i| {
                            let it = items[i as usize];
                            (it.lo, it.hi, i, it.target)
                        }),
                );
                let (exact_flag, wide_flag) = proto_flags(proto);
                let key = |port: u16| kw_rule_port {
                    bank,
                    table,
                    proto,
                    node,
                    port: port.to_be(),
                    ..Default::default()
                };
                for (lo, hi, index, target) in painted {
                    let hit = kw_rule_hit { index, target };
                    if wide_flag == 0 {
                        // no ports: one interval, every port, looked up at 0
                        flags |= exact_flag;
                        self.exact.insert(key(0), hit);
                    } else if lo == hi {
                        flags |= exact_flag;
                        self.exact.insert(key(lo as u16), hit);
                    } else {
                        flags |= wide_flag;
                        for (start, bits) in blocks(lo, hi) {
                            self.port
                                .insert((KW_RULE_ADDR_FULL + bits, key(start)), hit);
                        }
                    }
                }
            }
            nodes.push((
                (len, net),
                kw_rule_node {
                    node,
                    any_index: first_any.unwrap_or(KW_RULE_NONE),
                    any_target: first_any.map_or(0, |i| items[i as usize].target),
                    flags,
                },
            ));
        }
        nodes
    }

    /// The updates turning `self` (what the maps hold) into `next`: removals
    /// of keys `next` lacks, and the entries that are new or changed.
    pub fn diff(&self, next: &Self) -> Diff {
        Diff {
            addr_remove: self
                .addr
                .keys()
                .filter(|k| !next.addr.contains_key(k))
                .copied()
                .collect(),
            addr_set: next
                .addr
                .iter()
                .filter(|(k, v)| self.addr.get(k) != Some(v))
                .map(|(k, v)| (*k, *v))
                .collect(),
            addr6_remove: self
                .addr6
                .keys()
                .filter(|k| !next.addr6.contains_key(k))
                .copied()
                .collect(),
            addr6_set: next
                .addr6
                .iter()
                .filter(|(k, v)| self.addr6.get(k) != Some(v))
                .map(|(k, v)| (*k, *v))
                .collect(),
            port_remove: self
                .port
                .keys()
                .filter(|k| !next.port.contains_key(k))
                .copied()
                .collect(),
            port_set: next
                .port
                .iter()
                .filter(|(k, v)| self.port.get(k) != Some(v))
                .map(|(k, v)| (*k, *v))
                .collect(),
            exact_remove: self
                .exact
                .keys()
                .filter(|k| !next.exact.contains_key(k))
                .copied()
                .collect(),
            exact_set: next
                .exact
                .iter()
                .filter(|(k, v)| self.exact.get(k) != Some(v))
                .map(|(k, v)| (*k, *v))
                .collect(),
        }
    }

    /// Looks `(addr, proto, dport)` up as the program does (ports only for
    /// TCP and UDP): the index and target of the first matching rule of
    /// `table`. For tests of the encoding.
    pub fn lookup(
        &self,
        bank: u32,
        table: usize,
        addr: u32,
        proto: u8,
        dport: Option<u16>,
    ) -> Option<(u32, u32)> {
        let node = (0..=32u32).rev().find_map(|len| {
            self.addr.get(&(
                KW_RULE_ADDR_FULL - 32 + len,
                kw_rule_addr {
                    bank: bank as u8,
                    table: table as u8,
                    addr: (addr & mask_of(len)).to_be(),
                    ..Default::default()
                },
            ))
        })?;
        self.lookup_node(bank, table, node, proto, dport)
    }

    /// [`BankIndex::lookup`] for the IPv6 ingress rules: the index of the
    /// first rule matching (source, proto, dport).
    pub fn lookup6(
        &self,
        bank: u32,
        addr: std::net::Ipv6Addr,
        proto: u8,
        dport: Option<u16>,
    ) -> Option<u32> {
        let table = KW_TABLE_INGRESS6 as u8;
        let bits = u128::from(addr);
        let node = (0..=128u32).rev().find_map(|len| {
            self.addr6.get(&(
                KW_RULE_ADDR6_FULL - 128 + len,
                kw_rule_addr6 {
                    bank: bank as u8,
                    table,
                    addr: (bits & mask_w(len, 128)).to_be_bytes(),
                    ..Default::default()
                },
            ))
        })?;
        self.lookup_node(bank, usize::from(table), node, proto, dport)
            .map(|(i, _)| i)
    }

    fn lookup_node(
        &self,
        bank: u32,
        table: usize,
        node: &kw_rule_node,
        proto: u8,
        dport: Option<u16>,
    ) -> Option<(u32, u32)> {
        let key = |proto: u8, port: u16| kw_rule_port {
            bank: bank as u8,
            table: table as u8,
            proto,
            node: node.node,
            port: port.to_be(),
            ..Default::default()
        };
        // as kw_rule_port_hit: the hash, then on a miss the trie, each only
        // when the node's flags allow a hit
        let port_hit = |proto: u8, port: u16| {
            let (exact, wide) = proto_flags(proto);
            let hit = (node.flags & exact != 0)
                .then(|| self.exact.get(&key(proto, port)))
                .flatten();
            hit.or_else(|| {
                (node.flags & wide != 0)
                    .then(|| {
                        (0..=16u32).rev().find_map(|bits| {
                            let start = u32::from(port) & (mask_of(bits) >> 16);
                            self.port
                                .get(&(KW_RULE_ADDR_FULL + bits, key(proto, start as u16)))
                        })
                    })
                    .flatten()
            })
        };
        let mut best = match dport {
            Some(port) => port_hit(0, port).map(|h| (h.index, h.target)),
            None => (node.any_index != KW_RULE_NONE).then_some((node.any_index, node.any_target)),
        };
        if proto != 0 {
            if let Some(h) = port_hit(proto, dport.unwrap_or(0)) {
                if best.is_none_or(|(i, _)| h.index < i) {
                    best = Some((h.index, h.target));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use kowabunga_bindings::kw_cidr;

    use super::*;

    fn rule(cidr: (u32, u32), proto: u8, lo: u16, hi: u16, target: u32) -> kw_rule {
        kw_rule {
            cidr: kw_cidr {
                addr: cidr.0.to_be(),
                mask: mask_of(cidr.1).to_be(),
            },
            target,
            port_lo: lo,
            port_hi: hi,
            proto,
            ..Default::default()
        }
    }

    // The specification: kw_rule_match as a linear scan.
    fn scan(rules: &[kw_rule], addr: u32, proto: u8, dport: Option<u16>) -> Option<(u32, u32)> {
        rules.iter().enumerate().find_map(|(i, r)| {
            let mask = u32::from_be(r.cidr.mask);
            let ok = (addr ^ u32::from_be(r.cidr.addr)) & mask == 0
                && (r.proto == 0 || r.proto == proto)
                && dport.is_none_or(|p| r.port_lo <= p && p <= r.port_hi);
            ok.then_some((i as u32, r.target))
        })
    }

    #[test]
    fn blocks_cover_ranges_exactly() {
        assert_eq!(blocks(0, 65535), vec![(0, 0)]);
        assert_eq!(blocks(1, 65535).len(), 16);
        assert_eq!(blocks(3000, 3005), vec![(3000, 14), (3004, 15)]);
        assert_eq!(blocks(80, 80), vec![(80, 16)]);
        for (lo, hi) in [(1u32, 1u32), (7, 300), (1024, 65535), (65535, 65535)] {
            let mut n = 0u32;
            for (start, bits) in blocks(lo, hi) {
                n += 1 << (16 - bits);
                assert_eq!(u32::from(start) % (1 << (16 - bits)), 0);
            }
            assert_eq!(n, hi - lo + 1);
        }
    }

    #[test]
    fn painting_keeps_the_first_rule() {
        let got = paint(
            [
                (10, 20, 0, 0),
                (5, 25, 1, 0),
                (15, 30, 2, 0),
                (0, 100, 3, 0),
            ]
            .into_iter(),
        );
        let mut got = got;
        got.sort();
        assert_eq!(
            got,
            vec![
                (0, 4, 3, 0),
                (5, 9, 1, 0),
                (10, 20, 0, 0),
                (21, 25, 1, 0),
                (26, 30, 2, 0),
                (31, 100, 3, 0)
            ]
        );
    }

    #[test]
    fn rejects_non_prefix_masks() {
        let mut tables = Tables::default();
        let mut r = rule((0, 0), 6, 1, 1, 0);
        r.cidr.mask = 0xff00ff00u32.to_be();
        tables[1].push(r);
        assert!(matches!(
            BankIndex::build(0, &tables),
            Err(Error::NotAPrefix {
                table: "egress",
                index: 0,
                ..
            })
        ));
    }

    #[test]
    fn lookup_agrees_with_a_linear_scan() {
        // a small deterministic generator: nested prefixes, ranges,
        // protocol-any rules and protocols without ports
        let mut seed = 0x1234_5678u64;
        let mut next = move |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % u64::from(n)) as u32
        };
        for round in 0..40 {
            let mut rules = Vec::new();
            for _ in 0..(1 + next(60)) {
                let len = [0, 8, 16, 24, 32, 30][next(6) as usize];
                let addr = 0x0a00_0000 | (next(4) << 8) | next(8);
                let proto = [0, 6, 17, 1, 47][next(5) as usize];
                let lo = [0, 1, 20, 80, 1000, 65535][next(6) as usize] as u16;
                let hi = lo.saturating_add([0, 1, 5, 100, 65535][next(5) as usize] as u16);
                rules.push(rule((addr, len), proto, lo, hi, next(1000)));
            }
            let mut tables = Tables::default();
            tables[round % 5] = rules.clone();
            let index = BankIndex::build(1, &tables).expect("builds");
            for _ in 0..400 {
                let addr = 0x0a00_0000 | (next(4) << 8) | next(8);
                let proto = [0, 6, 17, 1, 47, 50][next(6) as usize];
                let dport = (proto == 6 || proto == 17)
                    .then(|| [0, 1, 20, 21, 80, 81, 999, 1000, 1100, 65535][next(10) as usize]);
                assert_eq!(
                    index.lookup(1, round % 5, addr, proto, dport),
                    scan(&rules, addr, proto, dport),
                    "round {round} addr {addr:#x} proto {proto} dport {dport:?}"
                );
            }
        }
    }

    #[test]
    fn exact_ports_stay_out_of_the_trie() {
        // 10,000 hosts on one port each: nothing in the trie keyed by node
        let mut tables = Tables::default();
        tables[0] = (0..10_000)
            .map(|i| {
                rule(
                    (0x6440_0000 + i, 32),
                    6,
                    1000 + (i % 5000) as u16,
                    1000 + (i % 5000) as u16,
                    0,
                )
            })
            .chain([rule((0x0a00_0000, 8), 1, 0, 0, 7)])
            .collect();
        let index = BankIndex::build(0, &tables).expect("builds");
        assert!(index.port.is_empty());
        // 10,000 nodes plus the /8: its icmp rule at port 0
        assert_eq!(index.exact.len(), 10_001);
        let flags: Vec<u32> = index.addr.values().map(|n| n.flags).collect();
        assert!(flags.iter().all(|&f| f == 1 << 2 || f == KW_RULE_F_OTHER));
        assert_eq!(index.lookup(0, 0, 0x6440_0003, 6, Some(1003)), Some((3, 0)));
        assert_eq!(index.lookup(0, 0, 0x6440_0003, 6, Some(1004)), None);
        assert_eq!(index.lookup(0, 0, 0x0a01_0203, 1, None), Some((10_000, 7)));
    }

    #[test]
    fn ipv6_rules_agree_with_a_linear_scan_and_stay_apart() {
        use std::net::Ipv6Addr;
        let rule6 = |net: &str, proto: u8, lo: u16, hi: u16| {
            let net: ipnet::Ipv6Net = net.parse().expect("prefix");
            kw_rule6 {
                addr: net.network().octets(),
                prefix_len: net.prefix_len(),
                proto,
                port_lo: lo,
                port_hi: hi,
                ..Default::default()
            }
        };
        let rules = vec![
            rule6("2001:db8::/32", 6, 22, 22),
            rule6("2001:db8:1::/48", 6, 80, 90),
            rule6("::/0", 17, 53, 53),
            rule6("2001:db8:1:2::/64", 0, 0, 65535),
            rule6("::/0", 58, 0, 0),
        ];
        let mut tables = Tables::default();
        // an IPv4 ingress rule on the same port: its own table
        tables[0].push(rule((0, 0), 6, 443, 443, 0));
        let index = BankIndex::build_all(1, &tables, &rules).expect("builds");
        assert_eq!(index.addr6.len(), 4);
        // nodes /0 (udp 53, icmpv6), /32, /48 and /64 (each: tcp 22, udp 53,
        // icmpv6 copied in); ranges go to the trie
        assert_eq!(index.usage().exact[INDEX_TABLES - 1], 2 + 3 + 3 + 3);
        assert_eq!(index.usage().exact[0], 1);
        let scan6 = |addr: Ipv6Addr, proto: u8, dport: Option<u16>| {
            rules.iter().enumerate().find_map(|(i, r)| {
                let len = u32::from(r.prefix_len);
                let ok = (u128::from(addr) ^ u128::from_be_bytes(r.addr)) & mask_w(len, 128) == 0
                    && (r.proto == 0 || r.proto == proto)
                    && dport.is_none_or(|p| r.port_lo <= p && p <= r.port_hi);
                ok.then_some(i as u32)
            })
        };
        for addr in [
            "2001:db8::1",
            "2001:db8:1::5",
            "2001:db8:1:2::9",
            "2001:db9::1",
            "::1",
        ] {
            let addr: Ipv6Addr = addr.parse().expect("address");
            for (proto, dport) in [
                (6, Some(22)),
                (6, Some(85)),
                (6, Some(443)),
                (17, Some(53)),
                (17, Some(54)),
                (58, None),
                (47, None),
            ] {
                assert_eq!(
                    index.lookup6(1, addr, proto, dport),
                    scan6(addr, proto, dport),
                    "{addr} {proto} {dport:?}"
                );
            }
        }
        // and the IPv4 table does not see them
        assert_eq!(index.lookup(1, 0, 0x0a00_0001, 6, Some(22)), None);
        assert_eq!(index.lookup(1, 0, 0x0a00_0001, 6, Some(443)), Some((0, 0)));
        let mut bad = rules.clone();
        bad[1].prefix_len = 129;
        assert!(matches!(
            BankIndex::build_all(0, &tables, &bad),
            Err(Error::BadPrefix6 { index: 1, len: 129 })
        ));
        let d = index.diff(&BankIndex::build(1, &tables).expect("builds"));
        assert_eq!(d.addr6_remove.len(), 4);
    }

    #[test]
    fn usage_counts_entries_per_table() {
        let mut tables = Tables::default();
        tables[1] = vec![rule((0, 0), 6, 1, 65535, 0), rule((0, 0), 17, 53, 53, 0)];
        let index = BankIndex::build(0, &tables).expect("builds");
        let usage = index.usage();
        assert_eq!(usage.port[1], 16);
        assert_eq!(usage.exact[1], 1);
        assert_eq!((usage.port_total(), usage.exact_total()), (16, 1));
        assert!(usage.fits());
        // a rule of a short prefix is copied into each longer prefix under it
        tables[0] = (0..200u32)
            .map(|i| rule((0x0a00_0000 + (i << 8), 24), 6, 22, 22, 0))
            .chain([rule((0, 0), 6, 1, 65535, 0)])
            .collect();
        let usage = BankIndex::compile(0, &tables, &[])
            .expect("compiles")
            .usage();
        // the /0 node: 16 blocks; each /24: 22 exact, 1-21 in 6 blocks and
        // 23-65535 in 13
        assert_eq!(usage.port[0], 16 + 200 * (6 + 13));
        assert_eq!(usage.exact[0], 200);
    }

    #[test]
    fn diff_touches_only_changes() {
        let mut tables = Tables::default();
        tables[0] = (0..100)
            .map(|i| rule((0x0a00_0000 + (i << 8), 24), 6, 22, 22, 0))
            .collect();
        let a = BankIndex::build(0, &tables).expect("builds");
        assert!(a.diff(&a).is_empty());
        tables[0][99].port_hi = 23;
        let b = BankIndex::build(0, &tables).expect("builds");
        let d = a.diff(&b);
        // the node's flags change: exact tcp ports -> a tcp range
        assert_eq!((d.addr_remove.len(), d.addr_set.len()), (0, 1));
        // 22 (exact) becomes 22-23 (one trie block)
        assert_eq!((d.port_remove.len(), d.port_set.len()), (0, 1));
        assert_eq!((d.exact_remove.len(), d.exact_set.len()), (1, 0));
        let empty = BankIndex::default();
        let d = b.diff(&empty);
        assert_eq!(d.len(), b.addr.len() + b.port.len() + b.exact.len());
    }
}
