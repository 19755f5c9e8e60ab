//! One VRRP speaker in a lab router: our engine or keepalived 2.2, run in the
//! foreground with its own config and pid files, killed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::lab::{VrrpLab, VIP_CIDR, VRID};

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// `kowabunga-vrrp-node` (kowabungad's engine).
    Ours,
    /// keepalived (Debian package).
    Keepalived,
}

impl std::fmt::Display for Impl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Impl::Ours => "kowabunga",
            Impl::Keepalived => "keepalived",
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Implementation.
    pub imp: Impl,
    /// Priority 1..=255.
    pub priority: u8,
    /// Advert interval in ms (multiple of 10).
    pub interval_ms: u32,
    /// Preemption.
    pub preempt: bool,
    /// Virtual addresses with prefix.
    pub vips: Vec<String>,
    /// Ours only: checksum without pseudo-header.
    pub no_pseudo_header: bool,
    /// Ours only: take over at once on priority 0 (no Skew_Time).
    pub immediate_handover: bool,
}

impl Spec {
    /// A spec with the lab's VIP and preemption on.
    pub fn new(imp: Impl, priority: u8, interval_ms: u32) -> Self {
        Spec {
            imp,
            priority,
            interval_ms,
            preempt: true,
            vips: vec![VIP_CIDR.to_owned()],
            no_pseudo_header: false,
            immediate_handover: false,
        }
    }
}

/// The keepalived.conf for `spec` in router `i`.
pub fn keepalived_conf(spec: &Spec, i: usize) -> String {
    let advert = if spec.interval_ms.is_multiple_of(1000) {
        format!("{}", spec.interval_ms / 1000)
    } else {
        format!("{:.2}", f64::from(spec.interval_ms) / 1000.0)
    };
    format!(
        "global_defs {{\n  router_id r{}\n  vrrp_version 3\n  script_user root\n  enable_script_security\n}}\n\
         vrrp_instance VI_{VRID} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {VRID}\n  priority {}\n  advert_int {advert}\n{}  virtual_ipaddress {{\n{}  }}\n}}\n",
        i + 1,
        spec.priority,
        if spec.preempt { "" } else { "  nopreempt\n" },
        spec.vips.iter().map(|v| format!("    {v} dev eth0\n")).collect::<String>(),
    )
}

/// A running speaker.
#[derive(Debug)]
pub struct Node {
    child: Option<Child>,
    /// Implementation.
    pub imp: Impl,
    /// Router index in the lab.
    pub router: usize,
    pid_file: PathBuf,
    vrrp_pid_file: PathBuf,
    log: PathBuf,
}

impl Node {
    /// Starts `spec` in router `i` of `lab`; `ours` is the `kowabunga-vrrp-node` binary.
    pub fn start(lab: &VrrpLab, i: usize, spec: &Spec, ours: &Path) -> Result<Node> {
        let tag = format!("r{}-{}-{}", i + 1, spec.imp, std::process::id());
        let dir = lab.dir();
        let log = dir.join(format!("{tag}.log"));
        let pid_file = dir.join(format!("{tag}.pid"));
        let vrrp_pid_file = dir.join(format!("{tag}.vrrp.pid"));
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&vrrp_pid_file);
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = match spec.imp {
            Impl::Ours => {
                let mut c = lab.routers[i].command(ours);
                c.args(["--interface", "eth0", "--vrid", &VRID.to_string()])
                    .args(["--priority", &spec.priority.to_string()])
                    .args(["--interval-ms", &spec.interval_ms.to_string()]);
                for v in &spec.vips {
                    c.args(["--vip", v]);
                }
                if !spec.preempt {
                    c.arg("--no-preempt");
                }
                if spec.no_pseudo_header {
                    c.arg("--no-pseudo-header");
                }
                if spec.immediate_handover {
                    c.arg("--immediate-handover");
                }
                c
            }
            Impl::Keepalived => {
                let conf = dir.join(format!("{tag}.conf"));
                std::fs::write(&conf, keepalived_conf(spec, i))?;
                let mut c = lab.routers[i].command("keepalived");
                c.args(["-n", "-l", "-D", "-P", "-f"])
                    .arg(&conf)
                    .arg("-p")
                    .arg(&pid_file)
                    .arg("-r")
                    .arg(&vrrp_pid_file);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", spec.imp))?;
        let node = Node {
            child: Some(child),
            imp: spec.imp,
            router: i,
            pid_file,
            vrrp_pid_file,
            log,
        };
        node.wait_ready()?;
        Ok(node)
    }

    fn wait_ready(&self) -> Result<()> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            let ready = match self.imp {
                Impl::Ours => self.log_text().contains("kowabunga-vrrp-node: ready"),
                Impl::Keepalived => self.vrrp_pid().is_some(),
            };
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{} in r{} not ready in 10 s:\n{}",
            self.imp,
            self.router + 1,
            self.log_text()
        )
    }

    /// The speaker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times the speaker became master, from its log.
    pub fn became_master(&self) -> usize {
        let needle = match self.imp {
            Impl::Ours => "to=master",
            Impl::Keepalived => "Entering MASTER STATE",
        };
        self.log_text().matches(needle).count()
    }

    fn vrrp_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.vrrp_pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn pids(&self) -> Vec<i32> {
        let mut v = Vec::new();
        if self.imp == Impl::Keepalived {
            // The VRRP child first: killed after its parent, it would stop gracefully.
            v.extend(self.vrrp_pid());
        }
        if let Some(c) = &self.child {
            v.push(c.id() as i32);
        }
        v
    }

    /// SIGKILL: a crash (nothing is sent, the VIP stays where it was).
    pub fn kill9(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill(2) on a process this node started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.reap(Duration::from_secs(5));
    }

    /// SIGTERM: a graceful stop (priority 0, VIP removed). Waits up to 5 s.
    pub fn terminate(&mut self) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on the process this node started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        self.reap(Duration::from_secs(5));
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn reap(&mut self, limit: Duration) {
        let t0 = Instant::now();
        if let Some(mut c) = self.child.take() {
            while t0.elapsed() < limit {
                if !matches!(c.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if matches!(c.try_wait(), Ok(None)) {
                for pid in self.pids() {
                    // SAFETY: kill(2) on a process this node started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(pid) = self.vrrp_pid() {
            // A keepalived VRRP child outliving its parent would keep the VIP.
            // SAFETY: kill(2) on keepalived's child, which this node started.
            if unsafe { libc::kill(pid, 0) } == 0 {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // Stale pid files make the next keepalived refuse to start.
        let _ = std::fs::remove_file(&self.pid_file);
        let _ = std::fs::remove_file(&self.vrrp_pid_file);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
    }
}
