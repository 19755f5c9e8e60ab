//! `kowabungad` in front of pins of another ABI version (here: pins made
//! before versions, without `kw_meta`): exit 1 and the dataplane's refusal
//! on stderr as it is, one line, the pins untouched. Privileged; skipped
//! or failed as `kowabunga_testkit::privileged` says.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kowabunga_dataplane::abi::MAP_META;
use kowabunga_dataplane::{bpffs, kawaii, Kawaii, LoadOptions};
use kowabunga_testkit::privileged;

const BIN: &str = env!("CARGO_BIN_EXE_kowabungad");

/// A pin directory under /sys/fs/bpf, or on a private bpffs mounted for
/// the test; removed (and unmounted) on drop.
struct Pins {
    dir: PathBuf,
    mount: Option<PathBuf>,
    config: PathBuf,
}

impl Pins {
    fn new() -> Self {
        let tag = format!("kowabungad-abi-{}", std::process::id());
        let config = std::env::temp_dir().join(format!("{tag}.yaml"));
        let sys = Path::new("/sys/fs/bpf");
        if bpffs::is_bpffs(sys).unwrap_or(false) {
            return Pins {
                dir: sys.join(&tag),
                mount: None,
                config,
            };
        }
        let mount = std::env::temp_dir().join(format!("{tag}-bpffs"));
        std::fs::create_dir_all(&mount).unwrap();
        bpffs::mount(&mount).unwrap();
        Pins {
            dir: mount.join("kowabunga"),
            mount: Some(mount),
            config,
        }
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.config);
        if let Some(m) = &self.mount {
            let _ = bpffs::unmount(m);
            let _ = std::fs::remove_dir(m);
        }
    }
}

#[test]
fn refuses_unversioned_pins_with_the_dataplane_line_and_exit_1() {
    if !privileged("refuses_unversioned_pins_with_the_dataplane_line_and_exit_1") {
        return;
    }
    let pins = Pins::new();
    let options = LoadOptions {
        pin_dir: Some(pins.dir.clone()),
        ct_entries: None,
    };
    drop(Kawaii::load(&options).unwrap());
    std::fs::remove_file(pins.dir.join(MAP_META)).unwrap();
    let expected = match Kawaii::load(&options) {
        Err(e @ kawaii::Error::AbiMismatch { found: None, .. }) => e.to_string(),
        other => panic!("not refused: {other:?}"),
    };

    let config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kawaii-lab.yaml"),
    )
    .unwrap()
    .replace(
        "  # bpffs: /sys/fs/bpf/kowabunga     # default",
        &format!("  bpffs: {}", pins.dir.display()),
    );
    assert!(config.contains("bpffs: /"), "{config}");
    std::fs::write(&pins.config, config).unwrap();
    // --detach: the same start-up and error path as a daemon start, without
    // touching interfaces or sysctls; the load is refused before anything.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&pins.config)
        .arg("--detach")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, format!("kowabungad: {expected}\n"));
    println!("{stderr}");
    for name in kawaii::MAP_NAMES.iter().filter(|n| **n != MAP_META) {
        assert!(pins.dir.join(name).exists(), "{name} kept");
    }
    assert!(!pins.dir.join(MAP_META).exists(), "no version invented");
}
