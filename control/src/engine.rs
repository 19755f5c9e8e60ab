//! The daemon's view of the dataplane: a small trait, implemented for the
//! real [`Kawaii`] and for fakes in tests.
//!
//! Keeping the daemon behind [`Dataplane`] lets the reload logic (a bad
//! config on SIGHUP keeps the old state) be unit-tested without BPF.

use anyhow::Context as _;
use kowabunga_dataplane::{
    Counters, DropEvent, DropEvents, Kawaii, LoadOptions, Role, SweepReport,
};
use tracing::{debug, warn};

use crate::config::compile::Compiled;

/// What the daemon needs from a dataplane.
pub trait Dataplane {
    /// Writes the inactive bank and flips to it; returns the bank now active.
    ///
    /// # Errors
    /// A map write failed; the previously active bank stays active.
    fn apply(&mut self, compiled: &Compiled) -> anyhow::Result<u32>;

    /// Attaches the program of `role` to `ifname` (replacing a pinned link
    /// left by a previous daemon without a traffic gap).
    ///
    /// # Errors
    /// The interface does not exist or XDP cannot be attached.
    fn attach(&mut self, ifname: &str, role: Role) -> anyhow::Result<()>;

    /// Detaches `ifname` and removes its pinned link; returns whether
    /// anything was attached.
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

/// The real dataplane: [`Kawaii`] plus its drop-event reader.
#[derive(Debug)]
pub struct KawaiiDataplane {
    kawaii: Kawaii,
    events: Option<DropEvents>,
}

impl KawaiiDataplane {
    /// Loads `kawaii.o` with pinned maps under `options.pin_dir`.
    ///
    /// # Errors
    /// Loading failed (verifier, bpffs, mismatching pinned map).
    pub fn load(options: &LoadOptions) -> anyhow::Result<Self> {
        let mut kawaii = Kawaii::load(options).context("cannot load the Kawaii dataplane")?;
        let events = match kawaii.drop_events() {
            Ok(events) => Some(events),
            Err(e) => {
                warn!("drop events unavailable: {e}");
                None
            }
        };
        Ok(KawaiiDataplane { kawaii, events })
    }

    /// The loaded dataplane.
    pub fn kawaii(&self) -> &Kawaii {
        &self.kawaii
    }
}

impl Dataplane for KawaiiDataplane {
    fn apply(&mut self, compiled: &Compiled) -> anyhow::Result<u32> {
        self.kawaii
            .apply(&compiled.config, &compiled.tables)
            .context("cannot apply the configuration")
    }

    fn attach(&mut self, ifname: &str, role: Role) -> anyhow::Result<()> {
        let attached = self
            .kawaii
            .attach(role, ifname)
            .with_context(|| format!("cannot attach the {role} program to {ifname}"))?;
        debug!(
            interface = ifname,
            %role,
            mode = ?attached.mode,
            replaced = attached.replaced,
            pinned = attached.pinned,
            "XDP program attached"
        );
        Ok(())
    }

    fn detach(&mut self, ifname: &str) -> anyhow::Result<bool> {
        self.kawaii
            .detach(ifname)
            .with_context(|| format!("cannot detach {ifname}"))
    }

    fn sweep(&mut self, now_ns: u64) -> anyhow::Result<SweepReport> {
        self.kawaii.sweep(now_ns).context("conntrack sweep failed")
    }

    fn drain_events(&mut self) -> Vec<DropEvent> {
        self.events
            .as_mut()
            .map(DropEvents::drain)
            .unwrap_or_default()
    }

    fn counters(&self) -> anyhow::Result<Counters> {
        self.kawaii.counters().context("cannot read the counters")
    }
}
