//! Konvey in the kernel: verifier, service programming, round-robin and
//! pinning. Packet-exact fixtures live in the `kowabunga-tests` crate (they
//! need a fixture network for the FIB lookups); here the test runs stop at
//! conntrack. Skipped (or failed) as `kowabunga_testkit::privileged` says.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::konvey::{Backend, KonveyConfig, Proto, ServiceKey};
use kowabunga_dataplane::test_run::{XDP_DROP, XDP_PASS};
use kowabunga_dataplane::{monotonic_now_ns, Konvey, LoadOptions};
use kowabunga_testkit::privileged;

use support::PinDir;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 100);
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 5);

fn service(port: u16) -> ServiceKey {
    ServiceKey {
        vip: VIP,
        proto: Proto::Tcp,
        port,
    }
}

fn backend(last: u8) -> Backend {
    Backend {
        addr: Ipv4Addr::new(10, 9, 0, last),
        port: 8080,
    }
}

fn config() -> KonveyConfig {
    KonveyConfig {
        sources: vec![SOURCE],
        port_min: 1024,
        port_max: 32767,
        sample_shift: 0,
    }
}

/// A TCP SYN from 10.9.0.50:`sport` to the VIP on `dport`.
fn syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 9, 0, 50], VIP.octets(), 64)
        .tcp(sport, dport, 1000, 65535)
        .syn()
        .write(&mut frame, &[])
        .unwrap();
    frame
}

#[test]
fn konvey_round_robins_new_flows_and_drains() {
    if !privileged("konvey_round_robins_new_flows_and_drains") {
        return;
    }
    let mut konvey = Konvey::load(&LoadOptions::default()).unwrap();
    assert_eq!(konvey.config().unwrap(), None);
    // unconfigured: everything passes
    assert_eq!(konvey.run(&syn(40000, 80)).unwrap().verdict, XDP_PASS);
    assert_eq!(
        konvey
            .counters()
            .unwrap()
            .packets(kw_stat::KW_STAT_PASS_NO_CONFIG),
        1
    );

    konvey.set_config(&config()).unwrap();
    assert_eq!(konvey.config().unwrap(), Some(config()));
    let rotation = [backend(11), backend(12), backend(13)];
    konvey.set_service(service(80), &rotation).unwrap();
    assert_eq!(
        konvey.services().unwrap(),
        vec![(service(80), rotation.to_vec())]
    );

    // a VIP port without a service: dropped and counted
    assert_eq!(konvey.run(&syn(40000, 81)).unwrap().verdict, XDP_DROP);
    assert_eq!(
        konvey
            .counters()
            .unwrap()
            .packets(kw_stat::KW_STAT_DROP_NO_SERVICE),
        1
    );

    // nine new flows: three on each backend, in order
    for i in 0..9u16 {
        konvey.run(&syn(41000 + i, 80)).unwrap();
    }
    let flows = konvey.flows_by_backend().unwrap();
    for b in rotation {
        assert_eq!(flows.get(&b), Some(&3), "{b}: {flows:?}");
    }

    // backend 12 leaves the rotation: it keeps its flows, gets no new ones
    konvey
        .set_service(service(80), &[backend(11), backend(13)])
        .unwrap();
    for i in 0..4u16 {
        konvey.run(&syn(42000 + i, 80)).unwrap();
    }
    let flows = konvey.flows_by_backend().unwrap();
    assert_eq!(flows.get(&backend(12)), Some(&3));
    assert_eq!(flows.get(&backend(11)), Some(&5));
    assert_eq!(flows.get(&backend(13)), Some(&5));

    // no backend in rotation: new flows dropped and counted
    konvey.set_service(service(80), &[]).unwrap();
    assert_eq!(konvey.run(&syn(43000, 80)).unwrap().verdict, XDP_DROP);
    assert_eq!(
        konvey
            .counters()
            .unwrap()
            .packets(kw_stat::KW_STAT_DROP_NO_BACKEND),
        1
    );

    // the last service of the VIP goes while flows live: the VIP drains
    konvey.remove_service(service(80)).unwrap();
    assert!(konvey.services().unwrap().is_empty());
    assert_eq!(konvey.vips().unwrap().get(&VIP), Some(&0));
    assert_eq!(konvey.run(&syn(43001, 81)).unwrap().verdict, XDP_DROP);
    assert!(konvey.purge_drained_vips().unwrap().is_empty());
    // its flows expire: the VIP leaves, its packets go to the host
    let later = monotonic_now_ns() + 3 * 3_600_000_000_000;
    assert_eq!(konvey.sweep(later).unwrap().flows_expired, 13);
    assert_eq!(konvey.purge_drained_vips().unwrap(), vec![VIP]);
    assert!(konvey.vips().unwrap().is_empty());
    assert_eq!(konvey.run(&syn(43002, 81)).unwrap().verdict, XDP_PASS);
}

#[test]
fn konvey_pinned_services_survive_a_reload() {
    if !privileged("konvey_pinned_services_survive_a_reload") {
        return;
    }
    let pins = PinDir::new();
    let options = LoadOptions {
        pin_dir: Some(pins.dir.join("konvey")),
        ct_entries: Some(4096),
    };
    {
        let mut konvey = Konvey::load(&options).unwrap();
        konvey.set_config(&config()).unwrap();
        konvey.set_service(service(80), &[backend(11)]).unwrap();
        konvey.set_service(service(443), &[backend(12)]).unwrap();
        konvey.run(&syn(40000, 443)).unwrap();
    }
    let mut konvey = Konvey::load(&options).unwrap();
    assert_eq!(konvey.config().unwrap(), Some(config()));
    assert_eq!(
        konvey.services().unwrap(),
        vec![
            (service(80), vec![backend(11)]),
            (service(443), vec![backend(12)])
        ]
    );
    assert_eq!(
        konvey.flows_by_backend().unwrap().get(&backend(12)),
        Some(&1)
    );
    // a removed and re-added service does not collide with a live id
    konvey.remove_service(service(80)).unwrap();
    konvey.set_service(service(8080), &[backend(13)]).unwrap();
    konvey.set_service(service(80), &[backend(11)]).unwrap();
    assert_eq!(konvey.services().unwrap().len(), 3);
    let wrong = LoadOptions {
        ct_entries: Some(8192),
        ..options
    };
    drop(konvey);
    let err = Konvey::load(&wrong).unwrap_err().to_string();
    assert!(err.contains("kw_ct4"), "{err}");
}
