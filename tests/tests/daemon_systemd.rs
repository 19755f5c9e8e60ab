//! `kowabungad` as systemd runs it: the notify protocol on a test socket
//! (`NOTIFY_SOCKET`, `WATCHDOG_USEC`), and `--log-format json`.
//!
//! The daemon is a Kiwi-only node (no XDP, no interfaces) in a namespace of
//! the test's own, listening on `127.0.0.1:5353`. The test plays systemd:
//! it binds a unix datagram socket and expects `READY=1`, `WATCHDOG=1`
//! (every half `WATCHDOG_USEC`), `RELOADING=1` + `MONOTONIC_USEC=` then
//! `READY=1` on `SIGHUP` (also for a reload that fails), and `STOPPING=1`
//! on `SIGTERM`. Every stderr line must parse as a JSON object.
//!
//! Privileged: skipped with a message when not root, or failed where
//! skipping is forbidden (`kowabunga_testkit::privileged`). Needs
//! `target/<profile>/kowabungad` (`cargo xtask test` builds it first).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::daemon::{command, READY_LINE};
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::netns::{unique_prefix, Netns};
use kowabunga_tests::lab::topology::{ensure_bpffs, BPFFS};
use kowabunga_tests::lab::traffic::Background;
use nix::sys::signal::Signal;

/// `WATCHDOG_USEC` given to the daemon: it must feed every 250 ms.
const WATCHDOG_USEC: u64 = 500_000;

fn config(pin_dir: &Path, ttl: u32) -> String {
    format!(
        "node:\n  zone: zone-a\n  interfaces: {{}}\n  bpffs: {}\n\
         kiwi:\n  listen: [127.0.0.1:5353]\n  udp_workers: 1\n  ttl: {ttl}\n  zones:\n\
         \x20   - domain: notify.test\n      records:\n        - {{name: a, addresses: [10.0.0.1]}}\n",
        pin_dir.display()
    )
}

/// The test's end of the notify socket.
struct Manager {
    sock: UnixDatagram,
    /// Every datagram received, in order.
    seen: Vec<String>,
}

impl Manager {
    fn bind(path: &Path) -> Result<Self> {
        let sock =
            UnixDatagram::bind(path).with_context(|| format!("binding {}", path.display()))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Manager {
            sock,
            seen: Vec::new(),
        })
    }

    /// Receives until a datagram satisfies `want` (at most `timeout`);
    /// returns it.
    fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push(msg.clone());
                    if want(&msg) {
                        return Ok(msg);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        bail!("no {what} within {timeout:?}; received: {:?}", self.seen)
    }
}

fn has(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn kowabungad_speaks_the_systemd_notify_protocol_and_logs_json() -> Result<()> {
    if !privileged("kowabungad_speaks_the_systemd_notify_protocol_and_logs_json") {
        return Ok(());
    }
    let bin = find_kowabungad()?;
    ensure_bpffs()?;
    let prefix = unique_prefix();
    let dir = std::env::temp_dir().join(format!("{prefix}-systemd"));
    std::fs::create_dir_all(&dir)?;
    let pin_dir = Path::new(BPFFS).join(&prefix);
    let result = run(&bin, &prefix, &dir, &pin_dir);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&pin_dir);
    result
}

fn run(bin: &Path, prefix: &str, dir: &Path, pin_dir: &Path) -> Result<()> {
    let ns = Netns::new(&format!("{prefix}-sd"))?;
    let conf: PathBuf = dir.join("kowabungad.yaml");
    std::fs::write(&conf, config(pin_dir, 60))?;
    let socket = dir.join("notify.sock");
    let mut manager = Manager::bind(&socket)?;

    let mut cmd = command(bin, &conf);
    cmd.args(["--log-format", "json"])
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string());
    ns.enter_net_only(&mut cmd)?;
    let started = Instant::now();
    let mut daemon = Background::spawn("kowabungad (notify)", cmd)?;

    let ready = manager
        .until("READY=1", Duration::from_secs(20), |m| has(m, "READY=1"))
        .with_context(|| daemon.output())?;
    println!("READY=1 after {:?}: {ready:?}", started.elapsed());
    ensure!(ready.contains("STATUS=ready: kiwi"), "{ready:?}");
    // The log line is written just before READY=1; the pipe may lag.
    daemon
        .wait_for(READY_LINE, Duration::from_secs(5))
        .context("READY=1 comes with the ready line")?;
    ensure!(daemon.count(READY_LINE) == 1, "{}", daemon.output());

    // The watchdog, fed from the main loop.
    let t = Instant::now();
    for _ in 0..3 {
        manager.until("WATCHDOG=1", Duration::from_secs(5), |m| {
            m == "WATCHDOG=1\n"
        })?;
    }
    println!(
        "3 x WATCHDOG=1 in {:?} (WATCHDOG_USEC={WATCHDOG_USEC})",
        t.elapsed()
    );

    // A good reload: RELOADING=1 with a timestamp, then READY=1.
    std::fs::write(&conf, config(pin_dir, 30))?;
    daemon.signal(Signal::SIGHUP)?;
    let reloading = manager.until("RELOADING=1", Duration::from_secs(10), |m| {
        has(m, "RELOADING=1")
    })?;
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("MONOTONIC_USEC in {reloading:?}"))?;
    ensure!(usec > 0, "{reloading:?}");
    let again = manager.until("READY=1 after the reload", Duration::from_secs(10), |m| {
        has(m, "READY=1")
    })?;
    ensure!(!again.contains("failed"), "{again:?}");
    daemon.wait_for("reload took", Duration::from_secs(5))?;

    // A failed reload: still READY=1 (the old config runs), said in STATUS.
    std::fs::write(&conf, "node: {zone: [not a string]}\n")?;
    daemon.signal(Signal::SIGHUP)?;
    manager.until("RELOADING=1 (bad file)", Duration::from_secs(10), |m| {
        has(m, "RELOADING=1")
    })?;
    let failed = manager.until(
        "READY=1 after a failed reload",
        Duration::from_secs(10),
        |m| has(m, "READY=1"),
    )?;
    ensure!(failed.contains("last reload failed"), "{failed:?}");
    ensure!(daemon.running(), "a failed reload must not stop the daemon");
    manager.until(
        "WATCHDOG=1 after the reloads",
        Duration::from_secs(5),
        |m| m == "WATCHDOG=1\n",
    )?;

    // Stop: STOPPING=1, exit 0.
    daemon.signal(Signal::SIGTERM)?;
    manager.until("STOPPING=1", Duration::from_secs(10), |m| {
        has(m, "STOPPING=1")
    })?;
    let code = daemon.wait_exit(Duration::from_secs(10))?;
    ensure!(code == Some(0), "exit code {code:?}:\n{}", daemon.output());

    // The order systemd relies on.
    let kinds: Vec<&str> = manager
        .seen
        .iter()
        .filter_map(|m| {
            ["READY=1", "RELOADING=1", "STOPPING=1"]
                .into_iter()
                .find(|k| has(m, k))
        })
        .collect();
    ensure!(
        kinds
            == [
                "READY=1",
                "RELOADING=1",
                "READY=1",
                "RELOADING=1",
                "READY=1",
                "STOPPING=1"
            ],
        "notification order: {kinds:?}"
    );
    let watchdogs = manager.seen.iter().filter(|m| *m == "WATCHDOG=1\n").count();
    println!(
        "{} datagrams, {watchdogs} WATCHDOG=1 over {:?}",
        manager.seen.len(),
        started.elapsed()
    );

    // --log-format json: every line one object with a level and a message.
    let lines: Vec<String> = daemon
        .lines()
        .into_iter()
        .filter_map(|l| l.strip_prefix("stderr: ").map(str::to_owned))
        .collect();
    ensure!(lines.len() >= 4, "too few log lines: {lines:?}");
    let mut messages = Vec::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON line: {line}"))?;
        ensure!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        let message = v["fields"]["message"]
            .as_str()
            .with_context(|| format!("no fields.message: {line}"))?;
        messages.push(message.to_owned());
    }
    ensure!(messages.iter().any(|m| m == READY_LINE), "{messages:?}");
    ensure!(
        messages
            .iter()
            .any(|m| m.starts_with("reload failed, keeping the running config")),
        "{messages:?}"
    );
    Ok(())
}
