//! The pinned maps the CLI reads itself (conntrack, counters), so `flows`
//! and `drops` work with the daemon stopped: where they are, and opening
//! them.

use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData, PerCpuArray};
use kowabunga_bindings::kw_counter;
use kowabunga_dataplane::conntrack::CtTable;
use kowabunga_dataplane::kawaii::{MAP_CT4, MAP_CT4_NEW, MAP_STATS};
use kowabunga_dataplane::stats::STAT_COUNT;
use kowabunga_dataplane::Counters;

use super::CliError;
use crate::konvey::role::KONVEY_PIN_SUBDIR;

/// The pin directories of the node's XDP roles that exist: `(role, dir)`,
/// Kawaii in `bpffs`, Konvey in `bpffs/konvey`.
pub fn role_dirs(bpffs: &Path) -> Vec<(&'static str, PathBuf)> {
    [
        ("kawaii", bpffs.to_owned()),
        ("konvey", bpffs.join(KONVEY_PIN_SUBDIR)),
    ]
    .into_iter()
    .filter(|(_, dir)| dir.join(MAP_CT4).exists())
    .collect()
}

/// Both conntrack tables pinned in `dir`: confirmed, then embryonic.
///
/// # Errors
/// [`CliError::Pins`].
pub fn ct_tables(dir: &Path) -> Result<Vec<CtTable>, CliError> {
    [MAP_CT4, MAP_CT4_NEW]
        .into_iter()
        .map(|name| {
            CtTable::from_pin(name, &dir.join(name))
                .map_err(|e| CliError::Pins(format!("{}: {e}", dir.join(name).display())))
        })
        .collect()
}

/// The counters pinned in `dir`, summed over CPUs.
///
/// # Errors
/// [`CliError::Pins`].
pub fn counters(dir: &Path) -> Result<Counters, CliError> {
    let path = dir.join(MAP_STATS);
    let fail = |e: &dyn std::fmt::Display| CliError::Pins(format!("{}: {e}", path.display()));
    let data = MapData::from_pin(&path).map_err(|e| fail(&e))?;
    let map: PerCpuArray<MapData, kw_counter> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|e| fail(&e))?;
    let mut values = [kw_counter::default(); STAT_COUNT];
    for (i, slot) in values.iter_mut().enumerate() {
        let per_cpu = map.get(&(i as u32), 0).map_err(|e| fail(&e))?;
        for c in per_cpu.iter() {
            slot.packets = slot.packets.wrapping_add(c.packets);
            slot.bytes = slot.bytes.wrapping_add(c.bytes);
        }
    }
    Ok(Counters::from_values(values))
}
