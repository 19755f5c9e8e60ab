//! The Konvey role's view of its dataplane: [`KonveyEngine`] (the shared
//! [`XdpEngine`] half plus services and rotations), implemented for the real
//! [`Konvey`] and for fakes in tests.

use std::collections::HashMap;

use anyhow::Context as _;
use kowabunga_dataplane::konvey::{Backend, KonveyConfig, ServiceKey};
use kowabunga_dataplane::{Counters, DropEvent, Konvey, LoadOptions, SweepReport};
use tracing::{debug, info};

use crate::role::engine::{load_error, Loaded, XdpEngine};

/// What the daemon needs from a Konvey dataplane.
pub trait KonveyEngine: XdpEngine {
    /// Writes the node-wide settings (source address, port range).
    ///
    /// # Errors
    /// A map write failed.
    fn set_config(&mut self, config: &KonveyConfig) -> anyhow::Result<()>;

    /// Replaces the rotation of `key` atomically (creating the service);
    /// established flows are not affected. An empty rotation keeps the
    /// service, whose new flows are then dropped.
    ///
    /// # Errors
    /// A map write failed; the previous rotation stays.
    fn set_service(&mut self, key: ServiceKey, rotation: &[Backend]) -> anyhow::Result<()>;

    /// Removes a service: no new flows; established ones continue.
    ///
    /// # Errors
    /// A map write failed.
    fn remove_service(&mut self, key: ServiceKey) -> anyhow::Result<()>;

    /// The services in the maps now, with their rotations.
    ///
    /// # Errors
    /// A map could not be read.
    fn services(&self) -> anyhow::Result<Vec<(ServiceKey, Vec<Backend>)>>;

    /// Live flows per backend, from conntrack.
    ///
    /// # Errors
    /// Conntrack could not be read.
    fn flows_by_backend(&self) -> anyhow::Result<HashMap<Backend, usize>>;

    /// Attaches the program to `ifname` (reusing a pinned link).
    ///
    /// # Errors
    /// The interface does not exist or XDP cannot be attached.
    fn attach(&mut self, ifname: &str) -> anyhow::Result<()>;
}

/// The real dataplane: [`Konvey`] plus its drop-event reader.
pub type KonveyDataplane = Loaded<Konvey>;

impl Loaded<Konvey> {
    /// Loads `konvey.o` with pinned maps under `options.pin_dir`.
    ///
    /// # Errors
    /// Loading failed (verifier, bpffs, mismatching pinned map, pins of
    /// another ABI version: see [`load_error`]).
    pub fn load(options: &LoadOptions) -> anyhow::Result<Self> {
        let konvey = Konvey::load(options).map_err(|e| match e {
            kowabunga_dataplane::konvey::Error::Load(e) => load_error("Konvey", e),
            e => anyhow::Error::new(e).context("cannot load the Konvey dataplane"),
        })?;
        Ok(Loaded::new("konvey", konvey, Konvey::drop_events)
            .watch_routes("konvey", Konvey::flow_cache_route_watch))
    }
}

impl KonveyEngine for Loaded<Konvey> {
    fn set_config(&mut self, config: &KonveyConfig) -> anyhow::Result<()> {
        self.object
            .set_config(config)
            .context("cannot write the Konvey settings")
    }

    fn set_service(&mut self, key: ServiceKey, rotation: &[Backend]) -> anyhow::Result<()> {
        self.object
            .set_service(key, rotation)
            .with_context(|| format!("cannot program service {key}"))
    }

    fn remove_service(&mut self, key: ServiceKey) -> anyhow::Result<()> {
        self.object
            .remove_service(key)
            .with_context(|| format!("cannot remove service {key}"))
    }

    fn services(&self) -> anyhow::Result<Vec<(ServiceKey, Vec<Backend>)>> {
        self.object
            .services()
            .context("cannot read the Konvey services")
    }

    fn flows_by_backend(&self) -> anyhow::Result<HashMap<Backend, usize>> {
        self.object
            .flows_by_backend()
            .context("cannot count the flows per backend")
    }

    fn attach(&mut self, ifname: &str) -> anyhow::Result<()> {
        let attached = self
            .object
            .attach(ifname)
            .with_context(|| format!("cannot attach the konvey program to {ifname}"))?;
        debug!(
            interface = ifname,
            mode = ?attached.mode,
            replaced = attached.replaced,
            pinned = attached.pinned,
            "Konvey XDP program attached"
        );
        Ok(())
    }
}

impl XdpEngine for Loaded<Konvey> {
    fn detach(&mut self, ifname: &str) -> anyhow::Result<bool> {
        self.object
            .detach(ifname)
            .with_context(|| format!("cannot detach {ifname}"))
    }

    fn sweep(&mut self, now_ns: u64) -> anyhow::Result<SweepReport> {
        let report = self
            .sweep_in_background(now_ns, Konvey::sweeper)
            .context("konvey")?;
        // VIPs that lost their last service leave once their flows are gone
        for vip in self
            .object
            .purge_drained_vips()
            .context("konvey: purging drained VIPs failed")?
        {
            info!(%vip, "VIP drained: its last flows ended, its packets now go to the host");
        }
        Ok(report)
    }

    fn drain_events(&mut self) -> Vec<DropEvent> {
        self.drain()
    }

    fn counters(&self) -> anyhow::Result<Counters> {
        self.object
            .counters()
            .context("cannot read the Konvey counters")
    }

    fn attachments(&self) -> Vec<(String, String, String)> {
        self.object
            .attachments()
            .map(|(ifname, mode)| {
                let mode = crate::role::engine::mode_name(mode);
                (ifname.to_owned(), "konvey".to_owned(), mode.to_owned())
            })
            .collect()
    }
}

/// A recording, in-memory Konvey dataplane for unit tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::BTreeMap;

    /// Records what it is asked; `flows` is what `flows_by_backend` says;
    /// `fail` makes every write fail.
    #[derive(Debug, Default)]
    pub(crate) struct FakeKonvey {
        pub(crate) config: Option<KonveyConfig>,
        pub(crate) services: BTreeMap<ServiceKey, Vec<Backend>>,
        pub(crate) writes: Vec<String>,
        pub(crate) flows: HashMap<Backend, usize>,
        pub(crate) attached: Vec<String>,
        pub(crate) fail: bool,
        pub(crate) sweeps: Vec<u64>,
    }

    impl FakeKonvey {
        fn check(&self, what: &str) -> anyhow::Result<()> {
            if self.fail {
                anyhow::bail!("{what}: map write failed");
            }
            Ok(())
        }
    }

    impl KonveyEngine for FakeKonvey {
        fn set_config(&mut self, config: &KonveyConfig) -> anyhow::Result<()> {
            self.check("set_config")?;
            self.config = Some(config.clone());
            Ok(())
        }
        fn set_service(&mut self, key: ServiceKey, rotation: &[Backend]) -> anyhow::Result<()> {
            self.check("set_service")?;
            let list: Vec<String> = rotation.iter().map(ToString::to_string).collect();
            self.writes.push(format!("set {key} [{}]", list.join(", ")));
            self.services.insert(key, rotation.to_vec());
            Ok(())
        }
        fn remove_service(&mut self, key: ServiceKey) -> anyhow::Result<()> {
            self.check("remove_service")?;
            self.writes.push(format!("remove {key}"));
            self.services.remove(&key);
            Ok(())
        }
        fn services(&self) -> anyhow::Result<Vec<(ServiceKey, Vec<Backend>)>> {
            Ok(self.services.iter().map(|(k, v)| (*k, v.clone())).collect())
        }
        fn flows_by_backend(&self) -> anyhow::Result<HashMap<Backend, usize>> {
            Ok(self.flows.clone())
        }
        fn attach(&mut self, ifname: &str) -> anyhow::Result<()> {
            self.check("attach")?;
            self.attached.push(ifname.to_owned());
            Ok(())
        }
    }

    impl XdpEngine for FakeKonvey {
        fn detach(&mut self, ifname: &str) -> anyhow::Result<bool> {
            let before = self.attached.len();
            self.attached.retain(|n| n != ifname);
            Ok(before != self.attached.len())
        }
        fn sweep(&mut self, now_ns: u64) -> anyhow::Result<SweepReport> {
            self.sweeps.push(now_ns);
            Ok(SweepReport::default())
        }
        fn drain_events(&mut self) -> Vec<DropEvent> {
            Vec::new()
        }
        fn counters(&self) -> anyhow::Result<Counters> {
            Ok(Counters::default())
        }
    }
}
