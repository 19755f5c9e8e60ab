//! The Kawaii lab: a private host, a Kawaii gateway node and an Internet host.
//!
//! ```text
//!  [priv] eth0 10.0.0.10/25 ── kw-gw-priv 10.0.0.1/25 [gw] kw-gw-pub 203.0.113.2/24 ── eth0 203.0.113.1/24 [inet]
//!         default via 10.0.0.1                               + VIP 203.0.113.10/32        (no route to 10.0.0.0/25)
//! ```
//!
//! `kowabungad` runs in `gw` with a generated configuration: SNAT of the private
//! subnet to the VIP, DNAT of VIP tcp/8080 to `10.0.0.10`, ingress tcp/22 to the
//! gateway itself, everything else inbound dropped. Its bpffs pin directory,
//! `/sys/fs/bpf/<prefix>`, is unique per lab and removed with the lab.
//!
//! Two settings of the namespace-side veth ends (`priv`/`eth0`, `inet`/`eth0`) make
//! XDP forwarding between veths work, both checked on this 6.18 kernel:
//! * GRO on: a frame `bpf_redirect`ed into a veth is delivered to its peer only when
//!   the peer runs NAPI, that is when the peer has GRO enabled or an XDP program of
//!   its own; otherwise `veth_xdp_xmit` drops it. (The gateway's own veths have
//!   NAPI through their XDP programs.)
//! * Transmit checksum offload off: locally generated packets leave a veth with a
//!   partial checksum to be completed later; a frame that XDP redirects travels as an
//!   `xdp_frame`, which loses that state, so the receiver would drop it as corrupt.
//!   Physical NICs deliver complete checksums, so this is a lab matter only.
//!
//! `kowabungad` itself sets the gateway's sysctls (`ip_forward`, `accept_local`,
//! `rp_filter`); the lab sets only `ip_forward`, so the daemon's job is tested.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::counters::Counters;
use super::daemon::Daemon;
use super::netns::{checked, unique_prefix, Netns};
use super::traffic::{run_bounded, Finished};

/// Address of the private host.
pub const PRIV_ADDR: &str = "10.0.0.10";
/// The gateway's address on the private side (the private host's default route).
pub const GW_PRIV_ADDR: &str = "10.0.0.1";
/// The gateway's own public address.
pub const GW_PUB_ADDR: &str = "203.0.113.2";
/// The zone's public VIP the private subnet is SNATed to.
pub const VIP: &str = "203.0.113.10";
/// The Internet host.
pub const INET_ADDR: &str = "203.0.113.1";
/// The project's private subnet.
pub const PRIVATE_SUBNET: &str = "10.0.0.0/25";
/// The VIP port DNATed to the private host (same port there).
pub const DNAT_PORT: u16 = 8080;
/// The gateway's public interface.
pub const IF_PUBLIC: &str = "kw-gw-pub";
/// The gateway's private interface.
pub const IF_PRIVATE: &str = "kw-gw-priv";
/// Where bpffs must be mounted for the daemon's pins.
pub const BPFFS: &str = "/sys/fs/bpf";

/// A `firewall.ingress` rule of the generated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    /// Source CIDR, e.g. `0.0.0.0/0`.
    pub source: String,
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// Upstream port list syntax: `22`, `80,443`, `3000-3005`.
    pub ports: String,
}

/// The three namespaces, the generated config and (once started) the daemon.
/// Dropping it stops the daemon, removes the pin directory and the temporary
/// directory, then deletes the namespaces.
#[derive(Debug)]
pub struct KawaiiLab {
    daemon: Option<Daemon>,
    /// The private host (`eth0` 10.0.0.10/25).
    pub private: Netns,
    /// The Kawaii gateway node.
    pub gw: Netns,
    /// The Internet host (`eth0` 203.0.113.1/24).
    pub inet: Netns,
    prefix: String,
    pin_dir: PathBuf,
    dir: PathBuf,
    ingress: Vec<IngressRule>,
    netns: bool,
    conntrack_entries: Option<u32>,
    extra_node: String,
    extra_kawaii: String,
}

impl KawaiiLab {
    /// Builds the namespaces, veths, addresses and routes, and writes the config.
    pub fn new() -> Result<Self> {
        let prefix = unique_prefix();
        ensure_bpffs()?;
        let dir = std::env::temp_dir().join(format!("{prefix}-lab"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let private = Netns::new(&format!("{prefix}-priv"))?;
        let gw = Netns::new(&format!("{prefix}-gw"))?;
        let inet = Netns::new(&format!("{prefix}-inet"))?;
        let lab = KawaiiLab {
            daemon: None,
            private,
            gw,
            inet,
            pin_dir: Path::new(BPFFS).join(&prefix),
            prefix,
            dir,
            ingress: vec![IngressRule {
                source: "0.0.0.0/0".into(),
                protocol: "tcp".into(),
                ports: "22".into(),
            }],
            netns: false,
            conntrack_entries: None,
            extra_node: String::new(),
            extra_kawaii: String::new(),
        };
        lab.wire().context("building the lab topology")?;
        lab.write_config()?;
        Ok(lab)
    }

    fn wire(&self) -> Result<()> {
        let (p, g, i) = (&self.private, &self.gw, &self.inet);
        g.veth(IF_PRIVATE, p, "eth0")?;
        g.veth(IF_PUBLIC, i, "eth0")?;
        p.addr("eth0", &format!("{PRIV_ADDR}/25"))?;
        p.ip(&["route", "add", "default", "via", GW_PRIV_ADDR])?;
        g.addr(IF_PRIVATE, &format!("{GW_PRIV_ADDR}/25"))?;
        g.addr(IF_PUBLIC, &format!("{GW_PUB_ADDR}/24"))?;
        g.ip(&["addr", "add", &format!("{VIP}/32"), "dev", IF_PUBLIC])?;
        g.sysctl("net.ipv4.ip_forward", "1")?;
        i.addr("eth0", &format!("{INET_ADDR}/24"))?;
        for ns in [p, i] {
            // See the module docs: NAPI for redirected frames, complete checksums.
            ns.run_ok("ethtool", &["-K", "eth0", "gro", "on", "tx", "off"])
                .context("setting veth offloads (apt-get install ethtool)")?;
        }
        Ok(())
    }

    /// The lab's unique name prefix (`kwl<pid><n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The daemon's bpffs pin directory.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("kowabungad.yaml")
    }

    /// The configuration as YAML (schema of `control/examples/kawaii-lab.yaml`).
    pub fn config_yaml(&self) -> String {
        let ingress: Vec<String> = self
            .ingress
            .iter()
            .map(|r| {
                format!(
                    "{{source: {}, protocol: {}, ports: \"{}\"}}",
                    r.source, r.protocol, r.ports
                )
            })
            .collect();
        format!(
            "# Generated by the kowabunga-tests lab ({prefix}).\n\
             node:\n  zone: eu-west-a\n  interfaces: {{public: {IF_PUBLIC}, private: {IF_PRIVATE}}}\n  bpffs: {pin}\n{netns}{ct}\
             {extra_node}kawaii:\n  public_ips: [{VIP}]\n  private_subnet: {PRIVATE_SUBNET}\n  firewall:\n    ingress: [{ingress}]\n    egress_policy: accept\n    egress: []\n  dnat: [{{destination: {PRIV_ADDR}, protocol: tcp, ports: \"{DNAT_PORT}\"}}]\n{extra_kawaii}",
            extra_node = self.extra_node,
            extra_kawaii = self.extra_kawaii,
            prefix = self.prefix,
            pin = self.pin_dir.display(),
            netns = if self.netns {
                format!("  netns: {}\n", self.gw.name())
            } else {
                String::new()
            },
            ingress = ingress.join(", "),
            ct = self
                .conntrack_entries
                .map(|n| format!("  conntrack_entries: {n}\n"))
                .unwrap_or_default(),
        )
    }

    /// Sets YAML appended to the `node` section (2-space keys) and to the
    /// `kawaii` section, and rewrites the config file (no reload).
    pub fn set_extra(&mut self, node: &str, kawaii: &str) -> Result<()> {
        self.extra_node = node.to_owned();
        self.extra_kawaii = kawaii.to_owned();
        self.write_config()
    }

    /// Sets `node.conntrack_entries` (each conntrack table's size) and
    /// rewrites the config file; takes effect at the next daemon start.
    pub fn set_conntrack_entries(&mut self, entries: u32) -> Result<()> {
        self.conntrack_entries = Some(entries);
        self.write_config()
    }

    /// Writes [`KawaiiLab::config_yaml`] to [`KawaiiLab::config_path`] (atomically:
    /// temporary file then rename, so a reload never reads half a file).
    pub fn write_config(&self) -> Result<()> {
        let path = self.config_path();
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, self.config_yaml())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Replaces every `firewall.ingress` rule and rewrites the config file
    /// once (no reload).
    pub fn set_ingress_rules(&mut self, rules: Vec<IngressRule>) -> Result<()> {
        self.ingress = rules;
        self.write_config()
    }

    /// The `firewall.ingress` rules of the generated configuration.
    pub fn ingress_rules(&self) -> &[IngressRule] {
        &self.ingress
    }

    /// Adds a `firewall.ingress` rule and rewrites the config file (no reload).
    pub fn add_ingress_rule(&mut self, source: &str, protocol: &str, ports: &str) -> Result<()> {
        self.ingress.push(IngressRule {
            source: source.into(),
            protocol: protocol.into(),
            ports: ports.into(),
        });
        self.write_config()
    }

    /// Starts `kowabungad` (binary `bin`) in the gateway namespace and waits until it
    /// is ready: switched into the namespace by the lab (`nsenter --net`), or,
    /// after [`KawaiiLab::use_node_netns`], entering it itself.
    pub fn start_daemon(&mut self, bin: &Path) -> Result<&mut Daemon> {
        self.stop_daemon();
        let daemon = if self.netns {
            Daemon::start_here(bin, &self.config_path())?
        } else {
            Daemon::start(&self.gw, bin, &self.config_path())?
        };
        Ok(self.daemon.insert(daemon))
    }

    /// From now on the configuration names the gateway namespace
    /// (`node.netns`) and the daemon is started from the test's own
    /// namespaces; rewrites the config file.
    pub fn use_node_netns(&mut self) -> Result<()> {
        self.netns = true;
        self.write_config()
    }

    /// Runs `ip netns exec GW kowabungad --config FILE` (the usual way to
    /// start a daemon in a namespace, with a private mount namespace) for at
    /// most 20 s and returns how it ended.
    pub fn run_with_ip_netns_exec(&self, bin: &Path) -> Result<Finished> {
        let mut cmd = self.gw.command(bin);
        cmd.arg("--config")
            .arg(self.config_path())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info");
        run_bounded(cmd, Duration::from_secs(20))
    }

    /// Runs `kowabungad --config FILE --detach` as [`KawaiiLab::start_daemon`]
    /// would start it (20 s limit).
    pub fn detach(&self, bin: &Path) -> Result<Finished> {
        let mut cmd = super::daemon::command(bin, &self.config_path());
        cmd.arg("--detach");
        if !self.netns {
            self.gw.enter_net_only(&mut cmd)?;
        }
        run_bounded(cmd, Duration::from_secs(20))
    }

    /// The running daemon, if started.
    pub fn daemon(&mut self) -> Option<&mut Daemon> {
        self.daemon.as_mut()
    }

    /// Stops the daemon if it runs (its pins stay until the lab is dropped).
    pub fn stop_daemon(&mut self) {
        self.daemon = None;
    }

    /// Reads the dataplane counters from the pin directory.
    pub fn counters(&self) -> Result<Counters> {
        Counters::read(&self.pin_dir)
    }
}

impl Drop for KawaiiLab {
    fn drop(&mut self) {
        self.stop_daemon();
        if self.pin_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.pin_dir) {
                eprintln!("lab: removing {}: {e}", self.pin_dir.display());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // The namespaces are deleted when the fields drop, right after this.
    }
}

/// Mounts bpffs on `/sys/fs/bpf` unless it already is (systemd does it at boot;
/// containers often do not).
pub fn ensure_bpffs() -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let path = std::ffi::CString::new(BPFFS)?;
    // SAFETY: `statfs` only writes into the zeroed struct we pass.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and a valid out pointer.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut st) };
    // `f_type` is i64 on x86_64 but narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    let fs_type = i64::from(st.f_type);
    if rc == 0 && fs_type == BPF_FS_MAGIC {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS).ok();
    checked(std::process::Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
        .with_context(|| format!("mounting bpffs on {BPFFS}"))
}
