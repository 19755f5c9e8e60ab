//! Kiwi in a namespace lab: `kowabungad` serving the project zone and
//! forwarding the rest to a stub recursor, queried from a client in the
//! project subnet (hickory-proto client in `kowabunga-lab-agent`, and `dig`).
//!
//! Privileged: skipped with a message when not root, or failed where skipping is
//! forbidden (`kowabunga_testkit::privileged`). Needs `target/<profile>/kowabungad`
//! (`cargo xtask test` builds it first) and `dig` (dnsutils).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hickory_proto::op::ResponseCode;
use kowabunga_control::config::model::KiwiRecord;
use kowabunga_testkit::{missing, privileged};
use kowabunga_tests::lab::dns::{Answer, STUB_ADDRESS};
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::kiwi::{
    KiwiLab, AD_ADDRESSES, BIG_COUNT, CLIENT_ADDR, FORWARD_TIMEOUT_MS, KIWI_ADDR, KIWI_REC_SIDE,
};
use kowabunga_tests::lab::netns::Netns;
use kowabunga_tests::lab::traffic::{run_bounded, Agent, Background};

/// Labs of this file run one at a time: each runs a daemon, the machine has 2 cores.
static LAB: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(PoisonError::into_inner)
}

fn agent() -> Agent {
    Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"))
}

/// `count` queries for `name` from `ns` to `server`, one answer each.
fn ask(
    agent: &Agent,
    ns: &Netns,
    server: &str,
    name: &str,
    extra: &[&str],
    count: usize,
) -> Result<Vec<Answer>> {
    let server = format!("{server}:53");
    let count_s = count.to_string();
    let mut args = vec![
        "dns-query",
        "--server",
        &server,
        "--name",
        name,
        "--count",
        &count_s,
    ];
    args.extend_from_slice(extra);
    let out = run_bounded(agent.command(ns, &args), Duration::from_secs(30))?;
    let answers: Vec<Answer> = out.stdout.lines().filter_map(Answer::parse).collect();
    ensure!(
        answers.len() == count,
        "{name}: {count} answers expected:\n{}",
        out.stdout
    );
    Ok(answers)
}

fn ask1(agent: &Agent, ns: &Netns, server: &str, name: &str, extra: &[&str]) -> Result<Answer> {
    Ok(ask(agent, ns, server, name, extra, 1)?.remove(0))
}

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|a| a.parse().expect("ip")).collect()
}

fn lab_with_daemon(agent: &Agent) -> Result<(KiwiLab, Background)> {
    let bin = find_kowabungad()?;
    let mut lab = KiwiLab::new()?;
    let recursor = lab.start_recursor(agent, false, 120)?;
    lab.start_daemon(&bin)?;
    Ok((lab, recursor))
}

/// An instance, a custom record with every address in rotating order,
/// NXDOMAIN in the zone, a forwarded name, isolation, TCP fallback.
#[test]
fn kiwi_answers_the_zone_and_forwards_the_rest() -> Result<()> {
    if !privileged("kiwi_answers_the_zone_and_forwards_the_rest") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let (lab, _recursor) = lab_with_daemon(&agent)?;
    let cli = &lab.client;

    let a = ask1(&agent, cli, KIWI_ADDR, "acme-server.acme.local.", &[])?;
    ensure!(a.rcode == ResponseCode::NoError, "{a:?}");
    ensure!(
        a.aa && a.addresses == [CLIENT_ADDR.parse::<IpAddr>()?],
        "{a:?}"
    );

    // Every address of `ad`, the first one rotating.
    let answers = ask(&agent, cli, KIWI_ADDR, "ad.acme.local.", &[], 6)?;
    let mut firsts = BTreeSet::new();
    for a in &answers {
        let got: BTreeSet<IpAddr> = a.addresses.iter().copied().collect();
        ensure!(got == ips(&AD_ADDRESSES), "{a:?}");
        firsts.insert(a.addresses[0]);
    }
    ensure!(
        firsts.len() == 3,
        "the first address never rotated: {answers:?}"
    );

    let nx = ask1(&agent, cli, KIWI_ADDR, "nobody.acme.local.", &[])?;
    ensure!(nx.rcode == ResponseCode::NXDomain && nx.aa, "{nx:?}");

    let fwd = ask1(&agent, cli, KIWI_ADDR, "www.example.test.", &[])?;
    ensure!(
        fwd.rcode == ResponseCode::NoError
            && !fwd.aa
            && fwd.addresses == [STUB_ADDRESS.parse::<IpAddr>()?],
        "{fwd:?}"
    );
    let fwd_nx = ask1(&agent, cli, KIWI_ADDR, "nowhere.invalid.", &[])?;
    ensure!(fwd_nx.rcode == ResponseCode::NXDomain, "{fwd_nx:?}");

    // 60 addresses do not fit 512 bytes: TC over UDP, all of them over TCP.
    let big = ask1(&agent, cli, KIWI_ADDR, "big.acme.local.", &[])?;
    ensure!(
        big.udp_tc && big.proto == "tcp" && big.addresses.len() == BIG_COUNT,
        "{big:?}"
    );
    // With EDNS (1232 bytes) they fit in one datagram.
    let big = ask1(
        &agent,
        cli,
        KIWI_ADDR,
        "big.acme.local.",
        &["--edns", "1232"],
    )?;
    ensure!(
        !big.udp_tc && big.proto == "udp" && big.addresses.len() == BIG_COUNT,
        "{big:?}"
    );

    // Isolation: the zone answers its project's subnet only.
    let outsider = ask1(
        &agent,
        &lab.recursor,
        KIWI_REC_SIDE,
        "acme-server.acme.local.",
        &[],
    )?;
    ensure!(outsider.rcode == ResponseCode::Refused, "{outsider:?}");

    // The same through dig, a resolver of another family: TCP retry included.
    if which("dig").is_none() {
        missing(
            "kiwi_answers_the_zone_and_forwards_the_rest",
            "dig (apt-get install dnsutils)",
        );
        return Ok(());
    }
    let out = dig(
        cli,
        &[
            &format!("@{KIWI_ADDR}"),
            "+noedns",
            "+ignore",
            "big.acme.local",
            "A",
        ],
    )?;
    ensure!(
        out.stdout.contains("flags: qr aa tc rd ra"),
        "{}",
        out.stdout
    );
    let out = dig(
        cli,
        &[&format!("@{KIWI_ADDR}"), "+noedns", "big.acme.local", "A"],
    )?;
    let records = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("big.acme.local.") && l.contains("\tA\t"))
        .count();
    ensure!(
        records == BIG_COUNT && out.stdout.contains("Truncated, retrying in TCP mode"),
        "{}",
        out.stdout
    );
    let out = dig(
        cli,
        &[&format!("@{KIWI_ADDR}"), "+short", "www.example.test"],
    )?;
    ensure!(out.stdout.trim() == STUB_ADDRESS, "{}", out.stdout);
    Ok(())
}

/// A recursor that hangs, then one that is gone: SERVFAIL within the
/// configured bound, never silence; the zone keeps answering.
#[test]
fn a_dead_recursor_gives_servfail_in_time() -> Result<()> {
    if !privileged("a_dead_recursor_gives_servfail_in_time") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let bin = find_kowabungad()?;
    let mut lab = KiwiLab::new()?;
    let silent = lab.start_recursor(&agent, true, 60)?;
    lab.start_daemon(&bin)?;
    let cli = &lab.client;
    let bound = FORWARD_TIMEOUT_MS as u128 + 400;

    let hang = ask(&agent, cli, KIWI_ADDR, "hang.example.test.", &[], 3)?;
    for a in &hang {
        ensure!(a.rcode == ResponseCode::ServFail, "{a:?}");
        ensure!(
            a.ms >= 900 && a.ms <= bound,
            "SERVFAIL after {} ms: {a:?}",
            a.ms
        );
    }
    drop(silent);
    std::thread::sleep(Duration::from_millis(300));
    // Nothing listens now: the recursor answers ICMP port unreachable.
    let gone = ask(&agent, cli, KIWI_ADDR, "gone.example.test.", &[], 3)?;
    for a in &gone {
        ensure!(a.rcode == ResponseCode::ServFail && a.ms <= bound, "{a:?}");
    }
    let zone = ask1(&agent, cli, KIWI_ADDR, "acme-server.acme.local.", &[])?;
    ensure!(zone.rcode == ResponseCode::NoError, "{zone:?}");
    let daemon = lab.daemon().context("daemon")?;
    ensure!(daemon.running(), "kowabungad died:\n{}", daemon.log());
    Ok(())
}

/// Ten reloads (records of `ad` changed, instances added and removed) under
/// three clients' steady load: not one query fails, and the new records are
/// served after the reloads.
#[test]
fn reloads_under_query_load_fail_no_query() -> Result<()> {
    if !privileged("reloads_under_query_load_fail_no_query") {
        return Ok(());
    }
    let _serial = serial();
    let agent = agent();
    let (mut lab, _recursor) = lab_with_daemon(&agent)?;
    let server = format!("{KIWI_ADDR}:53");
    let names = "acme-server.acme.local.,ad.acme.local.,www.example.test.";
    let mut loads = Vec::new();
    for i in 0..3 {
        let cmd = agent.command(
            &lab.client,
            &[
                "dns-load",
                "--server",
                &server,
                "--names",
                names,
                "--seconds",
                "8",
                "--rate",
                "300",
            ],
        );
        loads.push(Background::spawn(&format!("dns-load {i}"), cmd)?);
    }
    std::thread::sleep(Duration::from_millis(1000));
    for round in 0..10 {
        let zone = &mut lab.section_mut().zones[0];
        zone.records.retain(|r| !r.name.starts_with("web-"));
        zone.records.push(KiwiRecord {
            name: format!("web-{round}"),
            addresses: vec![format!("10.0.0.{}", 40 + round)],
        });
        if let Some(ad) = zone.records.iter_mut().find(|r| r.name == "ad") {
            ad.addresses = if round % 2 == 0 {
                vec!["10.0.0.21".into(), "10.0.0.22".into()]
            } else {
                AD_ADDRESSES.map(String::from).to_vec()
            };
        }
        lab.write_config()?;
        lab.daemon().context("daemon")?.reload()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    for (i, load) in loads.iter_mut().enumerate() {
        let code = load.wait_exit(Duration::from_secs(20))?;
        let out = load.output();
        ensure!(
            code == Some(0) && out.contains("failed=0"),
            "load {i} (exit {code:?}):\n{out}"
        );
        let sent: u64 = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("sent="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        ensure!(sent > 1000, "load {i} sent only {sent}:\n{out}");
    }
    let daemon = lab.daemon().context("daemon")?;
    ensure!(
        daemon.log_count("reload failed") == 0,
        "a reload failed:\n{}",
        daemon.log()
    );
    let last = ask1(&agent, &lab.client, KIWI_ADDR, "web-9.acme.local.", &[])?;
    ensure!(
        last.addresses == ["10.0.0.49".parse::<IpAddr>()?],
        "{last:?}"
    );
    let gone = ask1(&agent, &lab.client, KIWI_ADDR, "web-8.acme.local.", &[])?;
    ensure!(gone.rcode == ResponseCode::NXDomain, "{gone:?}");
    let ad = ask1(&agent, &lab.client, KIWI_ADDR, "ad.acme.local.", &[])?;
    ensure!(
        ad.addresses.iter().copied().collect::<BTreeSet<_>>() == ips(&AD_ADDRESSES),
        "{ad:?}"
    );
    Ok(())
}

/// `dig ARGS` in `ns`, bounded.
fn dig(ns: &Netns, args: &[&str]) -> Result<kowabunga_tests::lab::traffic::Finished> {
    let mut cmd = ns.command("dig");
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(10))
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}
