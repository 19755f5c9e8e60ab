//! Embedding kowabunga-lib: a project and a Kompute instance on the local
//! default backends (qcow2 storage, libvirt hypervisor).
//!
//! ```text
//! cargo run -p kowabunga --example embed                     # libvirt test driver
//! KOWABUNGA_LIBVIRT_URI=qemu:///system \
//! KOWABUNGA_TEMPLATE=/srv/debian-12-genericcloud-amd64.qcow2 \
//!   cargo run -p kowabunga --example embed -- --keep        # a real VM
//! ```
//!
//! Environment: `KOWABUNGA_LIBVIRT_URI` (default `test:///default`),
//! `KOWABUNGA_STATE_DIR` (default: a directory under the system temp dir),
//! `KOWABUNGA_TEMPLATE` (a qcow2/raw image; default: a blank 64 MiB image),
//! `KOWABUNGA_BRIDGE_PREFIX` (default `kw-`: the project bridge must exist
//! for real guests). With `--keep` the instance is left running; otherwise
//! it is deleted again.

use std::path::PathBuf;
use std::sync::Arc;

use kowabunga::cloud::{Cloud, CloudConfig, CloudEvent, RegionConfig};
use kowabunga::hypervisor::libvirt::LibvirtHypervisor;
use kowabunga::hypervisor::Hypervisor;
use kowabunga::model::{Kompute, Project, Region, Template, Zone};
use kowabunga::storage::qcow2::Qcow2Storage;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keep = std::env::args().any(|a| a == "--keep");
    let uri = std::env::var("KOWABUNGA_LIBVIRT_URI").unwrap_or_else(|_| "test:///default".into());
    let state = std::env::var("KOWABUNGA_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("kowabunga-embed"));

    // 1. Backends, chosen at runtime.
    let storage = Arc::new(Qcow2Storage::new(state.join("storage"))?);
    let hv_uri = uri.clone();
    let hypervisor =
        tokio::task::spawn_blocking(move || LibvirtHypervisor::connect(&hv_uri)).await??;
    println!(
        "hypervisor {} ({uri}), domain type {}",
        hypervisor.name(),
        hypervisor.domain_type()
    );

    // 2. The cloud: one region, one zone, an admin-provided subnet pool.
    let region = RegionConfig::new(
        Region {
            name: "eu-west".into(),
            desc: "example region".into(),
        },
        vec![Zone {
            name: "eu-west-a".into(),
            desc: String::new(),
            region: "eu-west".into(),
        }],
        vec!["10.50.0.0/16".parse()?],
    );
    let mut config = CloudConfig::new(vec![region], state.join("seeds"));
    if let Ok(prefix) = std::env::var("KOWABUNGA_BRIDGE_PREFIX") {
        config.bridge_prefix = prefix;
    }
    let cloud = Cloud::new(config, storage.clone());
    cloud
        .add_hypervisor("eu-west-a", Arc::new(hypervisor))
        .await?;
    // The guide mails instance details to users; here we just print them.
    cloud.on_event(|e| {
        if let CloudEvent::InstanceCreated {
            name,
            ip,
            bootstrap_user,
            ..
        } = e
        {
            println!("event: {name} is up at {ip}, log in as {bootstrap_user}");
        }
    });

    // 3. A template.
    let image = match std::env::var("KOWABUNGA_TEMPLATE") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let p = state.join("blank.raw");
            std::fs::write(&p, vec![0u8; 64 << 20])?;
            p
        }
    };
    if !storage.template_path("debian-12").exists() {
        cloud
            .import_template(
                Template {
                    name: "debian-12".into(),
                    desc: "Debian 12 generic cloud".into(),
                    os: "linux".into(),
                    source: image.display().to_string(),
                    default: true,
                },
                &image,
            )
            .await?;
    }

    // 4. The project of the user guide, and a Kompute in it.
    let project: Project = serde_norway::from_str(
        r#"
name: acme
desc: ACME project
regions: [eu-west]
teams: [admin]
domain: acme.local
tags: [acme, production]
metadata: {owner: Kowabunga Admin}
max_instances: 0
max_memory: 0
max_vcpus: 0
max_storage: 0
subnet_size: 25
"#,
    )?;
    let p = cloud.create_project(project).await?;
    let net = &p.networks["eu-west"];
    println!(
        "project acme: subnet {} gateway {} bridge {}",
        net.subnet.cidr, net.subnet.gateway, net.bridge
    );
    let server = cloud
        .create_kompute(Kompute {
            name: "acme-server".into(),
            desc: String::new(),
            project: "acme".into(),
            vcpus: 2,
            mem: 2,
            disk: 64,
            extra_disk: 0,
            zone: "eu-west-a".into(),
            template: "debian-12".into(),
            public: false,
        })
        .await?;
    let usage = cloud.storage().usage(&server.os_volume)?;
    println!(
        "kompute {} on {}: ip {} mac {}, OS disk {} GiB using {} KiB",
        server.kompute.name,
        server.hypervisor,
        server.ip,
        server.mac,
        usage.provisioned_bytes >> 30,
        usage.used_bytes >> 10
    );
    println!("dns: {:?}", cloud.dns_records("acme").await);

    if !keep {
        cloud.delete_kompute("acme", "acme-server").await?;
        cloud.delete_project("acme").await?;
        println!("cleaned up");
    }
    Ok(())
}
