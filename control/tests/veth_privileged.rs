//! The veth check on real interfaces: the ethtool ioctl answers for the
//! network namespace of the calling thread, where a veth pair made for the
//! test lives (invisible from the test's own namespace). Privileged;
//! skipped or failed as `kowabunga_testkit::privileged` says.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io;
use std::process::Command;

use kowabunga_control::daemon::veth::{driver, warnings};
use kowabunga_testkit::privileged;

/// A network namespace made with `ip netns add`, deleted on drop (with the
/// veth pair inside it).
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        Netns(name.to_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread that entered network namespace `ns` (only that
/// thread changes namespace).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn errno(r: io::Result<String>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn veths_are_found_by_driver_in_the_callers_namespace() {
    if !privileged("veths_are_found_by_driver_in_the_callers_namespace") {
        return;
    }
    let tag = std::process::id() % 100_000;
    let ns = Netns::new(&format!("kwveth{tag}"));
    let (a, b) = (format!("kwva{tag}"), format!("kwvb{tag}"));
    ip(&[
        "-n", &ns.0, "link", "add", &a, "type", "veth", "peer", "name", &b,
    ]);

    let (a2, b2) = (a.clone(), b.clone());
    let (da, db, dlo, dnone, lines) = in_netns(&ns.0, move || {
        let ifaces = vec![
            ("node.interfaces.public".to_owned(), a2.clone()),
            ("node.interfaces.private".to_owned(), "lo".to_owned()),
        ];
        (
            driver(&a2),
            driver(&b2),
            driver("lo"),
            driver("kwv-none"),
            warnings(&ifaces, driver),
        )
    });
    assert_eq!(da.unwrap(), "veth");
    assert_eq!(db.unwrap(), "veth");
    assert_eq!(errno(dlo), Some(libc::EOPNOTSUPP), "lo has no driver info");
    assert_eq!(errno(dnone), Some(libc::ENODEV));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("node.interfaces.public: {a} is a veth: ")),
        "{}",
        lines[0]
    );
    println!("{}", lines[0]);
    // The pair is not in this thread's namespace.
    assert_eq!(errno(driver(&a)), Some(libc::ENODEV));
}
