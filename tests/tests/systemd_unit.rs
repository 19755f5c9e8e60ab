//! `packaging/kowabungad.service` checked by `systemd-analyze verify` (no
//! running systemd needed), with `/usr/sbin/kowabungad` pointed at the
//! binary just built; every capability it names known to systemd; and the
//! unit's capability set against what the daemon's own start-up check
//! requires.
//!
//! Needs `systemd-analyze` (package systemd, `cargo xtask deps test`) and
//! `target/<profile>/kowabungad`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use kowabunga_dataplane::caps;
use kowabunga_testkit::missing;
use kowabunga_tests::lab::find_kowabungad;

fn unit_text() -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/kowabungad.service");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// `systemd-analyze verify` of `text` written as `dir/kowabungad.service`:
/// (success, everything it printed).
fn verify(dir: &Path, text: &str) -> Result<(bool, String)> {
    let file = dir.join("kowabungad.service");
    std::fs::write(&file, text)?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .context("running systemd-analyze verify")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), said))
}

fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_unit_verifies_and_a_broken_one_does_not() -> Result<()> {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        missing(
            "the_unit_verifies_and_a_broken_one_does_not",
            "systemd-analyze (cargo xtask deps test)",
        );
        return Ok(());
    }
    let bin = find_kowabungad()?;
    let dir: PathBuf = std::env::temp_dir().join(format!("kw-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let unit = unit_text()?.replace("/usr/sbin/kowabungad", &bin.to_string_lossy());
    let (ok, said) = verify(&dir, &unit)?;
    ensure!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
    // The same check fails on a typo.
    let (_, said) = verify(&dir, &unit.replace("WatchdogSec=", "WatchdogSecs="))?;
    ensure!(
        said.contains("WatchdogSecs"),
        "a typo went unnoticed: {said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // verify ignores unknown capability names: check them one by one.
    let caps_line = values(&unit, "CapabilityBoundingSet").join(" ");
    let names: Vec<&str> = caps_line.split_whitespace().collect();
    ensure!(!names.is_empty(), "no CapabilityBoundingSet");
    for name in names.iter().copied().chain(["CAP_SYS_NICEST"]) {
        let known = Command::new("systemd-analyze")
            .args(["capability", name])
            .output()?
            .status
            .success();
        ensure!(
            known == (name != "CAP_SYS_NICEST"),
            "systemd-analyze capability {name}: known={known}"
        );
    }
    Ok(())
}

#[test]
fn the_unit_is_a_notify_service_with_the_capabilities_the_daemon_checks() -> Result<()> {
    let unit = unit_text()?;
    assert_eq!(values(&unit, "Type"), ["notify"]);
    assert_eq!(values(&unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(values(&unit, "ProtectSystem"), ["strict"]);
    assert_eq!(values(&unit, "Restart"), ["on-failure"]);
    assert_eq!(values(&unit, "WatchdogSec").len(), 1);
    let start = values(&unit, "ExecStart");
    let pre = values(&unit, "ExecStartPre");
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0], format!("{} --check", start[0]));
    assert!(values(&unit, "ReadWritePaths")
        .iter()
        .any(|v| v.split_whitespace().any(|p| p == "/sys/fs/bpf")));

    let bounding = values(&unit, "CapabilityBoundingSet");
    assert_eq!(bounding.len(), 1);
    assert_eq!(values(&unit, "AmbientCapabilities"), bounding);
    let bit = |name: &str| match name {
        "CAP_BPF" => Some(caps::CAP_BPF),
        "CAP_NET_ADMIN" => Some(caps::CAP_NET_ADMIN),
        "CAP_SYS_ADMIN" => Some(caps::CAP_SYS_ADMIN),
        _ => None,
    };
    let mask = bounding[0]
        .split_whitespace()
        .filter_map(bit)
        .fold(0u64, |m, b| m | (1 << b));
    caps::check_mask(mask).context("the unit's CapabilityBoundingSet")?;
    // Without CAP_BPF and CAP_SYS_ADMIN the same check refuses.
    let without_bpf = bounding[0]
        .split_whitespace()
        .filter(|c| *c != "CAP_BPF" && *c != "CAP_SYS_ADMIN")
        .filter_map(bit)
        .fold(0u64, |m, b| m | (1 << b));
    assert!(caps::check_mask(without_bpf).is_err());
    Ok(())
}
