//! `kowabungad` run inside the lab's gateway namespace.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::netns::Netns;
use super::traffic::Background;

/// The log line `kowabungad` prints once its programs are attached and the
/// configuration is applied.
pub const READY_LINE: &str = "kowabungad ready";

/// How long [`Daemon::start`] waits for [`READY_LINE`].
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `kowabungad`; stopped (SIGTERM, then SIGKILL after 3 s) on drop.
#[derive(Debug)]
pub struct Daemon {
    process: Background,
}

impl Daemon {
    /// Starts `bin --config config` inside `ns` and waits for [`READY_LINE`]
    /// (at most [`READY_TIMEOUT`]).
    ///
    /// Only the network namespace is switched (not `ip netns exec`, which remounts
    /// `/sys` and would hide the host's bpffs where the daemon pins its maps).
    pub fn start(ns: &Netns, bin: &Path, config: &Path) -> Result<Self> {
        let mut cmd = command(bin, config);
        ns.enter_net_only(&mut cmd)?;
        Self::spawn(&format!("kowabungad in {}", ns.name()), cmd)
    }

    /// Starts `bin --config config` in the test's own namespaces: the
    /// configuration names the network namespace (`node.netns`) and the
    /// daemon enters it itself.
    pub fn start_here(bin: &Path, config: &Path) -> Result<Self> {
        Self::spawn("kowabungad (node.netns)", command(bin, config))
    }

    fn spawn(what: &str, cmd: Command) -> Result<Self> {
        let mut process = Background::spawn(what, cmd)?;
        process
            .wait_for(READY_LINE, READY_TIMEOUT)
            .context("kowabungad did not become ready")?;
        Ok(Daemon { process })
    }

    /// Kills the daemon with `SIGKILL` (a crash: no clean-up at all) and
    /// waits until it is gone (at most 5 s).
    pub fn kill(&mut self) -> Result<()> {
        self.process.signal(nix::sys::signal::Signal::SIGKILL)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.process.running() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "kowabungad survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Asks the daemon to reload its configuration file (`SIGHUP`).
    pub fn reload(&self) -> Result<()> {
        self.process.signal(nix::sys::signal::Signal::SIGHUP)
    }

    /// True while the daemon runs.
    pub fn running(&mut self) -> bool {
        self.process.running()
    }

    /// The daemon's log so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        self.process
            .lines()
            .iter()
            .map(|l| l.strip_prefix("stderr: ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The number of log lines containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.process.count(needle)
    }

    /// Waits at most `timeout` for the `n`-th log line containing `needle`.
    pub fn wait_log(&mut self, needle: &str, n: usize, timeout: Duration) -> Result<String> {
        self.process.wait_for_nth(needle, n, timeout)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(3));
    }
}

/// `bin --config config` with the lab's log settings (not started).
pub fn command(bin: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(config).env("NO_COLOR", "1");
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd
}
