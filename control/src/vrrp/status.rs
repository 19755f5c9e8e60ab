//! What the VRRP engine reports of each instance: driver counters and the
//! status line logged every 60 s.

use std::net::IpAddr;

use super::machine::{Counters, State};
use super::packet::PacketError;

/// Driver-level counters of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverCounters {
    /// Packets read from the socket.
    pub received: u64,
    /// Dropped: IP TTL not 255.
    pub bad_ttl: u64,
    /// Dropped: IP header malformed.
    pub bad_ip: u64,
    /// Dropped: truncated advert.
    pub truncated: u64,
    /// Dropped: length does not match the address count.
    pub bad_length: u64,
    /// Dropped: version not 3.
    pub bad_version: u64,
    /// Dropped: type not advertisement.
    pub bad_type: u64,
    /// Dropped: zero addresses.
    pub no_address: u64,
    /// Dropped: checksum.
    pub bad_checksum: u64,
    /// Dropped: family mismatch.
    pub bad_family: u64,
    /// Adverts of another VRID on the interface (not an error).
    pub other_vrid: u64,
    /// Our own adverts looped back.
    pub own: u64,
    /// Adverts that could not be sent.
    pub send_errors: u64,
    /// VIP add/remove failures.
    pub vip_errors: u64,
    /// Gratuitous ARPs sent.
    pub garp_sent: u64,
    /// VIPs found missing while master (removed behind our back) and re-added.
    pub vip_readded: u64,
}

impl DriverCounters {
    pub(crate) fn count(&mut self, e: PacketError) {
        match e {
            PacketError::Truncated { .. } => self.truncated += 1,
            PacketError::BadLength { .. } => self.bad_length += 1,
            PacketError::BadVersion(_) => self.bad_version += 1,
            PacketError::BadType(_) => self.bad_type += 1,
            PacketError::NoAddress => self.no_address += 1,
            PacketError::BadChecksum { .. } => self.bad_checksum += 1,
            PacketError::Family | PacketError::Unencodable(_) => self.bad_family += 1,
        }
    }
}

/// What `kowabunga status` shows of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// VRID.
    pub vrid: u8,
    /// Interface.
    pub interface: String,
    /// Protocol state.
    pub state: State,
    /// Our priority.
    pub priority: u8,
    /// The master's address and priority, when known.
    pub master: Option<(IpAddr, u8)>,
    /// Protocol counters.
    pub counters: Counters,
    /// Socket counters.
    pub driver: DriverCounters,
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "vrrp {} vrid={} if={} state={} priority={} master={} rx={} tx={} to_master={} to_backup={} rejected={}",
            self.name,
            self.vrid,
            self.interface,
            self.state,
            self.priority,
            self.master.map_or_else(|| "-".to_owned(), |(a, p)| format!("{a}/{p}")),
            self.counters.adverts_rx,
            self.counters.adverts_tx,
            self.counters.became_master,
            self.counters.became_backup,
            self.driver.bad_ttl
                + self.driver.bad_ip
                + self.driver.truncated
                + self.driver.bad_length
                + self.driver.bad_version
                + self.driver.bad_type
                + self.driver.no_address
                + self.driver.bad_checksum
                + self.driver.bad_family
                + self.counters.address_mismatch,
        )
    }
}
