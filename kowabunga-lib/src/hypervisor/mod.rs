//! Hypervisors: where Kompute instances run.
//!
//! [`Hypervisor`] is a small, blocking trait chosen at runtime (the
//! cloud-hypervisor way). The `libvirt` feature provides
//! `hypervisor::libvirt::LibvirtHypervisor` over the `virt` crate. A domain
//! is described by the typed [`DomainSpec`], which the backend turns into its
//! own format (libvirt domain XML). The async facade calls these methods
//! inside `spawn_blocking`.

pub mod kvm;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod xml;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::alloc::MacAddr;
use crate::storage::DiskSource;

/// Virtualization type of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainType {
    /// Hardware virtualization (`/dev/kvm` that can run guests).
    Kvm,
    /// Software emulation (QEMU TCG).
    Qemu,
    /// libvirt's `test:///` driver.
    Test,
}

impl DomainType {
    /// The libvirt `<domain type=...>` value.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
            DomainType::Test => "test",
        }
    }
}

impl fmt::Display for DomainType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole virtual machine, as the hypervisor defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// Domain name (unique per hypervisor).
    pub name: String,
    /// Domain UUID; the hypervisor picks one when `None`.
    pub uuid: Option<String>,
    /// Free-form description (project, zone).
    pub description: String,
    /// Virtualization type.
    pub domain_type: DomainType,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Disks and CD-ROMs, in order.
    pub disks: Vec<DiskSpec>,
    /// Network interfaces, in order (`ens3`, `ens4`...).
    pub nics: Vec<NicSpec>,
    /// Boot a kernel directly instead of the disks' boot loader.
    pub direct_boot: Option<DirectBoot>,
    /// Write the serial console to this file.
    pub serial_log: Option<PathBuf>,
}

/// Whether a disk is a hard disk or a CD-ROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskDevice {
    /// A virtio disk.
    Disk,
    /// A read-only SATA CD-ROM (the cloud-init seed).
    Cdrom,
}

/// One disk of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Where the data is.
    pub source: DiskSource,
    /// Guest device name (`vda`, `vdb`, `sda`).
    pub target: String,
    /// Disk or CD-ROM.
    pub device: DiskDevice,
}

/// One network interface of a domain: a virtio NIC on a host bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// MAC address.
    pub mac: MacAddr,
    /// Host bridge the tap is added to (the project's bridge).
    pub bridge: String,
}

/// Direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectBoot {
    /// Kernel image on the host.
    pub kernel: PathBuf,
    /// Initramfs on the host.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
}

/// Run state of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    /// Running.
    Running,
    /// Blocked on a resource.
    Blocked,
    /// Paused by the hypervisor or a user.
    Paused,
    /// Being shut down.
    ShuttingDown,
    /// Defined but not running.
    Shutoff,
    /// Crashed.
    Crashed,
    /// Suspended by guest power management.
    Suspended,
    /// Any other state.
    Unknown,
}

/// Errors of hypervisor backends.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// No domain of that name.
    #[error("domain {0:?} not found")]
    NotFound(String),
    /// A domain of that name exists already.
    #[error("domain {0:?} already exists")]
    AlreadyExists(String),
    /// The hypervisor refused the definition (XML or configuration).
    #[error("hypervisor refused the definition of {name:?}: {message}")]
    InvalidDefinition {
        /// Domain name.
        name: String,
        /// The hypervisor's message.
        message: String,
    },
    /// Cannot connect to the hypervisor.
    #[error("cannot connect to {uri}: {message}")]
    Connection {
        /// Connection URI.
        uri: String,
        /// The hypervisor's message.
        message: String,
    },
    /// The operation is not supported by this backend or driver.
    #[error("{op} not supported: {message}")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// Why.
        message: String,
    },
    /// An operation did not finish in time.
    #[error("{op} on {name:?} timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// Domain name.
        name: String,
        /// The bound that was hit.
        after: Duration,
    },
    /// Any other libvirt error.
    #[error("{op} on {name:?} failed: {message} (libvirt code {code})")]
    Backend {
        /// The operation.
        op: &'static str,
        /// Domain name (empty for connection-level calls).
        name: String,
        /// libvirt error code.
        code: i32,
        /// libvirt's message.
        message: String,
    },
}

/// A hypervisor backend. Every method blocks; call it from `spawn_blocking`
/// in async code.
pub trait Hypervisor: Send + Sync {
    /// Name of this hypervisor node (placement key).
    fn name(&self) -> &str;

    /// The URI other hypervisors reach this one at (live migration target).
    fn uri(&self) -> &str;

    /// Virtualization type used for new domains.
    fn domain_type(&self) -> DomainType;

    /// Defines (persistently) a domain; does not start it.
    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError>;

    /// Replaces the persistent definition of an existing domain (vCPUs,
    /// memory, disks); a running domain picks it up at its next start.
    fn update(&self, spec: &DomainSpec) -> Result<(), HypervisorError>;

    /// Starts a defined domain.
    fn start(&self, name: &str) -> Result<(), HypervisorError>;

    /// Asks the guest to shut down (ACPI) and returns at once.
    fn shutdown(&self, name: &str) -> Result<(), HypervisorError>;

    /// Powers a running domain off at once.
    fn stop(&self, name: &str) -> Result<(), HypervisorError>;

    /// Reboots a running domain.
    fn reboot(&self, name: &str) -> Result<(), HypervisorError>;

    /// Powers off (if running) and undefines a domain.
    fn delete(&self, name: &str) -> Result<(), HypervisorError>;

    /// Run state of a domain.
    fn state(&self, name: &str) -> Result<DomainState, HypervisorError>;

    /// Whether a domain is defined.
    fn exists(&self, name: &str) -> Result<bool, HypervisorError>;

    /// Names of all defined domains.
    fn list(&self) -> Result<Vec<String>, HypervisorError>;

    /// Live-migrates a running domain to the hypervisor at `destination_uri`
    /// (the domain is defined there and undefined here).
    fn migrate(&self, name: &str, destination_uri: &str) -> Result<(), HypervisorError>;
}
