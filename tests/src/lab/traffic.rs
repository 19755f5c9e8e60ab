//! Bounded traffic inside namespaces: background servers and one-shot clients.
//!
//! Servers are [`Background`] processes, killed on drop; clients and pings run to
//! completion under a hard timeout ([`run_bounded`]).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::netns::Netns;

/// A process running in the background whose output lines are collected; it is
/// killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Background {
    what: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Background {
    /// Starts `cmd` with stdout and stderr captured line by line (stderr lines are
    /// prefixed with `stderr: `).
    pub fn spawn(what: &str, mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}: {cmd:?}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            collect(out, "", Arc::clone(&lines));
        }
        if let Some(err) = child.stderr.take() {
            collect(err, "stderr: ", Arc::clone(&lines));
        }
        Ok(Background {
            what: what.to_owned(),
            child,
            lines,
        })
    }

    /// The output lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (at most `timeout`) for an output line containing `needle`, returning it.
    /// Fails early, with the output so far, if the process exits first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for_nth(needle, 1, timeout)
    }

    /// Waits (at most `timeout`) for the `n`-th output line containing `needle`.
    pub fn wait_for_nth(&mut self, needle: &str, n: usize, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .nth(n.saturating_sub(1))
            {
                return Ok(line);
            }
            if let Some(status) = self.child.try_wait()? {
                // Let the reader threads drain the pipes before reporting.
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "{} exited ({status}) before printing {needle:?}; output:\n{}",
                    self.what,
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}; output:\n{}",
                    self.what,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Counts output lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// The output so far as one string.
    pub fn output(&self) -> String {
        self.lines().join("\n")
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `timeout` for the process to exit by itself; its exit code, or
    /// `None` if it is still running (or was killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(50));
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        let pid =
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).context("pid out of range")?);
        nix::sys::signal::kill(pid, signal)
            .with_context(|| format!("sending {signal} to {}", self.what))
    }

    /// Stops the process: `SIGTERM`, then `SIGKILL` after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.running() {
            let _ = self.signal(nix::sys::signal::Signal::SIGTERM);
            if matches!(self.wait_exit(grace), Ok(None)) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(pipe: impl Read + Send + 'static, prefix: &'static str, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("{prefix}{line}"));
        }
    });
}

/// How a bounded command ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code; `None` when killed (by the timeout or a signal).
    pub code: Option<i32>,
    /// True when the hard timeout killed it.
    pub timed_out: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// True when it exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The first stdout line starting with `prefix`, without the prefix.
    pub fn field(&self, prefix: &str) -> Option<&str> {
        self.stdout.lines().find_map(|l| l.strip_prefix(prefix))
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.timed_out, self.code) {
            (true, _) => write!(f, "killed after the timeout")?,
            (false, Some(c)) => write!(f, "exit {c}")?,
            (false, None) => write!(f, "killed by a signal")?,
        }
        for l in self.stdout.lines() {
            write!(f, "\n  | {l}")?;
        }
        for l in self.stderr.lines() {
            write!(f, "\n  ! {l}")?;
        }
        Ok(())
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn run_bounded(cmd: Command, timeout: Duration) -> Result<Finished> {
    let mut bg = Background::spawn("command", cmd)?;
    let code = bg.wait_exit(timeout)?;
    let timed_out = code.is_none() && bg.running();
    if timed_out {
        let _ = bg.child.kill();
        let _ = bg.child.wait();
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for l in bg.lines() {
        let (buf, l) = match l.strip_prefix("stderr: ") {
            Some(rest) => (&mut stderr, rest.to_owned()),
            None => (&mut stdout, l),
        };
        buf.push_str(&l);
        buf.push('\n');
    }
    Ok(Finished {
        code,
        timed_out,
        stdout,
        stderr,
    })
}

/// Runs `ping -c 3 -W 1 DEST` inside `ns` (10 s hard limit).
pub fn ping(ns: &Netns, dest: &str) -> Result<Finished> {
    let mut cmd = ns.command("ping");
    cmd.args(["-n", "-c", "3", "-W", "1", dest]);
    run_bounded(cmd, Duration::from_secs(10))
}

/// The `kowabunga-lab-agent` binary, run inside namespaces.
#[derive(Debug, Clone)]
pub struct Agent {
    path: PathBuf,
}

impl Agent {
    /// The agent at `path` (`env!("CARGO_BIN_EXE_kowabunga-lab-agent")` in tests).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Agent {
            path: path.as_ref().to_path_buf(),
        }
    }

    /// `kowabunga-lab-agent ARGS` inside `ns` (not started).
    pub fn command(&self, ns: &Netns, args: &[&str]) -> Command {
        let mut cmd = ns.command(&self.path);
        cmd.args(args);
        cmd
    }

    fn server(&self, ns: &Netns, kind: &str, port: u16, seconds: u64) -> Result<Background> {
        let (port, secs) = (port.to_string(), seconds.to_string());
        let cmd = self.command(ns, &[kind, "--port", &port, "--seconds", &secs]);
        let mut bg = Background::spawn(&format!("{kind} in {}", ns.name()), cmd)?;
        bg.wait_for("ready ", Duration::from_secs(5))?;
        Ok(bg)
    }

    /// A TCP server on `port` in `ns` that greets with `peer=IP:PORT` and echoes lines,
    /// living `seconds` at most; returns once it listens.
    pub fn tcp_echo_server(&self, ns: &Netns, port: u16, seconds: u64) -> Result<Background> {
        self.server(ns, "tcp-echo-server", port, seconds)
    }

    /// [`Agent::tcp_echo_server`] listening on `bind` (`::`: IPv6 and IPv4).
    pub fn tcp_echo_server_on(
        &self,
        ns: &Netns,
        bind: &str,
        port: u16,
        seconds: u64,
    ) -> Result<Background> {
        let (port, secs) = (port.to_string(), seconds.to_string());
        let cmd = self.command(
            ns,
            &[
                "tcp-echo-server",
                "--port",
                &port,
                "--seconds",
                &secs,
                "--bind",
                bind,
            ],
        );
        let mut bg =
            Background::spawn(&format!("tcp-echo-server on {bind} in {}", ns.name()), cmd)?;
        bg.wait_for("ready ", Duration::from_secs(5))?;
        Ok(bg)
    }

    /// A UDP server on `port` in `ns` that answers `peer=IP:PORT` and `echo=...`.
    pub fn udp_echo_server(&self, ns: &Netns, port: u16, seconds: u64) -> Result<Background> {
        self.server(ns, "udp-echo-server", port, seconds)
    }

    fn named_server(
        &self,
        ns: &Netns,
        kind: &str,
        port: u16,
        name: &str,
        seconds: u64,
    ) -> Result<Background> {
        let (port, secs) = (port.to_string(), seconds.to_string());
        let cmd = self.command(
            ns,
            &[kind, "--port", &port, "--seconds", &secs, "--name", name],
        );
        let mut bg = Background::spawn(&format!("{kind} {name} in {}", ns.name()), cmd)?;
        bg.wait_for("ready ", Duration::from_secs(5))?;
        Ok(bg)
    }

    /// A TCP server like [`Agent::tcp_echo_server`] whose greeting starts with
    /// `name=NAME ` (a Konvey lab backend).
    pub fn tcp_name_server(
        &self,
        ns: &Netns,
        port: u16,
        name: &str,
        seconds: u64,
    ) -> Result<Background> {
        self.named_server(ns, "tcp-echo-server", port, name, seconds)
    }

    /// A UDP server like [`Agent::udp_echo_server`] whose answers start with a
    /// `name=NAME` line.
    pub fn udp_name_server(
        &self,
        ns: &Netns,
        port: u16,
        name: &str,
        seconds: u64,
    ) -> Result<Background> {
        self.named_server(ns, "udp-echo-server", port, name, seconds)
    }

    /// One TCP exchange with `to` (`IP:PORT`) from `ns`, 3 s timeout.
    pub fn tcp_client(&self, ns: &Netns, to: &str) -> Result<Finished> {
        self.tcp_client_timeout(ns, to, Duration::from_secs(3))
    }

    /// One TCP exchange with `to` from `ns` with the given connect/answer timeout.
    pub fn tcp_client_timeout(&self, ns: &Netns, to: &str, timeout: Duration) -> Result<Finished> {
        let ms = timeout.as_millis().to_string();
        let cmd = self.command(ns, &["tcp-client", "--to", to, "--timeout-ms", &ms]);
        run_bounded(cmd, timeout * 2 + Duration::from_secs(2))
    }

    /// One UDP exchange with `to` from `ns`, 3 s timeout.
    pub fn udp_client(&self, ns: &Netns, to: &str) -> Result<Finished> {
        let cmd = self.command(ns, &["udp-client", "--to", to, "--timeout-ms", "3000"]);
        run_bounded(cmd, Duration::from_secs(8))
    }

    /// One UDP exchange with `to` from `ns`, source port `sport`, 3 s timeout:
    /// a new flow for sure (an ephemeral port may be one an earlier flow
    /// used, still in conntrack).
    pub fn udp_client_from(&self, ns: &Netns, to: &str, sport: u16) -> Result<Finished> {
        let sport = sport.to_string();
        let cmd = self.command(
            ns,
            &[
                "udp-client",
                "--to",
                to,
                "--timeout-ms",
                "3000",
                "--sport",
                &sport,
            ],
        );
        run_bounded(cmd, Duration::from_secs(8))
    }

    /// Starts `udp-hold` in the background: `rate` datagrams a second to `to`
    /// for `seconds`, each waiting for its echo; it exits 0 only if every one
    /// was answered, and prints `sent=N answered=M lost=K`.
    pub fn udp_hold(&self, ns: &Netns, to: &str, seconds: u64, rate: u64) -> Result<Background> {
        let (secs, rate) = (seconds.to_string(), rate.to_string());
        let cmd = self.command(
            ns,
            &["udp-hold", "--to", to, "--seconds", &secs, "--rate", &rate],
        );
        Background::spawn(&format!("udp-hold in {}", ns.name()), cmd)
    }

    /// Starts `flood` in the background: `count` packets to `to` at `rate` a
    /// second (raw socket): `tcp-syn` bare SYNs from random sources in
    /// `spoof` (a CIDR), or `udp` datagrams from this host, each from its own
    /// source port (from 10000 up), so each is a new flow. Prints `sent=N`.
    pub fn flood(
        &self,
        ns: &Netns,
        kind: &str,
        to: &str,
        count: u64,
        rate: u64,
        spoof: Option<&str>,
    ) -> Result<Background> {
        let (count, rate) = (count.to_string(), rate.to_string());
        let mut args = vec![
            "flood", "--kind", kind, "--to", to, "--count", &count, "--rate", &rate,
        ];
        if let Some(cidr) = spoof {
            args.extend(["--spoof", cidr]);
        }
        let cmd = self.command(ns, &args);
        Background::spawn(&format!("flood {kind} in {}", ns.name()), cmd)
    }

    /// Starts `tcp-hold` in the background with one exchange every
    /// `interval_ms` (the connection idles in between): `seconds * 1000 /
    /// interval_ms` exchanges; it exits 0 only if every one succeeded.
    pub fn tcp_hold_every(
        &self,
        ns: &Netns,
        to: &str,
        seconds: u64,
        interval_ms: u64,
    ) -> Result<Background> {
        let (secs, every) = (seconds.to_string(), interval_ms.to_string());
        let cmd = self.command(
            ns,
            &[
                "tcp-hold",
                "--to",
                to,
                "--seconds",
                &secs,
                "--interval-ms",
                &every,
            ],
        );
        Background::spawn(&format!("tcp-hold in {}", ns.name()), cmd)
    }

    /// Starts `tcp-hold` in the background: one connection to `to` exchanging a line
    /// every 200 ms for `seconds`; it exits 0 only if every exchange succeeded.
    pub fn tcp_hold(&self, ns: &Netns, to: &str, seconds: u64) -> Result<Background> {
        let secs = seconds.to_string();
        let cmd = self.command(ns, &["tcp-hold", "--to", to, "--seconds", &secs]);
        Background::spawn(&format!("tcp-hold in {}", ns.name()), cmd)
    }
}
