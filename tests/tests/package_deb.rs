//! The Debian package on this machine: `dpkg -i`, the installed binaries
//! and unit, `dpkg -P`, nothing left behind.
//!
//! The `.deb` comes from `$KOWABUNGA_DEB`: `cargo xtask test` packages the
//! debug build it just made (`cargo xtask package --profile dev`, without
//! a second compile) and passes the path. Run alone, the test runs that
//! command itself. A guard purges the package even when the test fails
//! halfway; a `kowabunga` package installed before the test is left alone
//! and fails the test instead.
//!
//! Privileged (root installs packages): skipped with a message when not
//! root, or failed where skipping is forbidden
//! (`kowabunga_testkit::privileged`). Needs dpkg and systemd-analyze
//! (`cargo xtask deps test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kowabunga_testkit::{missing, privileged};

const PACKAGE: &str = "kowabunga";
const UNIT: &str = "/lib/systemd/system/kowabungad.service";
const CONFIG: &str = "/etc/kowabunga/kowabungad.yaml";
const EXAMPLES: &str = "/usr/share/doc/kowabunga/examples";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))
}

/// `dpkg ARGS`, retried (at most 2 minutes) while another dpkg or apt holds
/// the lock.
fn dpkg(args: &[&str]) -> Result<Output> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run("dpkg", args)?;
        let locked = !out.status.success() && text(&out).contains("lock");
        if !locked || Instant::now() >= deadline {
            return Ok(out);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", PACKAGE])
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

/// Purges the package on drop, whatever happened.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if installed() || Path::new(CONFIG).exists() {
            match dpkg(&["-P", PACKAGE]) {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!("cleanup: dpkg -P {PACKAGE} failed: {}", text(&o)),
                Err(e) => eprintln!("cleanup: dpkg -P {PACKAGE}: {e:#}"),
            }
        }
    }
}

/// `$KOWABUNGA_DEB`, or `cargo xtask package --profile dev` run now.
fn deb() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("KOWABUNGA_DEB") {
        return Ok(path.into());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["xtask", "package", "--profile", "dev"])
        .current_dir(workspace())
        .output()
        .context("running cargo xtask package")?;
    let all = text(&out);
    ensure!(out.status.success(), "cargo xtask package failed:\n{all}");
    all.lines()
        .filter_map(|l| l.strip_prefix("xtask: package: "))
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("no .deb named in:\n{all}"))
}

#[test]
fn the_deb_installs_runs_and_purges() -> Result<()> {
    if !privileged("the_deb_installs_runs_and_purges") {
        return Ok(());
    }
    if run("systemd-analyze", &["--version"]).is_err() {
        missing(
            "the_deb_installs_runs_and_purges",
            "systemd-analyze (cargo xtask deps test)",
        );
        return Ok(());
    }
    ensure!(
        !installed(),
        "a {PACKAGE} package is already installed here: not touching it"
    );
    let deb = deb()?;
    ensure!(deb.is_file(), "{} is missing", deb.display());
    let deb_s = deb.to_string_lossy().into_owned();

    let info = run("dpkg-deb", &["-f", &deb_s, "Package", "Version", "Depends"])?;
    let info = text(&info);
    println!("{}: {}", deb.display(), info.replace('\n', "; "));
    ensure!(info.contains("Package: kowabunga"), "{info}");
    ensure!(info.contains("libc6 (>= "), "Depends names libc6: {info}");
    let listing = text(&run("dpkg-deb", &["-c", &deb_s])?);
    let has_cli = listing.lines().any(|l| l.ends_with(" ./usr/bin/kowabunga"));
    println!(
        "package holds /usr/bin/kowabunga: {has_cli} (control/src/bin/kowabunga.rs exists: {})",
        workspace().join("control/src/bin/kowabunga.rs").is_file()
    );

    let _purge = Purge;
    let out = dpkg(&["-i", &deb_s])?;
    ensure!(out.status.success(), "dpkg -i failed:\n{}", text(&out));
    ensure!(
        installed(),
        "dpkg -i succeeded but {PACKAGE} is not installed"
    );
    let files = text(&run("dpkg", &["-L", PACKAGE])?);
    for path in ["/usr/sbin/kowabungad", UNIT, CONFIG, EXAMPLES] {
        ensure!(Path::new(path).exists(), "{path} not installed");
        ensure!(files.lines().any(|l| l == path), "dpkg -L lacks {path}");
    }
    let conffiles = text(&run("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE])?);
    ensure!(conffiles.contains(CONFIG), "conffiles: {conffiles}");

    // The installed daemon checks the default config and every example.
    let mut configs = vec![PathBuf::from(CONFIG)];
    for entry in std::fs::read_dir(EXAMPLES)? {
        configs.push(entry?.path());
    }
    ensure!(configs.len() >= 3, "examples: {configs:?}");
    for conf in &configs {
        let conf = conf.to_string_lossy();
        let out = run("/usr/sbin/kowabungad", &["--config", &conf, "--check"])?;
        ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "config OK",
            "kowabungad --config {conf} --check:\n{}",
            text(&out)
        );
    }
    let help = run("/usr/sbin/kowabungad", &["--help"])?;
    ensure!(help.status.success(), "{}", text(&help));
    let help = String::from_utf8_lossy(&help.stdout);
    ensure!(
        help.contains("--config") && help.contains("--log-format"),
        "{help}"
    );
    if has_cli {
        let out = run("/usr/bin/kowabunga", &["--help"])?;
        ensure!(out.status.success(), "kowabunga --help:\n{}", text(&out));
    }

    // The installed unit, with its real paths.
    let out = run("systemd-analyze", &["verify", UNIT])?;
    let said = text(&out);
    ensure!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {UNIT}:\n{said}"
    );

    // Purge: every file and the config directory gone.
    let out = dpkg(&["-P", PACKAGE])?;
    ensure!(out.status.success(), "dpkg -P failed:\n{}", text(&out));
    ensure!(!installed(), "still installed after dpkg -P");
    for path in files.lines().filter(|l| {
        l.starts_with("/usr/sbin/") || l.starts_with("/usr/bin/") || l.starts_with("/etc/kowabunga")
    }) {
        ensure!(!Path::new(path).exists(), "{path} left behind");
    }
    for path in [
        "/usr/sbin/kowabungad",
        UNIT,
        CONFIG,
        EXAMPLES,
        "/etc/kowabunga",
    ] {
        if Path::new(path).exists() {
            bail!("{path} left behind after dpkg -P");
        }
    }
    Ok(())
}
