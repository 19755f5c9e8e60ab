//! Kawaii's configuration as Rust types: addresses, prefixes, rule tables
//! and policies, encoded into the ABI (`kw_config` + `kw_rule` tables,
//! network byte order) here and nowhere else.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use kowabunga_dataplane::kawaii::config::{KawaiiConfig, Policy, Rule, RuleProto};
//!
//! let mut config = KawaiiConfig::new(
//!     Ipv4Addr::new(203, 0, 113, 10),
//!     "10.0.0.0/25".parse()?,
//! );
//! config.egress_policy = Policy::Drop;
//! config.rules.ingress.push(Rule::filter("0.0.0.0/0".parse()?, RuleProto::Tcp, (22, 22)));
//! config.rules.dnat.push(Rule::dnat(Ipv4Addr::new(10, 0, 0, 10), RuleProto::Tcp, (80, 80)));
//! let (raw, tables) = config.encode()?;
//! assert_eq!(raw.snat_ip.to_ne_bytes(), [203, 0, 113, 10]);
//! assert_eq!(raw.private_net.mask.to_ne_bytes(), [255, 255, 255, 128]);
//! assert_eq!(tables[2][0].target.to_ne_bytes(), [10, 0, 0, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::{Ipv4Net, Ipv6Net};
use kowabunga_bindings::{
    kw_cidr, kw_config, kw_peering, kw_policy, kw_rule, kw_rule6, kw_table, KW_MAX_IPSEC,
    KW_MAX_PEERINGS, KW_MAX_VIPS,
};

use crate::kawaii::banks::{validate, validate6, Error, Tables, Tables6, TABLE_COUNT};

/// Default verdict of new flows that no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// Let them through (the default for egress).
    #[default]
    Accept,
    /// Drop them (and count the drop).
    Drop,
}

impl Policy {
    fn to_abi(self) -> u8 {
        match self {
            Policy::Accept => kw_policy::KW_POLICY_ACCEPT as u8,
            Policy::Drop => kw_policy::KW_POLICY_DROP as u8,
        }
    }
}

/// The protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleProto {
    /// Any protocol (ports ignored).
    Any,
    /// ICMP (1); ports ignored.
    Icmp,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ESP (50); ports ignored.
    Esp,
    /// ICMPv6 (58), for IPv6 rules; ports ignored.
    Icmpv6,
}

impl RuleProto {
    /// The IP protocol number (0 for [`RuleProto::Any`]).
    pub fn number(self) -> u8 {
        match self {
            RuleProto::Any => 0,
            RuleProto::Icmp => 1,
            RuleProto::Tcp => 6,
            RuleProto::Udp => 17,
            RuleProto::Esp => 50,
            RuleProto::Icmpv6 => 58,
        }
    }

    /// Whether the protocol has ports a rule can match.
    pub fn has_ports(self) -> bool {
        matches!(self, RuleProto::Tcp | RuleProto::Udp)
    }
}

impl fmt::Display for RuleProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleProto::Any => "any",
            RuleProto::Icmp => "icmp",
            RuleProto::Tcp => "tcp",
            RuleProto::Udp => "udp",
            RuleProto::Esp => "esp",
            RuleProto::Icmpv6 => "icmpv6",
        })
    }
}

/// One rule of a table: a prefix (source for ingress tables, destination
/// for egress ones, unused for DNAT), a protocol and an inclusive range of
/// destination ports; DNAT rules carry their new destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The prefix the peer address must be in.
    pub net: Ipv4Net,
    /// The protocol.
    pub proto: RuleProto,
    /// Destination ports `(lo, hi)`, inclusive; ignored without ports.
    pub ports: (u16, u16),
    /// DNAT: the new destination.
    pub target: Option<Ipv4Addr>,
}

impl Rule {
    /// A firewall or peering rule. The program ignores `ports` for
    /// protocols without ports (the range must still not be empty).
    pub fn filter(net: Ipv4Net, proto: RuleProto, ports: (u16, u16)) -> Self {
        Rule {
            net,
            proto,
            ports,
            target: None,
        }
    }

    /// A DNAT rule: new flows to a VIP on `proto`/`ports` go to `target`.
    pub fn dnat(target: Ipv4Addr, proto: RuleProto, ports: (u16, u16)) -> Self {
        Rule {
            target: Some(target),
            ..Rule::filter(Ipv4Net::default(), proto, ports)
        }
    }

    fn to_abi(self) -> kw_rule {
        kw_rule {
            cidr: cidr(self.net),
            target: self.target.map_or(0, be_addr),
            port_lo: self.ports.0,
            port_hi: self.ports.1,
            proto: self.proto.number(),
            ..kw_rule::default()
        }
    }
}

/// An IPv6 rule of `firewall.ingress`: new IPv6 traffic from `net` to the
/// node's own addresses on `proto`/`ports` reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule6 {
    /// The prefix the source must be in.
    pub net: Ipv6Net,
    /// The protocol ([`RuleProto::Icmpv6`] for ICMPv6).
    pub proto: RuleProto,
    /// Destination ports `(lo, hi)`, inclusive; ignored without ports.
    pub ports: (u16, u16),
}

impl Rule6 {
    fn to_abi(self) -> kw_rule6 {
        kw_rule6 {
            addr: self.net.network().octets(),
            prefix_len: self.net.prefix_len(),
            proto: self.proto.number(),
            port_lo: self.ports.0,
            port_hi: self.ports.1,
            ..kw_rule6::default()
        }
    }
}

/// The rule tables of a configuration: five IPv4 tables and the IPv6 rules
/// of `firewall.ingress`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleTables {
    /// `firewall.ingress` and the IKE rules of IPsec peers: new inbound
    /// flows delivered to the gateway itself.
    pub ingress: Vec<Rule>,
    /// The IPv6 rules of `firewall.ingress`: new IPv6 traffic to the node's
    /// own addresses (IPv6 never crosses the gateway).
    pub ingress6: Vec<Rule6>,
    /// `firewall.egress`: exceptions to the egress policy.
    pub egress: Vec<Rule>,
    /// `dnat`: new inbound flows to a VIP translated to a private host.
    pub dnat: Vec<Rule>,
    /// Peering ingress exceptions (prefix: the peered subnet).
    pub peer_in: Vec<Rule>,
    /// Peering egress exceptions (prefix: the peered subnet).
    pub peer_out: Vec<Rule>,
}

impl RuleTables {
    /// The tables in ABI order (`kw_table`), with their names.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &[Rule])> {
        crate::kawaii::banks::TABLE_NAMES.into_iter().zip([
            self.ingress.as_slice(),
            &self.egress,
            &self.dnat,
            &self.peer_in,
            &self.peer_out,
        ])
    }

    /// One-line summary of rule counts, e.g.
    /// `3 ingress, 0 egress, 1 dnat, 0 peer-in, 0 peer-out rules`; IPv6
    /// ingress rules, when there are some, as `3 ingress + 2 IPv6, ...`.
    pub fn summary(&self) -> String {
        let v6 = match self.ingress6.len() {
            0 => String::new(),
            n => format!(" + {n} IPv6"),
        };
        format!(
            "{} ingress{v6}, {} egress, {} dnat, {} peer-in, {} peer-out rules",
            self.ingress.len(),
            self.egress.len(),
            self.dnat.len(),
            self.peer_in.len(),
            self.peer_out.len(),
        )
    }
}

/// A VPC peering: the peered subnet and the default verdict of its flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peering {
    /// The peered subnet (routed without NAT).
    pub subnet: Ipv4Net,
    /// Default verdict for new flows to and from it.
    pub policy: Policy,
}

/// Everything Kawaii needs for one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KawaiiConfig {
    /// This zone's public VIP: the source of SNAT.
    pub snat_ip: Ipv4Addr,
    /// The project subnet.
    pub private_net: Ipv4Net,
    /// SNAT source ports, inclusive.
    pub nat_ports: (u16, u16),
    /// Default verdict of new outbound flows.
    pub egress_policy: Policy,
    /// Drop events: one in `2^sample_shift` per reason and CPU.
    pub sample_shift: u8,
    /// Every public VIP handled by this node (at most `KW_MAX_VIPS`).
    pub vips: Vec<Ipv4Addr>,
    /// VPC peerings (at most `KW_MAX_PEERINGS`).
    pub peerings: Vec<Peering>,
    /// IPsec remote subnets, passed to the kernel (at most `KW_MAX_IPSEC`).
    pub ipsec_subnets: Vec<Ipv4Net>,
    /// The rule tables.
    pub rules: RuleTables,
}

impl KawaiiConfig {
    /// A configuration with `snat_ip` as its only VIP, SNAT ports
    /// 1024-65535, egress accepted, no rule.
    pub fn new(snat_ip: Ipv4Addr, private_net: Ipv4Net) -> Self {
        KawaiiConfig {
            snat_ip,
            private_net,
            nat_ports: (1024, u16::MAX),
            egress_policy: Policy::Accept,
            sample_shift: 0,
            vips: vec![snat_ip],
            peerings: Vec::new(),
            ipsec_subnets: Vec::new(),
            rules: RuleTables::default(),
        }
    }

    /// The ABI form: `kw_config` (with `rule_start`/`rule_count` zero) and
    /// the tables indexed by `kw_table`.
    ///
    /// # Errors
    /// [`Error`] when a list is longer than the ABI holds or a range is
    /// empty; the same checks as [`crate::Kawaii::apply`].
    pub fn encode(&self) -> Result<(kw_config, Tables), Error> {
        let mut config = kw_config {
            snat_ip: be_addr(self.snat_ip),
            private_net: cidr(self.private_net),
            port_min: self.nat_ports.0,
            port_max: self.nat_ports.1,
            egress_policy: self.egress_policy.to_abi(),
            sample_shift: self.sample_shift,
            n_vips: count("n_vips", self.vips.len(), KW_MAX_VIPS)?,
            n_peerings: count("n_peerings", self.peerings.len(), KW_MAX_PEERINGS)?,
            n_ipsec: count("n_ipsec", self.ipsec_subnets.len(), KW_MAX_IPSEC)?,
            ..kw_config::default()
        };
        for (slot, ip) in config.vips.iter_mut().zip(&self.vips) {
            *slot = be_addr(*ip);
        }
        for (slot, peering) in config.peerings.iter_mut().zip(&self.peerings) {
            *slot = kw_peering {
                subnet: cidr(peering.subnet),
                policy: peering.policy.to_abi(),
                ..kw_peering::default()
            };
        }
        for (slot, net) in config.ipsec.iter_mut().zip(&self.ipsec_subnets) {
            *slot = cidr(*net);
        }
        let mut tables: Tables = Default::default();
        for ((_, rules), table) in self.rules.iter().zip(tables.iter_mut()) {
            table.extend(rules.iter().map(|r| r.to_abi()));
        }
        debug_assert_eq!(tables.len(), TABLE_COUNT);
        debug_assert_eq!(kw_table::KW_TABLE_DNAT, 2);
        validate(&config, &tables)?;
        Ok((config, tables))
    }

    /// The ABI form of the IPv6 rules of `firewall.ingress` (`kw_rules6`).
    ///
    /// # Errors
    /// [`Error`] when there are too many or a range is empty.
    pub fn encode6(&self) -> Result<Tables6, Error> {
        let rules: Tables6 = self.rules.ingress6.iter().map(|r| r.to_abi()).collect();
        validate6(&rules)?;
        Ok(rules)
    }
}

/// A count of a fixed array, checked against its size.
fn count(field: &'static str, len: usize, max: u32) -> Result<u8, Error> {
    match u8::try_from(len) {
        Ok(n) if u32::from(n) <= max => Ok(n),
        _ => Err(Error::CountTooLarge {
            field,
            value: u8::try_from(len).unwrap_or(u8::MAX),
            max,
        }),
    }
}

/// An address as the ABI stores it: network byte order.
fn be_addr(addr: Ipv4Addr) -> u32 {
    u32::from(addr).to_be()
}

/// A prefix as the ABI stores it: address and netmask in network order.
fn cidr(net: Ipv4Net) -> kw_cidr {
    kw_cidr {
        addr: be_addr(net.network()),
        mask: be_addr(net.netmask()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("prefix")
    }

    #[test]
    fn encodes_in_network_order() {
        let mut c = KawaiiConfig::new(Ipv4Addr::new(203, 0, 113, 10), net("10.0.0.0/25"));
        c.vips.push(Ipv4Addr::new(203, 0, 113, 11));
        c.nat_ports = (2000, 3000);
        c.egress_policy = Policy::Drop;
        c.peerings.push(Peering {
            subnet: net("10.1.0.0/24"),
            policy: Policy::Drop,
        });
        c.ipsec_subnets.push(net("172.16.1.0/24"));
        c.rules.ingress.push(Rule::filter(
            net("198.51.100.0/24"),
            RuleProto::Tcp,
            (22, 22),
        ));
        c.rules
            .ingress
            .push(Rule::filter(net("5.6.7.8/32"), RuleProto::Esp, (0, 0)));
        c.rules.dnat.push(Rule::dnat(
            Ipv4Addr::new(10, 0, 0, 10),
            RuleProto::Udp,
            (3000, 3005),
        ));
        let (raw, tables) = c.encode().expect("encode");
        assert_eq!(raw.snat_ip.to_ne_bytes(), [203, 0, 113, 10]);
        assert_eq!(raw.private_net.addr.to_ne_bytes(), [10, 0, 0, 0]);
        assert_eq!(raw.private_net.mask.to_ne_bytes(), [255, 255, 255, 128]);
        assert_eq!((raw.port_min, raw.port_max), (2000, 3000));
        assert_eq!(raw.egress_policy, kw_policy::KW_POLICY_DROP as u8);
        assert_eq!((raw.n_vips, raw.n_peerings, raw.n_ipsec), (2, 1, 1));
        assert_eq!(raw.vips[1].to_ne_bytes(), [203, 0, 113, 11]);
        assert_eq!(
            raw.peerings[0].subnet.mask.to_ne_bytes(),
            [255, 255, 255, 0]
        );
        assert_eq!(raw.peerings[0].policy, kw_policy::KW_POLICY_DROP as u8);
        assert_eq!(raw.ipsec[0].addr.to_ne_bytes(), [172, 16, 1, 0]);
        let ingress = &tables[kw_table::KW_TABLE_INGRESS as usize];
        assert_eq!(ingress[0].cidr.addr.to_ne_bytes(), [198, 51, 100, 0]);
        assert_eq!(
            (ingress[0].proto, ingress[0].port_lo, ingress[0].port_hi),
            (6, 22, 22)
        );
        assert_eq!(
            (ingress[1].proto, ingress[1].port_lo, ingress[1].port_hi),
            (50, 0, 0)
        );
        let dnat = &tables[kw_table::KW_TABLE_DNAT as usize];
        assert_eq!(dnat[0].target.to_ne_bytes(), [10, 0, 0, 10]);
        assert_eq!((dnat[0].cidr.addr, dnat[0].cidr.mask), (0, 0));
        assert_eq!((dnat[0].port_lo, dnat[0].port_hi), (3000, 3005));
        assert!(tables[1].is_empty() && tables[3].is_empty() && tables[4].is_empty());
        assert_eq!(
            c.rules.summary(),
            "2 ingress, 0 egress, 1 dnat, 0 peer-in, 0 peer-out rules"
        );
        c.rules.ingress6.push(Rule6 {
            net: "2001:db8::/32".parse().expect("prefix"),
            proto: RuleProto::Tcp,
            ports: (443, 443),
        });
        let v6 = c.encode6().expect("encode6");
        assert_eq!(v6[0].addr[..4], [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!((v6[0].prefix_len, v6[0].proto), (32, 6));
        assert_eq!((v6[0].port_lo, v6[0].port_hi), (443, 443));
        assert_eq!(
            c.rules.summary(),
            "2 ingress + 1 IPv6, 0 egress, 1 dnat, 0 peer-in, 0 peer-out rules"
        );
    }

    #[test]
    fn network_order_is_big_endian_in_memory() {
        // Independent of the host: the first byte in memory is the first octet.
        assert_eq!(
            be_addr(Ipv4Addr::new(1, 2, 3, 4)).to_ne_bytes(),
            [1, 2, 3, 4]
        );
        assert_eq!(
            be_addr(Ipv4Addr::new(1, 2, 3, 4)),
            u32::from_be_bytes([1, 2, 3, 4]).to_be()
        );
        let c = cidr(net("172.16.0.0/12"));
        assert_eq!(c.addr.to_ne_bytes(), [172, 16, 0, 0]);
        assert_eq!(c.mask.to_ne_bytes(), [255, 240, 0, 0]);
        #[cfg(target_endian = "little")]
        {
            assert_eq!(c.mask, 0x0000_f0ff);
            assert_eq!(be_addr(Ipv4Addr::new(10, 0, 0, 1)), 0x0100_000a);
        }
    }

    #[test]
    fn refuses_what_the_abi_cannot_hold() {
        let base = KawaiiConfig::new(Ipv4Addr::new(203, 0, 113, 10), net("10.0.0.0/25"));
        let mut c = base.clone();
        c.vips = (0..=KW_MAX_VIPS).map(|i| Ipv4Addr::from(i + 1)).collect();
        assert!(matches!(
            c.encode(),
            Err(Error::CountTooLarge {
                field: "n_vips",
                ..
            })
        ));
        let mut c = base.clone();
        c.nat_ports = (3000, 2000);
        assert!(matches!(c.encode(), Err(Error::EmptyPortRange { .. })));
        let mut c = base.clone();
        c.rules
            .egress
            .push(Rule::filter(net("0.0.0.0/0"), RuleProto::Tcp, (90, 80)));
        assert!(matches!(
            c.encode(),
            Err(Error::EmptyRulePorts {
                table: "egress",
                ..
            })
        ));
        let mut c = base;
        c.rules.dnat = vec![
            Rule::dnat(Ipv4Addr::new(10, 0, 0, 1), RuleProto::Tcp, (1, 1));
            kowabunga_bindings::KW_MAX_RULES_PER_TABLE as usize + 1
        ];
        assert!(matches!(
            c.encode(),
            Err(Error::TooManyRules { table: "dnat", .. })
        ));
    }
}
