//! `kowabungad --check` on Konvey configurations: exit codes and one-line errors.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kowabungad");

struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "kowabungad-konvey-cli-{tag}-{}.yaml",
            std::process::id()
        ));
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

fn example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/konvey-lab.yaml");
    std::fs::read_to_string(path).expect("example")
}

fn one_line_error(text: &str, tag: &str) -> String {
    let file = TempFile::new(tag, text);
    let out = check(&file.0);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end().to_owned()
}

#[test]
fn check_accepts_the_konvey_example() {
    let file = TempFile::new("ok", &example());
    let out = check(&file.0);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "config OK\n");
}

#[test]
fn check_names_the_field_and_the_value() {
    assert_eq!(
        one_line_error(
            &example().replace(
                "10.0.0.12, 10.0.0.13]}\n    - {name: echo",
                "10.0.0.12, 10.0.0.1300]}\n    - {name: echo"
            ),
            "bad-ip"
        ),
        r#"kowabungad: konvey.endpoints[0].backend_ips[2]: "10.0.0.1300" is not an IPv4 address"#
    );
    assert_eq!(
        one_line_error(&example().replace("fall: 2", "fall: 0"), "bad-fall"),
        "kowabungad: node.konvey.health.fall: 0 is out of range (1-100)"
    );
    assert_eq!(
        one_line_error(
            &(example().replace(
                "interfaces: {konvey: [eth0]}",
                "interfaces: {public: eth0, private: eth1, konvey: [eth0]}"
            ) + "kawaii: {public_ips: [203.0.113.10], private_subnet: 10.1.0.0/25}\n"),
            "both-programs"
        ),
        r#"kowabungad: node.interfaces.konvey[0]: "eth0" already carries the Kawaii program (node.interfaces.public); an interface runs one program"#
    );
}
