//! Per-backend counters (`kv_backend_stats`, `ebpf/include/kw_lb_stats.h`):
//! which slot a backend of a rotation counts into, and reading them.
//!
//! A service with id `i` owns slots `i * KV_MAX_BACKENDS ..` (one per
//! position). A backend keeps its slot while it stays in the rotation, so
//! its counters go on across rotation changes; a backend that enters takes
//! the lowest position no current member holds, and that slot is zeroed
//! first (it may hold a former backend's counts). A backend that leaves
//! the rotation (down, removed) frees its position: the packets of its
//! draining flows are counted in the slot, whoever holds it next.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use kowabunga_bindings::{kv_backend_counter, kv_service, KV_MAX_BACKENDS};

use super::{map_err, Backend, Error, Konvey, ServiceKey};

/// The per-CPU array `slot` -> `kv_backend_counter`.
pub const MAP_BACKEND_STATS: &str = "kv_backend_stats";

/// One backend's traffic, summed over the CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCounter {
    /// Flows created towards it (their first packet forwarded or passed).
    pub new_flows: u64,
    /// Packets of its flows, both directions.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

/// The counter slots of `rotation` for service `id`, given the rotation in
/// the map now (`previous`): members keep theirs, newcomers take the lowest
/// free positions. The second vector lists the newly taken slots (to zero).
pub fn assign_slots(
    id: u32,
    previous: Option<&kv_service>,
    rotation: &[Backend],
) -> (Vec<u16>, Vec<u16>) {
    let base = id * KV_MAX_BACKENDS;
    let kept: BTreeMap<Backend, u16> = previous
        .map(|v| {
            let count = (v.count as usize).min(v.backends.len());
            v.backends[..count]
                .iter()
                .filter(|b| u32::from(b.slot) / KV_MAX_BACKENDS == id)
                .map(|b| (Backend::from_kv(b), b.slot))
                .collect()
        })
        .unwrap_or_default();
    let mut taken: Vec<u16> = rotation
        .iter()
        .filter_map(|b| kept.get(b).copied())
        .collect();
    let mut fresh = Vec::new();
    let mut next = 0u32;
    let slots = rotation
        .iter()
        .map(|b| {
            if let Some(slot) = kept.get(b) {
                return *slot;
            }
            // a free position exists: the rotation has at most KV_MAX_BACKENDS members
            while next < KV_MAX_BACKENDS && taken.contains(&((base + next) as u16)) {
                next += 1;
            }
            let slot = (base + next.min(KV_MAX_BACKENDS - 1)) as u16;
            taken.push(slot);
            fresh.push(slot);
            slot
        })
        .collect();
    (slots, fresh)
}

impl Konvey {
    fn backend_stats_map(&self) -> Result<PerCpuArray<&MapData, kv_backend_counter>, Error> {
        self.typed(MAP_BACKEND_STATS)
    }

    /// Zeroes the counters of `slots` (on every CPU).
    pub(crate) fn zero_backend_slots(&mut self, slots: &[u16]) -> Result<(), Error> {
        if slots.is_empty() {
            return Ok(());
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| Error::Cpus(e))?;
        let mut map: PerCpuArray<&mut MapData, kv_backend_counter> =
            self.typed_mut(MAP_BACKEND_STATS)?;
        for slot in slots {
            let zeros = PerCpuValues::try_from(vec![kv_backend_counter::default(); cpus])
                .map_err(Error::Cpus)?;
            map.set(u32::from(*slot), zeros, 0)
                .map_err(map_err(MAP_BACKEND_STATS, "write"))?;
        }
        Ok(())
    }

    /// The counters of one slot, summed over the CPUs.
    ///
    /// # Errors
    /// A map error.
    pub fn backend_slot_counter(&self, slot: u16) -> Result<BackendCounter, Error> {
        let map = self.backend_stats_map()?;
        let per_cpu = map
            .get(&u32::from(slot), 0)
            .map_err(map_err(MAP_BACKEND_STATS, "read"))?;
        Ok(per_cpu
            .iter()
            .fold(BackendCounter::default(), |acc, c| BackendCounter {
                new_flows: acc.new_flows.wrapping_add(c.new_flows),
                packets: acc.packets.wrapping_add(c.packets),
                bytes: acc.bytes.wrapping_add(c.bytes),
            }))
    }

    /// Every backend in a rotation with its counters (since it entered it).
    ///
    /// # Errors
    /// A map error.
    pub fn backend_counters(&self) -> Result<Vec<(ServiceKey, Backend, BackendCounter)>, Error> {
        let mut out = Vec::new();
        for (key, value) in self.service_values()? {
            let count = (value.count as usize).min(value.backends.len());
            for b in &value.backends[..count] {
                out.push((key, Backend::from_kv(b), self.backend_slot_counter(b.slot)?));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn b(i: u8) -> Backend {
        Backend {
            addr: Ipv4Addr::new(10, 0, 0, i),
            port: 80,
        }
    }

    fn packed(id: u32, rotation: &[Backend], slots: &[u16]) -> kv_service {
        let mut v = kv_service {
            id,
            count: rotation.len() as u32,
            ..Default::default()
        };
        for (i, (be, slot)) in rotation.iter().zip(slots).enumerate() {
            v.backends[i] = be.to_kv();
            v.backends[i].slot = *slot;
        }
        v
    }

    #[test]
    fn members_keep_their_slots_and_newcomers_take_free_ones() {
        let (s1, fresh) = assign_slots(2, None, &[b(1), b(2), b(3)]);
        assert_eq!(s1, [128, 129, 130]);
        assert_eq!(fresh, [128, 129, 130]);
        let v1 = packed(2, &[b(1), b(2), b(3)], &s1);
        // b2 goes down: the others keep theirs
        let (s2, fresh) = assign_slots(2, Some(&v1), &[b(1), b(3)]);
        assert_eq!(
            (s2.as_slice(), fresh.as_slice()),
            (&[128u16, 130][..], &[][..])
        );
        let v2 = packed(2, &[b(1), b(3)], &s2);
        // b4 arrives and b2 comes back: lowest free positions, zeroed
        let (s3, fresh) = assign_slots(2, Some(&v2), &[b(4), b(1), b(2), b(3)]);
        assert_eq!(s3, [129, 128, 131, 130]);
        assert_eq!(fresh, [129, 131]);
    }

    #[test]
    fn a_full_rotation_gets_every_position_once() {
        let all: Vec<Backend> = (0..KV_MAX_BACKENDS as u8).map(b).collect();
        let (slots, _) = assign_slots(1023, None, &all);
        let mut sorted = slots.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
        assert_eq!(sorted[0], 1023 * 64);
        assert_eq!(*sorted.last().expect("64"), u16::MAX);
        // slots from another service id are not kept
        let v = packed(5, &all[..2], &[0, 1]);
        let (slots, fresh) = assign_slots(5, Some(&v), &all[..2]);
        assert_eq!(slots, [320, 321]);
        assert_eq!(fresh, [320, 321]);
    }
}
