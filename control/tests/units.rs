//! The systemd units of `control/dist/`: the template runs one daemon per
//! network namespace without anything that would give it a private mount
//! namespace (its pins must outlive it), and `systemd-analyze verify`
//! finds nothing wrong but the binary's absence where it is not installed.

use std::path::Path;
use std::process::Command;

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn key<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_template_runs_one_daemon_per_namespace_in_the_host_mount_namespace() {
    for (name, config) in [
        ("kowabungad@.service", "/etc/kowabunga/%i.yaml"),
        ("kowabungad.service", "/etc/kowabunga/kowabungad.yaml"),
    ] {
        let text = unit(name);
        assert_eq!(
            key(&text, "ExecStart"),
            [format!("/usr/sbin/kowabungad --config {config}")],
            "{name}"
        );
        assert_eq!(
            key(&text, "ExecStartPre"),
            [format!("/usr/sbin/kowabungad --config {config} --check")],
            "{name}"
        );
        assert_eq!(
            key(&text, "ExecReload"),
            ["/bin/kill -HUP $MAINPID"],
            "{name}"
        );
        assert_eq!(key(&text, "KillSignal"), ["SIGTERM"], "{name}");
        for forbidden in [
            "NetworkNamespacePath",
            "PrivateMounts",
            "PrivateNetwork",
            "ProtectSystem",
            "ProtectKernelTunables",
            "JoinsNamespaceOf",
        ] {
            assert!(key(&text, forbidden).is_empty(), "{name} sets {forbidden}");
        }
    }
}

#[test]
fn systemd_analyze_finds_nothing_but_the_missing_binary() {
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/kowabungad.service"))
        .output()
    else {
        eprintln!("systemd-analyze not installed: the unit's keys are checked above");
        return;
    };
    let text = String::from_utf8_lossy(&out.stderr);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("/usr/sbin/kowabungad") && line.contains("No such file"),
            "systemd-analyze: {line}"
        );
    }
}
