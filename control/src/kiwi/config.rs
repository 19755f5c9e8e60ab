//! The `kiwi` section validated: listen addresses and recursors as socket
//! addresses, zones as lower-case domains with their names and addresses,
//! isolation subnets. Every error names the field and its value.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::config::error::{err, ErrorKind, ValidationError};
use crate::config::model::Kiwi;

/// The DNS port, for addresses written without one.
pub const DNS_PORT: u16 = 53;
/// Bounds of `kiwi.forward_timeout_ms`.
pub const FORWARD_TIMEOUT_MS: (u64, u64) = (100, 60_000);
/// Bounds of `kiwi.cache_entries` (0 turns the cache off).
pub const MAX_CACHE_ENTRIES: u64 = 10_000_000;
/// Most UDP receive loops per listen address.
pub const MAX_UDP_WORKERS: usize = 64;
/// Most addresses one name answers: they must fit a TCP answer.
pub const MAX_ADDRESSES: usize = 1000;
/// Longest domain name in text form (RFC 1035: 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 253;

/// A validated `kiwi` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKiwi {
    /// Where the server listens (UDP and TCP).
    pub listen: Vec<SocketAddr>,
    /// Where other names are forwarded.
    pub recursors: Vec<SocketAddr>,
    /// Bound on one forwarded query.
    pub forward_timeout: Duration,
    /// Forwarder cache entries.
    pub cache_entries: u64,
    /// TTL of the zones' records and SOA minimum.
    pub ttl: u32,
    /// UDP receive loops per listen address.
    pub udp_workers: usize,
    /// Authoritative zones.
    pub zones: Vec<ValidZone>,
}

/// A validated zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidZone {
    /// Lower-case domain without the final dot (`acme.local`).
    pub domain: String,
    /// Clients allowed to query it (empty: everyone).
    pub allow_from: Vec<IpNet>,
    /// Lower-case relative name -> addresses, in the order written.
    pub records: BTreeMap<String, Vec<IpAddr>>,
}

fn kiwi_err<T>(path: impl Into<String>, message: String) -> Result<T, ValidationError> {
    err(path, ErrorKind::Kiwi(message))
}

/// Parses `a.b.c.d`, `a.b.c.d:port`, `v6` or `[v6]:port` (port 53 when
/// absent).
///
/// # Errors
/// The text is none of these, or its port is 0.
pub fn parse_endpoint(path: &str, text: &str) -> Result<SocketAddr, ValidationError> {
    let text = text.trim();
    let addr = match text.parse::<SocketAddr>() {
        Ok(sa) => sa,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, DNS_PORT),
            Err(_) => {
                return kiwi_err(
                    path,
                    format!("{text:?} is not an address (a.b.c.d, a.b.c.d:port, v6 or [v6]:port)"),
                )
            }
        },
    };
    if addr.port() == 0 {
        return kiwi_err(path, format!("{text:?} has port 0"));
    }
    Ok(addr)
}

/// Checks a domain or relative name: dot-separated labels of 1-63 letters,
/// digits, `-` or `_`, not starting or ending with `-`; returns it in lower
/// case without a final dot.
///
/// # Errors
/// The first label that breaks a rule, or a name longer than 253 characters.
pub fn check_dns_name(path: &str, text: &str) -> Result<String, ValidationError> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return kiwi_err(
            path,
            format!("{text:?} is not a DNS name (1-253 characters)"),
        );
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return kiwi_err(
                path,
                format!(
                    "{text:?} is not a DNS name (label {label:?}: 1-63 letters, digits, '-' or '_', no '-' at either end)"
                ),
            );
        }
    }
    Ok(name)
}

/// Validates the `kiwi` section.
///
/// # Errors
/// The first problem found, with its field path.
pub fn validate_kiwi(kiwi: &Kiwi) -> Result<ValidKiwi, ValidationError> {
    if kiwi.listen.is_empty() {
        return err("kiwi.listen", ErrorKind::EmptyList);
    }
    let mut listen = Vec::new();
    for (i, text) in kiwi.listen.iter().enumerate() {
        let path = format!("kiwi.listen[{i}]");
        let addr = parse_endpoint(&path, text)?;
        if listen.contains(&addr) {
            return kiwi_err(path, format!("{text:?} is listed twice"));
        }
        listen.push(addr);
    }
    let mut recursors = Vec::new();
    for (i, text) in kiwi.recursors.iter().enumerate() {
        let path = format!("kiwi.recursors[{i}]");
        let addr = parse_endpoint(&path, text)?;
        if addr.ip().is_unspecified() {
            return err(path, ErrorKind::Unspecified(text.clone()));
        }
        recursors.push(addr);
    }
    let (lo, hi) = FORWARD_TIMEOUT_MS;
    if !(lo..=hi).contains(&kiwi.forward_timeout_ms) {
        return err(
            "kiwi.forward_timeout_ms",
            ErrorKind::OutOfRange {
                value: kiwi.forward_timeout_ms,
                min: lo,
                max: hi,
            },
        );
    }
    if kiwi.cache_entries > MAX_CACHE_ENTRIES {
        return err(
            "kiwi.cache_entries",
            ErrorKind::OutOfRange {
                value: kiwi.cache_entries,
                min: 0,
                max: MAX_CACHE_ENTRIES,
            },
        );
    }
    let udp_workers = match kiwi.udp_workers {
        Some(n) if n == 0 || n > MAX_UDP_WORKERS => {
            return err(
                "kiwi.udp_workers",
                ErrorKind::OutOfRange {
                    value: n as u64,
                    min: 1,
                    max: MAX_UDP_WORKERS as u64,
                },
            )
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_UDP_WORKERS)),
    };
    let mut zones = Vec::new();
    let mut domains = BTreeSet::new();
    for (z, zone) in kiwi.zones.iter().enumerate() {
        let zpath = format!("kiwi.zones[{z}]");
        let domain = check_dns_name(&format!("{zpath}.domain"), &zone.domain)?;
        if !domains.insert(domain.clone()) {
            return kiwi_err(
                format!("{zpath}.domain"),
                format!("{:?} is the domain of another zone", zone.domain),
            );
        }
        let mut allow_from = Vec::new();
        for (i, text) in zone.allow_from.iter().enumerate() {
            let path = format!("{zpath}.allow_from[{i}]");
            let net = match text.trim().parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match text.trim().parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return kiwi_err(path, format!("{text:?} is not a subnet (address/len)"))
                    }
                },
            };
            if net.trunc() != net {
                return kiwi_err(
                    path,
                    format!("{text:?} has host bits set (did you mean {}?)", net.trunc()),
                );
            }
            allow_from.push(net);
        }
        let mut records = BTreeMap::new();
        for (r, record) in zone.records.iter().enumerate() {
            let rpath = format!("{zpath}.records[{r}]");
            let name = check_dns_name(&format!("{rpath}.name"), &record.name)?;
            if name.len() + domain.len() + 1 > MAX_NAME_LEN {
                return kiwi_err(
                    format!("{rpath}.name"),
                    format!(
                        "{:?} makes a name longer than {MAX_NAME_LEN} characters",
                        record.name
                    ),
                );
            }
            if record.addresses.is_empty() {
                return err(format!("{rpath}.addresses"), ErrorKind::EmptyList);
            }
            if record.addresses.len() > MAX_ADDRESSES {
                return kiwi_err(
                    format!("{rpath}.addresses"),
                    format!(
                        "{} addresses, at most {MAX_ADDRESSES}",
                        record.addresses.len()
                    ),
                );
            }
            let mut addresses = Vec::with_capacity(record.addresses.len());
            for (i, text) in record.addresses.iter().enumerate() {
                let path = format!("{rpath}.addresses[{i}]");
                let ip: IpAddr = match text.trim().parse() {
                    Ok(ip) => ip,
                    Err(_) => return kiwi_err(path, format!("{text:?} is not an IP address")),
                };
                if ip.is_unspecified() {
                    return err(path, ErrorKind::Unspecified(text.clone()));
                }
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
            if records.insert(name, addresses).is_some() {
                return kiwi_err(
                    format!("{rpath}.name"),
                    format!("{:?} is listed twice in the zone", record.name),
                );
            }
        }
        zones.push(ValidZone {
            domain,
            allow_from,
            records,
        });
    }
    Ok(ValidKiwi {
        listen,
        recursors,
        forward_timeout: Duration::from_millis(kiwi.forward_timeout_ms),
        cache_entries: kiwi.cache_entries,
        ttl: kiwi.ttl,
        udp_workers,
        zones,
    })
}
