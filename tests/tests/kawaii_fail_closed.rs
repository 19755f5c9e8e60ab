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

use anyhow::{ensure, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::capture::{from_source, Capture};
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::topology::{KawaiiLab, GW_PRIV_ADDR, IF_PUBLIC, INET_ADDR, VIP};
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
