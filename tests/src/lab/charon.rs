//! strongSwan's `charon` run by hand inside a lab namespace: its own
//! `strongswan.conf` (`STRONGSWAN_CONF`), VICI socket and log in a
//! directory of the test, and a private `/run` (charon's pid file is fixed
//! at `/var/run/charon.pid`, so two charons need two `/run`s).
//!
//! ESP runs in userspace (`kernel-libipsec`: the lab kernel has no ESP),
//! so every tunnel is UDP-encapsulated; retransmissions are short (1 s,
//! 2 tries) so a dead peer is seen in seconds, not minutes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::netns::Netns;
use super::traffic::Background;

/// charon's binary (package `strongswan-charon`).
pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// The plugins the lab's charons load, in order (openssl for the ECP,
/// brainpool and curve448 groups, curve25519 for 25519, gmp for MODP,
/// kdf for strongSwan 5.9.6+ key derivation).
pub const PLUGINS: &str = "random nonce openssl aes sha1 sha2 hmac gmp curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici updown";

/// A running charon.
#[derive(Debug)]
pub struct Charon {
    dir: PathBuf,
    ns: String,
    process: Option<Background>,
}

impl Charon {
    /// Writes the configuration into `dir` and starts charon in `ns`;
    /// returns once its VICI socket answers (at most 10 s).
    pub fn start(ns: &Netns, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = format!(
            "charon {{\n  load_modular = no\n  load = {PLUGINS}\n  install_routes = yes\n  retransmit_timeout = 1.0\n  retransmit_tries = 2\n  retransmit_base = 1.4\n  filelog {{\n    log {{\n      path = {log}\n      default = 1\n      ike = 1\n      flush_line = yes\n      time_format = %T\n    }}\n  }}\n  plugins {{\n    vici {{\n      socket = unix://{sock}\n    }}\n  }}\n}}\n",
            log = dir.join("charon.log").display(),
            sock = dir.join("charon.vici").display(),
        );
        std::fs::write(dir.join("strongswan.conf"), conf)?;
        let _ = std::fs::remove_file(dir.join("charon.vici"));
        let mut charon = Charon {
            dir: dir.to_owned(),
            ns: ns.name().to_owned(),
            process: None,
        };
        charon.spawn(ns)?;
        Ok(charon)
    }

    fn spawn(&mut self, ns: &Netns) -> Result<()> {
        let mut cmd = ns.command("sh");
        cmd.args([
            "-c",
            &format!("mount -t tmpfs kowabunga-lab-run /run && exec {CHARON}"),
        ])
        .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"));
        let process = Background::spawn(&format!("charon in {}", self.ns), cmd).context(
            "starting charon (apt-get install strongswan-charon libcharon-extra-plugins)",
        )?;
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.swanctl(&["--stats"]).is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "charon in {} did not answer on {} within 10 s: {}",
            self.ns,
            self.vici().display(),
            self.log_tail()
        )
    }

    /// Starts charon again after [`Charon::stop`] or [`Charon::kill`].
    pub fn restart(&mut self, ns: &Netns) -> Result<()> {
        self.stop();
        self.spawn(ns)
    }

    /// Its VICI socket.
    pub fn vici(&self) -> PathBuf {
        self.dir.join("charon.vici")
    }

    /// Runs `swanctl --uri unix://SOCKET ARGS` (10 s at most).
    pub fn swanctl(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = std::process::Command::new("timeout");
        cmd.arg("10")
            .arg("swanctl")
            .args(args)
            .arg("--uri")
            .arg(format!("unix://{}", self.vici().display()));
        cmd.output()
            .context("running swanctl (apt-get install strongswan-swanctl)")
    }

    /// Writes `swanctl.conf` (a remote office's own file) and loads it:
    /// connections and secrets, replacing what was loaded.
    pub fn load(&self, swanctl_conf: &str) -> Result<()> {
        let file = self.dir.join("swanctl.conf");
        std::fs::write(&file, swanctl_conf)?;
        let path = file.display().to_string();
        let out = self.swanctl(&["--load-all", "--clear", "--file", &path])?;
        if !out.status.success() {
            bail!(
                "swanctl --load-all: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `swanctl --list-sas` output.
    pub fn list_sas(&self) -> String {
        self.swanctl(&["--list-sas"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The end of charon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stops charon (`SIGTERM`: it deletes its SAs and tells the peers).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(5));
        }
    }

    /// Kills charon (`SIGKILL`: the peers are not told).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = p.wait_exit(Duration::from_secs(5));
        }
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        self.stop();
    }
}
