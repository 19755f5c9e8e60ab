//! The BPF filesystem (bpffs) that holds pinned maps and links.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

/// `statfs` magic number of a bpffs mount (`BPF_FS_MAGIC` in `linux/magic.h`).
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Default directory of the Kowabunga pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/kowabunga";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path contains a NUL byte.
    #[error("path {0} contains a NUL byte")]
    InvalidPath(PathBuf),
    /// `statfs` failed.
    #[error("cannot statfs {path}")]
    Statfs {
        /// The path.
        path: PathBuf,
        /// What `statfs` returned.
        #[source]
        source: io::Error,
    },
    /// `mount` failed.
    #[error("cannot mount a bpffs on {path}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// What `mount` returned.
        #[source]
        source: io::Error,
    },
}

fn c_path(path: &Path) -> Result<CString, Error> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::InvalidPath(path.to_owned()))
}

/// Whether `path` lies on a bpffs mount.
///
/// ```no_run
/// assert!(kowabunga_dataplane::bpffs::is_bpffs("/sys/fs/bpf".as_ref())?);
/// # Ok::<(), kowabunga_dataplane::bpffs::Error>(())
/// ```
pub fn is_bpffs(path: &Path) -> Result<bool, Error> {
    let c = c_path(path)?;
    // SAFETY: an all-zero statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statfs.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(Error::Statfs {
            path: path.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type is i64 or u32 depending on the arch"
    )]
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Mounts a new bpffs instance on the existing directory `path`.
///
/// Every bpffs mount is a separate instance: mounting over a directory that is
/// already a bpffs hides the pins below it, so check [`is_bpffs`] first.
pub fn mount(path: &Path) -> Result<(), Error> {
    let target = c_path(path)?;
    let source = c"bpf";
    let fstype = c"bpf";
    // SAFETY: all strings are NUL-terminated; no mount data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::Mount {
            path: path.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Mounts a bpffs on `path` (usually `/sys/fs/bpf`) unless one is already there.
///
/// Returns whether a mount was made.
pub fn ensure_mounted(path: &Path) -> Result<bool, Error> {
    if is_bpffs(path)? {
        return Ok(false);
    }
    mount(path)?;
    Ok(true)
}

/// Unmounts `path` (lazily, so open pins do not block it).
pub fn unmount(path: &Path) -> Result<(), Error> {
    let target = c_path(path)?;
    // SAFETY: `target` is NUL-terminated.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        return Err(Error::Mount {
            path: path.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}
