//! The per-CPU flow cache of the established path (`ebpf/include/kw_fcache.h`):
//! its size per CPU, its hash seed, and its generation, which user space bumps
//! whenever it changes conntrack so that no packet is forwarded from a slot
//! whose entry was deleted or replaced.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use aya::maps::{Array, Map, MapData, MapError, PerCpuArray};
use aya::EbpfLoader;

use crate::conntrack::{bpf, ElemAttr, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM};
use kowabunga_bindings::{kw_ct_key, kw_fc_slot};

/// Reading the flow cache failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flow cache map is missing from the object.
    #[error("flow cache maps not found in the loaded object")]
    MissingMap,
    /// A map operation failed.
    #[error("flow cache: {what} failed")]
    Map {
        /// The operation.
        what: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The route watch could not be started, or the generation read.
    #[error("flow cache: {what} failed")]
    Io {
        /// The operation.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The slots' map (not pinned: a restart starts it empty).
pub const MAP_FCACHE: &str = "kw_fcache";
/// Its generation, `kw_fc_gen[0]` (not pinned).
pub const MAP_FC_GEN: &str = "kw_fc_gen";
/// One bit per set and CPU: whether a slot of the set may be usable (not pinned).
pub const MAP_FC_LIVE: &str = "kw_fc_live";
/// Its per-CPU counters (`enum kw_fc_stat`), not pinned.
pub const MAP_FC_STATS: &str = "kw_fc_stats";
/// Ways per set (`KW_FC_WAYS`).
pub const WAYS: u32 = 2;
/// Fewest sets per CPU.
pub const MIN_SETS: u32 = 1024;
/// Most sets per CPU (32 MiB of slots per CPU at 64 bytes a slot, 2 ways).
pub const MAX_SETS: u32 = 262_144;

/// Sets per CPU for `ct_entries` conntrack entries over `cpus` CPUs: four
/// times the flows one CPU may hold (`ct_entries / 2 / cpus`), rounded up
/// to a power of two, within [`MIN_SETS`]..=[`MAX_SETS`]. A set's two ways
/// keep the first two live flows; spread at random, about 1% of a CPU's
/// full share of flows find their set full and keep taking the slow path
/// (with twice the flows, about 3%; measured at 65,536 flows: 6% of the
/// packets, against 1.8% with four times).
pub fn sets_per_cpu(ct_entries: u32, cpus: u32) -> u32 {
    let flows = (ct_entries / 2 / cpus.max(1)).max(1);
    flows
        .saturating_mul(4)
        .checked_next_power_of_two()
        .unwrap_or(MAX_SETS)
        .clamp(MIN_SETS, MAX_SETS)
}

/// What the loader sets in an object for its cache.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    cpus: u32,
    slots: u32,
    words: u32,
    set_mask: u32,
    seed: u64,
}

impl Params {
    /// The cache for `ct_entries` conntrack entries on this machine's CPUs.
    pub(crate) fn new(ct_entries: u32) -> Self {
        let cpus = aya::util::nr_cpus().map_or(1, |n| n as u32);
        let sets = sets_per_cpu(ct_entries, cpus);
        Params {
            cpus,
            slots: cpus * sets * WAYS,
            words: cpus * sets / 64,
            set_mask: sets - 1,
            seed: seed(),
        }
    }

    /// Sizes and seeds the cache of the object `loader` is about to load.
    pub(crate) fn apply<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader.map_max_entries(MAP_FCACHE, self.slots);
        loader.map_max_entries(MAP_FC_LIVE, self.words);
        loader.override_global("kw_fc_set_mask", &self.set_mask, true);
        loader.override_global("kw_fc_seed", &self.seed, true);
    }

    /// The set (of each CPU's sets) that `key` belongs to.
    pub(crate) fn set_of(&self, key: &kw_ct_key) -> u32 {
        hash(key, self.seed) & self.set_mask
    }

    /// The indexes of the slots that may hold `key`, on every CPU.
    pub(crate) fn slots_of(&self, key: &kw_ct_key) -> impl Iterator<Item = u32> {
        let sets = self.set_mask + 1;
        let set = self.set_of(key);
        (0..self.cpus).flat_map(move |cpu| {
            let base = (cpu * sets + set) * WAYS;
            [base, base + 1]
        })
    }
}

/// `kw_fc_hash()`: murmur3's 64-bit finalizer over the tuple, as the
/// programs compute it (the fields hold network-order values, as in C).
pub fn hash(k: &kw_ct_key, seed: u64) -> u32 {
    let mut h = ((u64::from(k.saddr) << 32) | u64::from(k.daddr)) ^ seed;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= (u64::from(k.sport) << 32) | (u64::from(k.dport) << 16) | u64::from(k.proto);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}

/// A random 64-bit seed (the flow cache's hash: a sender cannot aim at one
/// set); a fixed one if the kernel's random source fails.
fn seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is a valid, writable buffer of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == b.len() as isize {
        u64::from_ne_bytes(b)
    } else {
        0x5eed_f10c_ac4e_0001
    }
}

/// `kw_fc_gen[0]` read through `fd`.
///
/// # Errors
/// The map could not be read.
pub fn generation(fd: &OwnedFd) -> io::Result<u32> {
    let key = 0u32;
    let mut gen = 0u32;
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &mut gen as *mut u32 as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
    Ok(gen)
}

/// Bumps `kw_fc_gen[0]` through `fd`: every cached flow takes the slow path
/// again. Returns the new generation.
///
/// # Errors
/// The map could not be read or written.
pub fn bump(fd: &OwnedFd) -> io::Result<u32> {
    let key = 0u32;
    let next = generation(fd)?.wrapping_add(1);
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &next as *const u32 as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr)?;
    Ok(next)
}

/// Empties the flow cache on every routing change of the namespace it was
/// started in: a thread listening to rtnetlink's IPv4 route, neighbour,
/// address and link groups bumps `kw_fc_gen[0]` after each batch of
/// messages, so no packet leaves through a next hop (interface, MACs) the
/// kernel no longer has. Stopped (and joined) when dropped.
#[derive(Debug)]
pub struct RouteWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// rtnetlink multicast groups watched (`RTMGRP_*`): link, neighbour, IPv4
/// address, IPv4 route.
const GROUPS: u32 = 0x1 | 0x4 | 0x10 | 0x40;

impl RouteWatch {
    /// Opens the rtnetlink socket (in the caller's network namespace) and
    /// starts the thread, which bumps `kw_fc_gen[0]` through `gen`.
    ///
    /// # Errors
    /// The socket could not be opened or bound, or the thread started.
    pub fn spawn(gen: OwnedFd) -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned right below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed sockaddr_nl is valid; the fields set are plain integers.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = GROUPS;
        // SAFETY: `addr` is a valid sockaddr_nl of the size given.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: `timeout` is a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kw-fc-routes".into())
            .spawn(move || watch(&sock, &gen, &flag))?;
        Ok(RouteWatch {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for RouteWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: one bump per batch of messages (a burst of route changes is
/// one bump), until `stop`.
fn watch(sock: &OwnedFd, gen: &OwnedFd, stop: &std::sync::atomic::AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: `buf` is a valid, writable buffer of its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => continue,
                // messages were lost: a change may be among them
                Some(libc::ENOBUFS) => {}
                _ => {
                    tracing::warn!("flow cache route watch stopped: {e}");
                    return;
                }
            }
        }
        // drain what else is queued, then one bump
        loop {
            // SAFETY: as above; MSG_DONTWAIT only makes this call non-blocking.
            let more = unsafe {
                libc::recv(
                    sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if more <= 0 {
                break;
            }
        }
        if let Err(e) = bump(gen) {
            tracing::warn!("flow cache generation not bumped after a route change: {e}");
        }
    }
}

/// What the flow cache did, summed over the CPUs (since the object was loaded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets forwarded from a slot.
    pub hits: u64,
    /// Slots (re)filled on the slow path.
    pub fills: u64,
    /// Fills that took over a slot holding another flow.
    pub evictions: u64,
    /// Flows not cached because both ways of their set held other live flows.
    pub set_full: u64,
}

/// Reads `kw_fc_stats` (`map`).
///
/// # Errors
/// Not the per-CPU array the programs define, or a read failed.
pub fn read_stats(map: &Map) -> Result<Stats, Error> {
    let map: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(map).map_err(|source| Error::Map {
            what: "open kw_fc_stats",
            source,
        })?;
    let mut sums = [0u64; 4];
    for (i, sum) in sums.iter_mut().enumerate() {
        let per_cpu = map.get(&(i as u32), 0).map_err(|source| Error::Map {
            what: "read kw_fc_stats",
            source,
        })?;
        *sum = per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v));
    }
    Ok(Stats {
        hits: sums[0],
        fills: sums[1],
        evictions: sums[2],
        set_full: sums[3],
    })
}

/// The flow cache methods of a loaded object (`Kawaii`, `Konvey`).
macro_rules! fcache_api {
    ($object:ty) => {
        impl $object {
            /// What the established path's flow cache did since the programs
            /// were loaded ([`crate::fcache`]).
            ///
            /// # Errors
            /// The counters could not be read.
            pub fn flow_cache_stats(&self) -> Result<Stats, Error> {
                read_stats(self.map(MAP_FC_STATS).ok_or(Error::MissingMap)?)
            }

            /// Starts a [`RouteWatch`] on this object's flow cache, in the
            /// caller's network namespace (the daemon's: where the programs'
            /// interfaces are).
            ///
            /// # Errors
            /// The generation map is missing, or the watch could not start.
            pub fn flow_cache_route_watch(&self) -> Result<RouteWatch, Error> {
                RouteWatch::spawn(self.fc_gen_fd()?).map_err(|source| Error::Io {
                    what: "starting the route watch",
                    source,
                })
            }

            /// The flow cache's generation now (`kw_fc_gen[0]`).
            ///
            /// # Errors
            /// The generation map is missing or could not be read.
            pub fn flow_cache_generation(&self) -> Result<u32, Error> {
                generation(&self.fc_gen_fd()?).map_err(|source| Error::Io {
                    what: "reading kw_fc_gen",
                    source,
                })
            }

            fn fc_gen_fd(&self) -> Result<OwnedFd, Error> {
                let Some(Map::Array(data)) = self.map(MAP_FC_GEN) else {
                    return Err(Error::MissingMap);
                };
                data.fd()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|source| Error::Io {
                        what: "duplicating kw_fc_gen",
                        source,
                    })
            }

            /// The set of the flow cache (on every CPU) that `key`'s flow
            /// is cached in: flows of one set compete for its ways.
            pub fn flow_cache_set(&self, key: &kw_ct_key) -> u32 {
                self.fc.set_of(key)
            }

            /// The packets and bytes of `key`'s flow forwarded from the flow
            /// cache and not yet added to its conntrack entry, over all CPUs.
            /// The entry's counters plus these are the flow's.
            ///
            /// # Errors
            /// The cache could not be read.
            pub fn flow_cache_pending(&self, key: &kw_ct_key) -> Result<(u64, u64), Error> {
                let map = self.map(MAP_FCACHE).ok_or(Error::MissingMap)?;
                let slots: Array<&MapData, kw_fc_slot> =
                    Array::try_from(map).map_err(|source| Error::Map {
                        what: "open kw_fcache",
                        source,
                    })?;
                let mut out = (0u64, 0u64);
                for i in self.fc.slots_of(key) {
                    let s = slots.get(&i, 0).map_err(|source| Error::Map {
                        what: "read kw_fcache",
                        source,
                    })?;
                    if s.ifindex != 0 && s.key == *key {
                        out.0 += u64::from(s.pkts);
                        out.1 += u64::from(s.bytes);
                    }
                }
                Ok(out)
            }
        }
    };
}

fcache_api!(crate::Kawaii);
fcache_api!(crate::Konvey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_spreads_tuples_that_differ_in_one_address_byte() {
        // the last byte of a client address (network order: the u32's high byte)
        let sets: std::collections::BTreeSet<u32> = (0..=255u32)
            .map(|b| {
                let k = kw_ct_key {
                    saddr: u32::from_ne_bytes([10, 212, 0, b as u8]),
                    daddr: u32::from_ne_bytes([10, 210, 5, 1]),
                    sport: 20_000u16.to_be(),
                    dport: 9u16.to_be(),
                    proto: 17,
                    ..Default::default()
                };
                hash(&k, 0) & 1023
            })
            .collect();
        assert!(sets.len() > 200, "{} sets for 256 clients", sets.len());
    }

    #[test]
    fn the_cache_holds_four_times_the_flows_a_cpu_may_see_within_bounds() {
        // the default table, 2 CPUs: 65,536 flows per CPU -> 262,144 sets (524,288 slots)
        assert_eq!(sets_per_cpu(262_144, 2), 262_144);
        // 64 CPUs: 2,048 flows each -> 8,192 sets
        assert_eq!(sets_per_cpu(262_144, 64), 8_192);
        assert_eq!(sets_per_cpu(3_000, 1), 8_192);
        assert_eq!(sets_per_cpu(16, 4), MIN_SETS);
        assert_eq!(sets_per_cpu(u32::MAX, 1), MAX_SETS);
        assert_eq!(sets_per_cpu(262_144, 0), MAX_SETS);
    }
}
