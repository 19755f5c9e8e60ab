//! The VIPs Konvey answers for (`kv_vips`: VIP -> live services): kept in
//! step with the services, and drained VIPs purged once their flows ended.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aya::maps::{HashMap as BpfHashMap, MapData};

use kowabunga_bindings::kw_role;

use super::{kw_map_err, map_err, Error, Konvey, MAP_VIPS};
use crate::conntrack;
use crate::kawaii as kw;

impl Konvey {
    /// Takes out of the balancer the VIPs left without a service whose
    /// flows have all ended (call it after a conntrack sweep); returns them.
    ///
    /// # Errors
    /// A map error.
    pub fn purge_drained_vips(&mut self) -> Result<Vec<Ipv4Addr>, Error> {
        let drained: Vec<Ipv4Addr> = {
            let vips: BpfHashMap<&MapData, u32, u32> = self.typed(MAP_VIPS)?;
            let mut out = Vec::new();
            for item in vips.iter() {
                let (k, n) = item.map_err(map_err(MAP_VIPS, "iterate"))?;
                if n == 0 {
                    out.push(Ipv4Addr::from(k.to_ne_bytes()));
                }
            }
            out
        };
        let mut purged = Vec::new();
        for vip in drained {
            self.sync_vip(vip)?;
            if !self.vip_listed(vip)? {
                purged.push(vip);
            }
        }
        Ok(purged)
    }

    /// VIPs in the balancer with their number of services (0: draining).
    ///
    /// # Errors
    /// A map error.
    pub fn vips(&self) -> Result<BTreeMap<Ipv4Addr, u32>, Error> {
        let vips: BpfHashMap<&MapData, u32, u32> = self.typed(MAP_VIPS)?;
        let mut out = BTreeMap::new();
        for item in vips.iter() {
            let (k, n) = item.map_err(map_err(MAP_VIPS, "iterate"))?;
            out.insert(Ipv4Addr::from(k.to_ne_bytes()), n);
        }
        Ok(out)
    }

    fn vip_listed(&self, vip: Ipv4Addr) -> Result<bool, Error> {
        Ok(self.vips()?.contains_key(&vip))
    }

    /// Whether conntrack holds a flow a client opened to `vip`.
    fn vip_has_flows(&self, vip: Ipv4Addr) -> Result<bool, Error> {
        let addr = u32::from_ne_bytes(vip.octets());
        Ok(self
            .conntrack_entries()
            .map_err(|e| kw_map_err(kw::MAP_CT4, e))?
            .iter()
            .any(|(k, v)| {
                k.daddr == addr
                    && v.in_role == kw_role::KW_ROLE_KONVEY as u8
                    && v.flags & kowabunga_bindings::KW_CT_F_REPLY as u8 == 0
            }))
    }

    /// Makes `kv_vips[vip]` the number of services on `vip`; with none, 0
    /// while clients' flows to it live (draining), else absent.
    pub(super) fn sync_vip(&mut self, vip: Ipv4Addr) -> Result<(), Error> {
        let n = self
            .service_values()?
            .keys()
            .filter(|k| k.vip == vip)
            .count() as u32;
        let draining = n == 0 && self.vip_has_flows(vip)?;
        let key = u32::from_ne_bytes(vip.octets());
        let mut vips: BpfHashMap<&mut MapData, u32, u32> = self.typed_mut(MAP_VIPS)?;
        if n > 0 || draining {
            vips.insert(key, n, 0).map_err(map_err(MAP_VIPS, "write"))
        } else {
            match vips.remove(&key) {
                Err(e) if !conntrack::is_enoent(&e) => Err(Error::Map {
                    map: MAP_VIPS,
                    what: "delete",
                    source: e,
                }),
                _ => Ok(()),
            }
        }
    }
}
