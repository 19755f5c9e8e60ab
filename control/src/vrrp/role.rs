//! VRRP as a role of the daemon: [`VrrpRole`] starts the engine thread when
//! the node goes live (after the dataplanes are attached), logs every
//! instance's status every 60 s and sends priority 0 on exit; [`SPEC`] is
//! its entry in the daemon's registry.

use std::any::Any;

use tracing::info;

use super::config::Instance;
use super::driver::{Engine, EngineOptions};
use crate::config::ValidConfig;
use crate::daemon::registry::{Context, RoleSpec};
use crate::role::{ReloadError, Role};

/// VRRP's entry in the daemon's registry.
pub const SPEC: RoleSpec = RoleSpec::new(
    "vrrp",
    |c| !c.node.vrrp.is_empty(),
    |_| Vec::new(),
    load,
    |_| Ok(()),
)
.with_section("node.vrrp");

fn load(config: &ValidConfig, _ctx: &Context) -> anyhow::Result<Box<dyn Role>> {
    Ok(Box::new(VrrpRole::new(config.node.vrrp.clone())))
}

/// The VRRP instances of the node and, once live, their engine.
#[derive(Debug)]
pub struct VrrpRole {
    instances: Vec<Instance>,
    engine: Option<Engine>,
}

impl VrrpRole {
    /// The role for `instances` (validated, zone rule applied); nothing
    /// runs before [`Role::attach`].
    pub fn new(instances: Vec<Instance>) -> Self {
        VrrpRole {
            instances,
            engine: None,
        }
    }
}

impl VrrpRole {
    /// Every instance's status (empty before [`Role::attach`]).
    pub fn instances_status(&self) -> Vec<super::status::InstanceStatus> {
        self.engine.as_ref().map(Engine::status).unwrap_or_default()
    }
}

impl Role for VrrpRole {
    fn name(&self) -> &'static str {
        "vrrp"
    }

    fn attach(&mut self) -> anyhow::Result<()> {
        let engine = Engine::start(self.instances.clone(), EngineOptions::default())?;
        self.engine = Some(engine);
        for line in self.status() {
            info!("{line}");
        }
        Ok(())
    }

    fn check_reload(&self, new: &ValidConfig) -> Result<(), ReloadError> {
        if new.node.vrrp != self.instances {
            return Err(ReloadError::NeedsRestart { field: "node.vrrp" });
        }
        Ok(())
    }

    fn reload(&mut self, _new: &ValidConfig) -> Result<(), ReloadError> {
        Ok(())
    }

    fn summary(&self) -> String {
        format!("vrrp {} instances", self.instances.len())
    }

    fn status(&self) -> Vec<String> {
        self.engine
            .as_ref()
            .map(Engine::status)
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn shutdown(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
            info!("vrrp: stopped (masters sent priority 0 and removed their VIPs)");
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
