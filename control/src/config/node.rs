//! The `node` section: the daemon's own keys (zone, interfaces, bpffs,
//! sizes), validated, with each role's node settings (`node.konvey`,
//! `node.vrrp`) validated by the role.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use kowabunga_bindings::KW_MAX_PEERINGS;

use super::error::{err, ErrorKind, ValidationError};
use super::fields::{check_count, check_ifname, check_name, parse_range};
use super::model::{Config, DEFAULT_BPFFS};
use crate::konvey::config::ValidNodeKonvey;

/// Largest accepted `node.conntrack_entries` (64 Mi entries).
pub const MAX_CONNTRACK_ENTRIES: u32 = 1 << 26;

/// The interfaces of the node, validated (names distinct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidInterfaces {
    /// Kawaii: Internet side (always set when there is a Kawaii section).
    pub public: Option<String>,
    /// Kawaii: project side (always set when there is a Kawaii section).
    pub private: Option<String>,
    /// Kawaii: VPC peering links.
    pub peerings: Vec<String>,
    /// Konvey: interfaces of the load balancer program (none of the above).
    pub konvey: Vec<String>,
}

/// The validated node section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidNode {
    /// Zone of the node.
    pub zone: String,
    /// Interfaces.
    pub interfaces: ValidInterfaces,
    /// bpffs pin directory.
    pub bpffs: PathBuf,
    /// The named network namespace the daemon enters (`None`: the one it
    /// was started in).
    pub netns: Option<String>,
    /// SNAT source ports, inclusive, `1 <= min <= max`.
    pub nat_ports: (u16, u16),
    /// Conntrack size, `None` for the dataplane default.
    pub conntrack_entries: Option<u32>,
    /// Konvey settings of the node (defaults when absent).
    pub konvey: ValidNodeKonvey,
    /// VRRP instances, with the zone rule applied to their priorities.
    pub vrrp: Vec<crate::vrrp::config::Instance>,
    /// How to reach charon.
    pub ipsec: crate::ipsec::node::NodeIpsec,
    /// The operator socket (`node.api.socket`).
    pub api_socket: PathBuf,
    /// The Prometheus listener (`node.metrics.listen`), off when `None`.
    pub metrics_listen: Option<SocketAddr>,
}

/// `node.api`: where `kowabunga` reaches the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeApi {
    /// The Unix socket (default `/run/kowabunga/kowabungad.sock`), mode
    /// 0600.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

/// `node.metrics`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMetrics {
    /// `address:port` serving `GET /metrics` (e.g. `127.0.0.1:9465`);
    /// no listener when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Validates the `node` section (and which sections the file has).
///
/// # Errors
/// The first problem found, with its field path.
pub fn validate_node(config: &Config) -> Result<ValidNode, ValidationError> {
    let node = &config.node;
    check_name("node.zone", &node.zone)?;

    if config.kawaii.is_none() && config.konvey.is_none() && config.kiwi.is_none() {
        return err("kawaii", ErrorKind::NoService);
    }

    let ifaces = &node.interfaces;
    let mut seen: HashMap<&str, String> = HashMap::new();
    let mut named: Vec<(String, &String)> = Vec::new();
    for (field, name) in [("public", &ifaces.public), ("private", &ifaces.private)] {
        let path = format!("node.interfaces.{field}");
        match name {
            Some(name) => named.push((path, name)),
            None if config.kawaii.is_some() => {
                return err(path, ErrorKind::Required("a kawaii section needs it"))
            }
            None => {}
        }
    }
    for (i, name) in ifaces.peerings.iter().enumerate() {
        named.push((format!("node.interfaces.peerings[{i}]"), name));
    }
    for (path, name) in named {
        check_ifname(&path, name)?;
        if let Some(other) = seen.get(name.as_str()) {
            return err(
                path,
                ErrorKind::Duplicate {
                    value: name.clone(),
                    other: other.clone(),
                },
            );
        }
        seen.insert(name, path);
    }
    check_count(
        "node.interfaces.peerings",
        ifaces.peerings.len(),
        KW_MAX_PEERINGS,
    )?;
    if config.konvey.is_some() && ifaces.konvey.is_empty() {
        return err(
            "node.interfaces.konvey",
            ErrorKind::Required("a konvey section needs at least one interface"),
        );
    }
    let mut konvey_seen: HashMap<&str, String> = HashMap::new();
    for (i, name) in ifaces.konvey.iter().enumerate() {
        let path = format!("node.interfaces.konvey[{i}]");
        check_ifname(&path, name)?;
        if let Some(other) = seen.get(name.as_str()) {
            return err(
                path,
                ErrorKind::BothPrograms {
                    value: name.clone(),
                    other: other.clone(),
                },
            );
        }
        if let Some(other) = konvey_seen.get(name.as_str()) {
            return err(
                path,
                ErrorKind::Duplicate {
                    value: name.clone(),
                    other: other.clone(),
                },
            );
        }
        konvey_seen.insert(name, path);
    }

    if let Some(netns) = &node.netns {
        check_netns_name("node.netns", netns)?;
    }
    let bpffs = default_pin_dir(node.bpffs.as_deref(), node.netns.as_deref());
    if !bpffs.is_absolute() {
        return err(
            "node.bpffs",
            ErrorKind::NotAbsolute(bpffs.display().to_string()),
        );
    }

    let nat_ports = parse_range("node.nat_port_range", &node.nat_port_range)?;
    let api_socket = node
        .api
        .socket
        .clone()
        .unwrap_or_else(|| crate::api::default_socket(node.netns.as_deref()));
    if !api_socket.is_absolute() {
        return err(
            "node.api.socket",
            ErrorKind::NotAbsolute(api_socket.display().to_string()),
        );
    }

    if let Some(entries) = node.conntrack_entries {
        if entries == 0 || entries > MAX_CONNTRACK_ENTRIES {
            return err(
                "node.conntrack_entries",
                ErrorKind::OutOfRange {
                    value: entries.into(),
                    min: 1,
                    max: MAX_CONNTRACK_ENTRIES.into(),
                },
            );
        }
    }

    Ok(ValidNode {
        zone: node.zone.clone(),
        interfaces: ValidInterfaces {
            public: ifaces.public.clone(),
            private: ifaces.private.clone(),
            peerings: ifaces.peerings.clone(),
            konvey: ifaces.konvey.clone(),
        },
        bpffs,
        netns: node.netns.clone(),
        nat_ports,
        conntrack_entries: node.conntrack_entries,
        konvey: crate::konvey::config::validate_node_konvey(&node.konvey)?,
        vrrp: node
            .vrrp
            .resolve(Some(&node.zone))
            .map_err(|e| ValidationError {
                path: e.field().to_owned(),
                kind: ErrorKind::Vrrp(e.message()),
            })?,
        ipsec: crate::ipsec::node::validate_node_ipsec(&node.ipsec)?,
        api_socket,
        metrics_listen: node.metrics.listen,
    })
}

/// `node.bpffs` as written, else the default: `/sys/fs/bpf/kowabunga`, or
/// `/sys/fs/bpf/kowabunga-<netns>` for a daemon working in a named
/// namespace (so daemons of several namespaces never share maps).
///
/// ```
/// use std::path::Path;
/// use kowabunga_control::config::node::default_pin_dir;
/// assert_eq!(default_pin_dir(None, None), Path::new("/sys/fs/bpf/kowabunga"));
/// assert_eq!(default_pin_dir(None, Some("gw1")), Path::new("/sys/fs/bpf/kowabunga-gw1"));
/// assert_eq!(default_pin_dir(Some(Path::new("/sys/fs/bpf/x")), Some("gw1")), Path::new("/sys/fs/bpf/x"));
/// ```
pub fn default_pin_dir(bpffs: Option<&Path>, netns: Option<&str>) -> PathBuf {
    match (bpffs, netns) {
        (Some(dir), _) => dir.to_owned(),
        (None, Some(ns)) => PathBuf::from(format!("{DEFAULT_BPFFS}-{ns}")),
        (None, None) => PathBuf::from(DEFAULT_BPFFS),
    }
}

/// A name `ip netns` accepts as a file under `/run/netns`: 1-64 characters
/// of `[A-Za-z0-9_.-]`, not `.` or `..`.
fn check_netns_name(path: &str, name: &str) -> Result<(), ValidationError> {
    check_name(path, name)?;
    if name.len() > 64 || name == "." || name == ".." {
        return err(path, ErrorKind::BadName(name.to_owned()));
    }
    Ok(())
}
