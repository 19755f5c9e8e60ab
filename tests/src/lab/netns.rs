//! Network namespaces and veth pairs with RAII cleanup.
//!
//! A [`Netns`] is created with `ip netns add` and deleted with `ip netns del` when
//! dropped, including while a test panics (drop runs during unwinding). Deleting a
//! namespace deletes the veth ends inside it, and with them their peers.

use std::fs::File;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

/// Runs `ip ARGS`, failing with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<()> {
    checked(Command::new("ip").args(args))
}

/// Runs a command to completion; an error carrying its stderr when it fails.
pub fn checked(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A unique, short name prefix for one lab: `kwl<pid % 10000><n>` where `n` counts the
/// labs of this process, so parallel test processes and threads never clash.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "kwl{}{}",
        std::process::id() % 10_000,
        char::from(b'a' + (n % 26) as u8)
    )
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (a stale one of the same name, left by a killed
    /// process with the same prefix, is deleted first) and brings its `lo` up.
    pub fn new(name: &str) -> Result<Self> {
        if std::path::Path::new("/run/netns").join(name).exists() {
            let _ = ip(&["netns", "del", name]);
        }
        ip(&["netns", "add", name]).with_context(|| format!("creating netns {name}"))?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    ///
    /// `ip netns exec` also remounts `/sys` for the namespace, which hides the
    /// host's bpffs; use [`Netns::enter_net_only`] for programs that pin BPF objects.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Makes `cmd` switch to this network namespace only (`setns(CLONE_NEWNET)` in the
    /// child before exec), keeping the caller's mount namespace and so `/sys/fs/bpf`.
    pub fn enter_net_only(&self, cmd: &mut Command) -> Result<()> {
        use std::os::fd::{AsRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let path = format!("/run/netns/{}", self.name);
        let file: OwnedFd = File::open(&path)
            .with_context(|| format!("opening {path}"))?
            .into();
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // async-signal-safe `setns` syscall on a descriptor it owns (moved in).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// `GET path` over plain TCP to `addr` inside this namespace (from a
    /// thread that enters it); the whole response, head and body (5 s limit).
    pub fn http_get(&self, addr: std::net::SocketAddr, path: &str) -> Result<String> {
        use std::io::{Read as _, Write as _};
        let netns = std::fs::File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("opening /run/netns/{}", self.name))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        std::thread::spawn(move || -> Result<String> {
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("entering the namespace")?;
            let timeout = std::time::Duration::from_secs(5);
            let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_read_timeout(Some(timeout))?;
            stream.write_all(request.as_bytes())?;
            let mut out = String::new();
            stream.read_to_string(&mut out)?;
            Ok(out)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))?
    }

    /// Runs a command inside the namespace and returns its output (no timeout:
    /// only for short commands such as `sysctl`, `ethtool`, `ip`).
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program} in {}", self.name))?;
        Ok(out)
    }

    /// Runs a command inside the namespace; an error when it fails.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> Result<()> {
        checked(self.command(program).args(args))
    }

    /// Sets a sysctl inside the namespace, e.g. `("net.ipv4.ip_forward", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run_ok("sysctl", &["-q", "-w", &format!("{key}={value}")])
    }

    /// Creates a veth pair: `local` in this namespace, `remote` in `peer`.
    ///
    /// The pair is created from inside this namespace, so only namespace names need
    /// to be unique between labs: interface names live per namespace.
    pub fn veth(&self, local: &str, peer: &Netns, remote: &str) -> Result<()> {
        for name in [local, remote] {
            if name.len() > 15 {
                bail!("interface name {name:?} is longer than 15 bytes");
            }
        }
        self.ip(&[
            "link",
            "add",
            local,
            "type",
            "veth",
            "peer",
            "name",
            remote,
            "netns",
            peer.name(),
        ])
        .with_context(|| {
            format!(
                "creating veth {}/{local} <-> {}/{remote}",
                self.name, peer.name
            )
        })
    }

    /// Adds an address (`10.0.0.1/25`) to `dev` and brings the link up.
    pub fn addr(&self, dev: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", dev])?;
        self.ip(&["link", "set", dev, "up"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "lab: deleting netns {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("lab: deleting netns {}: {e}", self.name),
        }
    }
}
