//! The VRRP lab: routers `r1` and `r2` (`eth0` each) and a client whose bridge
//! `br0` joins them, all on 10.77.0.0/24. The VIP is 10.77.0.1.
//!
//! ```text
//!   r1 eth0 10.77.0.11 ---- v1 \
//!                               br0 10.77.0.100 (client)
//!   r2 eth0 10.77.0.12 ---- v2 /
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::lab::netns::{unique_prefix, Netns};

/// The virtual address the routers share.
pub const VIP: &str = "10.77.0.1";
/// The VIP with its prefix, as configured.
pub const VIP_CIDR: &str = "10.77.0.1/24";
/// A second VIP (multi-address adverts).
pub const VIP2_CIDR: &str = "10.77.0.2/24";
/// The routers' own addresses.
pub const ROUTER_ADDRS: [&str; 2] = ["10.77.0.11", "10.77.0.12"];
/// The client's address.
pub const CLIENT_ADDR: &str = "10.77.0.100";
/// The VRID used by the labs.
pub const VRID: u8 = 51;

/// Two routers and a client, deleted on drop (with the lab's scratch directory).
#[derive(Debug)]
pub struct VrrpLab {
    /// The routers.
    pub routers: [Netns; 2],
    /// The client, holding the bridge.
    pub client: Netns,
    dir: PathBuf,
}

impl VrrpLab {
    /// Builds the namespaces, links and addresses.
    pub fn new() -> Result<Self> {
        let p = unique_prefix();
        let client = Netns::new(&format!("{p}vc"))?;
        let routers = [
            Netns::new(&format!("{p}v1"))?,
            Netns::new(&format!("{p}v2"))?,
        ];
        client.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        for (i, r) in routers.iter().enumerate() {
            let side = format!("v{}", i + 1);
            client.veth(&side, r, "eth0")?;
            client.ip(&["link", "set", &side, "master", "br0", "up"])?;
            r.addr("eth0", &format!("{}/24", ROUTER_ADDRS[i]))?;
            // The VIP answers ARP only on the interface that holds it.
            r.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
        }
        client.addr("br0", &format!("{CLIENT_ADDR}/24"))?;
        let dir = std::env::temp_dir().join(format!("kowabunga-vrrp-{p}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(VrrpLab {
            routers,
            client,
            dir,
        })
    }

    /// The lab's scratch directory (configs, pid files, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether router `i` holds the VIP right now.
    pub fn vip_on(&self, i: usize) -> Result<bool> {
        let out = self.routers[i].run("ip", &["-4", "-o", "addr", "show", "dev", "eth0"])?;
        Ok(String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/")))
    }

    /// Router `i`'s MAC address on the segment.
    pub fn mac(&self, i: usize) -> Result<String> {
        let out = self.routers[i].run("cat", &["/sys/class/net/eth0/address"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Cuts router `i` off the segment (its bridge port goes down): with a
    /// SIGKILL of its VRRP process, the lab's model of a node crash.
    pub fn cut(&self, i: usize) -> Result<()> {
        self.client
            .ip(&["link", "set", &format!("v{}", i + 1), "down"])
    }

    /// Reconnects router `i`.
    pub fn reconnect(&self, i: usize) -> Result<()> {
        self.client
            .ip(&["link", "set", &format!("v{}", i + 1), "up"])
    }

    /// One ping from the client to the VIP (1 s timeout).
    pub fn ping_vip(&self) -> Result<bool> {
        let out = self.client.run("ping", &["-c", "1", "-W", "1", VIP])?;
        Ok(out.status.success())
    }

    /// The MAC addresses that answer an ARP request for the VIP from the client.
    pub fn arping_vip(&self) -> Result<Vec<String>> {
        let out = self
            .client
            .run("arping", &["-c", "2", "-w", "2", "-I", "br0", VIP])?;
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        let mut macs: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '(' || c == ')')
            .filter(|w| w.len() == 17 && w.matches(':').count() == 5)
            .map(str::to_owned)
            .collect();
        macs.sort();
        macs.dedup();
        Ok(macs)
    }
}

impl Drop for VrrpLab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
