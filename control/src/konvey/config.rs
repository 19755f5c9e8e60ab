//! Validation of the `konvey` section and of `node.konvey`.
//!
//! Part of [`validate`](crate::config::validate): the same one-line
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

use crate::config::error::{err, ErrorKind, ValidationError};
use crate::config::fields::{check_range, check_unique, parse_addr, parse_range, Protocol};
use crate::config::model::{Konvey, NodeKonvey, UdpProbeSpec};
use crate::config::node::ValidNode;
use crate::konvey::health::HealthConfig;
use crate::konvey::probe::UdpProbe;

/// Most endpoints of one Konvey (the dataplane's `KV_MAX_SERVICES`).
pub const MAX_ENDPOINTS: usize = kowabunga_dataplane::konvey::MAX_SERVICES;

/// Most full-NAT source addresses (the dataplane's `KV_MAX_SOURCE_IPS`).
pub const MAX_SOURCES: usize = kowabunga_dataplane::konvey::MAX_SOURCES;

/// Most backends of one endpoint (the dataplane's `KV_MAX_BACKENDS`).
pub const MAX_BACKENDS: usize = kowabunga_dataplane::konvey::MAX_BACKENDS;

/// Accepted `node.konvey.health.interval_ms`.
pub const INTERVAL_MS: (u64, u64) = (10, 3_600_000);

/// Accepted `rise` and `fall`.
pub const THRESHOLD: (u32, u32) = (1, 100);

/// The validated `node.konvey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidNodeKonvey {
    /// Full-NAT source addresses (`source_ip` or `source_ips`, in order,
    /// at most [`MAX_SOURCES`]); empty: the first IPv4 address of the first
    /// Konvey interface, found at startup.
    pub source_ips: Vec<Ipv4Addr>,
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

fn addr(path: &str, text: &str) -> Result<Ipv4Addr, ValidationError> {
    let a = parse_addr(path, text)?;
    if a.is_unspecified() {
        return err(path, ErrorKind::Unspecified(text.to_owned()));
    }
    Ok(a)
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
    let source_ips = match (&k.source_ip, &k.source_ips) {
        (Some(_), Some(_)) => {
            return err(
                "node.konvey.source_ips",
                ErrorKind::Exclusive("node.konvey.source_ip"),
            )
        }
        (Some(text), None) => vec![addr("node.konvey.source_ip", text)?],
        (None, Some(list)) => {
            if list.is_empty() {
                return err("node.konvey.source_ips", ErrorKind::EmptyList);
            }
            if list.len() > MAX_SOURCES {
                return err(
                    "node.konvey.source_ips",
                    ErrorKind::TooMany {
                        count: list.len(),
                        max: MAX_SOURCES,
                    },
                );
            }
            let mut ips: Vec<Ipv4Addr> = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let path = format!("node.konvey.source_ips[{i}]");
                let ip = addr(&path, text)?;
                if let Some(first) = ips.iter().position(|a| *a == ip) {
                    return err(
                        path,
                        ErrorKind::Duplicate {
                            value: text.clone(),
                            other: format!("node.konvey.source_ips[{first}]"),
                        },
                    );
                }
                ips.push(ip);
            }
            ips
        }
        (None, None) => Vec::new(),
    };
    let nat_ports = parse_range("node.konvey.nat_port_range", &k.nat_port_range)?;
    let h = &k.health;
    check_range("node.konvey.health.interval_ms", h.interval_ms, INTERVAL_MS)?;
    check_range(
        "node.konvey.health.timeout_ms",
        h.timeout_ms,
        (1, h.interval_ms),
    )?;
    check_range("node.konvey.health.rise", h.rise, THRESHOLD)?;
    check_range("node.konvey.health.fall", h.fall, THRESHOLD)?;
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
        source_ips,
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
        check_unique(
            &name_path,
            &e.name,
            endpoints.iter().map(|o: &ValidEndpoint| o.name.as_str()),
            |j| format!("konvey.endpoints[{j}].name"),
        )?;
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
        check_range(&format!("{path}.port"), e.port, (1, u16::MAX))?;
        check_range(
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
mod tests;
