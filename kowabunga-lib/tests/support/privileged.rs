//! Skip-or-fail policy of privileged tests (copied from kowabunga-tests, which
//! this crate cannot depend on): skip with a message when not root, unless
//! `KOWABUNGA_REQUIRE_PRIVILEGED=1` turns the skip into a failure.

// Shared by several test binaries, each using a part.
#![allow(dead_code)]

/// The environment variable that turns a privileged-test skip into a failure.
pub const REQUIRE_PRIVILEGED: &str = "KOWABUNGA_REQUIRE_PRIVILEGED";

/// Whether a privileged test may run: true as root. Otherwise prints why
/// `test` is skipped and returns false, or panics when
/// `KOWABUNGA_REQUIRE_PRIVILEGED=1`.
pub fn privileged(test: &str, why: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var(REQUIRE_PRIVILEGED).is_ok_and(|v| v == "1") {
        panic!("{test}: {why}, and {REQUIRE_PRIVILEGED}=1 forbids skipping");
    }
    eprintln!("skipping {test}: {why} (set {REQUIRE_PRIVILEGED}=1 to make this a failure)");
    false
}

/// Skips (or fails, when privileged tests are required) because a tool or
/// host feature is missing.
pub fn missing(test: &str, what: &str) -> bool {
    if std::env::var(REQUIRE_PRIVILEGED).is_ok_and(|v| v == "1") {
        panic!("{test}: {what} is missing, and {REQUIRE_PRIVILEGED}=1 forbids skipping");
    }
    eprintln!(
        "skipping {test}: {what} is missing (set {REQUIRE_PRIVILEGED}=1 to make this a failure)"
    );
    false
}
