//! Kiwi as a role of the daemon: [`KiwiRole`] owns the DNS server
//! ([`Server`]), starts listening on attach, swaps records on reload and
//! logs its counters with the status lines; [`SPEC`] is its entry in the
//! daemon's registry. Kiwi attaches no XDP program and pins nothing.

use std::any::Any;

use tracing::info;

use super::config::ValidKiwi;
use super::engine::Server;
use crate::config::ValidConfig;
use crate::daemon::registry::{Context, RoleSpec};
use crate::role::{ReloadError, Role};

/// Kiwi's entry in the daemon's registry.
pub const SPEC: RoleSpec = RoleSpec::new(
    "kiwi",
    |c| c.kiwi.is_some(),
    |_| Vec::new(),
    load,
    |_| Ok(()),
);

fn load(config: &ValidConfig, _ctx: &Context) -> anyhow::Result<Box<dyn Role>> {
    let Some(section) = &config.kiwi else {
        anyhow::bail!("no kiwi section");
    };
    Ok(Box::new(KiwiRole::new(section)?))
}

/// The Kiwi role.
#[derive(Debug)]
pub struct KiwiRole {
    server: Server,
    section: ValidKiwi,
}

impl KiwiRole {
    /// Builds the server for `section` (nothing listens before
    /// [`Role::attach`]).
    ///
    /// # Errors
    /// The runtime or the forwarder cannot be built.
    pub fn new(section: &ValidKiwi) -> anyhow::Result<Self> {
        Ok(KiwiRole {
            server: Server::new(section)?,
            section: section.clone(),
        })
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }
}

impl Role for KiwiRole {
    fn name(&self) -> &'static str {
        "kiwi"
    }

    fn attach(&mut self) -> anyhow::Result<()> {
        self.server.listen(&self.section)?;
        let listen: Vec<String> = self.section.listen.iter().map(|a| a.to_string()).collect();
        info!(
            "kiwi: serving {} over udp ({} loops each) and tcp",
            listen.join(", "),
            self.section.udp_workers
        );
        Ok(())
    }

    fn check_reload(&self, new: &ValidConfig) -> Result<(), ReloadError> {
        let Some(next) = &new.kiwi else {
            return Err(ReloadError::NeedsRestart { field: "kiwi" });
        };
        if next.listen != self.section.listen {
            return Err(ReloadError::NeedsRestart {
                field: "kiwi.listen",
            });
        }
        if next.udp_workers != self.section.udp_workers {
            return Err(ReloadError::NeedsRestart {
                field: "kiwi.udp_workers",
            });
        }
        Ok(())
    }

    fn reload(&mut self, new: &ValidConfig) -> Result<(), ReloadError> {
        let Some(next) = &new.kiwi else {
            return Err(ReloadError::NeedsRestart { field: "kiwi" });
        };
        self.server.reload(next).map_err(ReloadError::Apply)?;
        self.section = next.clone();
        Ok(())
    }

    fn summary(&self) -> String {
        let zones = self.server.handler().snapshot();
        let recursors: Vec<String> = self
            .section
            .recursors
            .iter()
            .map(|a| a.to_string())
            .collect();
        format!(
            "kiwi {} zones, {} names, forwarding to [{}] (timeout {} ms, cache {})",
            zones.zones.len(),
            zones.zones.names(),
            recursors.join(", "),
            self.section.forward_timeout.as_millis(),
            self.section.cache_entries
        )
    }

    fn status(&self) -> Vec<String> {
        vec![format!("kiwi: {}", self.server.handler().stats())]
    }

    fn shutdown(&mut self) {
        self.server.stop();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
