//! Outcome counters: `kw_stats`, one per-CPU `kw_counter` per `kw_stat`.

use aya::maps::{MapData, MapError, PerCpuArray, PerCpuValues};
use kowabunga_bindings::{kw_counter, kw_stat};

use crate::{kawaii::MAP_STATS, Kawaii};

/// Number of counters (`KW_STAT_COUNT`).
pub const STAT_COUNT: usize = kw_stat::KW_STAT_COUNT as usize;

/// Every `kw_stat` value with its snake_case name (the constant without
/// `KW_STAT_`), in value order.
pub const STAT_NAMES: [(kw_stat::Type, &str); STAT_COUNT] = [
    (kw_stat::KW_STAT_FWD_REDIRECT, "fwd_redirect"),
    (kw_stat::KW_STAT_PASS_NOT_IPV4, "pass_not_ipv4"),
    (kw_stat::KW_STAT_PASS_NO_CONFIG, "pass_no_config"),
    (kw_stat::KW_STAT_PASS_LOCAL, "pass_local"),
    (kw_stat::KW_STAT_PASS_NOT_OURS, "pass_not_ours"),
    (kw_stat::KW_STAT_PASS_TO_HOST, "pass_to_host"),
    (kw_stat::KW_STAT_PASS_IPSEC, "pass_ipsec"),
    (kw_stat::KW_STAT_PASS_TTL, "pass_ttl"),
    (kw_stat::KW_STAT_PASS_NO_NEIGH, "pass_no_neigh"),
    (kw_stat::KW_STAT_PASS_FIB, "pass_fib"),
    (kw_stat::KW_STAT_DROP_MALFORMED, "drop_malformed"),
    (kw_stat::KW_STAT_DROP_MALFORMED_L4, "drop_malformed_l4"),
    (kw_stat::KW_STAT_DROP_IP_OPTIONS, "drop_ip_options"),
    (kw_stat::KW_STAT_DROP_FRAGMENT, "drop_fragment"),
    (kw_stat::KW_STAT_DROP_SPOOFED, "drop_spoofed"),
    (kw_stat::KW_STAT_DROP_TO_PRIVATE, "drop_to_private"),
    (kw_stat::KW_STAT_DROP_INGRESS_DENIED, "drop_ingress_denied"),
    (kw_stat::KW_STAT_DROP_EGRESS_DENIED, "drop_egress_denied"),
    (kw_stat::KW_STAT_DROP_PEERING_DENIED, "drop_peering_denied"),
    (kw_stat::KW_STAT_DROP_TCP_NOT_SYN, "drop_tcp_not_syn"),
    (kw_stat::KW_STAT_DROP_UNSUPPORTED, "drop_unsupported"),
    (kw_stat::KW_STAT_DROP_ICMP_UNMATCHED, "drop_icmp_unmatched"),
    (kw_stat::KW_STAT_DROP_NO_PORT, "drop_no_port"),
    (kw_stat::KW_STAT_DROP_CT_COLLISION, "drop_ct_collision"),
    (kw_stat::KW_STAT_DROP_CT_FULL, "drop_ct_full"),
    (kw_stat::KW_STAT_DROP_NO_SERVICE, "drop_no_service"),
    (kw_stat::KW_STAT_DROP_NO_BACKEND, "drop_no_backend"),
    (kw_stat::KW_STAT_PASS_FRAGMENT, "pass_fragment"),
    (kw_stat::KW_STAT_DROP_FIB, "drop_fib"),
    (kw_stat::KW_STAT_DROP_TTL, "drop_ttl"),
    (kw_stat::KW_STAT_DROP_IPV6, "drop_ipv6"),
    (kw_stat::KW_STAT_PASS_HOST_REPLY, "pass_host_reply"),
    (kw_stat::KW_STAT_PASS_HOST_FRAGMENT, "pass_host_fragment"),
    (kw_stat::KW_STAT_PASS_VRRP, "pass_vrrp"),
    (kw_stat::KW_STAT_DROP_HOST_DENIED, "drop_host_denied"),
    (kw_stat::KW_STAT_DROP_IPSEC_DOWN, "drop_ipsec_down"),
    (kw_stat::KW_STAT_CT_CONFIRM_FULL, "ct_confirm_full"),
];

/// The name of a `kw_stat` value (`"unknown"` outside the enum).
///
/// ```
/// use kowabunga_bindings::kw_stat;
/// use kowabunga_dataplane::stats::stat_name;
/// assert_eq!(stat_name(kw_stat::KW_STAT_DROP_FRAGMENT), "drop_fragment");
/// ```
pub fn stat_name(stat: kw_stat::Type) -> &'static str {
    STAT_NAMES
        .get(stat as usize)
        .map_or("unknown", |(_, name)| *name)
}

/// Whether a counter is a packet outcome (`fwd_`, `pass_`, `drop_`): every
/// packet is counted in exactly one outcome. Other counters (`ct_`) count
/// events a packet may also cause.
///
/// ```
/// use kowabunga_bindings::kw_stat;
/// use kowabunga_dataplane::stats::is_outcome;
/// assert!(is_outcome(kw_stat::KW_STAT_DROP_CT_FULL));
/// assert!(!is_outcome(kw_stat::KW_STAT_CT_CONFIRM_FULL));
/// ```
pub fn is_outcome(stat: kw_stat::Type) -> bool {
    let name = stat_name(stat);
    ["fwd_", "pass_", "drop_"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Whether a counter counts drops (its name starts with `drop_`).
pub fn is_drop(stat: kw_stat::Type) -> bool {
    stat_name(stat).starts_with("drop_")
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The counters map is missing from the object.
    #[error("map {MAP_STATS} not found in the loaded object")]
    MissingMap,
    /// A map operation failed.
    #[error("map {MAP_STATS}: {what} failed")]
    Map {
        /// The operation.
        what: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The number of CPUs could not be read.
    #[error("cannot size the per-CPU values")]
    Cpus(#[source] std::io::Error),
}

/// The counters summed over all CPUs, indexed by `kw_stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    values: [kw_counter; STAT_COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            values: [kw_counter::default(); STAT_COUNT],
        }
    }
}

impl Counters {
    /// Counters from per-stat values (index = `kw_stat`).
    pub fn from_values(values: [kw_counter; STAT_COUNT]) -> Self {
        Self { values }
    }

    /// One counter; zero for a value outside `kw_stat`.
    pub fn get(&self, stat: kw_stat::Type) -> kw_counter {
        self.values.get(stat as usize).copied().unwrap_or_default()
    }

    /// Packets counted under `stat`.
    pub fn packets(&self, stat: kw_stat::Type) -> u64 {
        self.get(stat).packets
    }

    /// Every counter with its name, in `kw_stat` order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, kw_counter)> + '_ {
        STAT_NAMES
            .iter()
            .zip(self.values.iter())
            .map(|((_, name), c)| (*name, *c))
    }

    /// Counters increased since `earlier` (saturating), for rates and tests.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut values = self.values;
        for (v, e) in values.iter_mut().zip(earlier.values.iter()) {
            v.packets = v.packets.saturating_sub(e.packets);
            v.bytes = v.bytes.saturating_sub(e.bytes);
        }
        Counters { values }
    }

    /// Total packets over all outcome counters ([`is_outcome`]).
    pub fn total_packets(&self) -> u64 {
        self.values
            .iter()
            .enumerate()
            .filter(|(i, _)| is_outcome(*i as kw_stat::Type))
            .map(|(_, c)| c.packets)
            .sum()
    }
}

/// The stats methods of a loaded object (`Kawaii`, `Konvey`): both
/// have the shared maps of `kw_maps.h`.
macro_rules! stats_api {
    ($object:ty) => {
        impl $object {
            fn stats_map(&self) -> Result<PerCpuArray<&MapData, kw_counter>, Error> {
                let map = self.map(MAP_STATS).ok_or(Error::MissingMap)?;
                PerCpuArray::try_from(map).map_err(|source| Error::Map {
                    what: "open",
                    source,
                })
            }

            /// Reads every counter, summed over the CPUs.
            pub fn counters(&self) -> Result<Counters, Error> {
                let map = self.stats_map()?;
                let mut values = [kw_counter::default(); STAT_COUNT];
                for (i, slot) in values.iter_mut().enumerate() {
                    let per_cpu = map.get(&(i as u32), 0).map_err(|source| Error::Map {
                        what: "read",
                        source,
                    })?;
                    for c in per_cpu.iter() {
                        slot.packets = slot.packets.wrapping_add(c.packets);
                        slot.bytes = slot.bytes.wrapping_add(c.bytes);
                    }
                }
                Ok(Counters { values })
            }

            /// Sets every counter of every CPU to zero.
            pub fn reset_counters(&mut self) -> Result<(), Error> {
                let cpus = aya::util::nr_cpus().map_err(|(_, e)| Error::Cpus(e))?;
                let map = self.map_mut(MAP_STATS).ok_or(Error::MissingMap)?;
                let mut map: PerCpuArray<&mut MapData, kw_counter> = PerCpuArray::try_from(map)
                    .map_err(|source| Error::Map {
                        what: "open",
                        source,
                    })?;
                for i in 0..STAT_COUNT as u32 {
                    let zeros = PerCpuValues::try_from(vec![kw_counter::default(); cpus])
                        .map_err(Error::Cpus)?;
                    map.set(i, zeros, 0).map_err(|source| Error::Map {
                        what: "write",
                        source,
                    })?;
                }
                Ok(())
            }
        }
    };
}

stats_api!(Kawaii);
stats_api!(crate::Konvey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_every_stat_exactly() {
        for (i, (value, name)) in STAT_NAMES.iter().enumerate() {
            assert_eq!(*value as usize, i, "{name} out of order");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name} is not snake_case"
            );
        }
        assert_eq!(STAT_NAMES.len(), kw_stat::KW_STAT_COUNT as usize);
        let mut names: Vec<_> = STAT_NAMES.iter().map(|(_, n)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STAT_COUNT, "duplicate names");
        assert_eq!(stat_name(kw_stat::KW_STAT_COUNT), "unknown");
        assert!(is_drop(kw_stat::KW_STAT_DROP_CT_FULL));
        assert!(!is_drop(kw_stat::KW_STAT_PASS_FIB));
    }

    #[test]
    fn counters_subtract_and_sum() {
        let mut a = [kw_counter::default(); STAT_COUNT];
        a[0] = kw_counter {
            packets: 10,
            bytes: 1000,
        };
        a[13] = kw_counter {
            packets: 3,
            bytes: 300,
        };
        let mut b = a;
        b[0] = kw_counter {
            packets: 4,
            bytes: 400,
        };
        let (a, b) = (Counters::from_values(a), Counters::from_values(b));
        let d = a.since(&b);
        assert_eq!(d.get(kw_stat::KW_STAT_FWD_REDIRECT).packets, 6);
        assert_eq!(d.packets(kw_stat::KW_STAT_DROP_FRAGMENT), 0);
        assert_eq!(a.total_packets(), 13);
        assert_eq!(
            a.iter().nth(13).map(|(n, c)| (n, c.bytes)),
            Some(("drop_fragment", 300))
        );
    }
}
