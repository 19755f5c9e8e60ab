//! The running daemon's state, [`Daemon`]: the roles and the configuration
//! they run, with the operations the loop calls (reload, sweep, events,
//! counters, status). It knows roles only through [`Role`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kowabunga_dataplane::{Counters, DropEvent};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::registry;
use crate::config::{self, ValidConfig};
use crate::role::drops::log_drop;
use crate::role::{counters, ReloadError, Role};

/// The running daemon: its roles, in registry order, and the configuration
/// they run.
pub struct Daemon {
    roles: Vec<Box<dyn Role>>,
    config_path: PathBuf,
    current: ValidConfig,
    last_counters: Option<Counters>,
    wake: Arc<Notify>,
    started: Instant,
    generation: u64,
    reloads: (u64, u64),
    last_sweep: Vec<(&'static str, usize)>,
    recent_drops: VecDeque<(&'static str, DropEvent)>,
    recorder: Option<crate::metrics::Recorder>,
}

/// Drop events kept for `kowabunga drops`.
pub const RECENT_DROPS: usize = 32;

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.roles.iter().map(|r| r.name()).collect();
        f.debug_struct("Daemon")
            .field("roles", &names)
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Takes the roles built from `config` (loaded, section applied) and
    /// makes them go live, in order.
    ///
    /// # Errors
    /// The first role that cannot attach.
    pub fn start(
        roles: Vec<Box<dyn Role>>,
        config_path: PathBuf,
        config: ValidConfig,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let mut daemon = Daemon {
            roles,
            config_path,
            current: config,
            last_counters: None,
            wake,
            started: Instant::now(),
            generation: 1,
            reloads: (0, 0),
            last_sweep: Vec::new(),
            recent_drops: VecDeque::new(),
            recorder: Some(crate::metrics::Recorder::default()),
        };
        daemon.log_applied();
        for role in &mut daemon.roles {
            role.attach()?;
        }
        Ok(daemon)
    }

    /// The file the configuration is read from.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// What wakes the loop when a role's task finished.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Re-reads the config file and applies it; on error nothing changes.
    ///
    /// # Errors
    /// [`ReloadError`]; the previous configuration stays active.
    pub fn reload(&mut self) -> Result<(), ReloadError> {
        self.reload_report().map(drop)
    }

    /// [`Daemon::reload`], returning the summary lines of the roles whose
    /// summary changed (the operator socket's `reload`); counts the reload
    /// as applied or refused.
    ///
    /// # Errors
    /// [`ReloadError`]; the previous configuration stays active.
    pub fn reload_report(&mut self) -> Result<Vec<String>, ReloadError> {
        let before: Vec<String> = self.roles.iter().map(|r| r.summary()).collect();
        let result = self.reload_timed();
        match result {
            Ok(()) => self.reloads.0 += 1,
            Err(_) => self.reloads.1 += 1,
        }
        result?;
        Ok(self
            .roles
            .iter()
            .zip(before)
            .map(|(r, old)| (r.summary(), old))
            .filter(|(new, old)| new != old && !new.is_empty())
            .map(|(new, _)| new)
            .collect())
    }

    fn reload_timed(&mut self) -> Result<(), ReloadError> {
        let started = Instant::now();
        let new = config::load(&self.config_path)?;
        let validated = started.elapsed();
        self.reload_with(new)?;
        let total = started.elapsed();
        info!(
            "reload took {} ms: file read and validated in {} ms, applied in {} ms",
            total.as_millis(),
            validated.as_millis(),
            (total - validated).as_millis()
        );
        Ok(())
    }

    /// Applies an already validated configuration as a reload: node keys
    /// that need a restart, the set of roles, every role's check, then
    /// every role's reload in order.
    ///
    /// # Errors
    /// [`ReloadError`]; the previous configuration stays active.
    pub fn reload_with(&mut self, new: ValidConfig) -> Result<(), ReloadError> {
        let (old, next) = (&self.current.node, &new.node);
        if old.interfaces != next.interfaces {
            return Err(ReloadError::NeedsRestart {
                field: "node.interfaces",
            });
        }
        if old.netns != next.netns {
            return Err(ReloadError::NeedsRestart {
                field: "node.netns",
            });
        }
        if old.bpffs != next.bpffs {
            return Err(ReloadError::NeedsRestart {
                field: "node.bpffs",
            });
        }
        if old.api_socket != next.api_socket {
            return Err(ReloadError::NeedsRestart {
                field: "node.api.socket",
            });
        }
        if old.metrics_listen != next.metrics_listen {
            return Err(ReloadError::NeedsRestart {
                field: "node.metrics.listen",
            });
        }
        if old.conntrack_entries != next.conntrack_entries {
            return Err(ReloadError::NeedsRestart {
                field: "node.conntrack_entries",
            });
        }
        for spec in registry::ROLES {
            if (spec.wanted)(&self.current) != (spec.wanted)(&new) {
                return Err(ReloadError::NeedsRestart {
                    field: spec.section,
                });
            }
        }
        for role in &self.roles {
            role.check_reload(&new)?;
        }
        for role in &mut self.roles {
            role.reload(&new)?;
        }
        self.current = new;
        self.generation += 1;
        self.log_applied();
        Ok(())
    }

    /// The applied configuration's generation: 1 at start, +1 per reload
    /// applied.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Reloads applied and refused since start.
    pub fn reloads(&self) -> (u64, u64) {
        self.reloads
    }

    /// When the daemon started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Entries scanned by each role's last finished conntrack sweep (both
    /// tables).
    pub fn last_sweep(&self) -> &[(&'static str, usize)] {
        &self.last_sweep
    }

    /// The last [`RECENT_DROPS`] sampled drop events, oldest first, with
    /// the role that read them.
    pub fn recent_drops(&self) -> impl Iterator<Item = &(&'static str, DropEvent)> {
        self.recent_drops.iter()
    }

    /// Takes the metrics' state out (to render with `&mut self`); give it
    /// back with [`Daemon::put_recorder`].
    pub fn take_recorder(&mut self) -> crate::metrics::Recorder {
        self.recorder.take().unwrap_or_default()
    }

    /// Gives the metrics' state back.
    pub fn put_recorder(&mut self, recorder: crate::metrics::Recorder) {
        self.recorder = Some(recorder);
    }

    /// The configuration running now.
    pub fn config(&self) -> &ValidConfig {
        &self.current
    }

    /// The roles, in registry order.
    pub fn roles(&self) -> impl Iterator<Item = &dyn Role> {
        self.roles.iter().map(|r| &**r)
    }

    /// The role of concrete type `R`, if the node runs it.
    pub fn role<R: Role>(&self) -> Option<&R> {
        self.roles.iter().find_map(|r| r.as_any().downcast_ref())
    }

    /// The role of concrete type `R`, mutably.
    pub fn role_mut<R: Role>(&mut self) -> Option<&mut R> {
        self.roles
            .iter_mut()
            .find_map(|r| r.as_any_mut().downcast_mut())
    }

    /// Sweeps expired conntrack flows of every role; errors are logged.
    pub fn sweep(&mut self, now_ns: u64) {
        for role in &mut self.roles {
            let result = role.sweep(now_ns);
            if let Some(Ok(report)) = &result {
                // a sweep still running reports nothing (scanned 0): keep the last
                if report.scanned > 0 || report.elapsed > std::time::Duration::ZERO {
                    let name = role.name();
                    self.last_sweep.retain(|(n, _)| *n != name);
                    self.last_sweep.push((name, report.scanned));
                }
            }
            match result {
                Some(Ok(report)) if report.flows_expired > 0 => debug!(
                    role = role.name(),
                    scanned = report.scanned,
                    flows = report.flows_expired,
                    entries = report.entries_removed,
                    elapsed_ms = report.elapsed.as_millis() as u64,
                    "conntrack sweep removed expired flows"
                ),
                Some(Err(e)) => warn!("{e:#}"),
                _ => {}
            }
        }
    }

    /// Logs every pending drop event at `debug`; returns how many.
    pub fn poll_events(&mut self) -> usize {
        let mut n = 0;
        for role in &mut self.roles {
            for event in role.drain_events() {
                log_drop(&event);
                n += 1;
                if self.recent_drops.len() == RECENT_DROPS {
                    self.recent_drops.pop_front();
                }
                self.recent_drops.push_back((role.name(), event));
            }
        }
        n
    }

    /// When a role next needs [`Daemon::poll`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.roles.iter().filter_map(|r| r.poll_timeout()).min()
    }

    /// Lets every role do its timed work and read its tasks' results.
    pub fn poll(&mut self, now: Instant) {
        for role in &mut self.roles {
            role.poll(now);
        }
    }

    /// Every role's housekeeping (retries, draining counts); probe
    /// latencies move into the metrics' histogram.
    pub fn housekeeping(&mut self) {
        for role in &mut self.roles {
            role.housekeeping();
        }
        let recorder = self.take_recorder();
        recorder.collect_probes(self);
        self.put_recorder(recorder);
    }

    /// The counters of every role that has some, summed; `None` when no
    /// role counts packets (read errors are logged).
    pub fn counters(&self) -> Option<Counters> {
        let mut now: Option<Counters> = None;
        for role in &self.roles {
            match role.counters() {
                Some(Ok(c)) => now = Some(counters::sum(now.as_ref(), &c)),
                Some(Err(e)) => warn!("{e:#}"),
                None => {}
            }
        }
        now
    }

    /// Logs the counters that moved since the last call at `debug`; returns
    /// the line (empty when nothing moved). Roles share the counter names;
    /// a node running several logs their sum.
    pub fn log_counters(&mut self) -> String {
        let Some(now) = self.counters() else {
            return String::new();
        };
        let line = counters::moved_line(self.last_counters.as_ref(), &now);
        if !line.is_empty() {
            debug!("counters: {line}");
        }
        self.last_counters = Some(now);
        line
    }

    /// Logs every role's status lines at `info`.
    pub fn log_status(&self) {
        for role in &self.roles {
            for line in role.status() {
                info!("{line}");
            }
        }
    }

    /// The daemon exits: every role says goodbye, last started first.
    pub fn shutdown(&mut self) {
        for role in self.roles.iter_mut().rev() {
            role.shutdown();
        }
    }

    fn log_applied(&self) {
        let parts: Vec<String> = self
            .roles
            .iter()
            .map(|r| r.summary())
            .filter(|s| !s.is_empty())
            .collect();
        info!("applied config: {}", parts.join("; "));
    }
}

#[cfg(test)]
mod tests;
