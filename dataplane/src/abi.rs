//! The ABI version of pinned maps.
//!
//! Checking each pinned map's type, key and value sizes catches most layout
//! changes, but not a same-size one: a reordered struct, a field whose
//! meaning changed. So every pin directory also holds `kw_meta`, a one-slot
//! array whose value is the `KW_ABI_VERSION` (`ebpf/include/kw_abi.h`) of
//! the build that created the pins. Before it opens any other map, the
//! loader reads that version and [`decide`]s:
//!
//! | pins found | version found | outcome |
//! |---|---|---|
//! | none | none, or another one | [`PinDecision::Create`]: write this build's version, then pin |
//! | any | this build's | [`PinDecision::Reuse`] |
//! | some | another one, or none (pinned before versions) | [`PinDecision::Refuse`]: [`Error::AbiMismatch`] |
//!
//! ```
//! use kowabunga_dataplane::abi::{decide, PinDecision, ABI_VERSION};
//!
//! assert_eq!(decide(None, false, ABI_VERSION), PinDecision::Create);
//! assert_eq!(decide(Some(ABI_VERSION), true, ABI_VERSION), PinDecision::Reuse);
//! assert_eq!(
//!     decide(None, true, ABI_VERSION),
//!     PinDecision::Refuse { found: None }
//! );
//! ```

use std::{fs, io, path::Path};

use aya::maps::{Array, Map, MapData, MapError, MapType};
use kowabunga_bindings::KW_ABI_VERSION;

use crate::kawaii::{check_pinned, Error, MapSpec};

/// The ABI version of this build's maps (`KW_ABI_VERSION`).
pub const ABI_VERSION: u32 = KW_ABI_VERSION;

/// Array `u32` 0 -> `u32` ABI version of the maps pinned beside it. Its
/// definition never changes, so every build can read it.
pub const MAP_META: &str = "kw_meta";

/// The definition of [`MAP_META`], the same in every build.
pub(crate) const META_SPEC: MapSpec = MapSpec {
    name: MAP_META,
    map_type: MapType::Array,
    key_size: 4,
    value_size: 4,
    max_entries: 1,
};

/// What a loader does with a pin directory, given what it found there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinDecision {
    /// No map is pinned: write this build's version, then create the pins.
    Create,
    /// The pins carry this build's version: reuse them (and create any
    /// missing one).
    Reuse,
    /// Maps are pinned with another version, or with none (pinned before
    /// versions existed): touch nothing.
    Refuse {
        /// The version found; `None` when `kw_meta` is missing.
        found: Option<u32>,
    },
}

/// The decision for a pin directory whose `kw_meta` holds `found` (`None`:
/// no `kw_meta` pin) and where other maps are pinned (`maps_pinned`), for a
/// build of version `expected`.
///
/// A `kw_meta` left alone (its maps removed by hand, or a crash before they
/// were pinned) guards nothing, so it is replaced whatever its version.
pub fn decide(found: Option<u32>, maps_pinned: bool, expected: u32) -> PinDecision {
    match (found, maps_pinned) {
        (Some(v), _) if v == expected => PinDecision::Reuse,
        (_, false) => PinDecision::Create,
        (found, true) => PinDecision::Refuse { found },
    }
}

/// The ABI version of the pins in `pin_dir`: `None` without a `kw_meta` pin.
///
/// # Errors
/// The `kw_meta` pin has another definition
/// ([`Error::PinnedMapMismatch`]) or cannot be read.
pub fn pinned_version(pin_dir: &Path) -> Result<Option<u32>, Error> {
    let path = pin_dir.join(MAP_META);
    if fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    check_pinned(&META_SPEC, &path)?;
    let unreadable = |source| Error::PinnedMapUnreadable {
        map: MAP_META,
        path: path.clone(),
        source,
    };
    let data = MapData::from_pin(&path).map_err(unreadable)?;
    let meta: Array<MapData, u32> = Array::try_from(Map::Array(data)).map_err(unreadable)?;
    meta.get(&0, 0).map(Some).map_err(unreadable)
}

/// Checks the version of the pins in `pin_dir` before anything else is
/// opened: reuses pins of this build's version, refuses others
/// ([`Error::AbiMismatch`] naming `object`), and for a directory without
/// pinned maps pins a `kw_meta` holding [`ABI_VERSION`] first, so that
/// maps are never pinned without their version. `maps` are the other maps
/// of the object.
pub(crate) fn guard(pin_dir: &Path, object: &'static str, maps: &[&str]) -> Result<(), Error> {
    let found = pinned_version(pin_dir)?;
    let maps_pinned = maps
        .iter()
        .filter(|name| **name != MAP_META)
        .any(|name| fs::symlink_metadata(pin_dir.join(name)).is_ok());
    match decide(found, maps_pinned, ABI_VERSION) {
        PinDecision::Reuse => Ok(()),
        PinDecision::Refuse { found } => Err(Error::AbiMismatch {
            object,
            pin_dir: pin_dir.to_owned(),
            found,
            expected: ABI_VERSION,
        }),
        PinDecision::Create => pin_meta(&pin_dir.join(MAP_META)),
    }
}

/// Creates `kw_meta` holding [`ABI_VERSION`] and pins it at `path`,
/// replacing a stale pin.
fn pin_meta(path: &Path) -> Result<(), Error> {
    let failed = |source| Error::WriteAbiVersion {
        path: path.to_owned(),
        source,
    };
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(failed(MapError::IoError(e)));
        }
        _ => {}
    }
    let def = aya_obj::Map::new_from_params(
        aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_ARRAY as u32,
        META_SPEC.key_size,
        META_SPEC.value_size,
        META_SPEC.max_entries,
        0,
    );
    let data = MapData::create(def, MAP_META, None).map_err(failed)?;
    let mut meta: Array<MapData, u32> = Array::try_from(Map::Array(data)).map_err(failed)?;
    meta.set(0, ABI_VERSION, 0).map_err(failed)?;
    meta.pin(path).map_err(|e| {
        failed(MapError::PinError {
            name: Some(MAP_META.into()),
            error: e,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        use PinDecision::*;
        let v = ABI_VERSION;
        // Nothing pinned: create, whatever a lone kw_meta says.
        assert_eq!(decide(None, false, v), Create);
        assert_eq!(decide(Some(v + 1), false, v), Create);
        assert_eq!(decide(Some(0), false, v), Create);
        // This version: reuse, with or without maps.
        assert_eq!(decide(Some(v), true, v), Reuse);
        assert_eq!(decide(Some(v), false, v), Reuse);
        // Maps pinned by another build: refuse.
        assert_eq!(decide(Some(v + 1), true, v), Refuse { found: Some(v + 1) });
        assert_eq!(decide(Some(v - 1), true, v), Refuse { found: Some(v - 1) });
        assert_eq!(decide(None, true, v), Refuse { found: None });
    }

    #[test]
    fn meta_spec_is_one_u32() {
        assert_eq!((META_SPEC.key_size, META_SPEC.value_size), (4, 4));
        assert_eq!(META_SPEC.max_entries, 1);
    }
}
