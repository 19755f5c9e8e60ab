//! The IPsec lab: site A is the Kawaii lab's gateway running `kowabungad`
//! and charon; site B is a remote office, a plain strongSwan configured by
//! its own `swanctl.conf`, with a private host; the Kawaii lab's Internet
//! namespace routes between the two public sides.
//!
//! ```text
//!  [priv] 10.0.0.10 ── [gw] VIP 203.0.113.10 ── 203.0.113.1 [inet] 198.51.100.1 ── 198.51.100.2 [b] 172.16.1.1 ── 172.16.1.10 [bhost]
//!        site A: kowabungad + charon                                                site B: charon + swanctl.conf
//! ```
//!
//! Both charons run ESP in userspace (`kernel-libipsec`, UDP-encapsulated:
//! the lab kernel has no ESP); see [`super::charon`].

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::charon::Charon;
use super::netns::Netns;
use super::topology::{KawaiiLab, INET_ADDR, PRIVATE_SUBNET, VIP};

/// Site B's public address.
pub const B_PUB_ADDR: &str = "198.51.100.2";
/// The Internet namespace's address on site B's side.
pub const INET_B_ADDR: &str = "198.51.100.1";
/// Site B's gateway address on its private side.
pub const B_GW_PRIV_ADDR: &str = "172.16.1.1";
/// Site B's private host.
pub const B_HOST_ADDR: &str = "172.16.1.10";
/// Site B's private subnet (the tunnel's remote subnet).
pub const B_SUBNET: &str = "172.16.1.0/24";
/// The pre-shared key of the lab's tunnels.
pub const PSK: &str = "lab pre-shared key, not a secret";
/// The tunnel's name as the guide writes it.
pub const TUNNEL: &str = "ACME Office";
/// Its charon name.
pub const TUNNEL_CHARON: &str = "kw-acme-office";

/// The two sites, their charons and (once started) site A's daemon.
#[derive(Debug)]
pub struct IpsecLab {
    /// Site B's private host.
    pub b_host: Netns,
    /// Site B's gateway (the remote office's strongSwan).
    pub b: Netns,
    /// Site B's charon.
    pub charon_b: Charon,
    /// Site A's charon (driven by `kowabungad`).
    pub charon_a: Charon,
    /// Site A: the Kawaii lab (`priv`, `gw`, `inet`).
    pub a: KawaiiLab,
    dir: PathBuf,
}

impl IpsecLab {
    /// Builds both sites and starts both charons; site B loads
    /// [`IpsecLab::b_conf`] with the guide's proposal. `kowabungad` is not
    /// started (see [`IpsecLab::a_yaml`] and [`KawaiiLab::start_daemon`]).
    pub fn new() -> Result<Self> {
        let a = KawaiiLab::new()?;
        let dir = std::env::temp_dir().join(format!("{}-ipsec", a.prefix()));
        let b = Netns::new(&format!("{}-b", a.prefix()))?;
        let b_host = Netns::new(&format!("{}-bh", a.prefix()))?;
        a.inet.veth("eth1", &b, "pub0")?;
        a.inet.addr("eth1", &format!("{INET_B_ADDR}/24"))?;
        a.inet.sysctl("net.ipv4.ip_forward", "1")?;
        b.addr("pub0", &format!("{B_PUB_ADDR}/24"))?;
        b.ip(&["route", "add", "default", "via", INET_B_ADDR])?;
        a.gw.ip(&["route", "add", "198.51.100.0/24", "via", INET_ADDR])?;
        b.veth("priv0", &b_host, "eth0")?;
        b.addr("priv0", &format!("{B_GW_PRIV_ADDR}/24"))?;
        b.sysctl("net.ipv4.ip_forward", "1")?;
        b_host.addr("eth0", &format!("{B_HOST_ADDR}/24"))?;
        b_host.ip(&["route", "add", "default", "via", B_GW_PRIV_ADDR])?;
        let charon_a = Charon::start(&a.gw, &dir.join("a")).context("site A's charon")?;
        let charon_b = Charon::start(&b, &dir.join("b")).context("site B's charon")?;
        charon_b.load(&Self::b_conf("aes256-sha512-modp2048"))?;
        Ok(IpsecLab {
            b_host,
            b,
            charon_b,
            charon_a,
            a,
            dir,
        })
    }

    /// Site B's `swanctl.conf`: a responder (it never initiates) for
    /// site A's VIP, with `proposal` for IKE and ESP.
    pub fn b_conf(proposal: &str) -> String {
        format!(
            r#"connections {{
  acme {{
    version = 2
    local_addrs = {B_PUB_ADDR}
    remote_addrs = {VIP}
    encap = yes
    proposals = {proposal}
    dpd_delay = 5s
    local {{
      auth = psk
      id = {B_PUB_ADDR}
    }}
    remote {{
      auth = psk
      id = {VIP}
    }}
    children {{
      acme {{
        local_ts = {B_SUBNET}
        remote_ts = {PRIVATE_SUBNET}
        esp_proposals = {proposal}
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  ike-acme {{
    id = {VIP}
    secret = "{PSK}"
  }}
}}
"#
        )
    }

    /// Site A's `node.ipsec` section: its charon, userspace ESP.
    pub fn a_node_yaml(&self) -> String {
        format!(
            "  ipsec: {{vici_socket: {}, userspace_esp: true}}\n",
            self.charon_a.vici().display()
        )
    }

    /// One `ipsec_connections[]` entry in the guide's words: `name`, the
    /// peer, the remote subnet, the DH group of both phases, and `extra`
    /// lines (6 spaces of indent).
    pub fn tunnel_yaml(name: &str, peer: &str, subnet: &str, dh: u32, extra: &str) -> String {
        format!(
            "    - name: {name}\n      desc: lab tunnel\n      pre_shared_key: \"{PSK}\"\n      remote_peer: {peer}\n      remote_subnet: {subnet}\n      phase1_dh_group_number: {dh}\n      phase1_integrity_algorithm: SHA512\n      phase1_encryption_algorithm: AES256\n      phase2_dh_group_number: {dh}\n      phase2_integrity_algorithm: SHA512\n      phase2_encryption_algorithm: AES256\n{extra}"
        )
    }

    /// Writes site A's config with these tunnels (`ipsec_connections`
    /// entries from [`IpsecLab::tunnel_yaml`]); no reload.
    pub fn set_tunnels(&mut self, tunnels: &[String]) -> Result<()> {
        let node = self.a_node_yaml();
        self.a.set_extra(
            &node,
            &format!("  ipsec_connections:\n{}", tunnels.concat()),
        )
    }

    /// Where the lab keeps both charons' files.
    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }
}

impl Drop for IpsecLab {
    fn drop(&mut self) {
        // the daemon first (it talks to charon A), then the charons
        self.a.stop_daemon();
        self.charon_a.stop();
        self.charon_b.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
