//! kowabungad's Prometheus metrics: `node.metrics.listen` (e.g.
//! `127.0.0.1:9465`) serves `GET /metrics` in the OpenMetrics text format;
//! no listener unless it is set.
//!
//! | file | job |
//! |---|---|
//! | [`mod@self`] | [`Recorder`] (state kept between scrapes) and [`render`] (one page from the daemon) |
//! | [`http`] | the HTTP/1.1 responder |
//!
//! Every metric is documented in the README ("Metrics"). Values the
//! dataplane counts (outcome counters, per-backend counters) are read from
//! the maps at each scrape; the page is rendered on the daemon's loop.

pub mod http;

use std::net::SocketAddr;

use kowabunga_bindings::KW_CT_DEFAULT_ENTRIES;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use thiserror::Error;

use crate::daemon::Daemon;
use crate::kawaii::role::KawaiiRole;
use crate::konvey::role::KonveyRole;
use crate::vrrp::role::VrrpRole;

/// Errors of the metrics endpoint.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The listener cannot bind.
    #[error("node.metrics.listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A histogram family with the probe latency buckets (0.25 ms to ~1 s).
type LatencyFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 13))
}

/// What the metrics keep between scrapes: the health probe latency
/// histogram (fed from Konvey's probes at each scrape and every second).
#[derive(Debug)]
pub struct Recorder {
    probe_latency: LatencyFamily,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            probe_latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl Recorder {
    /// Moves the probe latencies Konvey measured into the histogram.
    pub fn collect_probes(&self, daemon: &mut Daemon) {
        if let Some(konvey) = daemon.role_mut::<KonveyRole>() {
            for (key, latency) in konvey.balancer_mut().take_probe_latencies() {
                self.probe_latency
                    .get_or_create(&labels(&[
                        ("service", &key.service.to_string()),
                        ("backend", &key.backend.to_string()),
                    ]))
                    .observe(latency.as_secs_f64());
            }
        }
    }
}

/// What one pass over a role's conntrack finds: SNAT source ports in use
/// per translated source address, and flows per translated destination
/// (Konvey: per backend).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CtScan {
    /// Translated source address -> flows (one SNAT port each).
    pub snat_ports: std::collections::BTreeMap<std::net::Ipv4Addr, u64>,
    /// `addr:port` of the translated destination -> flows.
    pub destinations: std::collections::BTreeMap<(std::net::Ipv4Addr, u16), u64>,
}

impl CtScan {
    /// Counts one entry (reply-direction entries are skipped: one per flow).
    pub fn add(&mut self, value: &kowabunga_bindings::kw_ct_value) {
        use kowabunga_bindings::{KW_CT_F_DNAT, KW_CT_F_REPLY, KW_CT_F_SNAT};
        let flags = u32::from(value.flags);
        if flags & KW_CT_F_REPLY != 0 {
            return;
        }
        if flags & KW_CT_F_SNAT != 0 {
            *self
                .snat_ports
                .entry(u32::from_be(value.nat_saddr).into())
                .or_default() += 1;
        }
        if flags & KW_CT_F_DNAT != 0 {
            let to = (
                u32::from_be(value.nat_daddr).into(),
                u16::from_be(value.nat_dport),
            );
            *self.destinations.entry(to).or_default() += 1;
        }
    }

    /// Scans `tables` batch by batch (never the whole table in memory).
    pub fn of(tables: &[kowabunga_dataplane::conntrack::CtTable]) -> Self {
        let mut scan = CtScan::default();
        for table in tables {
            let _ = table.for_each_batch(|batch| {
                for (_, v) in batch {
                    scan.add(v);
                }
                std::ops::ControlFlow::Continue(())
            });
        }
        scan
    }
}

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

/// The metrics page of `daemon` now.
pub fn render(daemon: &mut Daemon, recorder: &Recorder) -> String {
    recorder.collect_probes(daemon);
    let mut registry = Registry::with_prefix("kowabunga");

    let build = gauge_family(
        &mut registry,
        "build_info",
        "The daemon's version (always 1)",
    );
    build
        .get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
        .set(1);

    // Outcome counters of every XDP role, by reason.
    let packets = counter_family(
        &mut registry,
        "xdp_packets",
        "Packets by XDP role, outcome (drop, pass, fwd) and reason",
    );
    let bytes = counter_family(
        &mut registry,
        "xdp_bytes",
        "Bytes by XDP role, outcome (drop, pass, fwd) and reason",
    );
    for role in daemon.roles() {
        let Some(Ok(counters)) = role.counters() else {
            continue;
        };
        for (name, c) in counters.iter() {
            let outcome = name.split('_').next().unwrap_or("other");
            let l = labels(&[
                ("role", role.name()),
                ("outcome", outcome),
                ("reason", name),
            ]);
            packets.get_or_create(&l).inc_by(c.packets);
            bytes.get_or_create(&l).inc_by(c.bytes);
        }
    }

    // Conntrack.
    let entries = gauge_family(
        &mut registry,
        "conntrack_entries",
        "Conntrack entries (both tables, two per flow) at the last sweep",
    );
    let capacity = gauge_family(
        &mut registry,
        "conntrack_capacity",
        "Conntrack capacity in entries (both tables)",
    );
    let per_table = daemon
        .config()
        .node
        .conntrack_entries
        .unwrap_or(KW_CT_DEFAULT_ENTRIES);
    for (role, n) in daemon.last_sweep() {
        entries
            .get_or_create(&labels(&[("role", role)]))
            .set(*n as i64);
    }
    for role in daemon.roles().filter(|r| r.counters().is_some()) {
        capacity
            .get_or_create(&labels(&[("role", role.name())]))
            .set(2 * i64::from(per_table));
    }

    // The established path's flow cache (kw_fcache.h).
    let fc_hits = counter_family(
        &mut registry,
        "flow_cache_hits",
        "Packets forwarded from the per-CPU flow cache (no conntrack or FIB lookup)",
    );
    let fc_fills = counter_family(
        &mut registry,
        "flow_cache_fills",
        "Flow cache slots filled or refreshed on the slow path",
    );
    let fc_evictions = counter_family(
        &mut registry,
        "flow_cache_evictions",
        "Flow cache fills that took over a slot holding another flow",
    );
    let fc_set_full = counter_family(
        &mut registry,
        "flow_cache_set_full",
        "Flows not cached because both ways of their set held other live flows",
    );
    let mut fc_stats = Vec::new();
    if let Some(kawaii) = daemon.role::<KawaiiRole>() {
        if let Ok(s) = kawaii.engine().object().flow_cache_stats() {
            fc_stats.push(("kawaii", s));
        }
    }
    if let Some(konvey) = daemon.role::<KonveyRole>() {
        if let Ok(s) = konvey.balancer().engine().object().flow_cache_stats() {
            fc_stats.push(("konvey", s));
        }
    }
    for (role, s) in &fc_stats {
        let l = labels(&[("role", role)]);
        fc_hits.get_or_create(&l).inc_by(s.hits);
        fc_fills.get_or_create(&l).inc_by(s.fills);
        fc_evictions.get_or_create(&l).inc_by(s.evictions);
        fc_set_full.get_or_create(&l).inc_by(s.set_full);
    }

    // One pass over each role's conntrack: SNAT ports and backend flows.
    let snat = gauge_family(
        &mut registry,
        "snat_ports_in_use",
        "Flows (one source port each) translated to each source address",
    );
    let mut scans = Vec::new();
    if let Some(kawaii) = daemon.role::<KawaiiRole>() {
        if let Ok(tables) = kawaii.engine().object().conntrack_tables() {
            scans.push(("kawaii", CtScan::of(&tables)));
        }
    }
    if let Some(konvey) = daemon.role::<KonveyRole>() {
        if let Ok(tables) = konvey.balancer().engine().object().conntrack_tables() {
            scans.push(("konvey", CtScan::of(&tables)));
        }
    }
    for (role, scan) in &scans {
        for (addr, n) in &scan.snat_ports {
            snat.get_or_create(&labels(&[("role", role), ("address", &addr.to_string())]))
                .set(*n as i64);
        }
    }
    let active = gauge_family(
        &mut registry,
        "konvey_backend_active_flows",
        "Konvey flows to each backend in conntrack now",
    );
    if let Some((_, scan)) = scans.iter().find(|(r, _)| *r == "konvey") {
        for ((addr, port), n) in &scan.destinations {
            active
                .get_or_create(&labels(&[("backend", &format!("{addr}:{port}"))]))
                .set(*n as i64);
        }
    }

    // Konvey backends: the dataplane's per-backend counters (kv_backend_stats).
    let new_flows = counter_family(
        &mut registry,
        "konvey_backend_new_flows",
        "Flows Konvey created towards each backend (since it entered the rotation)",
    );
    let be_packets = counter_family(
        &mut registry,
        "konvey_backend_packets",
        "Packets of each backend's flows, both directions",
    );
    let be_bytes = counter_family(
        &mut registry,
        "konvey_backend_bytes",
        "Bytes of each backend's flows, both directions",
    );
    if let Some(konvey) = daemon.role::<KonveyRole>() {
        if let Ok(counters) = konvey.balancer().engine().object().backend_counters() {
            for (service, backend, c) in counters {
                let l = labels(&[
                    ("service", &service.to_string()),
                    ("backend", &backend.to_string()),
                ]);
                new_flows.get_or_create(&l).inc_by(c.new_flows);
                be_packets.get_or_create(&l).inc_by(c.packets);
                be_bytes.get_or_create(&l).inc_by(c.bytes);
            }
        }
    }

    // Konvey backends.
    let up = gauge_family(
        &mut registry,
        "konvey_backend_up",
        "1 when the backend is up (in rotation), 0 when down or draining",
    );
    if let Some(konvey) = daemon.role::<KonveyRole>() {
        for b in konvey.balancer().status() {
            let service = b.service.map(|s| s.to_string()).unwrap_or_default();
            let endpoint = b.endpoint.clone().unwrap_or_default();
            up.get_or_create(&labels(&[
                ("endpoint", &endpoint),
                ("service", &service),
                ("backend", &b.backend.to_string()),
                ("state", b.state.as_str()),
            ]))
            .set(i64::from(b.state == crate::konvey::health::State::Up));
        }
    }
    registry.register(
        "konvey_probe_latency_seconds",
        "Health probe latency (successes and failures)",
        recorder.probe_latency.clone(),
    );

    // VRRP.
    let state = gauge_family(
        &mut registry,
        "vrrp_state",
        "1 for the state each VRRP instance is in",
    );
    let transitions = counter_family(
        &mut registry,
        "vrrp_transitions",
        "VRRP transitions by instance and target state",
    );
    if let Some(vrrp) = daemon.role::<VrrpRole>() {
        for s in vrrp.instances_status() {
            state
                .get_or_create(&labels(&[
                    ("instance", &s.name),
                    ("state", &s.state.to_string()),
                ]))
                .set(1);
            for (to, n) in [
                ("master", s.counters.became_master),
                ("backup", s.counters.became_backup),
            ] {
                transitions
                    .get_or_create(&labels(&[("instance", &s.name), ("to", to)]))
                    .inc_by(n);
            }
        }
    }

    // Reloads.
    let reloads = counter_family(&mut registry, "reloads", "Configuration reloads by result");
    let (ok, failed) = daemon.reloads();
    reloads
        .get_or_create(&labels(&[("result", "ok")]))
        .inc_by(ok);
    reloads
        .get_or_create(&labels(&[("result", "failed")]))
        .inc_by(failed);
    let generation = Gauge::<i64>::default();
    generation.set(daemon.generation() as i64);
    registry.register(
        "config_generation",
        "The applied configuration's generation (1 at start, +1 per applied reload)",
        generation,
    );
    let uptime = Gauge::<i64>::default();
    uptime.set(daemon.started().elapsed().as_secs() as i64);
    registry.register("uptime_seconds", "Seconds since the daemon started", uptime);

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kowabunga_bindings::{kw_ct_value, KW_CT_F_DNAT, KW_CT_F_REPLY, KW_CT_F_SNAT};

    #[test]
    fn a_scan_counts_flows_once_by_source_and_destination() {
        let be = |a: [u8; 4]| u32::from_be_bytes(a).to_be();
        let orig = kw_ct_value {
            nat_saddr: be([10, 0, 0, 5]),
            nat_daddr: be([10, 0, 0, 11]),
            nat_dport: 7000u16.to_be(),
            flags: (KW_CT_F_SNAT | KW_CT_F_DNAT) as u8,
            ..Default::default()
        };
        let reply = kw_ct_value {
            flags: (KW_CT_F_SNAT | KW_CT_F_DNAT | KW_CT_F_REPLY) as u8,
            ..orig
        };
        let snat_only = kw_ct_value {
            nat_saddr: be([203, 0, 113, 10]),
            flags: KW_CT_F_SNAT as u8,
            ..Default::default()
        };
        let mut scan = CtScan::default();
        for v in [orig, reply, orig, snat_only] {
            scan.add(&v);
        }
        assert_eq!(
            scan.snat_ports.into_iter().collect::<Vec<_>>(),
            [
                (std::net::Ipv4Addr::new(10, 0, 0, 5), 2),
                (std::net::Ipv4Addr::new(203, 0, 113, 10), 1)
            ]
        );
        assert_eq!(
            scan.destinations.into_iter().collect::<Vec<_>>(),
            [((std::net::Ipv4Addr::new(10, 0, 0, 11), 7000), 2)]
        );
    }
}
