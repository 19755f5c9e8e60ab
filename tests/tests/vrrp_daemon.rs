//! `kowabungad` with a `node.vrrp` section, next to a real keepalived: the zone
//! rule makes our zone-local node master (priority 150 against keepalived's 100),
//! the daemon logs the instance's status, and stopping the daemon (SIGTERM) hands
//! the VIP over at once through a priority-0 advert.
//!
//! The node is a Konvey load balancer whose VIP is the VRRP VIP (a Multi-Zone
//! Konvey). Privileged: skipped with a message when not root, or failed where
//! skipping is forbidden (`kowabunga_testkit::privileged`). Needs `target/<profile>/kowabungad`
//! (`cargo xtask test` builds it first).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::daemon::Daemon;
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::vrrp::lab::{VrrpLab, ROUTER_ADDRS, VIP, VIP_CIDR, VRID};
use kowabunga_tests::vrrp::node::{Impl, Node, Spec};
use kowabunga_tests::vrrp::wait::{holds, until};

fn config(bpffs: &str) -> String {
    format!(
        "node:\n  zone: zone-a\n  interfaces: {{konvey: [eth0]}}\n  bpffs: {bpffs}\n  vrrp:\n    instances:\n      - {{name: konvey-a, vrid: {VRID}, interface: eth0, zone: zone-a, advert_interval_ms: 100, virtual_ips: [{VIP_CIDR}]}}\n\
         konvey:\n  vip: {VIP}\n  endpoints:\n    - {{name: E, protocol: udp, port: 7000, backend_port: 7000, backend_ips: [{}]}}\n",
        ROUTER_ADDRS[1]
    )
}

#[test]
fn kowabungad_runs_vrrp_with_the_zone_rule_and_hands_over_on_stop() -> Result<()> {
    if !privileged("kowabungad_runs_vrrp_with_the_zone_rule_and_hands_over_on_stop") {
        return Ok(());
    }
    let bin = find_kowabungad()?;
    let lab = VrrpLab::new()?;
    let bpffs = format!("/sys/fs/bpf/{}", lab.routers[0].name());
    let conf = lab.dir().join("kowabungad.yaml");
    std::fs::write(&conf, config(&bpffs))?;
    let result = run(&lab, &bin, &conf);
    // The pinned maps and links outlive the daemon: remove them.
    let mut detach = Command::new(&bin);
    detach.arg("--config").arg(&conf).arg("--detach");
    lab.routers[0].enter_net_only(&mut detach)?;
    let _ = detach.output();
    let _ = std::fs::remove_dir_all(&bpffs);
    result
}

fn run(lab: &VrrpLab, bin: &std::path::Path, conf: &std::path::Path) -> Result<()> {
    let keepalived = Node::start(lab, 1, &Spec::new(Impl::Keepalived, 100, 100), bin)?;
    let daemon = Daemon::start(&lab.routers[0], bin, conf)?;
    until(
        "r1 (kowabungad) to hold the VIP",
        Duration::from_secs(5),
        || lab.vip_on(0),
    )
    .with_context(|| daemon.log())?;
    holds(
        "keepalived staying backup",
        Duration::from_millis(1000),
        || Ok(!lab.vip_on(1)? && lab.vip_on(0)?),
    )
    .with_context(|| {
        format!(
            "kowabungad:\n{}\nkeepalived:\n{}",
            daemon.log(),
            keepalived.log_text()
        )
    })?;
    let log = daemon.log();
    ensure!(
        log.contains("vrrp konvey-a vrid=51 if=eth0") && log.contains("priority=150"),
        "zone rule (150) and status line expected:\n{log}"
    );
    ensure!(lab.ping_vip()?, "ping the VIP on kowabungad's node");

    let t0 = Instant::now();
    drop(daemon);
    let took = until("keepalived to take the VIP", Duration::from_secs(3), || {
        lab.vip_on(1)
    })
    .with_context(|| keepalived.log_text())?;
    println!(
        "kowabungad stopped: keepalived holds the VIP {:?} after SIGTERM",
        t0.elapsed()
    );
    ensure!(took < Duration::from_millis(1500), "handover took {took:?}");
    ensure!(!lab.vip_on(0)?, "kowabungad left the VIP behind");
    ensure!(lab.ping_vip()?, "ping the VIP on keepalived's node");
    Ok(())
}
