//! A real `qemu:///system` libvirtd started by this test (by hand, in its own
//! mount and network namespaces), and a tiny guest provisioned through the
//! `Cloud` facade on the local qcow2 backend: Debian's kernel plus an
//! initramfs built from busybox-static that mounts the `cidata` seed, prints
//! it on the serial console and powers off. The test reads the console log.
//! Then the failure paths on the real driver: a definition libvirt refuses,
//! and a start that fails (missing bridge), both leaving nothing behind.
#![cfg(feature = "libvirt")]

#[path = "support/initramfs.rs"]
mod initramfs;
#[path = "support/libvirtd.rs"]
mod libvirtd;
#[path = "support/privileged.rs"]
mod privileged;
#[path = "support/tempdir.rs"]
mod tempdir;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kowabunga::cloud::{Cloud, CloudConfig, CloudError, CloudEvent, KomputeOptions, RegionConfig};
use kowabunga::hypervisor::libvirt::LibvirtHypervisor;
use kowabunga::hypervisor::{DirectBoot, DomainState, Hypervisor, HypervisorError};
use kowabunga::model::{Kompute, Project, Region, Template, Zone};
use kowabunga::storage::qcow2::Qcow2Storage;
use kowabunga::storage::BlockStorage;
use tempdir::TempDir;

const TEST: &str = "qemu_guest";

fn tools_present() -> bool {
    for (tool, arg) in [
        ("qemu-system-x86_64", "--version"),
        ("qemu-img", "--version"),
        ("libvirtd", "--version"),
        ("virsh", "--version"),
        ("genisoimage", "--version"),
        ("unshare", "--version"),
    ] {
        let ok = std::process::Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return privileged::missing(TEST, tool);
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return privileged::missing(TEST, "/bin/busybox (busybox-static)");
    }
    if initramfs::kernel().is_none() {
        return privileged::missing(TEST, "a kernel in /boot (linux-image-amd64)");
    }
    true
}

fn kompute(name: &str, vcpus: u32) -> Kompute {
    Kompute {
        name: name.into(),
        desc: String::new(),
        project: "acme".into(),
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
async fn wait_until<F, Fut>(bound: Duration, mut f: F) -> bool
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_guest_reads_its_seed_on_qemu_system() {
    if !privileged::privileged(
        TEST,
        "needs root to start libvirtd in its own mount and network namespaces",
    ) || !tools_present()
    {
        return;
    }
    let tmp = TempDir::new("qemu-guest");
    let (kernel, moddir) = initramfs::kernel().expect("kernel");
    let initrd = tmp.path().join("initrd.img");
    initramfs::build(&initrd, &moddir).expect("initramfs");

    // The daemon, with the project's bridge in its network namespace.
    let daemon = libvirtd::Libvirtd::start("guest", &["kwt-acme"]).expect("libvirtd");
    eprintln!("timing: libvirtd start {:?}", daemon.startup);
    let uri = daemon.uri();
    let hv = tokio::task::spawn_blocking(move || LibvirtHypervisor::connect(&uri))
        .await
        .expect("join")
        .expect("connect to our libvirtd")
        .with_name("kaktus-1");
    eprintln!("domain type: {}", hv.domain_type());
    let hv: Arc<LibvirtHypervisor> = Arc::new(hv);

    // Cloud on the local qcow2 backend.
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
    cloud
        .add_hypervisor("eu-west-a", hv.clone())
        .await
        .expect("hypervisor");
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
    let project: Project = serde_norway::from_str(
        "name: acme\nregions: [eu-west]\ndomain: acme.local\nsubnet_size: 26\nbootstrap_pubkey: ssh-ed25519 AAAAC3NzaTestKey admin@acme\n",
    )
    .expect("project");
    let p = cloud.create_project(project).await.expect("create project");
    let net = &p.networks["eu-west"];
    let gw = net.zone_gateways["eu-west-a"];
    assert_eq!(net.bridge, "kwt-acme");

    // Create: quota -> placement -> IP/MAC -> CoW disk -> seed -> define -> start.
    let console = tmp.path().join("console.log");
    let options = KomputeOptions {
        direct_boot: Some(DirectBoot {
            kernel: kernel.clone(),
            initrd: Some(initrd.clone()),
            cmdline: "console=ttyS0 panic=-1 loglevel=4".into(),
        }),
        serial_log: Some(console.clone()),
        memory_mib: Some(256),
    };
    let t0 = Instant::now();
    let info = cloud
        .create_kompute_with(kompute("guest", 1), options.clone())
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
        .create_kompute_with(kompute("huge", 400), options.clone())
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
    let mut k = kompute("lost", 1);
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
    let seeds: Vec<_> = std::fs::read_dir(tmp.path().join("seeds"))
        .expect("seeds")
        .flatten()
        .collect();
    assert!(seeds.is_empty(), "seeds left: {seeds:?}");
    assert!(cloud.komputes("acme").await.is_empty());
    drop(daemon);
}
