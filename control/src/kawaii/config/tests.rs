//! Tests of the parent module.

use crate::config::fields::Protocol;
use crate::config::testing::*;
use ipnet::Ipv4Net;

#[test]
fn protocols_in_upper_case() {
    let v = ok(&with_kawaii(
        "  firewall: {ingress: [{protocol: TCP, ports: 22}, {protocol: Icmp}]}\n",
    ));
    assert_eq!(
        v.kawaii.as_ref().expect("kawaii").ingress[0].protocol,
        Protocol::Tcp
    );
    assert_eq!(
        v.kawaii.as_ref().expect("kawaii").ingress[0].ports,
        vec![(22, 22)]
    );
    assert_eq!(
        v.kawaii.as_ref().expect("kawaii").ingress[1].protocol,
        Protocol::Icmp
    );
    assert_eq!(
        v.kawaii.as_ref().expect("kawaii").ingress[0].net,
        "0.0.0.0/0".parse::<Ipv4Net>().expect("net")
    );
}

#[test]
fn private_subnet_errors() {
    let base = format!("{NODE}{KAWAII}");
    assert_eq!(
        invalid(&base.replace("10.0.0.0/25", "10.0.0.0/33")),
        r#"kawaii.private_subnet: "10.0.0.0/33" is not an IPv4 subnet (a.b.c.d/len)"#
    );
    assert_eq!(
        invalid(&base.replace("10.0.0.0/25", "10.0.0.1/25")),
        r#"kawaii.private_subnet: "10.0.0.1/25" has host bits set (did you mean 10.0.0.0/25?)"#
    );
    assert_eq!(
        invalid(&base.replace("10.0.0.0/25", "0.0.0.0/0")),
        r#"kawaii.private_subnet: "0.0.0.0/0" covers every address"#
    );
    assert_eq!(
        invalid(&base.replace("10.0.0.0/25", "10.0.0.5")),
        r#"kawaii.private_subnet: "10.0.0.5" is not an IPv4 subnet (a.b.c.d/len)"#
    );
}

#[test]
fn public_ip_errors() {
    let base = format!("{NODE}{KAWAII}");
    assert_eq!(
        invalid(&base.replace("[203.0.113.10]", "[]")),
        "kawaii.public_ips: empty: at least one entry is required"
    );
    assert_eq!(
        invalid(&base.replace("[203.0.113.10]", "[203.0.113.10, 203.0.113.300]")),
        r#"kawaii.public_ips[1]: "203.0.113.300" is not an IPv4 address"#
    );
    assert_eq!(
        invalid(&base.replace("[203.0.113.10]", "[203.0.113.10, 203.0.113.10]")),
        r#"kawaii.public_ips[1]: "203.0.113.10" is already used by kawaii.public_ips[0]"#
    );
    assert_eq!(
        invalid(&base.replace("[203.0.113.10]", "[0.0.0.0]")),
        r#"kawaii.public_ips[0]: "0.0.0.0" is the unspecified address"#
    );
    assert_eq!(
        invalid(&base.replace("[203.0.113.10]", "[10.0.0.1]")),
        r#"kawaii.public_ips[0]: "10.0.0.1" is inside kawaii.private_subnet (10.0.0.0/25)"#
    );
    let many: Vec<String> = (1..=17).map(|i| format!("203.0.113.{i}")).collect();
    assert_eq!(
        invalid(&base.replace("[203.0.113.10]", &format!("[{}]", many.join(",")))),
        "kawaii.public_ips: 17 entries, at most 16 are supported"
    );
    assert_eq!(
        invalid(&with_kawaii(
            "  zone_public_ips: {eu-west-a: 203.0.113.99}\n"
        )),
        r#"kawaii.zone_public_ips.eu-west-a: "203.0.113.99" is not one of kawaii.public_ips"#
    );
    assert_eq!(
        invalid(&with_kawaii("  zone_public_ips: {eu-west-a: nope}\n")),
        r#"kawaii.zone_public_ips.eu-west-a: "nope" is not an IPv4 address"#
    );
    assert_eq!(
        invalid(&with_kawaii("  zone_public_ips: {eu west: 203.0.113.10}\n")),
        r#"kawaii.zone_public_ips.eu west: "eu west" is not a valid name (only A-Z a-z 0-9 _ . - are allowed)"#
    );
}

#[test]
fn firewall_errors() {
    assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {ingress: [{source: 1.2.3.0/24, protocol: tcp, ports: \"22\"}, {source: 1.2.3/24, protocol: tcp, ports: \"22\"}]}\n"
            )),
            r#"kawaii.firewall.ingress[1].source: "1.2.3/24" is not an IPv4 subnet (a.b.c.d/len)"#
        );
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {ingress: [{source: 1.2.3.4/24, protocol: tcp, ports: \"22\"}]}\n"
        )),
        r#"kawaii.firewall.ingress[0].source: "1.2.3.4/24" has host bits set (did you mean 1.2.3.0/24?)"#
    );
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {ingress: [{protocol: sctp, ports: \"22\"}]}\n"
        )),
        r#"kawaii.firewall.ingress[0].protocol: "sctp" is not a protocol (tcp, udp or icmp)"#
    );
    assert_eq!(
        invalid(&with_kawaii("  firewall: {ingress: [{protocol: tcp}]}\n")),
        "kawaii.firewall.ingress[0].ports: missing: tcp rules need a port list"
    );
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {ingress: [{protocol: icmp, ports: \"8\"}]}\n"
        )),
        r#"kawaii.firewall.ingress[0].ports: "8" is not allowed: icmp rules have no ports"#
    );
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {ingress: [{protocol: udp, ports: \"53,0\"}]}\n"
        )),
        r#"kawaii.firewall.ingress[0].ports: "53,0" is not a port list (port 0 is not allowed in "0")"#
    );
    assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {egress: [{destination: 198.51.100.0/24, protocol: udp, ports: \"53-52\"}]}\n"
            )),
            r#"kawaii.firewall.egress[0].ports: "53-52" is not a port list (range "53-52" is reversed)"#
        );
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {egress: [{destination: example.com, protocol: udp, ports: \"53\"}]}\n"
        )),
        r#"kawaii.firewall.egress[0].destination: "example.com" is not an IPv4 subnet (a.b.c.d/len)"#
    );
}

#[test]
fn dnat_errors() {
    let rule = |dest: &str, proto: &str, ports: &str| {
        format!("    - {{destination: {dest}, protocol: {proto}, ports: \"{ports}\"}}\n")
    };
    let first = rule("10.0.0.10", "tcp", "80");
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  dnat:\n{first}{}",
            rule("10.0.0.11", "tcp", "80,x")
        ))),
        r#"kawaii.dnat[1].ports: "80,x" is not a port list ("x" is not a port)"#
    );
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  dnat:\n{}",
            rule("10.0.0.200", "tcp", "80")
        ))),
        r#"kawaii.dnat[0].destination: "10.0.0.200" is not inside kawaii.private_subnet (10.0.0.0/25)"#
    );
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  dnat:\n{}",
            rule("10.0.0.0/25", "tcp", "80")
        ))),
        r#"kawaii.dnat[0].destination: "10.0.0.0/25" is not an IPv4 address"#
    );
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  dnat:\n{}",
            rule("10.0.0.10", "icmp", "80")
        ))),
        r#"kawaii.dnat[0].protocol: "icmp" is not supported here (dnat takes tcp or udp)"#
    );
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  dnat:\n{first}{}",
            rule("10.0.0.11", "tcp", "443,70-90")
        ))),
        r#"kawaii.dnat[1].ports: "443,70-90" overlaps the tcp ports of kawaii.dnat[0]"#
    );
    // Same ports with another protocol are fine.
    ok(&with_kawaii(&format!(
        "  dnat:\n{first}{}",
        rule("10.0.0.11", "udp", "80")
    )));
}

#[test]
fn peering_errors() {
    assert_eq!(
        invalid(&with_kawaii("  vpc_peerings: [{subnet: 10.0.0.64/26}]\n")),
        r#"kawaii.vpc_peerings[0].subnet: "10.0.0.64/26" overlaps kawaii.private_subnet (10.0.0.0/25)"#
    );
    assert_eq!(
        invalid(&with_kawaii(
            "  vpc_peerings: [{subnet: 10.1.0.0/16}, {subnet: 10.1.2.0/24}]\n"
        )),
        r#"kawaii.vpc_peerings[1].subnet: "10.1.2.0/24" overlaps kawaii.vpc_peerings[0].subnet (10.1.0.0/16)"#
    );
    assert_eq!(
            invalid(&with_kawaii(
                "  vpc_peerings: [{subnet: 10.1.0.0/16, egress: [{protocol: tcp, ports: \"99999\"}]}]\n"
            )),
            r#"kawaii.vpc_peerings[0].egress[0].ports: "99999" is not a port list ("99999" is greater than 65535)"#
        );
    assert_eq!(
        invalid(&with_kawaii(
            "  vpc_peerings: [{subnet: 10.1.0.0/16, ingress: [{protocol: gre}]}]\n"
        )),
        r#"kawaii.vpc_peerings[0].ingress[0].protocol: "gre" is not a protocol (tcp, udp or icmp)"#
    );
    let many: Vec<String> = (1..=17)
        .map(|i| format!("{{subnet: 10.{i}.0.0/16}}"))
        .collect();
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  vpc_peerings: [{}]\n",
            many.join(", ")
        ))),
        "kawaii.vpc_peerings: 17 entries, at most 16 are supported"
    );
}

#[test]
fn rule_count_limits() {
    let max = kowabunga_bindings::KW_MAX_RULES_PER_TABLE as usize;
    let ports: Vec<String> = (1..=max + 1).map(|p| p.to_string()).collect();
    let list = ports.join(",");
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  firewall: {{ingress: [{{protocol: tcp, ports: \"{list}\"}}]}}\n"
        ))),
        format!("kawaii.firewall.ingress: {} rules after port-range expansion, at most {max} are supported", max + 1)
    );
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  firewall: {{egress: [{{protocol: udp, ports: \"{list}\"}}]}}\n"
        ))),
        format!("kawaii.firewall.egress: {} rules after port-range expansion, at most {max} are supported", max + 1)
    );
    assert_eq!(
        invalid(&with_kawaii(&format!(
            "  dnat: [{{destination: 10.0.0.9, protocol: udp, ports: \"{list}\"}}]\n"
        ))),
        format!(
            "kawaii.dnat: {} rules after port-range expansion, at most {max} are supported",
            max + 1
        )
    );
    assert_eq!(
            invalid(&with_kawaii(&format!(
                "  vpc_peerings: [{{subnet: 10.9.0.0/16, ingress: [{{protocol: udp, ports: \"{list}\"}}]}}]\n"
            ))),
            // + 1 implicit icmp rule of the drop-policy peering
            format!("kawaii.vpc_peerings[*].ingress: {} rules after port-range expansion, at most {max} are supported", max + 2)
        );
    assert_eq!(
            invalid(&with_kawaii(&format!(
                "  vpc_peerings: [{{subnet: 10.9.0.0/16, egress: [{{protocol: udp, ports: \"{list}\"}}]}}]\n"
            ))),
            format!("kawaii.vpc_peerings[*].egress: {} rules after port-range expansion, at most {max} are supported", max + 2)
        );
    // max - 2 user rules + 3 IKE rules overflow the ingress table.
    let ports: Vec<String> = (1..=max - 2).map(|p| p.to_string()).collect();
    assert_eq!(
            invalid(&with_kawaii(&format!(
                "  firewall: {{ingress: [{{protocol: tcp, ports: \"{}\"}}]}}\n{IPSEC}",
                ports.join(",")
            ))),
            format!("kawaii.firewall.ingress: {} rules after port-range expansion (including 3 IKE rules of kawaii.ipsec_connections), at most {max} are supported", max + 1)
        );
    // A single range is a single rule.
    ok(&with_kawaii(
        "  firewall: {ingress: [{protocol: tcp, ports: \"1-65535\"}]}\n",
    ));
}
