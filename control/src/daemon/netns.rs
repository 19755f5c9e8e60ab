//! Where the daemon runs: entering the named network namespace of
//! `node.netns`, and refusing a private mount namespace whose bpffs would
//! die with the daemon.
//!
//! `ip netns exec NAME cmd` gives `cmd` a private mount namespace with a
//! fresh `/sys`, without the host's bpffs: a daemon that mounted its own
//! bpffs there would pin its programs, links and conntrack into a
//! filesystem that disappears when it exits, detaching the dataplane with
//! it. So the daemon either works from the host's mount namespace (started
//! by systemd, or `nsenter --net=/run/netns/NAME`), entering the network
//! namespace itself (`node.netns`), or refuses to start.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Directories where `ip netns` keeps its namespaces, in search order.
pub const NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// The file of the named network namespace.
///
/// # Errors
/// No such namespace.
pub fn netns_path(name: &str) -> anyhow::Result<PathBuf> {
    NETNS_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .with_context(|| {
            format!("node.netns: network namespace {name:?} does not exist (no /run/netns/{name}; create it with `ip netns add {name}`)")
        })
}

/// Moves the calling thread into the named network namespace. Call it
/// before any other thread starts: threads created afterwards are born in
/// it, those created before stay where they were.
///
/// # Errors
/// No such namespace, or `setns` refused (needs CAP_SYS_ADMIN).
pub fn enter(name: &str) -> anyhow::Result<()> {
    let path = netns_path(name)?;
    let file =
        File::open(&path).with_context(|| format!("node.netns: opening {}", path.display()))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("node.netns: entering {}", path.display()))?;
    Ok(())
}

/// Whether this process shares the mount namespace of PID 1 (the host's,
/// or the container's own init), or, where PID 1 is hidden (some sandboxes
/// refuse to show its namespaces), of the parent process: `ip netns exec`
/// makes a private one for the command it runs, `nsenter --net` does not.
/// `None` when neither can be read.
pub fn in_init_mount_ns() -> Option<bool> {
    let ours = std::fs::metadata("/proc/self/ns/mnt").ok()?;
    let parent = format!("/proc/{}/ns/mnt", nix::unistd::getppid());
    let other = std::fs::metadata("/proc/1/ns/mnt")
        .or_else(|_| std::fs::metadata(parent))
        .ok()?;
    Some(same_ns(
        (ours.dev(), ours.ino()),
        (other.dev(), other.ino()),
    ))
}

/// Two namespace files name the same namespace when device and inode match.
pub fn same_ns(a: (u64, u64), b: (u64, u64)) -> bool {
    a == b
}

/// What to do about the pin directory's bpffs at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// The pin directory is on a bpffs: go on.
    Mounted,
    /// Not mounted, in the init mount namespace: mounting one is safe (it
    /// outlives the daemon).
    Mount,
    /// Not mounted, in a private mount namespace: refuse.
    Refuse,
}

/// The decision for a pin directory that is (`on_bpffs`) or is not on a
/// bpffs, in the init mount namespace or not (`None`: unknown, taken as
/// the init one, as before this check existed).
pub fn pin_check(on_bpffs: bool, init_mount_ns: Option<bool>) -> PinCheck {
    match (on_bpffs, init_mount_ns) {
        (true, _) => PinCheck::Mounted,
        (false, Some(false)) => PinCheck::Refuse,
        (false, _) => PinCheck::Mount,
    }
}

/// The one line of a refusal for `pin_dir`.
pub fn refusal(pin_dir: &Path) -> String {
    format!(
        "node.bpffs: {} is not on a bpffs in this private mount namespace (as under `ip netns exec`): pins made here would vanish with kowabungad and detach the dataplane; run it from the host's mount namespace (`nsenter --net=/run/netns/NAME kowabungad ...`, or systemd's kowabungad@NAME.service) or set node.netns: NAME",
        pin_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_refused_only_in_a_private_mount_namespace() {
        assert_eq!(pin_check(true, Some(false)), PinCheck::Mounted);
        assert_eq!(pin_check(true, Some(true)), PinCheck::Mounted);
        assert_eq!(pin_check(false, Some(true)), PinCheck::Mount);
        assert_eq!(pin_check(false, None), PinCheck::Mount);
        assert_eq!(pin_check(false, Some(false)), PinCheck::Refuse);
        assert!(same_ns((1, 2), (1, 2)) && !same_ns((1, 2), (1, 3)));
        let line = refusal(Path::new("/sys/fs/bpf/kowabunga"));
        assert!(line.starts_with("node.bpffs: /sys/fs/bpf/kowabunga is not on a bpffs"));
        assert!(line.contains("nsenter --net=") && line.contains("node.netns"));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn this_test_runs_in_a_known_mount_namespace() {
        // The test runner is not inside `ip netns exec`: PID 1's namespace
        // (or unreadable, in a sandbox without /proc/1).
        assert_ne!(in_init_mount_ns(), Some(false));
    }

    #[test]
    fn unknown_namespaces_are_named() {
        let err = enter("kowabunga-no-such-ns").expect_err("no such namespace");
        assert!(
            err.to_string().starts_with(
                "node.netns: network namespace \"kowabunga-no-such-ns\" does not exist"
            ),
            "{err}"
        );
    }
}
