//! Environment knobs that scale a run.
//!
//! Criterion's own options (`--sample-size`, `--warm-up-time`,
//! `--measurement-time`, a name filter) go after `--` on the command line;
//! these two are about the frames, which criterion does not know.

/// How a run is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// Largest `repeat` of one `BPF_PROG_TEST_RUN` call, for frames the
    /// program leaves unchanged (`KOWABUNGA_BENCH_REPEAT`, default
    /// 1 000 000): criterion's iterations are split into calls of at most
    /// this many runs.
    pub repeat: u32,
    /// New-flow frames, each a tuple of its own, sent before the program is
    /// loaded afresh and they are sent again (`KOWABUNGA_BENCH_FLOWS`,
    /// default 60 000): the most flows conntrack holds in a new-flow row.
    pub flows: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            repeat: 1_000_000,
            flows: 60_000,
        }
    }
}

impl Knobs {
    /// The defaults, overridden by `KOWABUNGA_BENCH_REPEAT` and
    /// `KOWABUNGA_BENCH_FLOWS` when they hold a number above zero.
    ///
    /// ```
    /// let knobs = kowabunga_benches::Knobs::from_env();
    /// assert!(knobs.repeat > 0 && knobs.flows > 0);
    /// ```
    pub fn from_env() -> Self {
        let d = Self::default();
        Self {
            repeat: var("KOWABUNGA_BENCH_REPEAT").unwrap_or(d.repeat),
            flows: var("KOWABUNGA_BENCH_FLOWS").unwrap_or(d.flows),
        }
    }
}

fn var(name: &str) -> Option<u32> {
    std::env::var(name)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
}
