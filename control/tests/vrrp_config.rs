//! `node.vrrp` in the daemon's configuration: parsed, validated with the zone
//! rule, errors naming the field and the value.

use kowabunga_control::config::parse_str;

fn with_vrrp(vrrp: &str) -> String {
    format!(
        "node:\n  zone: eu-west-a\n  interfaces: {{konvey: [eth0]}}\n  vrrp:\n{vrrp}\nkonvey:\n  vip: 10.0.0.100\n  endpoints: []\n"
    )
}

#[test]
fn zone_rule_applies_with_the_node_zone() {
    let cfg = parse_str(&with_vrrp(
        "    instances:\n      - {vrid: 1, interface: eth0, zone: eu-west-a, virtual_ips: [10.0.0.100/24]}\n      - {vrid: 2, interface: eth0, zone: eu-west-b, virtual_ips: [10.0.0.101/24]}\n      - {vrid: 3, interface: eth0, zone: eu-west-b, priority: 200, virtual_ips: [10.0.0.102]}",
    ))
    .expect("valid");
    let prio: Vec<u8> = cfg.node.vrrp.iter().map(|i| i.priority).collect();
    assert_eq!(prio, [150, 100, 200]);
    assert_eq!(cfg.node.vrrp[0].name, "vrid-1");
    assert_eq!(cfg.node.vrrp[0].advert_interval_cs, 100);
}

#[test]
fn no_vrrp_key_means_no_instance() {
    let cfg = parse_str(
        "node:\n  zone: a\n  interfaces: {konvey: [eth0]}\nkonvey:\n  vip: 10.0.0.100\n  endpoints: []\n",
    )
    .expect("valid");
    assert!(cfg.node.vrrp.is_empty());
}

#[test]
fn errors_name_the_field_and_the_value() {
    let cases = [
        (
            "    instances: [{vrid: 300, interface: eth0, virtual_ips: [10.0.0.1]}]",
            "node.vrrp.instances[0].vrid: \"300\" is invalid",
        ),
        (
            "    instances: [{vrid: 1, interface: eth0, advert_interval_ms: 15, virtual_ips: [10.0.0.1]}]",
            "node.vrrp.instances[0].advert_interval_ms: \"15\"",
        ),
        (
            "    instances: [{vrid: 1, interface: eth0, virtual_ips: [10.0.0.1]}, {vrid: 1, interface: eth0, virtual_ips: [10.0.0.2]}]",
            "node.vrrp.instances[1].vrid: vrid 1 is used twice on interface eth0",
        ),
    ];
    for (yaml, want) in cases {
        let err = parse_str(&with_vrrp(yaml)).expect_err(yaml).to_string();
        assert!(err.contains(want), "{err}");
    }
    let err = parse_str(&with_vrrp(
        "    instances: [{vrid: 1, interface: eth0, virtual_ips: [10.0.0.1], typo: 1}]",
    ))
    .expect_err("unknown field");
    assert!(err.to_string().contains("typo"), "{err}");
}
