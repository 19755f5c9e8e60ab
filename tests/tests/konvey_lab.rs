//! Konvey in a namespace lab: real TCP and UDP through `kowabungad`'s XDP load
//! balancer to three backends that answer with their name.
//!
//! Privileged: skipped with a message when not root, or failed where skipping is
//! forbidden (`kowabunga_testkit::privileged`). Needs `target/<profile>/kowabungad`
//! (`cargo build -p kowabunga-control`; `cargo xtask test` builds it first).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::konvey::{
    distribution, KonveyLab, HEALTH_FALL, HEALTH_INTERVAL_MS, TCP_ENDPOINT, TCP_PORT, UDP_ENDPOINT,
    VIP,
};
use kowabunga_tests::lab::traffic::Agent;

/// Labs of this file run one at a time: each runs a daemon, the machine has 2 cores.
static LAB: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(PoisonError::into_inner)
}

fn agent() -> Agent {
    Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"))
}

/// A lab with its backends serving and `kowabungad` running and ready.
fn lab_with_daemon(agent: &Agent) -> Result<KonveyLab> {
    let bin = find_kowabungad()?;
    let mut lab = KonveyLab::new()?;
    lab.start_backends(agent)?;
    lab.start_daemon(&bin)?;
    lab.warm_up()?;
    Ok(lab)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Generous bound for "out of rotation within interval x fall": the probes'
/// own schedule plus process scheduling on a busy 2-core machine.
fn failover_bound() -> Duration {
    Duration::from_millis(HEALTH_INTERVAL_MS * u64::from(HEALTH_FALL)) + Duration::from_millis(1500)
}

/// 30 new TCP connections and 30 new UDP flows land exactly 10/10/10.
#[test]
fn round_robin_is_exact_for_tcp_and_udp() -> Result<()> {
    if !privileged("round_robin_is_exact_for_tcp_and_udp") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let lab = lab_with_daemon(&agent)?;
    let want = counts(&[("b1", 10), ("b2", 10), ("b3", 10)]);

    let tcp = distribution(&lab, &agent, false, 30)?;
    println!("TCP {VIP}:{TCP_PORT}, 30 connections: {tcp:?}");
    ensure!(tcp == want, "TCP distribution {tcp:?}, want {want:?}");

    let udp = distribution(&lab, &agent, true, 30)?;
    println!("UDP, 30 flows: {udp:?}");
    ensure!(udp == want, "UDP distribution {udp:?}, want {want:?}");

    // The backends saw the balancer's address, not the client's (full NAT).
    let out = agent.tcp_client(&lab.client, &format!("{VIP}:{TCP_PORT}"))?;
    ensure!(
        out.field("name=")
            .is_some_and(|l| l.contains("peer=10.0.0.5:")),
        "backend did not see the balancer as source: {out}"
    );
    let counters = lab.counters()?;
    ensure!(
        counters.packets("fwd_redirect") > 0,
        "nothing redirected:\n{counters}"
    );
    Ok(())
}

/// A stopped backend leaves the rotation within interval x fall; afterwards no
/// new connection is refused; restarted, it is back in the rotation.
#[test]
fn a_stopped_backend_leaves_the_rotation_and_comes_back() -> Result<()> {
    if !privileged("a_stopped_backend_leaves_the_rotation_and_comes_back") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let mut lab = lab_with_daemon(&agent)?;

    let stopped = Instant::now();
    lab.stop_backend(1);
    let out = lab.wait_backend_states(
        &[(TCP_ENDPOINT, "b2", "down"), (UDP_ENDPOINT, "b2", "down")],
        1,
        stopped,
        Duration::from_secs(10),
    )?;
    println!(
        "b2 stopped: out of the TCP rotation after {} ms, of the UDP rotation after {} ms (interval {HEALTH_INTERVAL_MS} ms x fall {HEALTH_FALL} = {} ms)",
        out[0].as_millis(),
        out[1].as_millis(),
        HEALTH_INTERVAL_MS * u64::from(HEALTH_FALL)
    );
    for took in &out {
        ensure!(
            *took <= failover_bound(),
            "failover took {took:?}, bound {:?}",
            failover_bound()
        );
    }

    let want = counts(&[("b1", 15), ("b3", 15)]);
    let tcp = distribution(&lab, &agent, false, 30)?;
    println!("TCP with b2 down: {tcp:?}");
    ensure!(
        tcp == want,
        "TCP with b2 down: {tcp:?}, want {want:?} (none refused)"
    );
    let udp = distribution(&lab, &agent, true, 30)?;
    println!("UDP with b2 down: {udp:?}");
    ensure!(udp == want, "UDP with b2 down: {udp:?}, want {want:?}");

    let restarted = Instant::now();
    lab.start_backend(&agent, 1)?;
    let back = lab.wait_backend_states(
        &[(TCP_ENDPOINT, "b2", "up"), (UDP_ENDPOINT, "b2", "up")],
        1,
        restarted,
        Duration::from_secs(10),
    )?;
    println!(
        "b2 restarted: back in the rotations after {} ms (TCP) / {} ms (UDP), rise {}",
        back[0].as_millis(),
        back[1].as_millis(),
        kowabunga_tests::lab::konvey::HEALTH_RISE
    );
    let want = counts(&[("b1", 10), ("b2", 10), ("b3", 10)]);
    let tcp = distribution(&lab, &agent, false, 30)?;
    println!("TCP after the restart: {tcp:?}");
    ensure!(tcp == want, "TCP after the restart: {tcp:?}, want {want:?}");
    let udp = distribution(&lab, &agent, true, 30)?;
    ensure!(udp == want, "UDP after the restart: {udp:?}, want {want:?}");
    Ok(())
}

/// Removing a backend from the config (SIGHUP) while a long TCP connection to it
/// is open keeps that connection working; new connections avoid it, and the
/// daemon reports it draining.
#[test]
fn a_removed_backend_keeps_its_established_connection() -> Result<()> {
    if !privileged("a_removed_backend_keeps_its_established_connection") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let mut lab = lab_with_daemon(&agent)?;

    let mut hold = agent.tcp_hold(&lab.client, &format!("{VIP}:{TCP_PORT}"), 5)?;
    let greeting = hold.wait_for("name=", Duration::from_secs(5))?;
    let held = greeting
        .strip_prefix("name=")
        .and_then(|r| r.split_whitespace().next())
        .context("greeting")?
        .to_owned();
    let (held_name, held_addr) = kowabunga_tests::lab::konvey::BACKENDS
        .into_iter()
        .find(|(n, _)| *n == held)
        .context("unknown backend")?;
    println!("long connection held by {held_name} ({held_addr})");

    let others: Vec<&'static str> = kowabunga_tests::lab::konvey::BACKENDS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != held_name)
        .collect();
    lab.set_backends(&others)?;
    let daemon = lab.daemon().context("daemon not started")?;
    daemon.reload()?;
    daemon
        .wait_log("applied config", 2, Duration::from_secs(10))
        .context("the reload was not applied")?;
    daemon
        .wait_log(
            &format!("backend {held_addr}:7000 is draining"),
            1,
            Duration::from_secs(5),
        )
        .context("no draining report")?;

    // New connections avoid the removed backend.
    let tcp = distribution(&lab, &agent, false, 20)?;
    println!("TCP after removing {held_name}: {tcp:?}");
    let want: BTreeMap<String, usize> = others.iter().map(|n| ((*n).to_owned(), 10)).collect();
    ensure!(tcp == want, "after the removal: {tcp:?}, want {want:?}");

    let code = hold.wait_exit(Duration::from_secs(15))?;
    ensure!(
        code == Some(0),
        "the long connection to {held_name} broke across the reload (exit {code:?}):\n{}",
        hold.output()
    );
    ensure!(
        hold.count("exchanges=25") == 1,
        "not every exchange made it:\n{}",
        hold.output()
    );
    // The daemon reported the flow count of the draining backend.
    let daemon = lab.daemon().context("daemon")?;
    let log = daemon.log();
    for line in log
        .lines()
        .filter(|l| l.contains(&format!("backend {held_addr}:7000 ")))
    {
        println!("  | {line}");
    }
    ensure!(
        log.contains(&format!(
            "backend {held_addr}:7000 is draining: 1 flows left"
        )),
        "no flow count for the draining backend:\n{log}"
    );
    Ok(())
}

/// A daemon restart keeps established flows and the rotations (the program and
/// its maps are pinned): traffic flows while no daemon runs, the new daemon
/// rewrites nothing, and `--detach` then removes the program and the pins.
#[test]
fn a_daemon_restart_keeps_flows_and_detach_cleans_up() -> Result<()> {
    if !privileged("a_daemon_restart_keeps_flows_and_detach_cleans_up") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let bin = find_kowabungad()?;
    let mut lab = lab_with_daemon(&agent)?;

    let mut hold = agent.tcp_hold(&lab.client, &format!("{VIP}:{TCP_PORT}"), 4)?;
    hold.wait_for("name=", Duration::from_secs(5))?;
    lab.stop_daemon();

    // No daemon: the pinned program keeps balancing new connections.
    let tcp = distribution(&lab, &agent, false, 6)?;
    println!("TCP without a daemon: {tcp:?}");
    let want = counts(&[("b1", 2), ("b2", 2), ("b3", 2)]);
    ensure!(tcp == want, "without a daemon: {tcp:?}, want {want:?}");

    let daemon = lab.start_daemon(&bin)?;
    let rewrites = daemon.log_count(" rotation: ");
    ensure!(
        rewrites == 0,
        "the restarted daemon rewrote {rewrites} rotations:\n{}",
        daemon.log()
    );
    let code = hold.wait_exit(Duration::from_secs(10))?;
    ensure!(
        code == Some(0),
        "the long connection broke across the restart (exit {code:?}):\n{}",
        hold.output()
    );

    lab.stop_daemon();
    let out = lab.detach(&bin)?;
    ensure!(out.success(), "kowabungad --detach: {out}");
    ensure!(
        !lab.pin_dir().join("konvey").exists(),
        "{} still exists",
        lab.pin_dir().join("konvey").display()
    );
    // Without the program, the balancer's own kernel answers VIP:80: refused.
    let out = agent.tcp_client_timeout(
        &lab.client,
        &format!("{VIP}:{TCP_PORT}"),
        Duration::from_millis(1500),
    )?;
    ensure!(
        !out.success(),
        "VIP:{TCP_PORT} still balanced after --detach: {out}"
    );
    Ok(())
}
