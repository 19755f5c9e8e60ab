//! Validation of the `konvey` section and of `node.konvey`.
//!
//! Part of [`validate`](super::validate::validate): the same one-line
//! [`ValidationError`]s naming the field path and the value, for example
//! `konvey.endpoints[0].backend_ips[1]: "10.0.0.x" is not an IPv4 address`.
//!
//! ```
//! use kowabunga_control::config::parse_str;
//!
//! let valid = parse_str(r#"
//! node: {zone: a, interfaces: {konvey: [eth0]}}
//! konvey:
//!   vip: 10.0.0.100
//!   endpoints:
//!     - {name: HTTPS, protocol: tcp, port: 443, backend_port: 8443, backend_ips: [10.0.0.11, 10.0.0.12]}
//! "#).unwrap();
//! let konvey = valid.konvey.unwrap();
//! assert_eq!(konvey.endpoints[0].backends.len(), 2);
//! assert_eq!(valid.node.konvey.nat_ports, (1024, 32767));
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use super::model::{Konvey, NodeKonvey, UdpProbeSpec};
use super::ports::parse_port_range;
use super::validate::{ErrorKind, Protocol, ValidNode, ValidationError};
use crate::konvey::health::HealthConfig;
use crate::konvey::probe::UdpProbe;

/// Most endpoints of one Konvey (the dataplane's `KV_MAX_SERVICES`).
pub const MAX_ENDPOINTS: usize = kowabunga_dataplane::konvey::MAX_SERVICES;

/// Most backends of one endpoint (the dataplane's `KV_MAX_BACKENDS`).
pub const MAX_BACKENDS: usize = kowabunga_dataplane::konvey::MAX_BACKENDS;

/// Accepted `node.konvey.health.interval_ms`.
pub const INTERVAL_MS: (u64, u64) = (10, 3_600_000);

/// Accepted `rise` and `fall`.
pub const THRESHOLD: (u32, u32) = (1, 100);

/// The validated `node.konvey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidNodeKonvey {
    /// Full-NAT source address; `None`: the first IPv4 address of the first
    /// Konvey interface, found at startup.
    pub source_ip: Option<Ipv4Addr>,
    /// Full-NAT source ports, inclusive.
    pub nat_ports: (u16, u16),
    /// Probe timing and thresholds.
    pub health: HealthConfig,
    /// Probe of UDP endpoints without their own.
    pub udp_probe: UdpProbe,
    /// Probes of named endpoints (`node.konvey.health.endpoints`).
    pub endpoint_probes: Vec<(String, UdpProbe)>,
}

/// One validated `konvey.endpoints[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEndpoint {
    /// Its name (unique).
    pub name: String,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// Port on the VIP.
    pub port: u16,
    /// Port on the backends.
    pub backend_port: u16,
    /// Backend addresses in configuration order (the round-robin order),
    /// without duplicates.
    pub backends: Vec<Ipv4Addr>,
    /// How its backends are probed when it is UDP (`None` for TCP).
    pub udp_probe: Option<UdpProbe>,
}

/// The validated `konvey` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKonvey {
    /// The VIP of every endpoint.
    pub vip: Ipv4Addr,
    /// The services.
    pub endpoints: Vec<ValidEndpoint>,
}

fn err<T>(path: impl Into<String>, kind: ErrorKind) -> Result<T, ValidationError> {
    Err(ValidationError {
        path: path.into(),
        kind,
    })
}

fn addr(path: &str, text: &str) -> Result<Ipv4Addr, ValidationError> {
    match text.trim().parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() => err(path, ErrorKind::Unspecified(text.to_owned())),
        Ok(a) => Ok(a),
        Err(_) => err(path, ErrorKind::NotAnAddress(text.to_owned())),
    }
}

fn range<T: Copy + Into<u64> + PartialOrd>(
    path: &str,
    v: T,
    (min, max): (T, T),
) -> Result<(), ValidationError> {
    if v < min || v > max {
        return err(
            path,
            ErrorKind::OutOfRange {
                value: v.into(),
                min: min.into(),
                max: max.into(),
            },
        );
    }
    Ok(())
}

fn udp_probe(path: &str, spec: &UdpProbeSpec) -> Result<UdpProbe, ValidationError> {
    if spec.expect.as_deref() == Some("") {
        return err(format!("{path}.expect"), ErrorKind::Empty);
    }
    Ok(UdpProbe {
        send: spec.send.as_bytes().to_vec(),
        expect: spec.expect.as_ref().map(|e| e.as_bytes().to_vec()),
    })
}

/// Validates `node.konvey` (meaningful only with a `konvey` section, but
/// always checked so a typo never waits for the day it matters).
///
/// # Errors
/// The first wrong field.
pub fn validate_node_konvey(k: &NodeKonvey) -> Result<ValidNodeKonvey, ValidationError> {
    let source_ip = match &k.source_ip {
        Some(text) => Some(addr("node.konvey.source_ip", text)?),
        None => None,
    };
    let nat_ports = parse_port_range(k.nat_port_range.as_str()).or_else(|error| {
        err(
            "node.konvey.nat_port_range",
            ErrorKind::NotAPortRange {
                value: k.nat_port_range.as_str().to_owned(),
                error,
            },
        )
    })?;
    let h = &k.health;
    range("node.konvey.health.interval_ms", h.interval_ms, INTERVAL_MS)?;
    range(
        "node.konvey.health.timeout_ms",
        h.timeout_ms,
        (1, h.interval_ms),
    )?;
    range("node.konvey.health.rise", h.rise, THRESHOLD)?;
    range("node.konvey.health.fall", h.fall, THRESHOLD)?;
    let udp = match &h.udp_probe {
        Some(spec) => udp_probe("node.konvey.health.udp_probe", spec)?,
        None => UdpProbe::default(),
    };
    let mut endpoint_probes = Vec::with_capacity(h.endpoints.len());
    for (name, endpoint) in &h.endpoints {
        let probe = udp_probe(
            &format!("node.konvey.health.endpoints.{name}.udp_probe"),
            &endpoint.udp_probe,
        )?;
        endpoint_probes.push((name.clone(), probe));
    }
    Ok(ValidNodeKonvey {
        source_ip,
        nat_ports,
        health: HealthConfig {
            interval: Duration::from_millis(h.interval_ms),
            timeout: Duration::from_millis(h.timeout_ms),
            rise: h.rise,
            fall: h.fall,
        },
        udp_probe: udp,
        endpoint_probes,
    })
}

/// Validates the `konvey` section against the validated node settings.
///
/// # Errors
/// The first wrong field.
pub fn validate_konvey(node: &ValidNode, k: &Konvey) -> Result<ValidKonvey, ValidationError> {
    let vip = addr("konvey.vip", &k.vip)?;
    if k.endpoints.len() > MAX_ENDPOINTS {
        return err(
            "konvey.endpoints",
            ErrorKind::TooMany {
                count: k.endpoints.len(),
                max: MAX_ENDPOINTS,
            },
        );
    }
    let mut endpoints: Vec<ValidEndpoint> = Vec::with_capacity(k.endpoints.len());
    for (i, e) in k.endpoints.iter().enumerate() {
        let path = format!("konvey.endpoints[{i}]");
        let name_path = format!("{path}.name");
        if e.name.is_empty() {
            return err(name_path, ErrorKind::Empty);
        }
        if !e
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return err(name_path, ErrorKind::BadName(e.name.clone()));
        }
        if let Some(j) = endpoints.iter().position(|o| o.name == e.name) {
            return err(
                name_path,
                ErrorKind::Duplicate {
                    value: e.name.clone(),
                    other: format!("konvey.endpoints[{j}].name"),
                },
            );
        }
        let protocol = match Protocol::parse(e.protocol.trim()) {
            Some(p @ (Protocol::Tcp | Protocol::Udp)) => p,
            Some(Protocol::Icmp) => {
                return err(
                    format!("{path}.protocol"),
                    ErrorKind::UnsupportedProtocol {
                        value: e.protocol.clone(),
                        expected: "endpoints take tcp or udp",
                    },
                )
            }
            None => {
                return err(
                    format!("{path}.protocol"),
                    ErrorKind::UnknownProtocol(e.protocol.clone()),
                )
            }
        };
        range(&format!("{path}.port"), e.port, (1, u16::MAX))?;
        range(
            &format!("{path}.backend_port"),
            e.backend_port,
            (1, u16::MAX),
        )?;
        if let Some(j) = endpoints
            .iter()
            .position(|o| o.protocol == protocol && o.port == e.port)
        {
            return err(
                format!("{path}.port"),
                ErrorKind::Duplicate {
                    value: e.port.to_string(),
                    other: format!("konvey.endpoints[{j}].port ({protocol})"),
                },
            );
        }
        if e.backend_ips.len() > MAX_BACKENDS {
            return err(
                format!("{path}.backend_ips"),
                ErrorKind::TooMany {
                    count: e.backend_ips.len(),
                    max: MAX_BACKENDS,
                },
            );
        }
        let mut backends: Vec<Ipv4Addr> = Vec::with_capacity(e.backend_ips.len());
        for (j, text) in e.backend_ips.iter().enumerate() {
            let ip_path = format!("{path}.backend_ips[{j}]");
            let ip = addr(&ip_path, text)?;
            if ip == vip {
                return err(
                    ip_path,
                    ErrorKind::Duplicate {
                        value: text.clone(),
                        other: "konvey.vip".to_owned(),
                    },
                );
            }
            if let Some(first) = backends.iter().position(|b| *b == ip) {
                return err(
                    ip_path,
                    ErrorKind::Duplicate {
                        value: text.clone(),
                        other: format!("{path}.backend_ips[{first}]"),
                    },
                );
            }
            backends.push(ip);
        }
        let udp_probe = (protocol == Protocol::Udp).then(|| node.konvey.udp_probe.clone());
        endpoints.push(ValidEndpoint {
            name: e.name.clone(),
            protocol,
            port: e.port,
            backend_port: e.backend_port,
            backends,
            udp_probe,
        });
    }
    // Per-endpoint probes, now that the endpoints are known.
    // (`validate_node_konvey` already checked their syntax.)
    for (name, probe) in &node.konvey.endpoint_probes {
        let path = format!("node.konvey.health.endpoints.{name}");
        let Some(endpoint) = endpoints.iter_mut().find(|e| &e.name == name) else {
            return err(path, ErrorKind::UnknownEndpoint(name.clone()));
        };
        if endpoint.protocol != Protocol::Udp {
            return err(
                format!("{path}.udp_probe"),
                ErrorKind::UnsupportedProtocol {
                    value: endpoint.protocol.to_string(),
                    expected: "udp_probe is for udp endpoints",
                },
            );
        }
        endpoint.udp_probe = Some(probe.clone());
    }
    Ok(ValidKonvey { vip, endpoints })
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_str, ConfigError, ValidConfig};
    use crate::konvey::probe::UdpProbe;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    const NODE: &str = "node:\n  zone: a\n  interfaces: {konvey: [eth0]}\n";
    const KONVEY: &str = "konvey:\n  vip: 10.0.0.100\n  endpoints:\n    - {name: web, protocol: tcp, port: 80, backend_port: 8080, backend_ips: [10.0.0.11, 10.0.0.12]}\n    - {name: dns, protocol: UDP, port: 53, backend_port: 53, backend_ips: [10.0.0.11]}\n";

    fn ok(yaml: &str) -> ValidConfig {
        parse_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn invalid(yaml: &str) -> String {
        match parse_str(yaml) {
            Err(e @ ConfigError::Invalid(_)) => e.to_string(),
            Err(e) => panic!("not a validation error: {e}"),
            Ok(_) => panic!("accepted:\n{yaml}"),
        }
    }

    #[test]
    fn accepts_the_lab_example() {
        let v = ok(include_str!("../../examples/konvey-lab.yaml"));
        let k = v.konvey.expect("konvey");
        assert_eq!(k.endpoints.len(), 2);
        assert_eq!(
            k.endpoints[1].udp_probe,
            Some(UdpProbe {
                send: b"health".to_vec(),
                expect: Some(b"name=".to_vec())
            })
        );
        assert_eq!(v.node.konvey.health.interval, Duration::from_millis(200));
    }

    #[test]
    fn a_konvey_only_node_with_defaults() {
        let v = ok(&format!("{NODE}{KONVEY}"));
        assert!(v.kawaii.is_none());
        let k = v.konvey.expect("konvey");
        assert_eq!(k.vip, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(k.endpoints.len(), 2);
        assert_eq!(k.endpoints[0].backends[1], Ipv4Addr::new(10, 0, 0, 12));
        assert_eq!(k.endpoints[0].udp_probe, None);
        assert_eq!(k.endpoints[1].udp_probe, Some(UdpProbe::default()));
        let n = &v.node.konvey;
        assert_eq!(n.source_ip, None);
        assert_eq!(n.nat_ports, (1024, 32767));
        assert_eq!(n.health.interval, Duration::from_millis(1000));
        assert_eq!(n.health.timeout, Duration::from_millis(500));
        assert_eq!((n.health.rise, n.health.fall), (2, 2));
        assert_eq!(v.node.interfaces.konvey, ["eth0"]);
        assert_eq!(v.node.interfaces.public, None);
    }

    #[test]
    fn node_keys_and_per_endpoint_probes() {
        let yaml = format!(
            "node:\n  zone: a\n  interfaces: {{konvey: [eth0]}}\n  konvey:\n    source_ip: 10.0.0.5\n    nat_port_range: \"2000-3000\"\n    health:\n      interval_ms: 200\n      timeout_ms: 100\n      rise: 3\n      fall: 1\n      udp_probe: {{send: hello}}\n      endpoints:\n        dns: {{udp_probe: {{send: ping, expect: pong}}}}\n{KONVEY}"
        );
        let v = ok(&yaml);
        let n = &v.node.konvey;
        assert_eq!(n.source_ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(n.nat_ports, (2000, 3000));
        assert_eq!(n.health.interval, Duration::from_millis(200));
        assert_eq!((n.health.rise, n.health.fall), (3, 1));
        let k = v.konvey.expect("konvey");
        assert_eq!(
            k.endpoints[1].udp_probe,
            Some(UdpProbe {
                send: b"ping".to_vec(),
                expect: Some(b"pong".to_vec())
            })
        );
    }

    #[test]
    fn both_services_on_one_node() {
        let yaml = format!(
            "node:\n  zone: a\n  interfaces: {{public: pub0, private: priv0, konvey: [lb0]}}\nkawaii:\n  public_ips: [203.0.113.10]\n  private_subnet: 10.0.0.0/25\n{KONVEY}"
        );
        let v = ok(&yaml);
        assert!(v.kawaii.is_some() && v.konvey.is_some());
    }

    #[test]
    fn section_and_interface_errors() {
        assert_eq!(
            invalid("node: {zone: a, interfaces: {public: a, private: b}}\n"),
            "kawaii: missing: a node runs kawaii, konvey or both, and this file has neither section"
        );
        assert_eq!(
            invalid(&format!("node: {{zone: a, interfaces: {{}}}}\n{KONVEY}")),
            "node.interfaces.konvey: missing: a konvey section needs at least one interface"
        );
        assert_eq!(
            invalid("node: {zone: a, interfaces: {private: b}}\nkawaii: {public_ips: [203.0.113.10], private_subnet: 10.0.0.0/25}\n"),
            "node.interfaces.public: missing: a kawaii section needs it"
        );
        assert_eq!(
            invalid(&format!(
                "node: {{zone: a, interfaces: {{public: a, private: b, konvey: [b]}}}}\nkawaii: {{public_ips: [203.0.113.10], private_subnet: 10.0.0.0/25}}\n{KONVEY}"
            )),
            r#"node.interfaces.konvey[0]: "b" already carries the Kawaii program (node.interfaces.private); an interface runs one program"#
        );
        assert_eq!(
            invalid(&format!(
                "node: {{zone: a, interfaces: {{konvey: [x, x]}}}}\n{KONVEY}"
            )),
            r#"node.interfaces.konvey[1]: "x" is already used by node.interfaces.konvey[0]"#
        );
        assert_eq!(
            invalid(&format!(
                "node: {{zone: a, interfaces: {{konvey: [\"a b\"]}}}}\n{KONVEY}"
            )),
            r#"node.interfaces.konvey[0]: "a b" is not an interface name (1-15 characters, no '/', ':' or whitespace)"#
        );
    }

    fn endpoint_error(endpoint: &str) -> String {
        invalid(&format!(
            "{NODE}konvey:\n  vip: 10.0.0.100\n  endpoints:\n    - {{name: web, protocol: tcp, port: 80, backend_port: 80, backend_ips: [10.0.0.11]}}\n    - {endpoint}\n"
        ))
    }

    #[test]
    fn konvey_section_errors() {
        assert_eq!(
            invalid(&format!("{NODE}konvey: {{vip: 10.0.0.x}}\n")),
            r#"konvey.vip: "10.0.0.x" is not an IPv4 address"#
        );
        assert_eq!(
            invalid(&format!("{NODE}konvey: {{vip: 0.0.0.0}}\n")),
            r#"konvey.vip: "0.0.0.0" is the unspecified address"#
        );
        for (endpoint, want) in [
            (
                "{name: web, protocol: udp, port: 81, backend_port: 80}",
                r#"konvey.endpoints[1].name: "web" is already used by konvey.endpoints[0].name"#,
            ),
            (
                "{name: \"a b\", protocol: udp, port: 81, backend_port: 80}",
                r#"konvey.endpoints[1].name: "a b" is not a valid name (only A-Z a-z 0-9 _ . - are allowed)"#,
            ),
            (
                "{name: x, protocol: sctp, port: 81, backend_port: 80}",
                r#"konvey.endpoints[1].protocol: "sctp" is not a protocol (tcp, udp or icmp)"#,
            ),
            (
                "{name: x, protocol: icmp, port: 81, backend_port: 80}",
                r#"konvey.endpoints[1].protocol: "icmp" is not supported here (endpoints take tcp or udp)"#,
            ),
            (
                "{name: x, protocol: tcp, port: 0, backend_port: 80}",
                "konvey.endpoints[1].port: 0 is out of range (1-65535)",
            ),
            (
                "{name: x, protocol: tcp, port: 81, backend_port: 0}",
                "konvey.endpoints[1].backend_port: 0 is out of range (1-65535)",
            ),
            (
                "{name: x, protocol: TCP, port: 80, backend_port: 80}",
                r#"konvey.endpoints[1].port: "80" is already used by konvey.endpoints[0].port (tcp)"#,
            ),
            (
                "{name: x, protocol: tcp, port: 81, backend_port: 80, backend_ips: [10.0.0.11, 10.0.0.300]}",
                r#"konvey.endpoints[1].backend_ips[1]: "10.0.0.300" is not an IPv4 address"#,
            ),
            (
                "{name: x, protocol: tcp, port: 81, backend_port: 80, backend_ips: [10.0.0.11, 10.0.0.11]}",
                r#"konvey.endpoints[1].backend_ips[1]: "10.0.0.11" is already used by konvey.endpoints[1].backend_ips[0]"#,
            ),
            (
                "{name: x, protocol: tcp, port: 81, backend_port: 80, backend_ips: [10.0.0.100]}",
                r#"konvey.endpoints[1].backend_ips[0]: "10.0.0.100" is already used by konvey.vip"#,
            ),
        ] {
            assert_eq!(endpoint_error(endpoint), want);
        }
        // The same port with the other protocol is another service.
        ok(&format!(
            "{NODE}konvey:\n  vip: 10.0.0.100\n  endpoints:\n    - {{name: a, protocol: tcp, port: 53, backend_port: 53}}\n    - {{name: b, protocol: udp, port: 53, backend_port: 53}}\n"
        ));
    }

    fn node_error(konvey_node: &str) -> String {
        invalid(&format!(
            "node:\n  zone: a\n  interfaces: {{konvey: [eth0]}}\n  konvey: {konvey_node}\n{KONVEY}"
        ))
    }

    #[test]
    fn node_konvey_errors() {
        for (node, want) in [
            (
                "{source_ip: nope}",
                r#"node.konvey.source_ip: "nope" is not an IPv4 address"#,
            ),
            (
                "{nat_port_range: \"3000-2000\"}",
                r#"node.konvey.nat_port_range: "3000-2000" is not a port range min-max (range "3000-2000" is reversed)"#,
            ),
            (
                "{health: {interval_ms: 5}}",
                "node.konvey.health.interval_ms: 5 is out of range (10-3600000)",
            ),
            (
                "{health: {interval_ms: 100, timeout_ms: 200}}",
                "node.konvey.health.timeout_ms: 200 is out of range (1-100)",
            ),
            (
                "{health: {rise: 0}}",
                "node.konvey.health.rise: 0 is out of range (1-100)",
            ),
            (
                "{health: {fall: 101}}",
                "node.konvey.health.fall: 101 is out of range (1-100)",
            ),
            (
                "{health: {udp_probe: {send: x, expect: \"\"}}}",
                "node.konvey.health.udp_probe.expect: empty",
            ),
            (
                "{health: {endpoints: {nope: {udp_probe: {send: x}}}}}",
                r#"node.konvey.health.endpoints.nope: "nope" is not the name of a konvey endpoint"#,
            ),
            (
                "{health: {endpoints: {web: {udp_probe: {send: x}}}}}",
                r#"node.konvey.health.endpoints.web.udp_probe: "tcp" is not supported here (udp_probe is for udp endpoints)"#,
            ),
        ] {
            assert_eq!(node_error(node), want, "{node}");
        }
        let err = parse_str(&format!(
            "node:\n  zone: a\n  interfaces: {{konvey: [eth0]}}\n  konvey: {{health: {{intervall_ms: 5}}}}\n{KONVEY}"
        ))
        .expect_err("typo");
        assert!(
            err.to_string().contains("unknown field `intervall_ms`"),
            "{err}"
        );
    }
}
