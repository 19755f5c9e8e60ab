//! IPsec peering in a namespace lab (issue "IPsec peering for real"): site A
//! is a Kawaii node whose `kowabungad` drives a real charon over VICI; site
//! B is a remote office, a plain strongSwan with its own `swanctl.conf`.
//! ESP runs in userspace on both sides (`kernel-libipsec`, UDP-encapsulated).
//!
//! Privileged: skipped with a message when not root, or failed where
//! skipping is forbidden (`kowabunga_testkit::privileged`).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::capture::Capture;
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::ipsec::{
    IpsecLab, B_HOST_ADDR, B_PUB_ADDR, B_SUBNET, TUNNEL, TUNNEL_CHARON,
};
use kowabunga_tests::lab::topology::{PRIV_ADDR, VIP};
use kowabunga_tests::lab::traffic::{ping, Agent};

/// Labs of this file run one at a time (2 cores, two charons each).
static LAB: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(PoisonError::into_inner)
}

fn agent() -> Agent {
    Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"))
}

const UP: &str = "(kw-acme-office): up";

/// Site A's one tunnel, the guide's example (DH 14, SHA512, AES256), with a
/// firewall opening tcp 7000 and icmp from site B.
fn guide_tunnel() -> String {
    IpsecLab::tunnel_yaml(
        TUNNEL,
        B_PUB_ADDR,
        B_SUBNET,
        14,
        "      firewall:\n        ingress:\n          - {protocol: tcp, ports: 7000}\n          - {protocol: icmp}\n",
    )
}

/// Every line of a capture on the Internet side is IKE or ESP-in-UDP
/// between the two public addresses: no private address in clear.
fn only_ike_between_public_addresses(lines: &[String]) -> Result<usize> {
    let mut n = 0;
    for l in lines {
        // link-layer chatter of the veth itself: ARP, IPv6 neighbour
        // discovery and router solicitations from link-local addresses
        if l.contains(" ARP,")
            || (l.contains(" IP6 ")
                && l.contains("ICMP6")
                && (l.contains(" :: >") || l.contains(" fe80::")))
        {
            continue;
        }
        ensure!(
            !l.contains("10.0.0.") && !l.contains("172.16.1."),
            "private address on the public wire: {l}"
        );
        ensure!(
            l.contains(VIP) && l.contains(B_PUB_ADDR),
            "not between the tunnel's public addresses: {l}"
        );
        // IKE and ESP-in-UDP, or the ICMP error of a stopped peer about one
        let ike = l.contains(".4500") || l.contains(".500 ") || l.contains(".500:");
        let icmp =
            l.contains("ICMP") && (l.contains("udp port 500 ") || l.contains("udp port 4500 "));
        ensure!(ike || icmp, "not IKE / NAT-T: {l}");
        n += 1;
    }
    Ok(n)
}

#[test]
fn tunnel_carries_only_encrypted_traffic_fails_closed_and_comes_back() -> Result<()> {
    if !privileged("tunnel_carries_only_encrypted_traffic_fails_closed_and_comes_back") {
        return Ok(());
    }
    let _serial = serial();
    let bin = find_kowabungad()?;
    let agent = agent();
    let mut lab = IpsecLab::new()?;
    lab.set_tunnels(&[guide_tunnel()])?;

    let start = Instant::now();
    let daemon = lab.a.start_daemon(&bin)?;
    daemon
        .wait_log(UP, 1, Duration::from_secs(20))
        .with_context(|| format!("tunnel never up:\n{}", daemon.log()))?;
    println!(
        "tunnel set-up: {} ms from kowabungad's start to the child SA up",
        start.elapsed().as_millis()
    );

    // traffic both ways through the tunnel, captured on the Internet side
    let cap_file = lab.dir().join("inet-up.pcap");
    let capture = Capture::start(&lab.a.inet, "eth0", &cap_file)?;
    let server_b = agent.tcp_echo_server(&lab.b_host, 7000, 30)?;
    let server_a = agent.tcp_echo_server(&lab.a.private, 7000, 30)?;
    let server_a_closed = agent.tcp_echo_server(&lab.a.private, 7001, 30)?;
    let p = ping(&lab.a.private, B_HOST_ADDR)?;
    ensure!(p.success(), "ping A -> B through the tunnel: {p:?}");
    let t = agent.tcp_client(&lab.a.private, &format!("{B_HOST_ADDR}:7000"))?;
    ensure!(
        t.stdout.contains(&format!("peer={PRIV_ADDR}:")),
        "TCP A -> B, B must see A's private address (no NAT in a tunnel): {t:?}"
    );
    let t = agent.tcp_client(&lab.b_host, &format!("{PRIV_ADDR}:7000"))?;
    ensure!(
        t.stdout.contains(&format!("peer={B_HOST_ADDR}:")),
        "TCP B -> A, port opened by the tunnel's firewall: {t:?}"
    );
    let p = ping(&lab.b_host, PRIV_ADDR)?;
    ensure!(p.success(), "ping B -> A (icmp opened): {p:?}");
    // the gateway itself is closed to the tunnel (its private address)
    let node_server = agent.tcp_echo_server(&lab.a.gw, 7002, 30)?;
    let t = agent.tcp_client_timeout(&lab.b_host, "10.0.0.1:7002", Duration::from_secs(2))?;
    ensure!(!t.success(), "the node's own port from the tunnel: {t:?}");
    let t = agent.tcp_client(&lab.a.private, "10.0.0.1:7002")?;
    ensure!(
        t.success(),
        "the same port from the project subnet (control): {t:?}"
    );
    drop(node_server);
    // the tunnel's firewall: a port it does not open
    let t = agent.tcp_client_timeout(
        &lab.b_host,
        &format!("{PRIV_ADDR}:7001"),
        Duration::from_secs(2),
    )?;
    ensure!(
        !t.success(),
        "tcp 7001 is not opened by the tunnel's firewall: {t:?}"
    );
    let lines = capture.finish()?;
    let n = only_ike_between_public_addresses(&lines)?;
    ensure!(
        n >= 10,
        "expected the exchanges in ESP-in-UDP, saw {n}: {lines:?}"
    );
    println!("capture while up: {n} packets, all UDP 4500/500 between {VIP} and {B_PUB_ADDR}");
    drop((server_a, server_a_closed));

    // site B's charon stops: the gate closes, nothing leaves in clear
    let before = lab.a.counters()?;
    lab.charon_b.stop();
    let daemon = lab.a.daemon().context("daemon")?;
    daemon
        // charon retries (keyingtries 0, close_action start): the tunnel
        // is connecting again, its gate shut
        .wait_log("(kw-acme-office): connecting", 2, Duration::from_secs(20))
        .with_context(|| format!("tunnel never seen down:\n{}", daemon.log()))?;
    let cap_file = lab.dir().join("inet-down.pcap");
    let capture = Capture::start(&lab.a.inet, "eth0", &cap_file)?;
    let p = ping(&lab.a.private, B_HOST_ADDR)?;
    ensure!(!p.success(), "ping A -> B with the tunnel down: {p:?}");
    let t = agent.tcp_client_timeout(
        &lab.a.private,
        &format!("{B_HOST_ADDR}:7000"),
        Duration::from_secs(1),
    )?;
    ensure!(!t.success(), "TCP A -> B with the tunnel down: {t:?}");
    let lines = capture.finish()?;
    only_ike_between_public_addresses(&lines)?;
    let delta = lab.a.counters()?.since(&before);
    ensure!(
        delta.packets("drop_ipsec_down") >= 3,
        "the dropped packets are counted: {delta:?}"
    );
    println!(
        "tunnel down: {} packets dropped as drop_ipsec_down, {} packets on the wire, none in clear",
        delta.packets("drop_ipsec_down"),
        lines.len()
    );

    // site B comes back: dpd_timeout_action restart brings the tunnel up
    let back = Instant::now();
    lab.charon_b.restart(&lab.b)?;
    lab.charon_b
        .load(&IpsecLab::b_conf("aes256-sha512-modp2048"))?;
    let daemon = lab.a.daemon().context("daemon")?;
    daemon
        .wait_log(UP, 2, Duration::from_secs(30))
        .with_context(|| format!("tunnel not back:\n{}", daemon.log()))?;
    println!(
        "tunnel back {} ms after site B's charon restarted",
        back.elapsed().as_millis()
    );
    let p = ping(&lab.a.private, B_HOST_ADDR)?;
    ensure!(p.success(), "ping A -> B after the restart: {p:?}");
    drop(server_b);
    Ok(())
}

/// The SPIs of `conn` in `swanctl --list-sas` output (`in  c1234567,`).
fn spis(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("in  ")
                .or_else(|| l.strip_prefix("out "))
                .and_then(|r| r.split(',').next())
                .map(|s| s.trim().to_owned())
        })
        .collect()
}

#[test]
fn a_reload_that_adds_a_tunnel_keeps_the_first_ones_sas() -> Result<()> {
    if !privileged("a_reload_that_adds_a_tunnel_keeps_the_first_ones_sas") {
        return Ok(());
    }
    let _serial = serial();
    let bin = find_kowabungad()?;
    let mut lab = IpsecLab::new()?;
    lab.set_tunnels(&[guide_tunnel()])?;
    let daemon = lab.a.start_daemon(&bin)?;
    daemon
        .wait_log(UP, 1, Duration::from_secs(20))
        .with_context(|| format!("tunnel never up:\n{}", daemon.log()))?;
    let first = spis(&lab.charon_a.list_sas());
    ensure!(first.len() == 2, "one child SA, in and out: {first:?}");

    // a second tunnel, to a peer that does not answer
    let second = IpsecLab::tunnel_yaml("Other Office", "198.51.100.3", "172.16.9.0/24", 14, "");
    lab.set_tunnels(&[guide_tunnel(), second])?;
    let daemon = lab.a.daemon().context("daemon")?;
    daemon.reload()?;
    daemon
        .wait_log(
            "kw-other-office): loaded into charon",
            1,
            Duration::from_secs(10),
        )
        .with_context(|| daemon.log())?;
    daemon.wait_log("kw-other-office: initiating", 1, Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(2));
    let after = spis(&lab.charon_a.list_sas());
    ensure!(
        after.iter().filter(|s| first.contains(s)).count() == 2,
        "the first tunnel's SPIs {first:?} must stay: {after:?}"
    );
    // and taking the second away again leaves the first alone too
    lab.set_tunnels(&[guide_tunnel()])?;
    let daemon = lab.a.daemon().context("daemon")?;
    daemon.reload()?;
    daemon.wait_log(
        "kw-other-office: left the configuration",
        1,
        Duration::from_secs(10),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let last = spis(&lab.charon_a.list_sas());
    ensure!(
        last == first || last.iter().filter(|s| first.contains(s)).count() == 2,
        "{first:?} vs {last:?}"
    );
    let p = ping(&lab.a.private, B_HOST_ADDR)?;
    ensure!(p.success(), "ping through the first tunnel: {p:?}");
    println!("SPIs kept across two reloads: {first:?}");
    Ok(())
}

#[test]
fn a_proposal_mismatch_is_named_in_the_status() -> Result<()> {
    if !privileged("a_proposal_mismatch_is_named_in_the_status") {
        return Ok(());
    }
    let _serial = serial();
    let bin = find_kowabungad()?;
    let mut lab = IpsecLab::new()?;
    // site B offers only DH 19
    lab.charon_b
        .load(&IpsecLab::b_conf("aes256-sha512-ecp256"))?;
    lab.set_tunnels(&[guide_tunnel()])?;
    let daemon = lab.a.start_daemon(&bin)?;
    let line = daemon
        .wait_log(
            "last failure: proposal mismatch",
            1,
            Duration::from_secs(20),
        )
        .with_context(|| format!("no proposal mismatch reported:\n{}", daemon.log()))?;
    println!("status: {line}");
    let log = daemon.log();
    // the key never reaches the daemon's log
    ensure!(
        !log.contains("lab pre-shared key"),
        "the key leaked into the log"
    );
    let p = ping(&lab.a.private, B_HOST_ADDR)?;
    ensure!(!p.success(), "nothing crosses without a tunnel: {p:?}");
    ensure!(
        lab.a.counters()?.packets("drop_ipsec_down") >= 3,
        "dropped and counted"
    );
    Ok(())
}

#[test]
fn every_dh_group_brings_the_tunnel_up() -> Result<()> {
    if !privileged("every_dh_group_brings_the_tunnel_up") {
        return Ok(());
    }
    let _serial = serial();
    let bin = find_kowabungad()?;
    let mut lab = IpsecLab::new()?;
    lab.set_tunnels(&[guide_tunnel()])?;
    let daemon = lab.a.start_daemon(&bin)?;
    daemon
        .wait_log(UP, 1, Duration::from_secs(20))
        .with_context(|| daemon.log())?;
    let names = [
        (2, "modp1024"),
        (5, "modp1536"),
        (14, "modp2048"),
        (15, "modp3072"),
        (16, "modp4096"),
        (17, "modp6144"),
        (18, "modp8192"),
        (19, "ecp256"),
        (20, "ecp384"),
        (21, "ecp521"),
        (22, "modp1024s160"),
        (23, "modp2048s224"),
        (24, "modp2048s256"),
        (25, "ecp192"),
        (26, "ecp224"),
        (27, "ecp224bp"),
        (28, "ecp256bp"),
        (29, "ecp384bp"),
        (30, "ecp512bp"),
        (31, "curve25519"),
        (32, "curve448"),
    ];
    let mut report = Vec::new();
    let mut ups = 1;
    for (dh, name) in names {
        lab.charon_b
            .load(&IpsecLab::b_conf(&format!("aes256-sha512-{name}")))?;
        lab.set_tunnels(&[IpsecLab::tunnel_yaml(TUNNEL, B_PUB_ADDR, B_SUBNET, dh, "")])?;
        let t = Instant::now();
        let daemon = lab.a.daemon().context("daemon")?;
        daemon.reload()?;
        ups += 1;
        daemon
            .wait_log(UP, ups, Duration::from_secs(30))
            .with_context(|| format!("DH {dh} ({name}) never up:\n{}", lab.charon_a.log_tail()))?;
        // charon prints the group as MODP_2048, MODP_1024_160, ECP_224_BP, CURVE_25519
        let printed = charon_group_name(name);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut sas = lab.charon_a.list_sas();
        while !sas.contains(&printed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            sas = lab.charon_a.list_sas();
        }
        ensure!(
            sas.contains(&printed),
            "DH {dh}: the IKE SA does not use {printed}:\n{sas}"
        );
        report.push(format!("{dh} {name} {} ms", t.elapsed().as_millis()));
    }
    println!(
        "DH groups tried, each up through a reload: {}",
        report.join(", ")
    );
    Ok(())
}

/// How `swanctl --list-sas` prints a DH group named `name` in proposals.
fn charon_group_name(name: &str) -> String {
    let (family, rest) = ["modp", "ecp", "curve"]
        .iter()
        .find_map(|f| name.strip_prefix(f).map(|r| (f.to_uppercase(), r)))
        .unwrap_or(("?".to_owned(), name));
    let rest = rest.replace('s', "_").replace("bp", "_BP");
    format!("{family}_{rest}")
}

/// `TUNNEL_CHARON` is the guide's name made safe for charon.
#[test]
fn charon_prints_groups_so() {
    assert_eq!(charon_group_name("modp2048"), "MODP_2048");
    assert_eq!(charon_group_name("modp1024s160"), "MODP_1024_160");
    assert_eq!(charon_group_name("ecp224bp"), "ECP_224_BP");
    assert_eq!(charon_group_name("curve25519"), "CURVE_25519");
}

#[test]
fn the_lab_tunnel_name_is_charon_safe() {
    assert_eq!(
        kowabunga_control::ipsec::config::charon_name(TUNNEL),
        TUNNEL_CHARON
    );
}

#[test]
fn a_charon_restart_is_followed_and_trap_tunnels_start_under_userspace_esp() -> Result<()> {
    if !privileged("a_charon_restart_is_followed_and_trap_tunnels_start_under_userspace_esp") {
        return Ok(());
    }
    let _serial = serial();
    let bin = find_kowabungad()?;
    let mut lab = IpsecLab::new()?;
    lab.set_tunnels(&[IpsecLab::tunnel_yaml(
        TUNNEL,
        B_PUB_ADDR,
        B_SUBNET,
        14,
        "      start_action: trap\n",
    )])?;
    // userspace ESP has no acquires: the trap tunnel is started at once
    let daemon = lab.a.start_daemon(&bin)?;
    daemon
        .wait_log(
            "userspace ESP raises no acquires",
            1,
            Duration::from_secs(5),
        )
        .with_context(|| daemon.log())?;
    daemon
        .wait_log(UP, 1, Duration::from_secs(20))
        .with_context(|| format!("never up:\n{}", daemon.log()))?;
    let p = ping(&lab.a.private, B_HOST_ADDR)?;
    ensure!(p.success(), "ping through the tunnel: {p:?}");

    // site A's charon restarts: kowabungad reconnects and loads the tunnel again
    lab.charon_a.restart(&lab.a.gw)?;
    let daemon = lab.a.daemon().context("daemon")?;
    daemon
        .wait_log("ipsec: connected to charon", 2, Duration::from_secs(10))
        .with_context(|| daemon.log())?;
    daemon
        .wait_log(
            "(kw-acme-office): loaded into charon",
            2,
            Duration::from_secs(10),
        )
        .with_context(|| daemon.log())?;
    let t1 = Instant::now();
    let mut answered = false;
    while t1.elapsed() < Duration::from_secs(15) && !answered {
        answered = ping(&lab.a.private, B_HOST_ADDR)?.success();
    }
    ensure!(
        answered,
        "no traffic after charon's restart:\n{}",
        lab.a.daemon().map(|d| d.log()).unwrap_or_default()
    );
    println!(
        "charon restarted: reloaded by kowabungad, traffic again after {} ms",
        t1.elapsed().as_millis()
    );
    Ok(())
}
