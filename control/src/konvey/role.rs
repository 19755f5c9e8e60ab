//! Konvey as a role of the daemon: [`KonveyRole`] owns the
//! balancer ([`super::reconcile::Balancer`]: a backend rotation per service), runs its probes as tokio tasks
//! (results come back through a channel, the loop is woken by a `Notify`),
//! reconciles rotations on reload and every second; [`SPEC`] is its entry
//! in the daemon's registry.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use kowabunga_dataplane::{Counters, DropEvent, SweepReport};
use tokio::sync::{mpsc, Notify};
use tracing::{error, info, warn};

use super::config::ValidKonvey;
use super::engine::{KonveyDataplane, KonveyEngine};
use super::health::{HealthConfig, Outcome, ProbeId};
use super::probe::probe;
use super::reconcile::{desired_services, Balancer, CheckKey};
use super::settings::konvey_config;
use crate::config::ValidConfig;
use crate::daemon::node::{load_options, NodeEnv};
use crate::daemon::registry::{Context, RoleSpec};
use crate::role::engine::XdpEngine;
use crate::role::{ReloadError, Role};

/// Konvey's pin directory under `node.bpffs`.
pub const KONVEY_PIN_SUBDIR: &str = "konvey";

/// Konvey's entry in the daemon's registry.
pub const SPEC: RoleSpec =
    RoleSpec::new("konvey", |c| c.konvey.is_some(), interfaces, load, detach);

/// The interfaces of a config that carry the Konvey program, with their
/// field paths (none without a `konvey` section).
pub fn interfaces(config: &ValidConfig) -> Vec<(String, String)> {
    match config.konvey {
        Some(_) => config
            .node
            .interfaces
            .konvey
            .iter()
            .enumerate()
            .map(|(i, name)| (format!("node.interfaces.konvey[{i}]"), name.clone()))
            .collect(),
        None => Vec::new(),
    }
}

fn load(config: &ValidConfig, ctx: &Context) -> anyhow::Result<Box<dyn Role>> {
    let engine = KonveyDataplane::load(&load_options(config, Some(KONVEY_PIN_SUBDIR)))?;
    let role = KonveyRole::start(engine, config, ctx.env.clone(), ctx.wake.clone())?;
    Ok(Box::new(role))
}

/// `--detach`: removes the program from the interfaces and the pinned maps
/// and links under `node.bpffs/konvey`.
fn detach(config: &ValidConfig) -> anyhow::Result<()> {
    let mut engine = KonveyDataplane::load(&load_options(config, Some(KONVEY_PIN_SUBDIR)))?;
    for (_, ifname) in interfaces(config) {
        if engine.detach(&ifname)? {
            info!(interface = %ifname, "detached the konvey program");
        }
    }
    drop(engine);
    let konvey_dir = config.node.bpffs.join(KONVEY_PIN_SUBDIR);
    kowabunga_dataplane::konvey::remove_pinned_maps(&konvey_dir)?;
    let _ = std::fs::remove_dir(konvey_dir.join("links"));
    let _ = std::fs::remove_dir(&konvey_dir);
    info!(
        "removed the pinned Konvey maps under {}",
        konvey_dir.display()
    );
    Ok(())
}

/// A probe result on its way back from its task.
type ProbeResult = (CheckKey, ProbeId, Outcome);

/// The Konvey role over an engine `K` (the real dataplane, or a fake).
#[derive(Debug)]
pub struct KonveyRole<K: KonveyEngine = KonveyDataplane> {
    balancer: Balancer<K>,
    env: NodeEnv,
    interfaces: Vec<String>,
    section: ValidKonvey,
    health: HealthConfig,
    results_tx: mpsc::UnboundedSender<ProbeResult>,
    results_rx: mpsc::UnboundedReceiver<ProbeResult>,
    wake: Arc<Notify>,
}

impl<K: KonveyEngine> KonveyRole<K> {
    /// Finds the node settings, programs every service into `engine`
    /// (nothing is attached yet: see [`Role::attach`]); probes start with
    /// the first [`Role::poll`], and their results wake `wake`.
    ///
    /// # Errors
    /// No `konvey` section, no source address, a port range overlapping
    /// the node's, or the engine refused.
    pub fn start(
        engine: K,
        config: &ValidConfig,
        env: NodeEnv,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let (Some(section), Some(kv_config)) = (
            config.konvey.clone(),
            konvey_config(config, &env).map_err(anyhow::Error::msg)?,
        ) else {
            anyhow::bail!("no konvey section");
        };
        let health = config.node.konvey.health;
        let mut balancer = Balancer::new(engine)?;
        balancer.apply(
            &kv_config,
            desired_services(&section),
            health,
            Instant::now(),
        )?;
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        Ok(KonveyRole {
            balancer,
            env,
            interfaces: interfaces(config).into_iter().map(|(_, n)| n).collect(),
            section,
            health,
            results_tx,
            results_rx,
            wake,
        })
    }

    /// The balancer.
    pub fn balancer(&self) -> &Balancer<K> {
        &self.balancer
    }

    /// The balancer, mutably.
    pub fn balancer_mut(&mut self) -> &mut Balancer<K> {
        &mut self.balancer
    }
}

impl<K: KonveyEngine + Send + 'static> Role for KonveyRole<K> {
    fn name(&self) -> &'static str {
        "konvey"
    }

    fn attach(&mut self) -> anyhow::Result<()> {
        for ifname in &self.interfaces {
            self.balancer.engine_mut().attach(ifname)?;
        }
        Ok(())
    }

    fn check_reload(&self, new: &ValidConfig) -> Result<(), ReloadError> {
        konvey_config(new, &self.env).map_err(ReloadError::Node)?;
        Ok(())
    }

    fn reload(&mut self, new: &ValidConfig) -> Result<(), ReloadError> {
        let (Some(section), Some(kv_config)) = (
            new.konvey.clone(),
            konvey_config(new, &self.env).map_err(ReloadError::Node)?,
        ) else {
            return Err(ReloadError::NeedsRestart { field: "konvey" });
        };
        let health = new.node.konvey.health;
        // A failed write is retried by the housekeeping tick; the new
        // configuration is the one to converge to either way.
        if let Err(e) = self.balancer.apply(
            &kv_config,
            desired_services(&section),
            health,
            Instant::now(),
        ) {
            error!("konvey: {e} (will retry)");
        }
        self.section = section;
        self.health = health;
        Ok(())
    }

    fn summary(&self) -> String {
        let k = &self.section;
        let backends: usize = k.endpoints.iter().map(|e| e.backends.len()).sum();
        let h = &self.health;
        format!(
            "konvey vip {}, {} endpoints, {backends} backends, health every {} ms (timeout {} ms, rise {}, fall {})",
            k.vip,
            k.endpoints.len(),
            h.interval.as_millis(),
            h.timeout.as_millis(),
            h.rise,
            h.fall
        )
    }

    fn sweep(&mut self, now_ns: u64) -> Option<anyhow::Result<SweepReport>> {
        Some(self.balancer.engine_mut().sweep(now_ns))
    }

    fn drain_events(&mut self) -> Vec<DropEvent> {
        self.balancer.engine_mut().drain_events()
    }

    fn counters(&self) -> Option<anyhow::Result<Counters>> {
        Some(self.balancer.engine().counters())
    }

    fn programs(&self) -> Vec<(String, String, String)> {
        self.balancer.engine().attachments()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.balancer.poll_timeout()
    }

    /// Feeds back the probe results that arrived, then starts the probes
    /// due at `now` as tokio tasks (call it inside a runtime).
    fn poll(&mut self, now: Instant) {
        while let Ok((key, id, outcome)) = self.results_rx.try_recv() {
            if let Err(e) = self.balancer.on_outcome(key, id, now, outcome) {
                warn!("konvey: {e} (will retry)");
            }
        }
        if let Err(e) = self.balancer.handle_timeouts(now) {
            warn!("konvey: {e} (will retry)");
        }
        for request in self.balancer.poll_probes(now) {
            let results = self.results_tx.clone();
            let wake = self.wake.clone();
            tokio::spawn(async move {
                let outcome = probe(&request.target, request.timeout).await;
                // The receiver only goes away when the role does.
                let _ = results.send((request.key, request.id, outcome));
                wake.notify_one();
            });
        }
    }

    /// Retries failed rotation writes and counts the flows of draining
    /// backends; errors are logged.
    fn housekeeping(&mut self) {
        if self.balancer.dirty() {
            if let Err(e) = self.balancer.reconcile() {
                warn!("konvey: {e} (will retry)");
            }
        }
        if let Err(e) = self.balancer.refresh_draining() {
            warn!("konvey: {e}");
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests;
