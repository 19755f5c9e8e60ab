//! The Kawaii role's view of its dataplane: [`KawaiiEngine`] (the shared
//! [`XdpEngine`] half plus apply and attach), implemented for the real
//! [`Kawaii`] and, in tests, for a recording fake.
//!
//! Keeping the role behind the trait lets the reload logic (a bad config
//! on SIGHUP keeps the old state) be unit-tested without BPF.

use anyhow::Context as _;
use kowabunga_dataplane::{
    Counters, DropEvent, Kawaii, KawaiiConfig, LoadOptions, Role as Hook, SweepReport,
};
use tracing::debug;

use crate::role::engine::{load_error, Loaded, XdpEngine};

/// What the Kawaii role needs from its dataplane.
pub trait KawaiiEngine: XdpEngine {
    /// Writes the inactive bank and flips to it; returns the bank now active.
    ///
    /// # Errors
    /// A map write failed; the previously active bank stays active.
    fn apply(&mut self, config: &KawaiiConfig) -> anyhow::Result<u32>;

    /// Attaches the program of `hook` to `ifname` (replacing a pinned link
    /// left by a previous daemon without a traffic gap).
    ///
    /// # Errors
    /// The interface does not exist or XDP cannot be attached.
    fn attach(&mut self, ifname: &str, hook: Hook) -> anyhow::Result<()>;

    /// Loads an nftables ruleset (the [`super::backstop`]) in the node's
    /// network namespace.
    ///
    /// # Errors
    /// `nft` is missing or refused it.
    fn backstop(&mut self, ruleset: &str) -> anyhow::Result<()>;
}

/// The real dataplane: [`Kawaii`] plus its drop-event reader.
pub type KawaiiDataplane = Loaded<Kawaii>;

impl Loaded<Kawaii> {
    /// Loads `kawaii.o` with pinned maps under `options.pin_dir`.
    ///
    /// # Errors
    /// Loading failed (verifier, bpffs, mismatching pinned map, pins of
    /// another ABI version: see [`load_error`]).
    pub fn load(options: &LoadOptions) -> anyhow::Result<Self> {
        let kawaii = Kawaii::load(options).map_err(|e| load_error("Kawaii", e))?;
        Ok(Loaded::new("kawaii", kawaii, Kawaii::drop_events)
            .watch_routes("kawaii", Kawaii::flow_cache_route_watch))
    }
}

impl XdpEngine for Loaded<Kawaii> {
    fn detach(&mut self, ifname: &str) -> anyhow::Result<bool> {
        self.object
            .detach(ifname)
            .with_context(|| format!("cannot detach {ifname}"))
    }

    fn sweep(&mut self, now_ns: u64) -> anyhow::Result<SweepReport> {
        self.sweep_in_background(now_ns, Kawaii::sweeper)
    }

    fn drain_events(&mut self) -> Vec<DropEvent> {
        self.drain()
    }

    fn counters(&self) -> anyhow::Result<Counters> {
        self.object.counters().context("cannot read the counters")
    }

    fn attachments(&self) -> Vec<(String, String, String)> {
        self.object
            .attachments()
            .map(|(ifname, role, mode)| {
                let mode = crate::role::engine::mode_name(mode);
                (
                    ifname.to_owned(),
                    role.program_name().to_owned(),
                    mode.to_owned(),
                )
            })
            .collect()
    }
}

impl KawaiiEngine for Loaded<Kawaii> {
    fn apply(&mut self, config: &KawaiiConfig) -> anyhow::Result<u32> {
        self.object
            .apply(config)
            .context("cannot apply the configuration")
    }

    fn attach(&mut self, ifname: &str, hook: Hook) -> anyhow::Result<()> {
        let attached = self
            .object
            .attach(hook, ifname)
            .with_context(|| format!("cannot attach the {hook} program to {ifname}"))?;
        debug!(
            interface = ifname,
            %hook,
            mode = ?attached.mode,
            replaced = attached.replaced,
            pinned = attached.pinned,
            "XDP program attached"
        );
        Ok(())
    }

    fn backstop(&mut self, ruleset: &str) -> anyhow::Result<()> {
        super::backstop::install(ruleset)
    }
}

/// A recording, in-memory Kawaii dataplane for unit tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use kowabunga_bindings::{kw_counter, kw_stat};

    /// Records what the role asks; can be told to fail.
    #[derive(Debug, Default)]
    pub(crate) struct FakeKawaii {
        pub(crate) applied: Vec<KawaiiConfig>,
        pub(crate) attached: Vec<(String, Hook)>,
        pub(crate) active: Option<u32>,
        pub(crate) fail_apply: bool,
        pub(crate) fail_attach: bool,
        pub(crate) events: Vec<DropEvent>,
        pub(crate) counters: Vec<u64>,
        pub(crate) sweeps: Vec<u64>,
        pub(crate) rulesets: Vec<String>,
        pub(crate) fail_backstop: bool,
    }

    impl XdpEngine for FakeKawaii {
        fn detach(&mut self, ifname: &str) -> anyhow::Result<bool> {
            let before = self.attached.len();
            self.attached.retain(|(n, _)| n != ifname);
            Ok(before != self.attached.len())
        }
        fn sweep(&mut self, now_ns: u64) -> anyhow::Result<SweepReport> {
            self.sweeps.push(now_ns);
            Ok(SweepReport::default())
        }
        fn drain_events(&mut self) -> Vec<DropEvent> {
            std::mem::take(&mut self.events)
        }
        fn counters(&self) -> anyhow::Result<Counters> {
            let mut values = [kw_counter::default(); kw_stat::KW_STAT_COUNT as usize];
            for (slot, packets) in values.iter_mut().zip(&self.counters) {
                slot.packets = *packets;
            }
            Ok(Counters::from_values(values))
        }
    }

    impl KawaiiEngine for FakeKawaii {
        fn apply(&mut self, config: &KawaiiConfig) -> anyhow::Result<u32> {
            if self.fail_apply {
                anyhow::bail!("map kw_rules: write failed");
            }
            let bank = match self.active {
                Some(b) => 1 - b,
                None => 0,
            };
            self.applied.push(config.clone());
            self.active = Some(bank);
            Ok(bank)
        }
        fn attach(&mut self, ifname: &str, hook: Hook) -> anyhow::Result<()> {
            if self.fail_attach {
                anyhow::bail!("no interface {ifname}");
            }
            self.attached.push((ifname.to_owned(), hook));
            Ok(())
        }
        fn backstop(&mut self, ruleset: &str) -> anyhow::Result<()> {
            if self.fail_backstop {
                anyhow::bail!("kawaii: nft refused the backstop: Error: syntax error");
            }
            self.rulesets.push(ruleset.to_owned());
            Ok(())
        }
    }
}
