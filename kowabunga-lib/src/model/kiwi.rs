//! Kiwi, the region's DNS server: the `kiwi` section of a `kowabungad`
//! configuration, as the library renders it from its inventory
//! ([`crate::cloud::Cloud::kiwi_section`]) and the daemon reads it.
//!
//! Like the other sections the types are syntactic (addresses and subnets
//! are the text written); `kowabungad` validates them, naming the field.
//!
//! ```
//! use kowabunga::model::kiwi::Kiwi;
//!
//! let yaml = r#"
//! listen: [10.0.0.2]
//! recursors: [192.0.2.53]
//! zones:
//!   - domain: acme.local
//!     allow_from: [10.0.0.0/25]
//!     records:
//!       - {name: acme-server, addresses: [10.0.0.10]}
//!       - {name: ad, addresses: [10.0.0.10, 10.0.0.11]}
//! "#;
//! let kiwi: Kiwi = serde_norway::from_str(yaml).unwrap();
//! assert_eq!(kiwi.ttl, 60);
//! assert_eq!(kiwi.zones[0].records[1].addresses.len(), 2);
//! let again: Kiwi = serde_norway::from_str(&kiwi.to_yaml()).unwrap();
//! assert_eq!(again, kiwi);
//! ```

use serde::{Deserialize, Serialize};

/// Default TTL of Kiwi's records, seconds: short, since instances come and
/// go and every reload changes what the zone holds.
pub const DEFAULT_TTL: u32 = 60;
/// Default bound on one forwarded query, ms: past it the client gets
/// SERVFAIL.
pub const DEFAULT_FORWARD_TIMEOUT_MS: u64 = 2000;
/// Default size of the forwarder's cache, in entries.
pub const DEFAULT_CACHE_ENTRIES: u64 = 10_000;

/// The `kiwi` section: where the server listens, where it forwards, and
/// the zones it is authoritative for (one per project domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kiwi {
    /// Addresses served over UDP and TCP: `a.b.c.d`, `a.b.c.d:port`,
    /// `[v6]:port` or `v6` (port 53 by default).
    pub listen: Vec<String>,
    /// Recursors every name outside the zones is forwarded to (address,
    /// optional port as in `listen`). None: such names get REFUSED.
    #[serde(default)]
    pub recursors: Vec<String>,
    /// Bound on one forwarded query, ms (SERVFAIL past it).
    #[serde(default = "default_forward_timeout_ms")]
    pub forward_timeout_ms: u64,
    /// Entries of the forwarder's cache.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: u64,
    /// TTL of the zones' records, seconds (also the SOA minimum).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// UDP receive loops per listen address (`SO_REUSEPORT` sockets;
    /// default: one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_workers: Option<usize>,
    /// The zones Kiwi answers for itself.
    #[serde(default)]
    pub zones: Vec<KiwiZone>,
}

/// One authoritative zone: a project's domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KiwiZone {
    /// The domain, e.g. `acme.local`.
    pub domain: String,
    /// Isolation: when not empty, only clients in these subnets (the
    /// project's subnet and its peered subnets) get answers from this zone;
    /// others get REFUSED.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<String>,
    /// The names of the zone.
    #[serde(default)]
    pub records: Vec<KiwiRecord>,
}

/// A name of a zone and every address it answers (A and AAAA), in the
/// order written; Kiwi rotates it between answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KiwiRecord {
    /// Name relative to the zone (`acme-server`, `ad`).
    pub name: String,
    /// IPv4 and IPv6 addresses.
    pub addresses: Vec<String>,
}

impl Kiwi {
    /// A section with the defaults, listening on `listen` and forwarding
    /// to `recursors`, without zones.
    pub fn new(listen: Vec<String>, recursors: Vec<String>) -> Self {
        Kiwi {
            listen,
            recursors,
            forward_timeout_ms: DEFAULT_FORWARD_TIMEOUT_MS,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            ttl: DEFAULT_TTL,
            udp_workers: None,
            zones: Vec::new(),
        }
    }

    /// The section as YAML (the value of the `kiwi:` key).
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_default()
    }

    /// The zone of `domain`, if any.
    pub fn zone(&self, domain: &str) -> Option<&KiwiZone> {
        self.zones.iter().find(|z| z.domain == domain)
    }
}

impl KiwiZone {
    /// The addresses of `name` in this zone, if it has it.
    pub fn addresses(&self, name: &str) -> Option<&[String]> {
        self.records
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.addresses.as_slice())
    }
}

fn default_forward_timeout_ms() -> u64 {
    DEFAULT_FORWARD_TIMEOUT_MS
}

fn default_cache_entries() -> u64 {
    DEFAULT_CACHE_ENTRIES
}

fn default_ttl() -> u32 {
    DEFAULT_TTL
}
