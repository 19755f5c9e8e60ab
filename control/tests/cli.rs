//! `kowabungad --check` as a process: exit codes and the one-line error.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kowabungad");

struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("kowabungad-cli-{tag}-{}.yaml", std::process::id()));
        std::fs::write(&path, text).expect("write config");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn check(path: &std::path::Path) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(path)
        .arg("--check")
        .env("RUST_LOG", "info")
        .output()
        .expect("run kowabungad")
}

fn lab_example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/kawaii-lab.yaml")
}

#[test]
fn check_accepts_the_lab_example() {
    let out = check(&lab_example());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "config OK\n");
}

#[test]
fn check_rejects_a_bad_value_with_exit_2_and_one_line() {
    let text = std::fs::read_to_string(lab_example())
        .expect("example")
        .replace("ports: \"8080\"", "ports: \"80,x\"");
    let file = TempFile::new("bad-ports", &text);
    let out = check(&file.0);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(
        lines[0],
        r#"kowabungad: kawaii.dnat[0].ports: "80,x" is not a port list ("x" is not a port)"#
    );
}

#[test]
fn check_rejects_an_unknown_field_with_exit_2() {
    let text = std::fs::read_to_string(lab_example())
        .expect("example")
        .replace("egress_policy: accept", "egress_polcy: accept");
    let file = TempFile::new("typo", &text);
    let out = check(&file.0);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("kowabungad: kawaii.firewall: unknown field `egress_polcy`"),
        "{stderr}"
    );
}

#[test]
fn missing_file_is_a_config_error() {
    let out = check(std::path::Path::new("/nonexistent/kowabungad.yaml"));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/kowabungad.yaml"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(BIN).output().expect("run kowabungad");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
