//! The IPsec part of the lab: site A (the Kawaii gateway with `kowabungad`
//! and charon) and a remote office (strongSwan with its own
//! `swanctl.conf`); a ping and a TCP exchange through the tunnel, and what
//! a tcpdump on the Internet side saw.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kowabunga_tests::lab::capture::Capture;
use kowabunga_tests::lab::ipsec::{IpsecLab, B_HOST_ADDR, B_PUB_ADDR, B_SUBNET, TUNNEL};
use kowabunga_tests::lab::topology::{PRIVATE_SUBNET, PRIV_ADDR, VIP};
use kowabunga_tests::lab::traffic::{ping, Agent};

use super::{section, show, Report};

/// Runs the IPsec part, adding its checks to `report`.
pub fn demo(bin: &std::path::Path, agent: &Agent, report: &mut Report) -> Result<()> {
    section("IPsec topology")?;
    let mut lab = IpsecLab::new()?;
    println!(
        "  site A: [{p}-priv] {PRIV_ADDR} -- [{p}-gw] VIP {VIP} (kowabungad + charon)\n  Internet: [{p}-inet]\n  site B: [{p}-b] {B_PUB_ADDR} (strongSwan, swanctl.conf) -- [{p}-bh] {B_HOST_ADDR}\n  tunnel \"{TUNNEL}\": {PRIVATE_SUBNET} <-> {B_SUBNET}, IKEv2 PSK, AES256 / SHA512 / DH 14 (the guide's example);\n  ESP in userspace (charon's kernel-libipsec, UDP 4500): this kernel has no ESP",
        p = lab.a.prefix()
    );
    lab.set_tunnels(&[IpsecLab::tunnel_yaml(
        TUNNEL,
        B_PUB_ADDR,
        B_SUBNET,
        14,
        "      firewall:\n        ingress: [{protocol: tcp, ports: 7000}, {protocol: icmp}]\n",
    )])?;

    section("Starting kowabungad (site A): it loads the tunnel into charon and initiates it")?;
    let t0 = Instant::now();
    let daemon = lab.a.start_daemon(bin)?;
    let up = daemon.wait_log("(kw-acme-office): up", 1, Duration::from_secs(20));
    report.check(
        &format!(
            "tunnel up {} ms after kowabungad started",
            t0.elapsed().as_millis()
        ),
        up.is_ok(),
        &daemon.log(),
    );
    if let Ok(line) = &up {
        println!("  {}", line.trim());
    }

    section(&format!(
        "Through the tunnel: ping and TCP {PRIV_ADDR} <-> {B_HOST_ADDR}, tcpdump on the Internet side"
    ))?;
    let cap = Capture::start(&lab.a.inet, "eth0", &lab.dir().join("lab-inet.pcap"))?;
    let server = agent.tcp_echo_server(&lab.b_host, 7000, 30)?;
    let out = ping(&lab.a.private, B_HOST_ADDR)?;
    report.check(
        "ping site A -> site B through the tunnel",
        out.success(),
        &out.to_string(),
    );
    let out = agent.tcp_client(&lab.a.private, &format!("{B_HOST_ADDR}:7000"))?;
    show(&out);
    report.check(
        "TCP site A -> site B: B sees A's private address (no NAT inside a tunnel)",
        out.stdout.contains(&format!("peer={PRIV_ADDR}:")),
        &out.to_string(),
    );
    drop(server);
    let lines = cap.finish().context("reading the capture")?;
    let ip: Vec<&String> = lines.iter().filter(|l| l.contains(" IP ")).collect();
    let clear = ip
        .iter()
        .filter(|l| l.contains("10.0.0.") || l.contains("172.16.1."))
        .count();
    let esp = ip.iter().filter(|l| l.contains("UDP-encap")).count();
    let ike = ip.iter().filter(|l| l.contains("isakmp")).count();
    println!(
        "  capture: {} IPv4 packets on the Internet side: {esp} ESP-in-UDP, {ike} IKE, {clear} with a private address",
        ip.len()
    );
    for l in ip.iter().take(4) {
        println!("  | {l}");
    }
    report.check(
        "no private address on the Internet side, only IKE / ESP-in-UDP between the public addresses",
        clear == 0 && esp > 0 && ip.iter().all(|l| l.contains(VIP) && l.contains(B_PUB_ADDR)),
        &lines.join("\n"),
    );

    section(
        "Site B's charon stops: site A's traffic to 172.16.1.0/24 is dropped, not sent in clear",
    )?;
    let before = lab.a.counters()?;
    lab.charon_b.stop();
    let daemon = lab.a.daemon().context("daemon")?;
    let _ = daemon.wait_log("(kw-acme-office): connecting", 2, Duration::from_secs(10));
    let out = ping(&lab.a.private, B_HOST_ADDR)?;
    let dropped = lab.a.counters()?.since(&before).packets("drop_ipsec_down");
    println!(
        "  ping: {}; drop_ipsec_down +{dropped}",
        if out.success() {
            "answered"
        } else {
            "no answer"
        }
    );
    report.check(
        "tunnel down: nothing crosses, the drops are counted",
        !out.success() && dropped >= 3,
        &out.to_string(),
    );

    section("kowabungad log (IPsec)")?;
    if let Some(daemon) = lab.a.daemon() {
        for line in daemon
            .log()
            .lines()
            .filter(|l| l.contains("ipsec"))
            .take(12)
        {
            println!("  | {line}");
        }
    }
    println!("\n== Cleanup: stopping kowabungad and both charons, deleting the namespaces");
    drop(lab);
    Ok(())
}
