//! Connection tracking: listing the two conntrack tables and sweeping
//! expired flows.
//!
//! A flow has two entries. An entry says how to rewrite a packet whose tuple
//! equals its key; the other entry of the flow is keyed by the reverse of that
//! rewritten tuple ([`peer_key`]). A new flow is *embryonic*: both entries
//! live in the LRU hash `kw_ct4_new`, where a flood of new flows only evicts
//! other embryonic entries. When the flow is confirmed (UDP and ICMP echo: the
//! first reply; TCP: the initiator's first packet after the reply) the
//! program moves both entries to the plain hash `kw_ct4`, which never evicts:
//! when it is full, the flow stays embryonic (`ct_confirm_full`). See
//! `ebpf/include/kw_ct.h`.
//!
//! The kernel only refreshes `last_seen_ns`; the daemon removes a flow when
//! every entry it still has is older than the timeout of the flow (RFC 5382 /
//! RFC 4787, the `KW_CT_TIMEOUT_*` constants), in both tables. The expiry
//! decision ([`expired_flows`]) is a pure function of the entries and the
//! clock, so it is tested without a kernel. Reading and deleting use the
//! batch commands of `bpf(2)` (`BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_DELETE_BATCH`)
//! on a duplicate of the map's descriptor ([`CtTable`]), so a [`Sweeper`]
//! thread sweeps a million entries without holding the daemon's loop.

use std::{
    collections::HashMap as StdHashMap,
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use aya::maps::{Map, MapError};
use kowabunga_bindings::{
    kw_ct_key, kw_ct_state, kw_ct_value, KW_CT_TIMEOUT_ICMP_S, KW_CT_TIMEOUT_TCP_ESTABLISHED_S,
    KW_CT_TIMEOUT_TCP_TRANSITORY_S, KW_CT_TIMEOUT_UDP_S,
};

use crate::{
    kawaii::{MAP_CT4, MAP_CT4_NEW},
    Kawaii,
};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const NS_PER_S: u64 = 1_000_000_000;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A conntrack map is missing from the object.
    #[error("conntrack map not found in the loaded object")]
    MissingMap,
    /// A map operation failed.
    #[error("conntrack map: {what} failed")]
    Map {
        /// The operation.
        what: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// A `bpf(2)` command on a conntrack table failed.
    #[error("conntrack map {table}: {what} failed")]
    Syscall {
        /// The table.
        table: &'static str,
        /// The command.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The sweeper thread could not be started or is gone.
    #[error("conntrack sweeper thread: {0}")]
    Thread(io::Error),
}

/// One conntrack entry.
pub type Entry = (kw_ct_key, kw_ct_value);

/// What [`Kawaii::sweep`] (or a [`Sweeper`]) did, over both tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Entries read.
    pub scanned: usize,
    /// Flows found expired.
    pub flows_expired: usize,
    /// Entries deleted (one or two per flow).
    pub entries_removed: usize,
    /// Wall time the sweep took.
    pub elapsed: Duration,
}

impl SweepReport {
    /// Adds `other` (another table, another sweep) to this report.
    pub fn add(&mut self, other: &SweepReport) {
        self.scanned += other.scanned;
        self.flows_expired += other.flows_expired;
        self.entries_removed += other.entries_removed;
        self.elapsed += other.elapsed;
    }
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

pub(crate) const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub(crate) const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Entries per `BPF_MAP_LOOKUP_BATCH` call.
const BATCH: usize = 8192;

/// `union bpf_attr` for the element commands.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ElemAttr {
    pub(crate) map_fd: u32,
    pub(crate) _pad: u32,
    pub(crate) key: u64,
    pub(crate) value: u64,
    pub(crate) flags: u64,
}

/// `union bpf_attr` for the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

pub(crate) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a valid, writable `union bpf_attr` prefix of its size
    // for `cmd`; every pointer in it refers to live buffers of the sizes the
    // command reads or writes (checked by the callers).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One conntrack table, by a descriptor of its own: what a sweeper thread
/// works on, independently of the loaded object.
#[derive(Debug)]
pub struct CtTable {
    name: &'static str,
    fd: OwnedFd,
    /// The object's `kw_fc_gen`, bumped after every change made here.
    fc_gen: Option<OwnedFd>,
}

impl CtTable {
    /// Duplicates the descriptor of `map` (a `kw_ct_key` -> `kw_ct_value`
    /// hash or LRU hash) named `name`.
    ///
    /// # Errors
    /// Not a hash map, or the descriptor could not be duplicated.
    pub fn from_map(name: &'static str, map: &Map) -> Result<Self, Error> {
        let data = match map {
            Map::HashMap(d) | Map::LruHashMap(d) => d,
            _ => return Err(Error::MissingMap),
        };
        Self::dup(name, data)
    }

    /// The table pinned at `path` (e.g. `<pin dir>/kw_ct4`), named `name`.
    ///
    /// # Errors
    /// The pin could not be opened.
    pub fn from_pin(name: &'static str, path: &std::path::Path) -> Result<Self, Error> {
        let data = aya::maps::MapData::from_pin(path).map_err(|source| Error::Map {
            what: "open pin",
            source,
        })?;
        Self::dup(name, &data)
    }

    /// A table of its own descriptor (a duplicate of `data`'s).
    fn dup(name: &'static str, data: &aya::maps::MapData) -> Result<Self, Error> {
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| Error::Syscall {
                table: name,
                what: "dup",
                source,
            })?;
        Ok(CtTable {
            name,
            fd,
            fc_gen: None,
        })
    }

    /// This table, bumping the flow cache generation `map` (`kw_fc_gen`)
    /// after each of its deletions and inserts ([`crate::fcache`]).
    ///
    /// # Errors
    /// Not an array, or the descriptor could not be duplicated.
    pub fn with_fc_gen(mut self, map: &Map) -> Result<Self, Error> {
        let Map::Array(data) = map else {
            return Err(Error::MissingMap);
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(self.err("dup kw_fc_gen"))?;
        self.fc_gen = Some(fd);
        Ok(self)
    }

    /// Empties the flow cache (a new generation), if this table has one.
    fn invalidate_fcache(&self) -> Result<(), Error> {
        match &self.fc_gen {
            Some(fd) => crate::fcache::bump(fd)
                .map(|_| ())
                .map_err(self.err("flow cache generation")),
            None => Ok(()),
        }
    }

    /// The map's name (`kw_ct4`, `kw_ct4_new`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn err(&self, what: &'static str) -> impl FnOnce(io::Error) -> Error + '_ {
        move |source| Error::Syscall {
            table: self.name,
            what,
            source,
        }
    }

    /// Every entry, read `BATCH` at a time (a snapshot: the kernel keeps
    /// changing the map).
    ///
    /// # Errors
    /// The batch lookup failed.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        self.for_each_batch(|batch| {
            out.extend_from_slice(batch);
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Hands the entries to `f` one batch (up to 8192 entries) at a time,
    /// until the table ends or `f` breaks: a reader that stops early (a
    /// bounded listing) never holds more than one batch.
    ///
    /// # Errors
    /// The batch lookup failed.
    pub fn for_each_batch(
        &self,
        mut f: impl FnMut(&[Entry]) -> std::ops::ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
        let mut keys = vec![kw_ct_key::default(); BATCH];
        let mut values = vec![kw_ct_value::default(); BATCH];
        let (mut token, mut next) = (0u64, 0u64);
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    &mut token as *mut u64 as u64
                },
                out_batch: &mut next as *mut u64 as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: BATCH as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                ..Default::default()
            };
            let rc = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
            let n = (attr.count as usize).min(BATCH);
            batch.clear();
            batch.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
            let end = match rc {
                Ok(()) => false,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                Err(e) => return Err(self.err("batch lookup")(e)),
            };
            if f(&batch).is_break() || end {
                return Ok(());
            }
            token = next;
            first = false;
        }
    }

    /// The entry keyed `key`.
    ///
    /// # Errors
    /// The lookup failed for another reason than a missing key.
    pub fn get(&self, key: &kw_ct_key) -> Result<Option<kw_ct_value>, Error> {
        let mut value = kw_ct_value::default();
        let mut attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key as *const kw_ct_key as u64,
            value: &mut value as *mut kw_ct_value as u64,
            ..Default::default()
        };
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(()) => Ok(Some(value)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.err("lookup")(e)),
        }
    }

    /// Deletes `keys` in batches; keys already gone are skipped. Returns
    /// how many were deleted. A deletion empties the object's flow cache.
    ///
    /// # Errors
    /// The batch delete failed for another reason than a missing key.
    pub fn delete(&self, keys: &[kw_ct_key]) -> Result<usize, Error> {
        let mut done = 0;
        let mut at = 0;
        while at < keys.len() {
            let chunk = &keys[at..(at + BATCH).min(keys.len())];
            let mut attr = BatchAttr {
                keys: chunk.as_ptr() as u64,
                count: chunk.len() as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                ..Default::default()
            };
            let rc = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
            let n = (attr.count as usize).min(chunk.len());
            done += n;
            at += n;
            match rc {
                Ok(()) => {}
                // keys[at] is gone (a packet's table move, an eviction): skip it
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => at += 1,
                Err(e) => return Err(self.err("batch delete")(e)),
            }
        }
        if done > 0 {
            self.invalidate_fcache()?;
        }
        Ok(done)
    }

    /// Inserts or replaces `entries` in batches (tests, benchmarks, state
    /// restore), then empties the object's flow cache.
    ///
    /// # Errors
    /// The batch update failed (a full table: `E2BIG`).
    pub fn insert(&self, entries: &[Entry]) -> Result<(), Error> {
        for chunk in entries.chunks(BATCH) {
            let keys: Vec<kw_ct_key> = chunk.iter().map(|(k, _)| *k).collect();
            let values: Vec<kw_ct_value> = chunk.iter().map(|(_, v)| *v).collect();
            let mut attr = BatchAttr {
                keys: keys.as_ptr() as u64,
                values: values.as_ptr() as u64,
                count: chunk.len() as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                ..Default::default()
            };
            bpf(BPF_MAP_UPDATE_BATCH, &mut attr).map_err(self.err("batch update"))?;
        }
        self.invalidate_fcache()
    }

    /// Deletes the flows of this table expired at `now_ns`: one batched
    /// snapshot, the pure decision ([`expired_flows`]), each candidate read
    /// again just before deletion (a packet that refreshed it since the
    /// snapshot keeps it alive; one between that check and the deletion
    /// still loses the race and starts a new flow), one batched delete.
    ///
    /// # Errors
    /// A map command failed.
    pub fn sweep(&self, now_ns: u64) -> Result<SweepReport, Error> {
        let start = Instant::now();
        let entries = self.entries()?;
        let mut report = SweepReport {
            scanned: entries.len(),
            ..Default::default()
        };
        let candidates = expired_flows(&entries, now_ns);
        drop(entries);
        let mut doomed = Vec::new();
        for keys in candidates {
            let mut fresh = Vec::with_capacity(keys.len());
            for key in &keys {
                if let Some(v) = self.get(key)? {
                    fresh.push((*key, v));
                }
            }
            let refs: Vec<&Entry> = fresh.iter().collect();
            if refs.is_empty() || !flow_expired(&refs, now_ns) {
                continue;
            }
            report.flows_expired += 1;
            doomed.extend(fresh.iter().map(|(k, _)| *k));
        }
        report.entries_removed = self.delete(&doomed)?;
        report.elapsed = start.elapsed();
        Ok(report)
    }
}

/// Sweeps both tables of [`CtTable`]s on a thread of its own, so that the
/// daemon's loop only sends a request and later collects the report.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kowabunga_dataplane::{conntrack::monotonic_now_ns, Kawaii, LoadOptions};
///
/// let kawaii = Kawaii::load(&LoadOptions::default())?;
/// let mut sweeper = kawaii.sweeper()?;
/// assert!(sweeper.request(monotonic_now_ns()));
/// let report = sweeper.wait().expect("one sweep requested")?;
/// println!("{} flows expired in {:?}", report.flows_expired, report.elapsed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Sweeper {
    requests: mpsc::Sender<u64>,
    reports: mpsc::Receiver<Result<SweepReport, Error>>,
    running: bool,
}

impl Sweeper {
    /// Starts the thread `name`, which sweeps `tables` at each request.
    ///
    /// # Errors
    /// [`Error::Thread`]: the thread could not be spawned.
    pub fn spawn(name: &str, tables: Vec<CtTable>) -> Result<Self, Error> {
        let (requests, rx) = mpsc::channel::<u64>();
        let (tx, reports) = mpsc::channel();
        thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // ends when the Sweeper (the sender) is dropped
                while let Ok(now_ns) = rx.recv() {
                    let mut total = SweepReport::default();
                    let mut result = Ok(());
                    for table in &tables {
                        match table.sweep(now_ns) {
                            Ok(r) => total.add(&r),
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    if tx.send(result.map(|()| total)).is_err() {
                        break;
                    }
                }
            })
            .map_err(Error::Thread)?;
        Ok(Sweeper {
            requests,
            reports,
            running: false,
        })
    }

    /// Starts a sweep at `now_ns` unless one is still running (`false`).
    pub fn request(&mut self, now_ns: u64) -> bool {
        if self.running {
            return false;
        }
        self.running = self.requests.send(now_ns).is_ok();
        self.running
    }

    /// Whether a requested sweep has not reported yet.
    pub fn running(&self) -> bool {
        self.running
    }

    /// The report of the sweep that finished since the last call, if any
    /// (never blocks).
    pub fn poll(&mut self) -> Option<Result<SweepReport, Error>> {
        match self.reports.try_recv() {
            Ok(r) => {
                self.running = false;
                Some(r)
            }
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                let was = std::mem::take(&mut self.running);
                was.then(|| Err(Error::Thread(io::Error::other("sweeper thread ended"))))
            }
        }
    }

    /// Waits for the running sweep's report (`None` when none runs).
    pub fn wait(&mut self) -> Option<Result<SweepReport, Error>> {
        if !self.running {
            return None;
        }
        self.running = false;
        Some(
            self.reports
                .recv()
                .unwrap_or_else(|_| Err(Error::Thread(io::Error::other("sweeper thread ended")))),
        )
    }
}

/// The conntrack methods of a loaded object (`Kawaii`, `Konvey`): both
/// have the shared maps of `kw_maps.h`.
macro_rules! conntrack_api {
    ($object:ty) => {
        impl $object {
            /// The conntrack table `name` ([`MAP_CT4`] or [`MAP_CT4_NEW`]),
            /// by a descriptor of its own.
            ///
            /// # Errors
            /// The map is missing or its descriptor could not be duplicated.
            pub fn conntrack_table(&self, name: &'static str) -> Result<CtTable, Error> {
                let table = CtTable::from_map(name, self.map(name).ok_or(Error::MissingMap)?)?;
                match self.map(crate::fcache::MAP_FC_GEN) {
                    Some(gen) => table.with_fc_gen(gen),
                    None => Ok(table),
                }
            }

            /// Both conntrack tables: confirmed, then embryonic.
            ///
            /// # Errors
            /// As [`Self::conntrack_table`].
            pub fn conntrack_tables(&self) -> Result<Vec<CtTable>, Error> {
                Ok(vec![
                    self.conntrack_table(MAP_CT4)?,
                    self.conntrack_table(MAP_CT4_NEW)?,
                ])
            }

            /// Every conntrack entry of both tables (a snapshot: the kernel
            /// keeps changing the maps): confirmed entries first, then the
            /// embryonic ones whose key is not confirmed.
            pub fn conntrack_entries(&self) -> Result<Vec<Entry>, Error> {
                let mut out = self.conntrack_table(MAP_CT4)?.entries()?;
                let confirmed: std::collections::HashSet<kw_ct_key> =
                    out.iter().map(|(k, _)| *k).collect();
                out.extend(
                    self.conntrack_table(MAP_CT4_NEW)?
                        .entries()?
                        .into_iter()
                        .filter(|(k, _)| !confirmed.contains(k)),
                );
                Ok(out)
            }

            /// One conntrack entry (confirmed first, then embryonic).
            pub fn conntrack_get(&self, key: &kw_ct_key) -> Result<Option<kw_ct_value>, Error> {
                match self.conntrack_table(MAP_CT4)?.get(key)? {
                    Some(v) => Ok(Some(v)),
                    None => self.conntrack_table(MAP_CT4_NEW)?.get(key),
                }
            }

            /// Inserts or replaces one confirmed entry (tests, state restore).
            pub fn conntrack_insert(
                &mut self,
                key: &kw_ct_key,
                value: &kw_ct_value,
            ) -> Result<(), Error> {
                self.conntrack_table(MAP_CT4)?.insert(&[(*key, *value)])
            }

            /// Deletes the flows expired at `now_ns` (from [`monotonic_now_ns`])
            /// in both tables, on the calling thread ([`CtTable::sweep`]). The
            /// daemon uses a [`Sweeper`] instead.
            pub fn sweep(&mut self, now_ns: u64) -> Result<SweepReport, Error> {
                let mut report = SweepReport::default();
                for table in self.conntrack_tables()? {
                    report.add(&table.sweep(now_ns)?);
                }
                if report.flows_expired > 0 {
                    tracing::debug!(?report, "conntrack swept");
                }
                Ok(report)
            }

            /// A [`Sweeper`] thread over both tables of this object.
            ///
            /// # Errors
            /// A table could not be opened or the thread started.
            pub fn sweeper(&self) -> Result<Sweeper, Error> {
                Sweeper::spawn("kw-ct-sweeper", self.conntrack_tables()?)
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
    fn reports_add_up() {
        let mut a = SweepReport {
            scanned: 4,
            flows_expired: 1,
            entries_removed: 2,
            elapsed: Duration::from_millis(3),
        };
        a.add(&SweepReport {
            scanned: 6,
            flows_expired: 2,
            entries_removed: 3,
            elapsed: Duration::from_millis(4),
        });
        assert_eq!(
            a,
            SweepReport {
                scanned: 10,
                flows_expired: 3,
                entries_removed: 5,
                elapsed: Duration::from_millis(7),
            }
        );
    }

    #[test]
    fn a_sweeper_without_tables_reports_empty_sweeps() -> Result<(), Error> {
        let mut s = Sweeper::spawn("test-sweeper", Vec::new())?;
        assert!(s.wait().is_none(), "nothing requested");
        assert!(s.request(1));
        assert!(!s.request(2), "one sweep at a time");
        assert!(matches!(s.wait(), Some(Ok(r)) if r == SweepReport::default()));
        assert!(s.poll().is_none() && !s.running());
        Ok(())
    }

    #[test]
    fn monotonic_clock_moves() {
        let a = monotonic_now_ns();
        let b = monotonic_now_ns();
        assert!(a > 0 && b >= a);
    }
}
