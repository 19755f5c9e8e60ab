//! The embedded default [`BlockStorage`]: qcow2 images under a local
//! directory, OS disks as qcow2 overlays whose backing file is the template
//! (copy-on-write; creating a 500 GB disk costs what a 1 GB disk costs).
//!
//! Layout: `<root>/templates/<template>.qcow2` (read-only bases) and
//! `<root>/volumes/<volume>.qcow2`. Every operation runs `qemu-img` with a
//! bounded wait.
//!
//! ```no_run
//! use kowabunga::storage::{qcow2::Qcow2Storage, BlockStorage, GIB};
//!
//! let storage = Qcow2Storage::new("/var/lib/kowabunga/storage")?;
//! storage.import_template("debian-12", "/srv/debian-12.qcow2".as_ref())?;
//! storage.clone_template("debian-12", "acme-server-os", 500 * GIB)?;
//! assert!(storage.usage("acme-server-os")?.used_bytes < GIB);
//! # Ok::<(), kowabunga::storage::StorageError>(())
//! ```

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{check_name, BlockStorage, DiskFormat, DiskSource, StorageError, VolumeUsage};
use crate::process::{run, RunError};

/// The qemu-img program used (overridable for tests of the error paths).
const QEMU_IMG: &str = "qemu-img";

/// Bound on quick qemu-img calls (create, info, resize, snapshot).
const QUICK: Duration = Duration::from_secs(60);
/// Bound on a template import (a full copy of the image).
const IMPORT: Duration = Duration::from_secs(1800);

/// qcow2 files with backing files under a local directory.
#[derive(Debug, Clone)]
pub struct Qcow2Storage {
    root: PathBuf,
    qemu_img: String,
}

impl Qcow2Storage {
    /// Opens (creating the directories of) a storage root.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map_err(|e| io("current directory", e))?
                .join(root)
        };
        for d in ["templates", "volumes"] {
            fs::create_dir_all(root.join(d))
                .map_err(|e| io(format!("create {}", root.join(d).display()), e))?;
        }
        Ok(Qcow2Storage {
            root,
            qemu_img: QEMU_IMG.to_owned(),
        })
    }

    /// Uses another `qemu-img` program.
    pub fn with_qemu_img(mut self, program: impl Into<String>) -> Self {
        self.qemu_img = program.into();
        self
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a template image.
    pub fn template_path(&self, template: &str) -> PathBuf {
        self.root
            .join("templates")
            .join(format!("{template}.qcow2"))
    }

    /// Path of a volume image.
    pub fn volume_path(&self, volume: &str) -> PathBuf {
        self.root.join("volumes").join(format!("{volume}.qcow2"))
    }

    fn qemu_img(&self, args: &[&str], timeout: Duration) -> Result<String, StorageError> {
        run(&self.qemu_img, args, timeout).map_err(|e| match e {
            RunError::Spawn(source) => io(format!("run {}", self.qemu_img), source),
            RunError::Timeout(after) => StorageError::Timeout {
                op: format!("{} {}", self.qemu_img, args.first().unwrap_or(&"")),
                after,
            },
            RunError::Failed { status, stderr } => StorageError::Command {
                program: self.qemu_img.clone(),
                status,
                stderr,
            },
        })
    }

    fn virtual_size(&self, path: &Path) -> Result<u64, StorageError> {
        let p = path_str(path)?;
        let json = self.qemu_img(&["info", "-U", "--output=json", p], QUICK)?;
        json_u64(&json, "virtual-size").ok_or_else(|| StorageError::Command {
            program: self.qemu_img.clone(),
            status: "ok".into(),
            stderr: format!("no virtual-size in qemu-img info of {p}"),
        })
    }

    fn existing_volume(&self, volume: &str) -> Result<PathBuf, StorageError> {
        check_name("volume", volume)?;
        let path = self.volume_path(volume);
        if path.exists() {
            Ok(path)
        } else {
            Err(StorageError::NotFound {
                kind: "volume",
                name: volume.to_owned(),
            })
        }
    }

    fn new_volume(&self, volume: &str) -> Result<PathBuf, StorageError> {
        check_name("volume", volume)?;
        let path = self.volume_path(volume);
        if path.exists() {
            Err(StorageError::AlreadyExists {
                kind: "volume",
                name: volume.to_owned(),
            })
        } else {
            Ok(path)
        }
    }
}

impl BlockStorage for Qcow2Storage {
    fn backend(&self) -> &'static str {
        "qcow2"
    }

    fn import_template(&self, template: &str, image: &Path) -> Result<(), StorageError> {
        check_name("template", template)?;
        let dest = self.template_path(template);
        if dest.exists() {
            return Err(StorageError::AlreadyExists {
                kind: "template",
                name: template.to_owned(),
            });
        }
        let tmp = dest.with_extension("qcow2.partial");
        let result = self.qemu_img(
            &["convert", "-O", "qcow2", path_str(image)?, path_str(&tmp)?],
            IMPORT,
        );
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &dest).map_err(|e| io(format!("rename {}", tmp.display()), e))
    }

    fn has_template(&self, template: &str) -> Result<bool, StorageError> {
        check_name("template", template)?;
        Ok(self.template_path(template).exists())
    }

    fn remove_template(&self, template: &str) -> Result<(), StorageError> {
        check_name("template", template)?;
        let path = self.template_path(template);
        fs::remove_file(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound {
                kind: "template",
                name: template.to_owned(),
            },
            _ => io(format!("remove {}", path.display()), e),
        })
    }

    fn clone_template(
        &self,
        template: &str,
        volume: &str,
        size_bytes: u64,
    ) -> Result<DiskSource, StorageError> {
        check_name("template", template)?;
        let base = self.template_path(template);
        if !base.exists() {
            return Err(StorageError::NotFound {
                kind: "template",
                name: template.to_owned(),
            });
        }
        let path = self.new_volume(volume)?;
        let size = size_bytes.max(self.virtual_size(&base)?);
        self.qemu_img(
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                path_str(&base)?,
                path_str(&path)?,
                &size.to_string(),
            ],
            QUICK,
        )?;
        Ok(DiskSource::File {
            path,
            format: DiskFormat::Qcow2,
        })
    }

    fn create(&self, volume: &str, size_bytes: u64) -> Result<DiskSource, StorageError> {
        let path = self.new_volume(volume)?;
        self.qemu_img(
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                path_str(&path)?,
                &size_bytes.to_string(),
            ],
            QUICK,
        )?;
        Ok(DiskSource::File {
            path,
            format: DiskFormat::Qcow2,
        })
    }

    fn snapshot(&self, volume: &str, snapshot: &str) -> Result<(), StorageError> {
        check_name("snapshot", snapshot)?;
        let path = self.existing_volume(volume)?;
        self.qemu_img(&["snapshot", "-c", snapshot, path_str(&path)?], QUICK)
            .map(|_| ())
    }

    fn resize(&self, volume: &str, size_bytes: u64) -> Result<(), StorageError> {
        let path = self.existing_volume(volume)?;
        let current = self.virtual_size(&path)?;
        if size_bytes < current {
            return Err(StorageError::Shrink {
                volume: volume.to_owned(),
                current,
                requested: size_bytes,
            });
        }
        if size_bytes == current {
            return Ok(());
        }
        self.qemu_img(
            &["resize", "-q", path_str(&path)?, &size_bytes.to_string()],
            QUICK,
        )
        .map(|_| ())
    }

    fn remove(&self, volume: &str) -> Result<(), StorageError> {
        let path = self.existing_volume(volume)?;
        fs::remove_file(&path).map_err(|e| io(format!("remove {}", path.display()), e))
    }

    fn usage(&self, volume: &str) -> Result<VolumeUsage, StorageError> {
        let path = self.existing_volume(volume)?;
        let provisioned_bytes = self.virtual_size(&path)?;
        let meta = fs::metadata(&path).map_err(|e| io(format!("stat {}", path.display()), e))?;
        Ok(VolumeUsage {
            provisioned_bytes,
            used_bytes: meta.blocks() * 512,
        })
    }

    fn exists(&self, volume: &str) -> Result<bool, StorageError> {
        check_name("volume", volume)?;
        Ok(self.volume_path(volume).exists())
    }

    fn source(&self, volume: &str) -> Result<DiskSource, StorageError> {
        Ok(DiskSource::File {
            path: self.existing_volume(volume)?,
            format: DiskFormat::Qcow2,
        })
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        let dir = self.root.join("volumes");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io(format!("list {}", dir.display()), e))? {
            let entry = entry.map_err(|e| io(format!("list {}", dir.display()), e))?;
            let name = entry.file_name();
            if let Some(v) = name.to_str().and_then(|n| n.strip_suffix(".qcow2")) {
                out.push(v.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }
}

fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
    StorageError::Io {
        context: context.into(),
        source,
    }
}

fn path_str(p: &Path) -> Result<&str, StorageError> {
    p.to_str().ok_or_else(|| StorageError::InvalidName {
        kind: "path",
        name: p.display().to_string(),
    })
}

/// The first `"key": <integer>` of a JSON text.
fn json_u64(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::GIB;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "kowabunga-qcow2-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).expect("tempdir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn qemu_img_present() -> bool {
        std::process::Command::new(QEMU_IMG)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn json_field() {
        let j = r#"{ "virtual-size": 1073741824, "filename": "x", "actual-size": 200704 }"#;
        assert_eq!(json_u64(j, "virtual-size"), Some(1 << 30));
        assert_eq!(json_u64(j, "actual-size"), Some(200704));
        assert_eq!(json_u64(j, "nope"), None);
    }

    #[test]
    fn clone_resize_snapshot_remove() {
        assert!(
            qemu_img_present(),
            "qemu-img is required (Debian package qemu-utils)"
        );
        let dir = TempDir::new("flow");
        let s = Qcow2Storage::new(dir.0.join("pool")).expect("storage");
        let src = dir.0.join("base.raw");
        fs::write(&src, vec![0x5a; 1 << 20]).expect("base image");
        s.import_template("tpl", &src).expect("import");
        assert!(s.has_template("tpl").expect("has"));
        assert!(matches!(
            s.import_template("tpl", &src),
            Err(StorageError::AlreadyExists {
                kind: "template",
                ..
            })
        ));

        let small = s.clone_template("tpl", "small", GIB).expect("1 GB clone");
        let big = s
            .clone_template("tpl", "big", 500 * GIB)
            .expect("500 GB clone");
        assert!(matches!(
            big,
            DiskSource::File {
                format: DiskFormat::Qcow2,
                ..
            }
        ));
        let us = s.usage("small").expect("usage");
        let ub = s.usage("big").expect("usage");
        assert_eq!(us.provisioned_bytes, GIB);
        assert_eq!(ub.provisioned_bytes, 500 * GIB);
        assert!(
            ub.used_bytes < 4 << 20,
            "a 500 GB clone uses {} bytes",
            ub.used_bytes
        );
        assert!(small != big);
        // Never smaller than the template.
        s.clone_template("tpl", "tiny", 1).expect("tiny clone");
        assert_eq!(s.usage("tiny").expect("usage").provisioned_bytes, 1 << 20);

        assert!(matches!(
            s.clone_template("tpl", "big", GIB),
            Err(StorageError::AlreadyExists { kind: "volume", .. })
        ));
        assert!(matches!(
            s.clone_template("nope", "x", GIB),
            Err(StorageError::NotFound {
                kind: "template",
                ..
            })
        ));
        s.resize("small", 2 * GIB).expect("grow");
        assert_eq!(s.usage("small").expect("usage").provisioned_bytes, 2 * GIB);
        assert!(matches!(
            s.resize("small", GIB),
            Err(StorageError::Shrink { .. })
        ));
        s.snapshot("small", "before-upgrade").expect("snapshot");
        let data = s.create("data", 128 * GIB).expect("data");
        assert!(matches!(data, DiskSource::File { .. }));
        assert_eq!(
            s.list().expect("list"),
            vec!["big", "data", "small", "tiny"]
        );
        for v in ["big", "data", "small", "tiny"] {
            s.remove(v).expect("remove");
        }
        assert!(s.list().expect("list").is_empty());
        assert!(matches!(
            s.remove("big"),
            Err(StorageError::NotFound { .. })
        ));
        assert!(matches!(
            s.create("../evil", GIB),
            Err(StorageError::InvalidName { .. })
        ));
        s.remove_template("tpl").expect("remove template");
    }

    #[test]
    fn failing_qemu_img_is_a_typed_error() {
        let dir = TempDir::new("fail");
        let s = Qcow2Storage::new(dir.0.join("pool"))
            .expect("storage")
            .with_qemu_img("false");
        assert!(matches!(
            s.create("v", GIB),
            Err(StorageError::Command { .. })
        ));
        let s = s.with_qemu_img("/nonexistent/qemu-img");
        assert!(matches!(s.create("v", GIB), Err(StorageError::Io { .. })));
    }
}
