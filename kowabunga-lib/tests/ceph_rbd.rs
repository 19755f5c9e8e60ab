//! The Ceph RBD `BlockStorage` backend against a real throwaway cluster: template import,
//! snapshot + protect + copy-on-write clone + resize to 500 GB, space accounting checked
//! with `rbd du`, error cases, and Ceph going down (typed errors, nothing left behind).
#![cfg(feature = "ceph")]

#[path = "support/ceph_cluster.rs"]
mod ceph_cluster;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ceph_cluster::CephCluster;
use kowabunga::storage::rbd::{RbdConfig, RbdStorage};
use kowabunga::storage::{BlockStorage, DiskSource, StorageError, GIB};

const MIB: u64 = 1 << 20;

/// A sparse raw image of `size` bytes with `data_mib` MiB of non-zero bytes at offset 0.
fn raw_template(path: &Path, size: u64, data_mib: u64) -> Vec<u8> {
    let mut f = std::fs::File::create(path).expect("create raw template");
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8 + 1).collect();
    for _ in 0..data_mib {
        f.write_all(&chunk).expect("write template data");
    }
    f.seek(SeekFrom::Start(size - 1)).expect("seek");
    f.write_all(&[0]).expect("extend");
    chunk[..4096].to_vec()
}

/// `rbd du --format json POOL/IMAGE` → (provisioned, used) bytes.
fn rbd_du(cluster: &CephCluster, image: &str) -> (u64, u64) {
    let out = cluster
        .rbd(&["du", "--format", "json", &format!("rbd/{image}")])
        .expect("rbd du");
    let field = |key: &str| -> u64 {
        let at = out
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {out}"));
        out[at + key.len() + 3..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("number")
    };
    (field("provisioned_size"), field("used_size"))
}

fn connect(cluster: &CephCluster, op_timeout: Duration) -> RbdStorage {
    let mut cfg = RbdConfig::new(cluster.conf_path(), "rbd");
    cfg.op_timeout = op_timeout;
    cfg.connect_timeout = Duration::from_secs(10);
    RbdStorage::connect(cfg).expect("connect to the test cluster")
}

#[test]
fn rbd_backend_on_a_real_cluster() {
    if ceph_cluster::skip_unless_available("rbd_backend_on_a_real_cluster") {
        return;
    }
    let mut cluster = CephCluster::start().expect("start the ceph cluster");
    let rbd = connect(&cluster, Duration::from_secs(30));
    assert_eq!(rbd.backend(), "rbd");
    assert_eq!(rbd.monitors(), [cluster.mon_v1_addr()]);

    // Template: 1 GiB raw image with 64 MiB of data; import = create + copy + snap + protect.
    let work = cluster.dir().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let raw = work.join("tpl.raw");
    let head = raw_template(&raw, GIB, 64);
    let t = Instant::now();
    rbd.import_template("debian", &raw)
        .expect("import raw template");
    eprintln!(
        "template import (1 GiB, 64 MiB of data): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert!(rbd.has_template("debian").expect("has_template"));
    assert!(!rbd.has_template("nope").expect("has_template"));
    let tu = rbd.template_usage("debian").expect("template usage");
    assert_eq!(tu.provisioned_bytes, GIB);
    assert_eq!(tu.used_bytes, 64 * MIB, "zero chunks are skipped on import");
    let snaps = cluster
        .rbd(&["snap", "ls", "rbd/template.debian"])
        .expect("snap ls");
    assert!(snaps.contains("base"), "{snaps}");
    let info = cluster
        .rbd(&["info", "rbd/template.debian@base"])
        .expect("rbd info");
    assert!(info.contains("protected: True"), "{info}");

    // A qcow2 template goes through qemu-img.
    let qcow = work.join("tpl.qcow2");
    let conv = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow)
        .status()
        .expect("qemu-img");
    assert!(conv.success());
    rbd.import_template("debian-qcow2", &qcow)
        .expect("import qcow2 template");
    assert_eq!(
        rbd.template_usage("debian-qcow2")
            .expect("usage")
            .used_bytes,
        64 * MIB
    );
    assert!(matches!(
        rbd.import_template("debian", &raw),
        Err(StorageError::AlreadyExists {
            kind: "template",
            ..
        })
    ));

    // Clones: 1 GiB and 500 GiB cost the same and use nothing.
    let t = Instant::now();
    let src = rbd
        .clone_template("debian", "vm-1g", GIB)
        .expect("clone 1 GiB");
    let clone_1g = t.elapsed();
    let t = Instant::now();
    rbd.clone_template("debian", "vm-500g", 500 * GIB)
        .expect("clone 500 GiB");
    let clone_500g = t.elapsed();
    eprintln!(
        "RBD clone+resize: 1 GiB {:.1} ms, 500 GiB {:.1} ms",
        clone_1g.as_secs_f64() * 1e3,
        clone_500g.as_secs_f64() * 1e3
    );
    match src {
        DiskSource::Rbd {
            pool,
            image,
            monitors,
            auth,
        } => {
            assert_eq!(pool, "rbd");
            assert_eq!(image, "volume.vm-1g");
            assert_eq!(monitors, [cluster.mon_v1_addr()]);
            assert!(auth.is_none());
        }
        other => panic!("not an RBD source: {other:?}"),
    }
    let u = rbd.usage("vm-500g").expect("usage");
    assert_eq!(u.provisioned_bytes, 500 * GIB);
    assert_eq!(u.used_bytes, 0, "a fresh clone allocates nothing");
    let (prov, used) = rbd_du(&cluster, "volume.vm-500g");
    eprintln!("rbd du volume.vm-500g: provisioned {prov} B, used {used} B");
    assert_eq!(prov, 500 * GIB);
    assert!(used <= 4 * MIB, "rbd du says the clone uses {used} bytes");
    let (tprov, tused) = rbd_du(&cluster, "template.debian@base");
    eprintln!("rbd du template.debian@base: provisioned {tprov} B, used {tused} B");
    assert_eq!(tused, 64 * MIB);
    assert_eq!(rbd.parent_overlap("vm-500g").expect("overlap"), GIB);

    // Copy-on-write: the clone reads the template's bytes, and a write allocates one object.
    assert_eq!(rbd.read("vm-500g", 0, 4096).expect("read"), head);
    rbd.write("vm-500g", 100 * GIB, vec![7u8; 4096])
        .expect("write far out");
    assert_eq!(rbd.usage("vm-500g").expect("usage").used_bytes, 4 * MIB);
    assert_eq!(
        rbd.read("vm-500g", 100 * GIB, 4).expect("read back"),
        [7u8; 4]
    );
    assert_eq!(
        rbd.template_usage("debian").expect("usage").used_bytes,
        64 * MIB
    );

    // Listing, snapshots, resize.
    rbd.create("data-1", 10 * GIB).expect("data volume");
    assert_eq!(rbd.list().expect("list"), ["data-1", "vm-1g", "vm-500g"]);
    assert!(rbd.exists("vm-1g").expect("exists"));
    assert!(!rbd.exists("vm-2g").expect("exists"));
    assert!(matches!(
        rbd.source("vm-2g"),
        Err(StorageError::NotFound { kind: "volume", .. })
    ));
    rbd.snapshot("vm-1g", "before-upgrade").expect("snapshot");
    assert!(matches!(
        rbd.snapshot("vm-1g", "before-upgrade"),
        Err(StorageError::AlreadyExists {
            kind: "snapshot",
            ..
        })
    ));
    rbd.resize("vm-1g", 2 * GIB).expect("grow");
    assert_eq!(
        rbd.usage("vm-1g").expect("usage").provisioned_bytes,
        2 * GIB
    );
    assert!(matches!(
        rbd.resize("vm-1g", GIB),
        Err(StorageError::Shrink { .. })
    ));

    // Errors: nothing is created when a clone is refused.
    assert!(matches!(
        rbd.clone_template("missing", "vm-x", GIB),
        Err(StorageError::NotFound {
            kind: "template",
            ..
        })
    ));
    assert!(matches!(
        rbd.clone_template("debian", "vm-1g", GIB),
        Err(StorageError::AlreadyExists { kind: "volume", .. })
    ));
    assert!(matches!(
        rbd.clone_template("debian", "vm-small", GIB / 2),
        Err(StorageError::Shrink { .. })
    ));
    assert!(matches!(
        rbd.clone_template("debian", "bad/name", GIB),
        Err(StorageError::InvalidName { .. })
    ));
    assert!(!rbd.exists("vm-x").expect("exists") && !rbd.exists("vm-small").expect("exists"));
    assert!(
        rbd.remove_template("debian").is_err(),
        "a template with clones stays"
    );
    assert!(rbd.has_template("debian").expect("has_template"));

    // Ceph half down: with the OSD gone a clone times out, and its undo is queued so that
    // nothing is left once the OSD is back.
    let short = connect(&cluster, Duration::from_secs(4));
    cluster.pause("osd.0");
    let t = Instant::now();
    let err = short
        .clone_template("debian", "vm-during-outage", 20 * GIB)
        .expect_err("OSD down");
    eprintln!(
        "clone with the OSD down: {err} after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        matches!(
            err,
            StorageError::Timeout { .. } | StorageError::Unavailable { .. }
        ),
        "{err:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "bounded by the op timeout"
    );
    cluster.restart("osd.0").expect("restart osd");
    ceph_cluster::wait_for(
        "osd back with the undo done",
        Duration::from_secs(150),
        || rbd.exists("vm-during-outage").is_ok_and(|e| !e) && rbd.exists("vm-1g").is_ok_and(|e| e),
    )
    .expect("volume left behind after an outage");
    let images = cluster.rbd(&["ls", "rbd"]).expect("rbd ls");
    assert!(!images.contains("vm-during-outage"), "{images}");
    drop(short);

    // Clean up through the API: nothing remains in the pool.
    for v in ["vm-1g", "vm-500g", "data-1"] {
        rbd.remove(v).expect("remove volume");
    }
    assert!(matches!(
        rbd.remove("vm-1g"),
        Err(StorageError::NotFound { .. })
    ));
    rbd.remove_template("debian").expect("remove template");
    rbd.remove_template("debian-qcow2")
        .expect("remove template");
    assert!(rbd.list().expect("list").is_empty());
    assert_eq!(cluster.rbd(&["ls", "rbd"]).expect("rbd ls").trim(), "");

    // A pool that does not exist is reported when connecting.
    let err = RbdStorage::connect(RbdConfig::new(cluster.conf_path(), "no-such-pool"))
        .expect_err("missing pool");
    assert!(
        matches!(err, StorageError::Unavailable { ref reason, .. } if reason.contains("\"no-such-pool\" not found")),
        "{err:?}"
    );

    // Ceph down: a live connection gets a typed error in bounded time, and so does a new one.
    cluster.kill_all();
    let t = Instant::now();
    let err = rbd.usage("vm-1g").expect_err("cluster down");
    assert!(
        matches!(
            err,
            StorageError::Timeout { .. } | StorageError::Unavailable { .. }
        ),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(35));
    let t = Instant::now();
    let mut cfg = RbdConfig::new(cluster.conf_path(), "rbd");
    cfg.connect_timeout = Duration::from_secs(3);
    let err = RbdStorage::connect(cfg).expect_err("cluster down");
    assert!(
        matches!(err, StorageError::Unavailable { backend: "rbd", .. }),
        "{err:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "connect bounded: {:?}",
        t.elapsed()
    );
    eprintln!(
        "connect to a dead cluster: {err} after {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// No daemons needed: a monitor address where nothing listens gives a typed error fast.
#[test]
fn unreachable_cluster_is_a_typed_error() {
    let dir = std::env::temp_dir().join(format!("kowabunga-rbd-down-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = ceph_cluster::free_port();
    let conf = dir.join("ceph.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nmon_host = 127.0.0.1:{port}\nauth_client_required = none\n\
             client_mount_timeout = 5\nlog_file = {}/client.log\n",
            dir.display()
        ),
    )
    .expect("conf");
    let mut cfg = RbdConfig::new(&conf, "rbd");
    cfg.connect_timeout = Duration::from_secs(2);
    let t = Instant::now();
    let err = RbdStorage::connect(cfg).expect_err("nothing listens");
    assert!(
        matches!(err, StorageError::Unavailable { backend: "rbd", .. }),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    let cfg = RbdConfig::new(dir.join("missing.conf"), "rbd");
    let err = RbdStorage::connect(cfg).expect_err("no conf");
    assert!(matches!(err, StorageError::Unavailable { .. }), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
