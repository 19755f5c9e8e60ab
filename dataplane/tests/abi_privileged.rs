//! The ABI version of pinned maps in the kernel: pins carry `kw_meta`, a
//! daemon of another version (simulated by rewriting the pinned value) or
//! pins made before versions (simulated by removing `kw_meta`) are refused
//! with one line, and the other pinned maps stay as they were. Skipped (or
//! failed) as `kowabunga_testkit::privileged` says.

#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::BTreeMap, fs, path::Path};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapInfo};
use kowabunga_bindings::{kw_ct_key, kw_ct_value};
use kowabunga_dataplane::abi::{pinned_version, ABI_VERSION, MAP_META};
use kowabunga_dataplane::konvey::{self, Backend, KonveyConfig, Proto, ServiceKey};
use kowabunga_dataplane::{kawaii, Kawaii, KawaiiConfig, Konvey, LoadOptions};
use kowabunga_testkit::privileged;

use support::PinDir;

/// Kernel id of every pinned map but `kw_meta`: a map re-created (or
/// replaced) under the same name gets a new id.
fn ids(dir: &Path, names: &[&str]) -> BTreeMap<String, u32> {
    names
        .iter()
        .filter(|n| **n != MAP_META)
        .map(|n| {
            let info = MapInfo::from_pin(dir.join(n)).unwrap();
            ((*n).to_owned(), info.id())
        })
        .collect()
}

/// Overwrites the version pinned in `dir`, as a daemon of another ABI would
/// have left it.
fn set_pinned_version(dir: &Path, version: u32) {
    let data = MapData::from_pin(dir.join(MAP_META)).unwrap();
    let mut meta: Array<MapData, u32> = Array::try_from(Map::from_map_data(data).unwrap()).unwrap();
    meta.set(0, version, 0).unwrap();
}

/// The pinned conntrack entries of `dir`, read without loading anything.
fn pinned_conntrack(dir: &Path) -> Vec<(kw_ct_key, kw_ct_value)> {
    let data = MapData::from_pin(dir.join(kawaii::MAP_CT4)).unwrap();
    let ct: BpfHashMap<MapData, kw_ct_key, kw_ct_value> =
        BpfHashMap::try_from(Map::from_map_data(data).unwrap()).unwrap();
    ct.iter().map(Result::unwrap).collect()
}

fn flow() -> (kw_ct_key, kw_ct_value) {
    let key = kw_ct_key {
        saddr: u32::from_ne_bytes([10, 0, 0, 2]),
        daddr: u32::from_ne_bytes([8, 8, 8, 8]),
        sport: 40000u16.to_be(),
        dport: 53u16.to_be(),
        proto: 17,
        _pad: [0; 3],
    };
    let value = kw_ct_value {
        nat_saddr: u32::from_ne_bytes([203, 0, 113, 10]),
        nat_daddr: key.daddr,
        nat_sport: key.sport,
        nat_dport: key.dport,
        in_role: kowabunga_dataplane::Role::Private.into(),
        last_seen_ns: 1,
        ..Default::default()
    };
    (key, value)
}

/// Asserts `err` is the ABI refusal for `dir` with `found`, in one line.
fn assert_refusal(err: &kawaii::Error, object: &str, dir: &Path, found: Option<u32>) {
    let msg = err.to_string();
    match err {
        kawaii::Error::AbiMismatch {
            object: o,
            pin_dir,
            found: f,
            expected,
        } => {
            assert_eq!(
                (*o, pin_dir.as_path(), *f, *expected),
                (object, dir, found, ABI_VERSION)
            );
        }
        other => panic!("not an ABI refusal: {other:?}"),
    }
    assert_eq!(msg.lines().count(), 1, "{msg}");
    let dir = dir.display().to_string();
    let version = match found {
        Some(v) => format!("ABI version {v},"),
        None => "no ABI version".to_owned(),
    };
    for needle in [
        dir.as_str(),
        version.as_str(),
        &format!("this build's is {ABI_VERSION}"),
        "--detach",
        &format!("rm -r {dir}"),
        "conntrack is lost",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    println!("refusal: {msg}");
}

#[test]
fn kawaii_pins_carry_the_abi_version_and_others_are_refused() {
    if !privileged("kawaii_pins_carry_the_abi_version_and_others_are_refused") {
        return;
    }
    let pins = PinDir::new();
    let dir = pins.dir.clone();
    let options = LoadOptions {
        pin_dir: Some(dir.clone()),
        ct_entries: Some(4096),
    };
    let config = KawaiiConfig::new(
        "203.0.113.10".parse().unwrap(),
        "10.0.0.0/24".parse().unwrap(),
    );
    let (key, value) = flow();
    {
        let mut kawaii = Kawaii::load(&options).unwrap();
        kawaii.apply(&config).unwrap();
        kawaii.conntrack_insert(&key, &value).unwrap();
    }
    assert_eq!(pinned_version(&dir).unwrap(), Some(ABI_VERSION));
    let before = ids(&dir, &kawaii::MAP_NAMES);
    assert_eq!(before.len(), kawaii::MAP_NAMES.len() - 1);

    // Same version: reused.
    {
        let kawaii = Kawaii::load(&options).unwrap();
        assert_eq!(kawaii.conntrack_get(&key).unwrap(), Some(value));
    }
    assert_eq!(ids(&dir, &kawaii::MAP_NAMES), before);

    // Pinned by a daemon of another ABI version: refused, nothing touched.
    let other = ABI_VERSION + 1;
    set_pinned_version(&dir, other);
    let err = Kawaii::load(&options).unwrap_err();
    assert_refusal(&err, "kawaii.o", &dir, Some(other));
    assert_eq!(pinned_version(&dir).unwrap(), Some(other), "version kept");
    assert_eq!(ids(&dir, &kawaii::MAP_NAMES), before, "same maps");
    assert_eq!(pinned_conntrack(&dir), vec![(key, value)], "conntrack kept");

    // Pinned before versions existed (no kw_meta): refused, nothing touched.
    fs::remove_file(dir.join(MAP_META)).unwrap();
    let err = Kawaii::load(&options).unwrap_err();
    assert_refusal(&err, "kawaii.o", &dir, None);
    assert!(!dir.join(MAP_META).exists(), "no version invented");
    assert_eq!(ids(&dir, &kawaii::MAP_NAMES), before, "same maps");
    assert_eq!(pinned_conntrack(&dir), vec![(key, value)], "conntrack kept");

    // After the documented fix (the pins removed): fresh pins, versioned.
    kawaii::remove_pinned_maps(&dir).unwrap();
    {
        let kawaii = Kawaii::load(&options).unwrap();
        assert_eq!(kawaii.conntrack_get(&key).unwrap(), None);
    }
    assert_eq!(pinned_version(&dir).unwrap(), Some(ABI_VERSION));

    // A kw_meta left alone guards nothing: replaced, whatever it says.
    set_pinned_version(&dir, other);
    for name in kawaii::MAP_NAMES.iter().filter(|n| **n != MAP_META) {
        fs::remove_file(dir.join(name)).unwrap();
    }
    drop(Kawaii::load(&options).unwrap());
    assert_eq!(pinned_version(&dir).unwrap(), Some(ABI_VERSION));
}

#[test]
fn konvey_pins_carry_the_abi_version_and_others_are_refused() {
    if !privileged("konvey_pins_carry_the_abi_version_and_others_are_refused") {
        return;
    }
    let pins = PinDir::new();
    let dir = pins.dir.join("konvey");
    let options = LoadOptions {
        pin_dir: Some(dir.clone()),
        ct_entries: Some(4096),
    };
    let key = ServiceKey {
        vip: "10.9.0.100".parse().unwrap(),
        proto: Proto::Tcp,
        port: 443,
    };
    let rotation = vec![Backend {
        addr: "10.9.0.11".parse().unwrap(),
        port: 8443,
    }];
    {
        let mut konvey = Konvey::load(&options).unwrap();
        konvey
            .set_config(&KonveyConfig {
                sources: vec!["10.9.0.5".parse().unwrap()],
                port_min: 1024,
                port_max: 32767,
                sample_shift: 0,
            })
            .unwrap();
        konvey.set_service(key, &rotation).unwrap();
    }
    assert_eq!(pinned_version(&dir).unwrap(), Some(ABI_VERSION));
    let before = ids(&dir, &konvey::MAP_NAMES);

    let unwrap_load = |err: konvey::Error| match err {
        konvey::Error::Load(e) => e,
        other => panic!("not a load error: {other:?}"),
    };
    set_pinned_version(&dir, ABI_VERSION + 1);
    let err = unwrap_load(Konvey::load(&options).unwrap_err());
    assert_refusal(&err, "konvey.o", &dir, Some(ABI_VERSION + 1));
    assert_eq!(ids(&dir, &konvey::MAP_NAMES), before, "same maps");

    fs::remove_file(dir.join(MAP_META)).unwrap();
    let err = unwrap_load(Konvey::load(&options).unwrap_err());
    assert_refusal(&err, "konvey.o", &dir, None);
    assert_eq!(ids(&dir, &konvey::MAP_NAMES), before, "same maps");

    // Its own version back: the pins are reused with their services.
    set_meta_by_hand(&dir);
    let konvey = Konvey::load(&options).unwrap();
    assert_eq!(konvey.services().unwrap(), vec![(key, rotation)]);
    assert_eq!(ids(&dir, &konvey::MAP_NAMES), before, "same maps");
}

/// Pins a fresh `kw_meta` holding this build's version, as an operator
/// restoring it by hand would.
fn set_meta_by_hand(dir: &Path) {
    let mut meta: Array<MapData, u32> = Array::create(1, 0).unwrap();
    meta.set(0, ABI_VERSION, 0).unwrap();
    meta.pin(dir.join(MAP_META)).unwrap();
}
