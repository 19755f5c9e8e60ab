//! `kowabungad` and network namespaces (issue 14): pins that outlive the
//! daemon, no open door while the dataplane is gone.
//!
//! * `ip netns exec` (a private mount namespace without the host's bpffs)
//!   gets a one-line refusal and pins nothing;
//! * with `node.netns` the daemon enters the gateway namespace itself, keeps
//!   the host's bpffs, and a `kill -9` plus restart loses no exchange of 10
//!   SNAT and 10 DNAT TCP connections and a 100/s UDP stream, while a capture
//!   on the Internet side sees no private source;
//! * `--detach` closes the kernel backstop and puts the sysctls back: nothing
//!   crosses untranslated, even with forwarding turned on by hand;
//! * two daemons in two namespaces run side by side with their own maps.
//!
//! Privileged: skipped with a message when not root, or failed where skipping
//! is forbidden (`kowabunga_testkit::privileged`). Needs `kowabungad`, `nft`
//! and `tcpdump` (`cargo xtask test` installs and builds them).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::agent::EXIT_TIMEOUT;
use kowabunga_tests::lab::capture::{from_source, Capture};
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::topology::{
    KawaiiLab, DNAT_PORT, IF_PRIVATE, IF_PUBLIC, INET_ADDR, PRIV_ADDR, VIP,
};
use kowabunga_tests::lab::traffic::{Agent, Background};

/// Labs of this file run one at a time: each runs daemons, the machine has 2 cores.
static LAB: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(PoisonError::into_inner)
}

fn agent() -> Agent {
    Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"))
}

/// The first octets of the private subnet, as `tcpdump -n` prints a source.
const PRIVATE_PREFIX: &str = "10.0.0.";
/// TCP echo port on the Internet host (SNAT traffic).
const INET_TCP: u16 = 7000;
/// UDP echo port on the Internet host.
const INET_UDP: u16 = 7001;

/// A lab whose daemon enters the gateway namespace itself (`node.netns`).
fn netns_lab() -> Result<KawaiiLab> {
    let mut lab = KawaiiLab::new()?;
    lab.use_node_netns()?;
    Ok(lab)
}

#[test]
fn ip_netns_exec_is_refused_and_pins_nothing() -> Result<()> {
    if !privileged("ip_netns_exec_is_refused_and_pins_nothing") {
        return Ok(());
    }
    let _serial = serial();
    let bin = find_kowabungad()?;
    let lab = KawaiiLab::new()?;
    let out = lab.run_with_ip_netns_exec(&bin)?;
    ensure!(out.code == Some(1), "want exit 1 (runtime), got: {out}");
    let line = format!(
        "kowabungad: node.bpffs: {} is not on a bpffs in this private mount namespace",
        lab.pin_dir().display()
    );
    ensure!(
        out.stderr.lines().any(|l| l.starts_with(&line)),
        "no refusal line in: {out}"
    );
    ensure!(
        out.stderr.contains("nsenter --net=") && out.stderr.contains("node.netns"),
        "the refusal says how: {out}"
    );
    ensure!(
        !out.stderr.contains("mounted bpffs") && !lab.pin_dir().exists(),
        "nothing may be pinned: {out}"
    );
    Ok(())
}

#[test]
fn node_netns_survives_kill_and_restart_without_losing_an_exchange() -> Result<()> {
    if !privileged("node_netns_survives_kill_and_restart_without_losing_an_exchange") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let bin = find_kowabungad()?;
    let mut lab = netns_lab()?;
    lab.start_daemon(&bin)?;
    ensure!(
        lab.pin_dir().join("kw_ct4").exists(),
        "the pins are in the host's bpffs ({})",
        lab.pin_dir().display()
    );
    let _tcp = agent.tcp_echo_server(&lab.inet, INET_TCP, 60)?;
    let _udp = agent.udp_echo_server(&lab.inet, INET_UDP, 60)?;
    let _dnat = agent.tcp_echo_server(&lab.private, DNAT_PORT, 60)?;
    let capture_file = std::env::temp_dir().join(format!("{}-inet.pcap", lab.prefix()));
    let capture = Capture::start(&lab.inet, "eth0", &capture_file)?;

    let seconds = 8;
    let mut holds: Vec<(String, Background)> = Vec::new();
    for i in 0..10 {
        let to = format!("{INET_ADDR}:{INET_TCP}");
        holds.push((
            format!("snat {i}"),
            agent.tcp_hold(&lab.private, &to, seconds)?,
        ));
        let to = format!("{VIP}:{DNAT_PORT}");
        holds.push((
            format!("dnat {i}"),
            agent.tcp_hold(&lab.inet, &to, seconds)?,
        ));
    }
    let to = format!("{INET_ADDR}:{INET_UDP}");
    let mut udp = agent.udp_hold(&lab.private, &to, seconds, 100)?;
    for (name, hold) in &mut holds {
        hold.wait_for("peer=", Duration::from_secs(5))
            .with_context(|| format!("{name} did not connect"))?;
    }
    std::thread::sleep(Duration::from_millis(1500));

    // The crash: no clean-up at all, then a gap, then a new daemon.
    lab.daemon().context("daemon")?.kill()?;
    std::thread::sleep(Duration::from_millis(1500));
    let daemon = lab.start_daemon(&bin)?;
    let log = daemon.log();
    ensure!(
        !log.contains("mounted bpffs"),
        "the restarted daemon found the pins:\n{log}"
    );

    for (name, hold) in &mut holds {
        let code = hold.wait_exit(Duration::from_secs(seconds + 10))?;
        ensure!(
            code == Some(0),
            "{name}: an exchange was lost across kill -9 and restart (exit {code:?}):\n{}",
            hold.output()
        );
    }
    let code = udp.wait_exit(Duration::from_secs(seconds + 10))?;
    ensure!(
        code == Some(0) && udp.count("lost=0") == 1,
        "UDP at 100/s lost datagrams (exit {code:?}): {}",
        udp.output()
    );

    let packets = capture.finish()?;
    let leaked = from_source(&packets, PRIVATE_PREFIX);
    ensure!(
        leaked.is_empty(),
        "{} packets with a private source on the Internet side, first: {:?}",
        leaked.len(),
        leaked.first()
    );
    let translated = from_source(&packets, &format!("{VIP}."));
    ensure!(
        translated.len() > 700,
        "the capture saw only {} packets from the VIP",
        translated.len()
    );
    Ok(())
}

#[test]
fn detach_closes_the_backstop_and_restores_the_sysctls() -> Result<()> {
    if !privileged("detach_closes_the_backstop_and_restores_the_sysctls") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let bin = find_kowabungad()?;
    let mut lab = netns_lab()?;
    // As on a fresh node: forwarding off until kowabungad turns it on.
    lab.gw.sysctl("net.ipv4.ip_forward", "0")?;
    lab.start_daemon(&bin)?;
    ensure!(
        read_sysctl(&lab, "net.ipv4.ip_forward")? == "1",
        "kowabungad turns forwarding on"
    );
    let _udp = agent.udp_echo_server(&lab.inet, INET_UDP, 60)?;
    let to = format!("{INET_ADDR}:{INET_UDP}");
    let out = agent.udp_client(&lab.private, &to)?;
    ensure!(
        out.field("peer=")
            .is_some_and(|p| p.starts_with(&format!("{VIP}:"))),
        "SNAT before the detach: {out}"
    );

    lab.stop_daemon();
    let out = lab.detach(&bin)?;
    ensure!(out.success(), "--detach: {out}");
    ensure!(
        out.stderr.contains("backstop closed") && out.stderr.contains("sysctls restored"),
        "--detach says what it did: {out}"
    );
    ensure!(
        read_sysctl(&lab, "net.ipv4.ip_forward")? == "0",
        "ip_forward back to what kowabungad found"
    );
    ensure!(!lab.pin_dir().join("kw_ct4").exists(), "pins removed");

    // An operator turns forwarding on again: the closed backstop still
    // lets nothing cross, and says so in its counter.
    lab.gw.sysctl("net.ipv4.ip_forward", "1")?;
    let capture_file = std::env::temp_dir().join(format!("{}-detached.pcap", lab.prefix()));
    let capture = Capture::start(&lab.inet, "eth0", &capture_file)?;
    for _ in 0..3 {
        let out = agent.udp_client(&lab.private, &to)?;
        ensure!(
            out.code == Some(EXIT_TIMEOUT),
            "nothing may cross after --detach: {out}"
        );
    }
    let packets = capture.finish()?;
    let leaked = from_source(&packets, PRIVATE_PREFIX);
    ensure!(leaked.is_empty(), "after --detach: {leaked:?}");
    let ruleset = lab.gw.run("nft", &["list", "ruleset"])?;
    let ruleset = String::from_utf8_lossy(&ruleset.stdout).into_owned();
    let line = ruleset
        .lines()
        .find(|l| {
            l.contains(&format!("oifname \"{IF_PUBLIC}\""))
                && l.contains(&format!("iifname \"{IF_PRIVATE}\""))
                && l.contains("detached")
        })
        .with_context(|| format!("no closed backstop in:\n{ruleset}"))?;
    ensure!(
        !line.contains("packets 0 "),
        "the backstop counted nothing: {line}"
    );
    ensure!(PRIV_ADDR.starts_with(PRIVATE_PREFIX));
    Ok(())
}

#[test]
fn two_daemons_in_two_namespaces_side_by_side() -> Result<()> {
    if !privileged("two_daemons_in_two_namespaces_side_by_side") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let bin = find_kowabungad()?;
    let mut a = netns_lab()?;
    let mut b = netns_lab()?;
    a.start_daemon(&bin)?;
    b.start_daemon(&bin)?;
    ensure!(a.pin_dir() != b.pin_dir(), "one pin directory each");
    let _ua = agent.udp_echo_server(&a.inet, INET_UDP, 30)?;
    let _ub = agent.udp_echo_server(&b.inet, INET_UDP, 30)?;
    let to = format!("{INET_ADDR}:{INET_UDP}");
    for (name, lab, other) in [("a", &a, &b), ("b", &b, &a)] {
        let before = (lab.counters()?, other.counters()?);
        for _ in 0..5 {
            let out = agent.udp_client(&lab.private, &to)?;
            ensure!(
                out.field("peer=")
                    .is_some_and(|p| p.starts_with(&format!("{VIP}:"))),
                "lab {name}: {out}"
            );
        }
        let mine = lab.counters()?.since(&before.0);
        let theirs = other.counters()?.since(&before.1);
        // 10 packets each way; the very first may go through the kernel
        // (pass_no_neigh) while the next hop is resolved.
        ensure!(
            mine.packets("fwd_redirect") >= 8,
            "lab {name} forwarded its own traffic:\n{mine}"
        );
        ensure!(
            theirs.packets("fwd_redirect") == 0,
            "the other daemon's maps saw lab {name}'s traffic:\n{theirs}"
        );
    }
    ensure!(a.daemon().context("a")?.running() && b.daemon().context("b")?.running());
    Ok(())
}

fn read_sysctl(lab: &KawaiiLab, key: &str) -> Result<String> {
    let out = lab.gw.run("sysctl", &["-n", key])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
