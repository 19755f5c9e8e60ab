//! A throwaway `libvirtd` (qemu:///system) started by the test itself, by
//! hand (no systemd), isolated from the host:
//!
//! * private mount namespace: `/etc/libvirt`, `/run/libvirt`,
//!   `/var/lib/libvirt`, `/var/cache/libvirt` and `/var/log/libvirt` are
//!   bind mounts of directories under one temporary directory, with our own
//!   `libvirtd.conf` and `qemu.conf` (user/group root, `security_driver =
//!   "none"`, `stdio_handler = "file"`, no namespaces, no cgroup
//!   controllers);
//! * private network namespace, where the project bridges are created, so
//!   guests' taps never touch the host's network;
//! * the socket is `<tmp>/run/libvirt-sock`, reachable from the test.
//!
//! The daemon is started by pid and stopped by pid (SIGTERM, then SIGKILL
//! after a bounded wait) when the guard drops, also on panic; qemu
//! processes it left behind are killed by the pids in `<tmp>/run/qemu/*.pid`.

// Shared by several test binaries, each using a part.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running libvirtd; stops it and removes its directory on drop.
pub struct Libvirtd {
    dir: PathBuf,
    child: Option<Child>,
    /// How long the daemon took to accept connections.
    pub startup: Duration,
}

const QEMU_CONF: &str = r#"# kowabunga-lib test libvirtd
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
cgroup_controllers = [ ]
migration_address = "192.0.2.10"
migration_host = "192.0.2.10"
"#;

/// A host UUID per daemon (libvirt refuses to migrate to "the same host").
fn host_uuid(tag: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes().chain(std::process::id().to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!(
        "6b6f7761-6275-4e67-8{:03x}-{:012x}",
        h >> 52,
        h & 0xffff_ffff_ffff
    )
}

/// Makes sure the `libvirt-qemu` user the qemu driver looks up exists.
fn ensure_libvirt_qemu_user() -> Result<(), String> {
    let known = Command::new("id")
        .arg("libvirt-qemu")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if known {
        return Ok(());
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/var/lib/libvirt",
            "--shell",
            "/usr/sbin/nologin",
            "libvirt-qemu",
        ])
        .output()
        .map_err(|e| format!("useradd: {e}"))?;
    // Another test may have created it meanwhile (exit 9: exists).
    if out.status.success() || out.status.code() == Some(9) {
        Ok(())
    } else {
        Err(format!(
            "useradd libvirt-qemu: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Libvirtd {
    /// Starts libvirtd with `bridges` created (up) in its network namespace,
    /// and waits (bounded) until `qemu:///system` answers on its socket.
    pub fn start(tag: &str, bridges: &[&str]) -> Result<Libvirtd, String> {
        Self::start_in(tag, bridges, None)
    }

    /// Like [`start`](Self::start), but in the network namespace of
    /// `neighbour` when given (two daemons that can migrate to each other
    /// over 192.0.2.10, an address of that namespace only; the bridges are
    /// then the neighbour's).
    pub fn start_in(
        tag: &str,
        bridges: &[&str],
        neighbour: Option<&Libvirtd>,
    ) -> Result<Libvirtd, String> {
        ensure_libvirt_qemu_user()?;
        let dir = std::env::temp_dir().join(format!("kw-libvirtd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for d in ["etc/qemu/networks/autostart", "run", "lib", "cache", "log"] {
            fs::create_dir_all(dir.join(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
        }
        let run = dir.join("run");
        fs::write(
            dir.join("etc/libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{}\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\nunix_sock_rw_perms = \"0700\"\nlog_outputs = \"3:file:{}\"\nhost_uuid = \"{}\"\n",
                run.display(),
                dir.join("libvirtd.log").display(),
                host_uuid(tag)
            ),
        )
        .map_err(|e| format!("write libvirtd.conf: {e}"))?;
        fs::write(dir.join("etc/qemu.conf"), QEMU_CONF)
            .map_err(|e| format!("write qemu.conf: {e}"))?;
        for f in ["libvirt.conf", "libvirt-admin.conf"] {
            let _ = fs::copy(Path::new("/etc/libvirt").join(f), dir.join("etc").join(f));
        }
        let mut script = String::from("set -e\nmount --make-rprivate /\n");
        for (src, dst) in [
            ("etc", "/etc/libvirt"),
            ("run", "/run/libvirt"),
            ("lib", "/var/lib/libvirt"),
            ("cache", "/var/cache/libvirt"),
            ("log", "/var/log/libvirt"),
        ] {
            script.push_str(&format!(
                "mkdir -p {dst}\nmount --bind '{}' {dst}\n",
                dir.join(src).display()
            ));
        }
        // The namespace's own address for migration traffic (libvirt refuses
        // a loopback migration_host).
        script.push_str("ip link set lo up\n");
        if neighbour.is_none() {
            script.push_str("ip addr add 192.0.2.10/32 dev lo\n");
        }
        for b in bridges.iter().filter(|_| neighbour.is_none()) {
            script.push_str(&format!(
                "ip link add '{b}' type bridge\nip link set '{b}' up\n"
            ));
        }
        script.push_str(&format!(
            "exec libvirtd --config '{}' --pid-file '{}'\n",
            dir.join("etc/libvirtd.conf").display(),
            dir.join("libvirtd.pid").display()
        ));
        let stderr = fs::File::create(dir.join("libvirtd.stderr"))
            .map_err(|e| format!("libvirtd.stderr: {e}"))?;
        let t0 = Instant::now();
        let mut cmd = match neighbour.and_then(|n| n.child.as_ref()) {
            Some(n) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/proc/{}/ns/net", n.id())).args([
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                ]);
                c
            }
            None => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--net", "--propagation", "private"]);
                c
            }
        };
        let child = cmd
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn unshare/libvirtd: {e}"))?;
        let mut d = Libvirtd {
            dir,
            child: Some(child),
            startup: Duration::ZERO,
        };
        let deadline = t0 + Duration::from_secs(60);
        let sock = d.socket();
        loop {
            if let Some(c) = d.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    d.child = None;
                    return Err(format!(
                        "libvirtd exited at startup ({status}): {}",
                        d.log_tail()
                    ));
                }
            }
            if sock.exists() {
                let ok = Command::new("virsh")
                    .args(["-c", &d.uri(), "version"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "libvirtd did not answer within 60 s: {}",
                    d.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        d.startup = t0.elapsed();
        Ok(d)
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/libvirt-sock")
    }

    /// The connection URI of this daemon.
    pub fn uri(&self) -> String {
        format!("qemu:///system?socket={}", self.socket().display())
    }

    /// The last lines of the daemon's logs, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for f in ["libvirtd.stderr", "libvirtd.log"] {
            if let Ok(text) = fs::read_to_string(self.dir.join(f)) {
                let lines: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("[{f}] "));
                out.push_str(&lines.into_iter().rev().collect::<Vec<_>>().join("\n"));
                out.push('\n');
            }
        }
        out
    }

    /// The qemu log of a domain.
    pub fn qemu_log(&self, domain: &str) -> String {
        fs::read_to_string(self.dir.join(format!("log/qemu/{domain}.log"))).unwrap_or_default()
    }

    fn kill_leftover_qemus(&self) {
        let Ok(entries) = fs::read_dir(self.dir.join("run/qemu")) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("pid") {
                continue;
            }
            let Some(pid) = fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            else {
                continue;
            };
            // Only the qemu of that domain: the pid file is our daemon's and
            // the process's command line names the domain.
            let Some(domain) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            let ours = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&format!("guest={domain}")))
                .unwrap_or(false);
            if ours {
                // SAFETY: plain kill(2) of a pid we started (through libvirtd).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.kill_leftover_qemus();
        if std::env::var("KOWABUNGA_KEEP_TEST_DIRS").is_err() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
