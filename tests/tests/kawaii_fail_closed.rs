//! Kawaii on unusual paths (issue 9, item 2), with a capture on the Internet
//! side: the public link's MTU is 1400, so the fib refuses big packets.
//!
//! * an oversized datagram with DF clear crosses translated, fragmented by the
//!   kernel (the server receives it whole, from the VIP);
//! * with DF set the private sender gets "fragmentation needed" (PMTU works)
//!   and nothing crosses;
//! * TTL 1 gets "time exceeded" from the gateway, as a router answers;
//! * no packet with a private source is ever on the Internet side.
//!
//! Privileged: skipped with a message when not root, or failed where skipping
//! is forbidden (`kowabunga_testkit::privileged`).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::agent::EXIT_TIMEOUT;
use kowabunga_tests::lab::capture::{from_source, Capture};
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::topology::{
    KawaiiLab, GW_PRIV_ADDR, GW_PUB_ADDR, IF_PRIVATE, IF_PUBLIC, INET_ADDR, VIP,
};
use kowabunga_tests::lab::traffic::{run_bounded, Agent};

const MTU: &str = "1400";
const UDP_PORT: u16 = 7001;

#[test]
fn unusual_paths_fail_closed_and_answer_as_a_router() -> Result<()> {
    if !privileged("unusual_paths_fail_closed_and_answer_as_a_router") {
        return Ok(());
    }
    let agent = Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"));
    let bin = find_kowabungad()?;
    let mut lab = KawaiiLab::new()?;
    lab.gw.ip(&["link", "set", IF_PUBLIC, "mtu", MTU])?;
    lab.inet.ip(&["link", "set", "eth0", "mtu", MTU])?;
    lab.start_daemon(&bin)?;
    let server = agent.udp_echo_server(&lab.inet, UDP_PORT, 30)?;
    // The next hop on the public side is resolved (no pass_no_neigh below).
    let warm = agent.udp_client(&lab.private, &format!("{INET_ADDR}:{UDP_PORT}"))?;
    ensure!(warm.success(), "small UDP through the NAT: {warm}");
    let capture_file = std::env::temp_dir().join(format!("{}-mtu.pcap", lab.prefix()));
    let capture = Capture::start(&lab.inet, "eth0", &capture_file)?;
    let before = lab.counters()?;

    // DF clear (UDP sockets do not set it by default): 1450 bytes of payload.
    let big = "x".repeat(1450);
    let cmd = agent.command(
        &lab.private,
        &[
            "udp-client",
            "--to",
            &format!("{INET_ADDR}:{UDP_PORT}"),
            "--timeout-ms",
            "1000",
            "--line",
            &big,
            "--df",
            "no",
        ],
    );
    // The echo comes back in fragments, which Kawaii does not reassemble
    // (drop_fragment): only the way out is checked, at the server.
    let _ = run_bounded(cmd, Duration::from_secs(5))?;
    ensure!(
        server.count(&format!("datagram peer={VIP}:")) >= 2,
        "the server received the oversized datagram whole, from the VIP: {}",
        server.output()
    );

    // DF set: the sender learns the path MTU from the gateway.
    let out = lab.private.run(
        "ping",
        &[
            "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1420", INET_ADDR,
        ],
    )?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    ensure!(
        text.contains(&format!("From {GW_PRIV_ADDR}")) && text.contains("mtu = 1400"),
        "ping -M do -s 1420 wants fragmentation needed (mtu 1400) from the gateway: {text}"
    );

    // TTL 1: time exceeded from the gateway.
    let out = lab
        .private
        .run("ping", &["-n", "-c", "1", "-W", "2", "-t", "1", INET_ADDR])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        text.contains(&format!("From {GW_PRIV_ADDR}")) && text.contains("Time to live exceeded"),
        "ping -t 1 wants time exceeded from the gateway: {text}"
    );

    let delta = lab.counters()?.since(&before);
    ensure!(
        delta.packets("pass_fragment") >= 1
            && delta.packets("pass_fib") >= 1
            && delta.packets("pass_ttl") >= 1,
        "each path counted:\n{delta}"
    );
    let packets = capture.finish()?;
    let leaked = from_source(&packets, "10.0.0.");
    ensure!(
        leaked.is_empty(),
        "private sources on the Internet side: {leaked:?}"
    );
    // `tcpdump -n` prints the first fragment with its ports, the others
    // without (`IP 203.0.113.10 > 203.0.113.1: ip-proto-17`).
    let to_inet: Vec<&str> = from_source(&packets, VIP)
        .into_iter()
        .filter(|l| l.contains(&format!("> {INET_ADDR}")))
        .collect();
    ensure!(
        to_inet.len() >= 2
            && to_inet
                .iter()
                .any(|l| l.contains(&format!("{VIP} > {INET_ADDR}: "))),
        "the oversized datagram crossed as fragments from the VIP:\n{}",
        packets.join("\n")
    );
    Ok(())
}

/// IPv6 addresses of the lab: the private host, the Internet host, and the
/// gateway on each side.
const PRIV6: &str = "2001:db8:1::10";
const INET6: &str = "2001:db8:2::2";
const GW_PUB6: &str = "2001:db8:2::1";

/// Gives the lab IPv6: 2001:db8:1::/64 on the private link, 2001:db8:2::/64
/// on the public one, default routes via the gateway.
fn add_ipv6(lab: &KawaiiLab) -> Result<()> {
    let nodad = |ns: &kowabunga_tests::lab::netns::Netns, addr: &str, dev: &str| {
        ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"])
    };
    nodad(&lab.private, &format!("{PRIV6}/64"), "eth0")?;
    lab.private
        .ip(&["-6", "route", "add", "default", "via", "2001:db8:1::1"])?;
    nodad(&lab.gw, "2001:db8:1::1/64", IF_PRIVATE)?;
    nodad(&lab.gw, &format!("{GW_PUB6}/64"), IF_PUBLIC)?;
    nodad(&lab.inet, &format!("{INET6}/64"), "eth0")?;
    lab.inet
        .ip(&["-6", "route", "add", "default", "via", GW_PUB6])
}

#[test]
fn an_ipv6_rule_opens_a_node_port_over_ipv6_and_nothing_else() -> Result<()> {
    if !privileged("an_ipv6_rule_opens_a_node_port_over_ipv6_and_nothing_else") {
        return Ok(());
    }
    let agent = Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"));
    let bin = find_kowabungad()?;
    let mut lab = KawaiiLab::new()?;
    add_ipv6(&lab)?;
    lab.gw.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    // tcp 2200 from the Internet's IPv6 prefix; tcp 2201 listens but no rule
    lab.add_ingress_rule("\"2001:db8:2::/64\"", "tcp", "2200")?;
    lab.start_daemon(&bin)?;
    let _open = agent.tcp_echo_server_on(&lab.gw, "::", 2200, 60)?;
    let _closed = agent.tcp_echo_server_on(&lab.gw, "::", 2201, 60)?;
    let capture_file = std::env::temp_dir().join(format!("{}-v6rule.pcap", lab.prefix()));
    let capture = Capture::start(&lab.inet, "eth0", &capture_file)?;
    let before = lab.counters()?;

    let out = agent.tcp_client(&lab.inet, &format!("[{GW_PUB6}]:2200"))?;
    ensure!(
        out.success()
            && out
                .field("peer=")
                .is_some_and(|p| p.starts_with(&format!("[{INET6}]:"))),
        "tcp [{GW_PUB6}]:2200 opened by the IPv6 rule: {out}"
    );
    let out = agent.tcp_client_timeout(
        &lab.inet,
        &format!("[{GW_PUB6}]:2201"),
        Duration::from_millis(800),
    )?;
    ensure!(
        out.code == Some(EXIT_TIMEOUT),
        "tcp [{GW_PUB6}]:2201 has no rule: dropped, not refused: {out}"
    );
    // the IPv6 rule opens nothing over IPv4 (the server listens there too)
    let out = agent.tcp_client_timeout(
        &lab.inet,
        &format!("{GW_PUB_ADDR}:2200"),
        Duration::from_millis(800),
    )?;
    ensure!(
        out.code == Some(EXIT_TIMEOUT),
        "tcp {GW_PUB_ADDR}:2200 over IPv4 has no rule: {out}"
    );
    // nor through the node: the private host's IPv6 stays out of reach
    let out = agent.tcp_client_timeout(
        &lab.inet,
        &format!("[{PRIV6}]:2200"),
        Duration::from_millis(800),
    )?;
    ensure!(
        out.code == Some(EXIT_TIMEOUT),
        "tcp [{PRIV6}]:2200 crossed the gateway: {out}"
    );

    // the SYN on 2200 matched the rule (the rest of its connection is the
    // node's own socket: pass_host_reply); the SYNs to 2201 and over IPv4
    // were denied; the one to the private host was transit
    let delta = lab.counters()?.since(&before);
    ensure!(
        delta.packets("pass_to_host") >= 1
            && delta.packets("pass_host_reply") >= 2
            && delta.packets("drop_host_denied") >= 2
            && delta.packets("drop_ipv6") >= 1,
        "opened, denied and transit counted:\n{delta}"
    );
    let packets = capture.finish()?;
    let from_node = |port: u16| -> Vec<&String> {
        let needle = format!("IP6 {GW_PUB6}.{port} > ");
        packets.iter().filter(|l| l.contains(&needle)).collect()
    };
    ensure!(
        !from_node(2200).is_empty(),
        "the node's answers on 2200 were on the Internet side: {packets:?}"
    );
    ensure!(
        from_node(2201).is_empty(),
        "the node answered on 2201 (no rule): {:?}",
        from_node(2201)
    );
    let probes = packets
        .iter()
        .filter(|l| {
            l.contains(&format!("IP6 {INET6}.")) && l.contains(&format!("> {GW_PUB6}.2201:"))
        })
        .count();
    ensure!(
        probes >= 1,
        "the probe of 2201 was sent (capture sanity): {packets:?}"
    );
    let leaked: Vec<&String> = packets
        .iter()
        .filter(|l| l.contains(&format!("IP6 {PRIV6}")))
        .collect();
    ensure!(
        leaked.is_empty(),
        "the private host's IPv6 on the Internet side: {leaked:?}"
    );
    Ok(())
}

#[test]
fn ipv6_never_crosses_even_with_forwarding_on() -> Result<()> {
    if !privileged("ipv6_never_crosses_even_with_forwarding_on") {
        return Ok(());
    }
    let bin = find_kowabungad()?;
    let mut lab = KawaiiLab::new()?;
    let (priv6, inet6) = (PRIV6, INET6);
    add_ipv6(&lab)?;
    // An operator turned IPv6 forwarding on for other reasons.
    lab.gw.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    lab.start_daemon(&bin)?;
    let capture_file = std::env::temp_dir().join(format!("{}-v6.pcap", lab.prefix()));
    let capture = Capture::start(&lab.inet, "eth0", &capture_file)?;
    let before = lab.counters()?;

    let out = lab
        .private
        .run("ping", &["-6", "-n", "-c", "2", "-W", "1", inet6])?;
    ensure!(!out.status.success(), "IPv6 crossed out: {out:?}");
    let out = lab
        .inet
        .run("ping", &["-6", "-n", "-c", "2", "-W", "1", priv6])?;
    ensure!(!out.status.success(), "IPv6 crossed in: {out:?}");
    // Link-local IPv6 (neighbour discovery, all-nodes) stays the host's.
    let out = lab
        .private
        .run("ping", &["-6", "-n", "-c", "1", "-W", "2", "ff02::1%eth0"])?;
    ensure!(
        out.status.success(),
        "link-local IPv6 on the private link: {out:?}"
    );

    // The node's own IPv6 address is closed too; its own pings go out.
    let agent = Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"));
    let out =
        agent.tcp_client_timeout(&lab.inet, "[2001:db8:2::1]:22", Duration::from_millis(800))?;
    ensure!(
        out.code == Some(EXIT_TIMEOUT),
        "the node's IPv6 address must drop, not refuse: {out}"
    );
    let out = lab
        .inet
        .run("ping", &["-6", "-n", "-c", "1", "-W", "1", "2001:db8:2::1"])?;
    ensure!(!out.status.success(), "the node must not answer IPv6 pings");
    let out = lab
        .gw
        .run("ping", &["-6", "-n", "-c", "1", "-W", "2", inet6])?;
    ensure!(out.status.success(), "the node's own IPv6 ping: {out:?}");

    let delta = lab.counters()?.since(&before);
    ensure!(
        delta.packets("drop_ipv6") >= 2,
        "dropped and counted by the XDP program:\n{delta}"
    );
    ensure!(
        delta.packets("drop_host_denied") >= 2 && delta.packets("pass_host_reply") >= 1,
        "the node's IPv6: denied probes, its own ping's reply:\n{delta}"
    );
    let packets = capture.finish()?;
    let leaked: Vec<&String> = packets
        .iter()
        .filter(|l| l.contains(&format!("IP6 {priv6} ")))
        .collect();
    ensure!(
        leaked.is_empty(),
        "the private host's IPv6 on the Internet side: {leaked:?}"
    );
    let sent = packets
        .iter()
        .filter(|l| l.contains(&format!("IP6 {inet6} > {priv6}")))
        .count();
    ensure!(
        sent >= 2,
        "the Internet host's pings were sent (capture sanity): {packets:?}"
    );
    Ok(())
}

#[test]
fn the_node_is_closed_to_the_internet_and_its_own_traffic_works() -> Result<()> {
    if !privileged("the_node_is_closed_to_the_internet_and_its_own_traffic_works") {
        return Ok(());
    }
    let agent = Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"));
    let bin = find_kowabungad()?;
    let mut lab = KawaiiLab::new()?;
    lab.start_daemon(&bin)?;
    // Services of the node itself, listening on every address.
    let _tcp = agent.tcp_echo_server(&lab.gw, 2200, 60)?;
    let _udp = agent.udp_echo_server(&lab.gw, 5300, 60)?;
    let _inet_tcp = agent.tcp_echo_server(&lab.inet, 7000, 60)?;
    let _inet_udp = agent.udp_echo_server(&lab.inet, UDP_PORT, 60)?;
    let capture_file = std::env::temp_dir().join(format!("{}-node.pcap", lab.prefix()));
    let capture = Capture::start(&lab.inet, "eth0", &capture_file)?;
    let before = lab.counters()?;

    // From the Internet, on the node's own address and on the VIP: nothing
    // answers, not even a reset or an unreachable.
    for to in [GW_PUB_ADDR, VIP] {
        let out = agent.tcp_client_timeout(
            &lab.inet,
            &format!("{to}:2200"),
            Duration::from_millis(800),
        )?;
        ensure!(
            out.code == Some(EXIT_TIMEOUT),
            "tcp {to}:2200 must be closed: {out}"
        );
    }
    let mut cmd = agent.command(
        &lab.inet,
        &[
            "udp-client",
            "--to",
            &format!("{GW_PUB_ADDR}:5300"),
            "--timeout-ms",
            "800",
        ],
    );
    cmd.env("NO_COLOR", "1");
    let out = run_bounded(cmd, Duration::from_secs(5))?;
    ensure!(
        out.code == Some(EXIT_TIMEOUT),
        "udp {GW_PUB_ADDR}:5300 must be closed: {out}"
    );
    let out = lab
        .inet
        .run("ping", &["-n", "-c", "1", "-W", "1", GW_PUB_ADDR])?;
    ensure!(
        !out.status.success(),
        "the node must not answer pings without a rule"
    );
    let closed = capture.finish()?;
    let answers = from_source(&closed, GW_PUB_ADDR);
    let vip_answers = from_source(&closed, VIP);
    ensure!(
        answers.is_empty() && vip_answers.is_empty(),
        "the node answered while closed: {answers:?} {vip_answers:?}"
    );

    // The node's own traffic out: TCP, UDP, ping.
    let out = agent.tcp_client(&lab.gw, &format!("{INET_ADDR}:7000"))?;
    ensure!(out.success(), "the node's own TCP connection: {out}");
    let out = agent.udp_client(&lab.gw, &format!("{INET_ADDR}:{UDP_PORT}"))?;
    ensure!(out.success(), "the node's own UDP exchange: {out}");
    let out = lab
        .gw
        .run("ping", &["-n", "-c", "1", "-W", "2", INET_ADDR])?;
    ensure!(out.status.success(), "the node's own ping");
    let delta = lab.counters()?.since(&before);
    ensure!(
        delta.packets("drop_host_denied") >= 3 && delta.packets("pass_host_reply") >= 3,
        "denied probes and the node's replies counted:\n{delta}"
    );

    // A rule opens the node's port (and the VIP's), as for the gateway itself.
    lab.add_ingress_rule("203.0.113.0/24", "tcp", "2200")?;
    let daemon = lab.daemon().context("daemon")?;
    daemon.reload()?;
    daemon.wait_log("applied config", 2, Duration::from_secs(10))?;
    let out = agent.tcp_client(&lab.inet, &format!("{GW_PUB_ADDR}:2200"))?;
    ensure!(out.success(), "tcp {GW_PUB_ADDR}:2200 with a rule: {out}");
    Ok(())
}
