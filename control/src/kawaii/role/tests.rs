//! Tests of the Kawaii role: start applies then attaches, reloads flip
//! banks, failures surface with their one-line message.

use super::*;
use crate::config;
use crate::daemon::testing::{kawaii, kawaii_fake, started, GOOD};
use crate::kawaii::engine::fake::FakeKawaii;

#[test]
fn start_applies_then_attaches_every_interface() {
    let (_file, d) = started("start");
    let role = kawaii(&d);
    let fake = role.engine();
    assert_eq!(fake.applied.len(), 1);
    assert_eq!(role.bank(), 0);
    assert_eq!(
        fake.attached,
        [
            ("pub0".to_owned(), Hook::Public),
            ("priv0".to_owned(), Hook::Private),
            ("peer0".to_owned(), Hook::Peering),
            ("peer1".to_owned(), Hook::Peering),
        ]
    );
    assert_eq!(&fake.applied[0], role.applied());
    assert_eq!(fake.applied[0].rules.dnat.len(), 1);
}

#[test]
fn start_fails_on_apply_or_attach_errors() {
    let config = config::parse_str(GOOD).expect("valid");
    let fake = FakeKawaii {
        fail_apply: true,
        ..FakeKawaii::default()
    };
    let err = KawaiiRole::start(fake, &config).expect_err("apply");
    assert_eq!(err.to_string(), "map kw_rules: write failed");
    let fake = FakeKawaii {
        fail_attach: true,
        ..FakeKawaii::default()
    };
    let mut role = KawaiiRole::start(fake, &config).expect("applied");
    let err = role.attach().expect_err("attach");
    assert_eq!(err.to_string(), "no interface pub0");
}

#[test]
fn reload_applies_a_good_config_to_the_other_bank() {
    let (file, mut d) = started("reload-good");
    file.write(&GOOD.replace(
        "ingress: [{protocol: tcp, ports: \"22\"}]",
        "ingress: [{protocol: tcp, ports: \"22,2222\"}]",
    ));
    d.reload().expect("reload");
    assert_eq!(kawaii(&d).bank(), 1);
    assert_eq!(kawaii(&d).applied().rules.ingress.len(), 2);
    assert_eq!(kawaii_fake(&d).applied.len(), 2);
    // Attachments are not redone.
    assert_eq!(kawaii_fake(&d).attached.len(), 4);
    d.reload().expect("reload");
    assert_eq!(kawaii(&d).bank(), 0);
}

#[test]
fn interfaces_of_a_config() {
    let config = config::parse_str(GOOD).expect("valid");
    assert_eq!(hooks(&config).len(), 4);
    assert_eq!(
        interfaces(&config)[3],
        ("node.interfaces.peerings[1]".to_owned(), "peer1".to_owned())
    );
    assert!(crate::konvey::role::interfaces(&config).is_empty());
    assert_eq!(
        KawaiiRole::start(FakeKawaii::default(), &config)
            .expect("start")
            .summary(),
        "bank 0, 1 ingress, 0 egress, 1 dnat, 0 peer-in, 0 peer-out rules, snat 203.0.113.10, 1 public ips, 0 peerings, 0 ipsec connections"
    );
}

#[test]
fn the_backstop_follows_the_vips_and_fails_closed() {
    let (file, mut d) = started("backstop");
    let fake = kawaii_fake(&d);
    assert_eq!(fake.rulesets.len(), 1, "installed once, after the programs");
    assert!(
        fake.rulesets[0].contains("ip saddr != { 203.0.113.10 } counter drop"),
        "{}",
        fake.rulesets[0]
    );
    // A reload that keeps the VIPs does not touch nftables.
    file.write(&GOOD.replace("\"22\"", "\"22,23\""));
    d.reload().expect("reload");
    assert_eq!(kawaii_fake(&d).rulesets.len(), 1);
    // New VIPs: a new running ruleset.
    file.write(&GOOD.replace("[203.0.113.10]", "[203.0.113.10, 203.0.113.11]"));
    d.reload().expect("reload");
    let fake = kawaii_fake(&d);
    assert_eq!(fake.rulesets.len(), 2);
    assert!(fake.rulesets[1].contains("{ 203.0.113.10, 203.0.113.11 }"));

    // nft refusing at start stops the start.
    let config = config::parse_str(GOOD).expect("valid");
    let fake = FakeKawaii {
        fail_backstop: true,
        ..FakeKawaii::default()
    };
    let mut role = KawaiiRole::start(fake, &config).expect("applied");
    let err = role.attach().expect_err("backstop");
    assert_eq!(
        err.to_string(),
        "kawaii: nft refused the backstop: Error: syntax error"
    );
}
