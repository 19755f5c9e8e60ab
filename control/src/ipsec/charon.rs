//! What kowabungad tells charon over VICI: one `load-conn` and one
//! `load-shared` message per connection, built from the validated config
//! (pure: no I/O, so every field is unit-tested).
//!
//! | guide / API field | VICI (swanctl.conf) |
//! |---|---|
//! | the zone's public VIP | `local_addrs`, local `id` |
//! | `remote_ip` / `remote_peer` | `remote_addrs`, remote `id`, the key's `owners` |
//! | `phase1_*` | IKE `proposals` (`aes256-sha512-modp2048`) |
//! | `phase2_*` | child `esp_proposals`, PFS with the phase 2 group |
//! | `phase1_lifetime` | IKE `rekey_time` (rekeyed in place, no reauthentication) |
//! | `phase2_lifetime`, `rekey_time` | child `life_time`, `rekey_time` |
//! | `dpd_timeout`, `dpd_timeout_action` | `dpd_delay` 5 s, `dpd_timeout`, child `dpd_action` and `close_action` |
//! | `start_action` | child `start_action` `trap` for trap; `start` is initiated by kowabungad on the zone's master |
//! | `node.ipsec.userspace_esp` | `encap = yes` |

use std::collections::BTreeMap;
use std::fmt;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::config::{DpdAction, Ipsec, StartAction};

/// Seconds between two dead peer detection probes (upstream's `dpd_delay`).
pub const DPD_DELAY_S: u32 = 5;

/// A `load-conn` message: `{ <name> = Conn }`.
pub type LoadConn = BTreeMap<String, Conn>;

/// One IKE connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conn {
    /// IKE version: 2.
    pub version: u32,
    /// Our address: the zone's public VIP.
    pub local_addrs: Vec<String>,
    /// The peer.
    pub remote_addrs: Vec<String>,
    /// Force UDP encapsulation (userspace ESP).
    pub encap: bool,
    /// No MOBIKE: the tunnel's address is the VIP, never another.
    pub mobike: bool,
    /// IKE proposals.
    pub proposals: Vec<String>,
    /// IKE SA rekeying, s.
    pub rekey_time: u32,
    /// Dead peer detection interval, s.
    pub dpd_delay: u32,
    /// Dead peer timeout, s (IKEv1; IKEv2 uses retransmissions).
    pub dpd_timeout: u32,
    /// Initiation attempts, 0: forever.
    pub keyingtries: u32,
    /// A new IKE SA with the same peer replaces the old one.
    pub unique: String,
    /// Local authentication.
    pub local: Auth,
    /// Remote authentication.
    pub remote: Auth,
    /// The child SA, named like the connection.
    pub children: BTreeMap<String, Child>,
}

/// An authentication round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Auth {
    /// `psk`.
    pub auth: String,
    /// IKE identity: an IPv4 address.
    pub id: String,
}

/// The child SA: project subnet <-> remote subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Child {
    /// The project subnet.
    pub local_ts: Vec<String>,
    /// The remote subnet.
    pub remote_ts: Vec<String>,
    /// ESP proposals, with PFS.
    pub esp_proposals: Vec<String>,
    /// Rekeying, s.
    pub rekey_time: u32,
    /// Hard lifetime, s.
    pub life_time: u32,
    /// `none` or `trap`.
    pub start_action: String,
    /// `clear`, `trap` or `restart`.
    pub dpd_action: String,
    /// When the peer closes the child: `none`, `trap` or `start`.
    pub close_action: String,
    /// `tunnel`.
    pub mode: String,
}

/// The `load-conn` message of `conn`, local address `vip`, project subnet
/// `project`.
pub fn load_conn(conn: &Ipsec, vip: std::net::Ipv4Addr, project: Ipv4Net, encap: bool) -> LoadConn {
    let close_action = match conn.dpd_action {
        DpdAction::Clear => "none",
        DpdAction::Hold => "trap",
        DpdAction::Restart => "start",
    };
    let child = Child {
        local_ts: vec![project.to_string()],
        remote_ts: vec![conn.remote_subnet.to_string()],
        esp_proposals: vec![conn.phase2.strongswan()],
        rekey_time: conn.rekey_time_s,
        life_time: conn.phase2_lifetime_s,
        start_action: match conn.start_action {
            StartAction::Trap => "trap",
            StartAction::None | StartAction::Start => "none",
        }
        .to_owned(),
        dpd_action: conn.dpd_action.charon().to_owned(),
        close_action: close_action.to_owned(),
        mode: "tunnel".to_owned(),
    };
    let c = Conn {
        version: 2,
        local_addrs: vec![vip.to_string()],
        remote_addrs: vec![conn.remote_ip.to_string()],
        encap,
        mobike: false,
        proposals: vec![conn.phase1.strongswan()],
        rekey_time: conn.phase1_lifetime_s,
        dpd_delay: DPD_DELAY_S,
        dpd_timeout: conn.dpd_timeout_s,
        keyingtries: 0,
        unique: "replace".to_owned(),
        local: Auth {
            auth: "psk".to_owned(),
            id: vip.to_string(),
        },
        remote: Auth {
            auth: "psk".to_owned(),
            id: conn.remote_ip.to_string(),
        },
        children: BTreeMap::from([(conn.charon_name.clone(), child)]),
    };
    BTreeMap::from([(conn.charon_name.clone(), c)])
}

/// A `load-shared` message: the connection's key, owned by the peer's
/// identity. Its `Debug` hides the key.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct LoadShared {
    /// Unique key id: the connection's charon name.
    pub id: String,
    /// `IKE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key.
    pub data: String,
    /// Identities that use it.
    pub owners: Vec<String>,
}

impl fmt::Debug for LoadShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShared")
            .field("id", &self.id)
            .field("type", &self.kind)
            .field("data", &"***")
            .field("owners", &self.owners)
            .finish()
    }
}

/// The `load-shared` message of `conn`.
pub fn load_shared(conn: &Ipsec) -> LoadShared {
    LoadShared {
        id: conn.charon_name.clone(),
        kind: "IKE".to_owned(),
        data: conn.pre_shared_key.expose().to_owned(),
        owners: vec![conn.remote_ip.to_string()],
    }
}

/// What charon must hold for a connection: changes when anything sent in
/// `load-conn` or `load-shared` changes, so an unchanged connection is never
/// reloaded (its SAs and SPIs stay).
pub fn fingerprint(conn: &LoadConn, key: &LoadShared) -> String {
    use std::hash::{Hash, Hasher};
    // FNV-1a over the Debug text and the key: stable, the key not kept.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    format!("{conn:?}").hash(&mut h);
    key.data.hash(&mut h);
    key.owners.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests;
