//! Kylo on a real throwaway Ceph cluster and nfs-ganesha (FSAL CEPH): a share is a CephFS
//! subvolume; a file written through CephFS (ceph-fuse) is read back over NFSv4 with
//! libnfs' `nfs-cat`, only from the project's subnet.
#![cfg(feature = "ceph")]

#[path = "support/ceph_cluster.rs"]
mod ceph_cluster;

use std::path::Path;
use std::time::{Duration, Instant};

use ceph_cluster::{run_bounded, wait_for, CephCluster};
use kowabunga::kylo::ceph_nfs::{CephNfsConfig, CephNfsShares};
use kowabunga::kylo::{FileShares, ShareError, ShareRequest};

/// The operator's ganesha.conf: NFSv4 only on 127.0.0.1:`port`, no grace period, and the
/// backend's exports file pulled in with `%include`.
fn ganesha_conf(cluster: &CephCluster, exports: &Path, port: u16) -> String {
    let d = cluster.dir().display();
    format!(
        "NFS_CORE_PARAM {{\n\tProtocols = 4;\n\tNFS_Port = {port};\n\tBind_addr = 127.0.0.1;\n\
         \tEnable_NLM = false;\n\tEnable_RQUOTA = false;\n\tEnable_UDP = false;\n}}\n\
         NFSv4 {{\n\tGraceless = true;\n\tRecoveryBackend = fs;\n\tRecoveryRoot = {d}/ganesha-recovery;\n}}\n\
         NFS_KRB5 {{\n\tActive_krb5 = false;\n}}\n\
         CEPH {{\n\tCeph_Conf = {conf};\n}}\n\
         LOG {{\n\tDefault_Log_Level = EVENT;\n}}\n\
         %include \"{exports}\"\n",
        conf = cluster.conf_path().display(),
        exports = exports.display(),
    )
}

fn nfs_cat(port: u16, path: &str) -> Result<String, String> {
    let url = format!("nfs://127.0.0.1{path}?version=4&nfsport={port}");
    run_bounded("nfs-cat", &[&url], Duration::from_secs(20))
}

fn request(name: &str, project: &str, clients: &[&str]) -> ShareRequest {
    ShareRequest {
        name: name.into(),
        project: project.into(),
        clients: clients.iter().map(|c| c.parse().expect("net")).collect(),
        quota_bytes: Some(1 << 30),
    }
}

#[test]
fn kylo_share_over_nfs_from_the_project_subnet_only() {
    if ceph_cluster::skip_unless_available("kylo_share_over_nfs_from_the_project_subnet_only") {
        return;
    }
    for (bin, pkg) in [
        ("ganesha.nfsd", "nfs-ganesha-ceph"),
        ("nfs-cat", "libnfs-utils"),
        ("ceph-fuse", "ceph-fuse"),
    ] {
        if run_bounded(
            "sh",
            &["-c", &format!("command -v {bin}")],
            Duration::from_secs(5),
        )
        .is_err()
        {
            kowabunga_testkit::missing(
                "kylo_share_over_nfs_from_the_project_subnet_only",
                &format!("{bin} (apt-get install {pkg})"),
            );
            return;
        }
    }
    let mut cluster = CephCluster::start().expect("start the ceph cluster");
    let exports = cluster.dir().join("kylo-exports.conf");
    std::fs::write(&exports, "").expect("exports file");
    let conf = cluster.dir().join("ganesha.conf");
    let port = ceph_cluster::free_port();
    std::fs::write(&conf, ganesha_conf(&cluster, &exports, port)).expect("ganesha.conf");
    let t = Instant::now();
    let pid_file = cluster
        .start_ganesha(&conf, port)
        .expect("start nfs-ganesha");
    eprintln!("nfs-ganesha up in {:.1} s", t.elapsed().as_secs_f64());

    let mut cfg = CephNfsConfig::new(
        cluster.conf_path(),
        cluster.fs_name.clone(),
        &exports,
        &pid_file,
        format!("127.0.0.1:{port}"),
    );
    cfg.op_timeout = Duration::from_secs(20);
    let kylo = CephNfsShares::connect(cfg).expect("connect");
    assert_eq!(kylo.backend(), "ceph-nfs");

    // A share for the project whose subnet holds 127.0.0.1 ...
    let t = Instant::now();
    let share = kylo
        .create(&request("acme-nfs", "acme", &["127.0.0.0/29"]))
        .expect("create share");
    eprintln!("Kylo share created in {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(share.export_path, "/acme/acme-nfs");
    assert_eq!(share.server, format!("127.0.0.1:{port}"));
    assert_eq!(kylo.get("acme-nfs").expect("get"), Some(share.clone()));
    let path = kylo.path("acme-nfs").expect("subvolume path");
    assert!(path.starts_with("/volumes/_nogroup/acme-nfs/"), "{path}");
    let subvols = cluster
        .ceph(&["fs", "subvolume", "ls", "cephfs"])
        .expect("subvolume ls");
    assert!(subvols.contains("acme-nfs"), "{subvols}");
    let quota = cluster
        .ceph(&["fs", "subvolume", "info", "cephfs", "acme-nfs"])
        .expect("subvolume info");
    assert!(quota.contains("\"bytes_quota\": 1073741824"), "{quota}");

    // ... written through CephFS, read back over NFS.
    let mnt = cluster.mount_cephfs(&path).expect("ceph-fuse");
    let text = format!(
        "hello from CephFS, written at {:?}\n",
        std::time::SystemTime::now()
    );
    std::fs::write(mnt.join("hello.txt"), &text).expect("write through CephFS");
    let mut read = Err(String::new());
    wait_for("the file over NFS", Duration::from_secs(30), || {
        read = nfs_cat(port, "/acme/acme-nfs/hello.txt");
        read.is_ok()
    })
    .unwrap_or_else(|e| panic!("{e}: {read:?}\n{}", cluster.log_tails()));
    assert_eq!(read.expect("read"), text);

    // A share for another project (subnet 127.0.0.64/26): its export exists, but
    // 127.0.0.1 is not among its clients, so it is refused.
    kylo.create(&request("other-nfs", "other", &["127.0.0.64/26"]))
        .expect("create other share");
    let other = kylo.path("other-nfs").expect("path");
    let other_mnt = cluster.mount_cephfs(&other).expect("ceph-fuse other");
    std::fs::write(other_mnt.join("secret.txt"), "not for acme\n").expect("write");
    let exports_text = std::fs::read_to_string(&exports).expect("exports");
    assert!(
        exports_text.contains("Clients = 127.0.0.64/26;"),
        "{exports_text}"
    );
    // Wait until ganesha has re-read the exports (the acme share still answers), then try.
    std::thread::sleep(Duration::from_secs(2));
    assert!(nfs_cat(port, "/acme/acme-nfs/hello.txt").is_ok());
    let refused = nfs_cat(port, "/other/other-nfs/secret.txt");
    assert!(
        refused.is_err(),
        "a client outside the subnet read the share: {refused:?}"
    );
    assert_eq!(kylo.list().expect("list").len(), 2);

    // Errors.
    assert!(matches!(
        kylo.create(&request("acme-nfs", "acme", &["127.0.0.0/29"])),
        Err(ShareError::AlreadyExists(_))
    ));
    assert!(matches!(
        kylo.create(&request("no-clients", "acme", &[])),
        Err(ShareError::NoClients(_))
    ));
    assert!(matches!(
        kylo.remove("missing"),
        Err(ShareError::NotFound(_))
    ));

    // Removal unexports, then deletes the subvolume.
    kylo.remove("other-nfs").expect("remove other");
    kylo.remove("acme-nfs").expect("remove");
    wait_for("export gone", Duration::from_secs(30), || {
        nfs_cat(port, "/acme/acme-nfs/hello.txt").is_err()
    })
    .expect("the export should disappear");
    assert!(kylo.list().expect("list").is_empty());
    let subvols = cluster
        .ceph(&["fs", "subvolume", "ls", "cephfs"])
        .expect("subvolume ls");
    assert!(
        !subvols.contains("acme-nfs") && !subvols.contains("other-nfs"),
        "{subvols}"
    );

    // Ceph down: a typed error, and the exports file is left as it was.
    let before = std::fs::read_to_string(&exports).expect("exports");
    cluster.kill_all();
    let t = Instant::now();
    let err = kylo
        .create(&request("late-nfs", "acme", &["127.0.0.0/29"]))
        .expect_err("ceph down");
    assert!(
        matches!(
            err,
            ShareError::Unavailable { .. } | ShareError::Timeout { .. }
        ),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(25));
    assert_eq!(std::fs::read_to_string(&exports).expect("exports"), before);
    eprintln!(
        "create with Ceph down: {err} after {:.1} s",
        t.elapsed().as_secs_f64()
    );
}
