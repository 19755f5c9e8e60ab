//! The interleaved loop: for every repetition, every flow set, every mode
//! (the order of the modes rotated each repetition so slow drifts of the
//! machine hit all of them), one measurement; then the table, the JSON and
//! the plot.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::modes::{expect, Gateway};
use super::options::{FlowSet, Mode, Options};
use super::progs::{GenConfig, Generator, Sink};
use super::report::{cells, ratios, table, Measurement, Report, WarmUp};
use super::sample::{rates, GwDev, Snapshot};
use super::topology::{pin_thread, Topology, CLIENT, GEN_CPU, KONVEY_VIP, NFT_VIP};
use super::verify::check;

/// Where a run's files went and what it measured.
#[derive(Debug)]
pub struct Outcome {
    /// The run's directory (`results.json`, `summary.txt`, `plot.svg`).
    pub dir: PathBuf,
    /// Every measurement.
    pub measurements: Vec<Measurement>,
    /// The summary table, as printed.
    pub table: String,
}

/// The generator's template for measurement number `idx` (fresh tuples
/// every measurement: no state left by an earlier one is hit).
pub fn gen_config(opts: &Options, mode: Mode, flows: FlowSet, idx: u32) -> GenConfig {
    let (sport, addr_base) = match flows {
        FlowSet::Fixed(_) => (10_000 + (idx % 22) as u16 * 1024, 0u32),
        // 15 port bits from 20000; the address moves 2048 per measurement
        FlowSet::AllNew => (20_000, (idx % 32) * 2048),
    };
    let lb_client = u32::from(Ipv4Addr::new(10, 212, 0, 1)) + addr_base;
    let dest = u32::from(Ipv4Addr::new(10, 211, 0, 1)) + addr_base;
    let (src, dst) = match mode {
        Mode::NftDnat => (Ipv4Addr::from(lb_client), NFT_VIP),
        Mode::Konvey => (Ipv4Addr::from(lb_client), KONVEY_VIP),
        _ => (CLIENT, Ipv4Addr::from(dest)),
    };
    GenConfig {
        flows,
        vary_src: mode.balances(),
        src,
        dst,
        sport,
        amp: opts.amp,
        seeds: opts.seeds,
    }
}

/// Runs the whole live bench (root; at least 2 CPUs).
pub fn run(opts: &Options) -> Result<Outcome> {
    opts.validate()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!("the live bench needs at least 2 CPUs (generator and gateway), found {cpus}");
    }
    let bpf_stats_enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|v| v.trim() == "1");
    if bpf_stats_enabled {
        eprintln!(
            "warning: kernel.bpf_stats_enabled is 1: every XDP program run also reads the clock \
             twice, which slows every XDP mode (sysctl -w kernel.bpf_stats_enabled=0 before measuring)"
        );
    }
    let started = utc_now();
    let dir = opts
        .out
        .join(started.replace([':', '-'], "").replace('T', "-"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The harness (and so kowabungad, nft) lives on the generator's CPU.
    pin_thread(0, GEN_CPU)?;
    let topo = Topology::new().context("building the namespaces")?;
    let mut sink = Sink::attach(&topo)?;
    let mut gw = Gateway::new(&topo, opts.kowabungad.clone(), &dir)?;
    let dev = GwDev::open(&topo)?;
    let total = opts.total();
    let t0 = Instant::now();
    let mut ms: Vec<Measurement> = Vec::with_capacity(total);
    let mut idx = 0u32;
    for rep in 1..=opts.reps {
        for &flows in &opts.flows {
            let n = opts.modes.len();
            for k in 0..n {
                let mode = opts.modes[(k + rep as usize - 1) % n];
                let m = measure(opts, &topo, &mut gw, &mut sink, &dev, rep, flows, mode, idx)
                    .with_context(|| format!("rep {rep}, {flows} flows, mode {mode}"))?;
                idx += 1;
                progress(opts, &m, ms.len() + 1, total, t0.elapsed());
                ms.push(m);
            }
        }
    }
    gw.clear(&topo)?;
    eprintln!();
    let c = cells(opts, &ms);
    let r = ratios(&c);
    let t = table(opts, &c, &r);
    let report = Report {
        started,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        bpf_stats_enabled,
        options: opts,
        measurements: &ms,
        cells: &c,
        ratios: &r,
    };
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(dir.join("summary.txt"), &t)?;
    super::plot::write(&dir.join("plot.svg"), &opts.flows, &opts.modes, &c)?;
    Ok(Outcome {
        dir,
        measurements: ms,
        table: t,
    })
}

#[allow(clippy::too_many_arguments)]
fn measure(
    opts: &Options,
    topo: &Topology,
    gw: &mut Gateway,
    sink: &mut Sink,
    dev: &GwDev,
    rep: u32,
    flows: FlowSet,
    mode: Mode,
    idx: u32,
) -> Result<Measurement> {
    let napi = gw.set(topo, mode)?;
    std::thread::sleep(Duration::from_millis(300));
    // A fixed flow set is answered by the sink during the first half of
    // the warm-up (established flows, as two-way traffic leaves them); the
    // all-new set never is: each frame is the first of its flow.
    let answer = !opts.one_way && matches!(flows, FlowSet::Fixed(_));
    let answered_before = sink.replies()?;
    sink.set_reflect(answer)?;
    let gen = Generator::start(topo, &gen_config(opts, mode, flows, idx))?;
    if answer {
        std::thread::sleep(Duration::from_secs_f64(opts.warm / 2.0));
        sink.set_reflect(false)?;
        std::thread::sleep(Duration::from_secs_f64(opts.warm / 2.0));
    } else {
        std::thread::sleep(Duration::from_secs_f64(opts.warm));
    }
    let warm_up = WarmUp {
        answered: sink.replies()? - answered_before,
        conntrack: gw.conntrack_entries()?,
    };
    sink.take_seen()?; // the check covers the measured interval only
    let a = Snapshot::take(sink, &gen, dev, gw, napi)?;
    std::thread::sleep(Duration::from_secs_f64(opts.secs));
    let b = Snapshot::take(sink, &gen, dev, gw, napi)?;
    gen.stop()?;
    let kw = gw.daemon_counters()?;
    let seen = sink.take_seen()?;
    let verdict = expect(mode).map(|e| check(&e, &seen));
    let mut m = Measurement::new(
        rep,
        flows,
        mode,
        rates(&a, &b, mode == Mode::Gen),
        verdict,
        kw,
        seen,
    );
    m.warm_up = warm_up;
    Ok(m)
}

fn progress(opts: &Options, m: &Measurement, done: usize, total: usize, elapsed: Duration) {
    let eta = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
    let check = match &m.verdict {
        None => "calibration".to_owned(),
        Some(v) if v.ok => "verified".to_owned(),
        Some(v) => format!("NOT VERIFIED: {}", v.reason.as_deref().unwrap_or("?")),
    };
    let drops: String = m
        .kw_stats
        .as_ref()
        .map(|k| {
            k.iter()
                .filter(|(n, _)| n.starts_with("drop"))
                .map(|(n, v)| format!(" {n}={v}"))
                .collect()
        })
        .unwrap_or_default();
    let ct = m
        .warm_up
        .conntrack
        .map(|c| format!(" ct {}+{}", c.confirmed, c.embryonic))
        .unwrap_or_default();
    let line = format!(
        "[{done:>3}/{total}] rep {} {:>5} flows {:<8} {:>6.0} kpps (offered {:>5.0}) {:>5.0} ns/pkt (NAPI {:>4.0})  {check}{drops}{ct}  ETA {:.0}m{:02.0}s",
        m.rep,
        m.flows.to_string(),
        m.mode.name(),
        m.rates.sink_kpps,
        m.rates.offered_kpps,
        m.rates.ns_per_packet,
        m.rates.napi_ns_per_packet,
        (eta / 60.0).floor(),
        eta % 60.0
    );
    let mut err = std::io::stderr();
    if opts.verbose {
        let _ = writeln!(err, "{line}");
    } else {
        let _ = write!(err, "\r\x1b[2K{line}");
        if m.verdict.as_ref().is_some_and(|v| !v.ok) {
            let _ = writeln!(err);
        }
    }
    let _ = err.flush();
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil from days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_formats_as_utc() {
        let s = utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }

    #[test]
    fn templates_are_fresh_per_measurement_and_balancers_vary_the_source() {
        let o = Options {
            modes: vec![Mode::Kawaii],
            flows: vec![FlowSet::Fixed(64)],
            reps: 1,
            secs: 1.0,
            warm: 0.5,
            amp: 8,
            seeds: 128,
            out: "/tmp".into(),
            kowabungad: None,
            one_way: false,
            verbose: false,
        };
        let a = gen_config(&o, Mode::Kawaii, FlowSet::Fixed(1024), 0);
        let b = gen_config(&o, Mode::Kawaii, FlowSet::Fixed(1024), 1);
        assert_ne!(a.sport, b.sport);
        assert!(!a.vary_src);
        assert_eq!(a.src, CLIENT);
        let k = gen_config(&o, Mode::Konvey, FlowSet::AllNew, 3);
        assert!(k.vary_src);
        assert_eq!(k.dst, KONVEY_VIP);
        assert_eq!(k.src, Ipv4Addr::new(10, 212, 24, 1));
        // 15 port bits from 20000 stay below 65536
        assert!(u32::from(k.sport) + (1 << 15) <= 65_536);
    }
}
