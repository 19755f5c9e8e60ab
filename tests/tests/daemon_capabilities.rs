//! `kowabungad` with exactly the capabilities of
//! `packaging/kowabungad.service` (`CapabilityBoundingSet=`), as systemd
//! would start it: a Kawaii gateway and a Kiwi DNS node become ready.
//! Removing one of CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN stops the gateway,
//! removing CAP_NET_BIND_SERVICE stops Kiwi on port 53: the set is not
//! larger than needed for these roles.
//!
//! The bounding set is applied with `setpriv --bounding-set` (util-linux)
//! in a namespace of the test's own (two veths, no traffic).
//!
//! Privileged: skipped with a message when not root, or failed where
//! skipping is forbidden (`kowabunga_testkit::privileged`). Needs
//! `target/<profile>/kowabungad` (`cargo xtask test` builds it first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use kowabunga_testkit::{missing, privileged};
use kowabunga_tests::lab::daemon::{command, READY_LINE, READY_TIMEOUT};
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::netns::{unique_prefix, Netns};
use kowabunga_tests::lab::topology::{ensure_bpffs, BPFFS};
use kowabunga_tests::lab::traffic::Background;

/// The unit's `CapabilityBoundingSet=` names.
fn unit_caps() -> Result<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/kowabungad.service");
    let text = std::fs::read_to_string(&path)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .context("no CapabilityBoundingSet= in the unit")?;
    Ok(line.split_whitespace().map(str::to_owned).collect())
}

/// `setpriv --bounding-set` value keeping exactly `caps`.
fn bounding(caps: &[String]) -> String {
    let mut arg = String::from("-all");
    for cap in caps {
        let name = cap.trim_start_matches("CAP_").to_lowercase();
        arg.push_str(&format!(",+{name}"));
    }
    arg
}

/// Outcome of one start with `caps`: ready, or the exit code and output.
enum Start {
    Ready,
    Failed(Option<i32>, String),
}

struct Node {
    ns: Netns,
    bin: PathBuf,
    conf: PathBuf,
}

impl Node {
    fn start(&self, caps: &[String]) -> Result<Start> {
        let inner = command(&self.bin, &self.conf);
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--bounding-set={}", bounding(caps)))
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        self.ns.enter_net_only(&mut cmd)?;
        let mut daemon = Background::spawn("kowabungad (setpriv)", cmd)?;
        let result = match daemon.wait_for(READY_LINE, READY_TIMEOUT) {
            Ok(_) => Start::Ready,
            Err(_) => {
                let code = daemon.wait_exit(Duration::from_secs(5))?;
                Start::Failed(code, daemon.output())
            }
        };
        daemon.stop(Duration::from_secs(5));
        // Remove what a start pinned, with every capability.
        let mut detach = command(&self.bin, &self.conf);
        detach.arg("--detach");
        self.ns.enter_net_only(&mut detach)?;
        let _ = detach.output();
        Ok(result)
    }
}

fn without(caps: &[String], drop: &str) -> Vec<String> {
    caps.iter().filter(|c| *c != drop).cloned().collect()
}

#[test]
fn the_units_capabilities_are_enough_and_each_is_needed() -> Result<()> {
    if !privileged("the_units_capabilities_are_enough_and_each_is_needed") {
        return Ok(());
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        missing(
            "the_units_capabilities_are_enough_and_each_is_needed",
            "setpriv (util-linux)",
        );
        return Ok(());
    }
    let bin = find_kowabungad()?;
    ensure_bpffs()?;
    let caps = unit_caps()?;
    println!("unit: {}", caps.join(" "));
    let prefix = unique_prefix();
    let dir = std::env::temp_dir().join(format!("{prefix}-caps"));
    std::fs::create_dir_all(&dir)?;
    let pins = [
        Path::new(BPFFS).join(format!("{prefix}-gw")),
        Path::new(BPFFS).join(format!("{prefix}-dns")),
    ];
    let result = run(&bin, &prefix, &dir, &pins, &caps);
    let _ = std::fs::remove_dir_all(&dir);
    for pin in &pins {
        let _ = std::fs::remove_dir_all(pin);
    }
    result
}

fn run(bin: &Path, prefix: &str, dir: &Path, pins: &[PathBuf; 2], caps: &[String]) -> Result<()> {
    let ns = Netns::new(&format!("{prefix}-cap"))?;
    for (dev, addr) in [("kpub", "203.0.113.10/24"), ("kpriv", "10.0.0.1/25")] {
        ns.ip(&[
            "link",
            "add",
            dev,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{dev}p"),
        ])?;
        ns.ip(&["link", "set", dev, "up"])?;
        ns.ip(&["link", "set", &format!("{dev}p"), "up"])?;
        ns.ip(&["addr", "add", addr, "dev", dev])?;
    }
    let gw_conf = dir.join("gateway.yaml");
    std::fs::write(
        &gw_conf,
        format!(
            "node:\n  zone: zone-a\n  interfaces: {{public: kpub, private: kpriv}}\n  bpffs: {}\n\
             kawaii:\n  public_ips: [203.0.113.10]\n  private_subnet: 10.0.0.0/25\n",
            pins[0].display()
        ),
    )?;
    let dns_conf = dir.join("dns.yaml");
    std::fs::write(
        &dns_conf,
        format!(
            "node:\n  zone: zone-a\n  interfaces: {{}}\n  bpffs: {}\n\
             kiwi:\n  listen: [127.0.0.1]\n  udp_workers: 1\n",
            pins[1].display()
        ),
    )?;
    let gateway = Node {
        ns,
        bin: bin.to_owned(),
        conf: gw_conf,
    };

    let mut report = Vec::new();
    match gateway.start(caps)? {
        Start::Ready => report.push("gateway with the unit's set: ready".to_owned()),
        Start::Failed(code, out) => {
            anyhow::bail!(
                "the gateway did not start with the unit's capabilities ({code:?}):\n{out}"
            )
        }
    }
    for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"] {
        anyhow::ensure!(caps.iter().any(|c| c == cap), "the unit lacks {cap}");
        match gateway.start(&without(caps, cap))? {
            Start::Ready => anyhow::bail!("the gateway started without {cap}: not needed?"),
            Start::Failed(code, out) => {
                anyhow::ensure!(code.is_some_and(|c| c != 0), "{cap}: exit {code:?}:\n{out}");
                let line = out.lines().last().unwrap_or_default().to_owned();
                report.push(format!("gateway without {cap}: exit {code:?}: {line}"));
            }
        }
    }

    let dns = Node {
        ns: gateway.ns,
        bin: bin.to_owned(),
        conf: dns_conf,
    };
    match dns.start(caps)? {
        Start::Ready => report.push("Kiwi on :53 with the unit's set: ready".to_owned()),
        Start::Failed(code, out) => {
            anyhow::bail!("Kiwi did not start with the unit's capabilities ({code:?}):\n{out}")
        }
    }
    match dns.start(&without(caps, "CAP_NET_BIND_SERVICE"))? {
        Start::Ready => anyhow::bail!("Kiwi bound port 53 without CAP_NET_BIND_SERVICE"),
        Start::Failed(code, out) => {
            anyhow::ensure!(code.is_some_and(|c| c != 0), "Kiwi: exit {code:?}:\n{out}");
            let line = out.lines().last().unwrap_or_default().to_owned();
            report.push(format!(
                "Kiwi without CAP_NET_BIND_SERVICE: exit {code:?}: {line}"
            ));
        }
    }
    for line in report {
        println!("{line}");
    }
    Ok(())
}
