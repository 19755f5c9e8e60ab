//! Serde types of the daemon's configuration file, as written by the operator.
//!
//! Field names follow Kowabunga's API (design section 6) for the `kawaii`
//! and `konvey` sections (a node runs either or both); the `node` section holds the daemon's own keys. Every struct
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
//! assert_eq!(config.node.bpffs, None); // default: /sys/fs/bpf/kowabunga
//! assert_eq!(config.node.netns, None);
//! assert_eq!(config.node.nat_port_range.as_str(), "1024-65535");
//! assert!(config.konvey.is_none());
//! assert_eq!(config.node.konvey.health.interval_ms, 1000);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The `kawaii` section's types are defined once, in the `kowabunga`
/// library, and shared with the services that embed it.
pub use kowabunga::model::kawaii::{
    DnatRule, DurationSpec, EgressRule, Firewall, IngressRule, IpsecConnection, Kawaii,
    PeeringRule, Policy, PortSpec, Secret, VpcPeering, ANY_SUBNET,
};

/// The `konvey` section's types come from the `kowabunga` library too.
pub use kowabunga::model::konvey::{Konvey, KonveyEndpoint};

/// The `kiwi` section (the region's DNS server), rendered by the library
/// from its inventory ([`kowabunga::model::kiwi`]).
pub use kowabunga::model::kiwi::{Kiwi, KiwiRecord, KiwiZone};

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
    /// The Kawaii gateway of the project (optional: at least one of
    /// `kawaii` and `konvey` is required).
    #[serde(default)]
    pub kawaii: Option<Kawaii>,
    /// The Konvey load balancer of the project (optional).
    #[serde(default)]
    pub konvey: Option<Konvey>,
    /// The region's DNS server (optional, see [`crate::kiwi`]).
    #[serde(default)]
    pub kiwi: Option<Kiwi>,
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
    /// `/sys/fs/bpf/kowabunga`, or `/sys/fs/bpf/kowabunga-<netns>` with
    /// `netns`).
    #[serde(default)]
    pub bpffs: Option<PathBuf>,
    /// The named network namespace (`ip netns add NAME`) the daemon works in:
    /// it enters it for its network work and keeps the host's mount
    /// namespace, so its pins outlive it (default: the namespace it was
    /// started in).
    #[serde(default)]
    pub netns: Option<String>,
    /// SNAT source port range `"min-max"` (default `"1024-65535"`).
    #[serde(default = "default_nat_port_range")]
    pub nat_port_range: PortSpec,
    /// Size in entries (two per flow) of each conntrack table, confirmed
    /// and embryonic; default: the dataplane's (`KW_CT_DEFAULT_ENTRIES`,
    /// 262144).
    #[serde(default)]
    pub conntrack_entries: Option<u32>,
    /// Konvey settings of this node (all optional).
    #[serde(default)]
    pub konvey: NodeKonvey,
    /// VIP failover: the VRRPv3 instances this node runs (optional, see
    /// [`crate::vrrp::config`]).
    #[serde(default)]
    pub vrrp: crate::vrrp::config::VrrpConfig,
    /// The IKE daemon Kawaii's IPsec connections are driven through
    /// (optional, see [`crate::ipsec::node`]).
    #[serde(default)]
    pub ipsec: crate::ipsec::node::NodeIpsec,
    /// The operator socket (optional, see [`super::node::NodeApi`]).
    #[serde(default)]
    pub api: super::node::NodeApi,
    /// The Prometheus endpoint (optional, see [`super::node::NodeMetrics`]).
    #[serde(default)]
    pub metrics: super::node::NodeMetrics,
}

/// The interfaces of the node, by role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    /// Kawaii: Internet side, where the public VIPs live (required with a
    /// `kawaii` section).
    #[serde(default)]
    pub public: Option<String>,
    /// Kawaii: project subnet side (required with a `kawaii` section).
    #[serde(default)]
    pub private: Option<String>,
    /// Kawaii: VPC peering links (optional).
    #[serde(default)]
    pub peerings: Vec<String>,
    /// Konvey: where the load balancer program is attached (required with a
    /// `konvey` section; none of them may carry the Kawaii program).
    #[serde(default)]
    pub konvey: Vec<String>,
}

/// Default Konvey full-NAT source port range: below Linux's default
/// `net.ipv4.ip_local_port_range` (32768-60999), which the node's own
/// connections (health checks) use.
pub const DEFAULT_KONVEY_NAT_PORT_RANGE: &str = "1024-32767";

/// `node.konvey`: the daemon's own Konvey settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeKonvey {
    /// Source address of the flows sent to backends (full NAT); default: the
    /// first IPv4 address of the first `node.interfaces.konvey` interface.
    #[serde(default)]
    pub source_ip: Option<String>,
    /// Several full-NAT source addresses (1 to 8; instead of `source_ip`):
    /// each brings a whole port range per backend.
    #[serde(default)]
    pub source_ips: Option<Vec<String>>,
    /// Source ports of the flows sent to backends, `"min-max"` (default
    /// `"1024-32767"`); must not overlap `net.ipv4.ip_local_port_range`.
    #[serde(default = "default_konvey_nat_port_range")]
    pub nat_port_range: PortSpec,
    /// Health-check timing, thresholds and probes.
    #[serde(default)]
    pub health: HealthSpec,
}

impl Default for NodeKonvey {
    fn default() -> Self {
        NodeKonvey {
            source_ip: None,
            source_ips: None,
            nat_port_range: default_konvey_nat_port_range(),
            health: HealthSpec::default(),
        }
    }
}

/// `node.konvey.health`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Time between two probes of a backend, ms (default 1000).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// A probe without an answer after this long failed, ms (default 500,
    /// at most `interval_ms`).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Successful probes in a row that bring a backend back (default 2).
    #[serde(default = "default_threshold")]
    pub rise: u32,
    /// Failed probes in a row that take a backend out (default 2).
    #[serde(default = "default_threshold")]
    pub fall: u32,
    /// Probe of every UDP endpoint without its own (default: an empty
    /// datagram, no reply expected, down on ICMP port unreachable).
    #[serde(default)]
    pub udp_probe: Option<UdpProbeSpec>,
    /// Per-endpoint settings, by `konvey.endpoints[].name`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointHealth>,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            rise: default_threshold(),
            fall: default_threshold(),
            udp_probe: None,
            endpoints: BTreeMap::new(),
        }
    }
}

/// `node.konvey.health.endpoints.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointHealth {
    /// The probe of this UDP endpoint.
    pub udp_probe: UdpProbeSpec,
}

/// A UDP probe: payload to send, optional expected reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpProbeSpec {
    /// Payload sent to `backend_ip:backend_port` (default empty).
    #[serde(default)]
    pub send: String,
    /// If set, the reply must contain this text; if not, silence is healthy
    /// and only an ICMP port unreachable is a failure.
    #[serde(default)]
    pub expect: Option<String>,
}

fn default_konvey_nat_port_range() -> PortSpec {
    PortSpec(DEFAULT_KONVEY_NAT_PORT_RANGE.to_owned())
}

fn default_interval_ms() -> u64 {
    1000
}

fn default_timeout_ms() -> u64 {
    500
}

fn default_threshold() -> u32 {
    2
}

fn default_nat_port_range() -> PortSpec {
    PortSpec(DEFAULT_NAT_PORT_RANGE.to_owned())
}
