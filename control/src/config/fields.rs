//! Validators shared by every section: addresses, prefixes, protocols,
//! port lists, names, counts. Each takes the field path, so its error
//! names the field and the value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::error::{err, ErrorKind, ValidationError};
use super::model::PortSpec;
use super::ports::{parse_port_list, parse_port_range};

/// Linux `IFNAMSIZ - 1`: the longest interface name.
pub const MAX_IFNAME_LEN: usize = 15;

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

/// A validated peering rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port ranges; empty for icmp.
    pub ports: Vec<(u16, u16)>,
}

/// An IPv4 address at `path`.
///
/// # Errors
/// [`ErrorKind::NotAnAddress`].
pub fn parse_addr(path: &str, text: &str) -> Result<Ipv4Addr, ValidationError> {
    match text.trim().parse::<Ipv4Addr>() {
        Ok(addr) => Ok(addr),
        Err(_) => err(path, ErrorKind::NotAnAddress(text.to_owned())),
    }
}

/// A subnet `a.b.c.d/len` without host bits; with `allow_host`, a bare
/// address stands for its /32.
///
/// # Errors
/// [`ErrorKind::NotASubnet`] or [`ErrorKind::HostBits`].
pub fn parse_net(path: &str, text: &str, allow_host: bool) -> Result<Ipv4Net, ValidationError> {
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
                network: net.trunc().into(),
            },
        );
    }
    Ok(net)
}

/// Whether `text` is written as IPv6 (an address or prefix with a colon).
pub fn looks_ipv6(text: &str) -> bool {
    text.contains(':')
}

/// An IPv4 subnet (as [`parse_net`]) in a field that takes no IPv6: an
/// IPv6 value is refused with `why`.
///
/// # Errors
/// [`ErrorKind::Ipv6NotTaken`], or those of [`parse_net`].
pub fn parse_net_v4_only(
    path: &str,
    text: &str,
    allow_host: bool,
    why: &'static str,
) -> Result<Ipv4Net, ValidationError> {
    if looks_ipv6(text) {
        return err(
            path,
            ErrorKind::Ipv6NotTaken {
                value: text.to_owned(),
                why,
            },
        );
    }
    parse_net(path, text, allow_host)
}

/// An IPv4 or IPv6 subnet without host bits; with `allow_host`, a bare
/// address stands for its /32 or /128. IPv4-mapped IPv6 prefixes
/// (`::ffff:a.b.c.d`) are refused: a rule is of one family.
///
/// # Errors
/// [`ErrorKind::NotASubnetAny`], [`ErrorKind::HostBits`] or
/// [`ErrorKind::MixedFamilies`].
pub fn parse_net_any(path: &str, text: &str, allow_host: bool) -> Result<IpNet, ValidationError> {
    let trimmed = text.trim();
    if !looks_ipv6(trimmed) {
        return match parse_net(path, text, allow_host) {
            Ok(net) => Ok(IpNet::V4(net)),
            Err(e) if matches!(e.kind, ErrorKind::NotASubnet(_)) => {
                err(path, ErrorKind::NotASubnetAny(text.to_owned()))
            }
            Err(e) => Err(e),
        };
    }
    let net = match trimmed.parse::<Ipv6Net>() {
        Ok(net) => net,
        Err(_) => match (allow_host, trimmed.parse::<IpAddr>()) {
            (true, Ok(IpAddr::V6(addr))) => Ipv6Net::from(addr),
            _ => return err(path, ErrorKind::NotASubnetAny(text.to_owned())),
        },
    };
    if net.trunc() != net {
        return err(
            path,
            ErrorKind::HostBits {
                value: text.to_owned(),
                network: net.trunc().into(),
            },
        );
    }
    let mapped: Ipv6Net = "::ffff:0:0/96".parse().expect("static prefix");
    if net.prefix_len() >= 96 && mapped.contains(&net.network()) {
        let v4 = net
            .network()
            .to_ipv4_mapped()
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let ipv4 = format!("{v4}/{}", net.prefix_len() - 96);
        return err(
            path,
            ErrorKind::MixedFamilies {
                value: text.to_owned(),
                ipv4,
            },
        );
    }
    Ok(IpNet::V6(net))
}

/// Whether two prefixes share an address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `tcp`, `udp` or `icmp` at `path`.
///
/// # Errors
/// [`ErrorKind::UnknownProtocol`].
pub fn parse_protocol(path: &str, text: &str) -> Result<Protocol, ValidationError> {
    match Protocol::parse(text.trim()) {
        Some(p) => Ok(p),
        None => err(path, ErrorKind::UnknownProtocol(text.to_owned())),
    }
}

/// A port list (`"22,80,3000-3005"`) at `path`.
///
/// # Errors
/// [`ErrorKind::NotAPortList`].
pub fn parse_ports(path: &str, spec: &PortSpec) -> Result<Vec<(u16, u16)>, ValidationError> {
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
///
/// # Errors
/// The protocol or port list is wrong, or missing / present against the
/// protocol.
pub fn parse_proto_ports(
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

/// Longest name (zone, instance, endpoint, connection), in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A name of `[A-Za-z0-9_.-]+`, at most [`MAX_NAME_LEN`] long.
///
/// # Errors
/// [`ErrorKind::Empty`], [`ErrorKind::TooLong`] or [`ErrorKind::BadName`].
pub fn check_name(path: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return err(path, ErrorKind::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return err(
            path,
            ErrorKind::TooLong {
                value: name.to_owned(),
                len: name.len(),
                max: MAX_NAME_LEN,
            },
        );
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return err(path, ErrorKind::BadName(name.to_owned()));
    }
    Ok(())
}

/// A Linux interface name.
///
/// # Errors
/// [`ErrorKind::BadInterfaceName`].
pub fn check_ifname(path: &str, name: &str) -> Result<(), ValidationError> {
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

/// At most `max` entries.
///
/// # Errors
/// [`ErrorKind::TooMany`].
pub fn check_count(path: &str, count: usize, max: u32) -> Result<(), ValidationError> {
    let max = max as usize;
    if count > max {
        return err(path, ErrorKind::TooMany { count, max });
    }
    Ok(())
}

/// Fails when `net` overlaps one of `others` (field path, prefix).
///
/// # Errors
/// [`ErrorKind::Overlaps`] naming the other field.
pub fn check_disjoint(
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

/// A port range `"min-max"` at `path`.
///
/// # Errors
/// [`ErrorKind::NotAPortRange`].
pub fn parse_range(path: &str, spec: &PortSpec) -> Result<(u16, u16), ValidationError> {
    parse_port_range(spec.as_str()).or_else(|error| {
        err(
            path,
            ErrorKind::NotAPortRange {
                value: spec.as_str().to_owned(),
                error,
            },
        )
    })
}

/// Fails when `name` is already the name of the entry `j` of `earlier`
/// (`other` formats that entry's field path).
///
/// # Errors
/// [`ErrorKind::Duplicate`] naming the first use.
pub fn check_unique<'a>(
    path: &str,
    name: &str,
    earlier: impl IntoIterator<Item = &'a str>,
    other: impl Fn(usize) -> String,
) -> Result<(), ValidationError> {
    match earlier.into_iter().position(|o| o == name) {
        Some(j) => err(
            path,
            ErrorKind::Duplicate {
                value: name.to_owned(),
                other: other(j),
            },
        ),
        None => Ok(()),
    }
}

/// `v` within `min..=max`.
///
/// # Errors
/// [`ErrorKind::OutOfRange`].
pub fn check_range<T: Copy + Into<u64> + PartialOrd>(
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
