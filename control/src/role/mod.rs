//! What every role of `kowabungad` (Kawaii, Konvey, VRRP, and the next
//! ones) looks like to the daemon: one trait, [`Role`], so the supervisor
//! loop drives roles without knowing them by name, plus the pieces the XDP
//! roles share.
//!
//! | file | job |
//! |---|---|
//! | [`mod@self`] | the [`Role`] trait and [`ReloadError`] |
//! | [`engine`] | [`engine::XdpEngine`]: the half every XDP dataplane shares (detach, sweep, events, counters) |
//! | [`drops`] | the one-line wording of sampled drop events |
//! | [`counters`] | counters of several roles summed, and the moved-since-last line |
//!
//! A role lives in `crate::<role>/` with the same few files: `config.rs`
//! (its section, validated), `compile.rs` or `reconcile.rs` (into its
//! dataplane or external engine), `engine.rs` (the engine behind a trait, with
//! a fake for tests) and `role.rs` (its [`Role`] implementation and its entry
//! in the daemon's registry, [`crate::daemon::registry`]).

pub mod counters;
pub mod drops;
pub mod engine;

use std::any::Any;
use std::time::Instant;

use kowabunga_dataplane::{Counters, DropEvent, SweepReport};
use thiserror::Error;

use crate::config::{ConfigError, ValidConfig};

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, Error)]
pub enum ReloadError {
    /// The new file is unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The new file changes a setting that needs a restart.
    #[error("{field} changed: restart kowabungad to apply it")]
    NeedsRestart {
        /// The field path.
        field: &'static str,
    },
    /// The dataplane refused the new configuration.
    #[error("{0:#}")]
    Apply(anyhow::Error),
    /// The node cannot run the new configuration (Konvey source address,
    /// port range).
    #[error("{0}")]
    Node(String),
}

/// One role of the node, as the daemon drives it.
///
/// Life cycle: the registry builds a role from a validated configuration
/// (loading its dataplane and applying its section), then the daemon calls
/// [`Role::attach`] on every role in registry order, then runs the loop:
/// [`Role::poll`] when [`Role::poll_timeout`] is due or the loop is woken,
/// [`Role::housekeeping`] every second, [`Role::sweep`] every 10 s,
/// [`Role::drain_events`] every 200 ms, [`Role::counters`] and
/// [`Role::status`] every 60 s, and a reload on `SIGHUP`:
/// [`Role::check_reload`] on every role first, then [`Role::reload`] in
/// registry order. [`Role::shutdown`] on exit.
pub trait Role: Any {
    /// The role's name (`kawaii`, `konvey`, `vrrp`), for logs.
    fn name(&self) -> &'static str;

    /// Goes live: attaches programs, starts threads.
    ///
    /// # Errors
    /// The role cannot run; the daemon exits.
    fn attach(&mut self) -> anyhow::Result<()>;

    /// Checks, without changing anything, that `new` can be applied by a
    /// reload (settings that need a restart, node facts the section needs).
    ///
    /// # Errors
    /// [`ReloadError`]: the reload is refused, nothing changes.
    fn check_reload(&self, new: &ValidConfig) -> Result<(), ReloadError>;

    /// Applies `new`, already checked by [`Role::check_reload`].
    ///
    /// An error leaves this role on its previous configuration. Roles are
    /// reloaded in registry order and the reload stops at the first error,
    /// so only a role whose writes cannot be retried returns one (Kawaii,
    /// first in the registry); roles that converge (Konvey) log and retry.
    ///
    /// # Errors
    /// [`ReloadError::Apply`].
    fn reload(&mut self, new: &ValidConfig) -> Result<(), ReloadError>;

    /// One-line summary of what is applied, for the `applied config:` line.
    fn summary(&self) -> String;

    /// Deletes expired conntrack flows (`now_ns`: CLOCK_MONOTONIC); `None`
    /// for a role without conntrack.
    fn sweep(&mut self, _now_ns: u64) -> Option<anyhow::Result<SweepReport>> {
        None
    }

    /// Every sampled drop event available now (never blocks).
    fn drain_events(&mut self) -> Vec<DropEvent> {
        Vec::new()
    }

    /// The dataplane's outcome counters; `None` for a role without any.
    fn counters(&self) -> Option<anyhow::Result<Counters>> {
        None
    }

    /// Status lines logged every 60 s (one per instance, backend, ...).
    fn status(&self) -> Vec<String> {
        Vec::new()
    }

    /// The XDP programs this role attached: `(interface, program, mode)`
    /// (`driver`, `generic`, `inherited`), for `kowabunga status`.
    fn programs(&self) -> Vec<(String, String, String)> {
        Vec::new()
    }

    /// When the role next needs [`Role::poll`] (probes, timers).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Does the role's timed work due at `now` and handles what its tasks
    /// reported (a role that spawns tasks wakes the loop through the
    /// `Notify` it was built with).
    fn poll(&mut self, _now: Instant) {}

    /// Every second: retries failed writes, counts draining flows.
    fn housekeeping(&mut self) {}

    /// The daemon exits: say goodbye (VRRP priority 0). Pinned programs
    /// and maps stay.
    fn shutdown(&mut self) {}

    /// The role as [`Any`], for tests and tools that need the concrete type.
    fn as_any(&self) -> &dyn Any;

    /// The role as mutable [`Any`].
    fn as_any_mut(&mut self) -> &mut dyn Any;
}
