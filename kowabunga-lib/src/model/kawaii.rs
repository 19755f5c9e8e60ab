//! The `kawaii` section: Kowabunga's Internet gateway spec (design section 6).
//!
//! These are the one definition of the gateway spec, shared by the node
//! daemon's configuration file (`kowabunga-control` re-exports them) and by
//! services that embed this library. Every struct rejects unknown fields, so a
//! typo is an error rather than a silently ignored setting.
//!
//! The types are deliberately *syntactic*: addresses, subnets, port lists,
//! protocols and algorithm names are kept as the text the operator wrote, so
//! that a validator (the daemon's `config::validate`) can report the exact
//! field path and value when one of them is wrong.
//!
//! ```
//! use kowabunga::model::kawaii::{Kawaii, Policy};
//!
//! let yaml = r#"
//! public_ips: [203.0.113.10]
//! private_subnet: 10.0.0.0/25
//! firewall:
//!   ingress: [{protocol: tcp, ports: 22}]
//! dnat: [{destination: 10.0.0.10, protocol: tcp, ports: "80,443"}]
//! "#;
//! let kawaii: Kawaii = serde_norway::from_str(yaml).unwrap();
//! assert_eq!(kawaii.firewall.egress_policy, Policy::Accept);
//! assert_eq!(kawaii.firewall.ingress[0].source, "0.0.0.0/0");
//! assert_eq!(kawaii.firewall.ingress[0].ports.as_ref().unwrap().as_str(), "22");
//! assert_eq!(kawaii.dnat[0].ports.as_str(), "80,443");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default subnet of firewall rules that leave out `source` / `destination`.
pub const ANY_SUBNET: &str = "0.0.0.0/0";

/// The Kawaii section, with Kowabunga's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kawaii {
    /// All public VIPs of the gateway (one per zone upstream).
    pub public_ips: Vec<String>,
    /// Optional zone -> VIP map. The SNAT address of this node is
    /// `zone_public_ips[node.zone]` when that entry exists, else the first
    /// of `public_ips`. Every address listed here must also be in
    /// `public_ips`.
    #[serde(default)]
    pub zone_public_ips: BTreeMap<String, String>,
    /// The project subnet behind the gateway.
    pub private_subnet: String,
    /// Stateful firewall.
    #[serde(default)]
    pub firewall: Firewall,
    /// Destination NAT rules on the public VIPs.
    #[serde(default)]
    pub dnat: Vec<DnatRule>,
    /// VPC peerings: subnets routed without NAT.
    #[serde(default)]
    pub vpc_peerings: Vec<VpcPeering>,
    /// IPsec site-to-site connections.
    #[serde(default)]
    pub ipsec_connections: Vec<IpsecConnection>,
}

/// Firewall of the gateway: deny-by-default ingress, policy-driven egress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// New inbound flows to the gateway itself that are accepted.
    #[serde(default)]
    pub ingress: Vec<IngressRule>,
    /// Default verdict of new outbound flows (`accept` by default).
    #[serde(default)]
    pub egress_policy: Policy,
    /// Exceptions to `egress_policy`.
    #[serde(default)]
    pub egress: Vec<EgressRule>,
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall {
            ingress: Vec::new(),
            egress_policy: Policy::Accept,
            egress: Vec::new(),
        }
    }
}

/// A default verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Let the flow through.
    #[default]
    Accept,
    /// Drop the flow.
    Drop,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        })
    }
}

/// `firewall.ingress[]`: accept new flows from `source` to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRule {
    /// Source subnet or address (default `0.0.0.0/0`).
    #[serde(default = "any_subnet")]
    pub source: String,
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// Destination port list (tcp and udp only), e.g. `"22,80,8000-8010"`.
    #[serde(default)]
    pub ports: Option<PortSpec>,
}

/// `firewall.egress[]`: an exception to `egress_policy` towards `destination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// Destination subnet or address (default `0.0.0.0/0`).
    #[serde(default = "any_subnet")]
    pub destination: String,
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// Destination port list (tcp and udp only).
    #[serde(default)]
    pub ports: Option<PortSpec>,
}

/// `dnat[]`: new flows to a public VIP on these ports go to `destination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnatRule {
    /// Private address (inside `private_subnet`) the flow is sent to.
    pub destination: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port list; ports are kept, only the address changes.
    pub ports: PortSpec,
}

/// `vpc_peerings[]`: a subnet routed without NAT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcPeering {
    /// The peered subnet.
    pub subnet: String,
    /// Default verdict of new flows to and from the peer (`accept` by
    /// default); `ingress` / `egress` rules are the exceptions.
    #[serde(default)]
    pub policy: Policy,
    /// Exceptions for flows from the peer into the project subnet.
    #[serde(default)]
    pub ingress: Vec<PeeringRule>,
    /// Exceptions for flows from the project subnet to the peer.
    #[serde(default)]
    pub egress: Vec<PeeringRule>,
}

/// A VPC peering rule: the subnet is the peering's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeeringRule {
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// Destination port list (tcp and udp only).
    #[serde(default)]
    pub ports: Option<PortSpec>,
}

/// `ipsec_connections[]`: an IKEv2 + PSK site-to-site tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpsecConnection {
    /// Connection name: `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// Public address of the remote peer.
    pub remote_ip: String,
    /// Subnet behind the remote peer.
    pub remote_subnet: String,
    /// The pre-shared key; never printed.
    pub pre_shared_key: Secret,
    /// IKE (phase 1) Diffie-Hellman group number.
    pub phase1_dh_group_number: u32,
    /// IKE integrity: SHA1, SHA256, SHA384, SHA512.
    pub phase1_integrity_algorithm: String,
    /// IKE encryption: AES128, AES256, CAMELLIA128, CAMELLIA256.
    pub phase1_encryption_algorithm: String,
    /// Child SA (phase 2) Diffie-Hellman group number (PFS).
    pub phase2_dh_group_number: u32,
    /// Child SA integrity algorithm.
    pub phase2_integrity_algorithm: String,
    /// Child SA encryption algorithm.
    pub phase2_encryption_algorithm: String,
}

/// A secret string (pre-shared key) whose `Debug` and `Display` print `***`.
///
/// ```
/// use kowabunga::model::kawaii::Secret;
///
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s} {s:?}"), "*** ***");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself, for the one place that must hand it on (VICI,
    /// a cloud-init seed). Serializing a `Secret` writes it in clear too.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A port list or range as written (`"443"`, `"22,80"`, `"80,3000-3005"`).
///
/// YAML lets operators write `ports: 443` without quotes: integers are
/// accepted and kept as their decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec(pub String);

impl PortSpec {
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PortSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port list such as \"443\", \"22,80\" or \"80,3000-3005\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortSpec, E> {
                Ok(PortSpec(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortSpec, E> {
                Ok(PortSpec(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortSpec, E> {
                Ok(PortSpec(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn any_subnet() -> String {
    ANY_SUBNET.to_owned()
}
