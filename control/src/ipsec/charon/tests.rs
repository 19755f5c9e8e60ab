//! Tests of the parent module.

use std::net::Ipv4Addr;

use super::*;
use crate::config::parse_str;
use crate::ipsec::proposal::{validate_proposal, DH_GROUPS};

/// The guide's "IPsec Peering" example, translated to YAML as is.
pub(crate) const GUIDE: &str = r#"
node: {zone: a, interfaces: {public: p, private: q}}
kawaii:
  public_ips: [203.0.113.10]
  private_subnet: 10.0.0.0/24
  ipsec_connections:
    - name: ACME Office
      desc: connect ro aws ipsec
      pre_shared_key: correct horse battery staple
      remote_peer: 5.6.7.8
      remote_subnet: 172.16.1.0/24
      phase1_dh_group_number: 14
      phase1_integrity_algorithm: SHA512
      phase1_encryption_algorithm: AES256
      phase2_dh_group_number: 14
      phase2_integrity_algorithm: SHA512
      phase2_encryption_algorithm: AES256
"#;

#[test]
fn the_guides_example_becomes_this_connection() {
    let config = parse_str(GUIDE).expect("the guide's example is valid");
    let k = config.kawaii.expect("kawaii");
    let c = &k.ipsec[0];
    let msg = load_conn(c, Ipv4Addr::new(203, 0, 113, 10), k.private_subnet, true);
    let conn = &msg["kw-acme-office"];
    assert_eq!(conn.version, 2);
    assert_eq!(conn.local_addrs, ["203.0.113.10"]);
    assert_eq!(conn.remote_addrs, ["5.6.7.8"]);
    assert!(conn.encap);
    assert_eq!(conn.proposals, ["aes256-sha512-modp2048"]);
    assert_eq!(
        (conn.rekey_time, conn.dpd_delay, conn.dpd_timeout),
        (3600, 5, 240)
    );
    assert_eq!(conn.local.id, "203.0.113.10");
    assert_eq!(conn.remote.id, "5.6.7.8");
    let child = &conn.children["kw-acme-office"];
    assert_eq!(child.local_ts, ["10.0.0.0/24"]);
    assert_eq!(child.remote_ts, ["172.16.1.0/24"]);
    assert_eq!(child.esp_proposals, ["aes256-sha512-modp2048"]);
    // upstream's defaults: lifetimes 1 h, rekey 2 h capped below the lifetime
    assert_eq!((child.life_time, child.rekey_time), (3600, 3240));
    assert_eq!(
        (
            child.start_action.as_str(),
            child.dpd_action.as_str(),
            child.close_action.as_str()
        ),
        ("none", "restart", "start")
    );
    let key = load_shared(c);
    assert_eq!(key.id, "kw-acme-office");
    assert_eq!(key.owners, ["5.6.7.8"]);
    assert_eq!(key.data, "correct horse battery staple");
    let shown = format!("{key:?} {c:?}");
    assert!(!shown.contains("horse"), "{shown}");
}

#[test]
fn proposal_strings_for_every_combination() {
    let integrity = [
        ("SHA1", "sha1"),
        ("SHA256", "sha256"),
        ("SHA384", "sha384"),
        ("SHA512", "sha512"),
    ];
    let encryption = [
        ("AES128", "aes128"),
        ("AES256", "aes256"),
        ("CAMELLIA128", "camellia128"),
        ("CAMELLIA256", "camellia256"),
    ];
    let groups = [
        (2, "modp1024"),
        (5, "modp1536"),
        (14, "modp2048"),
        (15, "modp3072"),
        (16, "modp4096"),
        (17, "modp6144"),
        (18, "modp8192"),
        (19, "ecp256"),
        (20, "ecp384"),
        (21, "ecp521"),
        (22, "modp1024s160"),
        (23, "modp2048s224"),
        (24, "modp2048s256"),
        (25, "ecp192"),
        (26, "ecp224"),
        (27, "ecp224bp"),
        (28, "ecp256bp"),
        (29, "ecp384bp"),
        (30, "ecp512bp"),
        (31, "curve25519"),
        (32, "curve448"),
    ];
    assert_eq!(groups.len(), DH_GROUPS.len());
    let mut n = 0;
    for (dh, dh_name) in groups {
        for (integ, integ_name) in integrity {
            for (enc, enc_name) in encryption {
                for phase in [1, 2] {
                    let p = validate_proposal("x", phase, dh, integ, enc).expect("valid");
                    assert_eq!(p.strongswan(), format!("{enc_name}-{integ_name}-{dh_name}"));
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 21 * 4 * 4 * 2);
    for bad in [0, 1, 3, 4, 6, 13, 33, 1000] {
        assert!(
            validate_proposal("x", 1, bad, "SHA256", "AES128").is_err(),
            "{bad}"
        );
    }
}

#[test]
fn any_change_changes_the_fingerprint_and_nothing_else_does() {
    let config = parse_str(GUIDE).expect("valid");
    let k = config.kawaii.expect("kawaii");
    let c = &k.ipsec[0];
    let vip = Ipv4Addr::new(203, 0, 113, 10);
    let fp = |c: &Ipsec, encap| {
        fingerprint(&load_conn(c, vip, k.private_subnet, encap), &load_shared(c))
    };
    assert_eq!(fp(c, true), fp(c, true));
    assert_ne!(fp(c, true), fp(c, false));
    let mut other_key = c.clone();
    other_key.pre_shared_key = crate::config::model::Secret::new("another");
    assert_ne!(fp(c, true), fp(&other_key, true));
    let mut desc = c.clone();
    desc.desc = Some("only words".to_owned());
    assert_eq!(fp(c, true), fp(&desc, true));
}
