//! `kowabunga-dns-bench` (`cargo xtask bench dns`): Kiwi against unbound
//! with dnsperf, in namespaces; see [`kowabunga_tests::lab::dns_bench`].
//!
//! Options: `--seconds N` (each dnsperf pass, default 8), `--rounds N`
//! (default 5), `--latency-qps N` (rate of the latency pass, default
//! 20000), `--kowabungad PATH`.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use kowabunga_tests::lab::dns_bench::{check_tools, Bench, Options};
use kowabunga_tests::lab::{find_agent, find_kowabungad};

fn parse() -> Result<Options> {
    let mut opts = Options {
        seconds: 8,
        rounds: 5,
        latency_qps: 20_000,
        kowabungad: find_kowabungad()?,
        agent: find_agent()?,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => opts.seconds = value()?.parse().context("--seconds")?,
            "--rounds" => opts.rounds = value()?.parse().context("--rounds")?,
            "--latency-qps" => opts.latency_qps = value()?.parse().context("--latency-qps")?,
            "--kowabungad" => opts.kowabungad = value()?.into(),
            "-h" | "--help" => {
                println!("usage: kowabunga-dns-bench [--seconds N] [--rounds N] [--latency-qps N] [--kowabungad PATH]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    opts.seconds = opts.seconds.clamp(1, 120);
    opts.rounds = opts.rounds.clamp(1, 10);
    Ok(opts)
}

fn main() -> ExitCode {
    let result = (|| -> Result<()> {
        if let Some(why) = kowabunga_testkit::why_not_privileged() {
            bail!("the DNS bench creates network namespaces: it {why}");
        }
        check_tools()?;
        let bench = Bench::new(parse()?)?;
        let table = bench.run()?;
        print!("{table}");
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kowabunga-dns-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
