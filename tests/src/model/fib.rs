//! A model of what `bpf_fib_lookup` answers in the fixture network.
//!
//! Longest-prefix routes to devices (optionally via a gateway), permanent
//! neighbours, local addresses and the device MTU: exactly what the fixture
//! namespace is given, so the kernel and the model agree by construction.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// A route of the model.
#[derive(Debug, Clone)]
pub struct Route {
    /// Destination prefix.
    pub dst: Ipv4Net,
    /// Gateway, or `None` for an on-link route.
    pub via: Option<Ipv4Addr>,
    /// MAC address of the output device.
    pub dev_mac: [u8; 6],
    /// MTU of the output device.
    pub mtu: u16,
}

/// The answer of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FibResult {
    /// Forward: source and destination MAC of the next hop.
    Success {
        /// Output device MAC.
        smac: [u8; 6],
        /// Next-hop MAC.
        dmac: [u8; 6],
    },
    /// Route found, neighbour not resolved.
    NoNeigh,
    /// Route found, the packet is larger than its MTU.
    FragNeeded,
    /// Anything else (local, broadcast, no route).
    Other,
}

/// Routes, neighbours and local addresses of the fixture network.
#[derive(Debug, Clone, Default)]
pub struct FibModel {
    /// Routes, any order: the longest prefix wins.
    pub routes: Vec<Route>,
    /// Permanent neighbours.
    pub neighbours: HashMap<Ipv4Addr, [u8; 6]>,
    /// Prefixes of the local table: local and broadcast addresses, and
    /// 127.0.0.0/8 once `lo` is up (not forwarded).
    pub local: Vec<Ipv4Net>,
    /// IPv6 prefixes the kernel forwards to (a route that is not local);
    /// empty while IPv6 forwarding is off (the fixture default), when
    /// `bpf_fib_lookup` answers `FWD_DISABLED` for every IPv6 packet.
    pub forward6: Vec<Ipv6Net>,
    /// The local IPv6 addresses (`NOT_FWDED`, checked before the routes).
    pub local6: Vec<Ipv6Net>,
}

impl FibModel {
    /// Whether `bpf_fib_lookup` says the kernel forwards an IPv6 packet to
    /// `dst` (success, unresolved neighbour or fragmentation needed).
    pub fn forwards6(&self, dst: Ipv6Addr) -> bool {
        !self.local6.iter().any(|n| n.contains(&dst))
            && self.forward6.iter().any(|n| n.contains(&dst))
    }

    /// What `bpf_fib_lookup` answers for `dst` and a packet of `tot_len` bytes.
    pub fn lookup(&self, dst: Ipv4Addr, tot_len: u16) -> FibResult {
        if self.local.iter().any(|n| n.contains(&dst)) {
            return FibResult::Other;
        }
        let Some(route) = self
            .routes
            .iter()
            .filter(|r| r.dst.contains(&dst))
            .max_by_key(|r| r.dst.prefix_len())
        else {
            return FibResult::Other;
        };
        if tot_len > route.mtu {
            return FibResult::FragNeeded;
        }
        let hop = route.via.unwrap_or(dst);
        match self.neighbours.get(&hop) {
            Some(dmac) => FibResult::Success {
                smac: route.dev_mac,
                dmac: *dmac,
            },
            None => FibResult::NoNeigh,
        }
    }
}
