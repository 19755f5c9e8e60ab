//! The `konvey` section: Kowabunga's L4 network load balancer spec
//! (design section 6).
//!
//! Like [`kawaii`](super::kawaii), these types are *syntactic*: the VIP,
//! protocols and backend addresses are kept as written so that a validator
//! can name the exact field and value that is wrong
//! ([`Konvey::validate`] does the checks every consumer needs).
//!
//! ```
//! use kowabunga::model::konvey::Konvey;
//!
//! let yaml = r#"
//! vip: 10.0.0.100
//! endpoints:
//!   - {name: HTTPS, protocol: tcp, port: 443, backend_port: 443,
//!      backend_ips: [10.0.0.11, 10.0.0.12]}
//! "#;
//! let konvey: Konvey = serde_norway::from_str(yaml).unwrap();
//! assert_eq!(konvey.endpoints[0].backend_ips.len(), 2);
//! konvey.validate().unwrap();
//! ```

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// A Konvey load balancer: one virtual IP and the services it exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Konvey {
    /// The virtual IP the services listen on (held by VRRP).
    pub vip: String,
    /// The services: (protocol, port) on the VIP -> backends.
    #[serde(default)]
    pub endpoints: Vec<KonveyEndpoint>,
}

/// `endpoints[]`: one L4 service of a Konvey VIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KonveyEndpoint {
    /// Name of the service (e.g. `HTTPS`), unique within the Konvey.
    pub name: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Port on the VIP.
    pub port: u16,
    /// Port on the backends.
    pub backend_port: u16,
    /// Backend addresses, served in round-robin.
    #[serde(default)]
    pub backend_ips: Vec<String>,
}

impl Konvey {
    /// Checks the addresses, protocols, ports and names; the error names the
    /// field path (e.g. `endpoints[1].backend_ips[0]`) and the value.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.vip
            .parse::<IpAddr>()
            .map_err(|_| ValidationError::invalid("vip", &self.vip, "an IP address"))?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let at = |f: &str| format!("endpoints[{i}].{f}");
            if e.name.is_empty() {
                return Err(ValidationError::empty(at("name")));
            }
            if !matches!(e.protocol.as_str(), "tcp" | "udp") {
                return Err(ValidationError::invalid(
                    at("protocol"),
                    &e.protocol,
                    "tcp or udp",
                ));
            }
            if e.port == 0 {
                return Err(ValidationError::invalid(
                    at("port"),
                    "0",
                    "a port in 1..=65535",
                ));
            }
            if e.backend_port == 0 {
                return Err(ValidationError::invalid(
                    at("backend_port"),
                    "0",
                    "a port in 1..=65535",
                ));
            }
            if !seen.insert((e.protocol.as_str(), e.port)) {
                return Err(ValidationError::invalid(
                    at("port"),
                    e.port.to_string(),
                    "unique per protocol within the Konvey",
                ));
            }
            for (j, ip) in e.backend_ips.iter().enumerate() {
                ip.parse::<IpAddr>().map_err(|_| {
                    ValidationError::invalid(at(&format!("backend_ips[{j}]")), ip, "an IP address")
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Konvey {
        serde_norway::from_str(yaml).expect("valid yaml")
    }

    #[test]
    fn rejects_unknown_fields() {
        let err = serde_norway::from_str::<Konvey>("vip: 10.0.0.1\nbogus: 1\n")
            .expect_err("unknown field");
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let k = parse(
            "vip: 10.0.0.100\nendpoints:\n  - {name: a, protocol: tcp, port: 80, backend_port: 8080, backend_ips: [10.0.0.1, nope]}\n",
        );
        let err = k.validate().expect_err("bad backend");
        assert_eq!(err.field(), "endpoints[0].backend_ips[1]");
        assert!(err.to_string().contains("nope"), "{err}");

        let k = parse("vip: 10.0.0.100\nendpoints:\n  - {name: a, protocol: sctp, port: 80, backend_port: 80}\n");
        assert_eq!(
            k.validate().expect_err("sctp").field(),
            "endpoints[0].protocol"
        );

        let k = parse("vip: x\n");
        assert_eq!(k.validate().expect_err("vip").field(), "vip");
    }

    #[test]
    fn duplicate_service_is_refused() {
        let k = parse(
            "vip: 10.0.0.100\nendpoints:\n  - {name: a, protocol: tcp, port: 80, backend_port: 80}\n  - {name: b, protocol: tcp, port: 80, backend_port: 81}\n",
        );
        assert_eq!(k.validate().expect_err("dup").field(), "endpoints[1].port");
    }

    #[test]
    fn serde_round_trip() {
        let k = parse(
            "vip: 10.0.0.100\nendpoints:\n  - {name: HTTPS, protocol: tcp, port: 443, backend_port: 443, backend_ips: [10.0.0.11]}\n",
        );
        let text = serde_norway::to_string(&k).expect("serialize");
        assert_eq!(parse(&text), k);
    }
}
