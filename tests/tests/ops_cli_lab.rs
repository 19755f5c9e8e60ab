//! The operator's side in the Konvey lab: the real `kowabunga` binary
//! against a running `kowabungad` with traffic (status, flows with a limit
//! and a filter, backends, drops, reload good and bad, `--json`), then with
//! the daemon stopped (flows and drops from the pinned maps, status exit 3).
//!
//! Privileged: skipped with a message when not root, or failed where skipping
//! is forbidden (`kowabunga_testkit::privileged`). Needs `target/<profile>/`
//! `kowabungad` and `kowabunga` (`cargo build -p kowabunga-control --bins`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::konvey::{distribution, KonveyLab, METRICS_PORT, TCP_PORT, VIP};
use kowabunga_tests::lab::traffic::{run_bounded, Agent, Finished};
use kowabunga_tests::lab::{find_kowabunga, find_kowabungad};

/// Runs `kowabunga --socket S --bpffs P ARGS` (20 s limit).
fn cli(bin: &Path, lab: &KonveyLab, args: &[&str]) -> Result<Finished> {
    let mut cmd = Command::new(bin);
    cmd.arg("--socket")
        .arg(lab.api_socket())
        .arg("--bpffs")
        .arg(lab.pin_dir())
        .args(args);
    let out = run_bounded(cmd, Duration::from_secs(20))?;
    println!(
        "$ kowabunga {}\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    Ok(out)
}

fn json(out: &Finished) -> Result<serde_json::Value> {
    serde_json::from_str(&out.stdout).with_context(|| format!("not JSON: {}", out.stdout))
}

/// Table rows (the header and the trailing count line excluded).
fn flow_rows(out: &Finished) -> Vec<&str> {
    out.stdout
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("konvey ") || l.starts_with("kawaii "))
        .collect()
}

/// `(name, labels, value)` of every sample line of an OpenMetrics page.
fn parse_metrics(body: &str) -> Result<Vec<(String, String, f64)>> {
    let mut out = Vec::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("no value: {line}"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("bad value: {line}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        out.push((name.to_owned(), labels.to_owned(), value));
    }
    Ok(out)
}

#[test]
fn the_cli_reads_a_running_and_a_stopped_daemon() -> Result<()> {
    if !privileged("the_cli_reads_a_running_and_a_stopped_daemon") {
        return Ok(());
    }
    let agent = Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"));
    let (daemon_bin, bin) = (find_kowabungad()?, find_kowabunga()?);
    let mut lab = KonveyLab::new()?;
    lab.start_backends(&agent)?;
    lab.start_daemon(&daemon_bin)?;
    lab.warm_up()?;
    let tcp = distribution(&lab, &agent, false, 30)?;
    ensure!(tcp.values().sum::<usize>() == 30, "traffic: {tcp:?}");
    let mut hold = agent.tcp_hold(&lab.client, &format!("{VIP}:{TCP_PORT}"), 6)?;
    hold.wait_for("name=", Duration::from_secs(5))?;

    // status, as a table and as JSON
    let out = cli(&bin, &lab, &["status"])?;
    ensure!(out.success(), "status: {out}");
    ensure!(
        out.stdout.contains("zone eu-west-a") && out.stdout.contains("konvey"),
        "{out}"
    );
    ensure!(
        out.stdout.contains("eth0") && out.stdout.contains("generation 1"),
        "{out}"
    );
    let status = json(&cli(&bin, &lab, &["--json", "status"])?)?;
    ensure!(status["generation"] == 1, "{status}");
    ensure!(
        status["services"] == 2 && status["backends"] == 6,
        "{status}"
    );
    ensure!(
        status["programs"][0]["program"] == "konvey"
            && status["programs"][0]["interface"] == "eth0",
        "{status}"
    );

    // flows: bounded, filtered
    let out = cli(&bin, &lab, &["flows", "--limit", "10"])?;
    ensure!(out.success(), "flows: {out}");
    let rows = flow_rows(&out);
    ensure!(
        !rows.is_empty() && rows.len() <= 10,
        "{} rows:\n{out}",
        rows.len()
    );
    ensure!(
        out.stdout.contains(&format!("-> {VIP}:{TCP_PORT}")),
        "{out}"
    );
    let out = cli(
        &bin,
        &lab,
        &[
            "flows",
            "--limit",
            "1000",
            "--backend",
            "10.0.0.11",
            "--proto",
            "tcp",
        ],
    )?;
    ensure!(out.success(), "flows --backend: {out}");
    let rows = flow_rows(&out);
    ensure!(!rows.is_empty(), "no flow to 10.0.0.11:\n{out}");
    ensure!(
        rows.iter()
            .all(|r| r.contains("-> 10.0.0.11:") && r.contains(" tcp ")),
        "{out}"
    );
    let listing = json(&cli(&bin, &lab, &["--json", "flows", "--limit", "3"])?)?;
    ensure!(
        listing["flows"].as_array().is_some_and(|f| f.len() == 3),
        "{listing}"
    );
    ensure!(listing["truncated"] == true, "{listing}");

    // backends and services
    let out = cli(&bin, &lab, &["backends"])?;
    ensure!(out.success(), "backends: {out}");
    let up = out.stdout.lines().filter(|l| l.contains("  up  ")).count();
    ensure!(up == 6, "{up} backends up:\n{out}");
    let backends = json(&cli(&bin, &lab, &["--json", "backends"])?)?;
    let probed = backends["backends"].as_array().map_or(0, |b| {
        b.iter().filter(|x| x["last_probe"]["ok"] == true).count()
    });
    ensure!(probed == 6, "{backends}");
    let active: u64 = backends["backends"].as_array().map_or(0, |b| {
        b.iter().filter_map(|x| x["active_flows"].as_u64()).sum()
    });
    ensure!(active > 0, "no active flows counted: {backends}");
    let out = cli(&bin, &lab, &["services"])?;
    ensure!(
        out.success() && out.stdout.contains("3/3"),
        "services: {out}"
    );

    // drops: counters with rates, events from the daemon
    let out = cli(&bin, &lab, &["drops", "--interval-ms", "200"])?;
    ensure!(
        out.success() && out.stdout.contains("fwd_redirect"),
        "drops: {out}"
    );
    ensure!(!out.stdout.contains("daemon is not running"), "{out}");
    let drops = json(&cli(
        &bin,
        &lab,
        &["--json", "drops", "--interval-ms", "100"],
    )?)?;
    ensure!(
        drops["events"].is_array() && drops["reasons"].is_array(),
        "{drops}"
    );

    // reload: a good file (one backend less), then a bad one
    lab.set_backends(&["b1", "b2"])?;
    let out = cli(&bin, &lab, &["reload"])?;
    ensure!(out.success(), "reload: {out}");
    ensure!(
        out.stdout.contains("generation 2") && out.stdout.contains("changed: konvey"),
        "{out}"
    );
    let good = std::fs::read_to_string(lab.config_path())?;
    std::fs::write(
        lab.config_path(),
        good.replace("backend_port: 7000", "backend_port: 70000"),
    )?;
    let out = cli(&bin, &lab, &["reload"])?;
    ensure!(out.code == Some(2), "a bad reload must exit 2: {out}");
    ensure!(
        out.stderr.contains("konvey.endpoints[0].backend_port"),
        "no field path: {out}"
    );
    let out = cli(
        &bin,
        &lab,
        &["check", &lab.config_path().display().to_string()],
    )?;
    ensure!(
        out.code == Some(2) && out.stderr.contains("backend_port"),
        "check: {out}"
    );
    std::fs::write(lab.config_path(), &good)?;
    let out = cli(
        &bin,
        &lab,
        &["check", &lab.config_path().display().to_string()],
    )?;
    ensure!(
        out.success() && out.stdout.contains("config OK"),
        "check: {out}"
    );
    let status = json(&cli(&bin, &lab, &["--json", "status"])?)?;
    // the good reload left b1 and b2 in both services (4); b3's two are
    // listed while they drain (until the next housekeeping finds no flow)
    let listed = json(&cli(&bin, &lab, &["--json", "backends"])?)?;
    let draining = listed["backends"]
        .as_array()
        .map_or(0, |b| b.iter().filter(|x| x["state"] == "draining").count());
    ensure!(
        status["generation"] == 2
            && status["reloads_failed"] == 1
            && status["backends"] == 4 + draining
            && draining <= 2,
        "the refused reload changed something: {status}\n{listed}"
    );

    // the metrics endpoint, scraped with a plain TCP GET
    let page = lab
        .lb
        .http_get(([127, 0, 0, 1], METRICS_PORT).into(), "/metrics")?;
    ensure!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    let body = page.split("\r\n\r\n").nth(1).unwrap_or_default();
    ensure!(
        body.trim_end().ends_with("# EOF"),
        "not OpenMetrics:\n{body}"
    );
    let samples = parse_metrics(body)?;
    let value = |name: &str, has: &[&str]| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| n == name && has.iter().all(|h| l.contains(h)))
            .map(|(_, _, v)| v)
            .sum()
    };
    for (name, has) in [
        (
            "kowabunga_xdp_packets_total",
            &["reason=\"fwd_redirect\"", "role=\"konvey\""][..],
        ),
        (
            "kowabunga_xdp_bytes_total",
            &["reason=\"fwd_redirect\""][..],
        ),
        ("kowabunga_konvey_backend_up", &["state=\"up\""][..]),
        ("kowabunga_konvey_probe_latency_seconds_count", &[][..]),
        ("kowabunga_reloads_total", &["result=\"ok\""][..]),
        ("kowabunga_reloads_total", &["result=\"failed\""][..]),
        ("kowabunga_build_info", &[][..]),
        ("kowabunga_conntrack_capacity", &["role=\"konvey\""][..]),
        ("kowabunga_snat_ports_in_use", &["address=\"10.0.0.5\""][..]),
        (
            "kowabunga_konvey_backend_active_flows",
            &["backend=\"10.0.0.11:7000\""][..],
        ),
        (
            "kowabunga_konvey_backend_new_flows_total",
            &["backend=\"10.0.0.11:7000\""][..],
        ),
        (
            "kowabunga_konvey_backend_packets_total",
            &["backend=\"10.0.0.11:7000\""][..],
        ),
        (
            "kowabunga_konvey_backend_bytes_total",
            &["backend=\"10.0.0.11:7000\""][..],
        ),
    ] {
        ensure!(value(name, has) > 0.0, "{name}{has:?} is not > 0:\n{body}");
    }
    ensure!(value("kowabunga_config_generation", &[]) == 2.0, "{body}");
    println!(
        "metrics: {} samples, fwd_redirect {} packets",
        samples.len(),
        value("kowabunga_xdp_packets_total", &["reason=\"fwd_redirect\""])
    );
    let page = lab
        .lb
        .http_get(([127, 0, 0, 1], METRICS_PORT).into(), "/")?;
    ensure!(page.starts_with("HTTP/1.1 404"), "{page}");

    // the daemon stopped: the pinned maps still answer
    lab.stop_daemon();
    let out = cli(&bin, &lab, &["status"])?;
    ensure!(
        out.code == Some(3),
        "status without a daemon must exit 3: {out}"
    );
    let out = cli(&bin, &lab, &["flows", "--limit", "10"])?;
    ensure!(
        out.success() && !flow_rows(&out).is_empty(),
        "flows without a daemon: {out}"
    );
    let out = cli(&bin, &lab, &["drops", "--interval-ms", "100"])?;
    ensure!(
        out.success() && out.stdout.contains("fwd_redirect"),
        "drops without a daemon: {out}"
    );
    ensure!(out.stdout.contains("daemon is not running"), "{out}");
    drop(hold);
    let out = lab.detach(&daemon_bin)?;
    ensure!(out.success(), "kowabungad --detach: {out}");
    Ok(())
}
