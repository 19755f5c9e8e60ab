//! ns/packet of the Kawaii program through `BPF_PROG_TEST_RUN`, beside the
//! trivial `xdp_pass` program measured in the same run.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p kowabunga-benches`), as
//! root. Paths measured:
//! - established: a tracked TCP flow, translated and redirected;
//! - drop: a new inbound flow to a closed VIP port (rule scans, counter);
//! - malformed: a truncated IPv4 header (the earliest drop);
//! - new flow: SNAT with port reservation and two conntrack inserts. Each
//!   packet must be a new tuple, so it is run once per call (`repeat` = 1)
//!   over many tuples; the baseline is measured the same way beside it.
//!
//! `KOWABUNGA_BENCH_REPEAT` and `KOWABUNGA_BENCH_FLOWS` scale the run.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::{Baseline, Role};
use kowabunga_tests::fixture_net::PRV_MAC;
use kowabunga_tests::harness::Harness;
use kowabunga_tests::model::XDP_REDIRECT;
use kowabunga_tests::packets::{frame, Ip, TcpFlags, L4};
use kowabunga_tests::world::{self, VIP};

const CLIENT_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: TcpFlags) -> Vec<u8> {
    frame(
        CLIENT_MAC,
        PRV_MAC,
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
    kawaii_ns: f64,
    baseline_ns: f64,
    median: Option<(f64, f64)>,
}

impl Row {
    fn single(path: &'static str, method: String, kawaii_ns: f64, baseline_ns: f64) -> Self {
        Self {
            path,
            method,
            kawaii_ns,
            baseline_ns,
            median: None,
        }
    }

    fn from_samples(path: &'static str, method: String, k: &[f64], b: &[f64]) -> Self {
        Self {
            path,
            method,
            kawaii_ns: mean(k),
            baseline_ns: mean(b),
            median: Some((median(k), median(b))),
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Every run must have been counted in `stat`: the path is the one intended.
fn expect_runs(
    h: &Harness,
    before: &kowabunga_dataplane::Counters,
    stat: u32,
    runs: u64,
) -> Result<()> {
    let got = h.counters()?.since(before).packets(stat);
    anyhow::ensure!(
        got == runs,
        "{} moved by {got}, expected {runs}: the benchmark measured another path",
        kowabunga_dataplane::stats::stat_name(stat)
    );
    Ok(())
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("kawaii bench: needs root (BPF_PROG_TEST_RUN, network namespace); skipped");
        return Ok(());
    }
    let repeat = env("KOWABUNGA_BENCH_REPEAT", 1_000_000);
    let flows = env("KOWABUNGA_BENCH_FLOWS", 60_000);
    let (mut cfg, tables) = world::config();
    cfg.sample_shift = 6; // as the daemon sets it
    let h = Harness::new(cfg, &tables).context("fixture network and program")?;
    let baseline = Baseline::load().context("load xdp_pass.o")?;
    let mut rows = Vec::new();

    // Paths that rewrite the packet cannot use `repeat`: the kernel reruns
    // the program on the rewritten buffer. They are timed one call per
    // packet; the baseline is timed the same way, alternately. Every row
    // checks that each run took the intended path, by its counter.
    let syn = tcp(
        Ipv4Addr::new(10, 0, 0, 10),
        40000,
        SERVER,
        443,
        TcpFlags::SYN,
    );
    let out = h.kawaii.run(Role::Private, &syn)?;
    anyhow::ensure!(
        out.verdict == XDP_REDIRECT,
        "priming the flow failed: {}",
        out.verdict
    );
    let est = tcp(
        Ipv4Addr::new(10, 0, 0, 10),
        40000,
        SERVER,
        443,
        TcpFlags::PSH_ACK,
    );
    let calls = flows.min(100_000);
    let before = h.counters()?;
    let (mut k, mut b) = (Vec::new(), Vec::new());
    for _ in 0..calls {
        k.push(ns(h.kawaii.run_repeat(Role::Private, &est, 1)?));
        b.push(ns(baseline.run_repeat(&est, 1)?));
    }
    expect_runs(&h, &before, kw_stat::KW_STAT_FWD_REDIRECT, u64::from(calls))?;
    rows.push(Row::from_samples(
        "established (SNAT, redirect)",
        format!("{calls} calls x 1"),
        &k,
        &b,
    ));

    let before = h.counters()?;
    let (mut k, mut b, mut n) = (Vec::new(), Vec::new(), 0u32);
    'outer: for host in 10..=13u8 {
        for sport in 1024..=65535u16 {
            if n >= flows {
                break 'outer;
            }
            let pkt = tcp(
                Ipv4Addr::new(10, 0, 0, host),
                sport,
                SERVER,
                80,
                TcpFlags::SYN,
            );
            k.push(ns(h.kawaii.run_repeat(Role::Private, &pkt, 1)?));
            b.push(ns(baseline.run_repeat(&pkt, 1)?));
            n += 1;
        }
    }
    expect_runs(&h, &before, kw_stat::KW_STAT_FWD_REDIRECT, u64::from(n))?;
    rows.push(Row::from_samples(
        "new flow (SNAT, 2 ct inserts)",
        format!("{n} tuples x 1"),
        &k,
        &b,
    ));

    // drops leave the packet as it is: kernel-timed with `repeat`
    let closed = frame(
        CLIENT_MAC,
        PRV_MAC,
        &Ip::new(REMOTE, VIP),
        &L4::Tcp {
            sport: 50000,
            dport: 9999,
            flags: TcpFlags::SYN,
        },
        &[0u8; 18],
    );
    let before = h.counters()?;
    let kd = ns(h.kawaii.run_repeat(Role::Public, &closed, repeat)?);
    expect_runs(
        &h,
        &before,
        kw_stat::KW_STAT_DROP_INGRESS_DENIED,
        u64::from(repeat),
    )?;
    let bd = ns(baseline.run_repeat(&closed, repeat)?);
    rows.push(Row::single(
        "drop (ingress denied, 9 rules)",
        format!("repeat {repeat}"),
        kd,
        bd,
    ));
    let malformed = &est[..14 + 12];
    let before = h.counters()?;
    let km = ns(h.kawaii.run_repeat(Role::Private, malformed, repeat)?);
    expect_runs(
        &h,
        &before,
        kw_stat::KW_STAT_DROP_MALFORMED,
        u64::from(repeat),
    )?;
    let bm = ns(baseline.run_repeat(malformed, repeat)?);
    rows.push(Row::single(
        "drop (malformed IPv4)",
        format!("repeat {repeat}"),
        km,
        bm,
    ));

    println!(
        "\nKawaii XDP, BPF_PROG_TEST_RUN, kernel-timed ns/packet ({} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<32} {:<22} {:>10} {:>10} {:>11} {:>18}",
        "path", "method", "kawaii", "xdp_pass", "difference", "medians k/pass"
    );
    for r in &rows {
        let med = r
            .median
            .map_or(String::from("-"), |(k, b)| format!("{k:.0}/{b:.0}ns"));
        println!(
            "{:<32} {:<22} {:>8.1}ns {:>8.1}ns {:>9.1}ns {:>18}",
            r.path,
            r.method,
            r.kawaii_ns,
            r.baseline_ns,
            r.kawaii_ns - r.baseline_ns,
            med
        );
    }
    println!(
        "(one call per packet includes the kernel's per-call timer overhead, which xdp_pass shows)"
    );
    Ok(())
}
