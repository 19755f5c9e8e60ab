//! Kernel-timed runs of a row: the program and the `xdp_pass` baseline on
//! the same frames, and the counter check that proves the program took the
//! row's path.
//!
//! Times are `BPF_PROG_TEST_RUN`'s `duration`, measured by the kernel around
//! the program runs only: building frames, reading counters and loading the
//! program afresh between calls cost nothing in the figures.

use std::time::Duration;

use anyhow::{ensure, Result};
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::stats::stat_name;
use kowabunga_dataplane::Baseline;

use crate::knobs::Knobs;
use crate::subject::Subject;

/// The frames of a row, and so how they are timed.
#[derive(Clone, Debug)]
pub enum Frames {
    /// One frame the program leaves as it is (a drop, a pass): timed with
    /// `repeat`, the kernel looping over it.
    Repeat(Vec<u8>),
    /// One frame the program rewrites: `repeat` would rerun the program on
    /// its own output, so each run is a call of its own (which adds the
    /// kernel's per-call timer overhead; `xdp_pass` shows it).
    PerCall(Vec<u8>),
    /// Frames each of which must start a flow: one call per frame, each
    /// frame once. The subject is built afresh (empty maps) before the first
    /// and whenever they run out ([`Knobs::flows`] of them), so each cycle
    /// measures the first flows into fresh maps, and the state the rows
    /// before it left is gone: put it last.
    NewFlows(Vec<Vec<u8>>),
}

impl Frames {
    fn frame(&self, i: usize) -> &[u8] {
        match self {
            Self::Repeat(f) | Self::PerCall(f) => f,
            Self::NewFlows(v) => &v[i % v.len()],
        }
    }
}

/// One measured path: what a bench describes, nothing else.
#[derive(Clone, Debug)]
pub struct Row<P> {
    /// Short name in the benchmark id (`kawaii/<id>`).
    pub id: &'static str,
    /// What the table calls the path.
    pub path: &'static str,
    /// Which program of the object runs it.
    pub program: P,
    /// The frames sent.
    pub frames: Frames,
    /// The counter every run must move by one: the path check.
    pub stat: kw_stat::Type,
    /// The verdict of the row's frames.
    pub verdict: u32,
    /// Frames run once each, verdict checked, before the row is timed (to
    /// set up a flow, say).
    pub prime: Vec<(Vec<u8>, u32)>,
}

impl<P> Row<P> {
    /// A row without priming frames.
    pub fn new(
        id: &'static str,
        path: &'static str,
        program: P,
        frames: Frames,
        stat: kw_stat::Type,
        verdict: u32,
    ) -> Self {
        Self {
            id,
            path,
            program,
            frames,
            stat,
            verdict,
            prime: Vec::new(),
        }
    }

    /// The row, with `frame` run once before it is timed; its verdict must
    /// be `verdict`.
    pub fn primed_by(mut self, frame: Vec<u8>, verdict: u32) -> Self {
        self.prime.push((frame, verdict));
        self
    }

    /// How the row is timed, for the table.
    pub fn method(&self, runs: u64) -> String {
        match self.frames {
            Frames::Repeat(_) => format!("{runs} runs, repeat"),
            Frames::PerCall(_) => format!("{runs} calls x 1"),
            Frames::NewFlows(_) => format!("{runs} new flows x 1"),
        }
    }
}

/// Kernel-timed runs added up.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    runs: u64,
    total_ns: u128,
    per_call_ns: Vec<u32>,
}

impl Tally {
    fn call(&mut self, d: Duration) {
        let ns = d.as_nanos();
        self.runs += 1;
        self.total_ns += ns;
        self.per_call_ns.push(u32::try_from(ns).unwrap_or(u32::MAX));
    }

    fn repeat(&mut self, mean: Duration, runs: u32) {
        self.runs += u64::from(runs);
        self.total_ns += mean.as_nanos() * u128::from(runs);
    }

    /// Runs timed.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// Mean ns per run, if any ran.
    pub fn mean_ns(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.total_ns as f64 / self.runs as f64)
    }

    /// Median ns of one-run calls, if the runs were such calls.
    pub fn median_ns(&self) -> Option<f64> {
        let mut v = self.per_call_ns.clone();
        v.sort_unstable();
        v.get(v.len() / 2).map(|m| f64::from(*m))
    }
}

/// The state of one row while criterion drives it.
#[derive(Debug)]
pub struct Measure<'r, P> {
    row: &'r Row<P>,
    knobs: Knobs,
    ready: bool,
    next: usize,
    /// The program's runs.
    pub program: Tally,
    /// The baseline runs made beside them, alternately, on the same frames.
    pub beside: Tally,
}

impl<'r, P: Copy> Measure<'r, P> {
    /// A row not yet run.
    pub fn new(row: &'r Row<P>, knobs: Knobs) -> Self {
        Self {
            row,
            knobs,
            ready: false,
            next: 0,
            program: Tally::default(),
            beside: Tally::default(),
        }
    }

    /// The row measured.
    pub fn row(&self) -> &'r Row<P> {
        self.row
    }

    /// Builds the subject afresh for a new-flow row, runs the priming
    /// frames, then probes: one untimed run of the row's next frame, which
    /// must give the row's verdict and move the row's counter by one. Once
    /// per row; [`Measure::program`] calls it if it was not.
    pub fn ready<S: Subject<Program = P>>(
        &mut self,
        s: &mut S,
        fresh: &dyn Fn() -> Result<S>,
    ) -> Result<()> {
        if self.ready {
            return Ok(());
        }
        let row = self.row;
        if let Frames::NewFlows(v) = &row.frames {
            ensure!(!v.is_empty(), "{}: no new-flow frames", row.id);
            *s = fresh()?;
        }
        for (i, (frame, verdict)) in row.prime.iter().enumerate() {
            let got = s.run(row.program, frame)?;
            ensure!(
                got == *verdict,
                "{}: priming frame {i} got verdict {got}, expected {verdict}",
                row.id
            );
        }
        let before = s.counters()?;
        let got = s.run(row.program, self.take_frame())?;
        ensure!(
            got == row.verdict,
            "{}: verdict {got}, expected {}",
            row.id,
            row.verdict
        );
        check_path(s, &before, row.stat, 1)?;
        self.ready = true;
        Ok(())
    }

    /// The next frame; new-flow frames are each used once.
    fn take_frame(&mut self) -> &'r [u8] {
        let i = self.next;
        if matches!(self.row.frames, Frames::NewFlows(_)) {
            self.next += 1;
        }
        self.row.frames.frame(i)
    }

    /// Times `iters` runs of the program on the row's frames, each call
    /// followed by the same runs of `baseline` (counted in
    /// [`Measure::beside`]), and checks the path. `fresh` builds the subject
    /// anew (new-flow rows). Returns the kernel time of the program's runs:
    /// criterion's `iter_custom` measurement.
    pub fn program<S: Subject<Program = P>>(
        &mut self,
        s: &mut S,
        fresh: &dyn Fn() -> Result<S>,
        baseline: &Baseline,
        iters: u64,
    ) -> Result<Duration> {
        self.ready(s, fresh)?;
        let row = self.row;
        let mut before = s.counters()?;
        let mut counted = 0;
        let mut total = Duration::ZERO;
        match &row.frames {
            Frames::Repeat(frame) => {
                for n in chunks(iters, self.knobs.repeat) {
                    let d = s.run_repeat(row.program, frame, n)?;
                    total += d * n;
                    self.program.repeat(d, n);
                    self.beside.repeat(baseline.run_repeat(frame, n)?, n);
                }
            }
            Frames::PerCall(_) | Frames::NewFlows(_) => {
                let flows = self.flows();
                for i in 0..iters {
                    if self.next >= flows {
                        // a fresh subject has fresh counters: check first
                        check_path(s, &before, row.stat, i - counted)?;
                        *s = fresh()?;
                        before = s.counters()?;
                        counted = i;
                        self.next = 0;
                    }
                    let frame = self.take_frame();
                    let d = s.run_repeat(row.program, frame, 1)?;
                    total += d;
                    self.program.call(d);
                    self.beside.call(baseline.run_repeat(frame, 1)?);
                }
            }
        }
        check_path(s, &before, row.stat, iters - counted)?;
        Ok(total)
    }

    /// Times `iters` runs of `baseline` alone on the row's frames: criterion's
    /// `iter_custom` measurement of `xdp_pass`.
    pub fn baseline(&self, baseline: &Baseline, iters: u64) -> Result<Duration> {
        let mut total = Duration::ZERO;
        match &self.row.frames {
            Frames::Repeat(frame) => {
                for n in chunks(iters, self.knobs.repeat) {
                    total += baseline.run_repeat(frame, n)? * n;
                }
            }
            frames @ (Frames::PerCall(_) | Frames::NewFlows(_)) => {
                for i in 0..iters {
                    total += baseline.run_repeat(frames.frame(i as usize), 1)?;
                }
            }
        }
        Ok(total)
    }

    /// How many new-flow frames are used before the subject is built afresh;
    /// unbounded for other rows.
    fn flows(&self) -> usize {
        match &self.row.frames {
            Frames::NewFlows(v) => v.len().min(self.knobs.flows as usize),
            _ => usize::MAX,
        }
    }
}

/// `total` split into `repeat` values of at most `max`.
fn chunks(total: u64, max: u32) -> impl Iterator<Item = u32> {
    let max = u64::from(max.max(1));
    let full = total / max;
    let rest = total % max;
    (0..full)
        .map(move |_| max as u32)
        .chain((rest > 0).then_some(rest as u32))
}

/// Every run must have been counted in `stat`: the path is the one intended.
pub fn check_path<S: Subject>(
    s: &S,
    before: &kowabunga_dataplane::Counters,
    stat: kw_stat::Type,
    runs: u64,
) -> Result<()> {
    let got = s.counters()?.since(before).packets(stat);
    ensure!(
        got == runs,
        "{} moved by {got}, expected {runs}: the benchmark measured another path",
        stat_name(stat)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_add_up() {
        assert_eq!(chunks(0, 4).collect::<Vec<_>>(), Vec::<u32>::new());
        assert_eq!(chunks(9, 4).collect::<Vec<_>>(), [4, 4, 1]);
        assert_eq!(chunks(8, 4).collect::<Vec<_>>(), [4, 4]);
        assert_eq!(chunks(3, 0).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn tally_means_and_medians() {
        let mut t = Tally::default();
        assert_eq!(t.mean_ns(), None);
        t.repeat(Duration::from_nanos(10), 4);
        assert_eq!(t.mean_ns(), Some(10.0));
        assert_eq!(t.median_ns(), None);
        let mut c = Tally::default();
        for ns in [5, 100, 7] {
            c.call(Duration::from_nanos(ns));
        }
        assert_eq!(c.runs(), 3);
        assert_eq!(c.median_ns(), Some(7.0));
        assert!((c.mean_ns().unwrap_or_default() - 112.0 / 3.0).abs() < 1e-9);
    }
}
