//! Ceph RBD [`BlockStorage`] backend (feature `ceph`).
//!
//! librados comes from the `ceph` crate; librbd through the few hand-declared functions
//! of [`ffi`] (no maintained librbd crate exists). The connection lives on one owner
//! thread ([`session`]) and every call is bounded by a timeout: librados and librbd block
//! while no monitor or OSD answers, and the backend turns that into
//! [`StorageError::Unavailable`] / [`StorageError::Timeout`] instead of hanging.
//!
//! Layout in the pool: a template `T` is the image `template.T` with the protected
//! snapshot `base`; a volume `V` is the image `volume.V`. An OS disk is an RBD clone of
//! `template.T@base`, then resized: only metadata is written, so a 500 GB clone costs what
//! a 1 GB clone costs and uses no space until the guest writes.
//!
//! ```no_run
//! use kowabunga::storage::{BlockStorage, GIB};
//! use kowabunga::storage::rbd::{RbdConfig, RbdStorage};
//!
//! let rbd = RbdStorage::connect(RbdConfig::new("/etc/ceph/ceph.conf", "rbd"))?;
//! rbd.import_template("debian-12", "/var/lib/templates/debian-12.qcow2".as_ref())?;
//! let disk = rbd.clone_template("debian-12", "acme-web-os", 500 * GIB)?;
//! println!("{disk:?}, uses {} bytes", rbd.usage("acme-web-os")?.used_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod ffi;
mod image;
pub(crate) mod session;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use libc::{EBUSY, EEXIST, ENOENT, ETIMEDOUT};

use self::image::Image;
use self::session::{CephSession, SessionConfig};
use super::{check_name, BlockStorage, DiskSource, RbdAuth, StorageError, VolumeUsage};

/// Snapshot of a template image that clones are made from.
pub const TEMPLATE_SNAPSHOT: &str = "base";
/// Image name prefix of templates.
pub const TEMPLATE_PREFIX: &str = "template.";
/// Image name prefix of volumes.
pub const VOLUME_PREFIX: &str = "volume.";

/// Errors of the Ceph layer (librados connection and librbd calls), shared by the RBD
/// backend and the CephFS side of Kylo. The traits' errors are built from these.
#[derive(Debug, thiserror::Error)]
pub enum CephError {
    /// No monitor answered, or the connection is gone.
    #[error("Ceph cluster unavailable: {0}")]
    CephDown(String),
    /// A call did not return in time (librados blocks while no OSD is up).
    #[error("Ceph call `{op}` timed out after {after:?}")]
    Timeout {
        /// The call.
        op: &'static str,
        /// The bound that was hit.
        after: Duration,
    },
    /// The ceph.conf cannot be used.
    #[error("Ceph configuration: {0}")]
    Config(String),
    /// The pool does not exist.
    #[error("pool {0:?} not found")]
    PoolNotFound(String),
    /// A name with a NUL byte.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// A librbd (or librados) call returned a negative errno.
    #[error("rbd {op} {name:?}: {source}")]
    Rbd {
        /// The call.
        op: &'static str,
        /// The image (or command) it was about.
        name: String,
        /// The errno, as an I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A librados error reported as text by the `ceph` crate.
    #[error("rados {op}: {detail}")]
    Rados {
        /// The call.
        op: &'static str,
        /// What the crate said.
        detail: String,
    },
    /// A mon/mgr command failed.
    #[error("ceph command {op}: {detail}")]
    Command {
        /// The command.
        op: &'static str,
        /// Its status text.
        detail: String,
    },
    /// A clone or resize smaller than the image.
    #[error("{name:?} is {current} bytes, cannot shrink to {requested}")]
    Shrink {
        /// The image.
        name: String,
        /// Its size.
        current: u64,
        /// The size asked for.
        requested: u64,
    },
    /// A local file (template import).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl CephError {
    /// The errno of a failed librbd/librados call, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CephError::Rbd { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Turns a negative return code into a [`CephError`] (`ETIMEDOUT` from librados' own
/// op timeout becomes [`CephError::CephDown`]).
pub(crate) fn errno_error(op: &'static str, name: &str, ret: i32) -> CephError {
    if -ret == ETIMEDOUT {
        return CephError::CephDown(format!(
            "{op} {name:?}: librados timed out (no OSD/monitor answering)"
        ));
    }
    CephError::Rbd {
        op,
        name: name.to_owned(),
        source: std::io::Error::from_raw_os_error(-ret),
    }
}

/// Settings of an [`RbdStorage`].
#[derive(Debug, Clone)]
pub struct RbdConfig {
    /// The ceph.conf to read (monitors, keyring). Setting `client_mount_timeout` there
    /// bounds how long a connection attempt to a down cluster keeps a thread busy.
    pub conf: PathBuf,
    /// cephx user without `client.` (default `admin`).
    pub user: String,
    /// The pool holding templates and volumes.
    pub pool: String,
    /// Bound on connecting (default 10 s).
    pub connect_timeout: Duration,
    /// Bound on each call (default 30 s).
    pub op_timeout: Duration,
    /// Bound on a template import, which writes the whole image (default 30 min).
    pub import_timeout: Duration,
    /// Monitors as `host:port` for the hypervisor; empty: the msgr v1 (else v2) addresses
    /// of `mon_host` in the configuration.
    pub monitors: Vec<String>,
    /// cephx user and libvirt secret the hypervisor uses for the disks (none: no auth).
    pub libvirt_auth: Option<RbdAuth>,
}

impl RbdConfig {
    /// Defaults for `conf` and `pool`, as `client.admin`.
    pub fn new(conf: impl Into<PathBuf>, pool: impl Into<String>) -> Self {
        RbdConfig {
            conf: conf.into(),
            user: "admin".into(),
            pool: pool.into(),
            connect_timeout: Duration::from_secs(10),
            op_timeout: Duration::from_secs(30),
            import_timeout: Duration::from_secs(1800),
            monitors: Vec::new(),
            libvirt_auth: None,
        }
    }
}

/// The Ceph RBD block storage backend.
#[derive(Debug)]
pub struct RbdStorage {
    cfg: RbdConfig,
    monitors: Vec<String>,
    session: CephSession,
}

fn template_image(t: &str) -> String {
    format!("{TEMPLATE_PREFIX}{t}")
}

fn volume_image(v: &str) -> String {
    format!("{VOLUME_PREFIX}{v}")
}

/// Maps a Ceph error to the trait's error; `kind`/`name` say what ENOENT/EEXIST are about.
fn storage_error(e: CephError, kind: &'static str, name: &str) -> StorageError {
    match e {
        CephError::CephDown(reason) => StorageError::Unavailable {
            backend: "rbd",
            reason,
        },
        CephError::Timeout { op, after } => StorageError::Timeout {
            op: format!("rbd {op}"),
            after,
        },
        CephError::PoolNotFound(pool) => StorageError::Unavailable {
            backend: "rbd",
            reason: format!("pool {pool:?} not found"),
        },
        CephError::Config(reason) => StorageError::Unavailable {
            backend: "rbd",
            reason,
        },
        CephError::InvalidName(n) => StorageError::InvalidName { kind, name: n },
        CephError::Shrink {
            current, requested, ..
        } => StorageError::Shrink {
            volume: name.to_owned(),
            current,
            requested,
        },
        CephError::Io { context, source } => StorageError::Io { context, source },
        e @ CephError::Rbd { .. } => match e.errno() {
            Some(ENOENT) => StorageError::NotFound {
                kind,
                name: name.to_owned(),
            },
            Some(EEXIST) => StorageError::AlreadyExists {
                kind,
                name: name.to_owned(),
            },
            code => {
                let CephError::Rbd { op, source, .. } = e else {
                    unreachable!()
                };
                StorageError::Backend {
                    op: format!("rbd_{op}"),
                    code: -code.unwrap_or(0),
                    message: source.to_string(),
                }
            }
        },
        e @ (CephError::Rados { .. } | CephError::Command { .. }) => StorageError::Backend {
            op: "rados".into(),
            code: 0,
            message: e.to_string(),
        },
    }
}

impl RbdStorage {
    /// Connects (bounded by `connect_timeout`) and checks that the pool exists.
    pub fn connect(cfg: RbdConfig) -> Result<Self, StorageError> {
        let session = CephSession::connect(&SessionConfig {
            conf: cfg.conf.clone(),
            user: cfg.user.clone(),
            connect_timeout: cfg.connect_timeout,
            op_timeout: cfg.op_timeout,
        })
        .map_err(|e| storage_error(e, "pool", &cfg.pool))?;
        let pool = cfg.pool.clone();
        let mon_host = session
            .call("ioctx_create", move |c| {
                c.ioctx(&pool)?;
                Ok(c.config("mon_host"))
            })
            .map_err(|e| storage_error(e, "pool", &cfg.pool))?;
        let monitors = if cfg.monitors.is_empty() {
            parse_mon_host(&mon_host.unwrap_or_default())
        } else {
            cfg.monitors.clone()
        };
        Ok(RbdStorage {
            cfg,
            monitors,
            session,
        })
    }

    /// The monitors handed to hypervisors (`host:port`).
    pub fn monitors(&self) -> &[String] {
        &self.monitors
    }

    /// The pool in use.
    pub fn pool(&self) -> &str {
        &self.cfg.pool
    }

    /// The RBD image name of a volume (`volume.NAME`).
    pub fn image_name(volume: &str) -> String {
        volume_image(volume)
    }

    /// Runs `f` with the pool's I/O context on the owner thread.
    fn with_pool<R, F>(
        &self,
        op: &'static str,
        kind: &'static str,
        name: &str,
        f: F,
    ) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&ceph::ceph::IoCtx) -> Result<R, CephError> + Send + 'static,
    {
        self.with_pool_within(op, self.cfg.op_timeout, kind, name, f)
    }

    fn with_pool_within<R, F>(
        &self,
        op: &'static str,
        limit: Duration,
        kind: &'static str,
        name: &str,
        f: F,
    ) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&ceph::ceph::IoCtx) -> Result<R, CephError> + Send + 'static,
    {
        let pool = self.cfg.pool.clone();
        self.session
            .call_within(op, limit, move |c| f(c.ioctx(&pool)?))
            .map_err(|e| storage_error(e, kind, name))
    }

    /// Queues the removal of an image (and its snapshots) behind whatever is running:
    /// the undo of a create whose caller timed out.
    fn queue_purge(&self, image_name: String) {
        let pool = self.cfg.pool.clone();
        self.session.queue(move |c| {
            if let Ok(io) = c.ioctx(&pool) {
                if let Err(e) = purge(io, &image_name) {
                    if e.errno() != Some(ENOENT) {
                        tracing::warn!(image = %image_name, error = %e, "undo after timeout failed");
                    }
                }
            }
        });
    }

    fn rbd_source(&self, volume: &str) -> DiskSource {
        DiskSource::Rbd {
            pool: self.cfg.pool.clone(),
            image: volume_image(volume),
            monitors: self.monitors.clone(),
            auth: self.cfg.libvirt_auth.clone(),
        }
    }

    /// Writes `data` into a volume at `offset` (tests and seeding tools).
    pub fn write(&self, volume: &str, offset: u64, data: Vec<u8>) -> Result<(), StorageError> {
        check_name("volume", volume)?;
        let img = volume_image(volume);
        self.with_pool("write", "volume", volume, move |io| {
            Image::open(io, &img)?.write_all(offset, &data)
        })
    }

    /// Reads `len` bytes of a volume at `offset` (through the parent where the clone has
    /// not written).
    pub fn read(&self, volume: &str, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        check_name("volume", volume)?;
        let img = volume_image(volume);
        self.with_pool("read", "volume", volume, move |io| {
            let mut buf = vec![0u8; len];
            let n = Image::open(io, &img)?.read(offset, &mut buf)?;
            buf.truncate(n);
            Ok(buf)
        })
    }

    /// Bytes of the template that a volume still reads through (0: not a clone).
    pub fn parent_overlap(&self, volume: &str) -> Result<u64, StorageError> {
        check_name("volume", volume)?;
        let img = volume_image(volume);
        self.with_pool("get_overlap", "volume", volume, move |io| {
            Image::open(io, &img)?.overlap()
        })
    }

    /// Space accounting of a template (its data lives in the `base` snapshot).
    pub fn template_usage(&self, template: &str) -> Result<VolumeUsage, StorageError> {
        check_name("template", template)?;
        let img = template_image(template);
        self.with_pool("usage", "template", template, move |io| {
            let image = Image::open(io, &img)?;
            Ok(VolumeUsage {
                provisioned_bytes: image.size()?,
                used_bytes: image.used_bytes()?,
            })
        })
    }
}

/// Removes an image after unprotecting and removing its snapshots.
fn purge(io: &ceph::ceph::IoCtx, name: &str) -> Result<(), CephError> {
    {
        let image = Image::open(io, name)?;
        for snap in image.snap_names()? {
            if image.snap_is_protected(&snap)? {
                image.snap_unprotect(&snap)?;
            }
            image.snap_remove(&snap)?;
        }
    }
    image::remove(io, name)
}

/// Parses `mon_host` (`[v2:1.2.3.4:3300,v1:1.2.3.4:6789] 5.6.7.8`, ...) into `host:port`
/// strings, preferring each monitor's msgr v1 address (what qemu's `mon_host` expects
/// from a bare address) and falling back to v2.
pub fn parse_mon_host(mon_host: &str) -> Vec<String> {
    // Split at top level on spaces, `;` and `,` (commas inside `[...]` separate the
    // addresses of one monitor).
    let mut groups = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in mon_host.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ' ' | ';' | ',' if depth == 0 => {
                groups.push(&mon_host[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    groups.push(&mon_host[start..]);
    let mut out = Vec::new();
    for group in groups.into_iter().map(str::trim).filter(|g| !g.is_empty()) {
        if let Some(inner) = group.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
            let addrs: Vec<&str> = inner.split(',').collect();
            let pick = addrs
                .iter()
                .find_map(|a| a.strip_prefix("v1:"))
                .or_else(|| addrs.iter().find_map(|a| a.strip_prefix("v2:")));
            if let Some(a) = pick {
                out.push(strip_nonce(a).to_owned());
            }
        } else {
            let a = strip_nonce(group.trim_start_matches("v1:").trim_start_matches("v2:"));
            if a.contains(':') {
                out.push(a.to_owned());
            } else {
                out.push(format!("{a}:6789"));
            }
        }
    }
    out
}

fn strip_nonce(addr: &str) -> &str {
    addr.split('/').next().unwrap_or(addr)
}

/// Reads a local image as raw bytes: qcow2 files are converted with `qemu-img` into a
/// temporary raw file first (returned so that it is deleted when dropped).
fn raw_image(path: &Path) -> Result<(PathBuf, Option<TempFile>), StorageError> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(|e| StorageError::Io {
        context: path.display().to_string(),
        source: e,
    })?;
    let n = f.read(&mut magic).map_err(|e| StorageError::Io {
        context: path.display().to_string(),
        source: e,
    })?;
    if n < 4 || magic != *b"QFI\xfb" {
        return Ok((path.to_owned(), None));
    }
    let tmp = TempFile(std::env::temp_dir().join(format!(
        "kowabunga-rbd-import-{}-{}.raw",
        std::process::id(),
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    )));
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(path)
        .arg(&tmp.0)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StorageError::Io {
            context: "qemu-img convert".into(),
            source: e,
        })?;
    if !out.status.success() {
        return Err(StorageError::Command {
            program: "qemu-img".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok((tmp.0.clone(), Some(tmp)))
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Copies a raw file into an open image, skipping all-zero chunks (the image stays thin).
fn copy_sparse(image: &Image<'_>, path: &Path) -> Result<(), CephError> {
    const CHUNK: usize = 4 << 20;
    let io_err = |e| CephError::Io {
        context: path.display().to_string(),
        source: e,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let mut filled = 0;
        while filled < CHUNK {
            let n = f.read(&mut buf[filled..]).map_err(io_err)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(());
        }
        if buf[..filled].iter().any(|b| *b != 0) {
            image.write_all(offset, &buf[..filled])?;
        }
        offset += filled as u64;
        if filled < CHUNK {
            return Ok(());
        }
    }
}

impl BlockStorage for RbdStorage {
    fn backend(&self) -> &'static str {
        "rbd"
    }

    fn import_template(&self, template: &str, image_path: &Path) -> Result<(), StorageError> {
        check_name("template", template)?;
        let (raw, tmp) = raw_image(image_path)?;
        let size = std::fs::metadata(&raw)
            .map_err(|e| StorageError::Io {
                context: raw.display().to_string(),
                source: e,
            })?
            .len();
        let name = template_image(template);
        let (img, t) = (name.clone(), template.to_owned());
        let result = self.with_pool_within("import", self.cfg.import_timeout, "template", template, move |io| {
            let _tmp = tmp; // the converted file lives until the copy is done
            image::create(io, &img, size, ffi::RBD_FEATURES_DEFAULT)?;
            let filled = (|| {
                let image = Image::open(io, &img)?;
                copy_sparse(&image, &raw)?;
                image.snap_create(TEMPLATE_SNAPSHOT)?;
                image.snap_protect(TEMPLATE_SNAPSHOT)
            })();
            if let Err(e) = filled {
                if let Err(undo) = purge(io, &img) {
                    tracing::warn!(template = %t, error = %undo, "cleanup of a failed import failed");
                }
                return Err(e);
            }
            Ok(())
        });
        if matches!(result, Err(StorageError::Timeout { .. })) {
            self.queue_purge(name);
        }
        result
    }

    fn has_template(&self, template: &str) -> Result<bool, StorageError> {
        check_name("template", template)?;
        let img = template_image(template);
        self.with_pool(
            "has_template",
            "template",
            template,
            move |io| match Image::open(io, &img) {
                Ok(image) => image.snap_exists(TEMPLATE_SNAPSHOT),
                Err(e) if e.errno() == Some(ENOENT) => Ok(false),
                Err(e) => Err(e),
            },
        )
    }

    fn remove_template(&self, template: &str) -> Result<(), StorageError> {
        check_name("template", template)?;
        let img = template_image(template);
        self.with_pool("remove_template", "template", template, move |io| {
            purge(io, &img)
        })
        .map_err(|e| match e {
            StorageError::Backend { code, .. } if code == -EBUSY => StorageError::Backend {
                op: "rbd_snap_unprotect".into(),
                code,
                message: format!("template {template:?} still has clones"),
            },
            e => e,
        })
    }

    fn clone_template(
        &self,
        template: &str,
        volume: &str,
        size_bytes: u64,
    ) -> Result<DiskSource, StorageError> {
        check_name("template", template)?;
        check_name("volume", volume)?;
        let (parent, child) = (template_image(template), volume_image(volume));
        let child2 = child.clone();
        let result = self.with_pool("clone", "volume", volume, move |io| {
            let tsize = match Image::open(io, &parent) {
                Ok(p) => p.size()?,
                Err(e) if e.errno() == Some(ENOENT) => {
                    return Err(CephError::Rbd {
                        op: "clone",
                        name: parent,
                        source: std::io::Error::from_raw_os_error(ENOENT),
                    })
                }
                Err(e) => return Err(e),
            };
            if size_bytes < tsize {
                return Err(CephError::Shrink {
                    name: child2,
                    current: tsize,
                    requested: size_bytes,
                });
            }
            image::clone(
                io,
                &parent,
                TEMPLATE_SNAPSHOT,
                &child2,
                ffi::RBD_FEATURES_DEFAULT,
            )?;
            let grown = (|| {
                let image = Image::open(io, &child2)?;
                if size_bytes > tsize {
                    image.resize(size_bytes)?;
                }
                Ok(())
            })();
            if let Err(e) = grown {
                let _ = image::remove(io, &child2);
                return Err(e);
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(self.rbd_source(volume)),
            Err(StorageError::NotFound { .. }) => {
                // Either the template is missing or the volume's clone failed on ENOENT:
                // both mean the template (or its snapshot) is not there.
                Err(StorageError::NotFound {
                    kind: "template",
                    name: template.to_owned(),
                })
            }
            Err(e @ StorageError::Timeout { .. }) => {
                self.queue_purge(child);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn create(&self, volume: &str, size_bytes: u64) -> Result<DiskSource, StorageError> {
        check_name("volume", volume)?;
        let img = volume_image(volume);
        let name = img.clone();
        let result = self.with_pool("create", "volume", volume, move |io| {
            image::create(io, &img, size_bytes, ffi::RBD_FEATURES_DEFAULT)
        });
        match result {
            Ok(()) => Ok(self.rbd_source(volume)),
            Err(e @ StorageError::Timeout { .. }) => {
                self.queue_purge(name);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn snapshot(&self, volume: &str, snapshot: &str) -> Result<(), StorageError> {
        check_name("volume", volume)?;
        check_name("snapshot", snapshot)?;
        let (img, snap) = (volume_image(volume), snapshot.to_owned());
        self.with_pool("snap_create", "volume", volume, move |io| {
            let image = Image::open(io, &img)?;
            if image.snap_exists(&snap)? {
                return Err(CephError::Rbd {
                    op: "snap_create",
                    name: snap,
                    source: std::io::Error::from_raw_os_error(EEXIST),
                });
            }
            image.snap_create(&snap)
        })
        .map_err(|e| match e {
            StorageError::AlreadyExists { .. } => StorageError::AlreadyExists {
                kind: "snapshot",
                name: format!("{volume}@{snapshot}"),
            },
            e => e,
        })
    }

    fn resize(&self, volume: &str, size_bytes: u64) -> Result<(), StorageError> {
        check_name("volume", volume)?;
        let img = volume_image(volume);
        self.with_pool("resize", "volume", volume, move |io| {
            let image = Image::open(io, &img)?;
            let current = image.size()?;
            if size_bytes < current {
                return Err(CephError::Shrink {
                    name: img,
                    current,
                    requested: size_bytes,
                });
            }
            if size_bytes > current {
                image.resize(size_bytes)?;
            }
            Ok(())
        })
    }

    fn remove(&self, volume: &str) -> Result<(), StorageError> {
        check_name("volume", volume)?;
        let img = volume_image(volume);
        self.with_pool("remove", "volume", volume, move |io| purge(io, &img))
    }

    fn usage(&self, volume: &str) -> Result<VolumeUsage, StorageError> {
        check_name("volume", volume)?;
        let img = volume_image(volume);
        self.with_pool("usage", "volume", volume, move |io| {
            let image = Image::open(io, &img)?;
            Ok(VolumeUsage {
                provisioned_bytes: image.size()?,
                used_bytes: image.used_bytes()?,
            })
        })
    }

    fn exists(&self, volume: &str) -> Result<bool, StorageError> {
        check_name("volume", volume)?;
        let img = volume_image(volume);
        self.with_pool("exists", "volume", volume, move |io| {
            match Image::open(io, &img) {
                Ok(_) => Ok(true),
                Err(e) if e.errno() == Some(ENOENT) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn source(&self, volume: &str) -> Result<DiskSource, StorageError> {
        if self.exists(volume)? {
            Ok(self.rbd_source(volume))
        } else {
            Err(StorageError::NotFound {
                kind: "volume",
                name: volume.to_owned(),
            })
        }
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = self
            .with_pool("list", "pool", &self.cfg.pool, image::list)?
            .into_iter()
            .filter_map(|n| n.strip_prefix(VOLUME_PREFIX).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mon_host_parsing() {
        assert_eq!(
            parse_mon_host("[v2:127.0.0.1:3300,v1:127.0.0.1:6789]"),
            ["127.0.0.1:6789"]
        );
        assert_eq!(parse_mon_host("[v2:127.0.0.1:35419]"), ["127.0.0.1:35419"]);
        assert_eq!(
            parse_mon_host(
                "[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0] [v2:10.0.0.2:3300,v1:10.0.0.2:6789]"
            ),
            ["10.0.0.1:6789", "10.0.0.2:6789"]
        );
        assert_eq!(
            parse_mon_host("10.0.0.1,10.0.0.2:6790"),
            ["10.0.0.1:6789", "10.0.0.2:6790"]
        );
        assert!(parse_mon_host("").is_empty());
    }

    #[test]
    fn errno_mapping() {
        let e = storage_error(errno_error("open", "volume.x", -ENOENT), "volume", "x");
        assert!(matches!(e, StorageError::NotFound { kind: "volume", ref name } if name == "x"));
        let e = storage_error(errno_error("create", "volume.x", -EEXIST), "volume", "x");
        assert!(matches!(
            e,
            StorageError::AlreadyExists { kind: "volume", .. }
        ));
        let e = storage_error(errno_error("write", "volume.x", -ETIMEDOUT), "volume", "x");
        assert!(matches!(
            e,
            StorageError::Unavailable { backend: "rbd", .. }
        ));
        let e = storage_error(errno_error("snap_unprotect", "t", -EBUSY), "template", "t");
        assert!(matches!(e, StorageError::Backend { code, .. } if code == -EBUSY));
        let e = storage_error(
            CephError::Timeout {
                op: "clone",
                after: Duration::from_secs(1),
            },
            "volume",
            "x",
        );
        assert!(matches!(e, StorageError::Timeout { .. }));
    }
}
