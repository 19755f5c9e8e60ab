//! `cargo xtask`: the project's developer commands.
//!
//! * `deps [COMMAND]` — check and install the Debian packages a command needs
//!   (`--list` prints them, `--purge` removes what xtask installed)
//! * `test`  — deps, build everything, run every test
//! * `lab`   — deps, build, run the Kawaii namespace lab demo
//! * `bench` — deps, run the benchmarks (`--live`: real traffic through namespaces;
//!   `bench dns`: Kiwi vs unbound with dnsperf)
//! * `vrrp-report` — deps, takeover times of our VRRP engine vs keepalived (root)
//! * `package` — build the binaries (release) and the Debian package
//!   `target/debian/kowabunga_<version>_<arch>.deb`
//! * `ci`    — what `.ci/run` does: privileged tests, fmt check, clippy

mod deps;
mod guest_kernel;
mod package;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// Developer commands of Kowabunga-rs.
#[derive(Parser)]
#[command(name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check the Debian packages COMMAND needs (default: everything, optional tools
    /// included); install the missing ones (root).
    Deps {
        /// Only what this command needs.
        #[arg(value_enum)]
        command: Option<deps::For>,
        /// Print what would be installed, by group, and install nothing.
        #[arg(long, conflicts_with = "purge")]
        list: bool,
        /// Remove the packages xtask installed (recorded in
        /// /var/lib/kowabunga-xtask/installed) and the guest kernel cache;
        /// prints the plan unless --yes.
        #[arg(long)]
        purge: bool,
        /// With --purge: really run `apt-get purge`.
        #[arg(long, requires = "purge")]
        yes: bool,
    },
    /// deps, `cargo build --workspace --all-targets`, `cargo test --workspace --no-fail-fast [ARGS]`.
    Test {
        /// Passed to `cargo test --workspace` (e.g. `-- --nocapture`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// deps, build kowabungad and the lab (release), run the Kawaii namespace lab.
    Lab {
        /// Passed to `kowabunga-lab`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// deps, `cargo bench -p kowabunga-benches [ARGS]`; with --live, the
    /// live-traffic bench (root): `kowabunga-live-bench [ARGS]`; `bench dns
    /// [ARGS]`: Kiwi vs unbound with dnsperf (root).
    Bench {
        /// Real frames through namespaces, every mode interleaved and
        /// verified (`--live --help` for its options, e.g. `--reps 1 --secs 1
        /// --flows 1024`).
        #[arg(long)]
        live: bool,
        /// Passed to `cargo bench` (or to `kowabunga-live-bench`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Privileged tests (KOWABUNGA_REQUIRE_PRIVILEGED=1), `cargo fmt --check`, clippy -D warnings.
    Ci,
    /// Build the binaries and the Debian package target/debian/kowabunga_<version>_<arch>.deb.
    Package {
        /// Cargo profile of the packaged binaries (`dev`: the debug build, for tests).
        #[arg(long, value_enum, default_value = "release")]
        profile: package::Profile,
    },
    /// deps, build (release), print VRRP takeover times: ours vs keepalived, 1000/100/20 ms adverts.
    VrrpReport {
        /// Passed to `kowabunga-vrrp-report` (e.g. `--runs 5 --rate 1000`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Deps {
            command,
            list,
            purge,
            yes,
        } => deps_cmd(command.unwrap_or(deps::For::All), list, purge, yes)
            .map(|()| ExitCode::SUCCESS),
        Cmd::Test { args } => test(&args),
        Cmd::Lab { args } => lab(&args),
        Cmd::Bench { live: false, args } => bench(&args),
        Cmd::Bench { live: true, args } => live_bench(&args),
        Cmd::Ci => ci(),
        Cmd::Package { profile } => package_cmd(profile).map(|deb| {
            println!("xtask: package: {}", deb.display());
            ExitCode::SUCCESS
        }),
        Cmd::VrrpReport { args } => vrrp_report(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of xtask/).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo` as invoked by the user (cargo sets `$CARGO` for the programs it runs).
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root()).env("RUST_BACKTRACE", "1");
    cmd
}

/// Runs `cmd`, echoing it; `Ok(code)` is its exit code.
fn run(mut cmd: Command) -> Result<ExitCode> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("xtask: $ {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if status.success() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("xtask: `{shown}` failed: {status}");
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .map_or(ExitCode::FAILURE, ExitCode::from))
}

/// Runs `cmd`; an error when it fails.
fn run_ok(cmd: Command) -> Result<()> {
    if run(cmd)? == ExitCode::SUCCESS {
        Ok(())
    } else {
        bail!("stopping: a step failed")
    }
}

fn require_privileged() -> bool {
    std::env::var("KOWABUNGA_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// `cargo xtask deps [COMMAND] [--list | --purge [--yes]]`.
fn deps_cmd(cmd: deps::For, list: bool, purge: bool, yes: bool) -> Result<()> {
    let target = target_dir();
    if list {
        deps::list(cmd, &target)
    } else if purge {
        deps::purge(yes, &target)
    } else {
        deps::ensure(cmd, &target).map(|_| ())
    }
}

fn test(args: &[OsString]) -> Result<ExitCode> {
    if !deps::is_root() {
        if require_privileged() {
            bail!("KOWABUNGA_REQUIRE_PRIVILEGED=1 but not root: privileged tests need root (CAP_BPF + CAP_NET_ADMIN)");
        }
        println!("xtask: note: not root, the privileged tests (XDP, namespace labs) will skip");
    }
    let ready = deps::ensure(deps::For::Test, &target_dir())?;
    let mut build = cargo();
    build.args(["build", "--workspace", "--all-targets"]);
    let code = run(build)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let mut t = cargo();
    // The package test (tests/tests/package_deb.rs) installs this .deb of the
    // debug binaries just built: packaged once here, not per test.
    match package::build_deb(&root(), &target_dir(), package::Profile::Dev) {
        Ok(deb) => {
            t.env(package::DEB_ENV, deb);
        }
        Err(e) => eprintln!("xtask: warning: packaging the debug build failed: {e:#}"),
    }
    // --no-fail-fast: one failing test binary must not hide the others' results.
    t.args(["test", "--workspace", "--no-fail-fast"]).args(args);
    if let Some(kernel) = ready.guest_kernel {
        t.env(guest_kernel::ENV, kernel);
    }
    run(t)
}

/// `cargo xtask package`: builds the packaged binaries with `profile`,
/// then the `.deb` ([`package::build_deb`]).
fn package_cmd(profile: package::Profile) -> Result<PathBuf> {
    let mut build = cargo();
    build.args([
        "build",
        "--profile",
        profile.cargo_name(),
        "-p",
        "kowabunga-control",
    ]);
    for bin in package::present(&root()) {
        build.args(["--bin", bin.name]);
    }
    run_ok(build)?;
    package::build_deb(&root(), &target_dir(), profile)
}

fn lab(args: &[OsString]) -> Result<ExitCode> {
    deps::ensure(deps::For::Lab, &target_dir())?;
    if !deps::is_root() {
        bail!("the lab creates network namespaces and attaches XDP programs: run it as root");
    }
    let mut daemon = cargo();
    daemon.args(["build", "--release", "-p", "kowabunga-control", "--bins"]);
    run_ok(daemon)?;
    let mut lab = cargo();
    lab.args(["build", "--release", "-p", "kowabunga-tests", "--bins"]);
    run_ok(lab)?;
    let mut cmd = Command::new(target_dir().join("release").join("kowabunga-lab"));
    cmd.args(args).env("RUST_BACKTRACE", "1");
    run(cmd)
}

fn vrrp_report(args: &[OsString]) -> Result<ExitCode> {
    deps::ensure(deps::For::VrrpReport, &target_dir())?;
    if !deps::is_root() {
        bail!("the VRRP report creates network namespaces and raw sockets: run it as root");
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "kowabunga-tests", "--bins"]);
    run_ok(build)?;
    let mut cmd = Command::new(target_dir().join("release").join("kowabunga-vrrp-report"));
    cmd.args(args).env("RUST_BACKTRACE", "1");
    run(cmd)
}

/// `$CARGO_TARGET_DIR` or `<root>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

fn bench(args: &[OsString]) -> Result<ExitCode> {
    if args.first().is_some_and(|a| a == "dns") {
        return bench_dns(&args[1..]);
    }
    deps::ensure(deps::For::Bench, &target_dir())?;
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "kowabunga-benches"]).args(args);
    run(cmd)
}

fn live_bench(args: &[OsString]) -> Result<ExitCode> {
    deps::ensure(deps::For::LiveBench, &target_dir())?;
    if !deps::is_root() {
        bail!(
            "the live bench creates network namespaces and attaches XDP programs: run it as root"
        );
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "kowabunga-control", "--bins"]);
    run_ok(build)?;
    let mut bench = cargo();
    bench.args([
        "build",
        "--release",
        "-p",
        "kowabunga-benches",
        "--bin",
        "kowabunga-live-bench",
    ]);
    run_ok(bench)?;
    let mut cmd = Command::new(target_dir().join("release").join("kowabunga-live-bench"));
    cmd.args(args).env("RUST_BACKTRACE", "1");
    run(cmd)
}

/// `cargo xtask bench dns`: deps, release build, `kowabunga-dns-bench ARGS`.
fn bench_dns(args: &[OsString]) -> Result<ExitCode> {
    deps::ensure(deps::For::BenchDns, &target_dir())?;
    if !deps::is_root() {
        bail!("the DNS bench creates network namespaces: run it as root");
    }
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "kowabunga-control",
        "-p",
        "kowabunga-tests",
        "--bins",
    ]);
    run_ok(build)?;
    let mut cmd = Command::new(target_dir().join("release").join("kowabunga-dns-bench"));
    cmd.args(args).env("RUST_BACKTRACE", "1");
    run(cmd)
}

fn ci() -> Result<ExitCode> {
    if !deps::is_root() {
        bail!("`cargo xtask ci` runs the privileged tests: run it as root");
    }
    let code = {
        // Same as `KOWABUNGA_REQUIRE_PRIVILEGED=1 cargo xtask test`.
        std::env::set_var("KOWABUNGA_REQUIRE_PRIVILEGED", "1");
        test(&[])?
    };
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    lint()
}

/// `cargo fmt --all -- --check` then clippy with warnings denied.
fn lint() -> Result<ExitCode> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    let code = run(fmt)?;
    if code != ExitCode::SUCCESS {
        eprintln!("xtask: formatting differs: run `cargo fmt --all`");
        return Ok(code);
    }
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_live_passes_its_options_through() {
        let cli = Cli::try_parse_from([
            "cargo xtask",
            "bench",
            "--live",
            "--reps",
            "1",
            "--flows",
            "64,new",
        ])
        .expect("parse");
        let Cmd::Bench { live, args } = cli.command else {
            panic!("not bench")
        };
        assert!(live);
        assert_eq!(args, ["--reps", "1", "--flows", "64,new"]);
        let cli =
            Cli::try_parse_from(["cargo xtask", "bench", "--", "established"]).expect("parse");
        let Cmd::Bench { live, args } = cli.command else {
            panic!("not bench")
        };
        assert!(!live);
        assert_eq!(args, ["established"]);
    }
}
