//! The IPsec gate: `kw_ipsec_up`, the remote subnets whose child SA is up.
//!
//! Kawaii sends the project's traffic to an IPsec remote subnet to the
//! kernel (XFRM, or strongSwan's userspace ESP) only while that subnet's key
//! is in this map with a non-zero value; otherwise it drops it as
//! `drop_ipsec_down`, whatever the routing table says. kowabungad's IPsec
//! role opens the pinned map beside Kawaii's other maps and writes it from
//! charon's child SA events.

use std::net::Ipv4Addr;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError};
use ipnet::Ipv4Net;
use kowabunga_bindings::kw_cidr;

use super::{Error, Kawaii, MAP_IPSEC_UP};

/// Errors of the IPsec gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The pinned map could not be opened.
    #[error("cannot open the pinned map {path}: {source}")]
    Open {
        /// The pin path.
        path: String,
        /// Why.
        #[source]
        source: MapError,
    },
    /// A map operation failed.
    #[error("{MAP_IPSEC_UP}: {0}")]
    Map(#[from] MapError),
    /// The Kawaii object has no such map.
    #[error(transparent)]
    Kawaii(#[from] Error),
}

/// `kw_ipsec_up`, typed.
#[derive(Debug)]
pub struct IpsecGate<T> {
    map: BpfHashMap<T, kw_cidr, u32>,
}

/// The map key of a subnet, as `kw_abi.h` stores CIDRs (network order).
fn key(net: Ipv4Net) -> kw_cidr {
    kw_cidr {
        addr: u32::from(net.network()).to_be(),
        mask: u32::from(net.netmask()).to_be(),
    }
}

fn net_of(key: &kw_cidr) -> Option<Ipv4Net> {
    let addr = Ipv4Addr::from(u32::from_be(key.addr));
    let prefix = u32::from_be(key.mask).leading_ones();
    Ipv4Net::new(addr, u8::try_from(prefix).ok()?).ok()
}

impl IpsecGate<MapData> {
    /// Opens the gate pinned in `pin_dir` (Kawaii's pin directory).
    ///
    /// # Errors
    /// The pin is missing or not the expected map.
    pub fn open(pin_dir: &Path) -> Result<Self, GateError> {
        let path = pin_dir.join(MAP_IPSEC_UP);
        let data = MapData::from_pin(&path).map_err(|source| GateError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let map = BpfHashMap::try_from(Map::HashMap(data)).map_err(|source| GateError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(IpsecGate { map })
    }
}

impl<'a> IpsecGate<&'a mut MapData> {
    /// The gate of a loaded Kawaii object (tests, fixtures).
    ///
    /// # Errors
    /// The object has no `kw_ipsec_up` map.
    pub fn of(kawaii: &'a mut Kawaii) -> Result<Self, GateError> {
        let map = kawaii
            .map_mut(MAP_IPSEC_UP)
            .ok_or(Error::MissingMap(MAP_IPSEC_UP))?;
        Ok(IpsecGate {
            map: BpfHashMap::try_from(map)?,
        })
    }
}

impl<T: std::borrow::BorrowMut<MapData>> IpsecGate<T> {
    /// Opens (`up`) or closes the gate of `net`.
    ///
    /// # Errors
    /// The map refused the update (full) or the delete.
    pub fn set(&mut self, net: Ipv4Net, up: bool) -> Result<(), GateError> {
        let k = key(net);
        if up {
            self.map.insert(k, 1, 0)?;
        } else {
            match self.map.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                // already shut: the delete finds no key
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl<T: std::borrow::Borrow<MapData>> IpsecGate<T> {
    /// The subnets whose gate is open.
    pub fn open_subnets(&self) -> Vec<Ipv4Net> {
        let mut v: Vec<Ipv4Net> = self
            .map
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, up)| *up != 0)
            .filter_map(|(k, _)| net_of(&k))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_in_network_order() {
        let net: Ipv4Net = "172.16.1.0/24".parse().expect("a subnet");
        let k = key(net);
        assert_eq!(k.addr.to_ne_bytes(), [172, 16, 1, 0]);
        assert_eq!(k.mask.to_ne_bytes(), [255, 255, 255, 0]);
        assert_eq!(net_of(&k), Some(net));
    }
}
