//! Helpers of the configuration tests (every section's).

use crate::config::{parse_str, ConfigError, ValidConfig};

pub(crate) const NODE: &str =
    "node:\n  zone: eu-west-a\n  interfaces: {public: pub0, private: priv0}\n";
pub(crate) const KAWAII: &str =
    "kawaii:\n  public_ips: [203.0.113.10]\n  private_subnet: 10.0.0.0/25\n";

pub(crate) const IPSEC: &str = r#"
  ipsec_connections:
    - name: acme-office
      remote_ip: 5.6.7.8
      remote_subnet: 172.16.1.0/24
      pre_shared_key: "correct horse battery staple"
      phase1_dh_group_number: 14
      phase1_integrity_algorithm: SHA512
      phase1_encryption_algorithm: AES256
      phase2_dh_group_number: 14
      phase2_integrity_algorithm: SHA512
      phase2_encryption_algorithm: AES256
"#;

pub(crate) fn ok(yaml: &str) -> ValidConfig {
    parse_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The validation error of `yaml`, as displayed.
pub(crate) fn invalid(yaml: &str) -> String {
    match parse_str(yaml) {
        Err(ConfigError::Invalid(e)) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.starts_with(&format!("{}: ", e.path)), "{text}");
            text
        }
        Err(other) => panic!("not a validation error: {other}\n{yaml}"),
        Ok(_) => panic!("accepted:\n{yaml}"),
    }
}

pub(crate) fn with_kawaii(extra: &str) -> String {
    format!("{NODE}{KAWAII}{extra}")
}

/// The Kawaii test section with one IPsec field replaced.
pub(crate) fn ipsec_with(field: &str, value: &str) -> String {
    let mut out = String::new();
    for line in IPSEC.lines() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if trimmed.starts_with(&format!("{field}:")) {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}{field}: {value}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    with_kawaii(&out)
}
