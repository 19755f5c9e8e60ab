//! The one error of validation: a field path and what is wrong with its
//! value. `Display` is one line, values printed with `{:?}` so a value
//! containing a newline cannot break it.

use ipnet::{IpNet, Ipv4Net};
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
    /// A `kiwi` setting (the message carries the value).
    #[error("{0}")]
    Kiwi(String),
    /// Not a dotted-quad IPv4 address.
    #[error("{} is not an IPv4 address", quote(.0))]
    NotAnAddress(String),
    /// Not an IPv4 prefix `a.b.c.d/len` (or, where allowed, an address).
    #[error("{} is not an IPv4 subnet (a.b.c.d/len)", quote(.0))]
    NotASubnet(String),
    /// A subnet written with host bits set.
    #[error("{} has host bits set (did you mean {network}?)", quote(.value))]
    HostBits {
        /// As written.
        value: String,
        /// The network it probably means.
        network: IpNet,
    },
    /// An IPv6 value where only IPv4 is taken.
    #[error("{} is IPv6, but {why}", quote(.value))]
    Ipv6NotTaken {
        /// As written.
        value: String,
        /// Why this field is IPv4 only.
        why: &'static str,
    },
    /// An IPv4-mapped IPv6 prefix: two families in one rule.
    #[error(
        "{} mixes address families (an IPv4-mapped IPv6 prefix): a rule is IPv4 or IPv6, write \
         {ipv4} for IPv4 sources",
        quote(.value)
    )]
    MixedFamilies {
        /// As written.
        value: String,
        /// The IPv4 prefix it maps.
        ipv4: String,
    },
    /// Not an IPv4 or IPv6 prefix.
    #[error("{} is not an IPv4 or IPv6 subnet (a.b.c.d/len or x:y::/len)", quote(.0))]
    NotASubnetAny(String),
    /// The rule index of a bank would not fit its map.
    #[error(
        "the rules need {entries} {map} entries in the rule index, at most {max} fit in a bank \
         ({own} of them from this table); use fewer port ranges or fewer rules whose prefixes \
         contain other rules' prefixes"
    )]
    IndexTooLarge {
        /// `kw_rule_port` (port ranges) or `kw_rule_exact` (single ports).
        map: &'static str,
        /// Entries the whole configuration needs.
        entries: usize,
        /// Entries of this table.
        own: usize,
        /// Entries of a bank.
        max: usize,
    },
    /// `0.0.0.0`, which can be neither a VIP nor a peer.
    #[error("{} is the unspecified address", quote(.0))]
    Unspecified(String),
    /// A subnet that covers everything where that makes no sense.
    #[error("{} covers every address", quote(.0))]
    Everything(String),
    /// A port list that does not parse.
    #[error("{} is not a port list ({error})", quote(.value))]
    NotAPortList {
        /// As written.
        value: String,
        /// Why.
        error: PortError,
    },
    /// A port range that does not parse.
    #[error("{} is not a port range min-max ({error})", quote(.value))]
    NotAPortRange {
        /// As written.
        value: String,
        /// Why.
        error: PortError,
    },
    /// Unknown protocol name.
    #[error("{} is not a protocol (tcp, udp or icmp)", quote(.0))]
    UnknownProtocol(String),
    /// A protocol this kind of rule does not support.
    #[error("{} is not supported here ({expected})", quote(.value))]
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
    #[error("{} is not allowed: icmp rules have no ports", quote(.0))]
    PortsForIcmp(String),
    /// An address that must be inside the project subnet but is not.
    #[error("{} is not inside kawaii.private_subnet ({subnet})", quote(.value))]
    OutsidePrivateSubnet {
        /// As written.
        value: String,
        /// The project subnet.
        subnet: Ipv4Net,
    },
    /// An address that must be outside the project subnet but is not.
    #[error("{} is inside kawaii.private_subnet ({subnet})", quote(.value))]
    InsidePrivateSubnet {
        /// As written.
        value: String,
        /// The project subnet.
        subnet: Ipv4Net,
    },
    /// A subnet overlapping another one.
    #[error("{} overlaps {other} ({other_value})", quote(.value))]
    Overlaps {
        /// As written.
        value: String,
        /// Path of the other field.
        other: String,
        /// Its value.
        other_value: Ipv4Net,
    },
    /// A DNAT rule whose ports overlap an earlier rule of the same protocol.
    #[error("{} overlaps the {protocol} ports of {other}", quote(.value))]
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
    /// A string longer than its limit.
    #[error("{} is {len} bytes long, at most {max} are allowed", quote(.value))]
    TooLong {
        /// As written.
        value: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
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
    #[error("{} is already used by {other}", quote(.value))]
    Duplicate {
        /// As written.
        value: String,
        /// Path of the first use.
        other: String,
    },
    /// A zone VIP that is not one of `public_ips`.
    #[error("{} is not one of kawaii.public_ips", quote(.0))]
    NotAPublicIp(String),
    /// A name with characters outside `[A-Za-z0-9_.-]`.
    #[error("{} is not a valid name (only A-Z a-z 0-9 _ . - are allowed)", quote(.0))]
    BadName(String),
    /// Not a valid Linux interface name.
    #[error("{} is not an interface name (1-15 characters, no '/', ':' or whitespace)", quote(.0))]
    BadInterfaceName(String),
    /// Unsupported Diffie-Hellman group.
    #[error("{0} is not a supported DH group (2, 5, 14-32)")]
    DhGroup(u32),
    /// Unsupported integrity algorithm.
    #[error("{} is not an integrity algorithm (SHA1, SHA256, SHA384, SHA512)", quote(.0))]
    Integrity(String),
    /// Unsupported encryption algorithm.
    #[error("{} is not an encryption algorithm (AES128, AES256, CAMELLIA128, CAMELLIA256)", quote(.0))]
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
    /// Not a duration.
    #[error("{} is not a duration (seconds, or a number with s, m, h or d)", quote(.0))]
    Duration(String),
    /// A word outside its list.
    #[error("{} is not one of {allowed}", quote(.value))]
    NotOneOf {
        /// The value.
        value: String,
        /// The accepted words.
        allowed: &'static str,
    },
    /// Two connections to one peer with different keys.
    #[error("{other} has the same remote_ip with another pre_shared_key: one key per peer")]
    PeerKeyMismatch {
        /// The other connection's field path.
        other: String,
    },
    /// The name of an IPsec connection gives the same charon name as another.
    #[error("{} gives the charon name {charon:?}, already used by {other}", quote(.value))]
    CharonNameClash {
        /// The name.
        value: String,
        /// The derived name.
        charon: String,
        /// The other connection's field path.
        other: String,
    },
    /// A source outside the subnet it must be in.
    #[error("{} is not inside {what} ({subnet})", quote(.value))]
    OutsideSubnet {
        /// The value.
        value: String,
        /// What the subnet is.
        what: &'static str,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// A path that must be absolute.
    #[error("{} is not an absolute path", quote(.0))]
    NotAbsolute(String),
    /// Neither a `kawaii` nor a `konvey` section.
    #[error("missing: a node runs kawaii, konvey, kiwi or several, and this file has none of these sections")]
    NoService,
    /// A field that is optional in general but required here.
    #[error("missing: {0}")]
    Required(&'static str),
    /// Two fields that say the same thing in two ways, both given.
    #[error("given together with {0}: use one of them")]
    Exclusive(&'static str),
    /// An interface listed for both the Kawaii and the Konvey program.
    #[error(
        "{} already carries the Kawaii program ({other}); an interface runs one program",
        quote(.value)
    )]
    BothPrograms {
        /// The interface.
        value: String,
        /// Where it is listed for Kawaii.
        other: String,
    },
    /// A `node.konvey.health.endpoints` key naming no endpoint.
    #[error("{} is not the name of a konvey endpoint", quote(.0))]
    UnknownEndpoint(String),
}

/// Longest part of an offending value quoted in an error message, in
/// characters; the rest is elided with its size.
pub const MAX_QUOTED: usize = 120;

/// `value` quoted as `{:?}` does (so a newline cannot break the line), cut
/// to [`MAX_QUOTED`] characters with the size of the rest.
///
/// ```
/// use kowabunga_control::config::error::quote;
/// assert_eq!(quote("10.0.0.x"), r#""10.0.0.x""#);
/// let long = "a".repeat(4 << 20);
/// let q = quote(&long);
/// assert!(q.len() < 200, "{q}");
/// assert!(q.ends_with("... (4194184 more bytes)"), "{q}");
/// ```
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}... ({} more bytes)", &value[..cut], value.len() - cut),
    }
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
