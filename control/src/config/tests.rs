//! Tests of the parent module.

use crate::config::model::Policy;
use crate::config::testing::*;
use crate::config::*;
use std::net::Ipv4Addr;

#[test]
fn accepts_the_design_example() {
    let v = ok(&with_kawaii(&format!(
        r#"
  firewall:
    ingress: [{{source: 0.0.0.0/0, protocol: tcp, ports: "22"}}]
    egress_policy: accept
    egress:  [{{destination: 198.51.100.0/24, protocol: udp, ports: "53"}}]
  dnat: [{{destination: 10.0.0.10, protocol: tcp, ports: "80,443"}}]
  vpc_peerings:
    - {{subnet: 10.1.0.0/24, policy: drop, ingress: [{{protocol: tcp, ports: "1-65535"}}], egress: [{{protocol: tcp, ports: "1-65535"}}]}}
{IPSEC}"#
    )));
    assert_eq!(
        v.kawaii.as_ref().expect("kawaii").dnat[0].ports,
        vec![(80, 80), (443, 443)]
    );
    assert_eq!(
        v.kawaii.as_ref().expect("kawaii").peerings[0].policy,
        Policy::Drop
    );
    assert_eq!(v.node.bpffs, PathBuf::from("/sys/fs/bpf/kowabunga"));
    assert_eq!(v.node.nat_ports, (1024, 65535));
    assert_eq!(v.node.conntrack_entries, None);
    let conn = &v.kawaii.as_ref().expect("kawaii").ipsec[0];
    assert_eq!(conn.phase1.strongswan(), "aes256-sha512-modp2048");
    assert_eq!(conn.pre_shared_key.expose(), "correct horse battery staple");
}

#[test]
fn accepts_the_lab_example() {
    let text = include_str!("../../examples/kawaii-lab.yaml");
    let v = ok(text);
    assert_eq!(v.node.interfaces.public.as_deref(), Some("kw-gw-pub"));
    assert_eq!(v.node.interfaces.private.as_deref(), Some("kw-gw-priv"));
    assert_eq!(
        v.kawaii.as_ref().expect("kawaii").snat_ip,
        Ipv4Addr::new(203, 0, 113, 10)
    );
}

#[test]
fn node_errors() {
    let kawaii = KAWAII;
    let node = |body: &str| format!("node:\n{body}{kawaii}");
    assert_eq!(
        invalid(&node(
            "  zone: \"\"\n  interfaces: {public: a, private: b}\n"
        )),
        "node.zone: empty"
    );
    assert_eq!(
        invalid(&node(
            "  zone: z\n  interfaces: {public: \"\", private: b}\n"
        )),
        r#"node.interfaces.public: "" is not an interface name (1-15 characters, no '/', ':' or whitespace)"#
    );
    assert_eq!(
        invalid(&node(
            "  zone: z\n  interfaces: {public: a, private: this-name-is-too-long}\n"
        )),
        r#"node.interfaces.private: "this-name-is-too-long" is not an interface name (1-15 characters, no '/', ':' or whitespace)"#
    );
    assert_eq!(
        invalid(&node(
            "  zone: z\n  interfaces: {public: eth0, private: eth0}\n"
        )),
        r#"node.interfaces.private: "eth0" is already used by node.interfaces.public"#
    );
    assert_eq!(
        invalid(&node(
            "  zone: z\n  interfaces: {public: eth0, private: eth1, peerings: [eth2, eth1]}\n"
        )),
        r#"node.interfaces.peerings[1]: "eth1" is already used by node.interfaces.private"#
    );
    assert_eq!(
        invalid(&node(
            "  zone: z\n  interfaces: {public: eth0, private: eth1, peerings: [\"a b\"]}\n"
        )),
        r#"node.interfaces.peerings[0]: "a b" is not an interface name (1-15 characters, no '/', ':' or whitespace)"#
    );
    let base = "  zone: z\n  interfaces: {public: a, private: b}\n";
    assert_eq!(
        invalid(&node(&format!("{base}  nat_port_range: \"2000-1000\"\n"))),
        r#"node.nat_port_range: "2000-1000" is not a port range min-max (range "2000-1000" is reversed)"#
    );
    assert_eq!(
        invalid(&node(&format!("{base}  nat_port_range: \"0-1000\"\n"))),
        r#"node.nat_port_range: "0-1000" is not a port range min-max (port 0 is not allowed in "0-1000")"#
    );
    assert_eq!(
        invalid(&node(&format!("{base}  nat_port_range: \"1000,2000\"\n"))),
        r#"node.nat_port_range: "1000,2000" is not a port range min-max ("1000,2000" is not a port)"#
    );
    assert_eq!(
        invalid(&node(&format!("{base}  conntrack_entries: 0\n"))),
        "node.conntrack_entries: 0 is out of range (1-67108864)"
    );
    assert_eq!(
        invalid(&node(&format!("{base}  bpffs: relative/dir\n"))),
        r#"node.bpffs: "relative/dir" is not an absolute path"#
    );
    let v = ok(&node(&format!(
            "{base}  nat_port_range: \"30000-40000\"\n  conntrack_entries: 1024\n  bpffs: /sys/fs/bpf/kw-test\n"
        )));
    assert_eq!(v.node.nat_ports, (30000, 40000));
    assert_eq!(v.node.conntrack_entries, Some(1024));
    assert_eq!(v.node.bpffs, PathBuf::from("/sys/fs/bpf/kw-test"));
}

#[test]
fn unknown_fields_are_errors() {
    for (yaml, field) in [
        (format!("{NODE}{KAWAII}  dnats: []\n"), "dnats"),
        (format!("{NODE}  zones: a\n{KAWAII}"), "zones"),
        (
            with_kawaii(
                "  firewall: {ingress: [{src: 1.2.3.4/32, protocol: tcp, ports: \"1\"}]}\n",
            ),
            "src",
        ),
        (with_kawaii("  firewall: {egres: []}\n"), "egres"),
        (
            with_kawaii("  vpc_peerings: [{subnet: 10.1.0.0/24, polcy: drop}]\n"),
            "polcy",
        ),
        (
            ipsec_with("phase1_lifetime", "1h")
                .replace("name:", "phase3_lifetime: 1h\n      name:"),
            "phase3_lifetime",
        ),
    ] {
        match parse_str(&yaml) {
            Err(ConfigError::Parse(e)) => {
                let text = e.to_string();
                assert!(text.contains(&format!("unknown field `{field}`")), "{text}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn values_with_newlines_stay_on_one_line() {
    let text = invalid(&with_kawaii(
        "  firewall: {ingress: [{protocol: \"tcp\\nudp\", ports: \"1\"}]}\n",
    ));
    assert_eq!(
        text,
        r#"kawaii.firewall.ingress[0].protocol: "tcp\nudp" is not a protocol (tcp, udp or icmp)"#
    );
}

#[test]
fn huge_values_are_quoted_short_with_the_path_first() {
    let huge = "x".repeat(4 << 20);
    // A validation error quotes the value cut short.
    let text = invalid(&format!(
        "{NODE}kawaii:\n  public_ips: [203.0.113.10]\n  private_subnet: \"{huge}\"\n"
    ));
    assert!(
        text.starts_with("kawaii.private_subnet: \"xxxx"),
        "{}",
        &text[..80]
    );
    assert!(text.len() < 300, "{} bytes", text.len());
    assert!(
        text.contains("... (4194184 more bytes) is not an IPv4 subnet"),
        "{text}"
    );
    // A parse error (serde echoes the value) is cut as a whole line.
    let err = parse_str(&format!("{NODE}kawaii:\n  public_ips: {{{huge}: 1}}\n"))
        .expect_err("not a list");
    let text = err.to_string();
    assert!(text.starts_with("kawaii.public_ips"), "{}", &text[..80]);
    assert!(text.len() < MAX_ERROR_LINE + 100, "{} bytes", text.len());
    assert!(!text.contains('\n'));
}
