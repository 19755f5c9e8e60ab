//! Live migration between two real libvirtd daemons (two `qemu:///system`
//! connections), both started by this test in one private network namespace
//! (distinct host UUIDs, migration over an address of that namespace). A
//! tiny guest that prints a tick every second is moved with
//! `Cloud::migrate_kompute`; the ticks go on after the move and the domain
//! exists only on the destination.
#![cfg(feature = "libvirt")]

#[path = "support/guest.rs"]
mod guest;
#[path = "support/initramfs.rs"]
mod initramfs;
#[path = "support/libvirtd.rs"]
mod libvirtd;
#[path = "support/tempdir.rs"]
mod tempdir;

use std::sync::Arc;
use std::time::{Duration, Instant};

use guest::{kompute, last_tick, wait_until};
use kowabunga::cloud::CloudError;
use kowabunga::hypervisor::{DomainState, Hypervisor};
use kowabunga::model::Project;

const TEST: &str = "qemu_migration";

async fn list(hv: &Arc<kowabunga::hypervisor::libvirt::LibvirtHypervisor>) -> Vec<String> {
    let hv = hv.clone();
    tokio::task::spawn_blocking(move || hv.list())
        .await
        .expect("join")
        .expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_migration_between_two_libvirtd() {
    // Root starts libvirtd in its own mount and network namespaces.
    if !kowabunga_testkit::privileged(TEST) || !guest::tools_present(TEST) {
        return;
    }
    let lab = guest::lab("qemu-migration").await;
    let a = libvirtd::Libvirtd::start("mig-a", &["kwt-acme"]).expect("libvirtd a");
    let b = libvirtd::Libvirtd::start_in("mig-b", &[], Some(&a)).expect("libvirtd b");
    eprintln!("timing: libvirtd start {:?} and {:?}", a.startup, b.startup);
    // Same host, same files: libvirt cannot prove the local disks are
    // shared, so this test allows it explicitly (RBD disks never need it).
    let hv_a = Arc::new(
        guest::connect(&a, "kaktus-a")
            .await
            .with_unsafe_migration(true),
    );
    let hv_b = Arc::new(
        guest::connect(&b, "kaktus-b")
            .await
            .with_unsafe_migration(true),
    );
    lab.cloud
        .add_hypervisor("eu-west-a", hv_a.clone())
        .await
        .expect("a");
    lab.cloud
        .add_hypervisor("eu-west-a", hv_b.clone())
        .await
        .expect("b");
    let project: Project =
        serde_norway::from_str("name: acme\nregions: [eu-west]\n").expect("project");
    lab.cloud.create_project(project).await.expect("project");

    let console = lab.tmp.path().join("console.log");
    let info = lab
        .cloud
        .create_kompute_with(kompute("acme", "mover", 1), lab.options(&console, true))
        .await
        .unwrap_or_else(|e| panic!("create: {e}\n{}", a.log_tail()));
    assert_eq!(info.hypervisor, "kaktus-a", "least loaded, first by name");
    let ticking = wait_until(Duration::from_secs(300), || {
        let c = console.clone();
        async move { last_tick(&c) >= 2 }
    })
    .await;
    assert!(
        ticking,
        "guest never ticked; qemu log:\n{}",
        a.qemu_log("acme-mover")
    );
    let before = last_tick(&console);

    let t0 = Instant::now();
    let moved = lab
        .cloud
        .migrate_kompute("acme", "mover", "kaktus-b")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "migrate: {e}\nsource:\n{}\ndestination:\n{}",
                a.log_tail(),
                b.log_tail()
            )
        });
    eprintln!("timing: live migration under TCG {:?}", t0.elapsed());
    assert_eq!(moved.hypervisor, "kaktus-b");
    assert!(list(&hv_a).await.is_empty(), "source still has the domain");
    assert_eq!(list(&hv_b).await, vec!["acme-mover".to_string()]);
    assert_eq!(
        lab.cloud
            .kompute_state("acme", "mover")
            .await
            .expect("state"),
        DomainState::Running
    );
    // The guest goes on where it was: ticks keep counting up.
    let after = before + 3;
    let alive = wait_until(Duration::from_secs(120), || {
        let c = console.clone();
        async move { last_tick(&c) >= after }
    })
    .await;
    assert!(
        alive,
        "no tick after the migration (last {}); destination qemu log:\n{}",
        last_tick(&console),
        b.qemu_log("acme-mover")
    );

    // Refusals: same hypervisor, unknown one.
    assert!(matches!(
        lab.cloud.migrate_kompute("acme", "mover", "kaktus-b").await,
        Err(CloudError::Conflict(_))
    ));
    assert!(matches!(
        lab.cloud.migrate_kompute("acme", "mover", "kaktus-z").await,
        Err(CloudError::NotFound { .. })
    ));

    lab.cloud
        .delete_kompute("acme", "mover")
        .await
        .expect("delete");
    assert!(list(&hv_a).await.is_empty() && list(&hv_b).await.is_empty());
    drop(b);
    drop(a);
}
