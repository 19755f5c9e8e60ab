//! The Konvey L4 load balancer: load `konvey.o`, attach it, program its
//! services and read its flows.
//!
//! A service is `(VIP, protocol, port)`; its *rotation* is the list of
//! backends that take new flows, in order. The daemon decides the rotation
//! (configured backends that are healthy) and replaces it whole with
//! [`Konvey::set_service`]: the kernel swaps the hash map value atomically,
//! and established flows are not affected because conntrack holds their
//! translation. A backend left out of every rotation *drains*: its flows go
//! on until they end, and [`Konvey::flows_by_backend`] says how many remain.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use kowabunga_dataplane::konvey::{Backend, KonveyConfig, Proto, ServiceKey};
//! use kowabunga_dataplane::{Konvey, LoadOptions};
//!
//! let mut konvey = Konvey::load(&LoadOptions {
//!     pin_dir: Some("/sys/fs/bpf/kowabunga/konvey".into()),
//!     ct_entries: None,
//! })?;
//! konvey.set_config(&KonveyConfig {
//!     sources: vec![Ipv4Addr::new(10, 0, 0, 5)],
//!     port_min: 1024,
//!     port_max: 32767,
//!     sample_shift: 6,
//! })?;
//! let https = ServiceKey { vip: Ipv4Addr::new(10, 0, 0, 100), proto: Proto::Tcp, port: 443 };
//! konvey.set_service(https, &[
//!     Backend { addr: Ipv4Addr::new(10, 0, 0, 11), port: 443 },
//!     Backend { addr: Ipv4Addr::new(10, 0, 0, 12), port: 443 },
//! ])?;
//! konvey.attach("eth0")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, MapType};
use aya::{programs::Xdp, Ebpf, EbpfLoader};
use kowabunga_bindings::{
    kv_backend_counter, kv_config, kv_service, kv_service_key, kw_counter, kw_ct_key, kw_ct_value,
    kw_role, kw_stat, KV_BACKEND_SLOTS, KV_MAX_BACKENDS, KV_MAX_SERVICES, KV_MAX_SOURCE_IPS,
    KW_CT_DEFAULT_ENTRIES, KW_EVENTS_BYTES,
};

pub mod backend_stats;
pub mod service;
mod vips;

pub use backend_stats::{assign_slots, BackendCounter, MAP_BACKEND_STATS};
pub use service::{pack_service, Backend, KonveyConfig, Proto, ServiceKey};

use crate::attach::{self, Attached, Links, Mode};
use crate::kawaii::{self as kw, check_pinned, xdp_mut, LoadOptions, MapSpec};
#[cfg(feature = "test-util")]
use crate::test_run::{self, TestRunOutput};
use crate::{bpffs, conntrack};

/// The compiled `ebpf/konvey.c`, embedded at build time.
pub static KONVEY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/konvey.o"));

/// Name of the XDP program inside `konvey.o`.
pub const PROGRAM: &str = "konvey";

/// Array `u32` 0 -> `kv_config`.
pub const MAP_CONFIG: &str = "kv_config";
/// Hash VIP -> number of services on it.
pub const MAP_VIPS: &str = "kv_vips";
/// Hash `kv_service_key` -> `kv_service` (the rotation).
pub const MAP_SERVICES: &str = "kv_services";
/// Array service id -> `u64` round-robin counter.
pub const MAP_RR: &str = "kv_rr";
/// Every map of `konvey.o`.
pub const MAP_NAMES: [&str; 10] = [
    MAP_CONFIG,
    MAP_VIPS,
    MAP_SERVICES,
    MAP_RR,
    MAP_BACKEND_STATS,
    kw::MAP_CT4,
    kw::MAP_CT4_NEW,
    kw::MAP_STATS,
    kw::MAP_EVENTS,
    kw::MAP_META,
];

/// Most full-NAT source addresses (`KV_MAX_SOURCE_IPS`).
pub const MAX_SOURCES: usize = KV_MAX_SOURCE_IPS as usize;

/// Most services a node carries (`KV_MAX_SERVICES`).
pub const MAX_SERVICES: usize = KV_MAX_SERVICES as usize;
/// Most backends in one rotation (`KV_MAX_BACKENDS`).
pub const MAX_BACKENDS: usize = KV_MAX_BACKENDS as usize;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading the object (shared with Kawaii: pins, verifier).
    #[error(transparent)]
    Load(#[from] kw::Error),
    /// Attaching or detaching.
    #[error(transparent)]
    Attach(#[from] attach::Error),
    /// Running the program on a test packet (feature `test-util`).
    #[cfg(feature = "test-util")]
    #[error(transparent)]
    TestRun(#[from] test_run::Error),
    /// A map is missing from the object.
    #[error("map {0} not found in konvey.o")]
    MissingMap(&'static str),
    /// The number of CPUs could not be read (per-CPU counters).
    #[error("cannot count the CPUs for the per-CPU counters")]
    Cpus(#[source] std::io::Error),
    /// A map operation failed.
    #[error("map {map}: {what} failed")]
    Map {
        /// The map.
        map: &'static str,
        /// The operation.
        what: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The port range is empty or starts at 0.
    #[error("invalid source port range {min}-{max}")]
    PortRange {
        /// First port.
        min: u16,
        /// Last port.
        max: u16,
    },
    /// A source address is unspecified.
    #[error("the source address must not be 0.0.0.0")]
    UnspecifiedSource,
    /// No source address, or more than [`MAX_SOURCES`].
    #[error("{0} source addresses, want 1 to {MAX_SOURCES}")]
    SourceCount(usize),
    /// A source address is given twice.
    #[error("source address {0} given twice")]
    DuplicateSource(Ipv4Addr),
    /// Too many backends in one rotation.
    #[error("service {service}: {count} backends, at most {MAX_BACKENDS}")]
    TooManyBackends {
        /// The service.
        service: ServiceKey,
        /// How many were given.
        count: usize,
    },
    /// Every service id is taken.
    #[error("service {0}: at most {MAX_SERVICES} services")]
    TooManyServices(ServiceKey),
    /// A map holds a value this build cannot read (a protocol number).
    #[error("map {MAP_SERVICES}: unexpected protocol {0}")]
    BadProtocol(u8),
}

/// The map definitions of `kw_konvey_maps.h` and `kw_maps.h`.
fn map_specs(ct_entries: u32) -> [MapSpec; 10] {
    let size = |n: usize| n as u32;
    let spec = |name, map_type, key_size, value_size, max_entries| MapSpec {
        name,
        map_type,
        key_size,
        value_size,
        max_entries,
    };
    [
        spec(
            MAP_CONFIG,
            MapType::Array,
            4,
            size(std::mem::size_of::<kv_config>()),
            1,
        ),
        spec(MAP_VIPS, MapType::Hash, 4, 4, KV_MAX_SERVICES),
        spec(
            MAP_SERVICES,
            MapType::Hash,
            size(std::mem::size_of::<kv_service_key>()),
            size(std::mem::size_of::<kv_service>()),
            KV_MAX_SERVICES,
        ),
        spec(MAP_RR, MapType::Array, 4, 8, KV_MAX_SERVICES),
        spec(
            MAP_BACKEND_STATS,
            MapType::PerCpuArray,
            4,
            size(std::mem::size_of::<kv_backend_counter>()),
            KV_BACKEND_SLOTS,
        ),
        spec(
            kw::MAP_CT4,
            MapType::Hash,
            size(std::mem::size_of::<kw_ct_key>()),
            size(std::mem::size_of::<kw_ct_value>()),
            ct_entries,
        ),
        spec(
            kw::MAP_CT4_NEW,
            MapType::LruHash,
            size(std::mem::size_of::<kw_ct_key>()),
            size(std::mem::size_of::<kw_ct_value>()),
            ct_entries,
        ),
        spec(
            kw::MAP_STATS,
            MapType::PerCpuArray,
            4,
            size(std::mem::size_of::<kw_counter>()),
            kw_stat::KW_STAT_COUNT,
        ),
        spec(kw::MAP_EVENTS, MapType::RingBuf, 0, 0, KW_EVENTS_BYTES),
        crate::abi::META_SPEC,
    ]
}

/// The Konvey balancer loaded in the kernel: its maps and its program.
///
/// Dropping it detaches links that are not pinned; pinned maps and links
/// stay, so a daemon restart keeps every flow.
#[derive(Debug)]
pub struct Konvey {
    pub(crate) links: Links<&'static str>,
    pub(crate) ebpf: Ebpf,
    /// The flow cache's size and seed, as loaded.
    pub(crate) fc: crate::fcache::Params,
}

impl Konvey {
    /// Loads `konvey.o`: creates (or reuses pinned) maps and loads the
    /// program. Nothing is attached and nothing passes through the balancer
    /// until [`Konvey::set_config`].
    ///
    /// With a `pin_dir` (use one of its own, e.g. `<bpffs>/konvey`: the
    /// conntrack map has the same name as Kawaii's) each map is pinned at
    /// `pin_dir/<map name>`. Pins of another ABI version (or made before
    /// versions) fail with [`kw::Error::AbiMismatch`] before any map is
    /// opened (see [`crate::abi`]); a pin whose definition differs from
    /// this build fails naming the map.
    ///
    /// # Errors
    /// [`Error::Load`].
    pub fn load(options: &LoadOptions) -> Result<Self, Error> {
        let ct_entries = options.ct_entries.unwrap_or(KW_CT_DEFAULT_ENTRIES);
        if ct_entries == 0 {
            return Err(kw::Error::ZeroCtEntries.into());
        }
        let object = crate::variant::Variant::from_env()
            .map_err(kw::Error::from)?
            .konvey(KONVEY_OBJECT);
        let fc = crate::fcache::Params::new(ct_entries);
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(kw::MAP_CT4, ct_entries);
        loader.map_max_entries(kw::MAP_CT4_NEW, ct_entries);
        fc.apply(&mut loader);
        let mut pins: Vec<(&'static str, PathBuf)> = Vec::new();
        if let Some(dir) = &options.pin_dir {
            fs::create_dir_all(dir).map_err(|source| kw::Error::CreatePinDir {
                path: dir.clone(),
                source,
            })?;
            if !bpffs::is_bpffs(dir).map_err(kw::Error::from)? {
                return Err(kw::Error::NotBpffs(dir.clone()).into());
            }
            crate::abi::guard(dir, "konvey.o", &MAP_NAMES)?;
            for spec in map_specs(ct_entries) {
                let path = dir.join(spec.name);
                check_pinned(&spec, &path)?;
                pins.push((spec.name, path));
            }
        }
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object).map_err(kw::Error::Load)?;
        kw::load_program(&mut ebpf, PROGRAM)?;
        Ok(Konvey {
            links: Links {
                links: HashMap::new(),
                pin_dir: options.pin_dir.clone(),
            },
            ebpf,
            fc,
        })
    }

    /// The pin directory given at load time.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.links.pin_dir.as_deref()
    }

    /// The loaded XDP program.
    ///
    /// # Errors
    /// [`Error::Load`] if the object has no such program.
    pub fn program(&self) -> Result<&Xdp, Error> {
        Ok(self
            .ebpf
            .program(PROGRAM)
            .ok_or(kw::Error::MissingProgram(PROGRAM))?
            .try_into()
            .map_err(|source| kw::Error::Program {
                program: PROGRAM,
                source,
            })?)
    }

    /// Runs the balancer on `ifname` (native XDP, else generic with a
    /// warning; pinned links are reused without a traffic gap, as for
    /// [`crate::Kawaii::attach`]).
    ///
    /// # Errors
    /// [`Error::Attach`].
    pub fn attach(&mut self, ifname: &str) -> Result<Attached<&'static str>, Error> {
        let program = xdp_mut(&mut self.ebpf, PROGRAM)?;
        Ok(self.links.attach(program, PROGRAM, PROGRAM, ifname)?)
    }

    /// Detaches `ifname` and removes its pinned link; whether anything was
    /// attached.
    ///
    /// # Errors
    /// [`Error::Attach`].
    pub fn detach(&mut self, ifname: &str) -> Result<bool, Error> {
        Ok(self.links.detach(ifname)?)
    }

    /// Interfaces attached through this value, with their mode.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, Mode)> + '_ {
        self.links.attachments().map(|(name, _, mode)| (name, mode))
    }

    /// Writes the node-wide settings; the balancer starts working (before,
    /// it passes everything).
    ///
    /// # Errors
    /// An invalid setting, or the map write failed.
    pub fn set_config(&mut self, config: &KonveyConfig) -> Result<(), Error> {
        let value = config.to_kv()?;
        let mut map: Array<&mut MapData, kv_config> = self.typed_mut(MAP_CONFIG)?;
        map.set(0, value, 0).map_err(map_err(MAP_CONFIG, "write"))
    }

    /// The node-wide settings, `None` before the first [`Konvey::set_config`].
    ///
    /// # Errors
    /// The map could not be read.
    pub fn config(&self) -> Result<Option<KonveyConfig>, Error> {
        let map: Array<&MapData, kv_config> = self.typed(MAP_CONFIG)?;
        let v = map.get(&0, 0).map_err(map_err(MAP_CONFIG, "read"))?;
        let count = usize::from(v.snat_count).min(MAX_SOURCES);
        Ok((v.configured != 0).then(|| KonveyConfig {
            sources: v.snat_ips[..count]
                .iter()
                .map(|a| Ipv4Addr::from(a.to_ne_bytes()))
                .collect(),
            port_min: v.port_min,
            port_max: v.port_max,
            sample_shift: v.sample_shift,
        }))
    }

    /// Creates `key` or replaces its rotation, atomically for the packets.
    /// An empty rotation keeps the service (its new flows are dropped and
    /// counted as `drop_no_backend`). A new service starts its round-robin
    /// at the first backend.
    ///
    /// # Errors
    /// [`Error::TooManyBackends`], [`Error::TooManyServices`], a map error.
    pub fn set_service(&mut self, key: ServiceKey, rotation: &[Backend]) -> Result<(), Error> {
        let current = self.service_values()?;
        let previous = current.get(&key);
        let id = match previous {
            Some(v) => v.id,
            None => {
                let used: BTreeSet<u32> = current.values().map(|v| v.id).collect();
                let id = (0..KV_MAX_SERVICES)
                    .find(|i| !used.contains(i))
                    .ok_or(Error::TooManyServices(key))?;
                let mut rr: Array<&mut MapData, u64> = self.typed_mut(MAP_RR)?;
                rr.set(id, 0, 0).map_err(map_err(MAP_RR, "write"))?;
                id
            }
        };
        let mut value = pack_service(key, id, rotation)?;
        let (slots, fresh) = assign_slots(id, previous, rotation);
        for (b, slot) in value.backends.iter_mut().zip(slots) {
            b.slot = slot;
        }
        // newcomers start from zero (the slot may hold a former member's counts)
        self.zero_backend_slots(&fresh)?;
        {
            let mut services: BpfHashMap<&mut MapData, kv_service_key, kv_service> =
                self.typed_mut(MAP_SERVICES)?;
            services
                .insert(key.to_kv(), value, 0)
                .map_err(map_err(MAP_SERVICES, "write"))?;
        }
        // The VIP is announced once a service exists on it.
        self.sync_vip(key.vip)
    }

    /// Removes a service; its established flows keep their translation.
    /// When it was the last service of its VIP and flows to that VIP are
    /// still live, the VIP stays in the balancer with no service (new flows
    /// to it are dropped as `drop_no_service`) until
    /// [`Konvey::purge_drained_vips`] finds its flows gone; without live
    /// flows the VIP leaves at once (its packets then go to the host).
    ///
    /// # Errors
    /// A map error (a missing service is not one).
    pub fn remove_service(&mut self, key: ServiceKey) -> Result<(), Error> {
        {
            let mut services: BpfHashMap<&mut MapData, kv_service_key, kv_service> =
                self.typed_mut(MAP_SERVICES)?;
            match services.remove(&key.to_kv()) {
                Ok(()) => {}
                Err(e) if conntrack::is_enoent(&e) => {}
                Err(source) => {
                    return Err(Error::Map {
                        map: MAP_SERVICES,
                        what: "delete",
                        source,
                    })
                }
            }
        }
        self.sync_vip(key.vip)
    }

    /// Every service with its rotation.
    ///
    /// # Errors
    /// A map error, or a value this build cannot read.
    pub fn services(&self) -> Result<Vec<(ServiceKey, Vec<Backend>)>, Error> {
        let mut out: Vec<_> = self
            .service_values()?
            .into_iter()
            .map(|(k, v)| {
                let n = (v.count as usize).min(MAX_BACKENDS);
                (k, v.backends[..n].iter().map(Backend::from_kv).collect())
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Live flows per backend, counted from conntrack (each flow once). A
    /// draining backend is done when it is absent from this map.
    ///
    /// # Errors
    /// The conntrack map could not be read.
    pub fn flows_by_backend(&self) -> Result<HashMap<Backend, usize>, Error> {
        let mut out = HashMap::new();
        for (_, v) in self
            .conntrack_entries()
            .map_err(|e| kw_map_err(kw::MAP_CT4, e))?
        {
            // The original-direction entry of a flow is rewritten to the backend.
            if v.flags & kowabunga_bindings::KW_CT_F_REPLY as u8 != 0
                || v.in_role != kw_role::KW_ROLE_KONVEY as u8
            {
                continue;
            }
            let b = Backend {
                addr: Ipv4Addr::from(v.nat_daddr.to_ne_bytes()),
                port: u16::from_be(v.nat_dport),
            };
            *out.entry(b).or_insert(0) += 1;
        }
        Ok(out)
    }

    /// Runs the program once on `packet` (an Ethernet frame) against the
    /// live maps.
    ///
    /// # Errors
    /// [`Error::TestRun`].
    #[cfg(feature = "test-util")]
    pub fn run(&self, packet: &[u8]) -> Result<TestRunOutput, Error> {
        Ok(test_run::run_once(self.program()?, PROGRAM, packet)?)
    }

    /// Runs the program `repeat` times on `packet`; the mean time of one run.
    ///
    /// # Errors
    /// [`Error::TestRun`].
    #[cfg(feature = "test-util")]
    pub fn run_repeat(&self, packet: &[u8], repeat: u32) -> Result<std::time::Duration, Error> {
        Ok(test_run::run_repeat_on(
            self.program()?,
            PROGRAM,
            packet,
            repeat,
        )?)
    }

    /// The underlying aya object, for what this crate does not wrap.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    pub(crate) fn map(&self, name: &str) -> Option<&Map> {
        self.ebpf.map(name)
    }

    pub(crate) fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.ebpf.map_mut(name)
    }

    pub(crate) fn typed<'a, T>(&'a self, name: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a Map, Error = MapError>,
    {
        let map = self.map(name).ok_or(Error::MissingMap(name))?;
        T::try_from(map).map_err(map_err(name, "open"))
    }

    pub(crate) fn typed_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a mut Map, Error = MapError>,
    {
        let map = self.map_mut(name).ok_or(Error::MissingMap(name))?;
        T::try_from(map).map_err(map_err(name, "open"))
    }

    pub(crate) fn service_values(&self) -> Result<BTreeMap<ServiceKey, kv_service>, Error> {
        let services: BpfHashMap<&MapData, kv_service_key, kv_service> =
            self.typed(MAP_SERVICES)?;
        let mut out = BTreeMap::new();
        for item in services.iter() {
            let (k, v) = item.map_err(map_err(MAP_SERVICES, "iterate"))?;
            out.insert(ServiceKey::from_kv(&k)?, v);
        }
        Ok(out)
    }
}

pub(crate) fn map_err(map: &'static str, what: &'static str) -> impl FnOnce(MapError) -> Error {
    move |source| Error::Map { map, what, source }
}

pub(crate) fn kw_map_err(map: &'static str, e: conntrack::Error) -> Error {
    match e {
        conntrack::Error::Map { what, source } => Error::Map { map, what, source },
        conntrack::Error::MissingMap => Error::MissingMap(map),
        conntrack::Error::Syscall { what, source, .. } => Error::Map {
            map,
            what,
            source: MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf",
                io_error: source,
            }),
        },
        conntrack::Error::Thread(source) => Error::Map {
            map,
            what: "sweeper thread",
            source: MapError::SyscallError(aya::sys::SyscallError {
                call: "clone",
                io_error: source,
            }),
        },
    }
}

/// Removes the pinned maps of `pin_dir` (not the links), the ABI version
/// last. Missing pins are not an error.
///
/// # Errors
/// A pin could not be removed.
pub fn remove_pinned_maps(pin_dir: &Path) -> std::io::Result<()> {
    for name in MAP_NAMES {
        match fs::remove_file(pin_dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_is_embedded() {
        assert!(KONVEY_OBJECT.starts_with(b"\x7fELF"));
    }

    #[test]
    fn keys_are_network_order() {
        let key = ServiceKey {
            vip: Ipv4Addr::new(10, 0, 0, 100),
            proto: Proto::Udp,
            port: 5353,
        };
        let kv = key.to_kv();
        assert_eq!(kv.vip.to_ne_bytes(), [10, 0, 0, 100]);
        assert_eq!(kv.port.to_ne_bytes(), 5353u16.to_be_bytes());
        assert_eq!(kv.proto, 17);
        assert_eq!(ServiceKey::from_kv(&kv).ok(), Some(key));
        let bad = kv_service_key { proto: 1, ..kv };
        assert!(matches!(
            ServiceKey::from_kv(&bad),
            Err(Error::BadProtocol(1))
        ));
        assert_eq!(key.to_string(), "10.0.0.100:5353/udp");
    }

    #[test]
    fn rotations_are_bounded() {
        let key = ServiceKey {
            vip: Ipv4Addr::new(10, 0, 0, 100),
            proto: Proto::Tcp,
            port: 80,
        };
        let b = |i: u8| Backend {
            addr: Ipv4Addr::new(10, 0, 0, i),
            port: 8080,
        };
        let v = pack_service(key, 3, &[b(1), b(2)]).expect("fits");
        assert_eq!((v.id, v.count), (3, 2));
        assert_eq!(Backend::from_kv(&v.backends[1]), b(2));
        let many: Vec<_> = (0..=MAX_BACKENDS as u8).map(b).collect();
        assert!(matches!(
            pack_service(key, 0, &many),
            Err(Error::TooManyBackends { count: 65, .. })
        ));
    }

    #[test]
    fn configs_are_checked() {
        let ok = KonveyConfig {
            sources: vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)],
            port_min: 1024,
            port_max: 32767,
            sample_shift: 0,
        };
        let kv = ok.to_kv().expect("valid");
        assert_eq!((kv.configured, kv.port_min, kv.port_max), (1, 1024, 32767));
        assert_eq!(kv.snat_count, 2);
        assert_eq!(
            kv.snat_ips[..3],
            [
                u32::from_ne_bytes([10, 0, 0, 5]),
                u32::from_ne_bytes([10, 0, 0, 6]),
                0
            ]
        );
        let nine: Vec<_> = (1..=9).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect();
        for bad in [
            KonveyConfig {
                port_min: 0,
                ..ok.clone()
            },
            KonveyConfig {
                port_min: 2000,
                port_max: 1999,
                ..ok.clone()
            },
            KonveyConfig {
                sources: vec![Ipv4Addr::UNSPECIFIED],
                ..ok.clone()
            },
            KonveyConfig {
                sources: vec![],
                ..ok.clone()
            },
            KonveyConfig {
                sources: nine,
                ..ok.clone()
            },
            KonveyConfig {
                sources: vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 5)],
                ..ok.clone()
            },
        ] {
            assert!(bad.to_kv().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn specs_cover_every_map() {
        let names: Vec<_> = map_specs(9).iter().map(|s| s.name).collect();
        assert_eq!(names, MAP_NAMES);
    }
}
