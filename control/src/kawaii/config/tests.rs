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
            r#"kawaii.firewall.ingress[1].source: "1.2.3/24" is not an IPv4 or IPv6 subnet (a.b.c.d/len or x:y::/len)"#
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

#[test]
fn ingress_takes_ipv6_sources() {
    let v = ok(&with_kawaii(
        "  firewall: {ingress: [{source: 0.0.0.0/0, protocol: tcp, ports: \"22\"}, {source: \"::/0\", protocol: tcp, ports: \"22,443\"}, {source: \"2001:db8::/32\", protocol: icmp}, {source: \"2001:db8::1\", protocol: udp, ports: \"53\"}]}\n",
    ));
    let k = v.kawaii.as_ref().expect("kawaii");
    assert_eq!(k.ingress.len(), 1);
    let nets: Vec<String> = k.ingress6.iter().map(|r| r.net.to_string()).collect();
    assert_eq!(nets, ["::/0", "2001:db8::/32", "2001:db8::1/128"]);
    assert_eq!(k.ingress6[0].ports, vec![(22, 22), (443, 443)]);
    assert_eq!(k.ingress6[1].protocol, Protocol::Icmp);
}

#[test]
fn ipv6_errors_name_the_field() {
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {ingress: [{source: \"2001:db8::1/32\", protocol: tcp, ports: \"22\"}]}\n"
        )),
        r#"kawaii.firewall.ingress[0].source: "2001:db8::1/32" has host bits set (did you mean 2001:db8::/32?)"#
    );
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {ingress: [{source: \"::ffff:198.51.100.0/120\", protocol: tcp, ports: \"22\"}]}\n"
        )),
        r#"kawaii.firewall.ingress[0].source: "::ffff:198.51.100.0/120" mixes address families (an IPv4-mapped IPv6 prefix): a rule is IPv4 or IPv6, write 198.51.100.0/24 for IPv4 sources"#
    );
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {ingress: [{source: \"2001:db8::/129\", protocol: tcp, ports: \"22\"}]}\n"
        )),
        r#"kawaii.firewall.ingress[0].source: "2001:db8::/129" is not an IPv4 or IPv6 subnet (a.b.c.d/len or x:y::/len)"#
    );
    let why = "this field is IPv4 only: IPv6 never crosses the gateway (only kawaii.firewall.ingress[].source takes IPv6, for the node's own addresses)";
    assert_eq!(
        invalid(&with_kawaii(
            "  firewall: {egress: [{destination: \"::/0\", protocol: udp, ports: \"53\"}]}\n"
        )),
        format!(r#"kawaii.firewall.egress[0].destination: "::/0" is IPv6, but {why}"#)
    );
    assert_eq!(
        invalid(&with_kawaii(
            "  dnat: [{destination: \"2001:db8::10\", protocol: tcp, ports: \"80\"}]\n"
        )),
        format!(r#"kawaii.dnat[0].destination: "2001:db8::10" is IPv6, but {why}"#)
    );
}

/// `n` rules from distinct /32 (or /128) sources on port 32768, then one
/// rule opening every port from everywhere: each source's node holds the
/// wide rule cut around 32768 (1-32767 and 32769-65535: 15 blocks each).
fn nested_rules(key: &str, field: &str, n: u32) -> String {
    let everything = if key == "ingress6" {
        "\"::/0\""
    } else {
        "0.0.0.0/0"
    };
    let mut out = format!("    {}:\n", key.trim_end_matches('6'));
    for i in 0..n {
        let addr = if key == "ingress6" {
            format!("\"2001:db8::{:x}\"", i + 1)
        } else {
            format!("100.64.{}.{}", i / 250, i % 250 + 1)
        };
        out.push_str(&format!(
            "      - {{{field}: {addr}, protocol: tcp, ports: \"32768\"}}\n"
        ));
    }
    out.push_str(&format!(
        "      - {{{field}: {everything}, protocol: tcp, ports: \"1-65535\"}}\n"
    ));
    out
}

#[test]
fn validation_predicts_the_rule_index_capacity() {
    use kowabunga_dataplane::kawaii::index::{BankIndex, PORT_ENTRIES_PER_BANK};

    let per_node = 15 + 15;
    let fits = format!(
        "  firewall:\n{}{}",
        nested_rules("ingress", "source", 9_000),
        nested_rules("egress", "destination", 8_000)
    );
    let over = format!(
        "  firewall:\n{}{}",
        nested_rules("ingress", "source", 9_000),
        nested_rules("egress", "destination", 8_500)
    );
    let ingress = 16 + 9_000 * per_node;
    let total = ingress + 16 + 8_500 * per_node;
    assert!(total > PORT_ENTRIES_PER_BANK);
    assert!(ingress + 16 + 8_000 * per_node <= PORT_ENTRIES_PER_BANK);
    assert_eq!(
        invalid(&with_kawaii(&over)),
        format!(
            "kawaii.firewall.ingress: the rules need {total} kw_rule_port entries in the rule \
             index, at most {PORT_ENTRIES_PER_BANK} fit in a bank ({ingress} of them from this \
             table); use fewer port ranges or fewer rules whose prefixes contain other rules' \
             prefixes"
        )
    );
    // What validation accepts, the dataplane builds; the IPv6 rules count too.
    let v = ok(&with_kawaii(&fits));
    let compiled = crate::kawaii::compile::compile(&v).expect("kawaii");
    let (_, tables) = compiled.encode().expect("encodes");
    let index = BankIndex::build_all(0, &tables, &[]).expect("fits a bank");
    assert_eq!(index.usage().port_total(), ingress + 16 + 8_000 * per_node);
    let over6 = format!(
        "  firewall:\n{}{}",
        nested_rules("ingress", "source", 9_000),
        nested_rules("ingress6", "source", 8_500).trim_start_matches("    ingress:\n")
    );
    assert!(invalid(&with_kawaii(&over6)).starts_with(&format!(
        "kawaii.firewall.ingress: the rules need {total} kw_rule_port entries"
    )));
}
