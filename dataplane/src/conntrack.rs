//! Connection tracking: listing `kw_ct4` and sweeping expired flows.
//!
//! A flow has two entries. An entry says how to rewrite a packet whose tuple
//! equals its key; the other entry of the flow is keyed by the reverse of that
//! rewritten tuple ([`peer_key`]). The kernel only refreshes `last_seen_ns`;
//! the daemon removes a flow when every entry it still has is older than the
//! timeout of the flow (RFC 5382 / RFC 4787, the `KW_CT_TIMEOUT_*` constants).
//!
//! The expiry decision ([`expired_flows`]) is a pure function of the entries
//! and the clock, so it is tested without a kernel.

use std::{collections::HashMap as StdHashMap, time::Duration};

use aya::maps::{HashMap, MapData, MapError};
use kowabunga_bindings::{
    kw_ct_key, kw_ct_state, kw_ct_value, KW_CT_TIMEOUT_ICMP_S, KW_CT_TIMEOUT_TCP_ESTABLISHED_S,
    KW_CT_TIMEOUT_TCP_TRANSITORY_S, KW_CT_TIMEOUT_UDP_S,
};

use crate::{kawaii::MAP_CT4, Kawaii};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const NS_PER_S: u64 = 1_000_000_000;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The conntrack map is missing from the object.
    #[error("map {MAP_CT4} not found in the loaded object")]
    MissingMap,
    /// A map operation failed.
    #[error("map {MAP_CT4}: {what} failed")]
    Map {
        /// The operation.
        what: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
}

/// One conntrack entry.
pub type Entry = (kw_ct_key, kw_ct_value);

/// What [`Kawaii::sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Entries read.
    pub scanned: usize,
    /// Flows found expired.
    pub flows_expired: usize,
    /// Entries deleted (one or two per flow).
    pub entries_removed: usize,
}

/// Key of the other entry of the flow of `(key, value)`: the reverse of the
/// rewritten tuple.
pub fn peer_key(key: &kw_ct_key, value: &kw_ct_value) -> kw_ct_key {
    kw_ct_key {
        saddr: value.nat_daddr,
        daddr: value.nat_saddr,
        sport: value.nat_dport,
        dport: value.nat_sport,
        proto: key.proto,
        _pad: [0; 3],
    }
}

/// Idle timeout of an entry of protocol `proto` in state `state`:
/// TCP established 7440 s, TCP new or closing (or an unknown state) 240 s,
/// UDP 120 s, ICMP 60 s, any other protocol as UDP.
pub fn timeout(proto: u8, state: u8) -> Duration {
    let secs = match proto {
        IPPROTO_TCP if u32::from(state) == kw_ct_state::KW_CT_ESTABLISHED => {
            KW_CT_TIMEOUT_TCP_ESTABLISHED_S
        }
        IPPROTO_TCP => KW_CT_TIMEOUT_TCP_TRANSITORY_S,
        IPPROTO_UDP => KW_CT_TIMEOUT_UDP_S,
        IPPROTO_ICMP => KW_CT_TIMEOUT_ICMP_S,
        _ => KW_CT_TIMEOUT_UDP_S,
    };
    Duration::from_secs(u64::from(secs))
}

/// How far a state is in the life of a flow: new < established < closing,
/// unknown values last. The flow's state is that of its most advanced entry.
fn state_rank(state: u8) -> u8 {
    match u32::from(state) {
        kw_ct_state::KW_CT_NEW => 0,
        kw_ct_state::KW_CT_ESTABLISHED => 1,
        kw_ct_state::KW_CT_CLOSING => 2,
        _ => 3,
    }
}

/// Whether a flow made of `entries` (one or two) has expired at `now_ns`.
///
/// The flow's timeout follows its most advanced state (a FIN seen in one
/// direction makes the whole flow transitory); the flow expires when every
/// entry was last seen more than that timeout ago. Entries seen after `now_ns`
/// are fresh.
pub fn flow_expired(entries: &[&Entry], now_ns: u64) -> bool {
    let Some(state) = entries
        .iter()
        .map(|(_, v)| v.state)
        .max_by_key(|s| state_rank(*s))
    else {
        return false;
    };
    let proto = entries[0].0.proto;
    let limit = timeout(proto, state).as_nanos() as u64;
    entries
        .iter()
        .all(|(_, v)| now_ns.saturating_sub(v.last_seen_ns) > limit)
}

/// The keys to delete at `now_ns`: both entries of every expired flow, and
/// expired entries whose peer is gone. Pure; the result has no duplicates.
pub fn expired_flows(entries: &[Entry], now_ns: u64) -> Vec<Vec<kw_ct_key>> {
    let index: StdHashMap<kw_ct_key, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (*k, i))
        .collect();
    let mut seen = vec![false; entries.len()];
    let mut flows = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if seen[i] {
            continue;
        }
        seen[i] = true;
        let mut flow = vec![entry];
        if let Some(&j) = index.get(&peer_key(&entry.0, &entry.1)) {
            if !seen[j] {
                seen[j] = true;
                flow.push(&entries[j]);
            }
        }
        if flow_expired(&flow, now_ns) {
            flows.push(flow.iter().map(|(k, _)| *k).collect());
        }
    }
    flows
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_coarse_ns()`,
/// which stamps `kw_ct_value::last_seen_ns`.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64) * NS_PER_S + ts.tv_nsec as u64
}

pub(crate) fn is_enoent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// The conntrack methods of a loaded object (`Kawaii`, `Konvey`): both
/// have the shared maps of `kw_maps.h`.
macro_rules! conntrack_api {
    ($object:ty) => {
        impl $object {
            fn ct(&self) -> Result<HashMap<&MapData, kw_ct_key, kw_ct_value>, Error> {
                let map = self.map(MAP_CT4).ok_or(Error::MissingMap)?;
                HashMap::try_from(map).map_err(|source| Error::Map {
                    what: "open",
                    source,
                })
            }

            fn ct_mut(&mut self) -> Result<HashMap<&mut MapData, kw_ct_key, kw_ct_value>, Error> {
                let map = self.map_mut(MAP_CT4).ok_or(Error::MissingMap)?;
                HashMap::try_from(map).map_err(|source| Error::Map {
                    what: "open",
                    source,
                })
            }

            /// Every conntrack entry (a snapshot: the kernel keeps changing the map).
            pub fn conntrack_entries(&self) -> Result<Vec<Entry>, Error> {
                self.ct()?
                    .iter()
                    .collect::<Result<_, _>>()
                    .map_err(|source| Error::Map {
                        what: "iterate",
                        source,
                    })
            }

            /// One conntrack entry.
            pub fn conntrack_get(&self, key: &kw_ct_key) -> Result<Option<kw_ct_value>, Error> {
                match self.ct()?.get(key, 0) {
                    Ok(v) => Ok(Some(v)),
                    Err(e) if is_enoent(&e) => Ok(None),
                    Err(source) => Err(Error::Map {
                        what: "read",
                        source,
                    }),
                }
            }

            /// Inserts or replaces one entry (tests, state restore).
            pub fn conntrack_insert(
                &mut self,
                key: &kw_ct_key,
                value: &kw_ct_value,
            ) -> Result<(), Error> {
                self.ct_mut()?
                    .insert(key, value, 0)
                    .map_err(|source| Error::Map {
                        what: "insert",
                        source,
                    })
            }

            /// Deletes the flows expired at `now_ns` (from [`monotonic_now_ns`]).
            ///
            /// Each flow found expired is read again just before deletion, so a
            /// packet that refreshed it since the snapshot keeps it alive (a packet
            /// between that check and the deletion still loses the race and starts a
            /// new flow).
            pub fn sweep(&mut self, now_ns: u64) -> Result<SweepReport, Error> {
                let entries = self.conntrack_entries()?;
                let mut report = SweepReport {
                    scanned: entries.len(),
                    ..Default::default()
                };
                let candidates = expired_flows(&entries, now_ns);
                let mut ct = self.ct_mut()?;
                for keys in candidates {
                    let mut fresh = Vec::with_capacity(keys.len());
                    for key in &keys {
                        match ct.get(key, 0) {
                            Ok(v) => fresh.push((*key, v)),
                            Err(e) if is_enoent(&e) => {}
                            Err(source) => {
                                return Err(Error::Map {
                                    what: "read",
                                    source,
                                })
                            }
                        }
                    }
                    let refs: Vec<&Entry> = fresh.iter().collect();
                    if refs.is_empty() || !flow_expired(&refs, now_ns) {
                        continue;
                    }
                    report.flows_expired += 1;
                    for (key, _) in &fresh {
                        match ct.remove(key) {
                            Ok(()) => report.entries_removed += 1,
                            Err(e) if is_enoent(&e) => {}
                            Err(source) => {
                                return Err(Error::Map {
                                    what: "delete",
                                    source,
                                })
                            }
                        }
                    }
                }
                if report.flows_expired > 0 {
                    tracing::debug!(?report, "conntrack swept");
                }
                Ok(report)
            }
        }
    };
}

conntrack_api!(Kawaii);
conntrack_api!(crate::Konvey);

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_S;

    /// A flow client:cport -> server:sport SNATed to vip:nport, as two entries.
    fn flow(proto: u8, state: u8, seen_orig: u64, seen_reply: u64) -> [Entry; 2] {
        let (client, server, vip) = (
            0x0a00_0002u32.to_be(),
            0x0808_0808u32.to_be(),
            0xcb00_710au32.to_be(),
        );
        let (cport, sport, nport) = (40000u16.to_be(), 53u16.to_be(), 1025u16.to_be());
        let orig = kw_ct_key {
            saddr: client,
            daddr: server,
            sport: cport,
            dport: sport,
            proto,
            _pad: [0; 3],
        };
        let orig_v = kw_ct_value {
            nat_saddr: vip,
            nat_daddr: server,
            nat_sport: nport,
            nat_dport: sport,
            state,
            last_seen_ns: seen_orig,
            ..Default::default()
        };
        let reply = peer_key(&orig, &orig_v);
        assert_eq!(reply.saddr, server);
        assert_eq!(reply.daddr, vip);
        assert_eq!(reply.sport, sport);
        assert_eq!(reply.dport, nport);
        let reply_v = kw_ct_value {
            nat_saddr: server,
            nat_daddr: client,
            nat_sport: sport,
            nat_dport: cport,
            state,
            last_seen_ns: seen_reply,
            ..Default::default()
        };
        assert_eq!(peer_key(&reply, &reply_v), orig);
        [(orig, orig_v), (reply, reply_v)]
    }

    #[test]
    fn timeouts_follow_the_abi() {
        let est = kw_ct_state::KW_CT_ESTABLISHED as u8;
        let new = kw_ct_state::KW_CT_NEW as u8;
        let closing = kw_ct_state::KW_CT_CLOSING as u8;
        assert_eq!(timeout(IPPROTO_TCP, est), Duration::from_secs(7440));
        assert_eq!(timeout(IPPROTO_TCP, new), Duration::from_secs(240));
        assert_eq!(timeout(IPPROTO_TCP, closing), Duration::from_secs(240));
        assert_eq!(timeout(IPPROTO_TCP, 77), Duration::from_secs(240));
        assert_eq!(timeout(IPPROTO_UDP, est), Duration::from_secs(120));
        assert_eq!(timeout(IPPROTO_ICMP, new), Duration::from_secs(60));
        assert_eq!(timeout(47, new), Duration::from_secs(120));
    }

    #[test]
    fn flow_expires_only_when_both_entries_are_old() {
        let est = kw_ct_state::KW_CT_ESTABLISHED as u8;
        let now = 10_000 * S;
        // UDP 120 s: one fresh entry keeps the flow.
        let f = flow(IPPROTO_UDP, est, now - 200 * S, now - 10 * S);
        assert!(expired_flows(&f, now).is_empty());
        // Both old: both keys go, once.
        let f = flow(IPPROTO_UDP, est, now - 200 * S, now - 121 * S);
        let gone = expired_flows(&f, now);
        assert_eq!(gone, vec![vec![f[0].0, f[1].0]]);
        // Exactly at the timeout: kept (strictly older is required).
        let f = flow(IPPROTO_UDP, est, now - 120 * S, now - 120 * S);
        assert!(expired_flows(&f, now).is_empty());
        // Established TCP idle for an hour: kept; two and a half hours: gone.
        let f = flow(IPPROTO_TCP, est, now - 3600 * S, now - 3600 * S);
        assert!(expired_flows(&f, now).is_empty());
        let f = flow(IPPROTO_TCP, est, now - 9000 * S, now - 9000 * S);
        assert_eq!(expired_flows(&f, now).len(), 1);
        // Entries stamped after `now` (clock read before the packet) are fresh.
        let f = flow(IPPROTO_ICMP, est, now + S, now + S);
        assert!(expired_flows(&f, now).is_empty());
    }

    #[test]
    fn closing_makes_the_whole_flow_transitory() {
        let now = 10_000 * S;
        let mut f = flow(
            IPPROTO_TCP,
            kw_ct_state::KW_CT_ESTABLISHED as u8,
            now - 300 * S,
            now - 300 * S,
        );
        assert!(expired_flows(&f, now).is_empty());
        f[1].1.state = kw_ct_state::KW_CT_CLOSING as u8;
        assert_eq!(expired_flows(&f, now).len(), 1);
        // New on one side, established on the other: established wins.
        f[1].1.state = kw_ct_state::KW_CT_NEW as u8;
        assert!(expired_flows(&f, now).is_empty());
    }

    #[test]
    fn orphans_and_many_flows() {
        let now = 10_000 * S;
        let est = kw_ct_state::KW_CT_ESTABLISHED as u8;
        let old = flow(IPPROTO_UDP, est, now - 500 * S, now - 500 * S);
        let mut young = flow(IPPROTO_UDP, est, now - S, now - S);
        young[0].0.sport = 1u16.to_be();
        young[1].1.nat_dport = 1u16.to_be();
        let entries = vec![young[1], old[0], young[0], old[1]];
        let gone = expired_flows(&entries, now);
        assert_eq!(gone, vec![vec![old[0].0, old[1].0]]);
        // An expired orphan (its peer was evicted): only its own key goes.
        let orphan = old[1];
        let alone = expired_flows(&[orphan], now);
        assert_eq!(alone, vec![vec![orphan.0]]);
        assert!(expired_flows(&[], now).is_empty());
    }

    #[test]
    fn monotonic_clock_moves() {
        let a = monotonic_now_ns();
        let b = monotonic_now_ns();
        assert!(a > 0 && b >= a);
    }
}
