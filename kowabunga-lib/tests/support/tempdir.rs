//! A temporary directory removed on drop (also on panic), unless
//! `KOWABUNGA_KEEP_TEST_DIRS` is set.

// Shared by several test binaries, each using a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `kowabunga-<tag>-<pid>` (emptied first).
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("kowabunga-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var("KOWABUNGA_KEEP_TEST_DIRS").is_err() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
