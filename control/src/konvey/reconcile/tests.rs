//! Tests of the parent module.

use super::*;
use crate::konvey::engine::fake::FakeKonvey;
use std::net::Ipv4Addr;

const MS: Duration = Duration::from_millis(1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

fn be(last: u8) -> Backend {
    Backend {
        addr: Ipv4Addr::new(10, 0, 0, last),
        port: 8080,
    }
}

fn web() -> ServiceKey {
    ServiceKey {
        vip: VIP,
        proto: Proto::Tcp,
        port: 80,
    }
}

fn dns() -> ServiceKey {
    ServiceKey {
        vip: VIP,
        proto: Proto::Udp,
        port: 53,
    }
}

fn service(key: ServiceKey, name: &str, backends: &[u8]) -> DesiredService {
    DesiredService {
        key,
        name: name.to_owned(),
        backends: backends.iter().map(|&b| be(b)).collect(),
        probe: ProbeKind::Tcp,
    }
}

fn kv_config() -> KonveyConfig {
    KonveyConfig {
        sources: vec![Ipv4Addr::new(10, 0, 0, 5)],
        port_min: 1024,
        port_max: 32767,
        sample_shift: 6,
    }
}

fn health() -> HealthConfig {
    HealthConfig {
        interval: 100 * MS,
        timeout: 50 * MS,
        rise: 2,
        fall: 2,
    }
}

fn balancer(t0: Instant, services: Vec<DesiredService>) -> Balancer<FakeKonvey> {
    let mut b = Balancer::new(FakeKonvey::default()).expect("new");
    b.apply(&kv_config(), services, health(), t0)
        .expect("apply");
    b
}

/// Runs every probe due at `now`, answering `up(backend)`.
fn probe_round(b: &mut Balancer<FakeKonvey>, now: Instant, up: impl Fn(Backend) -> bool) {
    for request in b.poll_probes(now) {
        let outcome = if up(request.key.backend) {
            Outcome::Success
        } else {
            Outcome::failure("connection refused")
        };
        b.on_outcome(request.key, request.id, now, outcome)
            .expect("reconcile");
    }
}

#[test]
fn apply_programs_every_backend_in_config_order_once() {
    let t0 = Instant::now();
    let mut b = balancer(t0, vec![service(web(), "web", &[12, 11, 13])]);
    assert_eq!(b.engine().config, Some(kv_config()));
    assert_eq!(
        b.engine().writes,
        ["set 10.0.0.100:80/tcp [10.0.0.12:8080, 10.0.0.11:8080, 10.0.0.13:8080]"]
    );
    // Same config again, and a healthy probe round: nothing to write.
    b.apply(
        &kv_config(),
        vec![service(web(), "web", &[12, 11, 13])],
        health(),
        t0,
    )
    .expect("apply");
    probe_round(&mut b, t0, |_| true);
    assert_eq!(b.reconcile().expect("reconcile"), 0, "config written once");
    assert_eq!(b.engine().writes.len(), 1);
    assert_eq!(b.poll_timeout(), Some(t0 + 100 * MS));
}

#[test]
fn a_failing_backend_leaves_the_rotation_and_comes_back() {
    let t0 = Instant::now();
    let mut b = balancer(t0, vec![service(web(), "web", &[11, 12, 13])]);
    let dead = be(12);
    // Round 1: one failure (fall 2): still in.
    probe_round(&mut b, t0, |x| x != dead);
    assert_eq!(b.rotation(&web()).len(), 3);
    // Round 2: out.
    probe_round(&mut b, t0 + 100 * MS, |x| x != dead);
    assert_eq!(b.rotation(&web()), [be(11), be(13)]);
    assert_eq!(
        b.engine().services[&web()],
        [be(11), be(13)],
        "written to the dataplane"
    );
    let status = b.status();
    let s = status.iter().find(|s| s.backend == dead).expect("status");
    assert_eq!(s.state, State::Down);
    assert_eq!(s.endpoint.as_deref(), Some("web"));
    // Back after rise (2) successes, in its configured place.
    probe_round(&mut b, t0 + 200 * MS, |_| true);
    assert_eq!(b.rotation(&web()).len(), 2);
    probe_round(&mut b, t0 + 300 * MS, |_| true);
    assert_eq!(b.rotation(&web()), [be(11), be(12), be(13)]);
    assert_eq!(b.engine().writes.len(), 3);
}

#[test]
fn probes_without_answer_fail_at_the_deadline() {
    let t0 = Instant::now();
    let mut b = balancer(t0, vec![service(web(), "web", &[11])]);
    for round in 0..2u32 {
        let start = t0 + 100 * MS * round;
        assert_eq!(b.poll_probes(start).len(), 1);
        assert_eq!(b.poll_timeout(), Some(start + 50 * MS));
        assert!(!b.handle_timeouts(start + 49 * MS).expect("ok"));
        assert!(b.handle_timeouts(start + 50 * MS).expect("ok") || round == 0);
    }
    assert!(b.rotation(&web()).is_empty());
    assert_eq!(b.engine().services[&web()], [], "empty rotation kept");
}

#[test]
fn a_removed_backend_drains_until_its_flows_end() {
    let t0 = Instant::now();
    let mut b = balancer(t0, vec![service(web(), "web", &[11, 12, 13])]);
    b.engine_mut().flows.insert(be(12), 2);
    b.apply(
        &kv_config(),
        vec![service(web(), "web", &[11, 13])],
        health(),
        t0,
    )
    .expect("apply");
    assert_eq!(b.engine().services[&web()], [be(11), be(13)]);
    assert_eq!(b.draining().collect::<Vec<_>>(), [(be(12), None)]);
    // Not probed any more.
    assert!(b.poll_probes(t0).iter().all(|r| r.key.backend != be(12)));

    assert!(b.refresh_draining().expect("flows").is_empty());
    assert_eq!(b.draining().collect::<Vec<_>>(), [(be(12), Some(2))]);
    let status = b.status();
    let s = status.last().expect("draining");
    assert_eq!(
        (s.backend, s.state, s.flows),
        (be(12), State::Draining, Some(2))
    );

    b.engine_mut().flows.insert(be(12), 0);
    assert_eq!(b.refresh_draining().expect("flows"), [be(12)]);
    assert_eq!(b.draining().count(), 0);
    assert!(b.status().iter().all(|s| s.backend != be(12)));
}

#[test]
fn a_backend_added_back_stops_draining() {
    let t0 = Instant::now();
    let mut b = balancer(t0, vec![service(web(), "web", &[11, 12])]);
    b.apply(
        &kv_config(),
        vec![service(web(), "web", &[11])],
        health(),
        t0,
    )
    .expect("apply");
    assert_eq!(b.draining().count(), 1);
    b.apply(
        &kv_config(),
        vec![service(web(), "web", &[11, 12])],
        health(),
        t0,
    )
    .expect("apply");
    assert_eq!(b.draining().count(), 0);
    assert_eq!(b.rotation(&web()), [be(11), be(12)]);
}

#[test]
fn a_removed_service_is_deleted_after_the_others_are_written() {
    let t0 = Instant::now();
    let mut b = balancer(
        t0,
        vec![service(web(), "web", &[11]), service(dns(), "dns", &[21])],
    );
    b.engine_mut().writes.clear();
    b.apply(
        &kv_config(),
        vec![service(web(), "web", &[11, 12])],
        health(),
        t0,
    )
    .expect("apply");
    assert_eq!(
        b.engine().writes,
        [
            "set 10.0.0.100:80/tcp [10.0.0.11:8080, 10.0.0.12:8080]",
            "remove 10.0.0.100:53/udp"
        ]
    );
    assert_eq!(b.draining().collect::<Vec<_>>(), [(be(21), None)]);
}

#[test]
fn starts_from_what_the_pinned_maps_hold() {
    let t0 = Instant::now();
    let mut fake = FakeKonvey::default();
    fake.services.insert(web(), vec![be(11), be(12)]);
    fake.services.insert(dns(), vec![be(21)]);
    let mut b = Balancer::new(fake).expect("new");
    b.apply(
        &kv_config(),
        vec![service(web(), "web", &[11, 12])],
        health(),
        t0,
    )
    .expect("apply");
    // The unchanged service is not rewritten; the stale one goes, and
    // its backend drains.
    assert_eq!(b.engine().writes, ["remove 10.0.0.100:53/udp"]);
    assert_eq!(b.draining().collect::<Vec<_>>(), [(be(21), None)]);
}

#[test]
fn failed_writes_are_retried() {
    let t0 = Instant::now();
    let mut b = balancer(t0, vec![service(web(), "web", &[11, 12])]);
    b.engine_mut().fail = true;
    let dead = be(11);
    probe_round(&mut b, t0, |x| x != dead);
    let round2 = b.poll_probes(t0 + 100 * MS);
    let mut failed = false;
    for r in round2 {
        let outcome = if r.key.backend == dead {
            Outcome::failure("refused")
        } else {
            Outcome::Success
        };
        failed |= b.on_outcome(r.key, r.id, t0 + 100 * MS, outcome).is_err();
    }
    assert!(failed && b.dirty());
    assert_eq!(
        b.engine().services[&web()],
        [be(11), be(12)],
        "old rotation"
    );
    b.engine_mut().fail = false;
    assert_eq!(b.reconcile().expect("retry"), 1);
    // A config write that fails is retried too.
    b.engine_mut().fail = true;
    let mut other = kv_config();
    other.port_max = 20000;
    assert!(b
        .apply(&other, vec![service(web(), "web", &[11, 12])], health(), t0)
        .is_err());
    assert_eq!(b.engine().config, Some(kv_config()));
    b.engine_mut().fail = false;
    assert_eq!(b.reconcile().expect("retry"), 1);
    assert_eq!(b.engine().config, Some(other));
    assert!(!b.dirty());
    assert_eq!(b.engine().services[&web()], [be(12)]);
}

#[test]
fn outcomes_of_unknown_checks_are_ignored() {
    let t0 = Instant::now();
    let mut b = balancer(t0, vec![service(web(), "web", &[11])]);
    let requests = b.poll_probes(t0);
    let stale = requests[0].clone();
    // The backend leaves the config while its probe is in flight.
    b.apply(
        &kv_config(),
        vec![service(web(), "web", &[12])],
        health(),
        t0,
    )
    .expect("apply");
    let changed = b
        .on_outcome(stale.key, stale.id, t0, Outcome::failure("late"))
        .expect("ok");
    assert!(!changed);
    assert_eq!(b.rotation(&web()), [be(12)]);
}

#[test]
fn udp_services_probe_with_their_payload() {
    use crate::konvey::probe::UdpProbe;
    let t0 = Instant::now();
    let mut svc = service(dns(), "dns", &[21]);
    let udp = UdpProbe {
        send: b"ping".to_vec(),
        expect: Some(b"pong".to_vec()),
    };
    svc.probe = ProbeKind::Udp(udp.clone());
    let mut b = balancer(t0, vec![svc]);
    let requests = b.poll_probes(t0);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].target.kind, ProbeKind::Udp(udp));
    assert_eq!(requests[0].target.addr.to_string(), "10.0.0.21:8080");
    assert_eq!(requests[0].timeout, 50 * MS);
    assert_eq!(
        requests[0].key.to_string(),
        "10.0.0.21:8080 of 10.0.0.100:53/udp"
    );
}
