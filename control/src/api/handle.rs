//! The daemon's answers to the operator socket's requests, computed on the
//! loop from the [`Daemon`] (a reload runs exactly as on `SIGHUP`).

use std::time::Instant;

use super::wire::{
    Answer, BackendInfo, Backends, DropSample, ErrorKind, Probe, Program, ReloadDone, Request,
    ResponseMsg, ServiceInfo, Status, Tunnel, VrrpInstance,
};
use crate::daemon::Daemon;
use crate::ipsec::role::IpsecRole;
use crate::konvey::role::KonveyRole;
use crate::role::drops::describe_drop;
use crate::role::ReloadError;
use crate::vrrp::role::VrrpRole;
use crate::vrrp::status::InstanceStatus;

/// The answer to `request`.
pub fn answer(daemon: &mut Daemon, request: Request) -> ResponseMsg {
    match request {
        Request::Status => ResponseMsg::ok(Answer::Status(Box::new(status(daemon)))),
        Request::DropEvents => ResponseMsg::ok(Answer::DropEvents(drop_events(daemon))),
        Request::Backends => match backends(daemon) {
            Some(b) => ResponseMsg::ok(Answer::Backends(b)),
            None => no_role("konvey"),
        },
        Request::Vrrp => match daemon.role::<VrrpRole>() {
            Some(role) => ResponseMsg::ok(Answer::Vrrp(
                role.instances_status().iter().map(vrrp_instance).collect(),
            )),
            None => no_role("vrrp (node.vrrp)"),
        },
        Request::Ipsec => match daemon.role::<IpsecRole>() {
            Some(role) => ResponseMsg::ok(Answer::Ipsec(tunnels(role))),
            None => no_role("ipsec"),
        },
        Request::Dns => match daemon.roles().find(|r| r.name() == "kiwi") {
            Some(role) => ResponseMsg::ok(Answer::Dns(role.status())),
            None => no_role("kiwi"),
        },
        Request::Metrics => {
            let recorder = daemon.take_recorder();
            let page = crate::metrics::render(daemon, &recorder);
            daemon.put_recorder(recorder);
            ResponseMsg::ok(Answer::Metrics(page))
        }
        Request::Reload => match daemon.reload_report() {
            Ok(changed) => ResponseMsg::ok(Answer::Reload(ReloadDone {
                generation: daemon.generation(),
                changed,
            })),
            Err(e) => {
                tracing::error!("reload (operator socket) failed, keeping the running config: {e}");
                // Apply errors mean the dataplane refused: a runtime problem.
                let kind = match e {
                    ReloadError::Apply(_) => ErrorKind::Runtime,
                    _ => ErrorKind::ConfigRefused,
                };
                ResponseMsg::err(kind, e.to_string())
            }
        },
    }
}

fn no_role(role: &str) -> ResponseMsg {
    ResponseMsg::err(ErrorKind::NoRole, format!("this node does not run {role}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "-".to_owned())
}

/// The answer to [`Request::Status`].
pub fn status(daemon: &Daemon) -> Status {
    let config = daemon.config();
    let programs = daemon
        .roles()
        .flat_map(|r| {
            r.programs()
                .into_iter()
                .map(move |(interface, program, mode)| Program {
                    role: r.name().to_owned(),
                    interface,
                    program,
                    mode,
                })
        })
        .collect();
    let (services, backends) = daemon
        .role::<KonveyRole>()
        .map(|k| {
            let b = k.balancer();
            (b.services().count(), b.status().len())
        })
        .unwrap_or((0, 0));
    let vrrp = daemon
        .role::<VrrpRole>()
        .map(|r| r.instances_status().iter().map(vrrp_instance).collect())
        .unwrap_or_default();
    let other = daemon
        .roles()
        .filter(|r| matches!(r.name(), "ipsec" | "kiwi"))
        .flat_map(|r| r.status())
        .collect();
    let (reloads_ok, reloads_failed) = daemon.reloads();
    Status {
        node: hostname(),
        zone: config.node.zone.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        roles: daemon.roles().map(|r| r.name().to_owned()).collect(),
        programs,
        config_file: daemon.config_path().display().to_string(),
        generation: daemon.generation(),
        reloads_ok,
        reloads_failed,
        uptime_s: daemon.started().elapsed().as_secs(),
        bpffs: config.node.bpffs.display().to_string(),
        vrrp,
        conntrack_entries: daemon
            .last_sweep()
            .iter()
            .map(|(role, n)| ((*role).to_owned(), *n as u64))
            .collect(),
        services,
        backends,
        other,
    }
}

fn vrrp_instance(s: &InstanceStatus) -> VrrpInstance {
    VrrpInstance {
        name: s.name.clone(),
        vrid: s.vrid,
        interface: s.interface.clone(),
        state: s.state.to_string(),
        priority: s.priority,
        master: s.master.map(|(a, p)| format!("{a}/{p}")),
        adverts_rx: s.counters.adverts_rx,
        adverts_tx: s.counters.adverts_tx,
        became_master: s.counters.became_master,
        became_backup: s.counters.became_backup,
    }
}

fn drop_events(daemon: &Daemon) -> Vec<DropSample> {
    daemon
        .recent_drops()
        .map(|(role, e)| DropSample {
            role: (*role).to_owned(),
            ts_ns: e.ts_ns,
            reason: e.reason_name.to_owned(),
            packet: describe_drop(e)
                .strip_prefix(e.reason_name)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        })
        .collect()
}

fn backends(daemon: &Daemon) -> Option<Backends> {
    let role = daemon.role::<KonveyRole>()?;
    let balancer = role.balancer();
    let now = Instant::now();
    // One pass over conntrack: the flows of every backend.
    // One batched pass over conntrack: the flows of every backend.
    let flows = balancer
        .engine()
        .object()
        .conntrack_tables()
        .ok()
        .map(|tables| crate::metrics::CtScan::of(&tables).destinations);
    // The dataplane's per-backend counters, by (service, backend).
    let totals: std::collections::BTreeMap<_, _> = balancer
        .engine()
        .object()
        .backend_counters()
        .map(|v| v.into_iter().map(|(k, b, c)| ((k, b), c)).collect())
        .unwrap_or_default();
    let services = balancer
        .services()
        .map(|(key, name)| ServiceInfo {
            endpoint: name.to_owned(),
            service: key.to_string(),
            rotation: balancer
                .rotation(&key)
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
        .collect();
    let backends = balancer
        .status()
        .into_iter()
        .map(|b| BackendInfo {
            endpoint: b.endpoint,
            service: b.service.map(|s| s.to_string()),
            backend: b.backend.to_string(),
            state: b.state.to_string(),
            since_ms: b
                .since
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            last_probe: b.last_probe.map(|p| Probe {
                ok: p.failure.is_none(),
                error: p.failure,
                latency_us: p.latency.as_micros() as u64,
                age_ms: now.saturating_duration_since(p.at).as_millis() as u64,
            }),
            active_flows: flows
                .as_ref()
                .map(|f| {
                    f.get(&(b.backend.addr, b.backend.port))
                        .copied()
                        .unwrap_or(0)
                })
                .or(b.flows.map(|n| n as u64)),
            total_flows: b
                .service
                .and_then(|k| totals.get(&(k, b.backend)))
                .map(|c| c.new_flows),
        })
        .collect();
    Some(Backends { services, backends })
}

fn tunnels(role: &IpsecRole) -> Vec<Tunnel> {
    role.tunnels()
        .into_iter()
        .map(|t| Tunnel {
            name: t.name,
            remote_subnet: t.remote_subnet.to_string(),
            state: t.state.to_string(),
            since_s: t.since.elapsed().as_secs(),
            last_failure: t.last_failure.map(|r| r.to_string()),
        })
        .collect()
}
