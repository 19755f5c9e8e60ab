//! ns/packet of the Konvey program through `BPF_PROG_TEST_RUN`, beside the
//! trivial `xdp_pass` program measured in the same run.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p kowabunga-benches`), as
//! root; it runs in the Konvey fixture network (three backends with
//! resolved neighbours). Paths measured:
//! - new flow: service lookup, round-robin turn (atomic add), source port
//!   reservation and two conntrack inserts, full NAT and redirect. Each
//!   packet must be a new tuple, so it is run once per call (`repeat` = 1)
//!   over many tuples; the baseline is measured the same way beside it;
//! - established, both directions: a tracked TCP flow translated and
//!   redirected (rewritten packets cannot use `repeat` either);
//! - drop: a SYN to a VIP port without service (packet unchanged: `repeat`);
//! - pass: traffic that is not the balancer's (`repeat`).
//!
//! `KOWABUNGA_BENCH_REPEAT` and `KOWABUNGA_BENCH_FLOWS` scale the run.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::{Baseline, Counters};
use kowabunga_tests::fixture_konvey::{
    self, BACKENDS, CLIENTS, FRONT_ADDR, FRONT_MAC, SOURCE, TCP_BACKEND_PORT, TCP_PORT, VIP,
};
use kowabunga_tests::harness_konvey::KonveyHarness;
use kowabunga_tests::model::XDP_REDIRECT;
use kowabunga_tests::packets::{frame, Ip, TcpFlags, L4};

const CLIENT_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: TcpFlags) -> Vec<u8> {
    frame(
        CLIENT_MAC,
        FRONT_MAC,
        &Ip::new(src, dst),
        &L4::Tcp {
            sport,
            dport,
            flags,
        },
        &[0u8; 18],
    )
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

struct Row {
    path: &'static str,
    method: String,
    konvey_ns: f64,
    baseline_ns: f64,
    median: Option<(f64, f64)>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

impl Row {
    fn single(path: &'static str, method: String, konvey_ns: f64, baseline_ns: f64) -> Self {
        Self {
            path,
            method,
            konvey_ns,
            baseline_ns,
            median: None,
        }
    }

    fn from_samples(path: &'static str, method: String, k: &[f64], b: &[f64]) -> Self {
        Self {
            path,
            method,
            konvey_ns: mean(k),
            baseline_ns: mean(b),
            median: Some((median(k), median(b))),
        }
    }
}

/// Every run must have been counted in `stat`: the path is the one intended.
fn expect_runs(h: &KonveyHarness, before: &Counters, stat: u32, runs: u64) -> Result<()> {
    let got = h.counters()?.since(before).packets(stat);
    anyhow::ensure!(
        got == runs,
        "{} moved by {got}, expected {runs}: the benchmark measured another path",
        kowabunga_dataplane::stats::stat_name(stat)
    );
    Ok(())
}

/// One call per packet for the program and the baseline, alternately.
fn per_call(
    h: &KonveyHarness,
    baseline: &Baseline,
    packets: impl Iterator<Item = Vec<u8>>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut k, mut b) = (Vec::new(), Vec::new());
    for pkt in packets {
        k.push(ns(h.konvey.run_repeat(&pkt, 1)?));
        b.push(ns(baseline.run_repeat(&pkt, 1)?));
    }
    Ok((k, b))
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("konvey bench: needs root (BPF_PROG_TEST_RUN, network namespace); skipped");
        return Ok(());
    }
    let repeat = env("KOWABUNGA_BENCH_REPEAT", 1_000_000);
    let flows = env("KOWABUNGA_BENCH_FLOWS", 60_000);
    let cfg = kowabunga_dataplane::konvey::KonveyConfig {
        sample_shift: 6, // as the daemon sets it
        ..fixture_konvey::config()
    };
    let h = KonveyHarness::new(cfg, &fixture_konvey::services())
        .context("fixture network and program")?;
    let baseline = Baseline::load().context("load xdp_pass.o")?;
    let mut rows = Vec::new();

    // new flows: one SYN per tuple, client ports kept (no collision)
    let tuples: Vec<(Ipv4Addr, u16)> = CLIENTS
        .iter()
        .flat_map(|(c, _)| (1024..=65535u16).map(move |p| (*c, p)))
        .take(flows as usize)
        .collect();
    let before = h.counters()?;
    let (k, b) = per_call(
        &h,
        &baseline,
        tuples
            .iter()
            .map(|(c, p)| tcp(*c, *p, VIP, TCP_PORT, TcpFlags::SYN)),
    )?;
    let n = tuples.len() as u64;
    expect_runs(&h, &before, kw_stat::KW_STAT_FWD_REDIRECT, n)?;
    let spread = h.konvey.flows_by_backend()?;
    anyhow::ensure!(
        spread
            .values()
            .all(|v| v.abs_diff(tuples.len() / BACKENDS.len()) <= 1),
        "round-robin spread {spread:?}"
    );
    rows.push(Row::from_samples(
        "new flow (full NAT, 2 ct inserts)",
        format!("{n} tuples x 1"),
        &k,
        &b,
    ));

    // established, client -> backend and backend -> client
    let (client, _) = CLIENTS[0];
    let est = tcp(client, 1024, VIP, TCP_PORT, TcpFlags::PSH_ACK);
    let out = h.konvey.run(&est)?;
    anyhow::ensure!(
        out.verdict == XDP_REDIRECT,
        "flow 1024 is not established: {}",
        out.verdict
    );
    // the first flow went to backend 0 and kept its port
    let reply = tcp(
        BACKENDS[0].0,
        TCP_BACKEND_PORT,
        SOURCE,
        1024,
        TcpFlags::PSH_ACK,
    );
    let calls = flows.min(100_000);
    for (path, pkt) in [
        ("established (client -> backend)", &est),
        ("established (backend -> client)", &reply),
    ] {
        let before = h.counters()?;
        let (k, b) = per_call(&h, &baseline, (0..calls).map(|_| pkt.clone()))?;
        expect_runs(&h, &before, kw_stat::KW_STAT_FWD_REDIRECT, u64::from(calls))?;
        rows.push(Row::from_samples(
            path,
            format!("{calls} calls x 1"),
            &k,
            &b,
        ));
    }

    // paths that leave the packet as it is: kernel-timed with `repeat`
    for (path, pkt, stat) in [
        (
            "drop (VIP port without service)",
            tcp(client, 40000, VIP, 81, TcpFlags::SYN),
            kw_stat::KW_STAT_DROP_NO_SERVICE,
        ),
        (
            "pass (not for a VIP or source)",
            tcp(client, 40000, FRONT_ADDR, 22, TcpFlags::SYN),
            kw_stat::KW_STAT_PASS_NOT_OURS,
        ),
    ] {
        let before = h.counters()?;
        let kt = ns(h.konvey.run_repeat(&pkt, repeat)?);
        expect_runs(&h, &before, stat, u64::from(repeat))?;
        let bt = ns(baseline.run_repeat(&pkt, repeat)?);
        rows.push(Row::single(path, format!("repeat {repeat}"), kt, bt));
    }

    println!(
        "\nKonvey XDP, BPF_PROG_TEST_RUN, kernel-timed ns/packet ({} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<34} {:<20} {:>10} {:>10} {:>11} {:>18}",
        "path", "method", "konvey", "xdp_pass", "difference", "medians k/pass"
    );
    for r in &rows {
        let med = r
            .median
            .map_or(String::from("-"), |(k, b)| format!("{k:.0}/{b:.0}ns"));
        println!(
            "{:<34} {:<20} {:>8.1}ns {:>8.1}ns {:>9.1}ns {:>18}",
            r.path,
            r.method,
            r.konvey_ns,
            r.baseline_ns,
            r.konvey_ns - r.baseline_ns,
            med
        );
    }
    println!(
        "(one call per packet includes the kernel's per-call timer overhead, which xdp_pass shows)"
    );
    Ok(())
}
