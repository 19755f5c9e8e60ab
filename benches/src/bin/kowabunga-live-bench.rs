//! `kowabunga-live-bench`: real UDP traffic through Kawaii, Konvey and the
//! kernel baselines, interleaved (run it with `cargo xtask bench --live`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kowabunga_benches::live::options::parse_list;
use kowabunga_benches::live::{self, FlowSet, Mode, Options};

/// Forwarding rate of every mode with real frames, interleaved, each
/// repetition verified at the sink. Needs root and 2 CPUs.
#[derive(Parser)]
#[command(name = "kowabunga-live-bench", about)]
struct Args {
    /// Modes, comma separated: gen, kernel, nft-masq, nft-dnat, limit, kawaii, konvey.
    #[arg(
        long,
        default_value = "gen,kernel,nft-masq,nft-dnat,limit,kawaii,konvey"
    )]
    modes: String,
    /// Flow sets, comma separated: powers of two up to 65536, and `new` (every frame a new flow).
    #[arg(long, default_value = "64,1024,65536,new")]
    flows: String,
    /// Repetitions of every (flow set, mode).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Seconds measured per repetition.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 1.0)]
    warm: f64,
    /// Frames to the client's uplink per pass of the generator's loop.
    #[arg(long, default_value_t = 8)]
    amp: u32,
    /// Seed frames in the generator's loop.
    #[arg(long, default_value_t = 128)]
    seeds: u32,
    /// Results directory (a subdirectory per run); default target/live-bench.
    #[arg(long)]
    out: Option<PathBuf>,
    /// kowabungad binary; default: next to this program.
    #[arg(long)]
    kowabungad: Option<PathBuf>,
    /// Leave the fixed flow sets one-way: no answer from the sink during
    /// the warm-up, so stateful gateways keep every flow unanswered
    /// (embryonic). By default each flow is answered once before measuring.
    #[arg(long)]
    one_way: bool,
    /// One line per measurement instead of a progress line.
    #[arg(long, short)]
    verbose: bool,
}

fn options(a: Args) -> anyhow::Result<Options> {
    let modes: Vec<Mode> = parse_list(&a.modes).map_err(|e| anyhow::anyhow!("--modes: {e}"))?;
    let flows: Vec<FlowSet> = parse_list(&a.flows).map_err(|e| anyhow::anyhow!("--flows: {e}"))?;
    let needs_daemon = modes
        .iter()
        .any(|m| matches!(m, Mode::Kawaii | Mode::Konvey));
    let kowabungad = match a.kowabungad {
        Some(p) => Some(p),
        None if needs_daemon => Some(kowabunga_tests::lab::find_kowabungad()?),
        None => None,
    };
    let out = match a.out {
        Some(o) => o,
        None => kowabunga_tests::lab::profile_dir()?
            .parent()
            .map(|p| p.join("live-bench"))
            .unwrap_or_else(|| PathBuf::from("live-bench")),
    };
    Ok(Options {
        modes,
        flows,
        reps: a.reps,
        secs: a.secs,
        warm: a.warm,
        amp: a.amp,
        seeds: a.seeds,
        out,
        kowabungad,
        one_way: a.one_way,
        verbose: a.verbose,
    })
}

fn main() -> ExitCode {
    let result = options(Args::parse()).and_then(|o| {
        if let Some(why) = kowabunga_testkit::why_not_privileged() {
            anyhow::bail!("the live bench creates namespaces and attaches XDP programs, but this process {why}");
        }
        live::run(&o)
    });
    match result {
        Ok(out) => {
            println!("{}", out.table);
            println!(
                "results: {}/results.json, plot: {}/plot.svg",
                out.dir.display(),
                out.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kowabunga-live-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
