//! The async facade a service embeds: projects, Kompute instances, DNS
//! records and Kylo shares on top of runtime-chosen backends.
//!
//! [`Cloud`] keeps its inventory in memory (a service persists the model
//! itself, e.g. from the events). Backends are blocking traits; every call
//! to them runs in `tokio::task::spawn_blocking`.
//!
//! Creating a Kompute goes: validation -> quota -> placement -> address and
//! MAC -> disks (copy-on-write clone of the template, optional data disk) ->
//! cloud-init seed -> define -> start. Whatever fails, the steps already done
//! are undone in reverse order, so nothing is left behind, and the error is
//! returned typed ([`CloudError`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kowabunga::cloud::CloudError> {
//! use std::sync::Arc;
//! use kowabunga::cloud::{Cloud, CloudConfig, RegionConfig};
//! use kowabunga::model::{Kompute, Project, Region, Zone};
//! use kowabunga::storage::qcow2::Qcow2Storage;
//!
//! let region = RegionConfig::new(
//!     Region { name: "eu-west".into(), desc: String::new() },
//!     vec![Zone { name: "eu-west-a".into(), desc: String::new(), region: "eu-west".into() }],
//!     vec!["10.50.0.0/16".parse().unwrap()],
//! );
//! let storage = Arc::new(Qcow2Storage::new("/var/lib/kowabunga")?);
//! let cloud = Cloud::new(CloudConfig::new(vec![region], "/var/lib/kowabunga/seeds"), storage);
//! # let hv: Arc<dyn kowabunga::hypervisor::Hypervisor> = todo!();
//! cloud.add_hypervisor("eu-west-a", hv).await?;
//! let project: Project = serde_norway::from_str("name: acme\nregions: [eu-west]\nsubnet_size: 25\n").unwrap();
//! let info = cloud.create_project(project).await?;
//! println!("acme got {}", info.networks["eu-west"].subnet.cidr);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use crate::alloc::{
    self, AllocError, HypervisorLoad, MacAddr, ProjectSubnet, Usage, ZoneInstance,
    DEFAULT_GATEWAY_POOL_SIZE,
};
use crate::cloudinit::{NicConfig, Route, Seed, SeedError};
use crate::hypervisor::{
    DirectBoot, DiskDevice, DiskSpec, DomainSpec, DomainState, Hypervisor, HypervisorError, NicSpec,
};
use crate::kylo::{FileShares, Share, ShareError, ShareRequest};
use crate::model::kiwi::{Kiwi, KiwiRecord, KiwiZone};
use crate::model::{
    validate_name, DnsRecord, Kompute, Kylo, Project, Region, Secret, Template, ValidationError,
    Volume, VolumeType, Zone,
};
use crate::storage::{BlockStorage, DiskFormat, DiskSource, StorageError, GIB};

/// Metric of the default route through the zone-local gateway; other zones'
/// gateways follow with [`REMOTE_GATEWAY_METRIC`] and up.
pub const LOCAL_GATEWAY_METRIC: u32 = 100;
/// Metric of the first default route through another zone's gateway.
pub const REMOTE_GATEWAY_METRIC: u32 = 200;
/// Metric of the default route of a `public` instance's public NIC.
pub const PUBLIC_GATEWAY_METRIC: u32 = 50;

/// One region the cloud serves: its zones and its private subnet pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionConfig {
    /// The region.
    pub region: Region,
    /// Its zones.
    pub zones: Vec<Zone>,
    /// Admin-provided pools project subnets are carved from.
    pub subnet_pools: Vec<IpNet>,
    /// Addresses reserved for zone gateways after each subnet's gateway.
    pub gateway_pool_size: u32,
    /// The region's public network, for `public` instances (none: `public`
    /// instances are refused).
    pub public: Option<PublicNetwork>,
    /// The region's Kiwi DNS server (none: instances get no nameserver).
    pub dns: Option<RegionDns>,
}

/// A region's Kiwi DNS server: what instances are told, and the `kiwi`
/// section its nodes run ([`Cloud::kiwi_section`] adds the zones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionDns {
    /// The addresses instances use as nameserver (Kiwi's service addresses,
    /// reachable from the project subnets).
    pub nameservers: Vec<Ipv4Addr>,
    /// The section without zones: listen addresses, recursors, bounds.
    pub kiwi: Kiwi,
    /// Isolation: each project's zone answers that project's subnet only
    /// (an embedder adds peered subnets to `allow_from`).
    pub isolate: bool,
}

impl RegionDns {
    /// Kiwi on `nameservers` (listening there on port 53), forwarding to
    /// `recursors`, with isolation.
    pub fn new(nameservers: Vec<Ipv4Addr>, recursors: Vec<String>) -> Self {
        let listen = nameservers.iter().map(ToString::to_string).collect();
        RegionDns {
            nameservers,
            kiwi: Kiwi::new(listen, recursors),
            isolate: true,
        }
    }
}

/// A region's public (Internet-facing) network.
///
/// A `public` Kompute gets a first NIC (`ens3`) on `bridge` with the first
/// free address of `subnet` (its gateway, gateway pool and reserved ranges
/// are skipped, as for project subnets: the pool holds the Kawaii VIPs) and a
/// default route through the subnet's gateway with metric
/// [`PUBLIC_GATEWAY_METRIC`], preferred over the project gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicNetwork {
    /// Host bridge of the public network.
    pub bridge: String,
    /// The public subnet and its address plan.
    pub subnet: ProjectSubnet,
}

impl RegionConfig {
    /// A region with the default gateway pool size and no public network.
    pub fn new(region: Region, zones: Vec<Zone>, subnet_pools: Vec<IpNet>) -> Self {
        RegionConfig {
            region,
            zones,
            subnet_pools,
            gateway_pool_size: DEFAULT_GATEWAY_POOL_SIZE,
            public: None,
            dns: None,
        }
    }
}

/// Static configuration of a [`Cloud`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// Regions served.
    pub regions: Vec<RegionConfig>,
    /// Directory of the cloud-init seed images (one per instance).
    pub seed_dir: PathBuf,
    /// Prefix of the project bridge names (`<prefix><project>`, cut to 15
    /// bytes).
    pub bridge_prefix: String,
    /// SSH key used when a project has no bootstrap key.
    pub default_pubkey: String,
    /// Bound on one backend call (define, start, clone, seed...).
    pub backend_timeout: Duration,
    /// Bound on one live migration.
    pub migration_timeout: Duration,
}

/// Default [`CloudConfig::backend_timeout`].
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`CloudConfig::migration_timeout`].
pub const DEFAULT_MIGRATION_TIMEOUT: Duration = Duration::from_secs(3600);

impl CloudConfig {
    /// A configuration with bridges named `kw-<project>`.
    pub fn new(regions: Vec<RegionConfig>, seed_dir: impl Into<PathBuf>) -> Self {
        CloudConfig {
            regions,
            seed_dir: seed_dir.into(),
            bridge_prefix: "kw-".into(),
            default_pubkey: String::new(),
            backend_timeout: DEFAULT_BACKEND_TIMEOUT,
            migration_timeout: DEFAULT_MIGRATION_TIMEOUT,
        }
    }

    /// The bridge of a project's private network: `<prefix><project>`, or,
    /// when that exceeds the 15 bytes of an interface name, the prefix, the
    /// start of the name and a hash of the whole name (so two long names
    /// sharing a start still get different bridges).
    pub fn bridge_for(&self, project: &str) -> String {
        let full = format!("{}{project}", self.bridge_prefix);
        if full.len() <= 15 {
            return full;
        }
        let mut h: u32 = 0x811c_9dc5;
        for b in project.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let tag = format!("{:04x}", (h ^ (h >> 16)) & 0xffff);
        let mut head: String = full.chars().take(15 - tag.len() - 1).collect();
        head.push('-');
        head.push_str(&tag);
        head
    }

    fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.region.name == name)
    }

    fn zone(&self, name: &str) -> Option<(&RegionConfig, &Zone)> {
        self.regions
            .iter()
            .find_map(|r| r.zones.iter().find(|z| z.name == name).map(|z| (r, z)))
    }
}

/// Errors of the facade.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// A resource failed validation.
    #[error("invalid {kind}: {source}")]
    Invalid {
        /// The resource kind (`project`, `kompute`...).
        kind: &'static str,
        /// What is wrong.
        #[source]
        source: ValidationError,
    },
    /// Quota, pool or placement refused the request.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// The hypervisor failed.
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    /// Block storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The cloud-init seed could not be built.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// File shares failed.
    #[error(transparent)]
    Share(#[from] ShareError),
    /// A referenced resource does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// The resource kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The resource exists already.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// The resource kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The operation needs a backend that was not configured.
    #[error("no {0} backend configured")]
    NoBackend(&'static str),
    /// The operation is not possible in the resource's current state.
    #[error("{0}")]
    Conflict(String),
    /// A backend call did not return within its bound.
    #[error("{op} did not finish within {after:?}")]
    Timeout {
        /// The backend operation.
        op: &'static str,
        /// The bound that was hit.
        after: Duration,
    },
    /// A blocking backend task panicked or was cancelled.
    #[error("backend task failed: {0}")]
    Task(String),
}

/// A project's network in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectNetwork {
    /// The subnet and its address plan.
    pub subnet: ProjectSubnet,
    /// Zone -> zone gateway address (from the gateway pool).
    pub zone_gateways: BTreeMap<String, Ipv4Addr>,
    /// Zone -> VRRP router id of the zone's gateway VIP.
    pub vrids: BTreeMap<String, u8>,
    /// Host bridge of the project's private network.
    pub bridge: String,
}

/// A project as the cloud holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    /// The project.
    pub project: Project,
    /// Region -> network.
    pub networks: BTreeMap<String, ProjectNetwork>,
}

/// A Kompute instance as the cloud holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KomputeInfo {
    /// The instance as requested.
    pub kompute: Kompute,
    /// Domain / volume prefix: `<project>-<name>`.
    pub domain: String,
    /// Hypervisor it runs on.
    pub hypervisor: String,
    /// Private address.
    pub ip: Ipv4Addr,
    /// Private NIC's MAC.
    pub mac: MacAddr,
    /// Public address and NIC MAC, for `public` instances.
    pub public: Option<(Ipv4Addr, MacAddr)>,
    /// Region of its zone.
    pub region: String,
    /// OS volume name.
    pub os_volume: String,
    /// Data volume name, when `extra_disk > 0`.
    pub data_volume: Option<String>,
    /// The cloud-init seed image.
    pub seed: PathBuf,
    /// Whether creation completed (false while being created or deleted).
    pub ready: bool,
}

/// Extra knobs of [`Cloud::create_kompute_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KomputeOptions {
    /// Boot this kernel directly (tests, appliances).
    pub direct_boot: Option<DirectBoot>,
    /// Write the serial console to this file.
    pub serial_log: Option<PathBuf>,
    /// Memory in MiB instead of `mem` GiB (tiny test guests); quotas still
    /// count `mem`.
    pub memory_mib: Option<u64>,
}

/// What the cloud tells its embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudEvent {
    /// A Kompute instance was created and started: the guide mails its
    /// details (address, bootstrap credentials) to the project's users.
    InstanceCreated {
        /// Project.
        project: String,
        /// Instance name.
        name: String,
        /// Private address.
        ip: Ipv4Addr,
        /// Hypervisor.
        hypervisor: String,
        /// Bootstrap user.
        bootstrap_user: String,
        /// Bootstrap / root password (`Debug` prints `***`).
        password: Secret,
    },
    /// A Kompute instance was deleted.
    InstanceDeleted {
        /// Project.
        project: String,
        /// Instance name.
        name: String,
    },
}

type Hook = Arc<dyn Fn(&CloudEvent) + Send + Sync>;

struct HypervisorEntry {
    zone: String,
    hv: Arc<dyn Hypervisor>,
}

#[derive(Default)]
struct State {
    hypervisors: Vec<HypervisorEntry>,
    projects: BTreeMap<String, ProjectInfo>,
    /// Key: (project, name).
    instances: BTreeMap<(String, String), KomputeInfo>,
    /// Key: (project, name).
    dns: BTreeMap<(String, String), DnsRecord>,
    /// Key: (project, name).
    kylos: BTreeMap<(String, String), (Kylo, Share)>,
    /// Standalone volumes; key: (project, name).
    volumes: BTreeMap<(String, String), Volume>,
    templates: BTreeMap<String, Template>,
    /// Domain specs of instances (to redefine on resize), and whether their
    /// memory was set in MiB by [`KomputeOptions::memory_mib`].
    specs: BTreeMap<(String, String), (DomainSpec, bool)>,
}

impl State {
    fn macs(&self) -> BTreeSet<MacAddr> {
        self.instances
            .values()
            .flat_map(|i| std::iter::once(i.mac).chain(i.public.map(|(_, m)| m)))
            .collect()
    }

    fn usage(&self, project: &str) -> Usage {
        let volumes: u64 = self
            .volumes
            .values()
            .filter(|v| v.project == project)
            .map(|v| v.size)
            .sum();
        self.instances
            .values()
            .filter(|i| i.kompute.project == project)
            .fold(
                Usage {
                    storage: volumes,
                    ..Usage::default()
                },
                |u, i| u.plus(usage_of(&i.kompute)),
            )
    }

    fn loads(&self) -> Vec<HypervisorLoad> {
        self.hypervisors
            .iter()
            .map(|h| {
                let name = h.hv.name().to_owned();
                let mine: Vec<&KomputeInfo> = self
                    .instances
                    .values()
                    .filter(|i| i.hypervisor == name)
                    .collect();
                HypervisorLoad {
                    zone: h.zone.clone(),
                    instances: mine.len() as u32,
                    vcpus: mine.iter().map(|i| i.kompute.vcpus).sum(),
                    memory_gb: mine.iter().map(|i| i.kompute.mem).sum(),
                    instance_names: mine.iter().map(|i| i.kompute.name.clone()).collect(),
                    name,
                }
            })
            .collect()
    }

    /// A ready instance: not being created, deleted, resized or migrated.
    fn ready(&self, key: &(String, String)) -> Result<&KomputeInfo, CloudError> {
        self.instances
            .get(key)
            .filter(|i| i.ready)
            .ok_or_else(|| CloudError::NotFound {
                kind: "kompute",
                name: key.1.clone(),
            })
    }

    /// Marks an instance busy (`false`) or ready again (`true`).
    fn set_ready(&mut self, key: &(String, String), ready: bool) {
        if let Some(i) = self.instances.get_mut(key) {
            i.ready = ready;
        }
    }

    /// The hypervisor an instance runs on.
    fn hypervisor_of(&self, info: &KomputeInfo) -> Result<Arc<dyn Hypervisor>, CloudError> {
        self.hypervisor(&info.hypervisor)
            .ok_or_else(|| CloudError::NotFound {
                kind: "hypervisor",
                name: info.hypervisor.clone(),
            })
    }

    fn hypervisor(&self, name: &str) -> Option<Arc<dyn Hypervisor>> {
        self.hypervisors
            .iter()
            .find(|h| h.hv.name() == name)
            .map(|h| h.hv.clone())
    }
}

fn usage_of(k: &Kompute) -> Usage {
    Usage {
        instances: 1,
        vcpus: k.vcpus,
        memory: k.mem,
        storage: k.storage_gb(),
    }
}

struct Inner {
    config: CloudConfig,
    storage: Arc<dyn BlockStorage>,
    shares: Option<Arc<dyn FileShares>>,
    state: tokio::sync::Mutex<State>,
    hooks: std::sync::Mutex<Vec<Hook>>,
}

/// The facade. Cheap to clone; all clones share one inventory.
#[derive(Clone)]
pub struct Cloud {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("regions", &self.inner.config.regions.len())
            .field("storage", &self.inner.storage.backend())
            .finish()
    }
}

/// Runs `f` as its own task, so that dropping the caller's future does not
/// stop a multi-step operation halfway (its rollback included).
async fn detached<T, F>(f: F) -> Result<T, CloudError>
where
    F: std::future::Future<Output = Result<T, CloudError>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(f)
        .await
        .map_err(|e| CloudError::Task(e.to_string()))?
}

/// What [`Cloud::reserve`] decided for a new instance.
struct Reservation {
    info: KomputeInfo,
    hv: Arc<dyn Hypervisor>,
    project: ProjectInfo,
    network: ProjectNetwork,
    public_net: Option<PublicNetwork>,
}

/// One step of a creation, undone in reverse order on failure.
enum Undo {
    Volume(String),
    Seed(PathBuf),
    Domain(Arc<dyn Hypervisor>, String),
    /// A call that timed out and may still succeed: wait for it (bounded),
    /// then undo what it made.
    Late(tokio::task::JoinHandle<bool>, Box<Undo>),
}

impl Cloud {
    /// Runs a blocking backend call on the blocking pool, bounded by
    /// [`CloudConfig::backend_timeout`].
    async fn call<T, E, F>(&self, op: &'static str, f: F) -> Result<T, CloudError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<CloudError> + Send + 'static,
    {
        self.call_within(op, self.inner.config.backend_timeout, f)
            .await
    }

    /// Like [`call`](Self::call) with its own bound. When the bound is hit
    /// the caller gets [`CloudError::Timeout`]; the stuck call itself cannot
    /// be interrupted and finishes (or not) on its blocking thread.
    async fn call_within<T, E, F>(
        &self,
        op: &'static str,
        bound: Duration,
        f: F,
    ) -> Result<T, CloudError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<CloudError> + Send + 'static,
    {
        match tokio::time::timeout(bound, tokio::task::spawn_blocking(f)).await {
            Err(_) => Err(CloudError::Timeout { op, after: bound }),
            Ok(joined) => joined
                .map_err(|e| CloudError::Task(e.to_string()))?
                .map_err(Into::into),
        }
    }

    /// Like [`call`](Self::call) for a call that creates something: if it
    /// times out, `late` (the undo of what it creates) is queued in `undo`
    /// behind a wait for the stuck call, so a late success is undone too.
    async fn call_tracked<T, E, F>(
        &self,
        op: &'static str,
        f: F,
        undo: &mut Vec<Undo>,
        late: Undo,
    ) -> Result<T, CloudError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<CloudError> + Send + 'static,
    {
        let bound = self.inner.config.backend_timeout;
        let mut handle = tokio::task::spawn_blocking(f);
        match tokio::time::timeout(bound, &mut handle).await {
            Ok(joined) => joined
                .map_err(|e| CloudError::Task(e.to_string()))?
                .map_err(Into::into),
            Err(_) => {
                let watcher = tokio::spawn(async move { matches!(handle.await, Ok(Ok(_))) });
                undo.push(Undo::Late(watcher, Box::new(late)));
                Err(CloudError::Timeout { op, after: bound })
            }
        }
    }

    /// A cloud over `storage`, with no hypervisor yet.
    pub fn new(config: CloudConfig, storage: Arc<dyn BlockStorage>) -> Self {
        Cloud {
            inner: Arc::new(Inner {
                config,
                storage,
                shares: None,
                state: tokio::sync::Mutex::new(State::default()),
                hooks: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// Adds a Kylo file share backend (call before sharing the `Cloud`).
    pub fn with_shares(self, shares: Arc<dyn FileShares>) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.shares = Some(shares);
                Cloud {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => {
                tracing::warn!("with_shares on a shared Cloud is ignored");
                Cloud { inner }
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CloudConfig {
        &self.inner.config
    }

    /// The block storage backend.
    pub fn storage(&self) -> &Arc<dyn BlockStorage> {
        &self.inner.storage
    }

    /// Registers a hypervisor in a zone.
    pub async fn add_hypervisor(
        &self,
        zone: &str,
        hv: Arc<dyn Hypervisor>,
    ) -> Result<(), CloudError> {
        if self.inner.config.zone(zone).is_none() {
            return Err(CloudError::NotFound {
                kind: "zone",
                name: zone.to_owned(),
            });
        }
        let mut st = self.inner.state.lock().await;
        if st.hypervisors.iter().any(|h| h.hv.name() == hv.name()) {
            return Err(CloudError::AlreadyExists {
                kind: "hypervisor",
                name: hv.name().to_owned(),
            });
        }
        st.hypervisors.push(HypervisorEntry {
            zone: zone.to_owned(),
            hv,
        });
        Ok(())
    }

    /// Calls `hook` for every [`CloudEvent`] (e.g. to mail users).
    pub fn on_event(&self, hook: impl Fn(&CloudEvent) + Send + Sync + 'static) {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(hook));
    }

    fn emit(&self, event: &CloudEvent) {
        let hooks: Vec<Hook> = self
            .inner
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for h in hooks {
            // A panicking hook must not turn a finished operation into a
            // failed one.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(event))).is_err() {
                tracing::error!("an event hook panicked");
            }
        }
    }

    /// Registers an OS template from a local image.
    pub async fn import_template(
        &self,
        template: Template,
        image: &Path,
    ) -> Result<(), CloudError> {
        template.validate().map_err(|source| CloudError::Invalid {
            kind: "template",
            source,
        })?;
        let storage = self.inner.storage.clone();
        let (name, image) = (template.name.clone(), image.to_owned());
        self.call("import_template", move || {
            storage.import_template(&name, &image)
        })
        .await?;
        self.inner
            .state
            .lock()
            .await
            .templates
            .insert(template.name.clone(), template);
        Ok(())
    }

    /// Creates a project: a private subnet of `subnet_size` in each of its
    /// regions, zone gateways and a VRID per zone.
    pub async fn create_project(&self, project: Project) -> Result<ProjectInfo, CloudError> {
        project.validate().map_err(|source| CloudError::Invalid {
            kind: "project",
            source,
        })?;
        let mut st = self.inner.state.lock().await;
        if st.projects.contains_key(&project.name) {
            return Err(CloudError::AlreadyExists {
                kind: "project",
                name: project.name.clone(),
            });
        }
        let bridge = self.inner.config.bridge_for(&project.name);
        if let Some(other) = st
            .projects
            .values()
            .find(|p| p.networks.values().any(|n| n.bridge == bridge))
        {
            return Err(CloudError::Conflict(format!(
                "project {:?} would share bridge {bridge} with project {:?}",
                project.name, other.project.name
            )));
        }
        let mut networks = BTreeMap::new();
        for (i, region) in project.regions.iter().enumerate() {
            let rc = self
                .inner
                .config
                .region(region)
                .ok_or_else(|| CloudError::Invalid {
                    kind: "project",
                    source: ValidationError::Invalid {
                        field: format!("regions[{i}]"),
                        value: region.clone(),
                        expected: "a region of this cloud".into(),
                    },
                })?;
            // Other projects' subnets, and this project's in earlier regions
            // (regions may share pools).
            let taken: Vec<IpNet> = st
                .projects
                .values()
                .flat_map(|p| p.networks.values())
                .chain(networks.values())
                .map(|n| IpNet::V4(n.subnet.cidr))
                .collect();
            let cidr = match alloc::allocate_subnet(&rc.subnet_pools, &taken, project.subnet_size)?
            {
                IpNet::V4(n) => n,
                IpNet::V6(n) => {
                    return Err(AllocError::Invalid(format!(
                        "{n}: IPv6 project subnets are not supported yet"
                    ))
                    .into())
                }
            };
            let subnet = ProjectSubnet::new(cidr, rc.gateway_pool_size)?;
            let zones: Vec<String> = rc.zones.iter().map(|z| z.name.clone()).collect();
            let zone_gateways = alloc::allocate_zone_gateways(&subnet, &zones, &BTreeMap::new())?;
            let mut used = BTreeSet::new();
            let mut vrids = BTreeMap::new();
            for z in &zones {
                let v = alloc::allocate_vrid(&used)?;
                used.insert(v);
                vrids.insert(z.clone(), v);
            }
            networks.insert(
                region.clone(),
                ProjectNetwork {
                    subnet,
                    zone_gateways,
                    vrids,
                    bridge: bridge.clone(),
                },
            );
        }
        let info = ProjectInfo {
            project: project.clone(),
            networks,
        };
        st.projects.insert(project.name.clone(), info.clone());
        tracing::info!(project = %project.name, "project created");
        Ok(info)
    }

    /// A project.
    pub async fn project(&self, name: &str) -> Option<ProjectInfo> {
        self.inner.state.lock().await.projects.get(name).cloned()
    }

    /// Deletes a project that holds no instance, record or share.
    pub async fn delete_project(&self, name: &str) -> Result<(), CloudError> {
        let mut st = self.inner.state.lock().await;
        if !st.projects.contains_key(name) {
            return Err(CloudError::NotFound {
                kind: "project",
                name: name.to_owned(),
            });
        }
        let busy = st.instances.keys().any(|(p, _)| p == name)
            || st.volumes.keys().any(|(p, _)| p == name)
            || st.dns.keys().any(|(p, _)| p == name)
            || st.kylos.keys().any(|(p, _)| p == name);
        if busy {
            return Err(CloudError::Conflict(format!(
                "project {name:?} still has resources"
            )));
        }
        st.projects.remove(name);
        Ok(())
    }

    /// Current usage of a project (what its quotas are checked against).
    pub async fn usage(&self, project: &str) -> Usage {
        self.inner.state.lock().await.usage(project)
    }

    /// The instances of a Multi-Zone Resource (Kawaii, Konvey) of a project
    /// in a region: one per zone, named `<resource>-<zone>`.
    pub async fn multi_zone_plan(
        &self,
        project: &str,
        region: &str,
        resource: &str,
    ) -> Result<Vec<ZoneInstance>, CloudError> {
        let st = self.inner.state.lock().await;
        let p = st
            .projects
            .get(project)
            .ok_or_else(|| CloudError::NotFound {
                kind: "project",
                name: project.to_owned(),
            })?;
        if !p.networks.contains_key(region) {
            return Err(CloudError::NotFound {
                kind: "region",
                name: region.to_owned(),
            });
        }
        let zones: Vec<String> = self
            .inner
            .config
            .region(region)
            .map(|r| r.zones.iter().map(|z| z.name.clone()).collect())
            .unwrap_or_default();
        Ok(alloc::expand_multi_zone(resource, &zones))
    }

    /// Creates the instances of a Multi-Zone Resource (a Kawaii or Konvey
    /// of `shape.project` in `region`): one Kompute per zone of the region,
    /// named `<shape.name>-<zone>` (`shape.zone` is ignored). All or
    /// nothing: when one fails, those already made are deleted.
    pub async fn create_multi_zone(
        &self,
        region: &str,
        shape: Kompute,
    ) -> Result<Vec<KomputeInfo>, CloudError> {
        let plan = self
            .multi_zone_plan(&shape.project, region, &shape.name)
            .await?;
        let mut made: Vec<KomputeInfo> = Vec::new();
        for zi in plan {
            let k = Kompute {
                name: zi.name,
                zone: zi.zone,
                ..shape.clone()
            };
            match self.create_kompute(k).await {
                Ok(info) => made.push(info),
                Err(e) => {
                    for info in made.iter().rev() {
                        if let Err(d) = self
                            .delete_kompute(&info.kompute.project, &info.kompute.name)
                            .await
                        {
                            tracing::error!(error = %d, "multi-zone rollback failed");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    /// Creates and starts a Kompute instance (see the module documentation).
    pub async fn create_kompute(&self, kompute: Kompute) -> Result<KomputeInfo, CloudError> {
        self.create_kompute_with(kompute, KomputeOptions::default())
            .await
    }

    /// [`create_kompute`](Self::create_kompute) with extra options.
    ///
    /// The work runs in its own task: dropping the returned future (a
    /// timeout, a cancelled request) does not stop it halfway, so a creation
    /// either completes or is rolled back.
    pub async fn create_kompute_with(
        &self,
        kompute: Kompute,
        options: KomputeOptions,
    ) -> Result<KomputeInfo, CloudError> {
        let this = self.clone();
        detached(async move { this.create_kompute_task(kompute, options).await }).await
    }

    async fn create_kompute_task(
        &self,
        kompute: Kompute,
        options: KomputeOptions,
    ) -> Result<KomputeInfo, CloudError> {
        kompute.validate().map_err(|source| CloudError::Invalid {
            kind: "kompute",
            source,
        })?;
        let key = (kompute.project.clone(), kompute.name.clone());
        // 1. Reserve: quota, placement, addresses, MACs (under the lock, so
        //    two creations never get the same ones).
        let r = {
            let mut st = self.inner.state.lock().await;
            let r = self.reserve(&st, &kompute)?;
            st.instances.insert(key.clone(), r.info.clone());
            r
        };
        let Reservation {
            info,
            hv,
            project,
            network,
            public_net,
        } = r;
        tracing::info!(
            project = %kompute.project, name = %kompute.name, hypervisor = %info.hypervisor,
            ip = %info.ip, "creating kompute"
        );
        // 2. Build: disks, seed, define, start; undo in reverse on failure.
        let mut undo = Vec::new();
        let password = project.project.root_password_or_generate();
        let built = self
            .build_kompute(
                &info,
                &hv,
                (&project, &network, public_net.as_ref()),
                &options,
                &password,
                &mut undo,
            )
            .await;
        let mut st = self.inner.state.lock().await;
        match built {
            Ok(spec) => {
                let mut info = info;
                info.ready = true;
                st.instances.insert(key.clone(), info.clone());
                st.specs.insert(key, (spec, options.memory_mib.is_some()));
                drop(st);
                self.emit(&CloudEvent::InstanceCreated {
                    project: kompute.project.clone(),
                    name: kompute.name.clone(),
                    ip: info.ip,
                    hypervisor: info.hypervisor.clone(),
                    bootstrap_user: project.project.bootstrap_user.clone(),
                    password,
                });
                Ok(info)
            }
            Err(e) => {
                drop(st);
                tracing::warn!(name = %kompute.name, error = %e, "kompute creation failed, rolling back");
                self.rollback(undo).await;
                self.inner.state.lock().await.instances.remove(&key);
                Err(e)
            }
        }
    }

    /// Decides everything of a new instance without touching a backend.
    fn reserve(&self, st: &State, kompute: &Kompute) -> Result<Reservation, CloudError> {
        let invalid = |field: &str, value: &str, expected: String| CloudError::Invalid {
            kind: "kompute",
            source: ValidationError::Invalid {
                field: field.into(),
                value: value.into(),
                expected,
            },
        };
        let project =
            st.projects
                .get(&kompute.project)
                .cloned()
                .ok_or_else(|| CloudError::NotFound {
                    kind: "project",
                    name: kompute.project.clone(),
                })?;
        if st
            .instances
            .contains_key(&(kompute.project.clone(), kompute.name.clone()))
        {
            return Err(CloudError::AlreadyExists {
                kind: "kompute",
                name: kompute.name.clone(),
            });
        }
        let (rc, _) = self
            .inner
            .config
            .zone(&kompute.zone)
            .ok_or_else(|| invalid("zone", &kompute.zone, "a zone of this cloud".into()))?;
        let region = rc.region.name.clone();
        let network = project.networks.get(&region).cloned().ok_or_else(|| {
            invalid(
                "zone",
                &kompute.zone,
                format!(
                    "a zone of the project's regions {:?}",
                    project.project.regions
                ),
            )
        })?;
        let public_net = match (kompute.public, &rc.public) {
            (false, _) => None,
            (true, Some(pn)) => Some(pn.clone()),
            (true, None) => {
                return Err(invalid(
                    "public",
                    "true",
                    format!("a region with a public network ({region} has none)"),
                ))
            }
        };
        alloc::check_quota(
            &project.project.quotas(),
            &st.usage(&kompute.project),
            &usage_of(kompute),
        )?;
        let loads = st.loads();
        let target = alloc::place(&loads, &kompute.zone, &kompute.name)?
            .name
            .clone();
        let hv = st.hypervisor(&target).ok_or_else(|| CloudError::NotFound {
            kind: "hypervisor",
            name: target.clone(),
        })?;
        let used_ips: BTreeSet<Ipv4Addr> = st
            .instances
            .values()
            .filter(|i| network.subnet.cidr.contains(&i.ip))
            .map(|i| i.ip)
            .collect();
        let ip = alloc::first_free_address(&network.subnet, &used_ips)?;
        let mut macs = st.macs();
        let mac = alloc::allocate_mac(&macs, &mut rand::rng())?;
        macs.insert(mac);
        let public = match &public_net {
            Some(pn) => {
                let used: BTreeSet<Ipv4Addr> = st
                    .instances
                    .values()
                    .filter_map(|i| i.public.map(|(a, _)| a))
                    .collect();
                let addr = alloc::first_free_address(&pn.subnet, &used)?;
                Some((addr, alloc::allocate_mac(&macs, &mut rand::rng())?))
            }
            None => None,
        };
        let domain = format!("{}-{}", kompute.project, kompute.name);
        let info = KomputeInfo {
            os_volume: format!("{domain}-os"),
            data_volume: (kompute.extra_disk > 0).then(|| format!("{domain}-data")),
            seed: self.inner.config.seed_dir.join(format!("{domain}.iso")),
            domain,
            hypervisor: target,
            ip,
            mac,
            public,
            region,
            kompute: kompute.clone(),
            ready: false,
        };
        Ok(Reservation {
            info,
            hv,
            project,
            network,
            public_net,
        })
    }

    async fn build_kompute(
        &self,
        info: &KomputeInfo,
        hv: &Arc<dyn Hypervisor>,
        (project, network, public_net): (&ProjectInfo, &ProjectNetwork, Option<&PublicNetwork>),
        options: &KomputeOptions,
        password: &Secret,
        undo: &mut Vec<Undo>,
    ) -> Result<DomainSpec, CloudError> {
        let k = &info.kompute;
        let storage = self.inner.storage.clone();
        let template = k.template.clone();
        if !self
            .call("has_template", {
                let storage = storage.clone();
                let template = template.clone();
                move || storage.has_template(&template)
            })
            .await?
        {
            return Err(StorageError::NotFound {
                kind: "template",
                name: template,
            }
            .into());
        }
        // Disks.
        let os = {
            let (storage, vol, size) = (storage.clone(), info.os_volume.clone(), k.disk * GIB);
            self.call_tracked(
                "clone_template",
                move || storage.clone_template(&template, &vol, size),
                undo,
                Undo::Volume(info.os_volume.clone()),
            )
            .await?
        };
        undo.push(Undo::Volume(info.os_volume.clone()));
        let mut disks = vec![DiskSpec {
            source: os,
            target: "vda".into(),
            device: DiskDevice::Disk,
        }];
        if let Some(data) = &info.data_volume {
            let (storage, vol, size) = (storage.clone(), data.clone(), k.extra_disk * GIB);
            let src = self
                .call_tracked(
                    "create_volume",
                    move || storage.create(&vol, size),
                    undo,
                    Undo::Volume(data.clone()),
                )
                .await?;
            undo.push(Undo::Volume(data.clone()));
            disks.push(DiskSpec {
                source: src,
                target: "vdb".into(),
                device: DiskDevice::Disk,
            });
        }
        // Seed: zone-local gateway first, the others as backups.
        let mut routes = Vec::new();
        if let Some(gw) = network.zone_gateways.get(&k.zone) {
            routes.push(Route::default_via(*gw, LOCAL_GATEWAY_METRIC));
        }
        let mut metric = REMOTE_GATEWAY_METRIC;
        for (zone, gw) in &network.zone_gateways {
            if zone != &k.zone {
                routes.push(Route::default_via(*gw, metric));
                metric += 1;
            }
        }
        if routes.is_empty() {
            routes.push(Route::default_via(
                network.subnet.gateway,
                LOCAL_GATEWAY_METRIC,
            ));
        }
        let p = &project.project;
        let key = if p.bootstrap_pubkey.is_empty() {
            self.inner.config.default_pubkey.clone()
        } else {
            p.bootstrap_pubkey.clone()
        };
        let address = Ipv4Net::new(info.ip, network.subnet.cidr.prefix_len())
            .map_err(|e| CloudError::Conflict(e.to_string()))?;
        let mut nics = Vec::new();
        let mut nic_specs = Vec::new();
        if let (Some(pn), Some((addr, mac))) = (public_net, info.public) {
            nics.push(NicConfig {
                name: "ens3".into(),
                mac,
                address: Ipv4Net::new(addr, pn.subnet.cidr.prefix_len())
                    .map_err(|e| CloudError::Conflict(e.to_string()))?,
                routes: vec![Route::default_via(pn.subnet.gateway, PUBLIC_GATEWAY_METRIC)],
                nameservers: vec![],
                search: vec![],
            });
            nic_specs.push(NicSpec {
                mac,
                bridge: pn.bridge.clone(),
            });
        }
        nics.push(NicConfig {
            name: "ens4".into(),
            mac: info.mac,
            address,
            routes,
            nameservers: self
                .inner
                .config
                .region(&info.region)
                .and_then(|r| r.dns.as_ref())
                .map(|dns| dns.nameservers.clone())
                .unwrap_or_default(),
            search: if p.domain.is_empty() {
                vec![]
            } else {
                vec![p.domain.clone()]
            },
        });
        nic_specs.push(NicSpec {
            mac: info.mac,
            bridge: network.bridge.clone(),
        });
        let seed = Seed {
            instance_id: info.domain.clone(),
            hostname: k.name.clone(),
            fqdn: (!p.domain.is_empty()).then(|| format!("{}.{}", k.name, p.domain)),
            bootstrap_user: p.bootstrap_user.clone(),
            ssh_keys: if key.is_empty() { vec![] } else { vec![key] },
            password: password.clone(),
            nics,
        };
        let seed_path = info.seed.clone();
        let seed_dir = self.inner.config.seed_dir.clone();
        undo.push(Undo::Seed(seed_path.clone()));
        self.call("write_seed", move || {
            std::fs::create_dir_all(&seed_dir).map_err(|source| SeedError::Io {
                context: format!("create {}", seed_dir.display()),
                source,
            })?;
            seed.write_iso(&seed_path)
        })
        .await?;
        disks.push(DiskSpec {
            source: DiskSource::File {
                path: info.seed.clone(),
                format: DiskFormat::Raw,
            },
            target: "sda".into(),
            device: DiskDevice::Cdrom,
        });
        // Domain.
        let spec = DomainSpec {
            name: info.domain.clone(),
            uuid: None,
            description: format!("kowabunga kompute {} of project {}", k.name, k.project),
            domain_type: hv.domain_type(),
            vcpus: k.vcpus,
            memory_mib: options.memory_mib.unwrap_or(k.mem * 1024),
            disks,
            nics: nic_specs,
            direct_boot: options.direct_boot.clone(),
            serial_log: options.serial_log.clone(),
        };
        {
            let (hv, spec) = (hv.clone(), spec.clone());
            let late = Undo::Domain(hv.clone(), info.domain.clone());
            self.call_tracked("define", move || hv.define(&spec), undo, late)
                .await?;
        }
        undo.push(Undo::Domain(hv.clone(), info.domain.clone()));
        {
            let (hv, name) = (hv.clone(), info.domain.clone());
            self.call("start", move || hv.start(&name)).await?;
        }
        Ok(spec)
    }

    async fn rollback(&self, mut steps: Vec<Undo>) {
        while let Some(step) = steps.pop() {
            let result = match step {
                Undo::Late(mut watcher, then) => {
                    // Wait (bounded) for the stuck call and undo what it made
                    // if it succeeded late; if it is still stuck, a reaper
                    // task waits for it and undoes it then.
                    let bound = self.inner.config.backend_timeout;
                    match tokio::time::timeout(bound, &mut watcher).await {
                        Ok(Ok(true)) => self.undo(*then).await,
                        Ok(_) => Ok(()),
                        Err(_) => {
                            let this = self.clone();
                            tokio::spawn(async move {
                                if let Ok(true) = watcher.await {
                                    if let Err(e) = this.undo(*then).await {
                                        tracing::error!(error = %e, "late rollback step failed");
                                    }
                                }
                            });
                            Ok(())
                        }
                    }
                }
                step => self.undo(step).await,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "rollback step failed");
            }
        }
    }

    /// Undoes one step (a `Late` step is treated as done).
    async fn undo(&self, step: Undo) -> Result<(), CloudError> {
        match step {
            Undo::Domain(hv, name) => {
                self.call("delete_domain", move || match hv.delete(&name) {
                    Err(HypervisorError::NotFound(_)) => Ok(()),
                    other => other,
                })
                .await
            }
            Undo::Volume(vol) => {
                let storage = self.inner.storage.clone();
                self.call("remove_volume", move || match storage.remove(&vol) {
                    Err(StorageError::NotFound { .. }) => Ok(()),
                    other => other,
                })
                .await
            }
            Undo::Seed(path) => match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(CloudError::Seed(SeedError::Io {
                    context: format!("remove {}", path.display()),
                    source,
                })),
            },
            Undo::Late(..) => Ok(()),
        }
    }

    /// A Kompute instance.
    pub async fn kompute(&self, project: &str, name: &str) -> Option<KomputeInfo> {
        self.inner
            .state
            .lock()
            .await
            .instances
            .get(&(project.to_owned(), name.to_owned()))
            .cloned()
    }

    /// All Kompute instances of a project.
    pub async fn komputes(&self, project: &str) -> Vec<KomputeInfo> {
        self.inner
            .state
            .lock()
            .await
            .instances
            .values()
            .filter(|i| i.kompute.project == project)
            .cloned()
            .collect()
    }

    /// Run state of an instance.
    pub async fn kompute_state(
        &self,
        project: &str,
        name: &str,
    ) -> Result<DomainState, CloudError> {
        let (hv, domain) = self.ready_instance(project, name).await?;
        self.call("state", move || hv.state(&domain)).await
    }

    async fn ready_instance(
        &self,
        project: &str,
        name: &str,
    ) -> Result<(Arc<dyn Hypervisor>, String), CloudError> {
        let st = self.inner.state.lock().await;
        let info = st.ready(&(project.to_owned(), name.to_owned()))?;
        Ok((st.hypervisor_of(info)?, info.domain.clone()))
    }

    /// Powers an instance off and removes its domain, disks and seed.
    /// Runs in its own task, like [`create_kompute_with`](Self::create_kompute_with).
    pub async fn delete_kompute(&self, project: &str, name: &str) -> Result<(), CloudError> {
        let (this, project, name) = (self.clone(), project.to_owned(), name.to_owned());
        detached(async move { this.delete_kompute_task(&project, &name).await }).await
    }

    async fn delete_kompute_task(&self, project: &str, name: &str) -> Result<(), CloudError> {
        let key = (project.to_owned(), name.to_owned());
        let (info, hv) = {
            let mut st = self.inner.state.lock().await;
            let info = st.ready(&key)?.clone();
            st.set_ready(&key, false);
            let hv = st.hypervisor(&info.hypervisor);
            (info, hv)
        };
        // The same steps as a rollback; a retry after a partial failure
        // finds what is already gone and goes on.
        let mut steps: Vec<Undo> = hv
            .map(|hv| Undo::Domain(hv, info.domain.clone()))
            .into_iter()
            .collect();
        steps.extend(
            std::iter::once(&info.os_volume)
                .chain(info.data_volume.iter())
                .map(|v| Undo::Volume(v.clone())),
        );
        steps.push(Undo::Seed(info.seed.clone()));
        let result = async {
            for step in steps {
                self.undo(step).await?;
            }
            Ok::<(), CloudError>(())
        }
        .await;
        let mut st = self.inner.state.lock().await;
        match result {
            Ok(()) => {
                st.instances.remove(&key);
                st.specs.remove(&key);
                drop(st);
                self.emit(&CloudEvent::InstanceDeleted {
                    project: project.to_owned(),
                    name: name.to_owned(),
                });
                Ok(())
            }
            Err(e) => {
                st.set_ready(&key, true);
                Err(e)
            }
        }
    }

    /// Changes vCPUs, memory and disk sizes of an instance (quota-checked;
    /// disks only grow). The new definition applies at the next boot.
    /// Runs in its own task, like [`create_kompute_with`](Self::create_kompute_with).
    pub async fn resize_kompute(
        &self,
        project: &str,
        name: &str,
        vcpus: u32,
        mem: u64,
        disk: u64,
    ) -> Result<KomputeInfo, CloudError> {
        let (this, project, name) = (self.clone(), project.to_owned(), name.to_owned());
        detached(async move {
            this.resize_kompute_task(&project, &name, vcpus, mem, disk)
                .await
        })
        .await
    }

    async fn resize_kompute_task(
        &self,
        project: &str,
        name: &str,
        vcpus: u32,
        mem: u64,
        disk: u64,
    ) -> Result<KomputeInfo, CloudError> {
        let key = (project.to_owned(), name.to_owned());
        let (info, spec, memory_override, hv) = {
            let mut st = self.inner.state.lock().await;
            let info = st.ready(&key)?.clone();
            let mut resized = info.kompute.clone();
            resized.vcpus = vcpus;
            resized.mem = mem;
            resized.disk = disk;
            resized.validate().map_err(|source| CloudError::Invalid {
                kind: "kompute",
                source,
            })?;
            if disk < info.kompute.disk {
                return Err(CloudError::Invalid {
                    kind: "kompute",
                    source: ValidationError::Invalid {
                        field: "disk".into(),
                        value: disk.to_string(),
                        expected: format!("at least the current {} GiB", info.kompute.disk),
                    },
                });
            }
            let quotas = st
                .projects
                .get(project)
                .map(|p| p.project.quotas())
                .unwrap_or_default();
            let others = st.usage(project).minus(usage_of(&info.kompute));
            let mut request = usage_of(&resized);
            request.instances = 0;
            alloc::check_quota(&quotas, &others, &request)?;
            let (spec, memory_override) =
                st.specs
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| CloudError::NotFound {
                        kind: "kompute",
                        name: name.to_owned(),
                    })?;
            let hv = st.hypervisor_of(&info)?;
            // Busy while resizing: no concurrent delete or migration.
            st.set_ready(&key, false);
            let mut info = info;
            info.kompute = resized;
            (info, spec, memory_override, hv)
        };
        let mut spec = spec;
        spec.vcpus = vcpus;
        if !memory_override {
            spec.memory_mib = mem * 1024;
        }
        let result = async {
            let (storage, vol, size) = (
                self.inner.storage.clone(),
                info.os_volume.clone(),
                disk * GIB,
            );
            self.call("resize_volume", move || {
                let current = storage.usage(&vol)?.provisioned_bytes;
                if size > current {
                    storage.resize(&vol, size)
                } else {
                    Ok(())
                }
            })
            .await?;
            let (hv, spec) = (hv.clone(), spec.clone());
            self.call("update", move || hv.update(&spec)).await
        }
        .await;
        let mut st = self.inner.state.lock().await;
        match result {
            Ok(()) => {
                let mut info = info;
                info.ready = true;
                st.instances.insert(key.clone(), info.clone());
                st.specs.insert(key, (spec, memory_override));
                Ok(info)
            }
            Err(e) => {
                st.set_ready(&key, true);
                Err(e)
            }
        }
    }

    /// Live-migrates an instance to another hypervisor of its zone.
    /// Runs in its own task, like [`create_kompute_with`](Self::create_kompute_with).
    pub async fn migrate_kompute(
        &self,
        project: &str,
        name: &str,
        to: &str,
    ) -> Result<KomputeInfo, CloudError> {
        let (this, project, name, to) = (
            self.clone(),
            project.to_owned(),
            name.to_owned(),
            to.to_owned(),
        );
        detached(async move { this.migrate_kompute_task(&project, &name, &to).await }).await
    }

    async fn migrate_kompute_task(
        &self,
        project: &str,
        name: &str,
        to: &str,
    ) -> Result<KomputeInfo, CloudError> {
        let key = (project.to_owned(), name.to_owned());
        let (source, target, domain) = {
            let mut st = self.inner.state.lock().await;
            let info = st.ready(&key)?.clone();
            let target = st
                .hypervisors
                .iter()
                .find(|h| h.hv.name() == to)
                .ok_or_else(|| CloudError::NotFound {
                    kind: "hypervisor",
                    name: to.to_owned(),
                })?;
            if target.zone != info.kompute.zone {
                return Err(CloudError::Conflict(format!(
                    "hypervisor {to:?} is in zone {:?}, instance {name:?} in {:?}",
                    target.zone, info.kompute.zone
                )));
            }
            if info.hypervisor == to {
                return Err(CloudError::Conflict(format!(
                    "{name:?} already runs on {to:?}"
                )));
            }
            let target = target.hv.clone();
            let source = st.hypervisor_of(&info)?;
            st.set_ready(&key, false);
            (source, target, info.domain)
        };
        let uri = target.uri().to_owned();
        let result = self
            .call_within("migrate", self.inner.config.migration_timeout, move || {
                source.migrate(&domain, &uri)
            })
            .await;
        let mut st = self.inner.state.lock().await;
        let info = st
            .instances
            .get_mut(&key)
            .ok_or_else(|| CloudError::NotFound {
                kind: "kompute",
                name: name.to_owned(),
            })?;
        info.ready = true;
        result?;
        info.hypervisor = to.to_owned();
        tracing::info!(project, name, to, "kompute migrated");
        Ok(info.clone())
    }

    /// Name of a standalone volume in the block storage backend:
    /// `<project>.vol.<name>` (instance disks never hold a dot).
    pub fn volume_storage_name(project: &str, name: &str) -> String {
        format!("{project}.vol.{name}")
    }

    /// Creates a standalone volume (counted by the storage quota): an empty
    /// thin data volume, or, for `type: os`, a copy-on-write clone of its
    /// template.
    pub async fn create_volume(&self, volume: Volume) -> Result<DiskSource, CloudError> {
        volume.validate().map_err(|source| CloudError::Invalid {
            kind: "volume",
            source,
        })?;
        let key = (volume.project.clone(), volume.name.clone());
        {
            let mut st = self.inner.state.lock().await;
            let quotas = st
                .projects
                .get(&volume.project)
                .map(|p| p.project.quotas())
                .ok_or_else(|| CloudError::NotFound {
                    kind: "project",
                    name: volume.project.clone(),
                })?;
            if st.volumes.contains_key(&key) {
                return Err(CloudError::AlreadyExists {
                    kind: "volume",
                    name: volume.name.clone(),
                });
            }
            let request = Usage {
                storage: volume.size,
                ..Usage::default()
            };
            alloc::check_quota(&quotas, &st.usage(&volume.project), &request)?;
            // Reserved (counted) while being created.
            st.volumes.insert(key.clone(), volume.clone());
        }
        let storage = self.inner.storage.clone();
        let name = Self::volume_storage_name(&volume.project, &volume.name);
        let size = volume.size * GIB;
        let template = volume.template.clone().unwrap_or_default();
        let kind = volume.kind;
        let mut undo = Vec::new();
        let created = self
            .call_tracked(
                "create_volume",
                move || match kind {
                    VolumeType::Os => storage.clone_template(&template, &name, size),
                    VolumeType::Raw | VolumeType::Iso => storage.create(&name, size),
                },
                &mut undo,
                Undo::Volume(Self::volume_storage_name(&volume.project, &volume.name)),
            )
            .await;
        if created.is_err() {
            self.rollback(undo).await;
            self.inner.state.lock().await.volumes.remove(&key);
        }
        created
    }

    /// Removes a standalone volume.
    pub async fn delete_volume(&self, project: &str, name: &str) -> Result<(), CloudError> {
        let key = (project.to_owned(), name.to_owned());
        if !self.inner.state.lock().await.volumes.contains_key(&key) {
            return Err(CloudError::NotFound {
                kind: "volume",
                name: name.to_owned(),
            });
        }
        self.undo(Undo::Volume(Self::volume_storage_name(project, name)))
            .await?;
        self.inner.state.lock().await.volumes.remove(&key);
        Ok(())
    }

    /// Adds a custom DNS record to a project.
    pub async fn create_dns_record(&self, record: DnsRecord) -> Result<(), CloudError> {
        record.validate().map_err(|source| CloudError::Invalid {
            kind: "dns record",
            source,
        })?;
        let mut st = self.inner.state.lock().await;
        if !st.projects.contains_key(&record.project) {
            return Err(CloudError::NotFound {
                kind: "project",
                name: record.project.clone(),
            });
        }
        let key = (record.project.clone(), record.name.clone());
        if st.dns.contains_key(&key) || st.instances.contains_key(&key) {
            return Err(CloudError::AlreadyExists {
                kind: "dns record",
                name: record.name.clone(),
            });
        }
        st.dns.insert(key, record);
        Ok(())
    }

    /// Removes a custom DNS record.
    pub async fn delete_dns_record(&self, project: &str, name: &str) -> Result<(), CloudError> {
        self.inner
            .state
            .lock()
            .await
            .dns
            .remove(&(project.to_owned(), name.to_owned()))
            .map(drop)
            .ok_or_else(|| CloudError::NotFound {
                kind: "dns record",
                name: name.to_owned(),
            })
    }

    /// The DNS view of a project (what Kiwi serves): every ready instance by
    /// its name, plus the custom records, as `name.<domain>` -> addresses.
    pub async fn dns_records(&self, project: &str) -> BTreeMap<String, Vec<String>> {
        let st = self.inner.state.lock().await;
        let domain = st
            .projects
            .get(project)
            .map(|p| p.project.domain.clone())
            .unwrap_or_default();
        let fqdn = |n: &str| {
            if domain.is_empty() {
                n.to_owned()
            } else {
                format!("{n}.{domain}")
            }
        };
        let mut out = BTreeMap::new();
        for i in st.instances.values() {
            if i.kompute.project == project && i.ready {
                out.insert(fqdn(&i.kompute.name), vec![i.ip.to_string()]);
            }
        }
        for ((p, n), r) in &st.dns {
            if p == project {
                out.insert(fqdn(n), r.addresses.clone());
            }
        }
        out
    }

    /// The `kiwi` section of `region`'s DNS nodes, rendered from the
    /// inventory: the region's [`RegionDns::kiwi`] settings plus one zone
    /// per project domain with a network in the region, holding an address
    /// record per ready instance of the region (its private address) and the
    /// project's custom records (all their addresses); with
    /// [`RegionDns::isolate`], each zone answers its project's subnet only.
    /// Projects sharing a domain share its zone. Write it as the `kiwi:` key
    /// of the nodes' `kowabungad` file ([`Kiwi::to_yaml`]) and reload them
    /// (`SIGHUP`) after every change.
    ///
    /// # Errors
    /// [`CloudError::NotFound`]: no such region, or it has no Kiwi
    /// ([`RegionConfig::dns`]).
    pub async fn kiwi_section(&self, region: &str) -> Result<Kiwi, CloudError> {
        let rc = self
            .inner
            .config
            .region(region)
            .ok_or_else(|| CloudError::NotFound {
                kind: "region",
                name: region.to_owned(),
            })?;
        let dns = rc.dns.as_ref().ok_or_else(|| CloudError::NotFound {
            kind: "kiwi of region",
            name: region.to_owned(),
        })?;
        let st = self.inner.state.lock().await;
        let mut zones: BTreeMap<String, KiwiZone> = BTreeMap::new();
        for (name, p) in &st.projects {
            let domain = p.project.domain.trim_end_matches('.').to_ascii_lowercase();
            let Some(network) = p.networks.get(region) else {
                continue;
            };
            if domain.is_empty() {
                continue;
            }
            let zone = zones.entry(domain.clone()).or_insert_with(|| KiwiZone {
                domain,
                allow_from: Vec::new(),
                records: Vec::new(),
            });
            if dns.isolate {
                zone.allow_from.push(network.subnet.cidr.to_string());
            }
            let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for i in st.instances.values() {
                if i.kompute.project == *name && i.region == region && i.ready {
                    names.insert(i.kompute.name.clone(), vec![i.ip.to_string()]);
                }
            }
            for ((p, n), r) in &st.dns {
                if p == name {
                    names.insert(n.clone(), r.addresses.clone());
                }
            }
            for (n, addresses) in names {
                if !zone.records.iter().any(|r| r.name == n) {
                    zone.records.push(KiwiRecord { name: n, addresses });
                }
            }
        }
        let mut kiwi = dns.kiwi.clone();
        kiwi.zones = zones.into_values().collect();
        Ok(kiwi)
    }

    /// Creates a Kylo share reachable from the project's subnet in the
    /// share's region only.
    pub async fn create_kylo(&self, kylo: Kylo) -> Result<Share, CloudError> {
        kylo.validate().map_err(|source| CloudError::Invalid {
            kind: "kylo",
            source,
        })?;
        let shares = self
            .inner
            .shares
            .clone()
            .ok_or(CloudError::NoBackend("file share"))?;
        let key = (kylo.project.clone(), kylo.name.clone());
        let request = {
            let st = self.inner.state.lock().await;
            let p = st
                .projects
                .get(&kylo.project)
                .ok_or_else(|| CloudError::NotFound {
                    kind: "project",
                    name: kylo.project.clone(),
                })?;
            let net = p
                .networks
                .get(&kylo.region)
                .ok_or_else(|| CloudError::Invalid {
                    kind: "kylo",
                    source: ValidationError::Invalid {
                        field: "region".into(),
                        value: kylo.region.clone(),
                        expected: "a region of the project".into(),
                    },
                })?;
            if st.kylos.contains_key(&key) {
                return Err(CloudError::AlreadyExists {
                    kind: "kylo",
                    name: kylo.name.clone(),
                });
            }
            validate_name("name", &format!("{}-{}", kylo.project, kylo.name)).map_err(
                |source| CloudError::Invalid {
                    kind: "kylo",
                    source,
                },
            )?;
            ShareRequest {
                name: format!("{}-{}", kylo.project, kylo.name),
                project: kylo.project.clone(),
                clients: vec![IpNet::V4(net.subnet.cidr)],
                quota_bytes: None,
            }
        };
        let share = self
            .call("create_share", move || shares.create(&request))
            .await?;
        self.inner
            .state
            .lock()
            .await
            .kylos
            .insert(key, (kylo, share.clone()));
        Ok(share)
    }

    /// Removes a Kylo share and its data.
    pub async fn delete_kylo(&self, project: &str, name: &str) -> Result<(), CloudError> {
        let shares = self
            .inner
            .shares
            .clone()
            .ok_or(CloudError::NoBackend("file share"))?;
        let key = (project.to_owned(), name.to_owned());
        let share = self
            .inner
            .state
            .lock()
            .await
            .kylos
            .get(&key)
            .map(|(_, s)| s.name.clone())
            .ok_or_else(|| CloudError::NotFound {
                kind: "kylo",
                name: name.to_owned(),
            })?;
        self.call("remove_share", move || shares.remove(&share))
            .await?;
        self.inner.state.lock().await.kylos.remove(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_and_stay_distinct() {
        let c = CloudConfig::new(vec![], "/tmp");
        assert_eq!(c.bridge_for("acme"), "kw-acme");
        assert_eq!(c.bridge_for("abcdefghijkl"), "kw-abcdefghijkl");
        let a = c.bridge_for("acme-corporation-1");
        let b = c.bridge_for("acme-corporation-2");
        assert!(a.len() <= 15 && b.len() <= 15, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.starts_with("kw-acme-co"), "{a}");
        assert_eq!(a, c.bridge_for("acme-corporation-1"), "stable");
    }
}
