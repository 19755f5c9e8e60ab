//! Kawaii as a role of the daemon: [`KawaiiRole`] applies the compiled
//! `kawaii` section to its engine, attaches the program to the public,
//! private and peering interfaces, and reloads by flipping banks; [`SPEC`]
//! is its entry in the daemon's registry.

use std::any::Any;

use kowabunga_dataplane::{Counters, DropEvent, KawaiiConfig, Role as Hook, SweepReport};
use tracing::info;

use super::backstop::Backstop;
use super::compile::compile;
use super::config::ValidKawaii;
use super::engine::{KawaiiDataplane, KawaiiEngine};
use crate::config::ValidConfig;
use crate::daemon::node::load_options;
use crate::daemon::registry::RoleSpec;
use crate::role::{ReloadError, Role};

/// Kawaii's entry in the daemon's registry.
pub const SPEC: RoleSpec =
    RoleSpec::new("kawaii", |c| c.kawaii.is_some(), interfaces, load, detach);

/// The interfaces of a config that carry the Kawaii program: field path,
/// name and hook (none without a `kawaii` section).
pub fn interfaces(config: &ValidConfig) -> Vec<(String, String)> {
    hooks(config)
        .into_iter()
        .map(|(field, name, _)| (field, name))
        .collect()
}

/// [`interfaces`] with the program each one gets.
pub fn hooks(config: &ValidConfig) -> Vec<(String, String, Hook)> {
    if config.kawaii.is_none() {
        return Vec::new();
    }
    let ifaces = &config.node.interfaces;
    let mut out = Vec::new();
    if let Some(public) = &ifaces.public {
        out.push((
            "node.interfaces.public".to_owned(),
            public.clone(),
            Hook::Public,
        ));
    }
    if let Some(private) = &ifaces.private {
        out.push((
            "node.interfaces.private".to_owned(),
            private.clone(),
            Hook::Private,
        ));
    }
    for (i, p) in ifaces.peerings.iter().enumerate() {
        out.push((
            format!("node.interfaces.peerings[{i}]"),
            p.clone(),
            Hook::Peering,
        ));
    }
    out
}

fn load(
    config: &ValidConfig,
    _ctx: &crate::daemon::registry::Context,
) -> anyhow::Result<Box<dyn Role>> {
    let engine = KawaiiDataplane::load(&load_options(config, None))?;
    Ok(Box::new(KawaiiRole::start(engine, config)?))
}

/// `--detach`: closes the kernel backstop (nothing forwarded between the
/// public and the inner interfaces), then removes the programs from the
/// interfaces and the pinned maps and links under `node.bpffs` (conntrack
/// is lost).
fn detach(config: &ValidConfig) -> anyhow::Result<()> {
    let pin_dir = &config.node.bpffs;
    let mut engine = KawaiiDataplane::load(&load_options(config, None))?;
    if let Some(backstop) = Backstop::of(config) {
        engine.backstop(&backstop.closed())?;
        info!(
            table = backstop.table(),
            "backstop closed: nothing is forwarded between the public and the inner interfaces"
        );
    }
    for (_, ifname, _) in hooks(config) {
        if crate::role::engine::XdpEngine::detach(&mut engine, &ifname)? {
            info!(interface = %ifname, "detached");
        }
    }
    drop(engine);
    kowabunga_dataplane::kawaii::remove_pinned_maps(pin_dir)?;
    // Empty directories only: anything else is not ours to delete.
    let _ = std::fs::remove_dir(pin_dir.join("links"));
    let _ = std::fs::remove_dir(pin_dir);
    info!("removed the pinned maps under {}", pin_dir.display());
    Ok(())
}

/// The Kawaii role over an engine `E` (the real dataplane, or a fake).
#[derive(Debug)]
pub struct KawaiiRole<E: KawaiiEngine = KawaiiDataplane> {
    engine: E,
    hooks: Vec<(String, Hook)>,
    section: ValidKawaii,
    applied: KawaiiConfig,
    bank: u32,
    backstop: Option<Backstop>,
}

impl<E: KawaiiEngine> KawaiiRole<E> {
    /// Compiles the `kawaii` section of `config` and applies it to `engine`
    /// (nothing is attached yet: see [`Role::attach`]).
    ///
    /// # Errors
    /// The config has no `kawaii` section, or the engine refused it.
    pub fn start(mut engine: E, config: &ValidConfig) -> anyhow::Result<Self> {
        let (Some(section), Some(compiled)) = (config.kawaii.clone(), compile(config)) else {
            anyhow::bail!("no kawaii section");
        };
        let bank = engine.apply(&compiled)?;
        Ok(KawaiiRole {
            engine,
            hooks: hooks(config)
                .into_iter()
                .map(|(_, name, hook)| (name, hook))
                .collect(),
            section,
            applied: compiled,
            bank,
            backstop: Backstop::of(config),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The engine, mutably.
    pub fn engine_mut(&mut self) -> &mut E {
        &mut self.engine
    }

    /// What was last applied.
    pub fn applied(&self) -> &KawaiiConfig {
        &self.applied
    }

    /// The active bank.
    pub fn bank(&self) -> u32 {
        self.bank
    }
}

impl<E: KawaiiEngine + 'static> Role for KawaiiRole<E> {
    fn name(&self) -> &'static str {
        "kawaii"
    }

    fn attach(&mut self) -> anyhow::Result<()> {
        for (ifname, hook) in &self.hooks {
            self.engine.attach(ifname, *hook)?;
        }
        if let Some(backstop) = &self.backstop {
            self.engine.backstop(&backstop.running())?;
        }
        Ok(())
    }

    fn check_reload(&self, _new: &ValidConfig) -> Result<(), ReloadError> {
        // Interfaces, bpffs and conntrack size are node keys, checked by
        // the daemon; everything else of the section reloads.
        Ok(())
    }

    fn reload(&mut self, new: &ValidConfig) -> Result<(), ReloadError> {
        let (Some(section), Some(compiled)) = (new.kawaii.clone(), compile(new)) else {
            return Err(ReloadError::NeedsRestart { field: "kawaii" });
        };
        let backstop = Backstop::of(new);
        if backstop != self.backstop {
            if let Some(b) = &backstop {
                self.engine
                    .backstop(&b.running())
                    .map_err(ReloadError::Apply)?;
            }
        }
        match self.engine.apply(&compiled) {
            Ok(bank) => self.bank = bank,
            Err(e) => {
                // Put the previous backstop back: nothing changed.
                if let (Some(old), true) = (&self.backstop, backstop != self.backstop) {
                    let _ = self.engine.backstop(&old.running());
                }
                return Err(ReloadError::Apply(e));
            }
        }
        self.backstop = backstop;
        self.section = section;
        self.applied = compiled;
        Ok(())
    }

    fn summary(&self) -> String {
        let k = &self.section;
        format!(
            "bank {}, {}, snat {}, {} public ips, {} peerings, {} ipsec connections",
            self.bank,
            self.applied.rules.summary(),
            k.snat_ip,
            k.public_ips.len(),
            k.peerings.len(),
            k.ipsec.len()
        )
    }

    fn sweep(&mut self, now_ns: u64) -> Option<anyhow::Result<SweepReport>> {
        Some(self.engine.sweep(now_ns))
    }

    fn drain_events(&mut self) -> Vec<DropEvent> {
        self.engine.drain_events()
    }

    fn counters(&self) -> Option<anyhow::Result<Counters>> {
        Some(self.engine.counters())
    }

    fn programs(&self) -> Vec<(String, String, String)> {
        self.engine.attachments()
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
