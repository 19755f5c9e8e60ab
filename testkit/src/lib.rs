//! The one skip-or-fail policy of Kowabunga's privileged tests, shared by every
//! test suite of the workspace (dataplane, kowabunga-tests, kowabunga-lib).
//!
//! A test that needs the kernel (BPF programs, network namespaces, mounts,
//! daemons running as root) calls [`privileged`] first:
//!
//! ```no_run
//! // The body of `#[test] fn loads_the_program()`:
//! if !kowabunga_testkit::privileged("loads_the_program") {
//!     return;
//! }
//! // ... load, attach, assert ...
//! ```
//!
//! # What "privileged" means
//!
//! The process is **root (effective uid 0) and holds `CAP_SYS_ADMIN` and
//! `CAP_NET_ADMIN` in its effective set** (the `Uid:` and `CapEff:` lines of
//! `/proc/self/status`). Root alone is not enough: root in a container often
//! lacks both capabilities and would fail with `EPERM` instead of skipping.
//! Capabilities alone are not enough: the labs and the Ceph/libvirt tests
//! write root-owned paths (`/run/netns`, `/sys/fs/bpf`, daemon state).
//! `CAP_SYS_ADMIN` also grants everything `CAP_BPF` does, on every kernel,
//! and covers `unshare(CLONE_NEWNET)` and mounting bpffs.
//!
//! # Skip or fail
//!
//! When the process is not privileged (or a tool a test needs is missing, see
//! [`missing`]) the test prints
//! `skipping {test}: {why} (set KOWABUNGA_REQUIRE_PRIVILEGED=1 to make this a failure)`
//! and returns early, unless [`REQUIRE_PRIVILEGED`]`=1` (CI sets it), which
//! turns the skip into a panic.

use std::fs;

/// The environment variable that turns a privileged-test skip into a failure
/// when set to `1` (CI sets it).
pub const REQUIRE_PRIVILEGED: &str = "KOWABUNGA_REQUIRE_PRIVILEGED";

/// `CAP_NET_ADMIN` bit of a capability mask.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN` bit of a capability mask.
pub const CAP_SYS_ADMIN: u32 = 21;

/// What a test that needs something should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run: nothing is missing.
    Run,
    /// Skip; the message to print.
    Skip(String),
    /// Fail, because [`REQUIRE_PRIVILEGED`]`=1` forbids skipping; the panic message.
    Fail(String),
}

/// The decision for `test`, given why it cannot run (`None`: it can) and
/// whether skipping is forbidden. Pure: [`privileged`] and [`missing`] feed it
/// the state of this process.
///
/// ```
/// use kowabunga_testkit::{decide, Decision};
/// assert_eq!(decide("t", None, true), Decision::Run);
/// assert_eq!(
///     decide("t", Some("not root (euid 1000)"), false),
///     Decision::Skip(
///         "skipping t: not root (euid 1000) \
///          (set KOWABUNGA_REQUIRE_PRIVILEGED=1 to make this a failure)"
///             .into()
///     )
/// );
/// assert!(matches!(decide("t", Some("no ip"), true), Decision::Fail(_)));
/// ```
pub fn decide(test: &str, why_not: Option<&str>, required: bool) -> Decision {
    match why_not {
        None => Decision::Run,
        Some(why) if required => Decision::Fail(format!(
            "{test}: {why}, and {REQUIRE_PRIVILEGED}=1 forbids skipping"
        )),
        Some(why) => Decision::Skip(format!(
            "skipping {test}: {why} (set {REQUIRE_PRIVILEGED}=1 to make this a failure)"
        )),
    }
}

/// Whether a value of [`REQUIRE_PRIVILEGED`] forbids skipping: only `1` does.
///
/// ```
/// use kowabunga_testkit::required_by;
/// assert!(required_by(Some("1")));
/// assert!(!required_by(Some("0")) && !required_by(Some("")) && !required_by(None));
/// ```
pub fn required_by(value: Option<&str>) -> bool {
    value == Some("1")
}

/// Whether this process's environment forbids skipping ([`REQUIRE_PRIVILEGED`]`=1`).
pub fn required() -> bool {
    required_by(std::env::var(REQUIRE_PRIVILEGED).ok().as_deref())
}

/// Why a process whose `/proc/<pid>/status` text is `status` is not
/// privileged (see the [crate docs](crate)), or `None` when it is.
///
/// ```
/// use kowabunga_testkit::why_not_privileged_in;
/// let root = "Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
/// assert_eq!(why_not_privileged_in(root), None);
/// let user = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n";
/// assert_eq!(
///     why_not_privileged_in(user).as_deref(),
///     Some("needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN; this process is not root (euid 1000) and lacks CAP_SYS_ADMIN, CAP_NET_ADMIN")
/// );
/// ```
pub fn why_not_privileged_in(status: &str) -> Option<String> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let euid = field("Uid:")
        .and_then(|uids| uids.split_whitespace().nth(1))
        .and_then(|e| e.parse::<u32>().ok());
    let cap_eff = field("CapEff:").and_then(|hex| u64::from_str_radix(hex, 16).ok());
    let (Some(euid), Some(cap_eff)) = (euid, cap_eff) else {
        return Some("cannot read the Uid and CapEff lines of /proc/self/status".into());
    };
    let lacking: Vec<&str> = [
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| cap_eff & (1u64 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    let mut problems = Vec::new();
    if euid != 0 {
        problems.push(format!("is not root (euid {euid})"));
    }
    if !lacking.is_empty() {
        problems.push(format!("lacks {}", lacking.join(", ")));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN; this process {}",
            problems.join(" and ")
        )
    })
}

/// Why this process is not privileged (see the [crate docs](crate)), or
/// `None` when it is. For tools that need the same privileges but are not
/// tests (they fail instead of skipping).
///
/// ```no_run
/// if let Some(why) = kowabunga_testkit::why_not_privileged() {
///     eprintln!("the lab {why}");
///     std::process::exit(1);
/// }
/// ```
pub fn why_not_privileged() -> Option<String> {
    match fs::read_to_string("/proc/self/status") {
        Ok(status) => why_not_privileged_in(&status),
        Err(e) => Some(format!("cannot read /proc/self/status: {e}")),
    }
}

/// Whether the privileged test `test` may run: true when this process is
/// privileged (see the [crate docs](crate)). Otherwise prints why `test` is
/// skipped and returns false.
///
/// # Panics
/// When the process is not privileged and [`REQUIRE_PRIVILEGED`]`=1`.
#[track_caller]
pub fn privileged(test: &str) -> bool {
    act(decide(test, why_not_privileged().as_deref(), required()))
}

/// Skips `test` because `what` (a tool, a package, a host feature) is
/// missing: prints why and returns false, to be returned from the test.
///
/// ```no_run
/// # fn t() {
/// if !std::path::Path::new("/usr/sbin/ganesha.nfsd").exists() {
///     kowabunga_testkit::missing("kylo_share", "ganesha.nfsd (apt-get install nfs-ganesha-ceph)");
///     return;
/// }
/// # }
/// ```
///
/// # Panics
/// When [`REQUIRE_PRIVILEGED`]`=1`.
#[track_caller]
pub fn missing(test: &str, what: &str) -> bool {
    act(decide(
        test,
        Some(&format!("{what} is missing")),
        required(),
    ))
}

/// Prints a skip, panics on a failure; true only for [`Decision::Run`].
#[track_caller]
fn act(decision: Decision) -> bool {
    match decision {
        Decision::Run => true,
        Decision::Skip(message) => {
            eprintln!("{message}");
            false
        }
        Decision::Fail(message) => panic!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_ALL: &str = "Name:\tx\nUid:\t0\t0\t0\t0\nCapInh:\t0\nCapEff:\t000001fffeffffff\n";

    #[test]
    fn root_with_both_capabilities_is_privileged() {
        assert_eq!(why_not_privileged_in(ROOT_ALL), None);
        let just_enough = format!(
            "Uid:\t0\t0\t0\t0\nCapEff:\t{:016x}\n",
            (1u64 << CAP_SYS_ADMIN) | (1u64 << CAP_NET_ADMIN)
        );
        assert_eq!(why_not_privileged_in(&just_enough), None);
    }

    #[test]
    fn the_effective_uid_counts_not_the_real_one() {
        // setuid root: real 1000, effective 0.
        assert_eq!(
            why_not_privileged_in("Uid:\t1000\t0\t0\t0\nCapEff:\t000001ffffffffff\n"),
            None
        );
        let why = why_not_privileged_in("Uid:\t0\t1000\t0\t0\nCapEff:\t000001ffffffffff\n");
        assert_eq!(
            why.as_deref(),
            Some("needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN; this process is not root (euid 1000)")
        );
    }

    #[test]
    fn root_without_capabilities_is_not_privileged() {
        let net_admin_only = format!("Uid:\t0\t0\t0\t0\nCapEff:\t{:x}\n", 1u64 << CAP_NET_ADMIN);
        assert_eq!(
            why_not_privileged_in(&net_admin_only).as_deref(),
            Some(
                "needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN; this process lacks CAP_SYS_ADMIN"
            )
        );
        let sys_admin_only = format!("Uid:\t0\t0\t0\t0\nCapEff:\t{:x}\n", 1u64 << CAP_SYS_ADMIN);
        assert_eq!(
            why_not_privileged_in(&sys_admin_only).as_deref(),
            Some(
                "needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN; this process lacks CAP_NET_ADMIN"
            )
        );
    }

    #[test]
    fn a_user_with_capabilities_is_not_privileged() {
        let why =
            why_not_privileged_in("Uid:\t1000\t1000\t1000\t1000\nCapEff:\t000001ffffffffff\n");
        assert_eq!(
            why.as_deref(),
            Some("needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN; this process is not root (euid 1000)")
        );
    }

    #[test]
    fn an_unreadable_status_is_not_privileged() {
        for status in [
            "",
            "Uid:\t0\t0\t0\t0\n",
            "CapEff:\tffff\n",
            "Uid:\tx\ty\nCapEff:\tzz\n",
        ] {
            assert_eq!(
                why_not_privileged_in(status).as_deref(),
                Some("cannot read the Uid and CapEff lines of /proc/self/status"),
                "{status:?}"
            );
        }
    }

    #[test]
    fn this_process_status_parses() {
        let status = fs::read_to_string("/proc/self/status").expect("procfs");
        let why = why_not_privileged_in(&status);
        assert_ne!(
            why.as_deref(),
            Some("cannot read the Uid and CapEff lines of /proc/self/status")
        );
        assert_eq!(why, why_not_privileged());
    }

    #[test]
    fn skip_or_fail() {
        assert_eq!(decide("t", None, false), Decision::Run);
        assert_eq!(decide("t", None, true), Decision::Run);
        assert_eq!(
            decide("loads", Some("needs root"), false),
            Decision::Skip(
                "skipping loads: needs root (set KOWABUNGA_REQUIRE_PRIVILEGED=1 to make this a failure)"
                    .into()
            )
        );
        assert_eq!(
            decide("loads", Some("needs root"), true),
            Decision::Fail(
                "loads: needs root, and KOWABUNGA_REQUIRE_PRIVILEGED=1 forbids skipping".into()
            )
        );
    }

    #[test]
    fn only_one_requires() {
        assert!(required_by(Some("1")));
        for v in [
            None,
            Some(""),
            Some("0"),
            Some("true"),
            Some("yes"),
            Some(" 1"),
        ] {
            assert!(!required_by(v), "{v:?}");
        }
        assert_eq!(REQUIRE_PRIVILEGED, "KOWABUNGA_REQUIRE_PRIVILEGED");
    }

    #[test]
    fn act_follows_the_decision() {
        assert!(act(Decision::Run));
        assert!(!act(Decision::Skip("skipping t: why".into())));
        let panic = std::panic::catch_unwind(|| act(Decision::Fail("t: why".into())))
            .expect_err("a failure panics");
        assert_eq!(
            panic.downcast_ref::<String>().map(String::as_str),
            Some("t: why")
        );
    }
}
