//! Pure translation of a [`ValidConfig`] into the dataplane's input: one
//! [`kw_config`] and the five rule tables.
//!
//! Byte orders follow `kw_abi.h`: addresses and masks in network order (the
//! `u32` whose in-memory bytes are the address as on the wire), rule port
//! ranges and the SNAT port range in host order.
//!
//! Table mapping:
//!
//! | config | table | cidr | target |
//! |---|---|---|---|
//! | `firewall.ingress[]` | `KW_TABLE_INGRESS` | `source` | 0 |
//! | IKE of each `ipsec_connections[]` | `KW_TABLE_INGRESS` | `remote_ip/32` | 0 |
//! | `firewall.egress[]` | `KW_TABLE_EGRESS` | `destination` | 0 |
//! | `dnat[]` | `KW_TABLE_DNAT` | 0/0 | `destination` |
//! | `vpc_peerings[].ingress[]` | `KW_TABLE_PEER_IN` | the peering's `subnet` | 0 |
//! | `vpc_peerings[].egress[]` | `KW_TABLE_PEER_OUT` | the peering's `subnet` | 0 |
//!
//! A rule becomes one `kw_rule` per port range (`"80,3000-3005"` gives two);
//! an icmp rule becomes one `kw_rule` with ports 0-65535 (ignored by the
//! program). Each IPsec connection adds three ingress rules from its peer:
//! udp 500 (IKE), udp 4500 (NAT-T) and protocol 50 (ESP, ports 0-0).
//! `rule_start` / `rule_count` stay zero: the dataplane fills them when it
//! writes a bank.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kowabunga_bindings::{kw_cidr, kw_config, kw_peering, kw_policy, kw_rule, kw_table};

use super::model::Policy;
use super::validate::{Protocol, ValidConfig};

/// Number of rule tables (`KW_TABLE_COUNT`).
pub const TABLES: usize = kw_table::KW_TABLE_COUNT as usize;

/// Rule tables indexed by `kw_table`.
pub type Tables = [Vec<kw_rule>; TABLES];

/// Drop events are sampled one in `2^SAMPLE_SHIFT` per reason and CPU.
pub const SAMPLE_SHIFT: u8 = 6;

/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;

/// IKE port.
pub const IKE_PORT: u16 = 500;

/// IKE NAT-traversal port.
pub const IKE_NATT_PORT: u16 = 4500;

/// The dataplane's input for one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Bank-level configuration (`rule_start`/`rule_count` left zero).
    pub config: kw_config,
    /// Rule tables, indexed by `kw_table::*`.
    pub tables: Tables,
}

impl Compiled {
    /// Rules of one table (`kw_table::KW_TABLE_*`).
    pub fn table(&self, table: kw_table::Type) -> &[kw_rule] {
        self.tables
            .get(table as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// One-line summary of rule counts, e.g.
    /// `3 ingress, 0 egress, 1 dnat, 0 peer-in, 0 peer-out rules`.
    pub fn summary(&self) -> String {
        format!(
            "{} ingress, {} egress, {} dnat, {} peer-in, {} peer-out rules",
            self.tables[kw_table::KW_TABLE_INGRESS as usize].len(),
            self.tables[kw_table::KW_TABLE_EGRESS as usize].len(),
            self.tables[kw_table::KW_TABLE_DNAT as usize].len(),
            self.tables[kw_table::KW_TABLE_PEER_IN as usize].len(),
            self.tables[kw_table::KW_TABLE_PEER_OUT as usize].len(),
        )
    }
}

/// An address as the ABI stores it: network byte order.
pub fn be_addr(addr: Ipv4Addr) -> u32 {
    u32::from(addr).to_be()
}

/// A prefix as the ABI stores it: address and netmask in network order.
pub fn cidr(net: Ipv4Net) -> kw_cidr {
    kw_cidr {
        addr: be_addr(net.network()),
        mask: be_addr(net.netmask()),
    }
}

fn policy(policy: Policy) -> u8 {
    match policy {
        Policy::Accept => kw_policy::KW_POLICY_ACCEPT as u8,
        Policy::Drop => kw_policy::KW_POLICY_DROP as u8,
    }
}

/// Appends the `kw_rule`s of one configured rule to `table`.
fn push_rules(
    table: &mut Vec<kw_rule>,
    cidr: kw_cidr,
    target: u32,
    protocol: Protocol,
    ports: &[(u16, u16)],
) {
    let base = kw_rule {
        cidr,
        target,
        proto: protocol.number(),
        ..kw_rule::default()
    };
    if protocol == Protocol::Icmp || ports.is_empty() {
        table.push(kw_rule {
            port_lo: 0,
            port_hi: u16::MAX,
            ..base
        });
        return;
    }
    table.extend(ports.iter().map(|&(lo, hi)| kw_rule {
        port_lo: lo,
        port_hi: hi,
        ..base
    }));
}

/// Compiles a validated configuration into the dataplane's input; `None`
/// when the configuration has no `kawaii` section.
///
/// Never fails: [`validate`](super::validate::validate) has checked every
/// limit (counts fit the fixed arrays, tables fit `KW_MAX_RULES_PER_TABLE`).
///
/// ```
/// use kowabunga_bindings::kw_table;
/// use kowabunga_control::config::{compile::compile, parse_str};
///
/// let valid = parse_str(r#"
/// node: {zone: a, interfaces: {public: eth0, private: eth1}}
/// kawaii:
///   public_ips: [203.0.113.10]
///   private_subnet: 10.0.0.0/25
///   dnat: [{destination: 10.0.0.10, protocol: tcp, ports: "80,3000-3005"}]
/// "#).unwrap();
/// let compiled = compile(&valid).expect("a kawaii section");
/// let dnat = compiled.table(kw_table::KW_TABLE_DNAT);
/// assert_eq!(dnat.len(), 2);
/// assert_eq!((dnat[1].port_lo, dnat[1].port_hi), (3000, 3005));
/// assert_eq!(dnat[0].target.to_ne_bytes(), [10, 0, 0, 10]);
/// ```
pub fn compile(valid: &ValidConfig) -> Option<Compiled> {
    let k = valid.kawaii.as_ref()?;
    let mut config = kw_config {
        snat_ip: be_addr(k.snat_ip),
        private_net: cidr(k.private_subnet),
        port_min: valid.node.nat_ports.0,
        port_max: valid.node.nat_ports.1,
        egress_policy: policy(k.egress_policy),
        sample_shift: SAMPLE_SHIFT,
        ..kw_config::default()
    };

    for (slot, ip) in config.vips.iter_mut().zip(&k.public_ips) {
        *slot = be_addr(*ip);
    }
    config.n_vips = count_u8(k.public_ips.len().min(config.vips.len()));

    for (slot, peering) in config.peerings.iter_mut().zip(&k.peerings) {
        *slot = kw_peering {
            subnet: cidr(peering.subnet),
            policy: policy(peering.policy),
            ..kw_peering::default()
        };
    }
    config.n_peerings = count_u8(k.peerings.len().min(config.peerings.len()));

    for (slot, conn) in config.ipsec.iter_mut().zip(&k.ipsec) {
        *slot = cidr(conn.remote_subnet);
    }
    config.n_ipsec = count_u8(k.ipsec.len().min(config.ipsec.len()));

    let mut tables: Tables = Default::default();
    {
        let [ingress, egress, dnat, peer_in, peer_out] = &mut tables;

        for rule in &k.ingress {
            push_rules(ingress, cidr(rule.net), 0, rule.protocol, &rule.ports);
        }
        for conn in &k.ipsec {
            let peer = cidr(Ipv4Net::from(conn.remote_ip));
            for port in [IKE_PORT, IKE_NATT_PORT] {
                push_rules(ingress, peer, 0, Protocol::Udp, &[(port, port)]);
            }
            ingress.push(kw_rule {
                cidr: peer,
                proto: IPPROTO_ESP,
                port_lo: 0,
                port_hi: 0,
                ..kw_rule::default()
            });
        }

        for rule in &k.egress {
            push_rules(egress, cidr(rule.net), 0, rule.protocol, &rule.ports);
        }

        for rule in &k.dnat {
            push_rules(
                dnat,
                kw_cidr::default(),
                be_addr(rule.destination),
                rule.protocol,
                &rule.ports,
            );
        }

        for peering in &k.peerings {
            let subnet = cidr(peering.subnet);
            for rule in &peering.ingress {
                push_rules(peer_in, subnet, 0, rule.protocol, &rule.ports);
            }
            for rule in &peering.egress {
                push_rules(peer_out, subnet, 0, rule.protocol, &rule.ports);
            }
        }
    }

    Some(Compiled { config, tables })
}

/// Counts are bounded by the fixed arrays (at most 16), so they fit a `u8`.
fn count_u8(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use kowabunga_bindings::KW_MAX_RULES_PER_TABLE;

    const BASE: &str = r#"
node:
  zone: eu-west-a
  interfaces: {public: pub0, private: priv0}
kawaii:
  public_ips: [203.0.113.10]
  private_subnet: 10.0.0.0/25
"#;

    fn compile_yaml(extra: &str) -> Compiled {
        let yaml = format!("{BASE}{extra}");
        let valid = parse_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        compile(&valid).expect("kawaii")
    }

    /// The bytes of a network-order `u32` as they sit in memory.
    fn bytes(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    #[test]
    fn minimal_config() {
        let c = compile_yaml("");
        assert_eq!(bytes(c.config.snat_ip), [203, 0, 113, 10]);
        assert_eq!(bytes(c.config.private_net.addr), [10, 0, 0, 0]);
        assert_eq!(bytes(c.config.private_net.mask), [255, 255, 255, 128]);
        assert_eq!(c.config.port_min, 1024);
        assert_eq!(c.config.port_max, 65535);
        assert_eq!(c.config.egress_policy, kw_policy::KW_POLICY_ACCEPT as u8);
        assert_eq!(c.config.sample_shift, 6);
        assert_eq!(c.config.n_vips, 1);
        assert_eq!(bytes(c.config.vips[0]), [203, 0, 113, 10]);
        assert_eq!(c.config.vips[1], 0);
        assert_eq!(c.config.n_peerings, 0);
        assert_eq!(c.config.n_ipsec, 0);
        assert_eq!(c.config.rule_start, [0; 5]);
        assert_eq!(c.config.rule_count, [0; 5]);
        assert!(c.tables.iter().all(Vec::is_empty));
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
        let c = cidr("172.16.0.0/12".parse().expect("net"));
        assert_eq!(c.addr.to_ne_bytes(), [172, 16, 0, 0]);
        assert_eq!(c.mask.to_ne_bytes(), [255, 240, 0, 0]);
        #[cfg(target_endian = "little")]
        {
            assert_eq!(c.mask, 0x0000_f0ff);
            assert_eq!(be_addr(Ipv4Addr::new(10, 0, 0, 1)), 0x0100_000a);
        }
    }

    #[test]
    fn nat_port_range_is_host_order() {
        let yaml = BASE.replace(
            "interfaces: {public: pub0, private: priv0}",
            "interfaces: {public: pub0, private: priv0}\n  nat_port_range: \"20000-20100\"",
        );
        let c = compile(&parse_str(&yaml).expect("valid")).expect("kawaii");
        assert_eq!(c.config.port_min, 20000);
        assert_eq!(c.config.port_max, 20100);
    }

    #[test]
    fn ingress_rules_expand_per_port_range() {
        let c = compile_yaml(
            r#"
  firewall:
    ingress:
      - {source: 0.0.0.0/0, protocol: tcp, ports: "22"}
      - {source: 198.51.100.0/24, protocol: udp, ports: "53,5000-5010"}
      - {source: 192.0.2.7, protocol: icmp}
"#,
        );
        let t = c.table(kw_table::KW_TABLE_INGRESS);
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].cidr, kw_cidr { addr: 0, mask: 0 });
        assert_eq!((t[0].proto, t[0].port_lo, t[0].port_hi), (6, 22, 22));
        assert_eq!(bytes(t[1].cidr.addr), [198, 51, 100, 0]);
        assert_eq!(bytes(t[1].cidr.mask), [255, 255, 255, 0]);
        assert_eq!((t[1].proto, t[1].port_lo, t[1].port_hi), (17, 53, 53));
        assert_eq!(t[2].cidr, t[1].cidr);
        assert_eq!((t[2].proto, t[2].port_lo, t[2].port_hi), (17, 5000, 5010));
        assert_eq!(bytes(t[3].cidr.addr), [192, 0, 2, 7]);
        assert_eq!(bytes(t[3].cidr.mask), [255, 255, 255, 255]);
        assert_eq!((t[3].proto, t[3].port_lo, t[3].port_hi), (1, 0, 65535));
        assert!(t.iter().all(|r| r.target == 0 && r._pad == [0; 3]));
        assert!(c.table(kw_table::KW_TABLE_EGRESS).is_empty());
    }

    #[test]
    fn egress_rules_and_policy() {
        let c = compile_yaml(
            r#"
  firewall:
    egress_policy: drop
    egress:
      - {destination: 198.51.100.0/24, protocol: udp, ports: "53"}
      - {protocol: tcp, ports: "443"}
"#,
        );
        assert_eq!(c.config.egress_policy, kw_policy::KW_POLICY_DROP as u8);
        let t = c.table(kw_table::KW_TABLE_EGRESS);
        assert_eq!(t.len(), 2);
        assert_eq!(bytes(t[0].cidr.addr), [198, 51, 100, 0]);
        assert_eq!((t[0].proto, t[0].port_lo, t[0].port_hi), (17, 53, 53));
        assert_eq!(t[1].cidr, kw_cidr::default());
        assert_eq!((t[1].proto, t[1].port_lo, t[1].port_hi), (6, 443, 443));
        assert!(c.table(kw_table::KW_TABLE_INGRESS).is_empty());
    }

    #[test]
    fn dnat_rules_have_target_and_no_cidr() {
        let c = compile_yaml(
            r#"
  dnat:
    - {destination: 10.0.0.10, protocol: tcp, ports: "80,443"}
    - {destination: 10.0.0.11, protocol: udp, ports: "80,3000-3005"}
"#,
        );
        let t = c.table(kw_table::KW_TABLE_DNAT);
        assert_eq!(t.len(), 4);
        for r in t {
            assert_eq!(r.cidr, kw_cidr { addr: 0, mask: 0 });
        }
        assert_eq!(bytes(t[0].target), [10, 0, 0, 10]);
        assert_eq!((t[0].proto, t[0].port_lo, t[0].port_hi), (6, 80, 80));
        assert_eq!((t[1].proto, t[1].port_lo, t[1].port_hi), (6, 443, 443));
        assert_eq!(bytes(t[2].target), [10, 0, 0, 11]);
        assert_eq!((t[2].proto, t[2].port_lo, t[2].port_hi), (17, 80, 80));
        assert_eq!((t[3].proto, t[3].port_lo, t[3].port_hi), (17, 3000, 3005));
    }

    #[test]
    fn peerings() {
        let c = compile_yaml(
            r#"
  vpc_peerings:
    - subnet: 10.1.0.0/24
      policy: drop
      ingress: [{protocol: tcp, ports: "1-65535"}, {protocol: icmp}]
      egress: [{protocol: udp, ports: "53"}]
    - {subnet: 10.2.0.0/16}
"#,
        );
        assert_eq!(c.config.n_peerings, 2);
        let p0 = c.config.peerings[0];
        assert_eq!(bytes(p0.subnet.addr), [10, 1, 0, 0]);
        assert_eq!(bytes(p0.subnet.mask), [255, 255, 255, 0]);
        assert_eq!(p0.policy, kw_policy::KW_POLICY_DROP as u8);
        let p1 = c.config.peerings[1];
        assert_eq!(bytes(p1.subnet.addr), [10, 2, 0, 0]);
        assert_eq!(bytes(p1.subnet.mask), [255, 255, 0, 0]);
        assert_eq!(p1.policy, kw_policy::KW_POLICY_ACCEPT as u8);
        assert_eq!(c.config.peerings[2], kw_peering::default());

        let pin = c.table(kw_table::KW_TABLE_PEER_IN);
        assert_eq!(pin.len(), 2);
        assert!(pin.iter().all(|r| r.cidr == p0.subnet && r.target == 0));
        assert_eq!(
            (pin[0].proto, pin[0].port_lo, pin[0].port_hi),
            (6, 1, 65535)
        );
        assert_eq!(
            (pin[1].proto, pin[1].port_lo, pin[1].port_hi),
            (1, 0, 65535)
        );
        let pout = c.table(kw_table::KW_TABLE_PEER_OUT);
        assert_eq!(pout.len(), 1);
        assert_eq!(pout[0].cidr, p0.subnet);
        assert_eq!(
            (pout[0].proto, pout[0].port_lo, pout[0].port_hi),
            (17, 53, 53)
        );
    }

    #[test]
    fn ipsec_adds_remote_subnet_and_ike_rules() {
        let c = compile_yaml(
            r#"
  firewall:
    ingress: [{protocol: tcp, ports: "22"}]
  ipsec_connections:
    - name: acme-office
      remote_ip: 5.6.7.8
      remote_subnet: 172.16.1.0/24
      pre_shared_key: "s3cret"
      phase1_dh_group_number: 14
      phase1_integrity_algorithm: SHA512
      phase1_encryption_algorithm: AES256
      phase2_dh_group_number: 14
      phase2_integrity_algorithm: SHA512
      phase2_encryption_algorithm: AES256
"#,
        );
        assert_eq!(c.config.n_ipsec, 1);
        assert_eq!(bytes(c.config.ipsec[0].addr), [172, 16, 1, 0]);
        assert_eq!(bytes(c.config.ipsec[0].mask), [255, 255, 255, 0]);
        let t = c.table(kw_table::KW_TABLE_INGRESS);
        assert_eq!(t.len(), 4);
        assert_eq!((t[0].proto, t[0].port_lo), (6, 22));
        let peer = kw_cidr {
            addr: u32::from_ne_bytes([5, 6, 7, 8]),
            mask: u32::MAX,
        };
        assert_eq!(
            &t[1..],
            &[
                kw_rule {
                    cidr: peer,
                    proto: 17,
                    port_lo: 500,
                    port_hi: 500,
                    ..Default::default()
                },
                kw_rule {
                    cidr: peer,
                    proto: 17,
                    port_lo: 4500,
                    port_hi: 4500,
                    ..Default::default()
                },
                kw_rule {
                    cidr: peer,
                    proto: 50,
                    port_lo: 0,
                    port_hi: 0,
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn vips_and_zone_snat() {
        let yaml = r#"
node: {zone: eu-west-b, interfaces: {public: pub0, private: priv0}}
kawaii:
  public_ips: [203.0.113.10, 203.0.113.11, 203.0.113.12]
  zone_public_ips: {eu-west-a: 203.0.113.10, eu-west-b: 203.0.113.12}
  private_subnet: 10.0.0.0/25
"#;
        let c = compile(&parse_str(yaml).expect("valid")).expect("kawaii");
        assert_eq!(c.config.n_vips, 3);
        assert_eq!(bytes(c.config.vips[0]), [203, 0, 113, 10]);
        assert_eq!(bytes(c.config.vips[1]), [203, 0, 113, 11]);
        assert_eq!(bytes(c.config.vips[2]), [203, 0, 113, 12]);
        assert_eq!(bytes(c.config.snat_ip), [203, 0, 113, 12]);

        // A zone without an entry SNATs to the first public IP.
        let other = yaml.replace("zone: eu-west-b", "zone: eu-west-c");
        let c = compile(&parse_str(&other).expect("valid")).expect("kawaii");
        assert_eq!(bytes(c.config.snat_ip), [203, 0, 113, 10]);
    }

    #[test]
    fn full_tables_fit() {
        // 256 single-port rules fill the ingress table exactly.
        let mut extra = String::from("  firewall:\n    ingress:\n");
        let ports: Vec<String> = (1..=256).map(|p| p.to_string()).collect();
        extra.push_str(&format!(
            "      - {{protocol: tcp, ports: \"{}\"}}\n",
            ports.join(",")
        ));
        let c = compile_yaml(&extra);
        assert_eq!(
            c.table(kw_table::KW_TABLE_INGRESS).len(),
            KW_MAX_RULES_PER_TABLE as usize
        );
    }

    #[test]
    fn summary_line() {
        let c = compile_yaml(
            r#"
  firewall:
    ingress: [{protocol: tcp, ports: "22"}]
  dnat: [{destination: 10.0.0.10, protocol: tcp, ports: "8080"}]
"#,
        );
        assert_eq!(
            c.summary(),
            "1 ingress, 0 egress, 1 dnat, 0 peer-in, 0 peer-out rules"
        );
    }
}
