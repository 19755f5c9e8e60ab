//! The live bench in its shortest form: kernel forwarding, the limit and
//! Kawaii (run by the debug `kowabungad`), 64 flows, one short repetition.
//! Checks that every forwarding mode was verified at the sink, that the
//! warm-up left Kawaii's flows established (answered), that the
//! files are written, and that what kernel forwarding delivers (untranslated
//! sources) would score nothing under Kawaii's expectation.

use kowabunga_benches::live::modes::expect;
use kowabunga_benches::live::verify::{check, score};
use kowabunga_benches::live::{self, FlowSet, Mode, Options};

#[test]
fn a_short_live_run_verifies_every_mode_and_untranslated_traffic_cannot_score() {
    if !kowabunga_testkit::privileged("live_bench") {
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        kowabunga_testkit::missing("live_bench", "a second CPU");
        return;
    }
    let kowabungad = kowabunga_tests::lab::find_kowabungad().expect("kowabungad built");
    let out = std::env::temp_dir().join(format!("kw-live-bench-{}", std::process::id()));
    let opts = Options {
        modes: vec![Mode::Kernel, Mode::Limit, Mode::Kawaii],
        flows: vec![FlowSet::Fixed(64)],
        reps: 1,
        secs: 0.5,
        warm: 0.3,
        amp: 8,
        seeds: 64,
        out: out.clone(),
        kowabungad: Some(kowabungad),
        one_way: false,
        verbose: true,
    };
    let run = live::run(&opts).expect("live run");
    assert_eq!(run.measurements.len(), 3);
    for m in &run.measurements {
        let v = m.verdict.as_ref().expect("forwarding modes are verified");
        assert!(v.ok, "{} not verified: {v:?}", m.mode);
        assert!(m.score_kpps > 0.0, "{}: {m:?}", m.mode);
        assert!(m.rates.offered_kpps > 0.0, "{}: {m:?}", m.mode);
    }
    let kawaii = run
        .measurements
        .iter()
        .find(|m| m.mode == Mode::Kawaii)
        .expect("kawaii measured");
    assert_eq!(
        kawaii.seen[0].source.to_string(),
        "10.210.2.100",
        "{:?}",
        kawaii.seen
    );
    assert!(
        kawaii
            .kw_stats
            .as_ref()
            .is_some_and(|k| k.get("fwd_redirect").copied().unwrap_or(0) > 0),
        "{:?}",
        kawaii.kw_stats
    );
    // The sink answered every flow during the warm-up, so Kawaii measured
    // established flows: both entries of all 64 flows confirmed.
    assert!(kawaii.warm_up.answered >= 64, "{:?}", kawaii.warm_up);
    let ct = kawaii.warm_up.conntrack.expect("kawaii's conntrack read");
    assert_eq!(ct.confirmed, 128, "{:?}", kawaii.warm_up);
    assert_eq!(ct.embryonic, 0, "{:?}", kawaii.warm_up);
    // What kernel forwarding delivered, judged as Kawaii: no translation, no score.
    let kernel = run
        .measurements
        .iter()
        .find(|m| m.mode == Mode::Kernel)
        .expect("kernel measured");
    let as_kawaii = check(
        &expect(Mode::Kawaii).expect("kawaii expectation"),
        &kernel.seen,
    );
    assert!(!as_kawaii.ok, "{as_kawaii:?}");
    assert_eq!(score(kernel.rates.sink_kpps, Some(&as_kawaii)), 0.0);
    for f in ["results.json", "summary.txt", "plot.svg"] {
        let p = run.dir.join(f);
        assert!(
            std::fs::metadata(&p)
                .map(|m| m.len() > 100)
                .unwrap_or(false),
            "{} missing or empty",
            p.display()
        );
    }
    let json = std::fs::read_to_string(run.dir.join("results.json")).expect("json");
    assert!(json.contains("\"kawaii/limit\""), "{json}");
    assert!(run.table.contains("kawaii/limit"), "{}", run.table);
    std::fs::remove_dir_all(&out).expect("cleanup");
}
