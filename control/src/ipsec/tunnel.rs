//! A tunnel's state as charon reports it (`list-sas`), and the shape of
//! those reports. Pure: [`state_of`] turns one snapshot into states.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use super::reason::Reason;

/// One IKE SA of a `list-sa` event (`{ <connection>: IkeSa }`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IkeSa {
    /// `CREATED`, `CONNECTING`, `ESTABLISHED`, `REKEYING`, `DELETING`, ...
    #[serde(default)]
    pub state: String,
    /// Its child SAs, by `<name>-<uniqueid>`.
    #[serde(rename = "child-sas", default)]
    pub child_sas: HashMap<String, ChildSa>,
}

/// One child SA.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChildSa {
    /// The child's configured name.
    #[serde(default)]
    pub name: String,
    /// `INSTALLED`, `REKEYING`, ...
    #[serde(default)]
    pub state: String,
    /// Inbound SPI, hex.
    #[serde(rename = "spi-in", default)]
    pub spi_in: String,
    /// Outbound SPI, hex.
    #[serde(rename = "spi-out", default)]
    pub spi_out: String,
    /// Bytes decrypted.
    #[serde(rename = "bytes-in", default)]
    pub bytes_in: String,
    /// Bytes encrypted.
    #[serde(rename = "bytes-out", default)]
    pub bytes_out: String,
    /// Packets decrypted.
    #[serde(rename = "packets-in", default)]
    pub packets_in: String,
    /// Packets encrypted.
    #[serde(rename = "packets-out", default)]
    pub packets_out: String,
    /// Seconds since installation.
    #[serde(rename = "install-time", default)]
    pub install_time: String,
}

/// The numbers of an established tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Up {
    /// Inbound SPI (hex, as charon prints it).
    pub spi_in: String,
    /// Outbound SPI.
    pub spi_out: String,
    /// Bytes and packets, in and out.
    pub bytes_in: u64,
    /// Bytes encrypted.
    pub bytes_out: u64,
    /// Packets decrypted.
    pub packets_in: u64,
    /// Packets encrypted.
    pub packets_out: u64,
    /// Seconds since the child SA was installed.
    pub age_s: u64,
}

/// A tunnel's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// No SA, with the last failure's reason if one is known.
    Down(Option<Reason>),
    /// IKE in progress (or established, child not installed yet).
    Connecting,
    /// Child SA installed: traffic flows.
    Up(Up),
    /// `start_action: trap`: no SA, the kernel holds a trap policy that
    /// brings it up on the first packet.
    Trapped,
}

impl TunnelState {
    /// Whether traffic to the remote subnet may go to the kernel.
    pub fn gate_open(&self) -> bool {
        matches!(self, TunnelState::Up(_) | TunnelState::Trapped)
    }
}

impl fmt::Display for TunnelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelState::Down(None) => f.write_str("down"),
            TunnelState::Down(Some(r)) => write!(f, "down: {r}"),
            TunnelState::Connecting => f.write_str("connecting"),
            TunnelState::Trapped => f.write_str("trap installed (up on the first packet)"),
            TunnelState::Up(u) => write!(
                f,
                "up, SPIs {}_i {}_o, {} B / {} pkts in, {} B / {} pkts out, installed {} s ago",
                u.spi_in, u.spi_out, u.bytes_in, u.packets_in, u.bytes_out, u.packets_out, u.age_s
            ),
        }
    }
}

fn num(s: &str) -> u64 {
    s.trim().parse().unwrap_or(0)
}

/// The state of connection `name` in one `list-sas` snapshot (every
/// `list-sa` event merged); `None` when charon has no SA of it.
pub fn state_of(name: &str, sas: &[HashMap<String, IkeSa>]) -> Option<TunnelState> {
    let mut best: Option<TunnelState> = None;
    for ike in sas.iter().filter_map(|m| m.get(name)) {
        let up = ike
            .child_sas
            .values()
            .filter(|c| c.name == name)
            .filter(|c| matches!(c.state.as_str(), "INSTALLED" | "REKEYING" | "REKEYED"))
            .min_by_key(|c| num(&c.install_time));
        if let Some(c) = up {
            return Some(TunnelState::Up(Up {
                spi_in: c.spi_in.clone(),
                spi_out: c.spi_out.clone(),
                bytes_in: num(&c.bytes_in),
                bytes_out: num(&c.bytes_out),
                packets_in: num(&c.packets_in),
                packets_out: num(&c.packets_out),
                age_s: num(&c.install_time),
            }));
        }
        if ike.state != "DELETING" && ike.state != "DESTROYING" {
            best = Some(TunnelState::Connecting);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(name: &str, state: &str, spi: &str, age: &str) -> ChildSa {
        ChildSa {
            name: name.to_owned(),
            state: state.to_owned(),
            spi_in: spi.to_owned(),
            spi_out: "c0ffee01".to_owned(),
            bytes_in: "168".to_owned(),
            packets_in: "2".to_owned(),
            install_time: age.to_owned(),
            ..ChildSa::default()
        }
    }

    #[test]
    fn installed_child_is_up_newest_first() {
        let mut ike = IkeSa {
            state: "ESTABLISHED".to_owned(),
            ..IkeSa::default()
        };
        ike.child_sas
            .insert("kw-a-1".to_owned(), child("kw-a", "INSTALLED", "aa", "300"));
        ike.child_sas
            .insert("kw-a-2".to_owned(), child("kw-a", "INSTALLED", "bb", "3"));
        let snap = vec![HashMap::from([("kw-a".to_owned(), ike)])];
        let Some(TunnelState::Up(u)) = state_of("kw-a", &snap) else {
            panic!("not up");
        };
        assert_eq!((u.spi_in.as_str(), u.bytes_in, u.age_s), ("bb", 168, 3));
        assert_eq!(state_of("kw-b", &snap), None);
    }

    #[test]
    fn ike_without_child_is_connecting_and_gates_stay_shut() {
        let ike = IkeSa {
            state: "CONNECTING".to_owned(),
            ..IkeSa::default()
        };
        let snap = vec![HashMap::from([("kw-a".to_owned(), ike)])];
        let s = state_of("kw-a", &snap).expect("an SA");
        assert_eq!(s, TunnelState::Connecting);
        assert!(!s.gate_open());
        assert!(!TunnelState::Down(Some(Reason::ClosedByPeer)).gate_open());
        assert!(TunnelState::Trapped.gate_open());
    }
}
