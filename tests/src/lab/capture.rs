//! Captures on a lab host's interface with `tcpdump`, read back as one
//! line a packet (`tcpdump -n -r`): what really crossed the wire.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::netns::Netns;
use super::traffic::Background;

/// A running capture; stopped (and its file removed) on drop.
#[derive(Debug)]
pub struct Capture {
    process: Background,
    file: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -n --immediate-mode -i IFACE -w FILE` inside `ns`
    /// (IPv4 and IPv6, no filter; immediate mode: libpcap's ring otherwise
    /// hands packets over a block at a time, up to 1 s late, and the last
    /// block is lost when the capture stops) and waits until it listens (at
    /// most 5 s).
    pub fn start(ns: &Netns, iface: &str, file: &Path) -> Result<Self> {
        let mut cmd = ns.command("tcpdump");
        cmd.args(["-n", "-U", "--immediate-mode", "-i", iface, "-w"])
            .arg(file);
        let mut process = Background::spawn(&format!("tcpdump in {}", ns.name()), cmd)
            .context("starting tcpdump (apt-get install tcpdump)")?;
        process
            .wait_for("listening on", Duration::from_secs(5))
            .context("tcpdump did not start")?;
        Ok(Capture {
            process,
            file: file.to_owned(),
        })
    }

    /// Stops the capture (`SIGINT`: tcpdump flushes its file) and returns
    /// every packet, one line each.
    pub fn finish(mut self) -> Result<Vec<String>> {
        self.process.signal(nix::sys::signal::Signal::SIGINT)?;
        self.process.wait_exit(Duration::from_secs(5))?;
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.file)
            .output()
            .context("reading the capture")?;
        anyhow::ensure!(
            out.status.success(),
            "tcpdump -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(2));
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The packets of a capture whose IPv4 source is in `prefix` (`"10.0.0."`):
/// `tcpdump -n` prints `IP SRC.PORT > DST.PORT: ...` (or `IP SRC > DST`).
pub fn from_source<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| {
            l.split_once(" IP ")
                .map(|(_, rest)| rest.starts_with(prefix))
                .unwrap_or(false)
        })
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_from_tcpdump_lines() {
        let lines: Vec<String> = [
            "11:00:00.000001 IP 203.0.113.10.40000 > 203.0.113.1.7000: Flags [S], seq 1",
            "11:00:00.000002 IP 10.0.0.10.40001 > 203.0.113.1.7000: UDP, length 5",
            "11:00:00.000003 IP 203.0.113.1 > 10.0.0.10: ICMP echo reply",
            "11:00:00.000004 ARP, Request who-has 203.0.113.2 tell 203.0.113.1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(from_source(&lines, "10.0.0.").len(), 1);
        assert_eq!(from_source(&lines, "203.0.113.10.").len(), 1);
        assert_eq!(from_source(&lines, "203.0.113.").len(), 2);
    }
}
