//! Pure translation of a validated `kawaii` section into the dataplane's
//! typed input, a [`KawaiiConfig`]; the dataplane encodes it into the ABI
//! (byte orders and all).
//!
//! Table mapping:
//!
//! | config | table | prefix | target |
//! |---|---|---|---|
//! | `firewall.ingress[]`, IPv4 source | `ingress` | `source` | - |
//! | `firewall.ingress[]`, IPv6 source | `ingress6` (`kw_rules6`) | `source` | - |
//! | IKE of each `ipsec_connections[]` | `ingress` | `remote_ip/32` | - |
//! | `firewall.egress[]` | `egress` | `destination` | - |
//! | `dnat[]` | `dnat` | 0/0 | `destination` |
//! | `vpc_peerings[].ingress[]` | `peer_in` | the peering's `subnet` | - |
//! | `vpc_peerings[].egress[]` | `peer_out` | the peering's `subnet` | - |
//!
//! A rule becomes one [`Rule`] per port range (`"80,3000-3005"` gives two);
//! an icmp rule becomes one rule with ports 0-65535 (ignored by the
//! program). Each IPsec connection adds three ingress rules from its peer:
//! udp 500 (IKE), udp 4500 (NAT-T) and protocol 50 (ESP, ports 0-0).
//! In an IPv6 rule, `icmp` is ICMPv6 (58).

use ipnet::Ipv4Net;
use kowabunga_dataplane::kawaii::config::{
    KawaiiConfig, Peering, Policy as DpPolicy, Rule, Rule6, RuleProto,
};

use super::config::ValidKawaii;
use crate::config::fields::Protocol;
use crate::config::model::Policy;
use crate::config::ValidConfig;

/// Drop events are sampled one in `2^SAMPLE_SHIFT` per reason and CPU.
pub const SAMPLE_SHIFT: u8 = 6;

/// IKE port.
pub const IKE_PORT: u16 = 500;

/// IKE NAT-traversal port.
pub const IKE_NATT_PORT: u16 = 4500;

fn policy(policy: Policy) -> DpPolicy {
    match policy {
        Policy::Accept => DpPolicy::Accept,
        Policy::Drop => DpPolicy::Drop,
    }
}

fn proto(protocol: Protocol) -> RuleProto {
    match protocol {
        Protocol::Tcp => RuleProto::Tcp,
        Protocol::Udp => RuleProto::Udp,
        Protocol::Icmp => RuleProto::Icmp,
    }
}

/// The rules of one configured rule: one per port range, one with every
/// port for icmp (or an empty port list).
fn expand(
    protocol: Protocol,
    ports: &[(u16, u16)],
    rule: impl Fn((u16, u16)) -> Rule,
) -> Vec<Rule> {
    if protocol == Protocol::Icmp || ports.is_empty() {
        return vec![rule((0, u16::MAX))];
    }
    ports.iter().map(|&range| rule(range)).collect()
}

/// Compiles a validated configuration into the dataplane's input; `None`
/// when the configuration has no `kawaii` section.
///
/// Never fails, and the result always encodes:
/// [`validate`](crate::config::validate) has checked every limit (counts fit
/// the fixed arrays, tables fit `KW_MAX_RULES_PER_TABLE`).
///
/// ```
/// use std::net::Ipv4Addr;
/// use kowabunga_control::config::parse_str;
/// use kowabunga_control::kawaii::compile::compile;
///
/// let valid = parse_str(r#"
/// node: {zone: a, interfaces: {public: eth0, private: eth1}}
/// kawaii:
///   public_ips: [203.0.113.10]
///   private_subnet: 10.0.0.0/25
///   dnat: [{destination: 10.0.0.10, protocol: tcp, ports: "80,3000-3005"}]
/// "#).unwrap();
/// let compiled = compile(&valid).expect("a kawaii section");
/// let dnat = &compiled.rules.dnat;
/// assert_eq!(dnat.len(), 2);
/// assert_eq!(dnat[1].ports, (3000, 3005));
/// assert_eq!(dnat[0].target, Some(Ipv4Addr::new(10, 0, 0, 10)));
/// ```
pub fn compile(valid: &ValidConfig) -> Option<KawaiiConfig> {
    let k = valid.kawaii.as_ref()?;
    Some(compile_section(k, valid.node.nat_ports))
}

/// [`compile`] for the section itself, with the node's SNAT port range.
pub fn compile_section(k: &ValidKawaii, nat_ports: (u16, u16)) -> KawaiiConfig {
    let mut config = KawaiiConfig::new(k.snat_ip, k.private_subnet);
    config.nat_ports = nat_ports;
    config.egress_policy = policy(k.egress_policy);
    config.sample_shift = SAMPLE_SHIFT;
    config.vips = k.public_ips.clone();
    config.peerings = k
        .peerings
        .iter()
        .map(|p| Peering {
            subnet: p.subnet,
            policy: policy(p.policy),
        })
        .collect();
    config.ipsec_subnets = k.ipsec.iter().map(|c| c.remote_subnet).collect();

    let rules = &mut config.rules;
    for rule in &k.ingress {
        let p = proto(rule.protocol);
        rules
            .ingress
            .extend(expand(rule.protocol, &rule.ports, |r| {
                Rule::filter(rule.net, p, r)
            }));
    }
    for rule in &k.ingress6 {
        let p = match rule.protocol {
            Protocol::Icmp => RuleProto::Icmpv6,
            other => proto(other),
        };
        rules.ingress6.extend(
            expand(rule.protocol, &rule.ports, |r| {
                Rule::filter(Ipv4Net::default(), p, r)
            })
            .into_iter()
            .map(|r| Rule6 {
                net: rule.net,
                proto: p,
                ports: r.ports,
            }),
        );
    }
    for conn in &k.ipsec {
        let peer = Ipv4Net::from(conn.remote_ip);
        for port in [IKE_PORT, IKE_NATT_PORT] {
            rules
                .ingress
                .push(Rule::filter(peer, RuleProto::Udp, (port, port)));
        }
        rules
            .ingress
            .push(Rule::filter(peer, RuleProto::Esp, (0, 0)));
    }
    for rule in &k.egress {
        let p = proto(rule.protocol);
        rules.egress.extend(expand(rule.protocol, &rule.ports, |r| {
            Rule::filter(rule.net, p, r)
        }));
    }
    for rule in &k.dnat {
        let p = proto(rule.protocol);
        rules.dnat.extend(expand(rule.protocol, &rule.ports, |r| {
            Rule::dnat(rule.destination, p, r)
        }));
    }
    for peering in &k.peerings {
        if peering.policy == crate::config::model::Policy::Drop {
            // upstream's API: ICMP across a peering is always accepted
            let icmp = Rule::filter(peering.subnet, RuleProto::Icmp, (0, u16::MAX));
            rules.peer_in.push(icmp);
            rules.peer_out.push(icmp);
        }
        for rule in &peering.ingress {
            let p = proto(rule.protocol);
            rules
                .peer_in
                .extend(expand(rule.protocol, &rule.ports, |r| {
                    Rule::filter(peering.subnet, p, r)
                }));
        }
        for rule in &peering.egress {
            let p = proto(rule.protocol);
            rules
                .peer_out
                .extend(expand(rule.protocol, &rule.ports, |r| {
                    Rule::filter(peering.subnet, p, r)
                }));
        }
    }
    config
}

#[cfg(test)]
mod tests;
