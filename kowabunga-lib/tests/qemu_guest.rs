//! A real `qemu:///system` libvirtd started by this test (by hand, in its own
//! mount and network namespaces), and a tiny guest provisioned through the
//! `Cloud` facade on the local qcow2 backend: Debian's kernel plus an
//! initramfs built from busybox-static that mounts the `cidata` seed, prints
//! it on the serial console and powers off. The test reads the console log.
//! Then the failure paths on the real driver: a definition libvirt refuses,
//! and a start that fails (missing bridge), both leaving nothing behind.
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

use guest::{kompute, wait_until};
use kowabunga::cloud::{CloudError, CloudEvent};
use kowabunga::hypervisor::{DomainState, Hypervisor, HypervisorError};
use kowabunga::model::{Project, Secret};
use kowabunga::storage::BlockStorage;

const TEST: &str = "qemu_guest";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_guest_reads_its_seed_on_qemu_system() {
    // Root starts libvirtd in its own mount and network namespaces.
    if !kowabunga_testkit::privileged(TEST) || !guest::tools_present(TEST) {
        return;
    }
    let lab = guest::lab("qemu-guest").await;
    let (cloud, storage, events) = (&lab.cloud, &lab.storage, &lab.events);

    // The daemon, with the project's bridge in its network namespace.
    let daemon = libvirtd::Libvirtd::start("guest", &["kwt-acme"]).expect("libvirtd");
    eprintln!("timing: libvirtd start {:?}", daemon.startup);
    let hv = Arc::new(guest::connect(&daemon, "kaktus-1").await);
    eprintln!("domain type: {}", hv.domain_type());
    // cephx credentials for RBD disks live in a libvirt secret.
    let hv_secret = hv.clone();
    let (first, again, bad) = tokio::task::spawn_blocking(move || {
        let key = Secret::new("AQBk5Clm8rGwHhAAnqnHhoVfUCcVzT2WbNVhaA==");
        (
            hv_secret.set_ceph_secret("libvirt", &key),
            hv_secret.set_ceph_secret("libvirt", &key),
            hv_secret.set_ceph_secret("other", &Secret::new("not base64!")),
        )
    })
    .await
    .expect("join");
    let uuid = first.expect("ceph secret");
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(again.expect("same secret again"), uuid);
    assert!(matches!(
        bad,
        Err(HypervisorError::InvalidDefinition { .. })
    ));
    cloud
        .add_hypervisor("eu-west-a", hv.clone())
        .await
        .expect("hypervisor");
    let project: Project = serde_norway::from_str(
        "name: acme\nregions: [eu-west]\ndomain: acme.local\nsubnet_size: 26\nbootstrap_pubkey: ssh-ed25519 AAAAC3NzaTestKey admin@acme\n",
    )
    .expect("project");
    let p = cloud.create_project(project).await.expect("create project");
    let net = &p.networks["eu-west"];
    let gw = net.zone_gateways["eu-west-a"];
    assert_eq!(net.bridge, "kwt-acme");

    // Create: quota -> placement -> IP/MAC -> CoW disk -> seed -> define -> start.
    let console = lab.tmp.path().join("console.log");
    let options = lab.options(&console, false);
    let t0 = Instant::now();
    let info = cloud
        .create_kompute_with(kompute("acme", "guest", 1), options.clone())
        .await
        .unwrap_or_else(|e| panic!("create kompute: {e}\n{}", daemon.log_tail()));
    let create_time = t0.elapsed();
    eprintln!("timing: kompute create on qcow2 {create_time:?}");
    assert_eq!(info.hypervisor, "kaktus-1");
    assert_eq!(info.ip.to_string(), "10.60.0.5");

    // The guest prints its seed and powers off.
    let t1 = Instant::now();
    let off = wait_until(Duration::from_secs(300), || {
        let cloud = cloud.clone();
        async move {
            matches!(
                cloud.kompute_state("acme", "guest").await,
                Ok(DomainState::Shutoff)
            )
        }
    })
    .await;
    let boot_time = t1.elapsed();
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        off,
        "guest did not power off within 300 s; console tail:\n{}\nqemu log:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
        daemon.qemu_log("acme-guest")
    );
    eprintln!(
        "timing: guest boot + seed read + poweroff under {} {boot_time:?}",
        hv.domain_type()
    );
    let begin = log
        .find(initramfs::BEGIN)
        .expect("seed begin marker on the console");
    let end = log
        .find(initramfs::END)
        .expect("seed end marker on the console");
    let seed = &log[begin..end];
    for needle in [
        "label=cidata",
        "instance-id: acme-guest",
        "local-hostname: guest",
        "fqdn: guest.acme.local",
        "ssh-ed25519 AAAAC3NzaTestKey admin@acme",
        "name: kowabunga",
        &format!("macaddress: {}", info.mac),
        "- 10.60.0.5/26",
        "to: default",
        &format!("via: {gw}"),
        "metric: 100",
        // The OS disk: a 1 GiB CoW clone of a 4 MiB template, grown.
        "vda-sectors=2097152",
    ] {
        assert!(seed.contains(needle), "console seed lacks {needle:?}");
    }
    // The root password is in the seed; the event carries the same one.
    let password = match events.lock().expect("events").first() {
        Some(CloudEvent::InstanceCreated { password, ip, .. }) => {
            assert_eq!(*ip, info.ip);
            password.expose().to_owned()
        }
        other => panic!("expected InstanceCreated, got {other:?}"),
    };
    assert!(seed.contains(&format!("password: {password}")));

    // The disk is a qcow2 overlay on the template.
    let img = std::process::Command::new("qemu-img")
        .args(["info", "-U"])
        .arg(storage.volume_path(&info.os_volume))
        .output()
        .expect("qemu-img info");
    let img = String::from_utf8_lossy(&img.stdout);
    assert!(
        img.contains(&*storage.template_path("tiny").to_string_lossy()),
        "{img}"
    );

    // Failure 1: libvirt refuses the definition (more vCPUs than the machine
    // type allows); nothing is left behind.
    let err = cloud
        .create_kompute_with(kompute("acme", "huge", 400), options.clone())
        .await
        .expect_err("400 vCPUs");
    assert!(
        matches!(
            err,
            CloudError::Hypervisor(HypervisorError::InvalidDefinition { .. })
        ),
        "{err:?}"
    );
    // Failure 2: the start fails (the bridge of project "ghost" does not
    // exist in the daemon's namespace).
    let ghost: Project =
        serde_norway::from_str("name: ghost\nregions: [eu-west]\n").expect("project");
    cloud.create_project(ghost).await.expect("ghost project");
    let mut k = kompute("acme", "lost", 1);
    k.project = "ghost".into();
    let err = cloud
        .create_kompute_with(k, options)
        .await
        .expect_err("missing bridge");
    assert!(matches!(err, CloudError::Hypervisor(_)), "{err:?}");

    // Delete; then nothing of ours remains anywhere.
    cloud.delete_kompute("acme", "guest").await.expect("delete");
    let hv2 = hv.clone();
    let domains = tokio::task::spawn_blocking(move || hv2.list())
        .await
        .expect("join")
        .expect("list");
    assert!(domains.is_empty(), "domains left: {domains:?}");
    assert!(storage.list().expect("volumes").is_empty());
    let seeds: Vec<_> = std::fs::read_dir(lab.tmp.path().join("seeds"))
        .expect("seeds")
        .flatten()
        .collect();
    assert!(seeds.is_empty(), "seeds left: {seeds:?}");
    assert!(cloud.komputes("acme").await.is_empty());
    drop(daemon);
}
