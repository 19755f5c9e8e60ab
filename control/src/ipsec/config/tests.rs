//! Tests of the parent module.

use crate::config::model::Config;
use crate::config::testing::*;
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
        invalid(&ipsec_with("name", "\"acme office\"")),
        format!(
            r#"{p}.name: "acme office" is not a valid name (only A-Z a-z 0-9 _ . - are allowed)"#
        )
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
        format!("{p}.phase1_dh_group_number: 1 is not a supported DH group (2, 5, 14-24)")
    );
    assert_eq!(
        invalid(&ipsec_with("phase2_dh_group_number", "25")),
        format!("{p}.phase2_dh_group_number: 25 is not a supported DH group (2, 5, 14-24)")
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
            "modp2048s256"
        ]
    );
    for g in [0, 1, 3, 4, 6, 13, 25, 31] {
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
