//! A Kompute whose OS disk is an RBD clone: the `Cloud` facade on the Ceph RBD backend,
//! a real `qemu:///system` libvirtd (in its own network namespace) and a throwaway Ceph
//! cluster. The guest (Debian's kernel + a busybox initramfs) sees the clone as a virtio
//! disk through libvirt's `<source protocol='rbd'>` with a cephx secret, prints its seed
//! and the disk size on the serial console and powers off.
#![cfg(all(feature = "ceph", feature = "libvirt"))]

#[path = "support/ceph_cluster.rs"]
mod ceph_cluster;
#[path = "support/guest.rs"]
mod guest;
#[path = "support/initramfs.rs"]
mod initramfs;
#[path = "support/libvirtd.rs"]
mod libvirtd;
#[path = "support/tempdir.rs"]
mod tempdir;

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ceph_cluster::CephCluster;
use guest::{kompute, wait_until};
use kowabunga::cloud::{Cloud, CloudConfig, CloudError, RegionConfig};
use kowabunga::hypervisor::{DomainState, Hypervisor};
use kowabunga::model::{Project, Region, Secret, Template, Zone};
use kowabunga::storage::rbd::{RbdConfig, RbdStorage};
use kowabunga::storage::{BlockStorage, RbdAuth, StorageError};

const TEST: &str = "ceph_guest";

/// Makes `127.0.0.1:port` of the network namespace `netns` reach `127.0.0.1:port` of the
/// test's namespace (where the Ceph daemons listen): the listener is created by a thread
/// that entered `netns`, the connections to Ceph by threads of ours. Stops on drop.
struct Forward {
    stop: Arc<AtomicBool>,
}

impl Forward {
    fn start(netns: &Path, port: u16) -> Result<Forward, String> {
        let ns = std::fs::File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
        let listener = std::thread::spawn(move || -> Result<TcpListener, String> {
            // SAFETY: setns(2) changes the network namespace of this short-lived thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind {port} in netns: {e}"))
        })
        .join()
        .map_err(|_| "setns thread panicked".to_owned())??;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inside, _)) => {
                        let _ = inside.set_nonblocking(false);
                        if let Ok(outside) = TcpStream::connect(("127.0.0.1", port)) {
                            pipe(inside, outside);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Forward { stop })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    for (mut from, mut to) in [(a, b2), (b, a2)] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// The TCP ports of 127.0.0.1 in a `ceph ... dump` line (`[v2:127.0.0.1:6802/123,...]`).
fn loopback_ports(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .split("127.0.0.1:")
        .skip(1)
        .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kompute_boots_from_an_rbd_clone() {
    // Root runs libvirtd and the Ceph daemons.
    if !kowabunga_testkit::privileged(TEST)
        || !guest::tools_present(TEST)
        || ceph_cluster::skip_unless_available(TEST)
    {
        return;
    }
    let mut cluster = tokio::task::spawn_blocking(CephCluster::start)
        .await
        .expect("join")
        .expect("ceph cluster");
    let daemon = libvirtd::Libvirtd::start("ceph-guest", &["kwt-acme"]).expect("libvirtd");

    // qemu runs in libvirtd's network namespace: forward the monitor and OSD ports there.
    let pid_file = daemon
        .socket()
        .parent()
        .and_then(Path::parent)
        .expect("dir")
        .join("libvirtd.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("libvirtd pid");
    let netns = Path::new("/proc").join(pid.trim()).join("ns/net");
    let mut ports = loopback_ports(&cluster.ceph(&["mon", "dump"]).expect("mon dump"));
    ports.extend(loopback_ports(
        &cluster.ceph(&["osd", "dump"]).expect("osd dump"),
    ));
    let _forwards: Vec<Forward> = ports
        .iter()
        .map(|p| Forward::start(&netns, *p).expect("forward"))
        .collect();

    // The hypervisor holds client.admin's key in a libvirt secret.
    let hv = Arc::new(guest::connect(&daemon, "kaktus-1").await);
    let key = cluster
        .ceph(&["auth", "get-key", "client.admin"])
        .expect("key");
    let hv2 = hv.clone();
    let secret_uuid =
        tokio::task::spawn_blocking(move || hv2.set_ceph_secret("admin", &Secret::new(key.trim())))
            .await
            .expect("join")
            .expect("ceph secret");

    let mut cfg = RbdConfig::new(cluster.conf_path(), cluster.rbd_pool.clone());
    cfg.libvirt_auth = Some(RbdAuth {
        username: "admin".into(),
        secret_uuid,
    });
    // Every RBD call of a Kompute creation takes milliseconds; fail fast when Ceph is down.
    cfg.op_timeout = Duration::from_secs(8);
    let storage = Arc::new(RbdStorage::connect(cfg).expect("rbd"));

    // The facade, as guest::lab builds it, but on RBD.
    let tmp = tempdir::TempDir::new("ceph-guest");
    let (kernel, moddir) = initramfs::kernel().expect("kernel");
    eprintln!("{TEST}: guest kernel {}", kernel.display());
    let initrd = tmp.path().join("initrd.img");
    initramfs::build(&initrd, &moddir).expect("initramfs");
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
        vec!["10.61.0.0/16".parse().expect("pool")],
    );
    let mut config = CloudConfig::new(vec![region], tmp.path().join("seeds"));
    config.bridge_prefix = "kwt-".into();
    let cloud = Cloud::new(config, storage.clone());
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
    cloud
        .add_hypervisor("eu-west-a", hv.clone())
        .await
        .expect("hypervisor");
    let project: Project =
        serde_norway::from_str("name: acme\nregions: [eu-west]\nsubnet_size: 26\n")
            .expect("project");
    cloud.create_project(project).await.expect("project");

    let lab_options = |console: &Path| kowabunga::cloud::KomputeOptions {
        direct_boot: Some(kowabunga::hypervisor::DirectBoot {
            kernel: kernel.clone(),
            initrd: Some(initrd.clone()),
            cmdline: "console=ttyS0 panic=-1 loglevel=4".into(),
        }),
        serial_log: Some(console.to_owned()),
        memory_mib: Some(256),
    };
    let console = tmp.path().join("console.log");
    let t0 = Instant::now();
    let info = cloud
        .create_kompute_with(kompute("acme", "rbd-guest", 1), lab_options(&console))
        .await
        .unwrap_or_else(|e| panic!("create kompute on RBD: {e}\n{}", daemon.log_tail()));
    eprintln!("timing: kompute create on rbd {:?}", t0.elapsed());
    let xml = std::fs::read_to_string(
        daemon
            .socket()
            .parent()
            .and_then(Path::parent)
            .expect("dir")
            .join(format!("etc/qemu/{}.xml", info.domain)),
    )
    .unwrap_or_default();
    assert!(
        xml.contains("protocol='rbd'"),
        "persistent domain XML: {xml:?}"
    );

    let t1 = Instant::now();
    let off = wait_until(Duration::from_secs(300), || {
        let cloud = cloud.clone();
        async move {
            matches!(
                cloud.kompute_state("acme", "rbd-guest").await,
                Ok(DomainState::Shutoff)
            )
        }
    })
    .await;
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        off,
        "guest did not power off within 300 s; console tail:\n{}\nqemu log:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
        daemon.qemu_log(&info.domain)
    );
    eprintln!(
        "timing: guest on RBD boot + seed + poweroff {:?}",
        t1.elapsed()
    );
    let begin = log.find(initramfs::BEGIN).expect("seed begin marker");
    let end = log.find(initramfs::END).expect("seed end marker");
    let seed = &log[begin..end];
    // The OS disk: a 1 GiB RBD clone of the 4 MiB template, seen by the guest.
    assert!(seed.contains("vda-sectors=2097152"), "{seed}");
    assert!(seed.contains("instance-id: acme-rbd-guest"), "{seed}");

    // The clone is thin: provisioned 1 GiB, nothing of its own allocated.
    let usage = storage.usage(&info.os_volume).expect("usage");
    assert_eq!(usage.provisioned_bytes, 1 << 30);
    assert!(usage.used_bytes <= 4 << 20, "{usage:?}");
    assert_eq!(
        storage.parent_overlap(&info.os_volume).expect("overlap"),
        4 << 20
    );

    cloud
        .delete_kompute("acme", "rbd-guest")
        .await
        .expect("delete");
    assert!(storage.list().expect("volumes").is_empty());
    let left = cluster.rbd(&["ls", "rbd"]).expect("rbd ls");
    assert_eq!(left.trim(), "template.tiny", "only the template remains");

    // Ceph half down (the OSD is gone): creating a Kompute fails with a typed storage
    // error in bounded time, and nothing is left behind: no domain, no seed, and once the
    // OSD is back, no volume (the backend queued the undo of the clone that timed out).
    cluster.pause("osd.0");
    let t = Instant::now();
    let err = cloud
        .create_kompute_with(
            kompute("acme", "rbd-outage", 1),
            lab_options(&tmp.path().join("outage.log")),
        )
        .await
        .expect_err("OSD down");
    eprintln!(
        "timing: kompute create with the OSD down failed after {:?}: {err}",
        t.elapsed()
    );
    assert!(
        matches!(
            err,
            CloudError::Storage(StorageError::Timeout { .. } | StorageError::Unavailable { .. })
        ),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(40), "{:?}", t.elapsed());
    let hv3 = hv.clone();
    let domains = tokio::task::spawn_blocking(move || hv3.list())
        .await
        .expect("join")
        .expect("list");
    assert!(domains.is_empty(), "domains left: {domains:?}");
    let seeds: Vec<_> = std::fs::read_dir(tmp.path().join("seeds"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(seeds.is_empty(), "seeds left: {seeds:?}");
    cluster.restart("osd.0").expect("restart osd");
    let storage2 = storage.clone();
    tokio::task::spawn_blocking(move || {
        ceph_cluster::wait_for(
            "no volume after the outage",
            Duration::from_secs(150),
            || storage2.list().is_ok_and(|v| v.is_empty()),
        )
    })
    .await
    .expect("join")
    .expect("volume left behind");
    let left = cluster.rbd(&["ls", "rbd"]).expect("rbd ls");
    assert_eq!(left.trim(), "template.tiny", "only the template remains");
}
