//! The library feeds Kiwi: creating a Kompute and a DNS record puts both in
//! the region's rendered `kiwi` section (the zone of the project's domain,
//! isolated to its subnet), deleting them takes them out, and the
//! instance's cloud-init network config names the region's Kiwi as
//! nameserver and the project's domain as search domain. On libvirt's
//! `test:///default` driver and the local qcow2 backend, as `libvirt_flow`.
#![cfg(feature = "libvirt")]

#[path = "support/tempdir.rs"]
mod tempdir;

use std::sync::Arc;

use kowabunga::cloud::{Cloud, CloudConfig, CloudError, RegionConfig, RegionDns};
use kowabunga::hypervisor::libvirt::LibvirtHypervisor;
use kowabunga::model::kiwi::Kiwi;
use kowabunga::model::{DnsRecord, Kompute, Project, Region, Template, Zone};
use kowabunga::storage::qcow2::Qcow2Storage;
use tempdir::TempDir;

const NODE: &str = "<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>8</cores>\
<threads>1</threads><active>8</active><mhz>2000</mhz><model>x86_64</model></cpu>\
<memory>67108864</memory></node>";

async fn cloud(tmp: &TempDir) -> Cloud {
    let storage = Arc::new(Qcow2Storage::new(tmp.path().join("pool")).expect("storage"));
    let mut region = RegionConfig::new(
        Region {
            name: "eu-west".into(),
            desc: String::new(),
        },
        vec![Zone {
            name: "eu-west-a".into(),
            desc: String::new(),
            region: "eu-west".into(),
        }],
        vec!["10.0.0.0/16".parse().expect("pool")],
    );
    region.dns = Some(RegionDns::new(
        vec!["10.50.0.53".parse().expect("kiwi")],
        vec!["192.0.2.53".into()],
    ));
    let cloud = Cloud::new(
        CloudConfig::new(vec![region], tmp.path().join("seeds")),
        storage,
    );
    let node = tmp.path().join("kaktus.xml");
    std::fs::write(&node, NODE).expect("node xml");
    let uri = format!("test://{}", node.display());
    let hv = tokio::task::spawn_blocking(move || LibvirtHypervisor::connect(&uri))
        .await
        .expect("join")
        .expect("test driver")
        .with_name("kaktus-1");
    cloud
        .add_hypervisor("eu-west-a", Arc::new(hv))
        .await
        .expect("hypervisor");
    let image = tmp.path().join("base.raw");
    std::fs::write(&image, vec![1u8; 1 << 20]).expect("image");
    cloud
        .import_template(
            Template {
                name: "debian-12".into(),
                desc: String::new(),
                os: "linux".into(),
                source: String::new(),
                default: true,
            },
            &image,
        )
        .await
        .expect("template");
    cloud
}

fn kompute(name: &str) -> Kompute {
    Kompute {
        name: name.into(),
        desc: String::new(),
        project: "acme".into(),
        vcpus: 1,
        mem: 1,
        disk: 10,
        extra_disk: 0,
        zone: "eu-west-a".into(),
        template: "debian-12".into(),
        public: false,
    }
}

#[tokio::test]
async fn a_kompute_and_a_record_are_in_the_rendered_kiwi_section() {
    let tmp = TempDir::new("kiwi-section");
    let cloud = cloud(&tmp).await;
    let project: Project = serde_norway::from_str(
        "name: acme\nregions: [eu-west]\nteams: [admin]\ndomain: acme.local\nsubnet_size: 25\n",
    )
    .expect("project");
    let info = cloud.create_project(project).await.expect("project");
    let subnet = info.networks["eu-west"].subnet.cidr.to_string();

    // Nothing yet: the section has the region's settings and an empty zone.
    let kiwi = cloud.kiwi_section("eu-west").await.expect("section");
    assert_eq!(kiwi.listen, ["10.50.0.53"]);
    assert_eq!(kiwi.recursors, ["192.0.2.53"]);
    assert_eq!(kiwi.zones.len(), 1);
    assert!(kiwi.zones[0].records.is_empty());
    assert_eq!(kiwi.zones[0].allow_from, [subnet]);

    let server = cloud
        .create_kompute(kompute("acme-server"))
        .await
        .expect("kompute");
    cloud
        .create_dns_record(DnsRecord {
            project: "acme".into(),
            name: "ad".into(),
            desc: "Active-Directory".into(),
            addresses: vec![server.ip.to_string(), "10.0.0.99".into()],
        })
        .await
        .expect("record");

    let kiwi = cloud.kiwi_section("eu-west").await.expect("section");
    let zone = kiwi.zone("acme.local").expect("zone of the project domain");
    assert_eq!(
        zone.addresses("acme-server"),
        Some(&[server.ip.to_string()][..])
    );
    assert_eq!(
        zone.addresses("ad"),
        Some(&[server.ip.to_string(), "10.0.0.99".to_string()][..])
    );
    // The text an embedder writes parses back to the same section.
    let again: Kiwi = serde_norway::from_str(&kiwi.to_yaml()).expect("yaml");
    assert_eq!(again, kiwi);

    // The instance is told to use Kiwi, and its project's domain.
    let iso = std::fs::read(&server.seed).expect("seed");
    let text = String::from_utf8_lossy(&iso);
    let net = text
        .find("ethernets")
        .map(|at| &text[at..])
        .expect("network-config in the seed");
    assert!(net.contains("- 10.50.0.53"), "{net}");
    assert!(
        net.contains("search:") && net.contains("- acme.local"),
        "{net}"
    );
    assert!(
        !net.contains(&format!("- {}\n", info.networks["eu-west"].subnet.gateway)),
        "the gateway is no nameserver: {net}"
    );

    // Deleting them takes them out of the next rendering.
    cloud
        .delete_dns_record("acme", "ad")
        .await
        .expect("delete record");
    cloud
        .delete_kompute("acme", "acme-server")
        .await
        .expect("delete kompute");
    let kiwi = cloud.kiwi_section("eu-west").await.expect("section");
    assert!(kiwi.zones[0].records.is_empty(), "{kiwi:?}");

    let err = cloud.kiwi_section("us-east").await.expect_err("no region");
    assert!(matches!(err, CloudError::NotFound { .. }), "{err:?}");
}
