//! Rows under criterion: one benchmark group per row, holding the program
//! and the `xdp_pass` baseline, both measured with `iter_custom` as the
//! kernel times them; then the summary table.

use std::time::Duration;

use anyhow::{Context, Result};
use criterion::Criterion;
use kowabunga_dataplane::Baseline;

use crate::knobs::Knobs;
use crate::measure::{Measure, Row};
use crate::report::{Line, Summary};
use crate::subject::Subject;

/// Criterion as the benches use it: 20 samples, 1 s of warm-up and 2 s of
/// measurement per benchmark (each bench file stays within a minute or so
/// on two cores), then the command line, which may override all three
/// (`-- --sample-size 50 --measurement-time 10`).
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// Whether the bench may run here: privileged as every test suite means it
/// ([`kowabunga_testkit::why_not_privileged`]: `BPF_PROG_TEST_RUN`, network
/// namespaces), or to list the benchmarks (`--list` needs no program).
/// Otherwise prints one line saying the bench is skipped (a bench never
/// fails for that, whatever `KOWABUNGA_REQUIRE_PRIVILEGED` says).
pub fn privileged(name: &str) -> bool {
    if std::env::args().any(|a| a == "--list") {
        return true;
    }
    match kowabunga_testkit::why_not_privileged() {
        None => true,
        Some(why) => {
            eprintln!("{name} bench: {why}; skipped");
            false
        }
    }
}

/// The subject and the baseline, loaded when the first benchmark runs, so
/// that listing or filtering everything out loads nothing.
struct Lazy<S> {
    loaded: Option<(S, Baseline)>,
}

impl<S: Subject> Lazy<S> {
    fn get(&mut self, build: &dyn Fn() -> Result<S>) -> Result<(&mut S, &Baseline)> {
        if self.loaded.is_none() {
            let subject = build()?;
            let baseline = Baseline::load().context("load xdp_pass.o")?;
            self.loaded = Some((subject, baseline));
        }
        let (s, b) = self.loaded.as_mut().context("not loaded")?;
        Ok((s, b))
    }
}

/// Runs `rows` under criterion against the subject that `build` makes (again
/// for each cycle of a new-flow row), then prints the summary table. Rows
/// run in order (a new-flow row replaces the subject: put it last). Returns
/// the subject, for checks after the rows, unless nothing ran; `None` too
/// when the bench is skipped (not root).
///
/// Each row is the criterion group `<subject>/<row id>` with two benchmarks:
/// `<subject>` (the program, with `xdp_pass` alternating on the same frames
/// for the table) and `xdp_pass` (the baseline alone). A failed path check
/// panics: the figures would belong to another path.
///
/// ```no_run
/// use kowabunga_benches::{Frames, Row};
/// use kowabunga_tests::harness_konvey::KonveyHarness;
/// let rows = [Row::new("pass", "pass", (), Frames::Repeat(vec![0; 60]), 0, 2)];
/// kowabunga_benches::run(&rows, KonveyHarness::standard)?;
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn run<S: Subject>(
    rows: &[Row<S::Program>],
    build: impl Fn() -> Result<S>,
) -> Result<Option<S>> {
    let (subject, lines) = run_lines(rows, build)?;
    if !lines.is_empty() {
        let summary = Summary {
            program: S::NAME,
            lines,
        };
        println!("\n{summary}");
    }
    Ok(subject)
}

/// [`run`] without the summary table: the subject and the lines of the
/// rows measured, for benches that print their own table.
pub fn run_lines<S: Subject>(
    rows: &[Row<S::Program>],
    build: impl Fn() -> Result<S>,
) -> Result<(Option<S>, Vec<Line>)> {
    if !privileged(S::NAME) {
        return Ok((None, Vec::new()));
    }
    let knobs = Knobs::from_env();
    let mut c = criterion();
    let build = || build().context("fixture network and program");
    let mut lazy = Lazy { loaded: None };
    let mut lines = Vec::new();
    for row in rows {
        let name = format!("{}/{}", S::NAME, row.id);
        let fail = |e: anyhow::Error| -> ! { panic!("{name}: {e:#}") };
        let mut m = Measure::new(row, knobs);
        let mut group = c.benchmark_group(&name);
        // Loading and priming happen outside `iter_custom`, whose wall time
        // criterion uses to plan the iterations.
        group.bench_function(S::NAME, |b| {
            let (s, base) = lazy.get(&build).unwrap_or_else(|e| fail(e));
            m.ready(s, &build).unwrap_or_else(|e| fail(e));
            b.iter_custom(|iters| {
                m.program(s, &build, base, iters)
                    .unwrap_or_else(|e| fail(e))
            });
        });
        group.bench_function("xdp_pass", |b| {
            let (_, base) = lazy.get(&build).unwrap_or_else(|e| fail(e));
            b.iter_custom(|iters| m.baseline(base, iters).unwrap_or_else(|e| fail(e)));
        });
        group.finish();
        lines.extend(Line::of(&m));
    }
    c.final_summary();
    Ok((lazy.loaded.map(|(s, _)| s), lines))
}
