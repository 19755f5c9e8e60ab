//! Shared setup of the real-guest tests: tool checks, an initramfs, a
//! `Cloud` on the local qcow2 backend with a tiny template, and the options
//! that boot Debian's kernel with that initramfs and a serial log.
//!
//! Needs the sibling support modules `initramfs`, `libvirtd`
//! and `tempdir` at the test crate's root.

// Shared by several test binaries, each using a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kowabunga::cloud::{Cloud, CloudConfig, CloudEvent, KomputeOptions, RegionConfig};
use kowabunga::hypervisor::libvirt::LibvirtHypervisor;
use kowabunga::hypervisor::DirectBoot;
use kowabunga::model::{Kompute, Region, Template, Zone};
use kowabunga::storage::qcow2::Qcow2Storage;

use crate::initramfs;
use crate::libvirtd::Libvirtd;
use crate::tempdir::TempDir;
use kowabunga_testkit::missing;

/// Everything a real-guest test works with.
pub struct Lab {
    /// Scratch directory (removed on drop).
    pub tmp: TempDir,
    /// Debian's kernel.
    pub kernel: PathBuf,
    /// Our initramfs.
    pub initrd: PathBuf,
    /// The qcow2 backend.
    pub storage: Arc<Qcow2Storage>,
    /// The facade (region eu-west, zone eu-west-a, bridges `kwt-<project>`).
    pub cloud: Cloud,
    /// Events the cloud emitted.
    pub events: Arc<Mutex<Vec<CloudEvent>>>,
}

/// Whether the tools are there (else skip, or fail when privileged tests
/// are required).
pub fn tools_present(test: &str) -> bool {
    for (tool, arg) in [
        ("qemu-system-x86_64", "--version"),
        ("qemu-img", "--version"),
        ("libvirtd", "--version"),
        ("virsh", "--version"),
        ("genisoimage", "--version"),
        ("unshare", "--version"),
        ("nsenter", "--version"),
    ] {
        let ok = std::process::Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return missing(test, tool);
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return missing(test, "/bin/busybox (busybox-static)");
    }
    if initramfs::kernel().is_none() {
        return missing(test, initramfs::KERNEL_HINT);
    }
    true
}

/// Builds the initramfs, the storage, the cloud and imports template `tiny`.
pub async fn lab(tag: &str) -> Lab {
    let tmp = TempDir::new(tag);
    let (kernel, moddir) = initramfs::kernel().expect("kernel");
    eprintln!(
        "{tag}: guest kernel {} (modules {})",
        kernel.display(),
        moddir.display()
    );
    let initrd = tmp.path().join("initrd.img");
    initramfs::build(&initrd, &moddir).expect("initramfs");
    let storage = Arc::new(Qcow2Storage::new(tmp.path().join("pool")).expect("storage"));
    let region = RegionConfig::new(
        Region {
            name: "eu-west".into(),
            desc: String::new(),
        },
        vec![Zone {
            name: "eu-west-a".into(),
            desc: String::new(),
            region: "eu-west".into(),
        }],
        vec!["10.60.0.0/16".parse().expect("pool")],
    );
    let mut config = CloudConfig::new(vec![region], tmp.path().join("seeds"));
    config.bridge_prefix = "kwt-".into();
    let cloud = Cloud::new(config, storage.clone());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    cloud.on_event(move |e| sink.lock().expect("events").push(e.clone()));
    let image = tmp.path().join("tiny.raw");
    std::fs::write(&image, vec![0xa5; 4 << 20]).expect("template image");
    cloud
        .import_template(
            Template {
                name: "tiny".into(),
                desc: "test template".into(),
                os: "linux".into(),
                source: image.display().to_string(),
                default: true,
            },
            &image,
        )
        .await
        .expect("template");
    Lab {
        tmp,
        kernel,
        initrd,
        storage,
        cloud,
        events,
    }
}

impl Lab {
    /// Boot options: our kernel and initramfs, serial console to `console`,
    /// 256 MiB; `hold` keeps the guest running (ticks) instead of powering
    /// off.
    pub fn options(&self, console: &Path, hold: bool) -> KomputeOptions {
        let mut cmdline = "console=ttyS0 panic=-1 loglevel=4".to_owned();
        if hold {
            cmdline.push_str(" kw_hold");
        }
        KomputeOptions {
            direct_boot: Some(DirectBoot {
                kernel: self.kernel.clone(),
                initrd: Some(self.initrd.clone()),
                cmdline,
            }),
            serial_log: Some(console.to_owned()),
            memory_mib: Some(256),
        }
    }
}

/// Connects to a test daemon (blocking call on the blocking pool).
pub async fn connect(daemon: &Libvirtd, name: &str) -> LibvirtHypervisor {
    let uri = daemon.uri();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || LibvirtHypervisor::connect(&uri).map(|h| h.with_name(name)))
        .await
        .expect("join")
        .expect("connect to our libvirtd")
}

/// A 1 vCPU, 1 GiB, 1 GiB disk instance of template `tiny` in eu-west-a.
pub fn kompute(project: &str, name: &str, vcpus: u32) -> Kompute {
    Kompute {
        name: name.into(),
        desc: String::new(),
        project: project.into(),
        vcpus,
        mem: 1,
        disk: 1,
        extra_disk: 0,
        zone: "eu-west-a".into(),
        template: "tiny".into(),
        public: false,
    }
}

/// Polls `f` every 200 ms until it returns true or `bound` elapses.
pub async fn wait_until<F, Fut>(bound: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The highest `KOWABUNGA-TICK <n>` in a console log.
pub fn last_tick(console: &Path) -> u64 {
    std::fs::read_to_string(console)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix(initramfs::TICK))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}
