//! Medians, ratios, the summary table and the JSON of a live run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::options::{FlowSet, Mode, Options};
use super::sample::Rates;
use super::verify::{score, Seen, Verdict};

/// One measurement: a mode, a flow set, a repetition.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// Repetition, from 1.
    pub rep: u32,
    /// Flow set.
    pub flows: FlowSet,
    /// Mode.
    pub mode: Mode,
    /// Rates and CPU.
    #[serde(flatten)]
    pub rates: Rates,
    /// The sink's verdict (`None`: generator calibration).
    pub verdict: Option<Verdict>,
    /// What scores: the rate when verified, else 0.
    pub score_kpps: f64,
    /// `kowabungad`'s non-zero counters after the measurement (kawaii, konvey).
    pub kw_stats: Option<BTreeMap<String, u64>>,
    /// The most frequent (source, destination) pairs the sink recorded
    /// (at most [`SEEN_KEPT`]).
    pub seen: Vec<Seen>,
    /// The state the warm-up left (answers sent, conntrack entries).
    pub warm_up: WarmUp,
}

/// What the warm-up did before a measurement: the sink answers each flow of
/// a fixed flow set (unless `--one-way`), so a stateful gateway holds the
/// flows established, as real two-way traffic leaves them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WarmUp {
    /// Frames the sink answered.
    pub answered: u64,
    /// `kowabungad`'s conntrack entries when the measurement started
    /// (two per flow): confirmed (answered) and embryonic; `None` for the
    /// other modes.
    pub conntrack: Option<ConntrackEntries>,
}

/// Entries in the two conntrack tables of `kowabungad`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConntrackEntries {
    /// In the confirmed table.
    pub confirmed: u64,
    /// In the embryonic table.
    pub embryonic: u64,
}

/// How many (source, destination) pairs a measurement keeps.
pub const SEEN_KEPT: usize = 16;

impl Measurement {
    /// A measurement with its score computed from the verdict.
    pub fn new(
        rep: u32,
        flows: FlowSet,
        mode: Mode,
        rates: Rates,
        verdict: Option<Verdict>,
        kw_stats: Option<BTreeMap<String, u64>>,
        mut seen: Vec<Seen>,
    ) -> Self {
        let score_kpps = score(rates.sink_kpps, verdict.as_ref());
        seen.sort_by_key(|s| std::cmp::Reverse(s.packets));
        seen.truncate(SEEN_KEPT);
        Measurement {
            rep,
            flows,
            mode,
            rates,
            verdict,
            score_kpps,
            kw_stats,
            seen,
            warm_up: WarmUp::default(),
        }
    }
}

/// The repetitions of one (flow set, mode), summarised.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    /// Flow set.
    pub flows: FlowSet,
    /// Mode.
    pub mode: Mode,
    /// Median score (kpps; a failed verification scores 0).
    pub median_kpps: f64,
    /// Lowest score.
    pub min_kpps: f64,
    /// Highest score.
    pub max_kpps: f64,
    /// Median gateway-CPU ns per packet.
    pub median_ns_per_packet: f64,
    /// Median NAPI-thread ns per packet (schedstat).
    pub median_napi_ns_per_packet: f64,
    /// Median offered rate (kpps).
    pub median_offered_kpps: f64,
    /// Repetitions that passed verification, of `reps`.
    pub verified: usize,
    /// Repetitions.
    pub reps: usize,
}

/// A ratio of two medians within one run.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    /// Flow set.
    pub flows: FlowSet,
    /// `numerator/denominator` mode names.
    pub name: String,
    /// The ratio of the two median scores.
    pub value: f64,
    /// The ratio of the two best repetitions' scores (the method of the
    /// figures in issue 11: best of 3 repetitions per mode).
    pub best: f64,
}

/// Median of a list (0 for an empty one).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// One cell per (flow set, mode) measured, in option order.
pub fn cells(opts: &Options, ms: &[Measurement]) -> Vec<Cell> {
    let mut out = Vec::new();
    for &flows in &opts.flows {
        for &mode in &opts.modes {
            let r: Vec<&Measurement> = ms
                .iter()
                .filter(|m| m.flows == flows && m.mode == mode)
                .collect();
            if r.is_empty() {
                continue;
            }
            let scores: Vec<f64> = r.iter().map(|m| m.score_kpps).collect();
            out.push(Cell {
                flows,
                mode,
                median_kpps: median(&scores),
                min_kpps: scores.iter().copied().fold(f64::INFINITY, f64::min),
                max_kpps: scores.iter().copied().fold(0.0, f64::max),
                median_ns_per_packet: median(
                    &r.iter()
                        .filter(|m| m.score_kpps > 0.0)
                        .map(|m| m.rates.ns_per_packet)
                        .collect::<Vec<_>>(),
                ),
                median_napi_ns_per_packet: median(
                    &r.iter()
                        .filter(|m| m.score_kpps > 0.0)
                        .map(|m| m.rates.napi_ns_per_packet)
                        .collect::<Vec<_>>(),
                ),
                median_offered_kpps: median(
                    &r.iter().map(|m| m.rates.offered_kpps).collect::<Vec<_>>(),
                ),
                verified: r
                    .iter()
                    .filter(|m| m.verdict.as_ref().is_none_or(|v| v.ok))
                    .count(),
                reps: r.len(),
            });
        }
    }
    out
}

/// The ratios the issue asks for, where both modes were measured:
/// kawaii/limit, konvey/limit, kawaii/nft-masq, konvey/nft-dnat.
pub fn ratios(cells: &[Cell]) -> Vec<Ratio> {
    let get = |f: FlowSet, m: Mode| {
        cells
            .iter()
            .find(|c| c.flows == f && c.mode == m)
            .map(|c| (c.median_kpps, c.max_kpps))
    };
    let div = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    let mut flows: Vec<FlowSet> = cells.iter().map(|c| c.flows).collect();
    flows.dedup();
    let mut out = Vec::new();
    for f in flows {
        for (a, b) in [
            (Mode::Kawaii, Mode::Limit),
            (Mode::Konvey, Mode::Limit),
            (Mode::Kawaii, Mode::NftMasq),
            (Mode::Konvey, Mode::NftDnat),
        ] {
            if let (Some((xm, xb)), Some((ym, yb))) = (get(f, a), get(f, b)) {
                out.push(Ratio {
                    flows: f,
                    name: format!("{a}/{b}"),
                    value: div(xm, ym),
                    best: div(xb, yb),
                });
            }
        }
    }
    out
}

/// The summary table: median kpps per mode and flow set, then the ratios,
/// then the per-packet cost.
pub fn table(opts: &Options, cells: &[Cell], ratios: &[Ratio]) -> String {
    let mut s = String::new();
    let modes: Vec<Mode> = opts.modes.clone();
    let _ = writeln!(
        s,
        "64-byte UDP through the gateway, {} x {:.1} s per mode and flow set, interleaved.",
        opts.reps, opts.secs
    );
    let _ = writeln!(
        s,
        "kpps: median over repetitions, counted at the sink (gen: at the gateway's ingress); \
         a repetition whose translation check failed counts 0 (marked !)."
    );
    let _ = writeln!(
        s,
        "{}",
        if opts.one_way {
            "flows one-way (--one-way): stateful gateways hold them unanswered (embryonic)."
        } else {
            "flows answered once by the sink during the warm-up (established, as two-way \
             traffic is); `new`: every frame a new flow."
        }
    );
    let mut hdr = format!("{:>7}", "flows");
    for m in &modes {
        let _ = write!(hdr, " {:>9}", m.name());
    }
    let names: Vec<String> = {
        let mut n: Vec<String> = ratios.iter().map(|r| r.name.clone()).collect();
        n.sort();
        n.dedup();
        n
    };
    for n in &names {
        let _ = write!(hdr, " {:>15}", n);
    }
    let _ = writeln!(s, "{hdr}");
    let _ = writeln!(s, "{}", "-".repeat(hdr.len()));
    let mut flows: Vec<FlowSet> = cells.iter().map(|c| c.flows).collect();
    flows.dedup();
    for f in &flows {
        let mut line = format!("{:>7}", f.to_string());
        for m in &modes {
            match cells.iter().find(|c| c.flows == *f && c.mode == *m) {
                Some(c) => {
                    let mark = if c.verified < c.reps { "!" } else { " " };
                    let _ = write!(line, " {:>8.0}{mark}", c.median_kpps);
                }
                None => {
                    let _ = write!(line, " {:>9}", "-");
                }
            }
        }
        for n in &names {
            match ratios.iter().find(|r| r.flows == *f && &r.name == n) {
                Some(r) => {
                    let _ = write!(line, " {:>15.2}", r.value);
                }
                None => {
                    let _ = write!(line, " {:>15}", "-");
                }
            }
        }
        let _ = writeln!(s, "{line}");
    }
    if opts.reps > 1 && !names.is_empty() {
        let _ = writeln!(
            s,
            "\nratios of the best repetitions (best of {} per mode, the method of issue 11's figures):",
            opts.reps
        );
        let mut hdr = format!("{:>7}", "flows");
        for n in &names {
            let _ = write!(hdr, " {:>15}", n);
        }
        let _ = writeln!(s, "{hdr}");
        for f in &flows {
            let mut line = format!("{:>7}", f.to_string());
            for n in &names {
                match ratios.iter().find(|r| r.flows == *f && &r.name == n) {
                    Some(r) => {
                        let _ = write!(line, " {:>15.2}", r.best);
                    }
                    None => {
                        let _ = write!(line, " {:>15}", "-");
                    }
                }
            }
            let _ = writeln!(s, "{line}");
        }
    }
    for (title, napi) in [
        (
            "ns/packet, CPU: the gateway CPU's non-idle time per packet (gateway + sink XDP drop, \
             and whatever else ran there), median of verified repetitions.",
            false,
        ),
        (
            "ns/packet, NAPI: run time of the gateway's and the sink's NAPI threads per packet \
             (schedstat; other tasks excluded).",
            true,
        ),
    ] {
        let _ = writeln!(s, "\n{title}");
        let mut hdr = format!("{:>7}", "flows");
        for m in &modes {
            let _ = write!(hdr, " {:>9}", m.name());
        }
        let _ = writeln!(s, "{hdr}");
        for f in &flows {
            let mut line = format!("{:>7}", f.to_string());
            for m in &modes {
                let v = cells
                    .iter()
                    .find(|c| c.flows == *f && c.mode == *m)
                    .map(|c| {
                        if napi {
                            c.median_napi_ns_per_packet
                        } else {
                            c.median_ns_per_packet
                        }
                    });
                match v {
                    Some(v) if v > 0.0 => {
                        let _ = write!(line, " {v:>9.0}");
                    }
                    _ => {
                        let _ = write!(line, " {:>9}", "-");
                    }
                }
            }
            let _ = writeln!(s, "{line}");
        }
    }
    s
}

/// The whole run as JSON.
#[derive(Serialize)]
pub struct Report<'a> {
    /// When it started (UTC).
    pub started: String,
    /// `uname -r`.
    pub kernel: String,
    /// Whether `kernel.bpf_stats_enabled` was on: every XDP run then also
    /// reads the clock twice, which inflates every XDP mode's cost.
    pub bpf_stats_enabled: bool,
    /// The options.
    pub options: &'a Options,
    /// Every measurement, in the order taken.
    pub measurements: &'a [Measurement],
    /// Summaries per (flow set, mode).
    pub cells: &'a [Cell],
    /// Ratios of medians.
    pub ratios: &'a [Ratio],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::verify::{check, Destination, Expect, Source};

    fn rates(kpps: f64) -> Rates {
        Rates {
            secs: 1.0,
            sink_packets: (kpps * 1e3) as u64,
            sink_kpps: kpps,
            offered_kpps: 4000.0,
            gw_rx_kpps: kpps,
            ring_full: 0.0,
            cpu_gw: 1.0,
            cpu_gen: 1.0,
            ns_per_packet: 1e6 / kpps,
            napi_ns_per_packet: 1e6 / kpps,
        }
    }

    fn opts() -> Options {
        Options {
            modes: vec![Mode::Limit, Mode::Kawaii],
            flows: vec![FlowSet::Fixed(64)],
            reps: 3,
            secs: 1.0,
            warm: 0.5,
            amp: 8,
            seeds: 128,
            out: "/tmp".into(),
            kowabungad: None,
            one_way: false,
            verbose: false,
        }
    }

    #[test]
    fn medians_and_ratios_come_from_scores() {
        let f = FlowSet::Fixed(64);
        let expect = Expect {
            source: Source::Translated("10.210.2.100".parse().expect("a")),
            destination: Destination::Kept("10.211.0.0/16".parse().expect("n")),
        };
        let good = check(
            &expect,
            &[Seen {
                source: "10.210.2.100".parse().expect("a"),
                destination: "10.211.0.1".parse().expect("a"),
                packets: 1000,
            }],
        );
        let untranslated = check(
            &expect,
            &[Seen {
                source: "10.210.1.2".parse().expect("a"),
                destination: "10.211.0.1".parse().expect("a"),
                packets: 1000,
            }],
        );
        let limit_expect = Expect {
            source: Source::Kept("10.210.1.0/24".parse().expect("n")),
            destination: Destination::Kept("10.211.0.0/16".parse().expect("n")),
        };
        let limit_ok = check(
            &limit_expect,
            &[Seen {
                source: "10.210.1.2".parse().expect("a"),
                destination: "10.211.0.1".parse().expect("a"),
                packets: 1000,
            }],
        );
        let ms = vec![
            Measurement::new(
                1,
                f,
                Mode::Limit,
                rates(3000.0),
                Some(limit_ok.clone()),
                None,
                Vec::new(),
            ),
            Measurement::new(
                1,
                f,
                Mode::Kawaii,
                rates(2400.0),
                Some(good.clone()),
                None,
                Vec::new(),
            ),
            Measurement::new(
                2,
                f,
                Mode::Limit,
                rates(3200.0),
                Some(limit_ok.clone()),
                None,
                Vec::new(),
            ),
            // fast but untranslated: scores 0, and drags the median down
            Measurement::new(
                2,
                f,
                Mode::Kawaii,
                rates(3100.0),
                Some(untranslated),
                None,
                Vec::new(),
            ),
            Measurement::new(
                3,
                f,
                Mode::Limit,
                rates(2800.0),
                Some(limit_ok),
                None,
                Vec::new(),
            ),
            Measurement::new(
                3,
                f,
                Mode::Kawaii,
                rates(2000.0),
                Some(good),
                None,
                Vec::new(),
            ),
        ];
        let o = opts();
        let c = cells(&o, &ms);
        let kawaii = c.iter().find(|c| c.mode == Mode::Kawaii).expect("cell");
        assert_eq!(kawaii.median_kpps, 2000.0);
        assert_eq!(kawaii.min_kpps, 0.0);
        assert_eq!(kawaii.verified, 2);
        let r = ratios(&c);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "kawaii/limit");
        assert!((r[0].value - 2000.0 / 3000.0).abs() < 1e-9);
        // best of each: the untranslated 3100 scored 0, so 2400 over 3200
        assert!((r[0].best - 2400.0 / 3200.0).abs() < 1e-9);
        let t = table(&o, &c, &r);
        assert!(t.contains("best of 3"), "{t}");
        assert!(t.contains("0.75"), "{t}");
        assert!(t.contains("kawaii/limit"), "{t}");
        assert!(t.contains("2000!"), "{t}");
        assert!(t.contains("0.67"), "{t}");
    }

    #[test]
    fn median_of_even_and_odd_lists() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
