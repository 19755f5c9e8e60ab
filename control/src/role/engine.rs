//! The half every XDP dataplane engine shares, whatever its role: detach,
//! conntrack sweep, drop events, counters. Each role's engine trait
//! (`crate::kawaii::engine::KawaiiEngine`,
//! `crate::konvey::engine::KonveyEngine`) extends it with what only that
//! role does (apply rules, program rotations, attach with a hook role).

use std::fmt::Display;

use anyhow::Context as _;
use kowabunga_dataplane::{
    conntrack::{self, Sweeper},
    fcache::{self, RouteWatch},
    kawaii, Counters, DropEvent, DropEvents, SweepReport,
};
use tracing::{debug, warn};

/// A load failure of `what` ("Kawaii", "Konvey") for the daemon's one-line
/// error: pins of another ABI version say everything themselves (which
/// pins, both versions, the fix) and are passed on as they are; anything
/// else gets "cannot load the `what` dataplane" in front.
pub fn load_error(what: &str, error: kawaii::Error) -> anyhow::Error {
    match error {
        e @ kawaii::Error::AbiMismatch { .. } => e.into(),
        e => anyhow::Error::new(e).context(format!("cannot load the {what} dataplane")),
    }
}

/// What the daemon needs from any XDP dataplane.
pub trait XdpEngine {
    /// Detaches `ifname` and removes its pinned link; whether anything was
    /// attached.
    ///
    /// # Errors
    /// The pin could not be removed.
    fn detach(&mut self, ifname: &str) -> anyhow::Result<bool>;

    /// Deletes conntrack flows expired at `now_ns` (CLOCK_MONOTONIC). The
    /// real engines do it on a thread of their own
    /// ([`Loaded::sweep_in_background`]): the report returned is that of the
    /// previous period's sweep.
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

    /// The programs attached through this engine: `(interface, program,
    /// mode)`.
    fn attachments(&self) -> Vec<(String, String, String)> {
        Vec::new()
    }
}

/// The operator's name of an attach mode.
pub fn mode_name(mode: kowabunga_dataplane::Mode) -> &'static str {
    match mode {
        kowabunga_dataplane::Mode::Driver => "driver",
        kowabunga_dataplane::Mode::Generic => "generic",
        kowabunga_dataplane::Mode::Inherited => "inherited",
    }
}

/// A loaded XDP object and its drop-event reader: what every role's real
/// engine is (`KawaiiDataplane = Loaded<Kawaii>`, `KonveyDataplane =
/// Loaded<Konvey>`).
#[derive(Debug)]
pub struct Loaded<T> {
    pub(crate) object: T,
    events: Option<DropEvents>,
    sweeper: Option<Sweeper>,
    route_watch: Option<RouteWatch>,
}

impl<T> Loaded<T> {
    /// Wraps a freshly loaded `object` and opens its drop-event reader; a
    /// reader that cannot be opened is one warning (the dataplane works
    /// without it, only sampling is lost).
    pub fn new<E: Display>(
        role: &str,
        mut object: T,
        open_events: impl FnOnce(&mut T) -> Result<DropEvents, E>,
    ) -> Self {
        let events = match open_events(&mut object) {
            Ok(events) => Some(events),
            Err(e) => {
                warn!("{role} drop events unavailable: {e}");
                None
            }
        };
        Loaded {
            object,
            events,
            sweeper: None,
            route_watch: None,
        }
    }

    /// Starts the flow cache's route watch (routing changes empty the
    /// cache at once); one that cannot start is one warning: cached flows
    /// then follow a routing change within a slot's life (about 2 s).
    pub fn watch_routes(
        mut self,
        role: &str,
        start: impl FnOnce(&T) -> Result<RouteWatch, fcache::Error>,
    ) -> Self {
        match start(&self.object) {
            Ok(w) => self.route_watch = Some(w),
            Err(e) => warn!("{role} flow cache route watch unavailable: {e}"),
        }
        self
    }

    /// The loaded object.
    pub fn object(&self) -> &T {
        &self.object
    }

    /// The conntrack sweep of [`XdpEngine::sweep`], off the daemon's loop:
    /// returns the report of the sweep that finished since the last call
    /// (an empty one if none did) and starts the next one at `now_ns` on the
    /// object's sweeper thread (started by `spawn` at the first call), unless
    /// the previous one still runs. Never blocks on the maps.
    ///
    /// # Errors
    /// The thread could not be started, or the finished sweep failed.
    pub fn sweep_in_background(
        &mut self,
        now_ns: u64,
        spawn: impl FnOnce(&T) -> Result<Sweeper, conntrack::Error>,
    ) -> anyhow::Result<SweepReport> {
        let sweeper = match &mut self.sweeper {
            Some(s) => s,
            None => self
                .sweeper
                .insert(spawn(&self.object).context("cannot start the conntrack sweeper")?),
        };
        let done = sweeper.poll();
        if !sweeper.request(now_ns) {
            debug!("conntrack sweep still running: this period's sweep skipped");
        }
        match done {
            Some(report) => report.context("conntrack sweep failed"),
            None => Ok(SweepReport::default()),
        }
    }

    /// Every sampled drop event available now (never blocks).
    pub fn drain(&mut self) -> Vec<DropEvent> {
        self.events
            .as_mut()
            .map(DropEvents::drain)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_refusals_pass_as_they_are_other_load_errors_get_context() {
        let refusal = kawaii::Error::AbiMismatch {
            object: "kawaii.o",
            pin_dir: "/sys/fs/bpf/kowabunga".into(),
            found: Some(7),
            expected: 1,
        };
        let line = refusal.to_string();
        assert!(
            line.starts_with(
                "pinned maps of kawaii.o in /sys/fs/bpf/kowabunga have ABI version 7, \
                 this build's is 1: "
            ),
            "{line}"
        );
        assert_eq!(format!("{:#}", load_error("Kawaii", refusal)), line);
        let other = load_error("Konvey", kawaii::Error::ZeroCtEntries);
        assert_eq!(
            format!("{other:#}"),
            "cannot load the Konvey dataplane: ct_entries must be at least 1"
        );
    }

    #[test]
    fn sweeps_run_off_the_caller_and_report_a_period_later() -> anyhow::Result<()> {
        let mut loaded = Loaded::new("test", (), |_| Err::<DropEvents, _>("no events"));
        let mut spawned = 0;
        // first tick: nothing finished yet, a sweep starts on the thread
        let r = loaded.sweep_in_background(1, |_| {
            spawned += 1;
            Sweeper::spawn("test-sweeper", Vec::new())
        })?;
        assert_eq!(r, SweepReport::default());
        // the thread (no table here) finishes at once; the next tick collects it
        std::thread::sleep(std::time::Duration::from_millis(200));
        let r = loaded.sweep_in_background(2, |_| {
            spawned += 1;
            Sweeper::spawn("test-sweeper", Vec::new())
        })?;
        assert_eq!(r.scanned, 0);
        assert_eq!(spawned, 1, "one thread per engine");
        assert!(loaded.sweeper.as_ref().is_some_and(Sweeper::running));
        Ok(())
    }
}
