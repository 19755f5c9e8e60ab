//! Tests of the parent module.

use crate::config::{parse_str, ConfigError, ValidConfig};
use crate::konvey::probe::UdpProbe;
use std::net::Ipv4Addr;
use std::time::Duration;

const NODE: &str = "node:\n  zone: a\n  interfaces: {konvey: [eth0]}\n";
const KONVEY: &str = "konvey:\n  vip: 10.0.0.100\n  endpoints:\n    - {name: web, protocol: tcp, port: 80, backend_port: 8080, backend_ips: [10.0.0.11, 10.0.0.12]}\n    - {name: dns, protocol: UDP, port: 53, backend_port: 53, backend_ips: [10.0.0.11]}\n";

fn ok(yaml: &str) -> ValidConfig {
    parse_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn invalid(yaml: &str) -> String {
    match parse_str(yaml) {
        Err(e @ ConfigError::Invalid(_)) => e.to_string(),
        Err(e) => panic!("not a validation error: {e}"),
        Ok(_) => panic!("accepted:\n{yaml}"),
    }
}

#[test]
fn accepts_the_lab_example() {
    let v = ok(include_str!("../../../examples/konvey-lab.yaml"));
    let k = v.konvey.expect("konvey");
    assert_eq!(k.endpoints.len(), 2);
    assert_eq!(
        k.endpoints[1].udp_probe,
        Some(UdpProbe {
            send: b"health".to_vec(),
            expect: Some(b"name=".to_vec())
        })
    );
    assert_eq!(v.node.konvey.health.interval, Duration::from_millis(200));
}

#[test]
fn a_konvey_only_node_with_defaults() {
    let v = ok(&format!("{NODE}{KONVEY}"));
    assert!(v.kawaii.is_none());
    let k = v.konvey.expect("konvey");
    assert_eq!(k.vip, Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(k.endpoints.len(), 2);
    assert_eq!(k.endpoints[0].backends[1], Ipv4Addr::new(10, 0, 0, 12));
    assert_eq!(k.endpoints[0].udp_probe, None);
    assert_eq!(k.endpoints[1].udp_probe, Some(UdpProbe::default()));
    let n = &v.node.konvey;
    assert!(n.source_ips.is_empty());
    assert_eq!(n.nat_ports, (1024, 32767));
    assert_eq!(n.health.interval, Duration::from_millis(1000));
    assert_eq!(n.health.timeout, Duration::from_millis(500));
    assert_eq!((n.health.rise, n.health.fall), (2, 2));
    assert_eq!(v.node.interfaces.konvey, ["eth0"]);
    assert_eq!(v.node.interfaces.public, None);
}

#[test]
fn node_keys_and_per_endpoint_probes() {
    let yaml = format!(
            "node:\n  zone: a\n  interfaces: {{konvey: [eth0]}}\n  konvey:\n    source_ip: 10.0.0.5\n    nat_port_range: \"2000-3000\"\n    health:\n      interval_ms: 200\n      timeout_ms: 100\n      rise: 3\n      fall: 1\n      udp_probe: {{send: hello}}\n      endpoints:\n        dns: {{udp_probe: {{send: ping, expect: pong}}}}\n{KONVEY}"
        );
    let v = ok(&yaml);
    let n = &v.node.konvey;
    assert_eq!(n.source_ips, [Ipv4Addr::new(10, 0, 0, 5)]);
    assert_eq!(n.nat_ports, (2000, 3000));
    assert_eq!(n.health.interval, Duration::from_millis(200));
    assert_eq!((n.health.rise, n.health.fall), (3, 1));
    let k = v.konvey.expect("konvey");
    assert_eq!(
        k.endpoints[1].udp_probe,
        Some(UdpProbe {
            send: b"ping".to_vec(),
            expect: Some(b"pong".to_vec())
        })
    );
}

#[test]
fn both_services_on_one_node() {
    let yaml = format!(
            "node:\n  zone: a\n  interfaces: {{public: pub0, private: priv0, konvey: [lb0]}}\nkawaii:\n  public_ips: [203.0.113.10]\n  private_subnet: 10.0.0.0/25\n{KONVEY}"
        );
    let v = ok(&yaml);
    assert!(v.kawaii.is_some() && v.konvey.is_some());
}

#[test]
fn section_and_interface_errors() {
    assert_eq!(
        invalid("node: {zone: a, interfaces: {public: a, private: b}}\n"),
        "kawaii: missing: a node runs kawaii, konvey, kiwi or several, and this file has none of these sections"
    );
    assert_eq!(
        invalid(&format!("node: {{zone: a, interfaces: {{}}}}\n{KONVEY}")),
        "node.interfaces.konvey: missing: a konvey section needs at least one interface"
    );
    assert_eq!(
            invalid("node: {zone: a, interfaces: {private: b}}\nkawaii: {public_ips: [203.0.113.10], private_subnet: 10.0.0.0/25}\n"),
            "node.interfaces.public: missing: a kawaii section needs it"
        );
    assert_eq!(
            invalid(&format!(
                "node: {{zone: a, interfaces: {{public: a, private: b, konvey: [b]}}}}\nkawaii: {{public_ips: [203.0.113.10], private_subnet: 10.0.0.0/25}}\n{KONVEY}"
            )),
            r#"node.interfaces.konvey[0]: "b" already carries the Kawaii program (node.interfaces.private); an interface runs one program"#
        );
    assert_eq!(
        invalid(&format!(
            "node: {{zone: a, interfaces: {{konvey: [x, x]}}}}\n{KONVEY}"
        )),
        r#"node.interfaces.konvey[1]: "x" is already used by node.interfaces.konvey[0]"#
    );
    assert_eq!(
        invalid(&format!(
            "node: {{zone: a, interfaces: {{konvey: [\"a b\"]}}}}\n{KONVEY}"
        )),
        r#"node.interfaces.konvey[0]: "a b" is not an interface name (1-15 characters, no '/', ':' or whitespace)"#
    );
}

fn endpoint_error(endpoint: &str) -> String {
    invalid(&format!(
            "{NODE}konvey:\n  vip: 10.0.0.100\n  endpoints:\n    - {{name: web, protocol: tcp, port: 80, backend_port: 80, backend_ips: [10.0.0.11]}}\n    - {endpoint}\n"
        ))
}

#[test]
fn konvey_section_errors() {
    assert_eq!(
        invalid(&format!("{NODE}konvey: {{vip: 10.0.0.x}}\n")),
        r#"konvey.vip: "10.0.0.x" is not an IPv4 address"#
    );
    assert_eq!(
        invalid(&format!("{NODE}konvey: {{vip: 0.0.0.0}}\n")),
        r#"konvey.vip: "0.0.0.0" is the unspecified address"#
    );
    for (endpoint, want) in [
            (
                "{name: web, protocol: udp, port: 81, backend_port: 80}",
                r#"konvey.endpoints[1].name: "web" is already used by konvey.endpoints[0].name"#,
            ),
            (
                "{name: \"a b\", protocol: udp, port: 81, backend_port: 80}",
                r#"konvey.endpoints[1].name: "a b" is not a valid name (only A-Z a-z 0-9 _ . - are allowed)"#,
            ),
            (
                "{name: x, protocol: sctp, port: 81, backend_port: 80}",
                r#"konvey.endpoints[1].protocol: "sctp" is not a protocol (tcp, udp or icmp)"#,
            ),
            (
                "{name: x, protocol: icmp, port: 81, backend_port: 80}",
                r#"konvey.endpoints[1].protocol: "icmp" is not supported here (endpoints take tcp or udp)"#,
            ),
            (
                "{name: x, protocol: tcp, port: 0, backend_port: 80}",
                "konvey.endpoints[1].port: 0 is out of range (1-65535)",
            ),
            (
                "{name: x, protocol: tcp, port: 81, backend_port: 0}",
                "konvey.endpoints[1].backend_port: 0 is out of range (1-65535)",
            ),
            (
                "{name: x, protocol: TCP, port: 80, backend_port: 80}",
                r#"konvey.endpoints[1].port: "80" is already used by konvey.endpoints[0].port (tcp)"#,
            ),
            (
                "{name: x, protocol: tcp, port: 81, backend_port: 80, backend_ips: [10.0.0.11, 10.0.0.300]}",
                r#"konvey.endpoints[1].backend_ips[1]: "10.0.0.300" is not an IPv4 address"#,
            ),
            (
                "{name: x, protocol: tcp, port: 81, backend_port: 80, backend_ips: [10.0.0.11, 10.0.0.11]}",
                r#"konvey.endpoints[1].backend_ips[1]: "10.0.0.11" is already used by konvey.endpoints[1].backend_ips[0]"#,
            ),
            (
                "{name: x, protocol: tcp, port: 81, backend_port: 80, backend_ips: [10.0.0.100]}",
                r#"konvey.endpoints[1].backend_ips[0]: "10.0.0.100" is already used by konvey.vip"#,
            ),
        ] {
            assert_eq!(endpoint_error(endpoint), want);
        }
    // The same port with the other protocol is another service.
    ok(&format!(
            "{NODE}konvey:\n  vip: 10.0.0.100\n  endpoints:\n    - {{name: a, protocol: tcp, port: 53, backend_port: 53}}\n    - {{name: b, protocol: udp, port: 53, backend_port: 53}}\n"
        ));
}

fn node_error(konvey_node: &str) -> String {
    invalid(&format!(
        "node:\n  zone: a\n  interfaces: {{konvey: [eth0]}}\n  konvey: {konvey_node}\n{KONVEY}"
    ))
}

#[test]
fn node_konvey_errors() {
    for (node, want) in [
        (
            "{source_ip: nope}",
            r#"node.konvey.source_ip: "nope" is not an IPv4 address"#,
        ),
        (
            "{source_ip: 10.0.0.5, source_ips: [10.0.0.6]}",
            "node.konvey.source_ips: given together with node.konvey.source_ip: use one of them",
        ),
        (
            "{source_ips: []}",
            "node.konvey.source_ips: empty: at least one entry is required",
        ),
        (
            "{source_ips: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9]}",
            "node.konvey.source_ips: 9 entries, at most 8 are supported",
        ),
        (
            "{source_ips: [10.0.0.5, 10.0.0.6, 10.0.0.5]}",
            r#"node.konvey.source_ips[2]: "10.0.0.5" is already used by node.konvey.source_ips[0]"#,
        ),
        (
            "{source_ips: [10.0.0.5, 0.0.0.0]}",
            r#"node.konvey.source_ips[1]: "0.0.0.0" is the unspecified address"#,
        ),
        (
            "{nat_port_range: \"3000-2000\"}",
            r#"node.konvey.nat_port_range: "3000-2000" is not a port range min-max (range "3000-2000" is reversed)"#,
        ),
        (
            "{health: {interval_ms: 5}}",
            "node.konvey.health.interval_ms: 5 is out of range (10-3600000)",
        ),
        (
            "{health: {interval_ms: 100, timeout_ms: 200}}",
            "node.konvey.health.timeout_ms: 200 is out of range (1-100)",
        ),
        (
            "{health: {rise: 0}}",
            "node.konvey.health.rise: 0 is out of range (1-100)",
        ),
        (
            "{health: {fall: 101}}",
            "node.konvey.health.fall: 101 is out of range (1-100)",
        ),
        (
            "{health: {udp_probe: {send: x, expect: \"\"}}}",
            "node.konvey.health.udp_probe.expect: empty",
        ),
        (
            "{health: {endpoints: {nope: {udp_probe: {send: x}}}}}",
            r#"node.konvey.health.endpoints.nope: "nope" is not the name of a konvey endpoint"#,
        ),
        (
            "{health: {endpoints: {web: {udp_probe: {send: x}}}}}",
            r#"node.konvey.health.endpoints.web.udp_probe: "tcp" is not supported here (udp_probe is for udp endpoints)"#,
        ),
    ] {
        assert_eq!(node_error(node), want, "{node}");
    }
    let err = parse_str(&format!(
            "node:\n  zone: a\n  interfaces: {{konvey: [eth0]}}\n  konvey: {{health: {{intervall_ms: 5}}}}\n{KONVEY}"
        ))
        .expect_err("typo");
    assert!(
        err.to_string().contains("unknown field `intervall_ms`"),
        "{err}"
    );
}

#[test]
fn several_source_ips_keep_their_order() {
    let c = ok(&format!(
        "node:\n  zone: a\n  interfaces: {{konvey: [eth0]}}\n  konvey:\n    source_ips: [10.0.0.7, 10.0.0.5]\n{KONVEY}"
    ));
    assert_eq!(
        c.node.konvey.source_ips,
        [Ipv4Addr::new(10, 0, 0, 7), Ipv4Addr::new(10, 0, 0, 5)]
    );
}
