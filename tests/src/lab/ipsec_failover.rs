//! The IPsec failover lab: site A is two Kawaii nodes sharing the zone's
//! VIPs by VRRP (100 ms adverts), each with `kowabungad` and its own
//! charon; site B is the remote office of [`super::ipsec`].
//!
//! ```text
//!  [priv] br0 10.0.0.10/25 ─┬─ kw-gw-priv 10.0.0.2 [a1] kw-gw-pub 203.0.113.2 ─┬─ br0 203.0.113.1/24 [inet] eth1 198.51.100.1 ── [b] ── [bhost]
//!   gateway 10.0.0.1 (VRRP)  └─ kw-gw-priv 10.0.0.3 [a2] kw-gw-pub 203.0.113.3 ─┘   VIP 203.0.113.10 (VRRP)
//! ```
//!
//! `a1` is in the instances' zone (priority 150), `a2` in another (100).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::charon::Charon;
use super::daemon::Daemon;
use super::ipsec::{
    IpsecLab, B_GW_PRIV_ADDR, B_HOST_ADDR, B_PUB_ADDR, B_SUBNET, INET_B_ADDR, TUNNEL,
};
use super::netns::{unique_prefix, Netns};
use super::topology::{
    ensure_bpffs, BPFFS, IF_PRIVATE, IF_PUBLIC, INET_ADDR, PRIVATE_SUBNET, PRIV_ADDR, VIP,
};

/// The private gateway address the two nodes share.
pub const GW_VIP: &str = "10.0.0.1";

/// One site-A node.
#[derive(Debug)]
pub struct SiteNode {
    /// Its namespace.
    pub ns: Netns,
    /// Its charon.
    pub charon: Charon,
    /// Its daemon, once started.
    pub daemon: Option<Daemon>,
    config: PathBuf,
    pin_dir: PathBuf,
}

impl SiteNode {
    /// Starts (or restarts) `kowabungad` and waits until it is ready.
    pub fn start_daemon(&mut self, bin: &Path) -> Result<&mut Daemon> {
        self.daemon = None;
        let d = Daemon::start(&self.ns, bin, &self.config)?;
        Ok(self.daemon.insert(d))
    }

    /// The running daemon.
    pub fn daemon(&mut self) -> Result<&mut Daemon> {
        self.daemon.as_mut().context("kowabungad is not running")
    }

    /// The node dies: its links go down, `kowabungad` and charon are killed
    /// with `SIGKILL` (nothing said to anyone).
    pub fn crash(&mut self) -> Result<()> {
        for dev in [IF_PUBLIC, IF_PRIVATE] {
            self.ns.ip(&["link", "set", dev, "down"])?;
        }
        if let Some(d) = self.daemon.as_mut() {
            d.kill()?;
        }
        self.daemon = None;
        self.charon.kill();
        Ok(())
    }

    /// The node comes back: links up, charon started again (the daemon is
    /// started by the test).
    pub fn revive(&mut self) -> Result<()> {
        for dev in [IF_PUBLIC, IF_PRIVATE] {
            self.ns.ip(&["link", "set", dev, "up"])?;
        }
        // the link going down took the static route with it
        self.ns
            .ip(&["route", "replace", "198.51.100.0/24", "via", INET_ADDR])?;
        self.charon.restart(&self.ns)
    }

    /// Whether the public VIP is on this node.
    pub fn holds_vip(&self) -> Result<bool> {
        let out = self
            .ns
            .run("ip", &["-4", "-o", "addr", "show", "dev", IF_PUBLIC])?;
        Ok(String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/")))
    }
}

/// Two site-A nodes, the private host, the Internet and site B.
#[derive(Debug)]
pub struct IpsecFailoverLab {
    /// Site B's private host.
    pub b_host: Netns,
    /// Site B.
    pub b: Netns,
    /// Site B's charon.
    pub charon_b: Charon,
    /// The two Kawaii nodes of site A.
    pub nodes: Vec<SiteNode>,
    /// Site A's private host, holding the private bridge.
    pub private: Netns,
    /// The Internet, holding site A's public bridge.
    pub inet: Netns,
    dir: PathBuf,
}

impl IpsecFailoverLab {
    /// Builds everything, starts the three charons (site B's loaded with
    /// the guide's proposal, replacing an older IKE SA of the same peer);
    /// the daemons are not started.
    pub fn new() -> Result<Self> {
        ensure_bpffs()?;
        let p = unique_prefix();
        let dir = std::env::temp_dir().join(format!("{p}-ipsec-failover"));
        std::fs::create_dir_all(&dir)?;
        let private = Netns::new(&format!("{p}-priv"))?;
        let inet = Netns::new(&format!("{p}-inet"))?;
        let b = Netns::new(&format!("{p}-b"))?;
        let b_host = Netns::new(&format!("{p}-bh"))?;
        for (ns, addr) in [
            (&private, format!("{PRIV_ADDR}/25")),
            (&inet, format!("{INET_ADDR}/24")),
        ] {
            ns.ip(&[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ])?;
            ns.addr("br0", &addr)?;
        }
        private.ip(&["route", "add", "default", "via", GW_VIP])?;
        inet.veth("eth1", &b, "pub0")?;
        inet.addr("eth1", &format!("{INET_B_ADDR}/24"))?;
        inet.sysctl("net.ipv4.ip_forward", "1")?;
        b.addr("pub0", &format!("{B_PUB_ADDR}/24"))?;
        b.ip(&["route", "add", "default", "via", INET_B_ADDR])?;
        b.veth("priv0", &b_host, "eth0")?;
        b.addr("priv0", &format!("{B_GW_PRIV_ADDR}/24"))?;
        b.sysctl("net.ipv4.ip_forward", "1")?;
        b_host.addr("eth0", &format!("{B_HOST_ADDR}/24"))?;
        b_host.ip(&["route", "add", "default", "via", B_GW_PRIV_ADDR])?;
        let charon_b = Charon::start(&b, &dir.join("b"))?;
        charon_b.load(&IpsecLab::b_conf("aes256-sha512-modp2048").replace(
            "    version = 2\n",
            "    version = 2\n    unique = replace\n",
        ))?;
        let mut nodes = Vec::new();
        for i in 1..=2u8 {
            let ns = Netns::new(&format!("{p}-a{i}"))?;
            let (pub_side, priv_side) = (format!("a{i}p"), format!("a{i}q"));
            ns.veth(IF_PUBLIC, &inet, &pub_side)?;
            ns.veth(IF_PRIVATE, &private, &priv_side)?;
            inet.ip(&["link", "set", &pub_side, "master", "br0", "up"])?;
            private.ip(&["link", "set", &priv_side, "master", "br0", "up"])?;
            ns.addr(IF_PUBLIC, &format!("203.0.113.{}/24", 1 + i))?;
            ns.addr(IF_PRIVATE, &format!("10.0.0.{}/25", 1 + i))?;
            ns.ip(&["route", "add", "198.51.100.0/24", "via", INET_ADDR])?;
            ns.sysctl("net.ipv4.ip_forward", "1")?;
            ns.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
            let charon = Charon::start(&ns, &dir.join(format!("a{i}")))?;
            let pin_dir = Path::new(BPFFS).join(format!("{p}-a{i}"));
            let config = dir.join(format!("a{i}.yaml"));
            std::fs::write(&config, node_yaml(i, &pin_dir, &charon.vici()))?;
            nodes.push(SiteNode {
                ns,
                charon,
                daemon: None,
                config,
                pin_dir,
            });
        }
        Ok(IpsecFailoverLab {
            b_host,
            b,
            charon_b,
            nodes,
            private,
            inet,
            dir,
        })
    }

    /// The lab's scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Node `i`'s configuration: Kawaii with the guide's tunnel, VRRP for the
/// public VIP and the private gateway, its charon.
fn node_yaml(i: u8, pin_dir: &Path, vici: &Path) -> String {
    let zone = if i == 1 { "zone-a" } else { "zone-b" };
    let tunnel = IpsecLab::tunnel_yaml(TUNNEL, B_PUB_ADDR, B_SUBNET, 14, "");
    format!(
        "node:\n  zone: {zone}\n  interfaces: {{public: {IF_PUBLIC}, private: {IF_PRIVATE}}}\n  bpffs: {pin}\n  ipsec: {{vici_socket: {vici}, userspace_esp: true}}\n  vrrp:\n    instances:\n      - {{name: pub, vrid: 51, interface: {IF_PUBLIC}, zone: zone-a, advert_interval_ms: 100, virtual_ips: [{VIP}/24]}}\n      - {{name: priv, vrid: 52, interface: {IF_PRIVATE}, zone: zone-a, advert_interval_ms: 100, virtual_ips: [{GW_VIP}/25]}}\n\
         kawaii:\n  public_ips: [{VIP}]\n  private_subnet: {PRIVATE_SUBNET}\n  ipsec_connections:\n{tunnel}",
        pin = pin_dir.display(),
        vici = vici.display(),
    )
}

impl Drop for IpsecFailoverLab {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.daemon = None;
            n.charon.stop();
            if n.pin_dir.exists() {
                let _ = std::fs::remove_dir_all(&n.pin_dir);
            }
        }
        self.charon_b.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
