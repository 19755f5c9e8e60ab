//! The `kawaii` section: types after validation, and its validation.
//!
//! ```
//! use kowabunga_control::config::parse_str;
//!
//! let err = parse_str(r#"
//! node: {zone: a, interfaces: {public: eth0, private: eth1}}
//! kawaii:
//!   public_ips: [203.0.113.10]
//!   private_subnet: 10.0.0.0/33
//! "#).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"kawaii.private_subnet: "10.0.0.0/33" is not an IPv4 subnet (a.b.c.d/len)"#
//! );
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kowabunga_bindings::{KW_MAX_IPSEC, KW_MAX_PEERINGS, KW_MAX_RULES_PER_TABLE, KW_MAX_VIPS};

use crate::config::error::{err, ErrorKind, ValidationError};
use crate::config::fields::{
    check_count, check_disjoint, check_name, expanded_len, looks_ipv6, parse_addr, parse_net,
    parse_net_any, parse_net_v4_only, parse_ports, parse_proto_ports, parse_protocol, PortRule,
    Protocol,
};
use crate::config::model::{Kawaii, Policy};
use crate::config::node::ValidNode;
use crate::ipsec::config::{validate_connection, Ipsec, IKE_RULES_PER_CONNECTION};

/// A validated filter rule (firewall ingress or egress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// Source (ingress) or destination (egress) prefix.
    pub net: Ipv4Net,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port ranges; empty for icmp.
    pub ports: Vec<(u16, u16)>,
}

/// A validated IPv6 rule of `firewall.ingress`: opens the node's own IPv6
/// addresses (IPv6 never crosses the gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule6 {
    /// Source prefix.
    pub net: Ipv6Net,
    /// Protocol (`icmp` is ICMPv6 here).
    pub protocol: Protocol,
    /// Destination port ranges; empty for icmp.
    pub ports: Vec<(u16, u16)>,
}

/// Why the fields other than `firewall.ingress[].source` take no IPv6.
pub const IPV4_ONLY: &str = "this field is IPv4 only: IPv6 never crosses the gateway (only \
                             kawaii.firewall.ingress[].source takes IPv6, for the node's own \
                             addresses)";

/// A validated DNAT rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnatRule {
    /// New destination, inside the project subnet.
    pub destination: Ipv4Addr,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// Destination port ranges.
    pub ports: Vec<(u16, u16)>,
}

/// A validated VPC peering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    /// The peered subnet.
    pub subnet: Ipv4Net,
    /// Default verdict.
    pub policy: Policy,
    /// Exceptions for flows from the peer.
    pub ingress: Vec<PortRule>,
    /// Exceptions for flows to the peer.
    pub egress: Vec<PortRule>,
}

/// The validated Kawaii section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKawaii {
    /// All VIPs, in `public_ips` order, without duplicates.
    pub public_ips: Vec<Ipv4Addr>,
    /// This node's SNAT address: `zone_public_ips[node.zone]`, else the
    /// first of `public_ips`.
    pub snat_ip: Ipv4Addr,
    /// The project subnet.
    pub private_subnet: Ipv4Net,
    /// `firewall.ingress`, its IPv4 rules.
    pub ingress: Vec<FilterRule>,
    /// `firewall.ingress`, its IPv6 rules (in order).
    pub ingress6: Vec<FilterRule6>,
    /// `firewall.egress_policy`.
    pub egress_policy: Policy,
    /// `firewall.egress`.
    pub egress: Vec<FilterRule>,
    /// `dnat`.
    pub dnat: Vec<DnatRule>,
    /// `vpc_peerings`.
    pub peerings: Vec<Peering>,
    /// `ipsec_connections`.
    pub ipsec: Vec<Ipsec>,
}

fn check_rules(path: &str, count: usize, note: String) -> Result<(), ValidationError> {
    let max = KW_MAX_RULES_PER_TABLE as usize;
    if count > max {
        return err(path, ErrorKind::TooManyRules { count, note, max });
    }
    Ok(())
}

/// Validates the `kawaii` section against the validated node.
///
/// # Errors
/// The first problem found, with its field path.
pub fn validate_kawaii(node: &ValidNode, k: &Kawaii) -> Result<ValidKawaii, ValidationError> {
    // private_subnet first: other checks refer to it.
    let private_subnet = parse_net("kawaii.private_subnet", &k.private_subnet, false)?;
    if private_subnet.prefix_len() == 0 {
        return err(
            "kawaii.private_subnet",
            ErrorKind::Everything(k.private_subnet.clone()),
        );
    }

    // public_ips
    if k.public_ips.is_empty() {
        return err("kawaii.public_ips", ErrorKind::EmptyList);
    }
    check_count("kawaii.public_ips", k.public_ips.len(), KW_MAX_VIPS)?;
    let mut public_ips = Vec::with_capacity(k.public_ips.len());
    for (i, text) in k.public_ips.iter().enumerate() {
        let path = format!("kawaii.public_ips[{i}]");
        let ip = parse_addr(&path, text)?;
        if ip.is_unspecified() {
            return err(path, ErrorKind::Unspecified(text.clone()));
        }
        if private_subnet.contains(&ip) {
            return err(
                path,
                ErrorKind::InsidePrivateSubnet {
                    value: text.clone(),
                    subnet: private_subnet,
                },
            );
        }
        if let Some(j) = public_ips.iter().position(|p| *p == ip) {
            return err(
                path,
                ErrorKind::Duplicate {
                    value: text.clone(),
                    other: format!("kawaii.public_ips[{j}]"),
                },
            );
        }
        public_ips.push(ip);
    }

    // zone_public_ips
    let mut zone_ips: BTreeMap<&str, Ipv4Addr> = BTreeMap::new();
    for (zone, text) in &k.zone_public_ips {
        let path = format!("kawaii.zone_public_ips.{zone}");
        check_name(&path, zone)?;
        let ip = parse_addr(&path, text)?;
        if !public_ips.contains(&ip) {
            return err(path, ErrorKind::NotAPublicIp(text.clone()));
        }
        zone_ips.insert(zone, ip);
    }
    let snat_ip = zone_ips
        .get(node.zone.as_str())
        .copied()
        .unwrap_or(public_ips[0]);

    // firewall.ingress
    let mut ingress = Vec::with_capacity(k.firewall.ingress.len());
    let mut ingress6 = Vec::new();
    for (i, rule) in k.firewall.ingress.iter().enumerate() {
        let path = format!("kawaii.firewall.ingress[{i}]");
        let net = parse_net_any(&format!("{path}.source"), &rule.source, true)?;
        let PortRule { protocol, ports } =
            parse_proto_ports(&path, &rule.protocol, rule.ports.as_ref())?;
        match net {
            IpNet::V4(net) => ingress.push(FilterRule {
                net,
                protocol,
                ports,
            }),
            IpNet::V6(net) => ingress6.push(FilterRule6 {
                net,
                protocol,
                ports,
            }),
        }
    }

    // firewall.egress
    let mut egress = Vec::with_capacity(k.firewall.egress.len());
    for (i, rule) in k.firewall.egress.iter().enumerate() {
        let path = format!("kawaii.firewall.egress[{i}]");
        let net = parse_net_v4_only(
            &format!("{path}.destination"),
            &rule.destination,
            true,
            IPV4_ONLY,
        )?;
        let PortRule { protocol, ports } =
            parse_proto_ports(&path, &rule.protocol, rule.ports.as_ref())?;
        egress.push(FilterRule {
            net,
            protocol,
            ports,
        });
    }

    // dnat
    let mut dnat: Vec<DnatRule> = Vec::with_capacity(k.dnat.len());
    for (i, rule) in k.dnat.iter().enumerate() {
        let path = format!("kawaii.dnat[{i}]");
        let dest_path = format!("{path}.destination");
        if looks_ipv6(&rule.destination) {
            return err(
                dest_path,
                ErrorKind::Ipv6NotTaken {
                    value: rule.destination.clone(),
                    why: IPV4_ONLY,
                },
            );
        }
        let destination = parse_addr(&dest_path, &rule.destination)?;
        if !private_subnet.contains(&destination) {
            return err(
                dest_path,
                ErrorKind::OutsidePrivateSubnet {
                    value: rule.destination.clone(),
                    subnet: private_subnet,
                },
            );
        }
        let protocol = parse_protocol(&format!("{path}.protocol"), &rule.protocol)?;
        if protocol == Protocol::Icmp {
            return err(
                format!("{path}.protocol"),
                ErrorKind::UnsupportedProtocol {
                    value: rule.protocol.clone(),
                    expected: "dnat takes tcp or udp",
                },
            );
        }
        let ports = parse_ports(&format!("{path}.ports"), &rule.ports)?;
        // Overlapping ports of the same protocol would make the target depend
        // on rule order: reject.
        for (j, other) in dnat.iter().enumerate() {
            let clash = other.protocol == protocol
                && ports
                    .iter()
                    .any(|&(lo, hi)| other.ports.iter().any(|&(l, h)| lo <= h && l <= hi));
            if clash {
                return err(
                    format!("{path}.ports"),
                    ErrorKind::PortsOverlap {
                        value: rule.ports.as_str().to_owned(),
                        protocol,
                        other: format!("kawaii.dnat[{j}]"),
                    },
                );
            }
        }
        dnat.push(DnatRule {
            destination,
            protocol,
            ports,
        });
    }

    // vpc_peerings
    check_count("kawaii.vpc_peerings", k.vpc_peerings.len(), KW_MAX_PEERINGS)?;
    let mut routed: Vec<(String, Ipv4Net)> =
        vec![("kawaii.private_subnet".to_owned(), private_subnet)];
    let mut peerings = Vec::with_capacity(k.vpc_peerings.len());
    for (i, peering) in k.vpc_peerings.iter().enumerate() {
        let path = format!("kawaii.vpc_peerings[{i}]");
        let subnet_path = format!("{path}.subnet");
        let subnet = parse_net(&subnet_path, &peering.subnet, false)?;
        check_disjoint(&subnet_path, &peering.subnet, subnet, &routed)?;
        routed.push((subnet_path, subnet));
        let mut rules_in = Vec::with_capacity(peering.ingress.len());
        for (j, rule) in peering.ingress.iter().enumerate() {
            rules_in.push(parse_proto_ports(
                &format!("{path}.ingress[{j}]"),
                &rule.protocol,
                rule.ports.as_ref(),
            )?);
        }
        let mut rules_out = Vec::with_capacity(peering.egress.len());
        for (j, rule) in peering.egress.iter().enumerate() {
            rules_out.push(parse_proto_ports(
                &format!("{path}.egress[{j}]"),
                &rule.protocol,
                rule.ports.as_ref(),
            )?);
        }
        peerings.push(Peering {
            subnet,
            policy: peering.policy,
            ingress: rules_in,
            egress: rules_out,
        });
    }

    // ipsec_connections
    check_count(
        "kawaii.ipsec_connections",
        k.ipsec_connections.len(),
        KW_MAX_IPSEC,
    )?;
    let mut ipsec: Vec<Ipsec> = Vec::with_capacity(k.ipsec_connections.len());
    for (i, conn) in k.ipsec_connections.iter().enumerate() {
        let path = format!("kawaii.ipsec_connections[{i}]");
        let valid = validate_connection(&path, conn, &ipsec, private_subnet, &routed)?;
        routed.push((format!("{path}.remote_subnet"), valid.remote_subnet));
        ipsec.push(valid);
    }

    // Table sizes after expansion.
    let ike = ipsec.len() * IKE_RULES_PER_CONNECTION;
    let n_ingress: usize = ingress
        .iter()
        .map(|r| expanded_len(&r.ports))
        .sum::<usize>()
        + ike;
    let note = if ike > 0 {
        format!(" (including {ike} IKE rules of kawaii.ipsec_connections)")
    } else {
        String::new()
    };
    check_rules("kawaii.firewall.ingress", n_ingress, note)?;
    let n_ingress6: usize = ingress6.iter().map(|r| expanded_len(&r.ports)).sum();
    check_rules(
        "kawaii.firewall.ingress",
        n_ingress6,
        " (its IPv6 rules)".to_owned(),
    )?;
    let n_egress: usize = egress.iter().map(|r| expanded_len(&r.ports)).sum();
    check_rules("kawaii.firewall.egress", n_egress, String::new())?;
    let n_dnat: usize = dnat.iter().map(|r| expanded_len(&r.ports)).sum();
    check_rules("kawaii.dnat", n_dnat, String::new())?;
    // one implicit icmp rule per direction of each drop-policy peering
    let icmp = peerings.iter().filter(|p| p.policy == Policy::Drop).count();
    let n_peer_in: usize = peerings
        .iter()
        .flat_map(|p| &p.ingress)
        .map(|r| expanded_len(&r.ports))
        .sum::<usize>()
        + icmp;
    check_rules("kawaii.vpc_peerings[*].ingress", n_peer_in, String::new())?;
    let n_peer_out: usize = peerings
        .iter()
        .flat_map(|p| &p.egress)
        .map(|r| expanded_len(&r.ports))
        .sum::<usize>()
        + icmp;
    check_rules("kawaii.vpc_peerings[*].egress", n_peer_out, String::new())?;

    let valid = ValidKawaii {
        public_ips,
        snat_ip,
        private_subnet,
        ingress,
        ingress6,
        egress_policy: k.firewall.egress_policy,
        egress,
        dnat,
        peerings,
        ipsec,
    };
    capacity::check_index(&valid)?;
    Ok(valid)
}

mod capacity;
#[cfg(test)]
mod tests;
