//! Tests of the parent module.

use crate::config::model::Config;
use crate::config::testing::*;
use crate::ipsec::config::{DpdAction, StartAction};
use crate::ipsec::proposal::*;

#[test]
fn secret_is_redacted() {
    let yaml = with_kawaii(IPSEC);
    let parsed: Config = serde_norway::from_str(&yaml).expect("parse");
    let valid = ok(&yaml);
    for text in [
        format!("{parsed:?}"),
        format!("{valid:?}"),
        format!("{valid:#?}"),
    ] {
        assert!(!text.contains("correct horse"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
    assert_eq!(
        valid.kawaii.as_ref().expect("kawaii").ipsec[0]
            .pre_shared_key
            .to_string(),
        "***"
    );
}

#[test]
fn ipsec_errors() {
    let p = "kawaii.ipsec_connections[0]";
    assert_eq!(
        invalid(&ipsec_with("name", "\"a\\tb\"")),
        format!(r#"{p}.name: "a\tb" is not a valid name (only A-Z a-z 0-9 _ . - are allowed)"#)
    );
    assert_eq!(
        invalid(&ipsec_with("name", "\"!!\"")),
        format!(r#"{p}.name: "!!" is not a valid name (only A-Z a-z 0-9 _ . - are allowed)"#)
    );
    assert_eq!(
        invalid(&ipsec_with("name", "\"\"")),
        format!("{p}.name: empty")
    );
    assert_eq!(
        invalid(&ipsec_with("remote_ip", "5.6.7")),
        format!(r#"{p}.remote_ip: "5.6.7" is not an IPv4 address"#)
    );
    assert_eq!(
        invalid(&ipsec_with("remote_ip", "10.0.0.3")),
        format!(r#"{p}.remote_ip: "10.0.0.3" is inside kawaii.private_subnet (10.0.0.0/25)"#)
    );
    assert_eq!(
        invalid(&ipsec_with("remote_subnet", "10.0.0.0/16")),
        format!(r#"{p}.remote_subnet: "10.0.0.0/16" overlaps kawaii.private_subnet (10.0.0.0/25)"#)
    );
    assert_eq!(
        invalid(&ipsec_with("pre_shared_key", "\"\"")),
        format!("{p}.pre_shared_key: empty")
    );
    assert_eq!(
        invalid(&ipsec_with("phase1_dh_group_number", "1")),
        format!("{p}.phase1_dh_group_number: 1 is not a supported DH group (2, 5, 14-32)")
    );
    assert_eq!(
        invalid(&ipsec_with("phase2_dh_group_number", "33")),
        format!("{p}.phase2_dh_group_number: 33 is not a supported DH group (2, 5, 14-32)")
    );
    assert_eq!(
        invalid(&ipsec_with("phase1_integrity_algorithm", "MD5")),
        format!(
            r#"{p}.phase1_integrity_algorithm: "MD5" is not an integrity algorithm (SHA1, SHA256, SHA384, SHA512)"#
        )
    );
    assert_eq!(
        invalid(&ipsec_with("phase2_encryption_algorithm", "DES")),
        format!(
            r#"{p}.phase2_encryption_algorithm: "DES" is not an encryption algorithm (AES128, AES256, CAMELLIA128, CAMELLIA256)"#
        )
    );
    // Two connections with the same name, or overlapping remote subnets.
    let twice = with_kawaii(&format!(
        "{IPSEC}{}",
        IPSEC.replace("  ipsec_connections:\n", "")
    ));
    assert_eq!(
        invalid(&twice),
        r#"kawaii.ipsec_connections[1].name: "acme-office" is already used by kawaii.ipsec_connections[0].name"#
    );
    let overlap = with_kawaii(&format!(
        "{IPSEC}{}",
        IPSEC
            .replace("  ipsec_connections:\n", "")
            .replace("acme-office", "acme-2")
    ));
    assert_eq!(
        invalid(&overlap),
        r#"kawaii.ipsec_connections[1].remote_subnet: "172.16.1.0/24" overlaps kawaii.ipsec_connections[0].remote_subnet (172.16.1.0/24)"#
    );
    let peer_overlap = with_kawaii(&format!(
        "  vpc_peerings: [{{subnet: 172.16.0.0/16}}]\n{IPSEC}"
    ));
    assert_eq!(
        invalid(&peer_overlap),
        format!(
            r#"{p}.remote_subnet: "172.16.1.0/24" overlaps kawaii.vpc_peerings[0].subnet (172.16.0.0/16)"#
        )
    );
}

#[test]
fn dh_groups_and_algorithms() {
    let names: Vec<&str> = DH_GROUPS
        .iter()
        .map(|&g| DhGroup::new(g).expect("group").strongswan_name())
        .collect();
    assert_eq!(
        names,
        [
            "modp1024",
            "modp1536",
            "modp2048",
            "modp3072",
            "modp4096",
            "modp6144",
            "modp8192",
            "ecp256",
            "ecp384",
            "ecp521",
            "modp1024s160",
            "modp2048s224",
            "modp2048s256",
            "ecp192",
            "ecp224",
            "ecp224bp",
            "ecp256bp",
            "ecp384bp",
            "ecp512bp",
            "curve25519",
            "curve448",
        ]
    );
    for g in [0, 1, 3, 4, 6, 13, 33, 255] {
        assert_eq!(DhGroup::new(g), None, "{g}");
        assert_eq!(dh_group_strongswan_name(g), None);
    }
    let p = Proposal {
        dh_group: DhGroup::new(5).expect("group"),
        integrity: Integrity::parse("sha256").expect("integ"),
        encryption: Encryption::parse("Camellia128").expect("enc"),
    };
    assert_eq!(p.strongswan(), "camellia128-sha256-modp1536");
    assert_eq!(
        Integrity::parse("SHA1").map(Integrity::strongswan_name),
        Some("sha1")
    );
    assert_eq!(
        Integrity::parse("SHA384").map(Integrity::strongswan_name),
        Some("sha384")
    );
    assert_eq!(
        Integrity::parse("SHA512").map(Integrity::strongswan_name),
        Some("sha512")
    );
    assert_eq!(
        Encryption::parse("AES128").map(Encryption::strongswan_name),
        Some("aes128")
    );
    assert_eq!(
        Encryption::parse("AES256").map(Encryption::strongswan_name),
        Some("aes256")
    );
    assert_eq!(
        Encryption::parse("CAMELLIA256").map(Encryption::strongswan_name),
        Some("camellia256")
    );
}

/// The test connection with `extra` lines added (6 spaces of indent).
fn ipsec_plus(extra: &str) -> String {
    with_kawaii(&format!("{IPSEC}{extra}"))
}

#[test]
fn the_guides_vocabulary_and_upstreams_defaults() {
    let guide = with_kawaii(
        &IPSEC
            .replace(
                "name: acme-office",
                "name: ACME Office\n      desc: connect ro aws ipsec",
            )
            .replace("remote_ip:", "remote_peer:"),
    );
    let valid = ok(&guide);
    let c = &valid.kawaii.as_ref().expect("kawaii").ipsec[0];
    assert_eq!(
        (c.name.as_str(), c.charon_name.as_str()),
        ("ACME Office", "kw-acme-office")
    );
    assert_eq!(c.desc.as_deref(), Some("connect ro aws ipsec"));
    assert_eq!(c.remote_ip.to_string(), "5.6.7.8");
    assert_eq!(
        (
            c.phase1_lifetime_s,
            c.phase2_lifetime_s,
            c.rekey_time_s,
            c.dpd_timeout_s
        ),
        (3600, 3600, 3240, 240)
    );
    assert_eq!(
        (c.dpd_action, c.start_action),
        (DpdAction::Restart, StartAction::Start)
    );
    assert!(c.firewall.is_none());

    let tuned = ok(&ipsec_plus(
        "      phase1_lifetime: 8h\n      phase2_lifetime: 3600\n      rekey_time: 30m\n      dpd_timeout: 30s\n      dpd_timeout_action: hold\n      start_action: trap\n",
    ));
    let c = &tuned.kawaii.as_ref().expect("kawaii").ipsec[0];
    assert_eq!(
        (
            c.phase1_lifetime_s,
            c.phase2_lifetime_s,
            c.rekey_time_s,
            c.dpd_timeout_s
        ),
        (28800, 3600, 1800, 30)
    );
    assert_eq!(
        (c.dpd_action, c.start_action),
        (DpdAction::Hold, StartAction::Trap)
    );
}

#[test]
fn timers_actions_and_tunnel_firewall_errors() {
    let p = "kawaii.ipsec_connections[0]";
    let cases = [
        (
            "      dpd_timeout: soon\n",
            format!(
                r#"{p}.dpd_timeout: "soon" is not a duration (seconds, or a number with s, m, h or d)"#
            ),
        ),
        (
            "      phase2_lifetime: 0s\n",
            format!("{p}.phase2_lifetime: 0 is out of range (1-2592000)"),
        ),
        (
            "      rekey_time: 90d\n",
            format!("{p}.rekey_time: 7776000 is out of range (1-2592000)"),
        ),
        (
            "      dpd_timeout_action: explode\n",
            format!(r#"{p}.dpd_timeout_action: "explode" is not one of clear, hold, restart"#),
        ),
        (
            "      start_action: later\n",
            format!(r#"{p}.start_action: "later" is not one of none, trap, start"#),
        ),
        (
            "      firewall: {ingress: [{source: 10.9.0.0/24, protocol: tcp, ports: 22}]}\n",
            format!(
                r#"{p}.firewall.ingress[0].source: "10.9.0.0/24" is not inside the connection's remote_subnet (172.16.1.0/24)"#
            ),
        ),
        (
            "      firewall: {ingress: [{protocol: tcp}]}\n",
            format!("{p}.firewall.ingress[0].ports: missing: tcp rules need a port list"),
        ),
        (
            "      firewall: {egress: [{destination: 172.16.1.0/25, protocol: sctp}]}\n",
            format!(
                r#"{p}.firewall.egress[0].protocol: "sctp" is not a protocol (tcp, udp or icmp)"#
            ),
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(invalid(&ipsec_plus(extra)), want, "{extra}");
    }
    // the guide's and the API's names for the peer, both at once
    let both = ipsec_plus("      remote_peer: 5.6.7.9\n");
    assert!(matches!(
        crate::config::parse_str(&both),
        Err(crate::config::ConfigError::Parse(_))
    ));
}

#[test]
fn names_and_keys_across_connections() {
    let second = |name: &str, peer: &str, key: &str| {
        IPSEC
            .replace("  ipsec_connections:\n", "")
            .replace("name: acme-office", &format!("name: {name}"))
            .replace("remote_ip: 5.6.7.8", &format!("remote_ip: {peer}"))
            .replace("172.16.1.0/24", "172.16.2.0/24")
            .replace("correct horse battery staple", key)
    };
    // "ACME.Office" and "acme office" differ, their charon names do not
    let clash = with_kawaii(&format!(
        "{}{}",
        IPSEC.replace("name: acme-office", "name: ACME Office"),
        second("acme office!", "5.6.7.9", "k2")
    ));
    assert_eq!(
        invalid(&clash),
        r#"kawaii.ipsec_connections[1].name: "acme office!" gives the charon name "kw-acme-office", already used by kawaii.ipsec_connections[0].name"#
    );
    // one peer, two keys
    let keys = with_kawaii(&format!("{IPSEC}{}", second("b", "5.6.7.8", "other")));
    assert_eq!(
        invalid(&keys),
        "kawaii.ipsec_connections[1].pre_shared_key: kawaii.ipsec_connections[0] has the same remote_ip with another pre_shared_key: one key per peer"
    );
    // one peer, two subnets, one key: fine
    let two = ok(&with_kawaii(&format!(
        "{IPSEC}{}",
        second("b", "5.6.7.8", "correct horse battery staple")
    )));
    assert_eq!(two.kawaii.expect("kawaii").ipsec.len(), 2);
}
