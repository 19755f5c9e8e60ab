//! Tests of the parent module.

use crate::config::{parse_str, ValidConfig};
use kowabunga_bindings::{
    kw_cidr, kw_config, kw_peering, kw_policy, kw_rule, kw_table, KW_MAX_RULES_PER_TABLE,
};
use kowabunga_dataplane::KawaiiConfig;

/// What the dataplane writes for a compiled configuration: the ABI form,
/// so these tests pin the bytes the kernel reads.
struct Compiled {
    config: kw_config,
    tables: kowabunga_dataplane::kawaii::banks::Tables,
    typed: KawaiiConfig,
}

impl Compiled {
    fn new(typed: KawaiiConfig) -> Self {
        let (config, tables) = typed.encode().expect("a compiled config always encodes");
        Compiled {
            config,
            tables,
            typed,
        }
    }
    fn table(&self, table: kw_table::Type) -> &[kw_rule] {
        &self.tables[table as usize]
    }
    fn summary(&self) -> String {
        self.typed.rules.summary()
    }
}

fn compile(valid: &ValidConfig) -> Option<Compiled> {
    super::compile(valid).map(Compiled::new)
}

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
    // upstream's default policy is drop
    let p1 = c.config.peerings[1];
    assert_eq!(bytes(p1.subnet.addr), [10, 2, 0, 0]);
    assert_eq!(bytes(p1.subnet.mask), [255, 255, 0, 0]);
    assert_eq!(p1.policy, kw_policy::KW_POLICY_DROP as u8);
    assert_eq!(c.config.peerings[2], kw_peering::default());

    // ICMP is always accepted across a drop-policy peering: one implicit
    // rule per peering and direction, first
    let pin = c.table(kw_table::KW_TABLE_PEER_IN);
    assert_eq!(pin.len(), 4);
    let icmp = |r: &kw_rule| (r.proto, r.port_lo, r.port_hi) == (1, 0, 65535);
    assert!(icmp(&pin[0]) && pin[0].cidr == p0.subnet);
    assert_eq!(
        (pin[1].proto, pin[1].port_lo, pin[1].port_hi),
        (6, 1, 65535)
    );
    assert!(icmp(&pin[2]) && pin[2].cidr == p0.subnet);
    assert!(icmp(&pin[3]) && pin[3].cidr == p1.subnet);
    assert!(pin[..3]
        .iter()
        .all(|r| r.cidr == p0.subnet && r.target == 0));
    let pout = c.table(kw_table::KW_TABLE_PEER_OUT);
    assert_eq!(pout.len(), 3);
    assert!(icmp(&pout[0]) && icmp(&pout[2]));
    let pout = &pout[1..2];
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
    // KW_MAX_RULES_PER_TABLE single-port rules fill the ingress table exactly.
    let mut extra = String::from("  firewall:\n    ingress:\n");
    let ports: Vec<String> = (1..=KW_MAX_RULES_PER_TABLE)
        .map(|p| p.to_string())
        .collect();
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

#[test]
fn ipv6_ingress_rules_go_to_their_own_table() {
    use kowabunga_dataplane::kawaii::config::{Rule6, RuleProto};
    let c = compile_yaml(
        "  firewall:\n    ingress:\n      - {source: 0.0.0.0/0, protocol: tcp, ports: \"22\"}\n      - {source: \"2001:db8::/32\", protocol: tcp, ports: \"22,8000-8010\"}\n      - {source: \"::/0\", protocol: icmp}\n",
    );
    assert_eq!(c.table(kw_table::KW_TABLE_INGRESS).len(), 1);
    let net = "2001:db8::/32".parse().expect("prefix");
    assert_eq!(
        c.typed.rules.ingress6,
        vec![
            Rule6 {
                net,
                proto: RuleProto::Tcp,
                ports: (22, 22)
            },
            Rule6 {
                net,
                proto: RuleProto::Tcp,
                ports: (8000, 8010)
            },
            Rule6 {
                net: "::/0".parse().expect("prefix"),
                proto: RuleProto::Icmpv6,
                ports: (0, u16::MAX)
            },
        ]
    );
    let abi = c.typed.encode6().expect("encodes");
    assert_eq!((abi[2].proto, abi[2].prefix_len), (58, 0));
    assert_eq!(
        c.summary(),
        "1 ingress + 3 IPv6, 0 egress, 0 dnat, 0 peer-in, 0 peer-out rules"
    );
}
