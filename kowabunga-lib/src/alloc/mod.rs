//! Allocation rules: subnets, gateways, addresses, MACs, VRIDs, quotas,
//! placement and Multi-Zone expansion. Everything here is pure: it takes the
//! current state as arguments and returns a decision, so it is unit-tested
//! without any backend.

use std::fmt;
use std::str::FromStr;

/// Kowabunga's MAC prefix: every instance NIC is `da:1e:70:xx:xx:xx`.
pub const MAC_PREFIX: [u8; 3] = [0xda, 0x1e, 0x70];

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A MAC address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(|| MacParseError(s.to_owned()))?;
            if p.len() != 2 {
                return Err(MacParseError(s.to_owned()));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| MacParseError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.to_owned()));
        }
        Ok(MacAddr(out))
    }
}

mod address;
mod placement;
mod quota;

pub use address::{
    allocate_mac, allocate_subnet, allocate_vrid, allocate_zone_gateways, first_free_address,
    ProjectSubnet, DEFAULT_GATEWAY_POOL_SIZE,
};
pub use placement::{expand_multi_zone, place, placement_score, HypervisorLoad, ZoneInstance};
pub use quota::{check_quota, Usage};

/// Why an allocation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// Every value of a pool is taken.
    #[error("{pool} pool exhausted: {detail}")]
    PoolExhausted {
        /// `subnet`, `gateway`, `address`, `mac` or `vrid`.
        pool: &'static str,
        /// Which pool, in words.
        detail: String,
    },
    /// A project quota would be exceeded.
    #[error("quota {quota} exceeded: limit {limit}, in use {used}, requested {requested}")]
    QuotaExceeded {
        /// `instances`, `vcpus`, `memory` (GiB) or `storage` (GiB).
        quota: &'static str,
        /// The quota.
        limit: u64,
        /// Already in use.
        used: u64,
        /// Asked for.
        requested: u64,
    },
    /// No hypervisor in the zone.
    #[error("no hypervisor in zone {0:?}")]
    NoHypervisor(String),
    /// The request cannot be served by these pools at all.
    #[error("invalid allocation request: {0}")]
    Invalid(String),
}
