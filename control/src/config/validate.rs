//! Validation of a parsed [`Config`] into a typed [`ValidConfig`], before
//! anything touches the kernel.
//!
//! The first problem found is returned as a [`ValidationError`] whose
//! `Display` is one line naming the field path and the value, for example
//! `kawaii.dnat[1].ports: "80,x" is not a port list ("x" is not a port)`.
//! Values are printed with `{:?}` so a value containing a newline cannot
//! break the one-line rule.
//!
//! ```
//! use kowabunga_control::config::{model::Config, validate::validate};
//!
//! let yaml = r#"
//! node: {zone: a, interfaces: {public: eth0, private: eth1}}
//! kawaii:
//!   public_ips: [203.0.113.10]
//!   private_subnet: 10.0.0.0/33
//! "#;
//! let config: Config = serde_norway::from_str(yaml).unwrap();
//! let err = validate(&config).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"kawaii.private_subnet: "10.0.0.0/33" is not an IPv4 subnet (a.b.c.d/len)"#
//! );
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use kowabunga_bindings::{KW_MAX_IPSEC, KW_MAX_PEERINGS, KW_MAX_RULES_PER_TABLE, KW_MAX_VIPS};
use thiserror::Error;

use super::konvey::{ValidKonvey, ValidNodeKonvey};
use super::model::{Config, Kawaii, Policy, PortSpec, Secret};
use super::ports::{parse_port_list, parse_port_range, PortError};

/// Largest accepted `node.conntrack_entries` (64 Mi entries).
pub const MAX_CONNTRACK_ENTRIES: u32 = 1 << 26;

/// Linux `IFNAMSIZ - 1`: the longest interface name.
pub const MAX_IFNAME_LEN: usize = 15;

/// Diffie-Hellman groups accepted for IPsec (design section 4).
pub const DH_GROUPS: [u32; 13] = [2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24];

/// A validation failure: the field path and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {kind}")]
pub struct ValidationError {
    /// Path of the offending field, e.g. `kawaii.dnat[1].ports`.
    pub path: String,
    /// What is wrong, including the value.
    pub kind: ErrorKind,
}

/// What is wrong with a field; every variant carries the offending value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// A `node.vrrp` setting (the message carries the value).
    #[error("{0}")]
    Vrrp(String),
    /// Not a dotted-quad IPv4 address.
    #[error("{0:?} is not an IPv4 address")]
    NotAnAddress(String),
    /// Not an IPv4 prefix `a.b.c.d/len` (or, where allowed, an address).
    #[error("{0:?} is not an IPv4 subnet (a.b.c.d/len)")]
    NotASubnet(String),
    /// A subnet written with host bits set.
    #[error("{value:?} has host bits set (did you mean {network}?)")]
    HostBits {
        /// As written.
        value: String,
        /// The network it probably means.
        network: Ipv4Net,
    },
    /// `0.0.0.0`, which can be neither a VIP nor a peer.
    #[error("{0:?} is the unspecified address")]
    Unspecified(String),
    /// A subnet that covers everything where that makes no sense.
    #[error("{0:?} covers every address")]
    Everything(String),
    /// A port list that does not parse.
    #[error("{value:?} is not a port list ({error})")]
    NotAPortList {
        /// As written.
        value: String,
        /// Why.
        error: PortError,
    },
    /// A port range that does not parse.
    #[error("{value:?} is not a port range min-max ({error})")]
    NotAPortRange {
        /// As written.
        value: String,
        /// Why.
        error: PortError,
    },
    /// Unknown protocol name.
    #[error("{0:?} is not a protocol (tcp, udp or icmp)")]
    UnknownProtocol(String),
    /// A protocol this kind of rule does not support.
    #[error("{value:?} is not supported here ({expected})")]
    UnsupportedProtocol {
        /// As written.
        value: String,
        /// What is supported.
        expected: &'static str,
    },
    /// A tcp/udp rule without `ports`.
    #[error("missing: {0} rules need a port list")]
    MissingPorts(Protocol),
    /// An icmp rule with `ports`.
    #[error("{0:?} is not allowed: icmp rules have no ports")]
    PortsForIcmp(String),
    /// An address that must be inside the project subnet but is not.
    #[error("{value:?} is not inside kawaii.private_subnet ({subnet})")]
    OutsidePrivateSubnet {
        /// As written.
        value: String,
        /// The project subnet.
        subnet: Ipv4Net,
    },
    /// An address that must be outside the project subnet but is not.
    #[error("{value:?} is inside kawaii.private_subnet ({subnet})")]
    InsidePrivateSubnet {
        /// As written.
        value: String,
        /// The project subnet.
        subnet: Ipv4Net,
    },
    /// A subnet overlapping another one.
    #[error("{value:?} overlaps {other} ({other_value})")]
    Overlaps {
        /// As written.
        value: String,
        /// Path of the other field.
        other: String,
        /// Its value.
        other_value: Ipv4Net,
    },
    /// A DNAT rule whose ports overlap an earlier rule of the same protocol.
    #[error("{value:?} overlaps the {protocol} ports of {other}")]
    PortsOverlap {
        /// As written.
        value: String,
        /// The protocol of both rules.
        protocol: Protocol,
        /// Path of the earlier rule.
        other: String,
    },
    /// An empty list that needs at least one entry.
    #[error("empty: at least one entry is required")]
    EmptyList,
    /// An empty string.
    #[error("empty")]
    Empty,
    /// Too many entries.
    #[error("{count} entries, at most {max} are supported")]
    TooMany {
        /// Entries found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Too many rules in a dataplane table after port-range expansion.
    #[error("{count} rules after port-range expansion{note}, at most {max} are supported")]
    TooManyRules {
        /// Rules after expansion.
        count: usize,
        /// Explains rules the operator did not write (IKE rules).
        note: String,
        /// `KW_MAX_RULES_PER_TABLE`.
        max: usize,
    },
    /// The same value listed twice.
    #[error("{value:?} is already used by {other}")]
    Duplicate {
        /// As written.
        value: String,
        /// Path of the first use.
        other: String,
    },
    /// A zone VIP that is not one of `public_ips`.
    #[error("{0:?} is not one of kawaii.public_ips")]
    NotAPublicIp(String),
    /// A name with characters outside `[A-Za-z0-9_.-]`.
    #[error("{0:?} is not a valid name (only A-Z a-z 0-9 _ . - are allowed)")]
    BadName(String),
    /// Not a valid Linux interface name.
    #[error("{0:?} is not an interface name (1-15 characters, no '/', ':' or whitespace)")]
    BadInterfaceName(String),
    /// Unsupported Diffie-Hellman group.
    #[error("{0} is not a supported DH group (2, 5, 14-24)")]
    DhGroup(u32),
    /// Unsupported integrity algorithm.
    #[error("{0:?} is not an integrity algorithm (SHA1, SHA256, SHA384, SHA512)")]
    Integrity(String),
    /// Unsupported encryption algorithm.
    #[error("{0:?} is not an encryption algorithm (AES128, AES256, CAMELLIA128, CAMELLIA256)")]
    Encryption(String),
    /// A number out of its range.
    #[error("{value} is out of range ({min}-{max})")]
    OutOfRange {
        /// The value.
        value: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A path that must be absolute.
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(String),
    /// Neither a `kawaii` nor a `konvey` section.
    #[error("missing: a node runs kawaii, konvey or both, and this file has neither section")]
    NoService,
    /// A field that is optional in general but required here.
    #[error("missing: {0}")]
    Required(&'static str),
    /// An interface listed for both the Kawaii and the Konvey program.
    #[error(
        "{value:?} already carries the Kawaii program ({other}); an interface runs one program"
    )]
    BothPrograms {
        /// The interface.
        value: String,
        /// Where it is listed for Kawaii.
        other: String,
    },
    /// A `node.konvey.health.endpoints` key naming no endpoint.
    #[error("{0:?} is not the name of a konvey endpoint")]
    UnknownEndpoint(String),
}

/// An L4 protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
        }
    }

    /// Parses `tcp`, `udp`, `icmp` in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "icmp" => Some(Protocol::Icmp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        })
    }
}

/// A validated Diffie-Hellman group number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhGroup(u32);

impl DhGroup {
    /// Accepts the groups of [`DH_GROUPS`] only.
    pub fn new(number: u32) -> Option<Self> {
        DH_GROUPS.contains(&number).then_some(DhGroup(number))
    }

    /// The group number.
    pub fn number(self) -> u32 {
        self.0
    }

    /// strongSwan's name of the group.
    ///
    /// ```
    /// use kowabunga_control::config::validate::DhGroup;
    /// assert_eq!(DhGroup::new(14).unwrap().strongswan_name(), "modp2048");
    /// assert_eq!(DhGroup::new(5).unwrap().strongswan_name(), "modp1536");
    /// ```
    pub fn strongswan_name(self) -> &'static str {
        dh_group_strongswan_name(self.0).unwrap_or("modp2048")
    }
}

/// strongSwan's name of a DH group number, `None` for unsupported groups.
pub fn dh_group_strongswan_name(number: u32) -> Option<&'static str> {
    Some(match number {
        2 => "modp1024",
        5 => "modp1536",
        14 => "modp2048",
        15 => "modp3072",
        16 => "modp4096",
        17 => "modp6144",
        18 => "modp8192",
        19 => "ecp256",
        20 => "ecp384",
        21 => "ecp521",
        22 => "modp1024s160",
        23 => "modp2048s224",
        24 => "modp2048s256",
        _ => return None,
    })
}

/// IPsec integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// SHA1 (HMAC-SHA1-96).
    Sha1,
    /// SHA256.
    Sha256,
    /// SHA384.
    Sha384,
    /// SHA512.
    Sha512,
}

impl Integrity {
    /// Parses `SHA1`, `SHA256`, `SHA384`, `SHA512` in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "SHA1" => Some(Integrity::Sha1),
            "SHA256" => Some(Integrity::Sha256),
            "SHA384" => Some(Integrity::Sha384),
            "SHA512" => Some(Integrity::Sha512),
            _ => None,
        }
    }

    /// strongSwan's name.
    pub fn strongswan_name(self) -> &'static str {
        match self {
            Integrity::Sha1 => "sha1",
            Integrity::Sha256 => "sha256",
            Integrity::Sha384 => "sha384",
            Integrity::Sha512 => "sha512",
        }
    }
}

/// IPsec encryption algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// AES-CBC 128.
    Aes128,
    /// AES-CBC 256.
    Aes256,
    /// Camellia-CBC 128.
    Camellia128,
    /// Camellia-CBC 256.
    Camellia256,
}

impl Encryption {
    /// Parses `AES128`, `AES256`, `CAMELLIA128`, `CAMELLIA256` in any case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "AES128" => Some(Encryption::Aes128),
            "AES256" => Some(Encryption::Aes256),
            "CAMELLIA128" => Some(Encryption::Camellia128),
            "CAMELLIA256" => Some(Encryption::Camellia256),
            _ => None,
        }
    }

    /// strongSwan's name.
    pub fn strongswan_name(self) -> &'static str {
        match self {
            Encryption::Aes128 => "aes128",
            Encryption::Aes256 => "aes256",
            Encryption::Camellia128 => "camellia128",
            Encryption::Camellia256 => "camellia256",
        }
    }
}

/// One IPsec phase: DH group, integrity, encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// Diffie-Hellman group.
    pub dh_group: DhGroup,
    /// Integrity algorithm.
    pub integrity: Integrity,
    /// Encryption algorithm.
    pub encryption: Encryption,
}

impl Proposal {
    /// strongSwan proposal string `<enc>-<integ>-<dh>`, e.g.
    /// `aes256-sha512-modp2048`.
    pub fn strongswan(&self) -> String {
        format!(
            "{}-{}-{}",
            self.encryption.strongswan_name(),
            self.integrity.strongswan_name(),
            self.dh_group.strongswan_name()
        )
    }
}

/// A validated filter rule (firewall ingress or egress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// Source (ingress) or destination (egress) prefix.
    pub net: Ipv4Net,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port ranges; empty for icmp.
    pub ports: Vec<(u16, u16)>,
}

/// A validated DNAT rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnatRule {
    /// New destination, inside the project subnet.
    pub destination: Ipv4Addr,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// Destination port ranges.
    pub ports: Vec<(u16, u16)>,
}

/// A validated peering rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port ranges; empty for icmp.
    pub ports: Vec<(u16, u16)>,
}

/// A validated VPC peering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    /// The peered subnet.
    pub subnet: Ipv4Net,
    /// Default verdict.
    pub policy: Policy,
    /// Exceptions for flows from the peer.
    pub ingress: Vec<PortRule>,
    /// Exceptions for flows to the peer.
    pub egress: Vec<PortRule>,
}

/// A validated IPsec connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipsec {
    /// Connection name, `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// Remote peer.
    pub remote_ip: Ipv4Addr,
    /// Subnet behind the peer.
    pub remote_subnet: Ipv4Net,
    /// Pre-shared key (redacted in `Debug`).
    pub pre_shared_key: Secret,
    /// IKE SA proposal.
    pub phase1: Proposal,
    /// Child SA proposal (PFS with its DH group).
    pub phase2: Proposal,
}

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
    /// SNAT source ports, inclusive, `1 <= min <= max`.
    pub nat_ports: (u16, u16),
    /// Conntrack size, `None` for the dataplane default.
    pub conntrack_entries: Option<u32>,
    /// Konvey settings of the node (defaults when absent).
    pub konvey: ValidNodeKonvey,
    /// VRRP instances, with the zone rule applied to their priorities.
    pub vrrp: Vec<crate::vrrp::config::Instance>,
}

/// The validated Kawaii section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKawaii {
    /// All VIPs, in `public_ips` order, without duplicates.
    pub public_ips: Vec<Ipv4Addr>,
    /// This node's SNAT address: `zone_public_ips[node.zone]`, else the
    /// first of `public_ips`.
    pub snat_ip: Ipv4Addr,
    /// The project subnet.
    pub private_subnet: Ipv4Net,
    /// `firewall.ingress`.
    pub ingress: Vec<FilterRule>,
    /// `firewall.egress_policy`.
    pub egress_policy: Policy,
    /// `firewall.egress`.
    pub egress: Vec<FilterRule>,
    /// `dnat`.
    pub dnat: Vec<DnatRule>,
    /// `vpc_peerings`.
    pub peerings: Vec<Peering>,
    /// `ipsec_connections`.
    pub ipsec: Vec<Ipsec>,
}

/// A configuration that passed validation; [`compile`](super::compile)
/// cannot fail on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    /// Node settings.
    pub node: ValidNode,
    /// Kawaii settings, if this node is a Kawaii gateway.
    pub kawaii: Option<ValidKawaii>,
    /// Konvey settings, if this node is a Konvey load balancer.
    pub konvey: Option<ValidKonvey>,
}

/// Ingress rules added per IPsec connection (IKE udp 500, udp 4500, ESP).
pub const IKE_RULES_PER_CONNECTION: usize = 3;

fn err<T>(path: impl Into<String>, kind: ErrorKind) -> Result<T, ValidationError> {
    Err(ValidationError {
        path: path.into(),
        kind,
    })
}

fn parse_addr(path: &str, text: &str) -> Result<Ipv4Addr, ValidationError> {
    match text.trim().parse::<Ipv4Addr>() {
        Ok(addr) => Ok(addr),
        Err(_) => err(path, ErrorKind::NotAnAddress(text.to_owned())),
    }
}

/// A subnet `a.b.c.d/len` without host bits; with `allow_host`, a bare
/// address stands for its /32.
fn parse_net(path: &str, text: &str, allow_host: bool) -> Result<Ipv4Net, ValidationError> {
    let trimmed = text.trim();
    let net = match trimmed.parse::<Ipv4Net>() {
        Ok(net) => net,
        Err(_) => match (allow_host, trimmed.parse::<Ipv4Addr>()) {
            (true, Ok(addr)) => Ipv4Net::from(addr),
            _ => return err(path, ErrorKind::NotASubnet(text.to_owned())),
        },
    };
    if net.trunc() != net {
        return err(
            path,
            ErrorKind::HostBits {
                value: text.to_owned(),
                network: net.trunc(),
            },
        );
    }
    Ok(net)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn parse_protocol(path: &str, text: &str) -> Result<Protocol, ValidationError> {
    match Protocol::parse(text.trim()) {
        Some(p) => Ok(p),
        None => err(path, ErrorKind::UnknownProtocol(text.to_owned())),
    }
}

fn parse_ports(path: &str, spec: &PortSpec) -> Result<Vec<(u16, u16)>, ValidationError> {
    parse_port_list(spec.as_str()).or_else(|error| {
        err(
            path,
            ErrorKind::NotAPortList {
                value: spec.as_str().to_owned(),
                error,
            },
        )
    })
}

/// Protocol and ports of a rule at `path` (`path.protocol`, `path.ports`).
fn parse_proto_ports(
    path: &str,
    protocol: &str,
    ports: Option<&PortSpec>,
) -> Result<PortRule, ValidationError> {
    let protocol = parse_protocol(&format!("{path}.protocol"), protocol)?;
    let ports = match (protocol, ports) {
        (Protocol::Icmp, None) => Vec::new(),
        (Protocol::Icmp, Some(spec)) => {
            return err(
                format!("{path}.ports"),
                ErrorKind::PortsForIcmp(spec.as_str().to_owned()),
            )
        }
        (_, None) => return err(format!("{path}.ports"), ErrorKind::MissingPorts(protocol)),
        (_, Some(spec)) => parse_ports(&format!("{path}.ports"), spec)?,
    };
    Ok(PortRule { protocol, ports })
}

/// Rules a rule expands to in its dataplane table: one per port range, one
/// for icmp.
pub fn expanded_len(ports: &[(u16, u16)]) -> usize {
    ports.len().max(1)
}

fn check_name(path: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return err(path, ErrorKind::Empty);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return err(path, ErrorKind::BadName(name.to_owned()));
    }
    Ok(())
}

fn check_ifname(path: &str, name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if ok {
        Ok(())
    } else {
        err(path, ErrorKind::BadInterfaceName(name.to_owned()))
    }
}

fn check_count(path: &str, count: usize, max: u32) -> Result<(), ValidationError> {
    let max = max as usize;
    if count > max {
        return err(path, ErrorKind::TooMany { count, max });
    }
    Ok(())
}

fn check_rules(path: &str, count: usize, note: String) -> Result<(), ValidationError> {
    let max = KW_MAX_RULES_PER_TABLE as usize;
    if count > max {
        return err(path, ErrorKind::TooManyRules { count, note, max });
    }
    Ok(())
}

fn validate_node(config: &Config) -> Result<ValidNode, ValidationError> {
    let node = &config.node;
    check_name("node.zone", &node.zone)?;

    if config.kawaii.is_none() && config.konvey.is_none() {
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

    if !node.bpffs.is_absolute() {
        return err(
            "node.bpffs",
            ErrorKind::NotAbsolute(node.bpffs.display().to_string()),
        );
    }

    let nat_ports = parse_port_range(node.nat_port_range.as_str()).or_else(|error| {
        err(
            "node.nat_port_range",
            ErrorKind::NotAPortRange {
                value: node.nat_port_range.as_str().to_owned(),
                error,
            },
        )
    })?;

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
        bpffs: node.bpffs.clone(),
        nat_ports,
        conntrack_entries: node.conntrack_entries,
        konvey: super::konvey::validate_node_konvey(&node.konvey)?,
        vrrp: node
            .vrrp
            .resolve(Some(&node.zone))
            .map_err(|e| ValidationError {
                path: e.field().to_owned(),
                kind: ErrorKind::Vrrp(e.message()),
            })?,
    })
}

fn validate_proposal(
    path: &str,
    phase: u8,
    dh: u32,
    integrity: &str,
    encryption: &str,
) -> Result<Proposal, ValidationError> {
    let Some(dh_group) = DhGroup::new(dh) else {
        return err(
            format!("{path}.phase{phase}_dh_group_number"),
            ErrorKind::DhGroup(dh),
        );
    };
    let Some(integrity_alg) = Integrity::parse(integrity.trim()) else {
        return err(
            format!("{path}.phase{phase}_integrity_algorithm"),
            ErrorKind::Integrity(integrity.to_owned()),
        );
    };
    let Some(encryption_alg) = Encryption::parse(encryption.trim()) else {
        return err(
            format!("{path}.phase{phase}_encryption_algorithm"),
            ErrorKind::Encryption(encryption.to_owned()),
        );
    };
    Ok(Proposal {
        dh_group,
        integrity: integrity_alg,
        encryption: encryption_alg,
    })
}

/// Validates a parsed configuration; returns the first problem found.
///
/// # Errors
/// A [`ValidationError`] naming the field path and its value.
pub fn validate(config: &Config) -> Result<ValidConfig, ValidationError> {
    let node = validate_node(config)?;
    let kawaii = match &config.kawaii {
        Some(k) => Some(validate_kawaii(&node, k)?),
        None => None,
    };
    let konvey = match &config.konvey {
        Some(k) => Some(super::konvey::validate_konvey(&node, k)?),
        None => None,
    };
    Ok(ValidConfig {
        node,
        kawaii,
        konvey,
    })
}

fn validate_kawaii(node: &ValidNode, k: &Kawaii) -> Result<ValidKawaii, ValidationError> {
    // private_subnet first: other checks refer to it.
    let private_subnet = parse_net("kawaii.private_subnet", &k.private_subnet, false)?;
    if private_subnet.prefix_len() == 0 {
        return err(
            "kawaii.private_subnet",
            ErrorKind::Everything(k.private_subnet.clone()),
        );
    }

    // public_ips
    if k.public_ips.is_empty() {
        return err("kawaii.public_ips", ErrorKind::EmptyList);
    }
    check_count("kawaii.public_ips", k.public_ips.len(), KW_MAX_VIPS)?;
    let mut public_ips = Vec::with_capacity(k.public_ips.len());
    for (i, text) in k.public_ips.iter().enumerate() {
        let path = format!("kawaii.public_ips[{i}]");
        let ip = parse_addr(&path, text)?;
        if ip.is_unspecified() {
            return err(path, ErrorKind::Unspecified(text.clone()));
        }
        if private_subnet.contains(&ip) {
            return err(
                path,
                ErrorKind::InsidePrivateSubnet {
                    value: text.clone(),
                    subnet: private_subnet,
                },
            );
        }
        if let Some(j) = public_ips.iter().position(|p| *p == ip) {
            return err(
                path,
                ErrorKind::Duplicate {
                    value: text.clone(),
                    other: format!("kawaii.public_ips[{j}]"),
                },
            );
        }
        public_ips.push(ip);
    }

    // zone_public_ips
    let mut zone_ips: BTreeMap<&str, Ipv4Addr> = BTreeMap::new();
    for (zone, text) in &k.zone_public_ips {
        let path = format!("kawaii.zone_public_ips.{zone}");
        check_name(&path, zone)?;
        let ip = parse_addr(&path, text)?;
        if !public_ips.contains(&ip) {
            return err(path, ErrorKind::NotAPublicIp(text.clone()));
        }
        zone_ips.insert(zone, ip);
    }
    let snat_ip = zone_ips
        .get(node.zone.as_str())
        .copied()
        .unwrap_or(public_ips[0]);

    // firewall.ingress
    let mut ingress = Vec::with_capacity(k.firewall.ingress.len());
    for (i, rule) in k.firewall.ingress.iter().enumerate() {
        let path = format!("kawaii.firewall.ingress[{i}]");
        let net = parse_net(&format!("{path}.source"), &rule.source, true)?;
        let PortRule { protocol, ports } =
            parse_proto_ports(&path, &rule.protocol, rule.ports.as_ref())?;
        ingress.push(FilterRule {
            net,
            protocol,
            ports,
        });
    }

    // firewall.egress
    let mut egress = Vec::with_capacity(k.firewall.egress.len());
    for (i, rule) in k.firewall.egress.iter().enumerate() {
        let path = format!("kawaii.firewall.egress[{i}]");
        let net = parse_net(&format!("{path}.destination"), &rule.destination, true)?;
        let PortRule { protocol, ports } =
            parse_proto_ports(&path, &rule.protocol, rule.ports.as_ref())?;
        egress.push(FilterRule {
            net,
            protocol,
            ports,
        });
    }

    // dnat
    let mut dnat: Vec<DnatRule> = Vec::with_capacity(k.dnat.len());
    for (i, rule) in k.dnat.iter().enumerate() {
        let path = format!("kawaii.dnat[{i}]");
        let dest_path = format!("{path}.destination");
        let destination = parse_addr(&dest_path, &rule.destination)?;
        if !private_subnet.contains(&destination) {
            return err(
                dest_path,
                ErrorKind::OutsidePrivateSubnet {
                    value: rule.destination.clone(),
                    subnet: private_subnet,
                },
            );
        }
        let protocol = parse_protocol(&format!("{path}.protocol"), &rule.protocol)?;
        if protocol == Protocol::Icmp {
            return err(
                format!("{path}.protocol"),
                ErrorKind::UnsupportedProtocol {
                    value: rule.protocol.clone(),
                    expected: "dnat takes tcp or udp",
                },
            );
        }
        let ports = parse_ports(&format!("{path}.ports"), &rule.ports)?;
        // Overlapping ports of the same protocol would make the target depend
        // on rule order: reject.
        for (j, other) in dnat.iter().enumerate() {
            let clash = other.protocol == protocol
                && ports
                    .iter()
                    .any(|&(lo, hi)| other.ports.iter().any(|&(l, h)| lo <= h && l <= hi));
            if clash {
                return err(
                    format!("{path}.ports"),
                    ErrorKind::PortsOverlap {
                        value: rule.ports.as_str().to_owned(),
                        protocol,
                        other: format!("kawaii.dnat[{j}]"),
                    },
                );
            }
        }
        dnat.push(DnatRule {
            destination,
            protocol,
            ports,
        });
    }

    // vpc_peerings
    check_count("kawaii.vpc_peerings", k.vpc_peerings.len(), KW_MAX_PEERINGS)?;
    let mut routed: Vec<(String, Ipv4Net)> =
        vec![("kawaii.private_subnet".to_owned(), private_subnet)];
    let mut peerings = Vec::with_capacity(k.vpc_peerings.len());
    for (i, peering) in k.vpc_peerings.iter().enumerate() {
        let path = format!("kawaii.vpc_peerings[{i}]");
        let subnet_path = format!("{path}.subnet");
        let subnet = parse_net(&subnet_path, &peering.subnet, false)?;
        check_disjoint(&subnet_path, &peering.subnet, subnet, &routed)?;
        routed.push((subnet_path, subnet));
        let mut rules_in = Vec::with_capacity(peering.ingress.len());
        for (j, rule) in peering.ingress.iter().enumerate() {
            rules_in.push(parse_proto_ports(
                &format!("{path}.ingress[{j}]"),
                &rule.protocol,
                rule.ports.as_ref(),
            )?);
        }
        let mut rules_out = Vec::with_capacity(peering.egress.len());
        for (j, rule) in peering.egress.iter().enumerate() {
            rules_out.push(parse_proto_ports(
                &format!("{path}.egress[{j}]"),
                &rule.protocol,
                rule.ports.as_ref(),
            )?);
        }
        peerings.push(Peering {
            subnet,
            policy: peering.policy,
            ingress: rules_in,
            egress: rules_out,
        });
    }

    // ipsec_connections
    check_count(
        "kawaii.ipsec_connections",
        k.ipsec_connections.len(),
        KW_MAX_IPSEC,
    )?;
    let mut ipsec: Vec<Ipsec> = Vec::with_capacity(k.ipsec_connections.len());
    for (i, conn) in k.ipsec_connections.iter().enumerate() {
        let path = format!("kawaii.ipsec_connections[{i}]");
        let name_path = format!("{path}.name");
        check_name(&name_path, &conn.name)?;
        if let Some(j) = ipsec.iter().position(|c| c.name == conn.name) {
            return err(
                name_path,
                ErrorKind::Duplicate {
                    value: conn.name.clone(),
                    other: format!("kawaii.ipsec_connections[{j}].name"),
                },
            );
        }
        let ip_path = format!("{path}.remote_ip");
        let remote_ip = parse_addr(&ip_path, &conn.remote_ip)?;
        if remote_ip.is_unspecified() {
            return err(ip_path, ErrorKind::Unspecified(conn.remote_ip.clone()));
        }
        if private_subnet.contains(&remote_ip) {
            return err(
                ip_path,
                ErrorKind::InsidePrivateSubnet {
                    value: conn.remote_ip.clone(),
                    subnet: private_subnet,
                },
            );
        }
        let subnet_path = format!("{path}.remote_subnet");
        let remote_subnet = parse_net(&subnet_path, &conn.remote_subnet, false)?;
        check_disjoint(&subnet_path, &conn.remote_subnet, remote_subnet, &routed)?;
        routed.push((subnet_path, remote_subnet));
        if conn.pre_shared_key.is_empty() {
            return err(format!("{path}.pre_shared_key"), ErrorKind::Empty);
        }
        let phase1 = validate_proposal(
            &path,
            1,
            conn.phase1_dh_group_number,
            &conn.phase1_integrity_algorithm,
            &conn.phase1_encryption_algorithm,
        )?;
        let phase2 = validate_proposal(
            &path,
            2,
            conn.phase2_dh_group_number,
            &conn.phase2_integrity_algorithm,
            &conn.phase2_encryption_algorithm,
        )?;
        ipsec.push(Ipsec {
            name: conn.name.clone(),
            remote_ip,
            remote_subnet,
            pre_shared_key: conn.pre_shared_key.clone(),
            phase1,
            phase2,
        });
    }

    // Table sizes after expansion.
    let ike = ipsec.len() * IKE_RULES_PER_CONNECTION;
    let n_ingress: usize = ingress
        .iter()
        .map(|r| expanded_len(&r.ports))
        .sum::<usize>()
        + ike;
    let note = if ike > 0 {
        format!(" (including {ike} IKE rules of kawaii.ipsec_connections)")
    } else {
        String::new()
    };
    check_rules("kawaii.firewall.ingress", n_ingress, note)?;
    let n_egress: usize = egress.iter().map(|r| expanded_len(&r.ports)).sum();
    check_rules("kawaii.firewall.egress", n_egress, String::new())?;
    let n_dnat: usize = dnat.iter().map(|r| expanded_len(&r.ports)).sum();
    check_rules("kawaii.dnat", n_dnat, String::new())?;
    let n_peer_in: usize = peerings
        .iter()
        .flat_map(|p| &p.ingress)
        .map(|r| expanded_len(&r.ports))
        .sum();
    check_rules("kawaii.vpc_peerings[*].ingress", n_peer_in, String::new())?;
    let n_peer_out: usize = peerings
        .iter()
        .flat_map(|p| &p.egress)
        .map(|r| expanded_len(&r.ports))
        .sum();
    check_rules("kawaii.vpc_peerings[*].egress", n_peer_out, String::new())?;

    Ok(ValidKawaii {
        public_ips,
        snat_ip,
        private_subnet,
        ingress,
        egress_policy: k.firewall.egress_policy,
        egress,
        dnat,
        peerings,
        ipsec,
    })
}

fn check_disjoint(
    path: &str,
    text: &str,
    net: Ipv4Net,
    others: &[(String, Ipv4Net)],
) -> Result<(), ValidationError> {
    match others.iter().find(|(_, other)| overlaps(&net, other)) {
        Some((other_path, other)) => err(
            path,
            ErrorKind::Overlaps {
                value: text.to_owned(),
                other: other_path.clone(),
                other_value: *other,
            },
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, ConfigError};

    const NODE: &str = "node:\n  zone: eu-west-a\n  interfaces: {public: pub0, private: priv0}\n";
    const KAWAII: &str = "kawaii:\n  public_ips: [203.0.113.10]\n  private_subnet: 10.0.0.0/25\n";

    const IPSEC: &str = r#"
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

    fn ok(yaml: &str) -> ValidConfig {
        parse_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    /// The validation error of `yaml`, as displayed.
    fn invalid(yaml: &str) -> String {
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

    fn with_kawaii(extra: &str) -> String {
        format!("{NODE}{KAWAII}{extra}")
    }

    #[test]
    fn accepts_the_design_example() {
        let v = ok(&with_kawaii(&format!(
            r#"
  firewall:
    ingress: [{{source: 0.0.0.0/0, protocol: tcp, ports: "22"}}]
    egress_policy: accept
    egress:  [{{destination: 198.51.100.0/24, protocol: udp, ports: "53"}}]
  dnat: [{{destination: 10.0.0.10, protocol: tcp, ports: "80,443"}}]
  vpc_peerings:
    - {{subnet: 10.1.0.0/24, policy: drop, ingress: [{{protocol: tcp, ports: "1-65535"}}], egress: [{{protocol: tcp, ports: "1-65535"}}]}}
{IPSEC}"#
        )));
        assert_eq!(
            v.kawaii.as_ref().expect("kawaii").dnat[0].ports,
            vec![(80, 80), (443, 443)]
        );
        assert_eq!(
            v.kawaii.as_ref().expect("kawaii").peerings[0].policy,
            Policy::Drop
        );
        assert_eq!(v.node.bpffs, PathBuf::from("/sys/fs/bpf/kowabunga"));
        assert_eq!(v.node.nat_ports, (1024, 65535));
        assert_eq!(v.node.conntrack_entries, None);
        let conn = &v.kawaii.as_ref().expect("kawaii").ipsec[0];
        assert_eq!(conn.phase1.strongswan(), "aes256-sha512-modp2048");
        assert_eq!(conn.pre_shared_key.expose(), "correct horse battery staple");
    }

    #[test]
    fn accepts_the_lab_example() {
        let text = include_str!("../../examples/kawaii-lab.yaml");
        let v = ok(text);
        assert_eq!(v.node.interfaces.public.as_deref(), Some("kw-gw-pub"));
        assert_eq!(v.node.interfaces.private.as_deref(), Some("kw-gw-priv"));
        assert_eq!(
            v.kawaii.as_ref().expect("kawaii").snat_ip,
            Ipv4Addr::new(203, 0, 113, 10)
        );
    }

    #[test]
    fn protocols_in_upper_case() {
        let v = ok(&with_kawaii(
            "  firewall: {ingress: [{protocol: TCP, ports: 22}, {protocol: Icmp}]}\n",
        ));
        assert_eq!(
            v.kawaii.as_ref().expect("kawaii").ingress[0].protocol,
            Protocol::Tcp
        );
        assert_eq!(
            v.kawaii.as_ref().expect("kawaii").ingress[0].ports,
            vec![(22, 22)]
        );
        assert_eq!(
            v.kawaii.as_ref().expect("kawaii").ingress[1].protocol,
            Protocol::Icmp
        );
        assert_eq!(
            v.kawaii.as_ref().expect("kawaii").ingress[0].net,
            "0.0.0.0/0".parse::<Ipv4Net>().expect("net")
        );
    }

    #[test]
    fn secret_is_redacted() {
        let yaml = with_kawaii(IPSEC);
        let parsed: Config = serde_norway::from_str(&yaml).expect("parse");
        let valid = ok(&yaml);
        for text in [
            format!("{parsed:?}"),
            format!("{valid:?}"),
            format!("{valid:#?}"),
        ] {
            assert!(!text.contains("correct horse"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
        assert_eq!(
            valid.kawaii.as_ref().expect("kawaii").ipsec[0]
                .pre_shared_key
                .to_string(),
            "***"
        );
    }

    #[test]
    fn private_subnet_errors() {
        let base = format!("{NODE}{KAWAII}");
        assert_eq!(
            invalid(&base.replace("10.0.0.0/25", "10.0.0.0/33")),
            r#"kawaii.private_subnet: "10.0.0.0/33" is not an IPv4 subnet (a.b.c.d/len)"#
        );
        assert_eq!(
            invalid(&base.replace("10.0.0.0/25", "10.0.0.1/25")),
            r#"kawaii.private_subnet: "10.0.0.1/25" has host bits set (did you mean 10.0.0.0/25?)"#
        );
        assert_eq!(
            invalid(&base.replace("10.0.0.0/25", "0.0.0.0/0")),
            r#"kawaii.private_subnet: "0.0.0.0/0" covers every address"#
        );
        assert_eq!(
            invalid(&base.replace("10.0.0.0/25", "10.0.0.5")),
            r#"kawaii.private_subnet: "10.0.0.5" is not an IPv4 subnet (a.b.c.d/len)"#
        );
    }

    #[test]
    fn public_ip_errors() {
        let base = format!("{NODE}{KAWAII}");
        assert_eq!(
            invalid(&base.replace("[203.0.113.10]", "[]")),
            "kawaii.public_ips: empty: at least one entry is required"
        );
        assert_eq!(
            invalid(&base.replace("[203.0.113.10]", "[203.0.113.10, 203.0.113.300]")),
            r#"kawaii.public_ips[1]: "203.0.113.300" is not an IPv4 address"#
        );
        assert_eq!(
            invalid(&base.replace("[203.0.113.10]", "[203.0.113.10, 203.0.113.10]")),
            r#"kawaii.public_ips[1]: "203.0.113.10" is already used by kawaii.public_ips[0]"#
        );
        assert_eq!(
            invalid(&base.replace("[203.0.113.10]", "[0.0.0.0]")),
            r#"kawaii.public_ips[0]: "0.0.0.0" is the unspecified address"#
        );
        assert_eq!(
            invalid(&base.replace("[203.0.113.10]", "[10.0.0.1]")),
            r#"kawaii.public_ips[0]: "10.0.0.1" is inside kawaii.private_subnet (10.0.0.0/25)"#
        );
        let many: Vec<String> = (1..=17).map(|i| format!("203.0.113.{i}")).collect();
        assert_eq!(
            invalid(&base.replace("[203.0.113.10]", &format!("[{}]", many.join(",")))),
            "kawaii.public_ips: 17 entries, at most 16 are supported"
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  zone_public_ips: {eu-west-a: 203.0.113.99}\n"
            )),
            r#"kawaii.zone_public_ips.eu-west-a: "203.0.113.99" is not one of kawaii.public_ips"#
        );
        assert_eq!(
            invalid(&with_kawaii("  zone_public_ips: {eu-west-a: nope}\n")),
            r#"kawaii.zone_public_ips.eu-west-a: "nope" is not an IPv4 address"#
        );
        assert_eq!(
            invalid(&with_kawaii("  zone_public_ips: {eu west: 203.0.113.10}\n")),
            r#"kawaii.zone_public_ips.eu west: "eu west" is not a valid name (only A-Z a-z 0-9 _ . - are allowed)"#
        );
    }

    #[test]
    fn firewall_errors() {
        assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {ingress: [{source: 1.2.3.0/24, protocol: tcp, ports: \"22\"}, {source: 1.2.3/24, protocol: tcp, ports: \"22\"}]}\n"
            )),
            r#"kawaii.firewall.ingress[1].source: "1.2.3/24" is not an IPv4 subnet (a.b.c.d/len)"#
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {ingress: [{source: 1.2.3.4/24, protocol: tcp, ports: \"22\"}]}\n"
            )),
            r#"kawaii.firewall.ingress[0].source: "1.2.3.4/24" has host bits set (did you mean 1.2.3.0/24?)"#
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {ingress: [{protocol: sctp, ports: \"22\"}]}\n"
            )),
            r#"kawaii.firewall.ingress[0].protocol: "sctp" is not a protocol (tcp, udp or icmp)"#
        );
        assert_eq!(
            invalid(&with_kawaii("  firewall: {ingress: [{protocol: tcp}]}\n")),
            "kawaii.firewall.ingress[0].ports: missing: tcp rules need a port list"
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {ingress: [{protocol: icmp, ports: \"8\"}]}\n"
            )),
            r#"kawaii.firewall.ingress[0].ports: "8" is not allowed: icmp rules have no ports"#
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {ingress: [{protocol: udp, ports: \"53,0\"}]}\n"
            )),
            r#"kawaii.firewall.ingress[0].ports: "53,0" is not a port list (port 0 is not allowed in "0")"#
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {egress: [{destination: 198.51.100.0/24, protocol: udp, ports: \"53-52\"}]}\n"
            )),
            r#"kawaii.firewall.egress[0].ports: "53-52" is not a port list (range "53-52" is reversed)"#
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  firewall: {egress: [{destination: example.com, protocol: udp, ports: \"53\"}]}\n"
            )),
            r#"kawaii.firewall.egress[0].destination: "example.com" is not an IPv4 subnet (a.b.c.d/len)"#
        );
    }

    #[test]
    fn dnat_errors() {
        let rule = |dest: &str, proto: &str, ports: &str| {
            format!("    - {{destination: {dest}, protocol: {proto}, ports: \"{ports}\"}}\n")
        };
        let first = rule("10.0.0.10", "tcp", "80");
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  dnat:\n{first}{}",
                rule("10.0.0.11", "tcp", "80,x")
            ))),
            r#"kawaii.dnat[1].ports: "80,x" is not a port list ("x" is not a port)"#
        );
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  dnat:\n{}",
                rule("10.0.0.200", "tcp", "80")
            ))),
            r#"kawaii.dnat[0].destination: "10.0.0.200" is not inside kawaii.private_subnet (10.0.0.0/25)"#
        );
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  dnat:\n{}",
                rule("10.0.0.0/25", "tcp", "80")
            ))),
            r#"kawaii.dnat[0].destination: "10.0.0.0/25" is not an IPv4 address"#
        );
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  dnat:\n{}",
                rule("10.0.0.10", "icmp", "80")
            ))),
            r#"kawaii.dnat[0].protocol: "icmp" is not supported here (dnat takes tcp or udp)"#
        );
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  dnat:\n{first}{}",
                rule("10.0.0.11", "tcp", "443,70-90")
            ))),
            r#"kawaii.dnat[1].ports: "443,70-90" overlaps the tcp ports of kawaii.dnat[0]"#
        );
        // Same ports with another protocol are fine.
        ok(&with_kawaii(&format!(
            "  dnat:\n{first}{}",
            rule("10.0.0.11", "udp", "80")
        )));
    }

    #[test]
    fn peering_errors() {
        assert_eq!(
            invalid(&with_kawaii("  vpc_peerings: [{subnet: 10.0.0.64/26}]\n")),
            r#"kawaii.vpc_peerings[0].subnet: "10.0.0.64/26" overlaps kawaii.private_subnet (10.0.0.0/25)"#
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  vpc_peerings: [{subnet: 10.1.0.0/16}, {subnet: 10.1.2.0/24}]\n"
            )),
            r#"kawaii.vpc_peerings[1].subnet: "10.1.2.0/24" overlaps kawaii.vpc_peerings[0].subnet (10.1.0.0/16)"#
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  vpc_peerings: [{subnet: 10.1.0.0/16, egress: [{protocol: tcp, ports: \"99999\"}]}]\n"
            )),
            r#"kawaii.vpc_peerings[0].egress[0].ports: "99999" is not a port list ("99999" is greater than 65535)"#
        );
        assert_eq!(
            invalid(&with_kawaii(
                "  vpc_peerings: [{subnet: 10.1.0.0/16, ingress: [{protocol: gre}]}]\n"
            )),
            r#"kawaii.vpc_peerings[0].ingress[0].protocol: "gre" is not a protocol (tcp, udp or icmp)"#
        );
        let many: Vec<String> = (1..=17)
            .map(|i| format!("{{subnet: 10.{i}.0.0/16}}"))
            .collect();
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  vpc_peerings: [{}]\n",
                many.join(", ")
            ))),
            "kawaii.vpc_peerings: 17 entries, at most 16 are supported"
        );
    }

    fn ipsec_with(field: &str, value: &str) -> String {
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

    #[test]
    fn ipsec_errors() {
        let p = "kawaii.ipsec_connections[0]";
        assert_eq!(
            invalid(&ipsec_with("name", "\"acme office\"")),
            format!(
                r#"{p}.name: "acme office" is not a valid name (only A-Z a-z 0-9 _ . - are allowed)"#
            )
        );
        assert_eq!(
            invalid(&ipsec_with("name", "\"\"")),
            format!("{p}.name: empty")
        );
        assert_eq!(
            invalid(&ipsec_with("remote_ip", "5.6.7")),
            format!(r#"{p}.remote_ip: "5.6.7" is not an IPv4 address"#)
        );
        assert_eq!(
            invalid(&ipsec_with("remote_ip", "10.0.0.3")),
            format!(r#"{p}.remote_ip: "10.0.0.3" is inside kawaii.private_subnet (10.0.0.0/25)"#)
        );
        assert_eq!(
            invalid(&ipsec_with("remote_subnet", "10.0.0.0/16")),
            format!(
                r#"{p}.remote_subnet: "10.0.0.0/16" overlaps kawaii.private_subnet (10.0.0.0/25)"#
            )
        );
        assert_eq!(
            invalid(&ipsec_with("pre_shared_key", "\"\"")),
            format!("{p}.pre_shared_key: empty")
        );
        assert_eq!(
            invalid(&ipsec_with("phase1_dh_group_number", "1")),
            format!("{p}.phase1_dh_group_number: 1 is not a supported DH group (2, 5, 14-24)")
        );
        assert_eq!(
            invalid(&ipsec_with("phase2_dh_group_number", "25")),
            format!("{p}.phase2_dh_group_number: 25 is not a supported DH group (2, 5, 14-24)")
        );
        assert_eq!(
            invalid(&ipsec_with("phase1_integrity_algorithm", "MD5")),
            format!(
                r#"{p}.phase1_integrity_algorithm: "MD5" is not an integrity algorithm (SHA1, SHA256, SHA384, SHA512)"#
            )
        );
        assert_eq!(
            invalid(&ipsec_with("phase2_encryption_algorithm", "DES")),
            format!(
                r#"{p}.phase2_encryption_algorithm: "DES" is not an encryption algorithm (AES128, AES256, CAMELLIA128, CAMELLIA256)"#
            )
        );
        // Two connections with the same name, or overlapping remote subnets.
        let twice = with_kawaii(&format!(
            "{IPSEC}{}",
            IPSEC.replace("  ipsec_connections:\n", "")
        ));
        assert_eq!(
            invalid(&twice),
            r#"kawaii.ipsec_connections[1].name: "acme-office" is already used by kawaii.ipsec_connections[0].name"#
        );
        let overlap = with_kawaii(&format!(
            "{IPSEC}{}",
            IPSEC
                .replace("  ipsec_connections:\n", "")
                .replace("acme-office", "acme-2")
        ));
        assert_eq!(
            invalid(&overlap),
            r#"kawaii.ipsec_connections[1].remote_subnet: "172.16.1.0/24" overlaps kawaii.ipsec_connections[0].remote_subnet (172.16.1.0/24)"#
        );
        let peer_overlap = with_kawaii(&format!(
            "  vpc_peerings: [{{subnet: 172.16.0.0/16}}]\n{IPSEC}"
        ));
        assert_eq!(
            invalid(&peer_overlap),
            format!(
                r#"{p}.remote_subnet: "172.16.1.0/24" overlaps kawaii.vpc_peerings[0].subnet (172.16.0.0/16)"#
            )
        );
    }

    #[test]
    fn dh_groups_and_algorithms() {
        let names: Vec<&str> = DH_GROUPS
            .iter()
            .map(|&g| DhGroup::new(g).expect("group").strongswan_name())
            .collect();
        assert_eq!(
            names,
            [
                "modp1024",
                "modp1536",
                "modp2048",
                "modp3072",
                "modp4096",
                "modp6144",
                "modp8192",
                "ecp256",
                "ecp384",
                "ecp521",
                "modp1024s160",
                "modp2048s224",
                "modp2048s256"
            ]
        );
        for g in [0, 1, 3, 4, 6, 13, 25, 31] {
            assert_eq!(DhGroup::new(g), None, "{g}");
            assert_eq!(dh_group_strongswan_name(g), None);
        }
        let p = Proposal {
            dh_group: DhGroup::new(5).expect("group"),
            integrity: Integrity::parse("sha256").expect("integ"),
            encryption: Encryption::parse("Camellia128").expect("enc"),
        };
        assert_eq!(p.strongswan(), "camellia128-sha256-modp1536");
        assert_eq!(
            Integrity::parse("SHA1").map(Integrity::strongswan_name),
            Some("sha1")
        );
        assert_eq!(
            Integrity::parse("SHA384").map(Integrity::strongswan_name),
            Some("sha384")
        );
        assert_eq!(
            Integrity::parse("SHA512").map(Integrity::strongswan_name),
            Some("sha512")
        );
        assert_eq!(
            Encryption::parse("AES128").map(Encryption::strongswan_name),
            Some("aes128")
        );
        assert_eq!(
            Encryption::parse("AES256").map(Encryption::strongswan_name),
            Some("aes256")
        );
        assert_eq!(
            Encryption::parse("CAMELLIA256").map(Encryption::strongswan_name),
            Some("camellia256")
        );
    }

    #[test]
    fn rule_count_limits() {
        let ports: Vec<String> = (1..=257).map(|p| p.to_string()).collect();
        let list = ports.join(",");
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  firewall: {{ingress: [{{protocol: tcp, ports: \"{list}\"}}]}}\n"
            ))),
            "kawaii.firewall.ingress: 257 rules after port-range expansion, at most 256 are supported"
        );
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  firewall: {{egress: [{{protocol: udp, ports: \"{list}\"}}]}}\n"
            ))),
            "kawaii.firewall.egress: 257 rules after port-range expansion, at most 256 are supported"
        );
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  dnat: [{{destination: 10.0.0.9, protocol: udp, ports: \"{list}\"}}]\n"
            ))),
            "kawaii.dnat: 257 rules after port-range expansion, at most 256 are supported"
        );
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  vpc_peerings: [{{subnet: 10.9.0.0/16, ingress: [{{protocol: udp, ports: \"{list}\"}}]}}]\n"
            ))),
            "kawaii.vpc_peerings[*].ingress: 257 rules after port-range expansion, at most 256 are supported"
        );
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  vpc_peerings: [{{subnet: 10.9.0.0/16, egress: [{{protocol: udp, ports: \"{list}\"}}]}}]\n"
            ))),
            "kawaii.vpc_peerings[*].egress: 257 rules after port-range expansion, at most 256 are supported"
        );
        // 254 user rules + 3 IKE rules overflow the ingress table.
        let ports: Vec<String> = (1..=254).map(|p| p.to_string()).collect();
        assert_eq!(
            invalid(&with_kawaii(&format!(
                "  firewall: {{ingress: [{{protocol: tcp, ports: \"{}\"}}]}}\n{IPSEC}",
                ports.join(",")
            ))),
            "kawaii.firewall.ingress: 257 rules after port-range expansion (including 3 IKE rules of kawaii.ipsec_connections), at most 256 are supported"
        );
        // A single range is a single rule.
        ok(&with_kawaii(
            "  firewall: {ingress: [{protocol: tcp, ports: \"1-65535\"}]}\n",
        ));
    }

    #[test]
    fn node_errors() {
        let kawaii = KAWAII;
        let node = |body: &str| format!("node:\n{body}{kawaii}");
        assert_eq!(
            invalid(&node(
                "  zone: \"\"\n  interfaces: {public: a, private: b}\n"
            )),
            "node.zone: empty"
        );
        assert_eq!(
            invalid(&node(
                "  zone: z\n  interfaces: {public: \"\", private: b}\n"
            )),
            r#"node.interfaces.public: "" is not an interface name (1-15 characters, no '/', ':' or whitespace)"#
        );
        assert_eq!(
            invalid(&node(
                "  zone: z\n  interfaces: {public: a, private: this-name-is-too-long}\n"
            )),
            r#"node.interfaces.private: "this-name-is-too-long" is not an interface name (1-15 characters, no '/', ':' or whitespace)"#
        );
        assert_eq!(
            invalid(&node(
                "  zone: z\n  interfaces: {public: eth0, private: eth0}\n"
            )),
            r#"node.interfaces.private: "eth0" is already used by node.interfaces.public"#
        );
        assert_eq!(
            invalid(&node(
                "  zone: z\n  interfaces: {public: eth0, private: eth1, peerings: [eth2, eth1]}\n"
            )),
            r#"node.interfaces.peerings[1]: "eth1" is already used by node.interfaces.private"#
        );
        assert_eq!(
            invalid(&node(
                "  zone: z\n  interfaces: {public: eth0, private: eth1, peerings: [\"a b\"]}\n"
            )),
            r#"node.interfaces.peerings[0]: "a b" is not an interface name (1-15 characters, no '/', ':' or whitespace)"#
        );
        let base = "  zone: z\n  interfaces: {public: a, private: b}\n";
        assert_eq!(
            invalid(&node(&format!("{base}  nat_port_range: \"2000-1000\"\n"))),
            r#"node.nat_port_range: "2000-1000" is not a port range min-max (range "2000-1000" is reversed)"#
        );
        assert_eq!(
            invalid(&node(&format!("{base}  nat_port_range: \"0-1000\"\n"))),
            r#"node.nat_port_range: "0-1000" is not a port range min-max (port 0 is not allowed in "0-1000")"#
        );
        assert_eq!(
            invalid(&node(&format!("{base}  nat_port_range: \"1000,2000\"\n"))),
            r#"node.nat_port_range: "1000,2000" is not a port range min-max ("1000,2000" is not a port)"#
        );
        assert_eq!(
            invalid(&node(&format!("{base}  conntrack_entries: 0\n"))),
            "node.conntrack_entries: 0 is out of range (1-67108864)"
        );
        assert_eq!(
            invalid(&node(&format!("{base}  bpffs: relative/dir\n"))),
            r#"node.bpffs: "relative/dir" is not an absolute path"#
        );
        let v = ok(&node(&format!(
            "{base}  nat_port_range: \"30000-40000\"\n  conntrack_entries: 1024\n  bpffs: /sys/fs/bpf/kw-test\n"
        )));
        assert_eq!(v.node.nat_ports, (30000, 40000));
        assert_eq!(v.node.conntrack_entries, Some(1024));
        assert_eq!(v.node.bpffs, PathBuf::from("/sys/fs/bpf/kw-test"));
    }

    #[test]
    fn unknown_fields_are_errors() {
        for (yaml, field) in [
            (format!("{NODE}{KAWAII}  dnats: []\n"), "dnats"),
            (format!("{NODE}  zones: a\n{KAWAII}"), "zones"),
            (
                with_kawaii(
                    "  firewall: {ingress: [{src: 1.2.3.4/32, protocol: tcp, ports: \"1\"}]}\n",
                ),
                "src",
            ),
            (with_kawaii("  firewall: {egres: []}\n"), "egres"),
            (
                with_kawaii("  vpc_peerings: [{subnet: 10.1.0.0/24, polcy: drop}]\n"),
                "polcy",
            ),
            (
                ipsec_with("phase1_lifetime", "1h")
                    .replace("name:", "phase1_lifetime: 1h\n      name:"),
                "phase1_lifetime",
            ),
        ] {
            match parse_str(&yaml) {
                Err(ConfigError::Parse(e)) => {
                    let text = e.to_string();
                    assert!(text.contains(&format!("unknown field `{field}`")), "{text}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn values_with_newlines_stay_on_one_line() {
        let text = invalid(&with_kawaii(
            "  firewall: {ingress: [{protocol: \"tcp\\nudp\", ports: \"1\"}]}\n",
        ));
        assert_eq!(
            text,
            r#"kawaii.firewall.ingress[0].protocol: "tcp\nudp" is not a protocol (tcp, udp or icmp)"#
        );
    }
}
