//! The one error of validation: a field path and what is wrong with its
//! value. `Display` is one line, values printed with `{:?}` so a value
//! containing a newline cannot break it.

use ipnet::Ipv4Net;
use thiserror::Error;

use super::fields::Protocol;
use super::ports::PortError;

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

/// `Err` of a [`ValidationError`] at `path`.
///
/// # Errors
/// Always.
pub fn err<T>(path: impl Into<String>, kind: ErrorKind) -> Result<T, ValidationError> {
    Err(ValidationError {
        path: path.into(),
        kind,
    })
}
