//! `kowabunga-vrrp-report`: takeover time of kowabungad's VRRP engine against
//! keepalived 2.2, in the same namespace lab, for advert intervals 1000/100/20 ms,
//! after a crash (cut off + SIGKILL) and a graceful stop, with a UDP probe.
//!
//! ```text
//! sudo cargo run -p kowabunga-tests --bin kowabunga-vrrp-report -- [--runs 3] [--rate 1000] [--intervals 1000,100,20]
//! ```
//! (`cargo xtask vrrp-report` builds and runs it.) Needs root, keepalived and the
//! `kowabunga-vrrp-node` binary next to this one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kowabunga_tests::vrrp::node::Impl;
use kowabunga_tests::vrrp::scenario::{failover, flaps_under_load, Event};

fn main() {
    if let Err(e) = run() {
        eprintln!("kowabunga-vrrp-report: {e:#}");
        std::process::exit(1);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run() -> anyhow::Result<()> {
    let mut runs = 3usize;
    let mut rate = 1000u32;
    let mut intervals = vec![1000u32, 100, 20];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))?;
        match a.as_str() {
            "--runs" => runs = v.parse::<usize>()?.clamp(1, 20),
            "--rate" => rate = v.parse::<u32>()?.clamp(10, 5000),
            "--intervals" => {
                intervals = v.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            _ => anyhow::bail!("unknown argument {a}"),
        }
    }
    if let Some(why) = kowabunga_testkit::why_not_privileged() {
        anyhow::bail!("network namespaces and raw sockets: {why}");
    }
    let ours: PathBuf = std::env::current_exe()?
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no parent directory"))?
        .join("kowabunga-vrrp-node");
    anyhow::ensure!(
        ours.exists(),
        "{} missing: cargo build -p kowabunga-tests --bins",
        ours.display()
    );
    println!("VRRP takeover, same lab (r1 priority 150 master, r2 priority 100 backup), UDP probe at {rate}/s,");
    println!("{runs} run(s) per cell: median [min-max] time from the event to the first reply of r2, median probes lost.");
    println!();
    println!("| advert  | event           | kowabunga (RFC 9568 skew)      | kowabunga (immediate handover) | keepalived 2.2.7               |");
    println!("|--------:|-----------------|--------------------------------|--------------------------------|--------------------------------|");
    for &interval in &intervals {
        for event in [Event::Crash, Event::Graceful] {
            let rfc = cell(&ours, Impl::Ours, interval, event, rate, runs, false);
            // The option only changes what a backup does on priority 0.
            let immediate = match event {
                Event::Graceful => cell(&ours, Impl::Ours, interval, event, rate, runs, true),
                Event::Crash => "(same as RFC mode)".to_owned(),
            };
            let keepalived = cell(&ours, Impl::Keepalived, interval, event, rate, runs, false);
            println!(
                "| {:>4} ms | {:<15} | {:<30} | {:<30} | {:<30} |",
                interval,
                event.to_string(),
                rfc,
                immediate,
                keepalived
            );
        }
    }
    println!();
    println!("Flaps under load: stable pair, {HOGS} busy threads for {}s on this machine; times the live", LOAD.as_secs());
    println!("master's backup became master anyway (should be 0).");
    println!();
    println!("| advert  | kowabunga | keepalived 2.2.7 |");
    println!("|--------:|----------:|-----------------:|");
    for &interval in &intervals {
        let flaps = |imp| match flaps_under_load(&ours, imp, interval, HOGS, LOAD) {
            Ok(n) => n.to_string(),
            Err(e) => {
                eprintln!("{imp} {interval} ms under load: {e:#}");
                "failed".to_owned()
            }
        };
        let (a, b) = (flaps(Impl::Ours), flaps(Impl::Keepalived));
        println!("| {interval:>4} ms | {a:>9} | {b:>16} |");
    }
    Ok(())
}

/// Busy threads of the load test.
const HOGS: usize = 3;
/// How long the load lasts.
const LOAD: Duration = Duration::from_secs(10);

/// One table cell: median [min-max] takeover and median loss over `runs` runs.
fn cell(
    ours: &Path,
    imp: Impl,
    interval: u32,
    event: Event,
    rate: u32,
    runs: usize,
    immediate: bool,
) -> String {
    let mut times = Vec::new();
    let mut lost = Vec::new();
    let mut failed = 0;
    for _ in 0..runs {
        match failover(ours, imp, interval, event, rate, immediate) {
            Ok(m) => {
                if let Some(t) = m.takeover.time {
                    times.push(ms(t));
                }
                lost.push(m.takeover.lost);
            }
            Err(e) => {
                eprintln!("{imp} {interval} ms {event}: {e:#}");
                failed += 1;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    lost.sort_unstable();
    if times.is_empty() {
        return "failed".to_owned();
    }
    format!(
        "{:7.1} ms [{:.0}-{:.0}] lost {}{}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        lost.get(lost.len() / 2).copied().unwrap_or(0),
        if failed > 0 {
            format!(" ({failed} failed)")
        } else {
            String::new()
        }
    )
}
