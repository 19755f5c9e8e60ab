//! DNS records and Kylo file shares.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{validate_name, validate_ref, ValidationError};

/// A custom DNS record of a project: `name.<domain>` answers all `addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    /// Owning project.
    pub project: String,
    /// Record name (a label under the project's domain).
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
    /// Addresses the name resolves to (round-robin by clients).
    pub addresses: Vec<String>,
}

impl DnsRecord {
    /// Checks the name and every address; the error names the index.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_ref("project", &self.project)?;
        validate_name("name", &self.name)?;
        if self.addresses.is_empty() {
            return Err(ValidationError::empty("addresses"));
        }
        self.ip_addresses().map(|_| ())
    }

    /// The addresses, parsed.
    pub fn ip_addresses(&self) -> Result<Vec<IpAddr>, ValidationError> {
        self.addresses
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse().map_err(|_| {
                    ValidationError::invalid(format!("addresses[{i}]"), a, "an IP address")
                })
            })
            .collect()
    }
}

/// A Kylo NFS file share of a project in a region, reachable from the
/// project's subnet only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kylo {
    /// Owning project.
    pub project: String,
    /// Region the share lives in.
    pub region: String,
    /// Share name.
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
}

impl Kylo {
    /// Checks the name and references.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_ref("project", &self.project)?;
        validate_ref("region", &self.region)?;
        validate_name("name", &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_record_addresses() {
        let r: DnsRecord = serde_norway::from_str(
            "project: acme\nname: ad\ndesc: Active-Directory\naddresses: [10.0.0.2, 10.0.0.3]\n",
        )
        .expect("record");
        r.validate().expect("valid");
        assert_eq!(r.ip_addresses().expect("ips").len(), 2);
        let mut bad = r.clone();
        bad.addresses.push("10.0.0".into());
        assert_eq!(bad.validate().expect_err("ip").field(), "addresses[2]");
        let mut empty = r;
        empty.addresses.clear();
        assert_eq!(empty.validate().expect_err("empty").field(), "addresses");
    }

    #[test]
    fn kylo_name() {
        let k: Kylo = serde_norway::from_str(
            "project: acme\nregion: eu-west\nname: acme-nfs\ndesc: ACME NFS share\n",
        )
        .expect("kylo");
        k.validate().expect("valid");
        let bad = Kylo {
            name: "ACME NFS".into(),
            ..k
        };
        assert_eq!(bad.validate().expect_err("name").field(), "name");
    }
}
