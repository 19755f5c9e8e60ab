//! The half every XDP dataplane engine shares, whatever its role: detach,
//! conntrack sweep, drop events, counters. Each role's engine trait
//! (`crate::kawaii::engine::KawaiiEngine`,
//! `crate::konvey::engine::KonveyDataplane`) extends it with what only that
//! role does (apply rules, program rotations, attach with a hook role).

use std::fmt::Display;

use kowabunga_dataplane::{Counters, DropEvent, DropEvents, SweepReport};
use tracing::warn;

/// What the daemon needs from any XDP dataplane.
pub trait XdpEngine {
    /// Detaches `ifname` and removes its pinned link; whether anything was
    /// attached.
    ///
    /// # Errors
    /// The pin could not be removed.
    fn detach(&mut self, ifname: &str) -> anyhow::Result<bool>;

    /// Deletes conntrack flows expired at `now_ns` (CLOCK_MONOTONIC).
    ///
    /// # Errors
    /// The conntrack map could not be read or written.
    fn sweep(&mut self, now_ns: u64) -> anyhow::Result<SweepReport>;

    /// Every sampled drop event available now (never blocks).
    fn drain_events(&mut self) -> Vec<DropEvent>;

    /// The outcome counters, summed over CPUs.
    ///
    /// # Errors
    /// The counters map could not be read.
    fn counters(&self) -> anyhow::Result<Counters>;
}

/// The drop-event reader of a freshly loaded dataplane, or `None` with one
/// warning (the dataplane works without it; only sampling is lost).
pub fn open_events<E: Display>(role: &str, events: Result<DropEvents, E>) -> Option<DropEvents> {
    match events {
        Ok(events) => Some(events),
        Err(e) => {
            warn!("{role} drop events unavailable: {e}");
            None
        }
    }
}

/// Drains `events` if the reader exists.
pub fn drain(events: &mut Option<DropEvents>) -> Vec<DropEvent> {
    events.as_mut().map(DropEvents::drain).unwrap_or_default()
}
