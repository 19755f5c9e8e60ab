//! Loading the Kawaii object: maps (pinned or not) and its three programs.

pub mod banks;
pub mod config;
pub mod index;
pub mod ipsec_gate;

use std::{
    collections::HashMap,
    fs, io, mem,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Map, MapInfo, MapType},
    programs::{ProgramError, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};
use kowabunga_bindings::{
    kw_cidr, kw_config, kw_counter, kw_ct_key, kw_ct_value, kw_rule, kw_rule6, kw_rule_addr6_key,
    kw_rule_addr_key, kw_rule_hit, kw_rule_node, kw_rule_port, kw_rule_port_key, kw_stat, kw_table,
    KW_BANKS, KW_CT_DEFAULT_ENTRIES, KW_EVENTS_BYTES, KW_IPSEC_UP_ENTRIES, KW_MAX_RULES_PER_TABLE,
    KW_RULE_ADDR6_ENTRIES, KW_RULE_EXACT_ENTRIES, KW_RULE_PORT_ENTRIES,
};

use crate::{abi, attach::Links, bpffs, Role};

/// The compiled `ebpf/kawaii.c`, embedded at build time.
pub static KAWAII_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kawaii.o"));

/// Array `u32` 0 -> active bank + 1 (0: not configured, pass everything).
pub const MAP_ACTIVE: &str = "kw_active";
/// Array bank -> `kw_config`.
pub const MAP_CONFIG: &str = "kw_config";
/// Array of `kw_rule`, `RULES_PER_BANK` per bank: the tables as applied,
/// read back by [`Kawaii::active_config`]; packets use the rule index.
pub const MAP_RULES: &str = "kw_rules";
/// LPM trie `kw_rule_addr_key` -> `kw_rule_node`: the rule index by address.
pub const MAP_RULE_ADDR: &str = "kw_rule_addr";
/// LPM trie `kw_rule_port_key` -> `kw_rule_hit`: the rule index by port.
pub const MAP_RULE_PORT: &str = "kw_rule_port";
/// Hash `kw_rule_port` -> `kw_rule_hit`: the rule index's one-port
/// intervals (and protocols without ports, at port 0).
pub const MAP_RULE_EXACT: &str = "kw_rule_exact";
/// Array of `kw_rule6`, `KW_MAX_RULES_PER_TABLE` per bank: the IPv6 rules
/// of `firewall.ingress` as applied (the listing; packets use the index).
pub const MAP_RULES6: &str = "kw_rules6";
/// LPM trie `kw_rule_addr6_key` -> `kw_rule_node`: the IPv6 ingress rules'
/// index by source address (their port entries share `kw_rule_exact` and
/// `kw_rule_port` under table `KW_TABLE_INGRESS6`).
pub const MAP_RULE_ADDR6: &str = "kw_rule_addr6";
/// Hash `kw_ct_key` -> `kw_ct_value`: confirmed flows, two entries each
/// (never evicted; see [`crate::conntrack`]).
pub const MAP_CT4: &str = "kw_ct4";
/// LRU hash `kw_ct_key` -> `kw_ct_value`: embryonic flows, two entries each
/// (a flood of new flows evicts only these).
pub const MAP_CT4_NEW: &str = "kw_ct4_new";
/// Per-CPU array `kw_stat` -> `kw_counter`.
pub const MAP_STATS: &str = "kw_stats";
/// Ring buffer of `kw_drop_event` records.
pub const MAP_EVENTS: &str = "kw_events";
/// Array `u32` 0 -> ABI version of the pins beside it (see [`crate::abi`]).
pub const MAP_META: &str = abi::MAP_META;
/// Hash `kw_cidr` -> `u32`: IPsec remote subnets whose child SA is up
/// (see [`ipsec_gate`]).
pub const MAP_IPSEC_UP: &str = "kw_ipsec_up";
/// Every map of `kawaii.o`, in the order of `ebpf/README.md`.
pub const MAP_NAMES: [&str; 14] = [
    MAP_ACTIVE,
    MAP_CONFIG,
    MAP_RULES,
    MAP_RULES6,
    MAP_RULE_ADDR,
    MAP_RULE_ADDR6,
    MAP_RULE_PORT,
    MAP_RULE_EXACT,
    MAP_CT4,
    MAP_CT4_NEW,
    MAP_STATS,
    MAP_EVENTS,
    MAP_IPSEC_UP,
    MAP_META,
];

/// Rules per bank in `kw_rules` (`KW_RULES_PER_BANK` in `kw_abi.h`).
pub const RULES_PER_BANK: u32 = KW_MAX_RULES_PER_TABLE * kw_table::KW_TABLE_COUNT;

/// How to load Kawaii.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// bpffs directory of the pinned maps and links (e.g.
    /// [`bpffs::DEFAULT_PIN_DIR`]). Maps found there are reused, so conntrack
    /// and configuration survive a daemon restart; missing ones are created
    /// and pinned. `None` pins nothing: every load gets fresh, private maps.
    pub pin_dir: Option<PathBuf>,
    /// Size of each conntrack table, confirmed and embryonic
    /// (`KW_CT_DEFAULT_ENTRIES` when `None`).
    pub ct_entries: Option<u32>,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pin directory could not be created.
    #[error("cannot create the pin directory {path}")]
    CreatePinDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pin directory is not on a bpffs.
    #[error("pin directory {0} is not on a bpffs (mount one: mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs(PathBuf),
    /// Checking the pin directory failed.
    #[error(transparent)]
    Bpffs(#[from] bpffs::Error),
    /// A pinned map has another definition than the one this build expects.
    #[error(
        "pinned map {map} at {path} does not match this build ({detail}); remove the pin \
         (rm {path}) to recreate it, which loses its contents"
    )]
    PinnedMapMismatch {
        /// The map name.
        map: &'static str,
        /// Its pin.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// The pins were made by a build of another ABI version, or before ABI
    /// versions existed (`found` = `None`); nothing was opened or changed.
    #[error(
        "pinned maps of {object} in {dir} {found}, this build's is {expected}: detach them with \
         the kowabungad that pinned them (`kowabungad --config FILE --detach`) or remove the \
         directory (`rm -r {dir}`, conntrack is lost), then start again",
        dir = .pin_dir.display(),
        found = describe_version(*.found)
    )]
    AbiMismatch {
        /// The object whose pins these are (`kawaii.o`, `konvey.o`).
        object: &'static str,
        /// The pin directory.
        pin_dir: PathBuf,
        /// The version of the pins; `None`: no `kw_meta` pin.
        found: Option<u32>,
        /// This build's version ([`abi::ABI_VERSION`]).
        expected: u32,
    },
    /// The ABI version could not be written and pinned.
    #[error("cannot pin the ABI version at {path}")]
    WriteAbiVersion {
        /// The `kw_meta` pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// A pinned map could not be inspected.
    #[error(
        "cannot open the pinned map {map} at {path}; remove the pin (rm {path}) if it is stale"
    )]
    PinnedMapUnreadable {
        /// The map name.
        map: &'static str,
        /// Its pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// `ct_entries` is zero.
    #[error("ct_entries must be at least 1")]
    ZeroCtEntries,
    /// `KOWABUNGA_BPF_VARIANT` names no build (see [`crate::variant`]).
    #[error(transparent)]
    Variant(#[from] crate::variant::Error),
    /// aya could not load the object or create its maps.
    #[error("cannot load kawaii.o")]
    Load(#[source] EbpfError),
    /// A program is missing from the object.
    #[error("kawaii.o has no program {0}")]
    MissingProgram(&'static str),
    /// The object has no such map.
    #[error("kawaii.o has no map {0}")]
    MissingMap(&'static str),
    /// A program is missing from the object or failed verification.
    #[error("cannot load program {program}")]
    Program {
        /// The program name.
        program: &'static str,
        /// Why (the verifier log, for a rejected program).
        #[source]
        source: ProgramError,
    },
}

/// How [`Error::AbiMismatch`] names the version found.
fn describe_version(found: Option<u32>) -> String {
    match found {
        Some(v) => format!("have ABI version {v}"),
        None => "have no ABI version (pinned by a build older than ABI versions)".to_owned(),
    }
}

/// Expected kernel definition of one map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MapSpec {
    pub(crate) name: &'static str,
    pub(crate) map_type: MapType,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
}

const fn size<T>() -> u32 {
    mem::size_of::<T>() as u32
}

/// The map definitions of `kw_maps.h`, as this build expects them.
pub(crate) fn map_specs(ct_entries: u32) -> [MapSpec; 14] {
    let spec = |name, map_type, key_size, value_size, max_entries| MapSpec {
        name,
        map_type,
        key_size,
        value_size,
        max_entries,
    };
    [
        spec(MAP_ACTIVE, MapType::Array, size::<u32>(), size::<u32>(), 1),
        spec(
            MAP_CONFIG,
            MapType::Array,
            size::<u32>(),
            size::<kw_config>(),
            KW_BANKS,
        ),
        spec(
            MAP_RULES,
            MapType::Array,
            size::<u32>(),
            size::<kw_rule>(),
            KW_BANKS * RULES_PER_BANK,
        ),
        spec(
            MAP_RULES6,
            MapType::Array,
            size::<u32>(),
            size::<kw_rule6>(),
            KW_RULE_ADDR6_ENTRIES,
        ),
        spec(
            MAP_RULE_ADDR,
            MapType::LpmTrie,
            size::<kw_rule_addr_key>(),
            size::<kw_rule_node>(),
            KW_BANKS * RULES_PER_BANK,
        ),
        spec(
            MAP_RULE_ADDR6,
            MapType::LpmTrie,
            size::<kw_rule_addr6_key>(),
            size::<kw_rule_node>(),
            KW_RULE_ADDR6_ENTRIES,
        ),
        spec(
            MAP_RULE_PORT,
            MapType::LpmTrie,
            size::<kw_rule_port_key>(),
            size::<kw_rule_hit>(),
            KW_RULE_PORT_ENTRIES,
        ),
        spec(
            MAP_RULE_EXACT,
            MapType::Hash,
            size::<kw_rule_port>(),
            size::<kw_rule_hit>(),
            KW_RULE_EXACT_ENTRIES,
        ),
        spec(
            MAP_CT4,
            MapType::Hash,
            size::<kw_ct_key>(),
            size::<kw_ct_value>(),
            ct_entries,
        ),
        spec(
            MAP_CT4_NEW,
            MapType::LruHash,
            size::<kw_ct_key>(),
            size::<kw_ct_value>(),
            ct_entries,
        ),
        spec(
            MAP_STATS,
            MapType::PerCpuArray,
            size::<u32>(),
            size::<kw_counter>(),
            kw_stat::KW_STAT_COUNT,
        ),
        spec(MAP_EVENTS, MapType::RingBuf, 0, 0, KW_EVENTS_BYTES),
        spec(
            MAP_IPSEC_UP,
            MapType::Hash,
            size::<kw_cidr>(),
            size::<u32>(),
            KW_IPSEC_UP_ENTRIES,
        ),
        abi::META_SPEC,
    ]
}

/// Differences between a live map and its spec, or `None` when they agree.
pub(crate) fn spec_mismatch(spec: &MapSpec, info: &MapInfo) -> Option<String> {
    let mut diffs = Vec::new();
    match info.map_type() {
        Ok(t) if t == spec.map_type => {}
        Ok(t) => diffs.push(format!("type {t:?}, expected {:?}", spec.map_type)),
        Err(_) => diffs.push(format!("unknown type, expected {:?}", spec.map_type)),
    }
    let mut cmp = |what: &str, got: u32, want: u32| {
        if got != want {
            diffs.push(format!("{what} {got}, expected {want}"));
        }
    };
    cmp("key size", info.key_size(), spec.key_size);
    cmp("value size", info.value_size(), spec.value_size);
    cmp("max_entries", info.max_entries(), spec.max_entries);
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// The Kawaii gateway loaded in the kernel: its maps and its three programs.
///
/// Dropping it detaches the links that are not pinned and closes the maps;
/// pinned maps and links stay in the kernel.
///
/// ```no_run
/// use kowabunga_dataplane::{Kawaii, LoadOptions};
///
/// let kawaii = Kawaii::load(&LoadOptions {
///     pin_dir: Some("/sys/fs/bpf/kowabunga".into()),
///     ct_entries: None,
/// })?;
/// # Ok::<(), kowabunga_dataplane::kawaii::Error>(())
/// ```
#[derive(Debug)]
pub struct Kawaii {
    pub(crate) links: Links<Role>,
    pub(crate) ebpf: Ebpf,
    /// What the last apply wrote in the rule index of each bank (`None`:
    /// unknown, read from the tries when needed).
    pub(crate) rule_index: [Option<index::BankIndex>; KW_BANKS as usize],
    /// The flow cache's size and seed, as loaded.
    pub(crate) fc: crate::fcache::Params,
}

impl Kawaii {
    /// Loads `kawaii.o`: creates (or reuses pinned) maps and loads the
    /// program of every [`Role`] into the kernel. Nothing is attached yet.
    ///
    /// With a `pin_dir`, the directory is created if needed and must be on a
    /// bpffs; each map is pinned at `pin_dir/<map name>`. Pins of another
    /// ABI version (or made before versions) fail with
    /// [`Error::AbiMismatch`] before any map is opened (see [`crate::abi`]);
    /// a pin whose definition differs from this build fails with
    /// [`Error::PinnedMapMismatch`] naming the map.
    pub fn load(options: &LoadOptions) -> Result<Self, Error> {
        let ct_entries = options.ct_entries.unwrap_or(KW_CT_DEFAULT_ENTRIES);
        if ct_entries == 0 {
            return Err(Error::ZeroCtEntries);
        }
        let object = crate::variant::Variant::from_env()?.kawaii(KAWAII_OBJECT);
        let specs = map_specs(ct_entries);
        let pin_paths: Vec<(&'static str, PathBuf)> = match &options.pin_dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|source| Error::CreatePinDir {
                    path: dir.clone(),
                    source,
                })?;
                if !bpffs::is_bpffs(dir)? {
                    return Err(Error::NotBpffs(dir.clone()));
                }
                abi::guard(dir, "kawaii.o", &MAP_NAMES)?;
                let paths: Vec<_> = MAP_NAMES.iter().map(|n| (*n, dir.join(n))).collect();
                for (spec, (_, path)) in specs.iter().zip(&paths) {
                    check_pinned(spec, path)?;
                }
                paths
            }
            None => Vec::new(),
        };

        let fc = crate::fcache::Params::new(ct_entries);
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(MAP_CT4, ct_entries);
        loader.map_max_entries(MAP_CT4_NEW, ct_entries);
        fc.apply(&mut loader);
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object).map_err(Error::Load)?;

        for role in Role::ALL {
            load_program(&mut ebpf, role.program_name())?;
        }
        Ok(Self {
            links: Links {
                links: HashMap::new(),
                pin_dir: options.pin_dir.clone(),
            },
            ebpf,
            rule_index: Default::default(),
            fc,
        })
    }

    /// The pin directory given at load time.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.links.pin_dir.as_deref()
    }

    /// The loaded XDP program of `role`.
    pub fn program(&self, role: Role) -> Result<&Xdp, Error> {
        let name = role.program_name();
        self.ebpf
            .program(name)
            .ok_or(Error::MissingProgram(name))?
            .try_into()
            .map_err(|source| Error::Program {
                program: name,
                source,
            })
    }

    /// The loaded XDP program of `role`, mutably (to attach it).
    pub fn program_mut(&mut self, role: Role) -> Result<&mut Xdp, Error> {
        xdp_mut(&mut self.ebpf, role.program_name())
    }

    /// The underlying aya object, for what this crate does not wrap.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The underlying aya object, mutably.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// A map by name (one of [`MAP_NAMES`]); `None` once taken (the ring buffer).
    pub(crate) fn map(&self, name: &str) -> Option<&Map> {
        self.ebpf.map(name)
    }

    /// A map by name, mutably.
    pub(crate) fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.ebpf.map_mut(name)
    }
}

/// Attempts at `BPF_PROG_LOAD` when the kernel answers `EAGAIN`.
const LOAD_ATTEMPTS: u32 = 5;

/// Loads (verifies) the XDP program `name` of `ebpf`.
///
/// The verifier gives up with `EAGAIN` when the loading thread has a signal
/// pending, which happens on a busy machine with a long verification; like
/// libbpf, the load is retried a few times before the error is returned.
pub(crate) fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), Error> {
    let program = xdp_mut(ebpf, name)?;
    let mut attempt = 1;
    loop {
        match program.load() {
            Ok(()) => return Ok(()),
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(source) => {
                return Err(Error::Program {
                    program: name,
                    source,
                })
            }
        }
    }
}

/// The XDP program `name` of a loaded object, mutably.
pub(crate) fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, Error> {
    ebpf.program_mut(name)
        .ok_or(Error::MissingProgram(name))?
        .try_into()
        .map_err(|source| Error::Program {
            program: name,
            source,
        })
}

/// Fails when `path` pins a map that does not match `spec`; a missing pin is fine.
pub(crate) fn check_pinned(spec: &MapSpec, path: &Path) -> Result<(), Error> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let info = MapInfo::from_pin(path).map_err(|source| Error::PinnedMapUnreadable {
        map: spec.name,
        path: path.to_owned(),
        source,
    })?;
    match spec_mismatch(spec, &info) {
        None => Ok(()),
        Some(detail) => Err(Error::PinnedMapMismatch {
            map: spec.name,
            path: path.to_owned(),
            detail,
        }),
    }
}

/// Removes the pinned maps of `pin_dir` (not the links), the ABI version
/// last. Missing pins are not an error. The maps disappear once no program
/// or process uses them.
pub fn remove_pinned_maps(pin_dir: &Path) -> io::Result<()> {
    for name in MAP_NAMES {
        match fs::remove_file(pin_dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
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
        assert!(KAWAII_OBJECT.starts_with(b"\x7fELF"));
    }

    #[test]
    fn specs_follow_the_abi() {
        let specs = map_specs(7);
        let names: Vec<_> = specs.iter().map(|s| s.name).collect();
        assert_eq!(names, MAP_NAMES);
        assert_eq!(specs[1].value_size, 432);
        assert_eq!(specs[2].max_entries, 2 * 12288 * 5);
        assert_eq!((specs[3].value_size, specs[3].max_entries), (24, 2 * 12288));
        assert_eq!((specs[4].key_size, specs[4].value_size), (12, 16));
        assert_eq!((specs[5].key_size, specs[5].value_size), (24, 16));
        assert_eq!((specs[6].key_size, specs[6].value_size), (16, 8));
        assert_eq!(
            (specs[7].map_type, specs[7].key_size, specs[7].value_size),
            (MapType::Hash, 12, 8)
        );
        assert_eq!(specs[7].max_entries, 1 << 20);
        assert_eq!(specs[8].max_entries, 7);
        assert_eq!(specs[8].map_type, MapType::Hash);
        assert_eq!(specs[9].max_entries, 7);
        assert_eq!(specs[9].map_type, MapType::LruHash);
        assert_eq!(
            (specs[12].map_type, specs[12].key_size, specs[12].value_size),
            (MapType::Hash, 8, 4)
        );
        assert_eq!(specs[12].max_entries, 32);
    }
}
