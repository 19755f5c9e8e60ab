//! The Kiwi part of `cargo xtask lab`: the library's inventory feeds Kiwi
//! and a Kompute name resolves through it.
//!
//! The real [`Cloud`] runs on paper backends ([`super::paper`]): project
//! `acme` (domain `acme.local`) gets its subnet, Kompute `acme-server` its
//! address and cloud-init seed (nameserver: the region's Kiwi, search
//! domain: `acme.local`), a custom record `ad` three addresses. The rendered
//! `kiwi` section goes into `kowabungad`'s file in the Kiwi namespace; the
//! client namespace plays the instance (its address, and its resolver
//! configured as its seed says), resolves `acme-server` by its short name,
//! `ad` with every address in rotating order, and a forwarded name. Then a
//! second Kompute and a deleted record reach Kiwi by re-rendering and
//! `SIGHUP`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kowabunga::cloud::{Cloud, CloudConfig, RegionConfig, RegionDns};
use kowabunga::model::{DnsRecord, Kompute, Project, Region, Template, Zone};

use super::dns::STUB_ADDRESS;
use super::kiwi::{KiwiLab, FORWARD_TIMEOUT_MS, KIWI_ADDR, RECURSOR_ADDR};
use super::netns::Netns;
use super::traffic::{run_bounded, Agent, Finished};

/// A section header (the lab stops there when interrupted).
pub type Section<'a> = &'a dyn Fn(&str) -> Result<()>;
/// A check: what, whether it held, details shown when it did not.
pub type Check<'a> = &'a mut dyn FnMut(&str, bool, &str);

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

async fn cloud(dir: &Path) -> Result<Cloud> {
    let mut region = RegionConfig::new(
        Region {
            name: "eu-west".into(),
            desc: "the lab's region".into(),
        },
        vec![Zone {
            name: "eu-west-a".into(),
            desc: String::new(),
            region: "eu-west".into(),
        }],
        vec!["10.0.0.0/25".parse()?],
    );
    let mut dns = RegionDns::new(
        vec![KIWI_ADDR.parse::<Ipv4Addr>()?],
        vec![RECURSOR_ADDR.into()],
    );
    dns.kiwi.forward_timeout_ms = FORWARD_TIMEOUT_MS;
    region.dns = Some(dns);
    let storage = Arc::new(super::paper::PaperStorage::new(&dir.join("pool")));
    let cloud = Cloud::new(CloudConfig::new(vec![region], dir.join("seeds")), storage);
    cloud
        .add_hypervisor(
            "eu-west-a",
            Arc::new(super::paper::PaperHypervisor::default()),
        )
        .await?;
    cloud
        .import_template(
            Template {
                name: "debian-12".into(),
                desc: String::new(),
                os: "linux".into(),
                source: String::new(),
                default: true,
            },
            &dir.join("debian-12.qcow2"),
        )
        .await?;
    cloud.create_project(acme()).await?;
    Ok(cloud)
}

/// The guide's example project.
fn acme() -> Project {
    Project {
        name: "acme".into(),
        desc: "ACME project".into(),
        regions: vec!["eu-west".into()],
        teams: vec!["admin".into()],
        domain: "acme.local".into(),
        tags: vec![],
        metadata: Default::default(),
        max_instances: 0,
        max_memory: 0,
        max_vcpus: 0,
        max_storage: 0,
        subnet_size: 25,
        bootstrap_user: kowabunga::model::DEFAULT_BOOTSTRAP_USER.into(),
        bootstrap_pubkey: String::new(),
        root_password: None,
    }
}

/// `dig ARGS` in `ns`.
fn dig(ns: &Netns, args: &[&str]) -> Result<Finished> {
    let mut cmd = ns.command("dig");
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(10)).context("dig (apt-get install dnsutils)")
}

fn show(out: &Finished) {
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        println!("  | {line}");
    }
}

/// The text of `network-config` inside a seed ISO (files are stored as
/// they are).
fn network_config(iso: &Path) -> String {
    let bytes = std::fs::read(iso).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let Some(start) = text.find("network:").or_else(|| text.find("ethernets:")) else {
        return String::new();
    };
    text[start..]
        .split('\0')
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// `/etc/netns/NAME/resolv.conf` (what `ip netns exec` shows the
/// namespace as `/etc/resolv.conf`), removed on drop.
struct Resolv(PathBuf);

impl Resolv {
    fn write(ns: &Netns, text: &str) -> Result<Self> {
        let dir = Path::new("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("resolv.conf"), text)?;
        Ok(Resolv(dir))
    }
}

impl Drop for Resolv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the Kiwi part of the lab.
///
/// # Errors
/// The lab could not be built or driven (failed expectations are checks).
pub fn demo(bin: &Path, agent: &Agent, section: Section<'_>, check: Check<'_>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("kwl-kiwi-cloud-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    section("Kiwi: the library's inventory (kowabunga::Cloud on paper backends)")?;
    let cloud = runtime.block_on(cloud(&dir))?;
    let server = runtime.block_on(cloud.create_kompute(kompute("acme-server")))?;
    let ip = server.ip.to_string();
    runtime.block_on(cloud.create_dns_record(DnsRecord {
        project: "acme".into(),
        name: "ad".into(),
        desc: "Active-Directory".into(),
        addresses: vec![ip.clone(), "10.0.0.11".into(), "10.0.0.12".into()],
    }))?;
    println!("  project acme (acme.local), Kompute acme-server got {ip}, record ad = [{ip}, 10.0.0.11, 10.0.0.12]");
    let net = network_config(&server.seed);
    println!("  acme-server's cloud-init network-config:");
    for line in net.lines() {
        println!("  | {line}");
    }
    check(
        &format!("the seed names Kiwi ({KIWI_ADDR}) as nameserver and acme.local as search domain"),
        net.contains(&format!("- {KIWI_ADDR}")) && net.contains("- acme.local"),
        &net,
    );
    let kiwi = runtime.block_on(cloud.kiwi_section("eu-west"))?;
    println!("  rendered kiwi section (Cloud::kiwi_section):");
    for line in kiwi.to_yaml().lines() {
        println!("  | {line}");
    }

    section("Kiwi: kowabungad serving it")?;
    let mut lab = KiwiLab::with(kiwi, &ip)?;
    let _recursor = lab.start_recursor(agent, false, 300)?;
    println!(
        "  {:<12} eth0 {ip}/25 (plays acme-server)   {:<12} Kiwi {KIWI_ADDR}:53   {:<12} stub recursor {RECURSOR_ADDR}:53",
        lab.client.name(),
        lab.kiwi.name(),
        lab.recursor.name()
    );
    let daemon = lab.start_daemon(bin)?;
    for line in daemon.log().lines().filter(|l| l.contains("kiwi")) {
        println!("  | {line}");
    }
    let _resolv = Resolv::write(
        &lab.client,
        &format!("# as acme-server's cloud-init says\nnameserver {KIWI_ADDR}\nsearch acme.local\n"),
    )?;

    section(
        "acme-server resolves its own name the way its seed configures it (getent, search domain)",
    )?;
    let mut getent = lab.client.command("getent");
    getent.args(["ahostsv4", "acme-server"]);
    let out = run_bounded(getent, Duration::from_secs(10))?;
    show(&out);
    check(
        &format!("the short name acme-server resolves to {ip} through Kiwi"),
        out.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{ip} ")) && l.contains("acme-server.acme.local")),
        &out.to_string(),
    );

    section(&format!("dig @{KIWI_ADDR} acme-server.acme.local"))?;
    let out = dig(
        &lab.client,
        &[
            &format!("@{KIWI_ADDR}"),
            "acme-server.acme.local",
            "A",
            "+noall",
            "+answer",
            "+comments",
        ],
    )?;
    show(&out);
    check(
        "authoritative answer (aa) with the Kompute's address",
        out.stdout.contains(" aa ") || out.stdout.contains("flags: qr aa"),
        &out.to_string(),
    );

    section("ad.acme.local: every address, first one rotating")?;
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let out = dig(
            &lab.client,
            &[&format!("@{KIWI_ADDR}"), "+short", "ad.acme.local"],
        )?;
        let got: Vec<&str> = out.stdout.split_whitespace().collect();
        println!("  | {}", got.join(" "));
        if got.len() == 3 {
            firsts.push(got[0].to_owned());
        }
    }
    firsts.sort();
    firsts.dedup();
    check(
        "3 answers of 3 addresses, 3 different first ones",
        firsts.len() == 3,
        "",
    );

    section("www.example.test: forwarded to the recursor")?;
    let out = dig(
        &lab.client,
        &[&format!("@{KIWI_ADDR}"), "+short", "www.example.test"],
    )?;
    show(&out);
    check(
        &format!("forwarded name answered ({STUB_ADDRESS})"),
        out.stdout.trim() == STUB_ADDRESS,
        &out.to_string(),
    );

    section("A second Kompute, the record deleted: re-rendered, SIGHUP")?;
    let db = runtime.block_on(cloud.create_kompute(kompute("acme-db")))?;
    runtime.block_on(cloud.delete_dns_record("acme", "ad"))?;
    lab.set_section(runtime.block_on(cloud.kiwi_section("eu-west"))?)?;
    let daemon = lab.daemon().context("kowabungad")?;
    let before = daemon.log_count("applied config");
    daemon.reload()?;
    daemon.wait_log("applied config", before + 1, Duration::from_secs(10))?;
    let out = dig(
        &lab.client,
        &[&format!("@{KIWI_ADDR}"), "+short", "acme-db.acme.local"],
    )?;
    show(&out);
    check(
        &format!("acme-db.acme.local resolves to {} after the reload", db.ip),
        out.stdout.trim() == db.ip.to_string(),
        &out.to_string(),
    );
    let out = dig(
        &lab.client,
        &[
            &format!("@{KIWI_ADDR}"),
            "ad.acme.local",
            "+noall",
            "+comments",
        ],
    )?;
    check(
        "ad.acme.local is NXDOMAIN once deleted",
        out.stdout.contains("status: NXDOMAIN"),
        &out.to_string(),
    );

    section("Kiwi's log")?;
    if let Some(daemon) = lab.daemon() {
        let log = daemon.log();
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(6)..] {
            println!("  | {line}");
        }
    }
    println!("\n== Cleanup: stopping kowabungad and the recursor, deleting the Kiwi namespaces");
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
