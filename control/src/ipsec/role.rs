//! IPsec as a role of the daemon: [`IpsecRole`] starts the
//! [driver](super::driver) when the node goes live (after Kawaii, whose
//! pinned `kw_ipsec_up` gate it opens), hands it each reloaded
//! configuration, and logs every tunnel's state; [`SPEC`] is its entry in
//! the daemon's registry. The role runs on any Kawaii node with
//! `ipsec_connections`.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kowabunga_dataplane::kawaii::ipsec_gate::IpsecGate;
use tokio::sync::watch;
use tracing::info;

use super::config::{DpdAction, Ipsec, StartAction};
use super::driver::{run, Desired, Shared, TunnelStatus};
use super::firewall::TunnelFirewalls;
use crate::config::ValidConfig;
use crate::daemon::registry::{Context, RoleSpec};
use crate::kawaii::backstop::table_name;
use crate::role::{ReloadError, Role};

/// IPsec's entry in the daemon's registry.
pub const SPEC: RoleSpec = RoleSpec::new(
    "ipsec",
    |c| c.kawaii.as_ref().is_some_and(|k| !k.ipsec.is_empty()),
    |_| Vec::new(),
    load,
    detach,
)
.with_section("kawaii.ipsec_connections");

fn firewall_table(config: &ValidConfig) -> String {
    format!("{}_ipsec", table_name(&config.node.bpffs))
}

/// The tunnels as charon will run them. Userspace ESP (strongSwan's
/// kernel-libipsec) raises no acquires, so a trap would never fire: there,
/// `start_action: trap` starts the tunnel at once and `dpd_timeout_action:
/// hold` restarts it (said once at start).
fn effective(config: &ValidConfig, conns: &[Ipsec]) -> Vec<Ipsec> {
    let mut conns = conns.to_vec();
    if config.node.ipsec.userspace_esp {
        for c in &mut conns {
            if c.start_action == StartAction::Trap {
                c.start_action = StartAction::Start;
            }
            if c.dpd_action == DpdAction::Hold {
                c.dpd_action = DpdAction::Restart;
            }
        }
    }
    conns
}

fn desired(config: &ValidConfig) -> Option<Desired> {
    let k = config.kawaii.as_ref()?;
    Some(Desired {
        conns: effective(config, &k.ipsec),
        vip: k.snat_ip,
        project: k.private_subnet,
        encap: config.node.ipsec.userspace_esp,
        firewall_table: firewall_table(config),
    })
}

fn load(config: &ValidConfig, _ctx: &Context) -> anyhow::Result<Box<dyn Role>> {
    let want = desired(config).ok_or_else(|| anyhow::anyhow!("ipsec: no kawaii section"))?;
    Ok(Box::new(IpsecRole {
        config: config.clone(),
        tx: None,
        pending: want,
        shared: Arc::new(Mutex::new(BTreeMap::new())),
    }))
}

/// `--detach`: the tunnels' firewall table goes (the gates go with
/// Kawaii's pins; charon's connections stay with charon).
fn detach(config: &ValidConfig) -> anyhow::Result<()> {
    TunnelFirewalls::remove(&firewall_table(config))
}

/// The tunnels of the node and, once live, their driver.
pub struct IpsecRole {
    config: ValidConfig,
    tx: Option<watch::Sender<Desired>>,
    pending: Desired,
    shared: Shared,
}

impl std::fmt::Debug for IpsecRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpsecRole")
            .field("tunnels", &self.pending.conns.len())
            .finish()
    }
}

impl IpsecRole {
    /// Every tunnel's status, by charon name.
    pub fn tunnels(&self) -> Vec<TunnelStatus> {
        self.shared
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl Role for IpsecRole {
    fn name(&self) -> &'static str {
        "ipsec"
    }

    fn attach(&mut self) -> anyhow::Result<()> {
        let pin_dir = self.config.node.bpffs.clone();
        let gate =
            IpsecGate::open(&pin_dir).map_err(|e| anyhow::anyhow!("ipsec: Kawaii's gate: {e}"))?;
        let (tx, rx) = watch::channel(self.pending.clone());
        let socket = self.config.node.ipsec.vici_socket.clone();
        tokio::spawn(run(socket, rx, Box::new(gate), self.shared.clone()));
        info!(
            "ipsec: driving charon at {} for {} tunnels{}",
            self.config.node.ipsec.vici_socket.display(),
            self.pending.conns.len(),
            if self.pending.encap {
                " (userspace ESP: UDP-encapsulated)"
            } else {
                ""
            }
        );
        if self.pending.encap {
            let trapped: Vec<&str> = self
                .config
                .kawaii
                .iter()
                .flat_map(|k| &k.ipsec)
                .filter(|c| c.start_action == StartAction::Trap || c.dpd_action == DpdAction::Hold)
                .map(|c| c.name.as_str())
                .collect();
            if !trapped.is_empty() {
                tracing::warn!(
                    "ipsec: userspace ESP raises no acquires: trap / hold tunnels are started at once and restarted instead ({})",
                    trapped.join(", ")
                );
            }
        }
        self.tx = Some(tx);
        Ok(())
    }

    fn check_reload(&self, new: &ValidConfig) -> Result<(), ReloadError> {
        if new.node.ipsec != self.config.node.ipsec {
            return Err(ReloadError::NeedsRestart {
                field: "node.ipsec",
            });
        }
        Ok(())
    }

    fn reload(&mut self, new: &ValidConfig) -> Result<(), ReloadError> {
        let Some(want) = desired(new) else {
            return Ok(());
        };
        self.pending = want.clone();
        self.config = new.clone();
        if let Some(tx) = &self.tx {
            tx.send_replace(want);
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!("ipsec {} tunnels", self.pending.conns.len())
    }

    fn status(&self) -> Vec<String> {
        self.tunnels()
            .iter()
            .map(|t| {
                let mut line = format!(
                    "ipsec {} ({}, {}): {} for {} s",
                    t.name,
                    t.charon_name,
                    t.remote_subnet,
                    t.state,
                    t.since.elapsed().as_secs()
                );
                if let Some(r) = &t.last_failure {
                    line.push_str(&format!("; last failure: {r}"));
                }
                line
            })
            .collect()
    }

    fn shutdown(&mut self) {
        // dropping the sender stops the driver; gates and SAs stay
        self.tx = None;
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
