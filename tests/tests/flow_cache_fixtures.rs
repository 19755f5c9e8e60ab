//! The established path's per-CPU flow cache (`ebpf/include/kw_fcache.h`)
//! through `BPF_PROG_TEST_RUN` on the real `kawaii.o`, every step checked
//! against the reference model (which has no cache: what the cache forwards
//! must be byte for byte what the slow path would).
//!
//! The test thread is pinned to one CPU: each CPU has its own slots.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use kowabunga_bindings::{kw_ct_key, kw_stat};
use kowabunga_dataplane::fcache::Stats;
use kowabunga_dataplane::kawaii::{MAP_CT4, MAP_CT4_NEW};
use kowabunga_dataplane::Role;
use kowabunga_testkit::privileged;
use kowabunga_tests::fixture_net::{PRV_MAC, PUB_MAC, ROUTER_MAC};
use kowabunga_tests::harness::{Harness, Step};
use kowabunga_tests::model::XDP_REDIRECT;
use kowabunga_tests::packets::{frame, verify_checksums, Ip, TcpFlags, L4};
use kowabunga_tests::world::{self, VIP};

const C1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ANY_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const PAYLOAD: &[u8] = b"kowabunga";

fn run(name: &str, body: impl FnOnce(&mut Harness)) {
    if !privileged(name) {
        return;
    }
    pin_to_cpu0();
    let (cfg, tables) = world::config();
    let mut h = Harness::new(cfg, &tables).unwrap();
    body(&mut h);
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning the test thread"
        );
    }
}

fn udp_l4(sport: u16, dport: u16) -> L4 {
    L4::Udp {
        sport,
        dport,
        zero_csum: false,
    }
}

fn step(h: &mut Harness, role: Role, f: &[u8]) -> Step {
    h.step(role, f).unwrap()
}

fn expect_fwd(s: &Step, want: &[u8]) {
    assert_eq!(
        (s.verdict, s.stat),
        (XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT),
        "got counter {}",
        s.stat_name()
    );
    verify_checksums(&s.data).unwrap();
    assert_eq!(s.data, want, "forwarded frame differs");
}

fn stats(h: &Harness) -> Stats {
    h.kawaii.flow_cache_stats().unwrap()
}

/// Outbound UDP from C1:sport to SERVER:53 answered once: a confirmed flow.
fn answered_udp(h: &mut Harness, sport: u16) -> (Vec<u8>, Vec<u8>) {
    let out = frame(
        ANY_MAC,
        PRV_MAC,
        &Ip::new(C1, SERVER),
        &udp_l4(sport, 53),
        PAYLOAD,
    );
    let want = frame(
        PUB_MAC,
        ROUTER_MAC,
        &Ip::new(VIP, SERVER).ttl(63),
        &udp_l4(sport, 53),
        PAYLOAD,
    );
    expect_fwd(&step(h, Role::Private, &out), &want);
    let reply = frame(
        ANY_MAC,
        PUB_MAC,
        &Ip::new(SERVER, VIP),
        &udp_l4(53, sport),
        PAYLOAD,
    );
    let s = step(h, Role::Public, &reply);
    assert_eq!(s.verdict, XDP_REDIRECT, "reply: {}", s.stat_name());
    (out, want)
}

fn key(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, proto: u8) -> kw_ct_key {
    kw_ct_key {
        saddr: u32::from_ne_bytes(src.octets()),
        daddr: u32::from_ne_bytes(dst.octets()),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        ..Default::default()
    }
}

/// The entry's packets and bytes without and with what the cache holds.
fn counted(h: &Harness, k: &kw_ct_key) -> ((u64, u64), (u64, u64)) {
    let v = h
        .kawaii
        .conntrack_table(MAP_CT4)
        .unwrap()
        .get(k)
        .unwrap()
        .expect("confirmed entry");
    let (p, b) = h.kawaii.flow_cache_pending(k).unwrap();
    ((v.packets, v.bytes), (v.packets + p, v.bytes + b))
}

#[test]
fn an_answered_flow_is_forwarded_from_the_cache_byte_for_byte() {
    run(
        "an_answered_flow_is_forwarded_from_the_cache_byte_for_byte",
        |h| {
            let (out, want) = answered_udp(h, 5353);
            let before = stats(h);
            // the first packet after the answer takes the slow path and fills a slot
            expect_fwd(&step(h, Role::Private, &out), &want);
            let filled = stats(h);
            assert_eq!(filled.fills, before.fills + 1, "{filled:?}");
            assert_eq!(filled.hits, before.hits, "{filled:?}");
            for _ in 0..5 {
                expect_fwd(&step(h, Role::Private, &out), &want);
            }
            let after = stats(h);
            assert_eq!(after.hits, filled.hits + 5, "{after:?}");
            assert_eq!(after.fills, filled.fills, "{after:?}");
            // the entry counts 2 packets (the first, the one that filled);
            // the slot holds the 5 others until the slow path folds them in
            let k = key(C1, 5353, SERVER, 53, 17);
            let ((p, b), (total_p, total_b)) = counted(h, &k);
            assert_eq!((p, total_p), (2, 7));
            assert_eq!(total_b, 7 * b / 2);
            let model = h
                .model
                .ct_get(&kowabunga_tests::model::flow::Tuple::new(
                    17, C1, 5353, SERVER, 53,
                ))
                .copied()
                .expect("model entry");
            assert_eq!((model.packets, model.bytes), (total_p, total_b));
        },
    );
}

#[test]
fn a_fin_takes_the_slow_path_and_folds_the_cached_counters() {
    run(
        "a_fin_takes_the_slow_path_and_folds_the_cached_counters",
        |h| {
            let tcp = |flags| {
                frame(
                    ANY_MAC,
                    PRV_MAC,
                    &Ip::new(C1, SERVER),
                    &L4::Tcp {
                        sport: 40000,
                        dport: 443,
                        flags,
                    },
                    PAYLOAD,
                )
            };
            let s = step(h, Role::Private, &tcp(TcpFlags::SYN));
            assert_eq!(s.verdict, XDP_REDIRECT);
            let nat_port = u16::from_be_bytes([s.data[34], s.data[35]]);
            let synack = frame(
                ANY_MAC,
                PUB_MAC,
                &Ip::new(SERVER, VIP),
                &L4::Tcp {
                    sport: 443,
                    dport: nat_port,
                    flags: TcpFlags::SYN_ACK,
                },
                PAYLOAD,
            );
            assert_eq!(step(h, Role::Public, &synack).verdict, XDP_REDIRECT);
            // the handshake's ACK confirms the flow, the next fills a slot
            for _ in 0..2 {
                assert_eq!(
                    step(h, Role::Private, &tcp(TcpFlags::ACK)).verdict,
                    XDP_REDIRECT
                );
            }
            let before = stats(h);
            for _ in 0..3 {
                assert_eq!(
                    step(h, Role::Private, &tcp(TcpFlags::PSH_ACK)).verdict,
                    XDP_REDIRECT
                );
            }
            assert_eq!(stats(h).hits, before.hits + 3);
            let fin = step(h, Role::Private, &tcp(TcpFlags::FIN_ACK));
            assert_eq!(fin.verdict, XDP_REDIRECT);
            assert_eq!(stats(h).hits, before.hits + 3, "a FIN is never cached");
            // SYN, ACK, ACK, 3 cached, FIN: all in the entry now
            let k = key(C1, 40000, SERVER, 443, 6);
            let ((p, _), (total, _)) = counted(h, &k);
            assert_eq!((p, total), (7, 7));
            // after the FIN the flow is closing: never cached again
            let fills = stats(h).fills;
            assert_eq!(
                step(h, Role::Private, &tcp(TcpFlags::ACK)).verdict,
                XDP_REDIRECT
            );
            assert_eq!(stats(h).fills, fills, "a closing flow is not cached");
        },
    );
}

#[test]
fn deleting_flows_from_user_space_empties_the_cache() {
    run("deleting_flows_from_user_space_empties_the_cache", |h| {
        let (out, want) = answered_udp(h, 6000);
        expect_fwd(&step(h, Role::Private, &out), &want);
        expect_fwd(&step(h, Role::Private, &out), &want);
        let cached = stats(h);
        assert!(cached.hits >= 1, "{cached:?}");
        // delete every entry (what the sweep does to expired flows)
        for table in [MAP_CT4, MAP_CT4_NEW] {
            let t = h.kawaii.conntrack_table(table).unwrap();
            let keys: Vec<kw_ct_key> = t.entries().unwrap().into_iter().map(|(k, _)| k).collect();
            t.delete(&keys).unwrap();
        }
        h.model.conntrack_mut().clear();
        // the next packet is a new flow again, in the program as in the model
        expect_fwd(&step(h, Role::Private, &out), &want);
        let after = stats(h);
        assert_eq!(after.hits, cached.hits, "forwarded from a stale slot");
        assert_eq!(h.kawaii.conntrack_entries().unwrap().len(), 2);
        assert!(h
            .kawaii
            .conntrack_table(MAP_CT4)
            .unwrap()
            .entries()
            .unwrap()
            .is_empty());
    });
}

#[test]
fn a_packet_the_cache_cannot_take_goes_the_slow_path() {
    run("a_packet_the_cache_cannot_take_goes_the_slow_path", |h| {
        let (out, want) = answered_udp(h, 7000);
        expect_fwd(&step(h, Role::Private, &out), &want);
        let filled = stats(h);
        // TTL 1: the slow path hands it to the kernel (time exceeded), untranslated
        let ttl1 = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER).ttl(1),
            &udp_l4(7000, 53),
            PAYLOAD,
        );
        let s = step(h, Role::Private, &ttl1);
        assert_eq!(s.stat, kw_stat::KW_STAT_PASS_TTL, "{}", s.stat_name());
        // longer than any packet the FIB lookup passed for the slot: slow path, then cached
        let long = [PAYLOAD; 20].concat();
        let big = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &udp_l4(7000, 53),
            &long,
        );
        let s = step(h, Role::Private, &big);
        assert_eq!(s.verdict, XDP_REDIRECT);
        let after = stats(h);
        assert_eq!(after.hits, filled.hits, "{after:?}");
        assert_eq!(after.fills, filled.fills + 1, "{after:?}");
        // a shorter packet than the one the slot was filled with fits it
        expect_fwd(&step(h, Role::Private, &out), &want);
        assert_eq!(stats(h).hits, after.hits + 1);
    });
}

#[test]
fn a_third_flow_in_a_full_set_does_not_evict_live_flows() {
    run(
        "a_third_flow_in_a_full_set_does_not_evict_live_flows",
        |h| {
            // three source ports whose flows share one set (2 ways)
            let mut by_set = std::collections::HashMap::<u32, Vec<u16>>::new();
            let mut ports = Vec::new();
            for sport in 1024..u16::MAX {
                let same = by_set
                    .entry(h.kawaii.flow_cache_set(&key(C1, sport, SERVER, 53, 17)))
                    .or_default();
                same.push(sport);
                if same.len() == 3 {
                    ports = same.clone();
                    break;
                }
            }
            assert_eq!(ports.len(), 3, "no three colliding ports");
            let flows: Vec<_> = ports.iter().map(|&p| answered_udp(h, p)).collect();
            let before = stats(h);
            // the slow path fills a slot for the first two; the third finds both live
            for (out, want) in &flows {
                expect_fwd(&step(h, Role::Private, out), want);
            }
            let filled = stats(h);
            assert_eq!(filled.fills, before.fills + 2, "{filled:?}");
            assert_eq!(filled.set_full, before.set_full + 1, "{filled:?}");
            assert_eq!(filled.evictions, before.evictions, "{filled:?}");
            // round after round the first two hit; the third keeps the slow path
            // and still forwards exactly what the model does
            for round in 1..=3 {
                for (out, want) in &flows {
                    expect_fwd(&step(h, Role::Private, out), want);
                }
                let now = stats(h);
                assert_eq!(now.hits, filled.hits + 2 * round, "{now:?}");
                assert_eq!(now.set_full, filled.set_full + round, "{now:?}");
                assert_eq!(now.evictions, before.evictions, "{now:?}");
            }
            // the third flow's packets are all in its entry: none wait in a slot
            let k = key(C1, ports[2], SERVER, 53, 17);
            let ((p, _), (total, _)) = counted(h, &k);
            assert_eq!((p, total), (5, 5));
        },
    );
}
