//! Shared by the privileged integration tests: unique names and a pin
//! directory on bpffs.

// Shared by several test binaries, each using a part.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use kowabunga_dataplane::bpffs;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// `{prefix}-{pid}-{n}`, unique in this process and among concurrent ones.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A unique pin directory on bpffs, removed on drop: under /sys/fs/bpf when
/// that is a bpffs, else on a private bpffs mounted (and unmounted) for it,
/// so the host's mounts are never changed.
pub struct PinDir {
    /// The directory (not created: loading with pins creates it).
    pub dir: PathBuf,
    mount: Option<PathBuf>,
}

impl PinDir {
    /// A fresh directory; mounts a private bpffs when /sys/fs/bpf is none.
    pub fn new() -> Self {
        let sys = Path::new("/sys/fs/bpf");
        if bpffs::is_bpffs(sys).unwrap_or(false) {
            return Self {
                dir: sys.join(unique("kowabunga-test")),
                mount: None,
            };
        }
        let mount = std::env::temp_dir().join(unique("kowabunga-bpffs"));
        fs::create_dir_all(&mount).unwrap();
        bpffs::mount(&mount).expect("mount a private bpffs");
        Self {
            dir: mount.join("kowabunga"),
            mount: Some(mount),
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(m) = &self.mount {
            let _ = bpffs::unmount(m);
            let _ = fs::remove_dir(m);
        }
    }
}
