//! Block storage backends: where Kompute disks live.
//!
//! [`BlockStorage`] is a small, blocking trait (like cloud-hypervisor's
//! backend traits) chosen at runtime: the embedded default is
//! [`qcow2::Qcow2Storage`] (qcow2 overlays with backing files under a local
//! directory); the `ceph` feature adds Ceph RBD (`storage::rbd`). OS disks are
//! copy-on-write clones of a template, grown to the requested size, so a
//! 500 GB disk costs what a 1 GB disk costs. The async facade
//! (`Cloud`) calls these methods inside `spawn_blocking`.

pub mod qcow2;
#[cfg(feature = "ceph")]
pub mod rbd;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One gibibyte, in bytes.
pub const GIB: u64 = 1 << 30;

/// How a hypervisor reaches a volume (becomes a libvirt `<disk>` source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// A local image file.
    File {
        /// Path of the image.
        path: PathBuf,
        /// Image format.
        format: DiskFormat,
    },
    /// A Ceph RBD image (libvirt `<source protocol='rbd'>`).
    Rbd {
        /// Pool name.
        pool: String,
        /// Image name.
        image: String,
        /// Monitor addresses as `host:port`.
        monitors: Vec<String>,
        /// cephx credentials, when the cluster uses them.
        auth: Option<RbdAuth>,
    },
}

/// Format of an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// Raw bytes (also ISO images).
    Raw,
    /// qcow2, possibly with a backing file.
    Qcow2,
}

impl DiskFormat {
    /// The name libvirt and qemu-img use.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// cephx credentials of an RBD disk: the user and the libvirt secret holding
/// its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdAuth {
    /// cephx user name without `client.` (e.g. `libvirt`).
    pub username: String,
    /// UUID of the libvirt `ceph` secret that holds the key.
    pub secret_uuid: String,
}

/// Space accounting of one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeUsage {
    /// Size the guest sees, bytes.
    pub provisioned_bytes: u64,
    /// Space actually allocated by this volume (excluding a shared template),
    /// bytes.
    pub used_bytes: u64,
}

/// Errors of block storage backends.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The volume or template does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `volume`, `template` or `snapshot`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The volume or template exists already.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// `volume`, `template` or `snapshot`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A name the backend cannot store.
    #[error("invalid {kind} name {name:?}")]
    InvalidName {
        /// `volume`, `template` or `snapshot`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Volumes only grow.
    #[error("volume {volume:?} is {current} bytes, cannot shrink to {requested}")]
    Shrink {
        /// Volume name.
        volume: String,
        /// Current size, bytes.
        current: u64,
        /// Requested size, bytes.
        requested: u64,
    },
    /// The backend cannot be reached (e.g. Ceph down).
    #[error("{backend} storage unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: String,
        /// The bound that was hit.
        after: Duration,
    },
    /// A helper program (qemu-img, rbd...) failed.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// A local I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An error code from a backend library (librbd, librados).
    #[error("{op}: {message} (code {code})")]
    Backend {
        /// The call that failed.
        op: String,
        /// Its error code (negative errno for Ceph).
        code: i32,
        /// Human readable message.
        message: String,
    },
}

/// A block storage backend. Every method blocks; call it from
/// `spawn_blocking` in async code.
///
/// Names are plain (`[A-Za-z0-9._-]`); volumes and templates live in separate
/// namespaces. Sizes are bytes.
pub trait BlockStorage: Send + Sync {
    /// Short backend name (`qcow2`, `rbd`), for logs and errors.
    fn backend(&self) -> &'static str;

    /// Registers a template from a local image file (qcow2 or raw), making it
    /// ready to be cloned (RBD: import, snapshot, protect).
    fn import_template(&self, template: &str, image: &Path) -> Result<(), StorageError>;

    /// Whether a template is registered.
    fn has_template(&self, template: &str) -> Result<bool, StorageError>;

    /// Removes a template (fails while clones of it exist, where the backend
    /// tracks them).
    fn remove_template(&self, template: &str) -> Result<(), StorageError>;

    /// Creates `volume` as a copy-on-write clone of `template`, grown to
    /// `size_bytes` (never smaller than the template), and returns how a
    /// hypervisor attaches it.
    fn clone_template(
        &self,
        template: &str,
        volume: &str,
        size_bytes: u64,
    ) -> Result<DiskSource, StorageError>;

    /// Creates an empty (thin) data volume of `size_bytes`.
    fn create(&self, volume: &str, size_bytes: u64) -> Result<DiskSource, StorageError>;

    /// Takes a snapshot of a volume.
    fn snapshot(&self, volume: &str, snapshot: &str) -> Result<(), StorageError>;

    /// Grows a volume to `size_bytes` ([`StorageError::Shrink`] if smaller).
    fn resize(&self, volume: &str, size_bytes: u64) -> Result<(), StorageError>;

    /// Removes a volume and its snapshots.
    fn remove(&self, volume: &str) -> Result<(), StorageError>;

    /// Space accounting of a volume.
    fn usage(&self, volume: &str) -> Result<VolumeUsage, StorageError>;

    /// Whether a volume exists.
    fn exists(&self, volume: &str) -> Result<bool, StorageError>;

    /// How a hypervisor attaches an existing volume.
    fn source(&self, volume: &str) -> Result<DiskSource, StorageError>;

    /// Names of all volumes (not templates).
    fn list(&self) -> Result<Vec<String>, StorageError>;
}

/// Checks a volume, template or snapshot name: 1-128 of `[A-Za-z0-9._-]`,
/// not starting with `.` or `-`.
pub fn check_name(kind: &'static str, name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName {
            kind,
            name: name.to_owned(),
        })
    }
}
