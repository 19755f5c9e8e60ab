//! Serde types of the daemon's configuration file, as written by the operator.
//!
//! Field names follow Kowabunga's API (design section 6) for the `kawaii`
//! section; the `node` section holds the daemon's own keys. Every struct
//! rejects unknown fields, so a typo is an error rather than a silently
//! ignored setting.
//!
//! These types are deliberately *syntactic*: addresses, subnets, port lists,
//! protocols and algorithm names are kept as the text the operator wrote, so
//! that [`validate`](super::validate) can report the exact field path and
//! value when one of them is wrong. Only [`validate`](super::validate) turns
//! them into typed values.
//!
//! ```
//! use kowabunga_control::config::model::Config;
//!
//! let yaml = r#"
//! node:
//!   zone: eu-west-a
//!   interfaces: {public: eth0, private: eth1}
//! kawaii:
//!   public_ips: [203.0.113.10]
//!   private_subnet: 10.0.0.0/25
//! "#;
//! let config: Config = serde_norway::from_str(yaml).unwrap();
//! assert_eq!(config.node.bpffs.to_str(), Some("/sys/fs/bpf/kowabunga"));
//! assert_eq!(config.node.nat_port_range.as_str(), "1024-65535");
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// The `kawaii` section's types are defined once, in the `kowabunga`
/// library, and shared with the services that embed it.
pub use kowabunga::model::kawaii::{
    DnatRule, EgressRule, Firewall, IngressRule, IpsecConnection, Kawaii, PeeringRule, Policy,
    PortSpec, Secret, VpcPeering, ANY_SUBNET,
};

/// Default bpffs directory where maps and links are pinned.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/kowabunga";

/// Default SNAT source port range.
pub const DEFAULT_NAT_PORT_RANGE: &str = "1024-65535";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Node-level settings: identity, interfaces, paths, sizes.
    pub node: Node,
    /// The Kawaii gateway of the project.
    pub kawaii: Kawaii,
}

/// Node-level settings, owned by the daemon rather than by Kowabunga's API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// The zone this node lives in (chooses the SNAT address, see
    /// [`Kawaii::zone_public_ips`]).
    pub zone: String,
    /// Interfaces the XDP programs are attached to.
    pub interfaces: Interfaces,
    /// bpffs directory for pinned maps and links (default
    /// `/sys/fs/bpf/kowabunga`).
    #[serde(default = "default_bpffs")]
    pub bpffs: PathBuf,
    /// SNAT source port range `"min-max"` (default `"1024-65535"`).
    #[serde(default = "default_nat_port_range")]
    pub nat_port_range: PortSpec,
    /// Conntrack table size in entries (two per flow); default: the
    /// dataplane's (`KW_CT_DEFAULT_ENTRIES`, 262144).
    #[serde(default)]
    pub conntrack_entries: Option<u32>,
}

/// The interfaces of a Kawaii node, by role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    /// Internet side, where the public VIPs live.
    pub public: String,
    /// Project subnet side.
    pub private: String,
    /// VPC peering links (optional).
    #[serde(default)]
    pub peerings: Vec<String>,
}

fn default_bpffs() -> PathBuf {
    PathBuf::from(DEFAULT_BPFFS)
}

fn default_nat_port_range() -> PortSpec {
    PortSpec(DEFAULT_NAT_PORT_RANGE.to_owned())
}
