//! Reconciliation: each service's rotation is the configured backends that
//! are healthy, in configuration order; it is written to the dataplane
//! whenever health or configuration changes, and only when it differs from
//! what the maps hold (reconcile, do not rebuild). Rotation updates replace
//! a map value atomically and never touch conntrack, so established flows
//! keep their backend.
//!
//! A backend removed from the configuration (from every endpoint) *drains*:
//! it is in no rotation, its established flows continue, and the
//! [`Balancer`] reports it as draining with its live flow count until that
//! reaches zero; then it is forgotten. Services in the maps that the
//! configuration no longer has are removed after the new ones are written
//! (adds and updates before deletes), and their backends drain too.
//!
//! The [`Balancer`] owns one [`Health`] state machine per (service, backend)
//! pair and is itself sans-IO: the daemon asks it for the probes that are
//! due ([`Balancer::poll_probes`]), runs them, and feeds the outcomes back
//! ([`Balancer::on_outcome`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use kowabunga_dataplane::konvey::{Backend, KonveyConfig, Proto, ServiceKey};
use thiserror::Error;
use tracing::{info, warn};

use super::engine::KonveyEngine;
use super::health::{Health, HealthConfig, Outcome, ProbeId, State, Transition};
use super::probe::{ProbeKind, ProbeTarget};
use crate::config::fields::Protocol;
use crate::konvey::config::ValidKonvey;

/// Why the dataplane could not be brought to the desired state; the
/// [`Balancer`] retries on its next reconciliation.
#[derive(Debug, Error)]
pub enum ReconcileError {
    /// A dataplane call failed.
    #[error("{0:#}")]
    Dataplane(anyhow::Error),
}

/// One service the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    /// `(VIP, protocol, port)`.
    pub key: ServiceKey,
    /// The endpoint's name, for logs.
    pub name: String,
    /// Configured backends, in round-robin order.
    pub backends: Vec<Backend>,
    /// How its backends are probed.
    pub probe: ProbeKind,
}

/// The services of a validated `konvey` section.
///
/// ```
/// use kowabunga_control::config::parse_str;
/// use kowabunga_control::konvey::reconcile::desired_services;
///
/// let valid = parse_str(r#"
/// node: {zone: a, interfaces: {konvey: [eth0]}}
/// konvey:
///   vip: 10.0.0.100
///   endpoints: [{name: dns, protocol: udp, port: 53, backend_port: 5353, backend_ips: [10.0.0.11]}]
/// "#).unwrap();
/// let services = desired_services(valid.konvey.as_ref().unwrap());
/// assert_eq!(services[0].key.to_string(), "10.0.0.100:53/udp");
/// assert_eq!(services[0].backends[0].to_string(), "10.0.0.11:5353");
/// ```
pub fn desired_services(konvey: &ValidKonvey) -> Vec<DesiredService> {
    konvey
        .endpoints
        .iter()
        .map(|e| {
            let proto = match e.protocol {
                Protocol::Udp => Proto::Udp,
                _ => Proto::Tcp,
            };
            DesiredService {
                key: ServiceKey {
                    vip: konvey.vip,
                    proto,
                    port: e.port,
                },
                name: e.name.clone(),
                backends: e
                    .backends
                    .iter()
                    .map(|&addr| Backend {
                        addr,
                        port: e.backend_port,
                    })
                    .collect(),
                probe: match (&e.udp_probe, proto) {
                    (Some(udp), Proto::Udp) => ProbeKind::Udp(udp.clone()),
                    (None, Proto::Udp) => ProbeKind::Udp(Default::default()),
                    _ => ProbeKind::Tcp,
                },
            }
        })
        .collect()
}

/// Identifies one health check: a backend of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckKey {
    /// The service.
    pub service: ServiceKey,
    /// The backend.
    pub backend: Backend,
}

impl fmt::Display for CheckKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.backend, self.service)
    }
}

/// A probe the daemon must run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Which check it belongs to.
    pub key: CheckKey,
    /// Its id, to hand back with the outcome.
    pub id: ProbeId,
    /// What to probe.
    pub target: ProbeTarget,
    /// Its time limit.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
struct Check {
    health: Health,
    target: ProbeTarget,
}

/// A backend in the status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    /// The endpoint name (`None` for a draining backend).
    pub endpoint: Option<String>,
    /// The service (`None` for a draining backend).
    pub service: Option<ServiceKey>,
    /// The backend.
    pub backend: Backend,
    /// Up, down or draining.
    pub state: State,
    /// Live flows (known for draining backends only).
    pub flows: Option<usize>,
    /// When it entered its state (`None` for a draining backend).
    pub since: Option<Instant>,
    /// Its last probe.
    pub last_probe: Option<super::health::LastProbe>,
}

/// The Konvey control loop's state: desired services, health checks,
/// draining backends, and what the maps hold.
#[derive(Debug)]
pub struct Balancer<E: KonveyEngine> {
    engine: E,
    health: HealthConfig,
    services: BTreeMap<ServiceKey, DesiredService>,
    checks: BTreeMap<CheckKey, Check>,
    /// Draining backends and their last known flow count.
    draining: BTreeMap<Backend, Option<usize>>,
    /// The rotations the maps hold, as far as we know.
    programmed: BTreeMap<ServiceKey, Vec<Backend>>,
    /// The node settings to write when [`Balancer::reconcile`] runs (set by
    /// [`Balancer::apply`], cleared once written).
    pending_config: Option<KonveyConfig>,
    /// A write failed: retry at the next [`Balancer::reconcile`].
    dirty: bool,
    /// Latencies of the probes that ended since the last
    /// [`Balancer::take_probe_latencies`] (at most [`MAX_PENDING_LATENCIES`]).
    latencies: Vec<(CheckKey, Duration)>,
}

/// Probe latencies kept for the metrics between two readings.
pub const MAX_PENDING_LATENCIES: usize = 4096;

impl<E: KonveyEngine> Balancer<E> {
    /// A balancer over `engine`, starting from what its maps already hold
    /// (a previous daemon's services, kept by the pins).
    ///
    /// # Errors
    /// The maps could not be read.
    pub fn new(engine: E) -> Result<Self, ReconcileError> {
        let programmed: BTreeMap<ServiceKey, Vec<Backend>> = engine
            .services()
            .map_err(ReconcileError::Dataplane)?
            .into_iter()
            .collect();
        Ok(Balancer {
            engine,
            health: HealthConfig::default(),
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            draining: BTreeMap::new(),
            programmed,
            pending_config: None,
            dirty: false,
            latencies: Vec::new(),
        })
    }

    /// The dataplane.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The dataplane, mutably (attach, sweep, events).
    pub fn engine_mut(&mut self) -> &mut E {
        &mut self.engine
    }

    /// Applies a configuration: node settings, services, health timing.
    /// New backends start up (see [`super::health`]); backends that left
    /// every endpoint drain; services that left the configuration are
    /// removed after the others are written.
    ///
    /// # Errors
    /// A dataplane write failed (it is retried by [`Balancer::reconcile`]).
    pub fn apply(
        &mut self,
        config: &KonveyConfig,
        services: Vec<DesiredService>,
        health: HealthConfig,
        now: Instant,
    ) -> Result<(), ReconcileError> {
        self.pending_config = Some(config.clone());
        self.health = health;

        let before: BTreeSet<Backend> = self
            .services
            .values()
            .flat_map(|s| s.backends.iter().copied())
            .chain(self.programmed.values().flatten().copied())
            .collect();
        let desired: BTreeMap<ServiceKey, DesiredService> =
            services.into_iter().map(|s| (s.key, s)).collect();
        let after: BTreeSet<Backend> = desired
            .values()
            .flat_map(|s| s.backends.iter().copied())
            .collect();

        // Health checks: keep the state of pairs that stay, start new ones.
        let mut checks = BTreeMap::new();
        for service in desired.values() {
            for &backend in &service.backends {
                let key = CheckKey {
                    service: service.key,
                    backend,
                };
                let target = ProbeTarget {
                    addr: SocketAddrV4::new(backend.addr, backend.port),
                    kind: service.probe.clone(),
                };
                let check = match self.checks.remove(&key) {
                    Some(mut check) => {
                        if let Some(t) = check.health.set_config(health, now) {
                            log_transition(&service.name, &key, &t);
                        }
                        check.target = target;
                        check
                    }
                    None => Check {
                        health: Health::new(health, now),
                        target,
                    },
                };
                checks.insert(key, check);
            }
        }
        self.checks = checks;

        for backend in before.difference(&after) {
            if self.draining.insert(*backend, None).is_none() {
                info!(
                    backend = %backend,
                    state = "draining",
                    "backend {backend} is draining: removed from the configuration; its established flows continue, it gets no new ones"
                );
            }
        }
        for backend in &after {
            if self.draining.remove(backend).is_some() {
                info!(backend = %backend, "backend {backend} is configured again: no longer draining");
            }
        }
        for (key, service) in &desired {
            if !self.services.contains_key(key) {
                info!(service = %key, endpoint = %service.name, "service {key} ({}) added with {} backends", service.name, service.backends.len());
            }
        }
        self.services = desired;
        self.reconcile().map(|_| ())
    }

    /// The rotation of `key` now: its configured backends that are up.
    pub fn rotation(&self, key: &ServiceKey) -> Vec<Backend> {
        let Some(service) = self.services.get(key) else {
            return Vec::new();
        };
        service
            .backends
            .iter()
            .copied()
            .filter(|&backend| {
                self.checks
                    .get(&CheckKey {
                        service: *key,
                        backend,
                    })
                    .is_some_and(|c| c.health.in_rotation())
            })
            .collect()
    }

    /// Writes the node settings if they changed, every rotation that differs
    /// from the maps, then removes the services the configuration no longer
    /// has. Returns how many writes.
    ///
    /// # Errors
    /// A write failed; the others were still attempted, and the next call
    /// retries.
    pub fn reconcile(&mut self) -> Result<usize, ReconcileError> {
        let mut writes = 0;
        let mut first_error = None;
        if let Some(config) = self.pending_config.clone() {
            match self.engine.set_config(&config) {
                Ok(()) => {
                    writes += 1;
                    self.pending_config = None;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let keys: Vec<ServiceKey> = self.services.keys().copied().collect();
        for key in keys {
            let rotation = self.rotation(&key);
            if self.programmed.get(&key) == Some(&rotation) {
                continue;
            }
            match self.engine.set_service(key, &rotation) {
                Ok(()) => {
                    writes += 1;
                    let name = self.services.get(&key).map_or("", |s| s.name.as_str());
                    let list: Vec<String> = rotation.iter().map(ToString::to_string).collect();
                    if rotation.is_empty() {
                        warn!(service = %key, endpoint = name, "service {key} ({name}) has no healthy backend: new flows are dropped");
                    } else {
                        info!(service = %key, endpoint = name, "service {key} ({name}) rotation: {}", list.join(", "));
                    }
                    self.programmed.insert(key, rotation);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let stale: Vec<ServiceKey> = self
            .programmed
            .keys()
            .filter(|k| !self.services.contains_key(k))
            .copied()
            .collect();
        for key in stale {
            match self.engine.remove_service(key) {
                Ok(()) => {
                    writes += 1;
                    info!(service = %key, "service {key} removed: no new flows, established ones continue");
                    if let Some(old) = self.programmed.remove(&key) {
                        // Its backends drain unless another service has them.
                        for backend in old {
                            let configured = self
                                .services
                                .values()
                                .any(|s| s.backends.contains(&backend));
                            if !configured && !self.draining.contains_key(&backend) {
                                self.draining.insert(backend, None);
                                info!(backend = %backend, state = "draining", "backend {backend} is draining: its service was removed");
                            }
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.dirty = first_error.is_some();
        match first_error {
            Some(e) => Err(ReconcileError::Dataplane(e)),
            None => Ok(writes),
        }
    }

    /// Whether a write failed and [`Balancer::reconcile`] must retry.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// When the daemon must next call [`Balancer::poll_probes`] /
    /// [`Balancer::handle_timeouts`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.checks
            .values()
            .filter_map(|c| c.health.poll_timeout())
            .min()
    }

    /// The probes due at `now` (each check has at most one in flight).
    pub fn poll_probes(&mut self, now: Instant) -> Vec<ProbeRequest> {
        let timeout = self.health.timeout;
        self.checks
            .iter_mut()
            .filter_map(|(key, check)| {
                check.health.poll_probe(now).map(|id| ProbeRequest {
                    key: *key,
                    id,
                    target: check.target.clone(),
                    timeout,
                })
            })
            .collect()
    }

    /// Fails the probes whose deadline passed; reconciles on any change.
    ///
    /// # Errors
    /// Reprogramming failed (retried later).
    pub fn handle_timeouts(&mut self, now: Instant) -> Result<bool, ReconcileError> {
        let mut changed = false;
        for (key, check) in &mut self.checks {
            if let Some(t) = check.health.handle_timeout(now) {
                let name = self
                    .services
                    .get(&key.service)
                    .map_or("", |s| s.name.as_str());
                log_transition(name, key, &t);
                changed = true;
            }
        }
        if changed {
            self.reconcile()?;
        }
        Ok(changed)
    }

    /// Feeds the outcome of a probe; reconciles when the backend changed
    /// state. Outcomes of checks that no longer exist are ignored.
    ///
    /// # Errors
    /// Reprogramming failed (retried later).
    pub fn on_outcome(
        &mut self,
        key: CheckKey,
        id: ProbeId,
        now: Instant,
        outcome: Outcome,
    ) -> Result<bool, ReconcileError> {
        let Some(check) = self.checks.get_mut(&key) else {
            return Ok(false);
        };
        let before = check.health.last_probe().map(|p| p.at);
        let transition = check.health.on_outcome(id, now, outcome);
        if let Some(p) = check.health.last_probe() {
            if Some(p.at) != before && self.latencies.len() < MAX_PENDING_LATENCIES {
                self.latencies.push((key, p.latency));
            }
        }
        let Some(t) = transition else {
            return Ok(false);
        };
        let name = self
            .services
            .get(&key.service)
            .map_or("", |s| s.name.as_str());
        log_transition(name, &key, &t);
        self.reconcile()?;
        Ok(true)
    }

    /// Counts the flows of draining backends and forgets those with none
    /// left; returns the backends forgotten.
    ///
    /// # Errors
    /// Conntrack could not be read; nothing is forgotten.
    pub fn refresh_draining(&mut self) -> Result<Vec<Backend>, ReconcileError> {
        if self.draining.is_empty() {
            return Ok(Vec::new());
        }
        let flows = self
            .engine
            .flows_by_backend()
            .map_err(ReconcileError::Dataplane)?;
        let mut gone = Vec::new();
        for (backend, last) in &mut self.draining {
            let now = flows.get(backend).copied().unwrap_or(0);
            if now == 0 {
                info!(backend = %backend, "backend {backend} drained: no flows left, forgotten");
                gone.push(*backend);
            } else if *last != Some(now) {
                info!(backend = %backend, flows = now, state = "draining", "backend {backend} is draining: {now} flows left");
                *last = Some(now);
            }
        }
        for backend in &gone {
            self.draining.remove(backend);
        }
        Ok(gone)
    }

    /// Every configured backend with its state, then the draining ones.
    pub fn status(&self) -> Vec<BackendStatus> {
        let mut out: Vec<BackendStatus> = self
            .checks
            .iter()
            .map(|(key, check)| BackendStatus {
                endpoint: self.services.get(&key.service).map(|s| s.name.clone()),
                service: Some(key.service),
                backend: key.backend,
                state: check.health.state(),
                flows: None,
                since: Some(check.health.since()),
                last_probe: check.health.last_probe().cloned(),
            })
            .collect();
        out.extend(self.draining.iter().map(|(backend, flows)| BackendStatus {
            endpoint: None,
            service: None,
            backend: *backend,
            state: State::Draining,
            flows: *flows,
            since: None,
            last_probe: None,
        }));
        out
    }

    /// The latencies of the probes that ended since the last call (for the
    /// metrics' histogram).
    pub fn take_probe_latencies(&mut self) -> Vec<(CheckKey, Duration)> {
        std::mem::take(&mut self.latencies)
    }

    /// The configured services with their endpoint names.
    pub fn services(&self) -> impl Iterator<Item = (ServiceKey, &str)> + '_ {
        self.services.iter().map(|(k, s)| (*k, s.name.as_str()))
    }

    /// The draining backends and their last known flow counts.
    pub fn draining(&self) -> impl Iterator<Item = (Backend, Option<usize>)> + '_ {
        self.draining.iter().map(|(b, f)| (*b, *f))
    }
}

fn log_transition(endpoint: &str, key: &CheckKey, t: &Transition) {
    let (backend, service) = (key.backend, key.service);
    match t.to {
        State::Up => info!(
            backend = %backend, endpoint, service = %service, from = %t.from, to = %t.to, reason = %t.reason,
            "backend {backend} of {endpoint} ({service}) is up: {}", t.reason
        ),
        _ => warn!(
            backend = %backend, endpoint, service = %service, from = %t.from, to = %t.to, reason = %t.reason,
            "backend {backend} of {endpoint} ({service}) is {}: {}", t.to, t.reason
        ),
    }
}

#[cfg(test)]
mod tests;
