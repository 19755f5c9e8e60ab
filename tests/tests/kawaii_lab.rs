//! Kawaii in a namespace lab: real TCP/UDP/ICMP through `kowabungad`'s XDP gateway.
//!
//! Privileged: skipped with a message when not root, or failed where skipping is
//! forbidden (`kowabunga_testkit::privileged`). Needs `target/<profile>/kowabungad`
//! (`cargo build -p kowabunga-control`; `cargo xtask test` builds it first).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::agent::EXIT_TIMEOUT;
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::topology::{
    KawaiiLab, DNAT_PORT, GW_PRIV_ADDR, GW_PUB_ADDR, INET_ADDR, PRIV_ADDR, VIP,
};
use kowabunga_tests::lab::traffic::{ping, Agent};

/// Labs of this file run one at a time: each runs a daemon, the machine has 2 cores.
static LAB: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(PoisonError::into_inner)
}

fn agent() -> Agent {
    Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"))
}

/// A lab with `kowabungad` running and ready.
fn lab_with_daemon() -> Result<KawaiiLab> {
    let bin = find_kowabungad()?;
    let mut lab = KawaiiLab::new()?;
    lab.start_daemon(&bin)?;
    Ok(lab)
}

/// Without the daemon the lab is plain kernel routing, no NAT: the namespaces, the
/// routes and the agents work, and the private host cannot be reached from outside.
#[test]
fn topology_and_agents_without_daemon() -> Result<()> {
    if !privileged("topology_and_agents_without_daemon") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let lab = KawaiiLab::new()?;

    for (ns, dest) in [
        (&lab.private, GW_PRIV_ADDR),
        (&lab.inet, GW_PUB_ADDR),
        (&lab.inet, VIP),
    ] {
        let out = ping(ns, dest)?;
        ensure!(out.success(), "ping {dest} from {}: {out}", ns.name());
    }

    // The gateway itself reaches the Internet host with its own address.
    let _server = agent.tcp_echo_server(&lab.inet, 7000, 20)?;
    let out = agent.tcp_client(&lab.gw, &format!("{INET_ADDR}:7000"))?;
    ensure!(out.success(), "tcp gw -> inet: {out}");
    ensure!(
        out.field("peer=")
            .is_some_and(|p| p.starts_with(&format!("{GW_PUB_ADDR}:"))),
        "{out}"
    );

    let _udp = agent.udp_echo_server(&lab.inet, 7001, 20)?;
    let out = agent.udp_client(&lab.gw, &format!("{INET_ADDR}:7001"))?;
    ensure!(out.success(), "udp gw -> inet: {out}");
    ensure!(out.field("echo=") == Some("hello"), "{out}");

    // No NAT yet: inet has no route back to 10.0.0.0/25, and no route to it either.
    let out = agent.tcp_client_timeout(
        &lab.private,
        &format!("{INET_ADDR}:7000"),
        Duration::from_millis(1500),
    )?;
    ensure!(!out.success(), "without NAT priv -> inet must fail: {out}");
    let _private = agent.tcp_echo_server(&lab.private, DNAT_PORT, 20)?;
    let out = agent.tcp_client_timeout(
        &lab.inet,
        &format!("{PRIV_ADDR}:{DNAT_PORT}"),
        Duration::from_millis(1500),
    )?;
    ensure!(
        !out.success(),
        "inet must not reach the private host directly: {out}"
    );
    Ok(())
}

/// Egress: TCP, UDP and ICMP echo from the private host leave with the VIP as source.
#[test]
fn egress_is_snated_to_the_vip() -> Result<()> {
    if !privileged("egress_is_snated_to_the_vip") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let mut lab = lab_with_daemon()?;
    // The gateway's two interfaces are veths: said once each at start.
    let log = lab.daemon().context("no daemon")?.log();
    for field in ["node.interfaces.public", "node.interfaces.private"] {
        let n = log
            .lines()
            .filter(|l| l.contains(&format!("{field}: ")) && l.contains(" is a veth: "))
            .count();
        ensure!(n == 1, "{n} veth warnings for {field}:\n{log}");
    }
    let tcp = agent.tcp_echo_server(&lab.inet, 7000, 30)?;
    let udp = agent.udp_echo_server(&lab.inet, 7001, 30)?;

    let out = agent.tcp_client(&lab.private, &format!("{INET_ADDR}:7000"))?;
    ensure!(out.success(), "tcp priv -> inet: {out}");
    let peer = out.field("peer=").context("no peer line")?;
    ensure!(
        peer.starts_with(&format!("{VIP}:")),
        "inet saw {peer}, want the VIP {VIP}"
    );
    ensure!(
        tcp.count(&format!("accepted peer={VIP}:")) == 1,
        "server log: {}",
        tcp.output()
    );

    let out = agent.udp_client(&lab.private, &format!("{INET_ADDR}:7001"))?;
    ensure!(out.success(), "udp priv -> inet: {out}");
    let peer = out.field("peer=").context("no peer line")?;
    ensure!(
        peer.starts_with(&format!("{VIP}:")),
        "inet saw {peer}, want the VIP {VIP}"
    );
    ensure!(
        udp.count(&format!("datagram peer={VIP}:")) == 1,
        "server log: {}",
        udp.output()
    );

    let out = ping(&lab.private, INET_ADDR)?;
    ensure!(out.success(), "ping priv -> inet: {out}");

    let counters = lab.counters()?;
    ensure!(
        counters.packets("fwd_redirect") > 0,
        "nothing redirected:\n{counters}"
    );
    Ok(())
}

/// Ingress: the DNAT port reaches the private server; any other VIP port is dropped
/// silently (no RST: the client times out).
#[test]
fn dnat_reaches_the_private_host_and_the_rest_is_dropped() -> Result<()> {
    if !privileged("dnat_reaches_the_private_host_and_the_rest_is_dropped") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let lab = lab_with_daemon()?;
    let server = agent.tcp_echo_server(&lab.private, DNAT_PORT, 30)?;

    let out = agent.tcp_client(&lab.inet, &format!("{VIP}:{DNAT_PORT}"))?;
    ensure!(out.success(), "tcp inet -> VIP:{DNAT_PORT}: {out}");
    let peer = out.field("peer=").context("no peer line")?;
    ensure!(
        peer.starts_with(&format!("{INET_ADDR}:")),
        "private host saw {peer}, want {INET_ADDR}"
    );
    ensure!(
        server.count(&format!("accepted peer={INET_ADDR}:")) == 1,
        "server log: {}",
        server.output()
    );

    let before = lab.counters()?;
    let out = agent.tcp_client_timeout(
        &lab.inet,
        &format!("{VIP}:9999"),
        Duration::from_millis(1500),
    )?;
    ensure!(
        out.code == Some(EXIT_TIMEOUT),
        "VIP:9999 must time out (dropped), got: {out}"
    );
    let delta = lab.counters()?.since(&before);
    ensure!(
        delta.packets("drop_ingress_denied") >= 1,
        "no ingress drop counted:\n{delta}"
    );
    Ok(())
}

/// Hot reload: long connections (egress and DNAT) survive a SIGHUP that adds an
/// ingress rule, and the new rule takes effect.
#[test]
fn reload_keeps_established_flows() -> Result<()> {
    if !privileged("reload_keeps_established_flows") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let mut lab = lab_with_daemon()?;
    let _inet_server = agent.tcp_echo_server(&lab.inet, 7000, 30)?;
    let _priv_server = agent.tcp_echo_server(&lab.private, DNAT_PORT, 30)?;
    let _gw_server = agent.tcp_echo_server(&lab.gw, 2222, 30)?;

    // Before the reload, VIP:2222 is not open.
    let to_2222 = format!("{VIP}:2222");
    let out = agent.tcp_client_timeout(&lab.inet, &to_2222, Duration::from_millis(1000))?;
    ensure!(
        out.code == Some(EXIT_TIMEOUT),
        "VIP:2222 before the reload: {out}"
    );

    let mut egress = agent.tcp_hold(&lab.private, &format!("{INET_ADDR}:7000"), 4)?;
    let mut ingress = agent.tcp_hold(&lab.inet, &format!("{VIP}:{DNAT_PORT}"), 4)?;
    egress.wait_for("peer=", Duration::from_secs(5))?;
    ingress.wait_for("peer=", Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_millis(800));

    lab.add_ingress_rule("203.0.113.0/24", "tcp", "2222")?;
    let daemon = lab.daemon().context("daemon not started")?;
    daemon.reload()?;
    // kowabungad logs "applied config" at start and after each successful reload.
    daemon
        .wait_log("applied config", 2, Duration::from_secs(10))
        .context("the reload was not applied")?;
    ensure!(
        daemon.running(),
        "kowabungad died on SIGHUP:\n{}",
        daemon.log()
    );

    for (name, hold) in [("egress", &mut egress), ("ingress", &mut ingress)] {
        let code = hold.wait_exit(Duration::from_secs(10))?;
        ensure!(
            code == Some(0),
            "{name} connection broke across the reload (exit {code:?}):\n{}",
            hold.output()
        );
    }

    // The new rule is live: bounded retries while the daemon applies it.
    let mut last = None;
    for _ in 0..5 {
        let out = agent.tcp_client_timeout(&lab.inet, &to_2222, Duration::from_millis(1000))?;
        if out.success() {
            return Ok(());
        }
        last = Some(out);
    }
    anyhow::bail!("VIP:2222 still closed after the reload: {last:?}")
}
