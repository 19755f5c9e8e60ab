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
///
/// The guide writes `ingress` / `egress` as single objects, the API as
/// lists: both are accepted.
///
/// ```
/// use kowabunga::model::kawaii::{Policy, VpcPeering};
///
/// let guide = "subnet: 10.1.0.0/24\npolicy: accept\ningress: {ports: 1-65535, protocol: tcp}\n";
/// let p: VpcPeering = serde_norway::from_str(guide).unwrap();
/// assert_eq!(p.ingress.len(), 1);
/// let api = "subnet: 10.1.0.0/24\negress: [{protocol: udp, ports: 53}, {protocol: tcp, ports: 53}]\n";
/// let p: VpcPeering = serde_norway::from_str(api).unwrap();
/// assert_eq!(p.egress.len(), 2);
/// assert_eq!(p.policy, Policy::Drop); // upstream's default
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcPeering {
    /// The peered subnet.
    pub subnet: String,
    /// Default verdict of new flows to and from the peer (`drop` by
    /// default, as upstream's API); `ingress` / `egress` rules are the
    /// flows accepted when it is `drop`. ICMP is always accepted.
    #[serde(default = "drop_policy")]
    pub policy: Policy,
    /// Flows from the peer into the project subnet that are accepted.
    #[serde(default, deserialize_with = "one_or_many")]
    pub ingress: Vec<PeeringRule>,
    /// Flows from the project subnet to the peer that are accepted.
    #[serde(default, deserialize_with = "one_or_many")]
    pub egress: Vec<PeeringRule>,
}

/// A list, or a single object standing for a list of one.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    // Buffered as a value (not an untagged enum, which loses the inner
    // error): a list, else one object, each with its own error.
    let value = serde_norway::Value::deserialize(deserializer)?;
    if value.is_sequence() {
        Vec::<T>::deserialize(value).map_err(serde::de::Error::custom)
    } else {
        T::deserialize(value)
            .map(|one| vec![one])
            .map_err(serde::de::Error::custom)
    }
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

/// `ipsec_connections[]`: an IKEv2 + PSK site-to-site tunnel, with the
/// guide's field names (`remote_peer`) and the API's (`remote_ip`), and
/// upstream's optional fields and defaults.
///
/// ```
/// use kowabunga::model::kawaii::IpsecConnection;
///
/// let yaml = r#"
/// name: ACME Office
/// desc: connect ro aws ipsec
/// pre_shared_key: s3cret
/// remote_peer: 5.6.7.8
/// remote_subnet: 172.16.1.0/24
/// phase1_dh_group_number: 14
/// phase1_integrity_algorithm: SHA512
/// phase1_encryption_algorithm: AES256
/// phase2_dh_group_number: 14
/// phase2_integrity_algorithm: SHA512
/// phase2_encryption_algorithm: AES256
/// "#;
/// let c: IpsecConnection = serde_norway::from_str(yaml).unwrap();
/// assert_eq!(c.remote_ip, "5.6.7.8");
/// assert_eq!(c.dpd_timeout.as_str(), "240s");
/// assert_eq!(c.start_action, "start");
/// assert!(c.firewall.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpsecConnection {
    /// Connection name as the operator wrote it ("ACME Office"); the
    /// daemon derives a charon-safe name from it.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub desc: Option<String>,
    /// Public address of the remote peer (`remote_peer` in the guide).
    #[serde(alias = "remote_peer")]
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
    /// IKE SA lifetime (default `1h`): seconds, or a number with `s`,
    /// `m`, `h` or `d`.
    #[serde(default = "default_lifetime")]
    pub phase1_lifetime: DurationSpec,
    /// Child SA lifetime (default `1h`).
    #[serde(default = "default_lifetime")]
    pub phase2_lifetime: DurationSpec,
    /// Child SA rekeying interval (default `2h`; capped below
    /// `phase2_lifetime`, as strongSwan requires).
    #[serde(default = "default_rekey_time")]
    pub rekey_time: DurationSpec,
    /// Time without an answer from the peer after which it is declared
    /// dead (default `240s`).
    #[serde(default = "default_dpd_timeout")]
    pub dpd_timeout: DurationSpec,
    /// What to do with a dead peer's tunnel: `clear`, `hold` or `restart`
    /// (default).
    #[serde(default = "default_dpd_timeout_action")]
    pub dpd_timeout_action: String,
    /// When to bring the tunnel up: `none` (the peer does), `trap` (on the
    /// first packet) or `start` (at once, the default).
    #[serde(default = "default_start_action")]
    pub start_action: String,
    /// The tunnel's own firewall, with the gateway firewall's vocabulary:
    /// `ingress` rules open flows from the remote subnet (or part of it,
    /// `source`) into the project subnet, everything else from the tunnel
    /// is dropped; `egress_policy` / `egress` filter flows into the tunnel.
    /// Absent: the tunnel is not filtered (upstream's behaviour).
    #[serde(default)]
    pub firewall: Option<Firewall>,
}

fn drop_policy() -> Policy {
    Policy::Drop
}

fn default_lifetime() -> DurationSpec {
    DurationSpec("1h".to_owned())
}

fn default_rekey_time() -> DurationSpec {
    DurationSpec("2h".to_owned())
}

fn default_dpd_timeout() -> DurationSpec {
    DurationSpec("240s".to_owned())
}

fn default_dpd_timeout_action() -> String {
    "restart".to_owned()
}

fn default_start_action() -> String {
    "start".to_owned()
}

/// A duration as written: seconds (`240`), or a number with `s`, `m`, `h`
/// or `d` (`"240s"`, `"1h"`), strongSwan's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationSpec(pub String);

impl DurationSpec {
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 240, \"240s\", \"30m\" or \"1h\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                Ok(DurationSpec(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationSpec, E> {
                Ok(DurationSpec(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationSpec, E> {
                Ok(DurationSpec(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
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
