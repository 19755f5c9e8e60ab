//! Katran-style fixtures for Konvey: packet in -> verdict, counter and exact
//! packet out, through `BPF_PROG_TEST_RUN` on the real `konvey.o`, in the
//! Konvey fixture network (`kowabunga_tests::fixture_konvey`). Every step is
//! also run through the reference model, which must agree byte for byte and
//! counter for counter (the harness checks that exactly one counter moves);
//! most fixtures also compare the whole conntrack map with the model's.
//!
//! Expected frames are built from scratch with etherparse (fresh checksums),
//! so the program's incremental checksum updates are checked too.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::konvey::{Backend, KonveyConfig, Proto, ServiceKey};
use kowabunga_testkit::privileged;
use kowabunga_tests::fixture_konvey::{
    self as net, backend, rotation, tcp_service, udp2_service, udp_service, BACKENDS,
    BACKEND_NO_NEIGH, BACK_MAC, CLIENTS, FRONT_ADDR, FRONT_MAC, REMOTE_CLIENT, ROUTER_MAC, SOURCE,
    TCP_BACKEND_PORT, TCP_PORT, UDP2_PORT, UDP_BACKEND_PORT, UDP_PORT, VIP, VIP2,
};
use kowabunga_tests::harness::Step;
use kowabunga_tests::harness_konvey::KonveyHarness;
use kowabunga_tests::model::csum::replace2;
use kowabunga_tests::model::flow::{Tuple, CT_CLOSING, CT_ESTABLISHED, CT_NEW};
use kowabunga_tests::model::{XDP_DROP, XDP_PASS, XDP_REDIRECT};
use kowabunga_tests::packets::{
    frag_needed, frame, ip_packet, port_unreachable, verify_checksums, Ip, TcpFlags, L4,
};

const ANY_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const PAYLOAD: &[u8] = b"kowabunga";
const C0: Ipv4Addr = CLIENTS[0].0;
const C0_MAC: [u8; 6] = CLIENTS[0].1;
const C1: Ipv4Addr = CLIENTS[1].0;
const C1_MAC: [u8; 6] = CLIENTS[1].1;

fn run(name: &str, body: impl FnOnce(&mut KonveyHarness)) {
    if !privileged(name) {
        return;
    }
    let mut h = KonveyHarness::standard().unwrap();
    body(&mut h);
    h.check_conntrack().unwrap();
}

fn run_with(
    name: &str,
    cfg: KonveyConfig,
    services: &[(ServiceKey, Vec<Backend>)],
    body: impl FnOnce(&mut KonveyHarness),
) {
    if !privileged(name) {
        return;
    }
    let mut h = KonveyHarness::new(cfg, services).unwrap();
    body(&mut h);
    h.check_conntrack().unwrap();
}

fn tcp_ip(ip: Ip, sport: u16, dport: u16, flags: TcpFlags) -> Vec<u8> {
    frame(
        ANY_MAC,
        FRONT_MAC,
        &ip,
        &L4::Tcp {
            sport,
            dport,
            flags,
        },
        PAYLOAD,
    )
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: TcpFlags) -> Vec<u8> {
    tcp_ip(Ip::new(src, dst), sport, dport, flags)
}

fn udp_z(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, zero_csum: bool) -> Vec<u8> {
    frame(
        ANY_MAC,
        FRONT_MAC,
        &Ip::new(src, dst),
        &L4::Udp {
            sport,
            dport,
            zero_csum,
        },
        PAYLOAD,
    )
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    udp_z(src, sport, dst, dport, false)
}

/// A SYN from `src:sport` to the TCP service.
fn syn(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    tcp(src, sport, VIP, TCP_PORT, TcpFlags::SYN)
}

/// The frame as forwarded: new addresses/ports, TTL 63, next-hop MACs.
fn fwd(smac: [u8; 6], dmac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Vec<u8> {
    frame(smac, dmac, &Ip::new(src, dst).ttl(63), &l4, PAYLOAD)
}

/// The SYN of `sport` as it reaches backend `i` from the balancer's source.
fn syn_to_backend(i: usize, sport: u16) -> Vec<u8> {
    fwd(
        BACK_MAC,
        BACKENDS[i].1,
        SOURCE,
        BACKENDS[i].0,
        L4::Tcp {
            sport,
            dport: TCP_BACKEND_PORT,
            flags: TcpFlags::SYN,
        },
    )
}

fn step(h: &mut KonveyHarness, f: &[u8]) -> Step {
    h.step(f).unwrap()
}

fn expect(s: &Step, verdict: u32, stat: u32) {
    assert_eq!(
        (s.verdict, s.stat),
        (verdict, stat),
        "got counter {}",
        s.stat_name()
    );
}

fn expect_fwd(s: &Step, want: &[u8]) {
    expect(s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
    verify_checksums(&s.data).unwrap();
    assert_eq!(s.data, want, "forwarded frame differs");
}

/// A frame passed or dropped leaves the program untouched.
fn expect_untouched(s: &Step, input: &[u8], verdict: u32, stat: u32) {
    expect(s, verdict, stat);
    assert_eq!(s.data, input, "the frame was modified");
}

fn sport_of(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[34], f[35]])
}

fn daddr_of(f: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(f[30], f[31], f[32], f[33])
}

fn ct_state(h: &KonveyHarness, t: Tuple) -> u8 {
    let bpf = kowabunga_tests::harness_konvey::bpf_conntrack(&h.konvey).unwrap();
    let state = bpf
        .get(&t)
        .unwrap_or_else(|| panic!("no entry {t:?}"))
        .state;
    assert_eq!(Some(state), h.model.ct_get(&t).map(|e| e.state));
    state
}

// ---------------------------------------------------------------- L2 / L3

#[test]
fn unconfigured_program_passes_everything() {
    if !privileged("unconfigured_program_passes_everything") {
        return;
    }
    let mut h = KonveyHarness::unconfigured().unwrap();
    for f in [syn(C0, 40000), udp(C0, 40000, VIP, UDP_PORT), vec![0u8; 14]] {
        let s = step(&mut h, &f);
        expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NO_CONFIG);
    }
    // services programmed but no configuration: still everything passes
    h.set_service(tcp_service(), &rotation(TCP_BACKEND_PORT))
        .unwrap();
    let f = syn(C0, 40001);
    let s = step(&mut h, &f);
    expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NO_CONFIG);
    assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 0);
}

#[test]
fn arp_passes_to_kernel() {
    run("arp_passes_to_kernel", |h| {
        let mut arp = Vec::new();
        etherparse::PacketBuilder::ethernet2(ANY_MAC, [0xff; 6])
            .arp(
                etherparse::ArpPacket::new(
                    etherparse::ArpHardwareId::ETHERNET,
                    etherparse::EtherType::IPV4,
                    etherparse::ArpOperation::REQUEST,
                    &ANY_MAC,
                    &C0.octets(),
                    &[0; 6],
                    &VIP.octets(),
                )
                .unwrap(),
            )
            .write(&mut arp)
            .unwrap();
        let s = step(h, &arp);
        expect_untouched(&s, &arp, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_IPV4);
    });
}

#[test]
fn ipv6_passes_to_kernel() {
    run("ipv6_passes_to_kernel", |h| {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(ANY_MAC, FRONT_MAC)
            .ipv6(
                [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .tcp(40000, TCP_PORT, 1, 1000)
            .syn()
            .write(&mut f, PAYLOAD)
            .unwrap();
        let s = step(h, &f);
        expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_IPV4);
    });
}

#[test]
fn malformed_ipv4_is_dropped() {
    run("malformed_ipv4_is_dropped", |h| {
        let good = syn(C0, 40000);
        let truncated = good[..14 + 12].to_vec();
        let mut version = good.clone();
        version[14] = 0x65;
        let mut short_ihl = good.clone();
        short_ihl[14] = 0x44;
        let mut long_tot = good.clone();
        let tl = u16::from_be_bytes([good[16], good[17]]) + 40;
        long_tot[16..18].copy_from_slice(&tl.to_be_bytes());
        let mut tot_below_ihl = good.clone();
        tot_below_ihl[16..18].copy_from_slice(&16u16.to_be_bytes());
        for f in [truncated, version, short_ihl, long_tot, tot_below_ihl] {
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED);
        }
        assert_eq!(h.model.turns(&tcp_service()), Some(0));
    });
}

#[test]
fn truncated_l4_to_vip_is_dropped() {
    run("truncated_l4_to_vip_is_dropped", |h| {
        // 12 bytes of TCP, 4 bytes of UDP (then Ethernet padding): truncated
        let t = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip::new(C0, VIP),
            &L4::Raw { proto: 6 },
            &[0u8; 12],
        );
        let mut u = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip::new(C0, VIP),
            &L4::Raw { proto: 17 },
            &[0u8; 4],
        );
        u.extend_from_slice(&[0u8; 20]);
        // and to the balancer's source address
        let ts = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip::new(BACKENDS[0].0, SOURCE),
            &L4::Raw { proto: 6 },
            &[0u8; 19],
        );
        for f in [t, u, ts] {
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED_L4);
        }
    });
}

// ---------------------------------------------------------------- new flows

#[test]
fn tcp_new_flows_round_robin_across_three_backends() {
    run("tcp_new_flows_round_robin_across_three_backends", |h| {
        let before = h.counters().unwrap();
        for i in 0..9u16 {
            let sport = 40000 + i;
            let f = syn(C0, sport);
            let s = step(h, &f);
            // full NAT: source = balancer:sport (free, kept), destination = backend:8080
            expect_fwd(&s, &syn_to_backend(usize::from(i % 3), sport));
        }
        let delta = h.counters().unwrap().since(&before);
        assert_eq!(delta.packets(kw_stat::KW_STAT_FWD_REDIRECT), 9);
        assert_eq!(
            delta.get(kw_stat::KW_STAT_FWD_REDIRECT).bytes,
            9 * syn(C0, 40000).len() as u64
        );
        assert_eq!(h.model.turns(&tcp_service()), Some(9));
        let flows = h.konvey.flows_by_backend().unwrap();
        for b in rotation(TCP_BACKEND_PORT) {
            assert_eq!(flows.get(&b), Some(&3), "{b}: {flows:?}");
        }
        // each flow: two entries, new, full-NAT flags
        assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 18);
        let orig = Tuple::new(6, C0, 40000, VIP, TCP_PORT);
        assert_eq!(ct_state(h, orig), CT_NEW);
    });
}

#[test]
fn udp_new_flows_round_robin_across_three_backends() {
    run("udp_new_flows_round_robin_across_three_backends", |h| {
        for i in 0..6u16 {
            let sport = 50000 + i;
            let (src, _) = CLIENTS[usize::from(i % 2)];
            let s = step(h, &udp(src, sport, VIP, UDP_PORT));
            let b = usize::from(i % 3);
            expect_fwd(
                &s,
                &fwd(
                    BACK_MAC,
                    BACKENDS[b].1,
                    SOURCE,
                    BACKENDS[b].0,
                    L4::Udp {
                        sport,
                        dport: UDP_BACKEND_PORT,
                        zero_csum: false,
                    },
                ),
            );
        }
        // the TCP service's counter is its own
        assert_eq!(h.model.turns(&udp_service()), Some(6));
        assert_eq!(h.model.turns(&tcp_service()), Some(0));
        let s = step(h, &syn(C0, 40000));
        expect_fwd(&s, &syn_to_backend(0, 40000));
    });
}

#[test]
fn tcp_reply_is_translated_back_to_the_client() {
    run("tcp_reply_is_translated_back_to_the_client", |h| {
        expect_fwd(&step(h, &syn(C1, 41000)), &syn_to_backend(0, 41000));
        // backend 0 answers the balancer
        let reply = tcp(
            BACKENDS[0].0,
            TCP_BACKEND_PORT,
            SOURCE,
            41000,
            TcpFlags::SYN_ACK,
        );
        let s = step(h, &reply);
        let want = fwd(
            FRONT_MAC,
            C1_MAC,
            VIP,
            C1,
            L4::Tcp {
                sport: TCP_PORT,
                dport: 41000,
                flags: TcpFlags::SYN_ACK,
            },
        );
        expect_fwd(&s, &want);
        let orig = Tuple::new(6, C1, 41000, VIP, TCP_PORT);
        let rep = Tuple::new(6, BACKENDS[0].0, TCP_BACKEND_PORT, SOURCE, 41000);
        assert_eq!(ct_state(h, orig), CT_ESTABLISHED);
        assert_eq!(ct_state(h, rep), CT_ESTABLISHED);
        // the client's ACK with data follows the flow
        let s = step(h, &tcp(C1, 41000, VIP, TCP_PORT, TcpFlags::PSH_ACK));
        expect_fwd(
            &s,
            &fwd(
                BACK_MAC,
                BACKENDS[0].1,
                SOURCE,
                BACKENDS[0].0,
                L4::Tcp {
                    sport: 41000,
                    dport: TCP_BACKEND_PORT,
                    flags: TcpFlags::PSH_ACK,
                },
            ),
        );
        let orig_entry = h.model.ct_get(&orig).unwrap();
        assert_eq!(orig_entry.packets, 2);
    });
}

#[test]
fn udp_reply_to_a_remote_client_goes_through_the_router() {
    run(
        "udp_reply_to_a_remote_client_goes_through_the_router",
        |h| {
            step(h, &udp(REMOTE_CLIENT, 33000, VIP, UDP_PORT));
            let s = step(h, &udp(BACKENDS[0].0, UDP_BACKEND_PORT, SOURCE, 33000));
            expect_fwd(
                &s,
                &fwd(
                    FRONT_MAC,
                    ROUTER_MAC,
                    VIP,
                    REMOTE_CLIENT,
                    L4::Udp {
                        sport: UDP_PORT,
                        dport: 33000,
                        zero_csum: false,
                    },
                ),
            );
        },
    );
}

#[test]
fn established_flows_stay_on_their_backend_after_a_rotation_change() {
    run(
        "established_flows_stay_on_their_backend_after_a_rotation_change",
        |h| {
            for i in 0..3u16 {
                expect_fwd(
                    &step(h, &syn(C0, 42000 + i)),
                    &syn_to_backend(usize::from(i), 42000 + i),
                );
            }
            // new order, backend 0 first again, counter kept (turn 3)
            let new_rotation = vec![
                backend(2, TCP_BACKEND_PORT),
                backend(0, TCP_BACKEND_PORT),
                backend(1, TCP_BACKEND_PORT),
            ];
            h.set_service(tcp_service(), &new_rotation).unwrap();
            for i in 0..3u16 {
                let s = step(h, &tcp(C0, 42000 + i, VIP, TCP_PORT, TcpFlags::ACK));
                assert_eq!(daddr_of(&s.data), BACKENDS[usize::from(i)].0);
                expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            }
            // the round-robin goes on from turn 3: 3 % 3 = 0 -> backend 2
            expect_fwd(&step(h, &syn(C0, 42010)), &syn_to_backend(2, 42010));
            expect_fwd(&step(h, &syn(C0, 42011)), &syn_to_backend(0, 42011));
        },
    );
}

#[test]
fn a_backend_left_out_of_the_rotation_drains() {
    run("a_backend_left_out_of_the_rotation_drains", |h| {
        for i in 0..3u16 {
            step(h, &syn(C0, 43000 + i));
        }
        // backend 1 leaves: its flow (43001) goes on, in both directions
        h.set_service(
            tcp_service(),
            &[backend(0, TCP_BACKEND_PORT), backend(2, TCP_BACKEND_PORT)],
        )
        .unwrap();
        let s = step(h, &tcp(C0, 43001, VIP, TCP_PORT, TcpFlags::PSH_ACK));
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        assert_eq!(daddr_of(&s.data), BACKENDS[1].0);
        let s = step(
            h,
            &tcp(
                BACKENDS[1].0,
                TCP_BACKEND_PORT,
                SOURCE,
                43001,
                TcpFlags::PSH_ACK,
            ),
        );
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        assert_eq!(&s.data[0..6], &C0_MAC);
        // new flows never reach it
        for i in 0..6u16 {
            let s = step(h, &syn(C0, 43100 + i));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert_ne!(daddr_of(&s.data), BACKENDS[1].0);
        }
        let flows = h.konvey.flows_by_backend().unwrap();
        assert_eq!(flows.get(&backend(1, TCP_BACKEND_PORT)), Some(&1));
        assert_eq!(flows.get(&backend(0, TCP_BACKEND_PORT)), Some(&4));
        assert_eq!(flows.get(&backend(2, TCP_BACKEND_PORT)), Some(&4));
    });
}

#[test]
fn empty_rotation_drops_new_flows_without_taking_a_turn() {
    run(
        "empty_rotation_drops_new_flows_without_taking_a_turn",
        |h| {
            step(h, &syn(C0, 44000)); // backend 0, turn 0
            h.set_service(tcp_service(), &[]).unwrap();
            // the established flow goes on
            let s = step(h, &tcp(C0, 44000, VIP, TCP_PORT, TcpFlags::ACK));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            for i in 1..4u16 {
                let f = syn(C0, 44000 + i);
                let s = step(h, &f);
                expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_NO_BACKEND);
            }
            assert_eq!(h.model.turns(&tcp_service()), Some(1));
            h.set_service(tcp_service(), &rotation(TCP_BACKEND_PORT))
                .unwrap();
            expect_fwd(&step(h, &syn(C0, 44010)), &syn_to_backend(1, 44010));
        },
    );
}

#[test]
fn vip_port_without_service_is_dropped() {
    run("vip_port_without_service_is_dropped", |h| {
        for f in [
            tcp(C0, 40000, VIP, 81, TcpFlags::SYN),
            // a service is (VIP, protocol, port): no UDP service on 80, no TCP on 53
            udp(C0, 40000, VIP, TCP_PORT),
            tcp(C0, 40000, VIP, UDP_PORT, TcpFlags::SYN),
            // the UDP port of the other VIP
            udp(C0, 40000, VIP, UDP2_PORT),
            tcp(C0, 40000, VIP, 81, TcpFlags::ACK),
        ] {
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_NO_SERVICE);
        }
    });
}

#[test]
fn new_tcp_flow_without_a_bare_syn_is_dropped_without_taking_a_turn() {
    run(
        "new_tcp_flow_without_a_bare_syn_is_dropped_without_taking_a_turn",
        |h| {
            // five of them: a turn taken by each would move the next SYN
            // off backend 0 (5 % 3 = 2)
            for flags in [
                TcpFlags::ACK,
                TcpFlags::SYN_ACK,
                TcpFlags::FIN_ACK,
                TcpFlags::RST,
                TcpFlags {
                    syn: true,
                    fin: true,
                    ..TcpFlags::default()
                },
            ] {
                let f = tcp(C0, 45000, VIP, TCP_PORT, flags);
                let s = step(h, &f);
                expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_TCP_NOT_SYN);
            }
            assert_eq!(h.model.turns(&tcp_service()), Some(0));
            // SYN with PSH (not one of the four flags checked) is a SYN
            let psh_syn = TcpFlags {
                syn: true,
                psh: true,
                ..TcpFlags::default()
            };
            let s = step(h, &tcp(C0, 45000, VIP, TCP_PORT, psh_syn));
            expect_fwd(
                &s,
                &fwd(
                    BACK_MAC,
                    BACKENDS[0].1,
                    SOURCE,
                    BACKENDS[0].0,
                    L4::Tcp {
                        sport: 45000,
                        dport: TCP_BACKEND_PORT,
                        flags: psh_syn,
                    },
                ),
            );
        },
    );
}

// ------------------------------------------------------- other traffic

#[test]
fn icmp_and_other_protocols_to_a_vip_go_to_the_host() {
    run("icmp_and_other_protocols_to_a_vip_go_to_the_host", |h| {
        for l4 in [
            L4::Echo {
                request: true,
                id: 7,
                seq: 1,
            },
            L4::IcmpError {
                kind: port_unreachable(),
                quoted: syn(VIP, 80)[14..14 + 28].to_vec(),
            },
            L4::Raw { proto: 47 },
        ] {
            for dst in [VIP, VIP2] {
                let f = frame(ANY_MAC, FRONT_MAC, &Ip::new(C0, dst), &l4, PAYLOAD);
                let s = step(h, &f);
                expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
            }
        }
        // ICMP to the source address: not ours either
        let f = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip::new(BACKENDS[0].0, SOURCE),
            &L4::Echo {
                request: false,
                id: 7,
                seq: 1,
            },
            PAYLOAD,
        );
        let s = step(h, &f);
        expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_OURS);
    });
}

#[test]
fn traffic_neither_for_a_vip_nor_the_source_passes() {
    run("traffic_neither_for_a_vip_nor_the_source_passes", |h| {
        let other_vip = Ipv4Addr::new(10, 20, 0, 102);
        for f in [
            tcp(C0, 40000, FRONT_ADDR, TCP_PORT, TcpFlags::SYN),
            tcp(C0, 40000, other_vip, TCP_PORT, TcpFlags::SYN),
            udp(C0, 40000, BACKENDS[0].0, UDP_BACKEND_PORT),
            tcp(
                BACKENDS[1].0,
                TCP_BACKEND_PORT,
                C1,
                40000,
                TcpFlags::SYN_ACK,
            ),
            udp(C0, 40000, Ipv4Addr::new(255, 255, 255, 255), 67),
        ] {
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_OURS);
        }
    });
}

#[test]
fn untracked_traffic_to_the_source_address_passes() {
    run("untracked_traffic_to_the_source_address_passes", |h| {
        // a flow exists on port 46000; health-check replies use other tuples
        step(h, &syn(C0, 46000));
        for f in [
            tcp(
                BACKENDS[0].0,
                TCP_BACKEND_PORT,
                SOURCE,
                33333,
                TcpFlags::SYN_ACK,
            ),
            tcp(
                BACKENDS[1].0,
                TCP_BACKEND_PORT,
                SOURCE,
                46000,
                TcpFlags::SYN_ACK,
            ),
            tcp(BACKENDS[0].0, 22, SOURCE, 46000, TcpFlags::ACK),
            udp(BACKENDS[2].0, UDP_BACKEND_PORT, SOURCE, 33334),
            // and a SYN to it (the host's own services)
            tcp(C0, 40000, SOURCE, 22, TcpFlags::SYN),
        ] {
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_OURS);
        }
        assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 2);
    });
}

#[test]
fn fragments_and_ip_options_to_a_vip_are_dropped() {
    run("fragments_and_ip_options_to_a_vip_are_dropped", |h| {
        let l4 = L4::Tcp {
            sport: 47000,
            dport: TCP_PORT,
            flags: TcpFlags::SYN,
        };
        let mut opts = Ip::new(C0, VIP);
        opts.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
        let f = frame(ANY_MAC, FRONT_MAC, &opts, &l4, PAYLOAD);
        let s = step(h, &f);
        expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_IP_OPTIONS);
        let mut first = Ip::new(C0, VIP);
        first.df = false;
        first.mf = true;
        let mut later = Ip::new(C0, VIP);
        later.df = false;
        later.frag_offset = 185;
        for ip in [first, later] {
            let f = frame(ANY_MAC, FRONT_MAC, &ip, &l4, PAYLOAD);
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_FRAGMENT);
        }
        // a fragment of an established flow is dropped too
        step(h, &syn(C0, 47001));
        let mut frag = Ip::new(C0, VIP);
        frag.df = false;
        frag.mf = true;
        let f = tcp_ip(frag, 47001, TCP_PORT, TcpFlags::ACK);
        let s = step(h, &f);
        expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_FRAGMENT);
        assert_eq!(h.model.turns(&tcp_service()), Some(1));
    });
}

#[test]
fn fragments_and_ip_options_to_the_source_pass() {
    run("fragments_and_ip_options_to_the_source_pass", |h| {
        step(h, &syn(C0, 48000));
        // even with the tuple of a tracked reply: the kernel's business
        let mut frag = Ip::new(BACKENDS[0].0, SOURCE);
        frag.df = false;
        frag.mf = true;
        let mut later = Ip::new(BACKENDS[0].0, SOURCE);
        later.df = false;
        later.frag_offset = 3;
        let mut opts = Ip::new(BACKENDS[0].0, SOURCE);
        opts.options = vec![1, 1, 1, 0];
        for ip in [frag, later, opts] {
            let f = tcp_ip(ip, TCP_BACKEND_PORT, 48000, TcpFlags::SYN_ACK);
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_OURS);
        }
        let orig = Tuple::new(6, C0, 48000, VIP, TCP_PORT);
        assert_eq!(ct_state(h, orig), CT_NEW);
    });
}

#[test]
fn ttl_expiring_is_dropped_and_counted() {
    run("ttl_expiring_is_dropped_and_counted", |h| {
        // the destination (the VIP) is translated: untranslated, the kernel
        // would deliver it to the balancer itself, so it fails closed
        for ttl in [0u8, 1] {
            let f = tcp_ip(Ip::new(C0, VIP).ttl(ttl), 49000, TCP_PORT, TcpFlags::SYN);
            let s = step(h, &f);
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_TTL);
        }
        // no turn taken, no flow made
        assert_eq!(h.model.turns(&tcp_service()), Some(0));
        assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 0);
        // TTL 2 is forwarded with TTL 1
        let f = tcp_ip(Ip::new(C0, VIP).ttl(2), 49000, TCP_PORT, TcpFlags::SYN);
        let s = step(h, &f);
        let want = frame(
            BACK_MAC,
            BACKENDS[0].1,
            &Ip::new(SOURCE, BACKENDS[0].0).ttl(1),
            &L4::Tcp {
                sport: 49000,
                dport: TCP_BACKEND_PORT,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        expect_fwd(&s, &want);
        // an established packet with TTL 1 too (and is counted in the flow)
        let f = tcp_ip(
            Ip::new(BACKENDS[0].0, SOURCE).ttl(1),
            TCP_BACKEND_PORT,
            49000,
            TcpFlags::SYN_ACK,
        );
        let s = step(h, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_TTL);
        let rep = Tuple::new(6, BACKENDS[0].0, TCP_BACKEND_PORT, SOURCE, 49000);
        assert_eq!(h.model.ct_get(&rep).unwrap().packets, 1);
        assert_eq!(ct_state(h, rep), CT_ESTABLISHED);
    });
}

// ------------------------------------------------------- ports and checksums

#[test]
fn source_port_is_kept_when_free_and_reallocated_on_collision() {
    run_with(
        "source_port_is_kept_when_free_and_reallocated_on_collision",
        net::config(),
        &[(tcp_service(), vec![backend(0, TCP_BACKEND_PORT)])],
        |h| {
            expect_fwd(&step(h, &syn(C0, 40000)), &syn_to_backend(0, 40000));
            // same source port, same backend: SOURCE:40000 -> backend is taken
            let s = step(h, &syn(C1, 40000));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            let port = sport_of(&s.data);
            assert_ne!(port, 40000);
            assert!(port >= 1024);
            expect_fwd(&s, &syn_to_backend(0, port));
            // each reply goes back to its own client
            for (client, mac, nat_port) in [(C0, C0_MAC, 40000), (C1, C1_MAC, port)] {
                let s = step(
                    h,
                    &tcp(
                        BACKENDS[0].0,
                        TCP_BACKEND_PORT,
                        SOURCE,
                        nat_port,
                        TcpFlags::SYN_ACK,
                    ),
                );
                expect_fwd(
                    &s,
                    &fwd(
                        FRONT_MAC,
                        mac,
                        VIP,
                        client,
                        L4::Tcp {
                            sport: TCP_PORT,
                            dport: 40000,
                            flags: TcpFlags::SYN_ACK,
                        },
                    ),
                );
            }
            // a port below the range is always reallocated into it
            let s = step(h, &syn(C0, 80));
            let p = sport_of(&s.data);
            assert!(p >= 1024, "{p}");
        },
    );
}

#[test]
fn exhausted_port_range_drops_but_the_turn_is_used() {
    let cfg = KonveyConfig {
        port_min: 40000,
        port_max: 40000,
        ..net::config()
    };
    let r = vec![
        backend(0, TCP_BACKEND_PORT),
        backend(0, TCP_BACKEND_PORT),
        backend(1, TCP_BACKEND_PORT),
    ];
    run_with(
        "exhausted_port_range_drops_but_the_turn_is_used",
        cfg,
        &[(tcp_service(), r)],
        |h| {
            expect_fwd(&step(h, &syn(C0, 40000)), &syn_to_backend(0, 40000));
            let f = syn(C1, 40000);
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_NO_PORT);
            // the failed flow used turn 1: the next one is turn 2, backend 1
            expect_fwd(&step(h, &syn(C1, 40001)), &syn_to_backend(1, 40000));
            assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 4);
        },
    );
}

/// Several source addresses: a flow takes the one its hash points at, or
/// the next whose port space towards its backend is not full; with one port
/// per address and one backend, two flows fit and a third is dropped.
#[test]
fn several_sources_multiply_the_ports_per_backend() {
    let [s2, _] = net::SOURCES_MORE;
    let cfg = KonveyConfig {
        sources: vec![SOURCE, s2],
        port_min: 40000,
        port_max: 40000,
        ..net::config()
    };
    run_with(
        "several_sources_multiply_the_ports_per_backend",
        cfg,
        &[(tcp_service(), vec![backend(0, TCP_BACKEND_PORT)])],
        |h| {
            let src_of = |f: &[u8]| Ipv4Addr::new(f[26], f[27], f[28], f[29]);
            let mut flows = Vec::new();
            for (client, sport) in [(C0, 40000), (C1, 40000), (C0, 40001)] {
                // a flow whose hashed source turns out full is dropped once
                // (and the space marked); its retransmission takes the other
                let mut s = step(h, &syn(client, sport));
                if s.verdict == XDP_DROP {
                    assert_eq!(s.stat, kw_stat::KW_STAT_DROP_NO_PORT);
                    s = step(h, &syn(client, sport));
                }
                if s.verdict == XDP_REDIRECT {
                    assert_eq!(sport_of(&s.data), 40000);
                    flows.push((src_of(&s.data), client, sport));
                } else {
                    expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_NO_PORT);
                }
            }
            flows.sort();
            let sources: Vec<_> = flows.iter().map(|f| f.0).collect();
            assert_eq!(sources, [SOURCE, s2], "one flow per source address");
            // replies to either address find their client
            for (source, client, sport) in flows {
                let s = step(
                    h,
                    &tcp(
                        BACKENDS[0].0,
                        TCP_BACKEND_PORT,
                        source,
                        40000,
                        TcpFlags::SYN_ACK,
                    ),
                );
                expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
                assert_eq!(daddr_of(&s.data), client, "reply to {source}");
                assert_eq!(
                    u16::from_be_bytes([s.data[36], s.data[37]]),
                    sport,
                    "reply to {source}"
                );
            }
            assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 4);
        },
    );
}

/// Per-backend counters (kv_backend_stats): a new flow and every packet of
/// it, both directions, count for its backend; a backend that joins the
/// rotation starts at zero and the others keep their counts.
#[test]
fn backend_counters_count_new_flows_and_both_directions() {
    run_with(
        "backend_counters_count_new_flows_and_both_directions",
        net::config(),
        &[(tcp_service(), vec![backend(0, TCP_BACKEND_PORT)])],
        |h| {
            let b0 = backend(0, TCP_BACKEND_PORT);
            let b1 = backend(1, TCP_BACKEND_PORT);
            let counter = |h: &KonveyHarness, b: Backend| {
                h.konvey
                    .backend_counters()
                    .unwrap()
                    .into_iter()
                    .find(|(k, be, _)| *k == tcp_service() && *be == b)
                    .map(|(_, _, c)| c)
            };
            let first = syn(C0, 41000);
            expect_fwd(&step(h, &first), &syn_to_backend(0, 41000));
            let reply = tcp(
                BACKENDS[0].0,
                TCP_BACKEND_PORT,
                SOURCE,
                41000,
                TcpFlags::SYN_ACK,
            );
            expect(
                &step(h, &reply),
                XDP_REDIRECT,
                kw_stat::KW_STAT_FWD_REDIRECT,
            );
            let ack = tcp(C0, 41000, VIP, TCP_PORT, TcpFlags::ACK);
            expect(&step(h, &ack), XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            let c = counter(h, b0).expect("backend 0 in the rotation");
            assert_eq!((c.new_flows, c.packets), (1, 3));
            assert_eq!(c.bytes, (first.len() + reply.len() + ack.len()) as u64);
            // a packet that is dropped counts for no backend
            expect(
                &step(h, &tcp(C1, 41001, VIP, TCP_PORT, TcpFlags::ACK)),
                XDP_DROP,
                kw_stat::KW_STAT_DROP_TCP_NOT_SYN,
            );
            h.set_service(tcp_service(), &[b1, b0]).unwrap();
            assert_eq!(counter(h, b0), Some(c), "b0 keeps its counts");
            let c1 = counter(h, b1).expect("backend 1 joined");
            assert_eq!((c1.new_flows, c1.packets, c1.bytes), (0, 0, 0));
            // the established flow still counts for b0
            expect(&step(h, &ack), XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert_eq!(counter(h, b0).unwrap().packets, 4);
        },
    );
}

#[test]
fn udp_without_checksum_stays_without() {
    run("udp_without_checksum_stays_without", |h| {
        let s = step(h, &udp_z(C0, 51000, VIP, UDP_PORT, true));
        let want = fwd(
            BACK_MAC,
            BACKENDS[0].1,
            SOURCE,
            BACKENDS[0].0,
            L4::Udp {
                sport: 51000,
                dport: UDP_BACKEND_PORT,
                zero_csum: true,
            },
        );
        expect_fwd(&s, &want);
        assert_eq!(&s.data[40..42], &[0, 0]);
        let s = step(
            h,
            &udp_z(BACKENDS[0].0, UDP_BACKEND_PORT, SOURCE, 51000, true),
        );
        let want = fwd(
            FRONT_MAC,
            C0_MAC,
            VIP,
            C0,
            L4::Udp {
                sport: UDP_PORT,
                dport: 51000,
                zero_csum: true,
            },
        );
        expect_fwd(&s, &want);
        assert_eq!(&s.data[40..42], &[0, 0]);
    });
}

#[test]
fn ethernet_padding_is_carried_untouched() {
    run("ethernet_padding_is_carried_untouched", |h| {
        let mut f = udp(C0, 52000, VIP, UDP_PORT);
        f.extend_from_slice(&[0xee; 6]);
        let s = step(h, &f);
        let mut want = fwd(
            BACK_MAC,
            BACKENDS[0].1,
            SOURCE,
            BACKENDS[0].0,
            L4::Udp {
                sport: 52000,
                dport: UDP_BACKEND_PORT,
                zero_csum: false,
            },
        );
        want.extend_from_slice(&[0xee; 6]);
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        assert_eq!(s.data, want);
    });
}

// ------------------------------------------------------- flow life cycle

#[test]
fn fin_and_rst_move_the_flow_to_closing() {
    run("fin_and_rst_move_the_flow_to_closing", |h| {
        for (sport, closer) in [(53000u16, TcpFlags::FIN_ACK), (53001, TcpFlags::RST)] {
            step(h, &syn(C0, sport));
            let b = BACKENDS[usize::from(sport - 53000)].0;
            step(
                h,
                &tcp(b, TCP_BACKEND_PORT, SOURCE, sport, TcpFlags::SYN_ACK),
            );
            let orig = Tuple::new(6, C0, sport, VIP, TCP_PORT);
            let rep = Tuple::new(6, b, TCP_BACKEND_PORT, SOURCE, sport);
            assert_eq!(ct_state(h, orig), CT_ESTABLISHED);
            let s = step(h, &tcp(C0, sport, VIP, TCP_PORT, closer));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert_eq!(ct_state(h, orig), CT_CLOSING);
            assert_eq!(ct_state(h, rep), CT_CLOSING);
            // the last ACK still flows, and the state stays closing
            let s = step(h, &tcp(b, TCP_BACKEND_PORT, SOURCE, sport, TcpFlags::ACK));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert_eq!(ct_state(h, rep), CT_CLOSING);
        }
    });
}

#[test]
fn removing_a_service_keeps_its_flows_while_the_vip_lives() {
    run(
        "removing_a_service_keeps_its_flows_while_the_vip_lives",
        |h| {
            step(h, &udp(C0, 54000, VIP, UDP_PORT));
            h.remove_service(udp_service()).unwrap();
            // the VIP still has its TCP service: the flow's translation holds
            let s = step(h, &udp(C0, 54000, VIP, UDP_PORT));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            let s = step(h, &udp(BACKENDS[0].0, UDP_BACKEND_PORT, SOURCE, 54000));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            // new flows of the removed service: no service
            let f = udp(C0, 54001, VIP, UDP_PORT);
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_NO_SERVICE);
            // re-added, it starts its round-robin at the first backend again
            h.set_service(udp_service(), &rotation(UDP_BACKEND_PORT))
                .unwrap();
            let s = step(h, &udp(C0, 54002, VIP, UDP_PORT));
            assert_eq!(daddr_of(&s.data), BACKENDS[0].0);
        },
    );
}

#[test]
fn removing_the_last_service_of_a_vip_drains_it_then_hands_it_to_the_host() {
    run(
        "removing_the_last_service_of_a_vip_drains_it_then_hands_it_to_the_host",
        |h| {
            let first = step(h, &udp(C0, 55000, VIP2, UDP2_PORT));
            expect(&first, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            h.remove_service(udp2_service()).unwrap();
            assert_eq!(h.konvey.vips().unwrap().get(&VIP2), Some(&0));
            // the live flow goes on both ways
            let s = step(h, &udp(C0, 55000, VIP2, UDP2_PORT));
            expect_fwd(&s, &first.data);
            let s = step(h, &udp(BACKENDS[0].0, UDP_BACKEND_PORT, SOURCE, 55000));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert_eq!(&s.data[26..30], &VIP2.octets());
            // a new flow to the draining VIP has no service; ping is the host's
            let f = udp(C0, 55001, VIP2, UDP2_PORT);
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_DROP, kw_stat::KW_STAT_DROP_NO_SERVICE);
            let ping = frame(
                ANY_MAC,
                FRONT_MAC,
                &Ip::new(C0, VIP2),
                &L4::Echo {
                    request: true,
                    id: 1,
                    seq: 1,
                },
                PAYLOAD,
            );
            let s = step(h, &ping);
            expect_untouched(&s, &ping, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
            // while the flow lives, a purge keeps the VIP
            assert!(h.purge_drained_vips().unwrap().is_empty());
            // once its flows are gone (swept), the VIP goes to the host
            let far = kowabunga_dataplane::monotonic_now_ns() + 3 * 3_600_000_000_000;
            h.konvey.sweep(far).unwrap();
            h.model.expire_all_flows();
            assert!(kowabunga_tests::harness_konvey::bpf_conntrack(&h.konvey)
                .unwrap()
                .is_empty());
            assert_eq!(h.purge_drained_vips().unwrap(), vec![VIP2]);
            assert_eq!(h.konvey.vips().unwrap().get(&VIP2), None);
            let f = udp(C0, 55002, VIP2, UDP2_PORT);
            let s = step(h, &f);
            expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_OURS);
        },
    );
}

#[test]
fn unresolved_backend_neighbour_goes_to_the_kernel_translated() {
    run(
        "unresolved_backend_neighbour_goes_to_the_kernel_translated",
        |h| {
            // VIP2:5000 rotates over backend 0 and a backend without neighbour
            step(h, &udp(C0, 56000, VIP2, UDP2_PORT));
            let f = udp(C0, 56001, VIP2, UDP2_PORT);
            let s = step(h, &f);
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_NO_NEIGH);
            // translated, but TTL and MACs are the kernel's to set
            let want = frame(
                ANY_MAC,
                FRONT_MAC,
                &Ip::new(SOURCE, BACKEND_NO_NEIGH),
                &L4::Udp {
                    sport: 56001,
                    dport: UDP_BACKEND_PORT,
                    zero_csum: false,
                },
                PAYLOAD,
            );
            verify_checksums(&s.data).unwrap();
            assert_eq!(s.data, want);
            let flows = h.konvey.flows_by_backend().unwrap();
            assert_eq!(
                flows.get(&Backend {
                    addr: BACKEND_NO_NEIGH,
                    port: UDP_BACKEND_PORT
                }),
                Some(&1)
            );
        },
    );
}

#[test]
fn same_client_port_on_two_vips_makes_two_flows() {
    run("same_client_port_on_two_vips_makes_two_flows", |h| {
        let s1 = step(h, &udp(C0, 57000, VIP, UDP_PORT));
        let s2 = step(h, &udp(C0, 57000, VIP2, UDP2_PORT));
        expect(&s1, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        expect(&s2, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        // both to backend 0 on 5353 from SOURCE: the second needs another port
        assert_eq!(sport_of(&s1.data), 57000);
        assert_ne!(sport_of(&s2.data), 57000);
        let s = step(
            h,
            &udp(BACKENDS[0].0, UDP_BACKEND_PORT, SOURCE, sport_of(&s2.data)),
        );
        expect_fwd(
            &s,
            &fwd(
                FRONT_MAC,
                C0_MAC,
                VIP2,
                C0,
                L4::Udp {
                    sport: UDP2_PORT,
                    dport: 57000,
                    zero_csum: false,
                },
            ),
        );
        assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 4);
    });
}

#[test]
fn oversized_packets_fail_closed_or_cross_fragmented() {
    run("oversized_packets_fail_closed_or_cross_fragmented", |h| {
        // above the backend link's MTU with DF set: the destination is
        // translated, so it cannot go to the kernel untranslated: dropped and
        // counted; the flow is made all the same
        let f = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip::new(C0, VIP),
            &L4::Udp {
                sport: 58000,
                dport: UDP_PORT,
                zero_csum: false,
            },
            &[7u8; 1500],
        );
        let s = step(h, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_FIB);
        assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 2);
        // DF clear: translated, then the kernel fragments it (as Linux NAT)
        let f = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip {
                df: false,
                ..Ip::new(C0, VIP)
            },
            &L4::Udp {
                sport: 58001,
                dport: UDP_PORT,
                zero_csum: false,
            },
            &[7u8; 1500],
        );
        let s = step(h, &f);
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_FRAGMENT);
        let ip = &s.data[14..34];
        assert_eq!(ip[12..16], SOURCE.octets(), "source translated");
        assert!(
            BACKENDS.iter().any(|b| ip[16..20] == b.0.octets()),
            "destination translated to a backend: {:?}",
            &ip[16..20]
        );
        assert_eq!(ip[8], 64, "TTL left to the kernel");
        assert_eq!(h.konvey.conntrack_entries().unwrap().len(), 4);
    });
}

#[test]
fn a_tcp_service_and_a_udp_service_share_a_port_number_apart() {
    let both = vec![
        (tcp_service(), rotation(TCP_BACKEND_PORT)),
        (
            ServiceKey {
                vip: VIP,
                proto: Proto::Udp,
                port: TCP_PORT,
            },
            vec![backend(2, UDP_BACKEND_PORT)],
        ),
    ];
    run_with(
        "a_tcp_service_and_a_udp_service_share_a_port_number_apart",
        net::config(),
        &both,
        |h| {
            let s = step(h, &udp(C0, 59000, VIP, TCP_PORT));
            expect_fwd(
                &s,
                &fwd(
                    BACK_MAC,
                    BACKENDS[2].1,
                    SOURCE,
                    BACKENDS[2].0,
                    L4::Udp {
                        sport: 59000,
                        dport: UDP_BACKEND_PORT,
                        zero_csum: false,
                    },
                ),
            );
            expect_fwd(&step(h, &syn(C0, 59000)), &syn_to_backend(0, 59000));
        },
    );
}

#[test]
fn a_backend_can_be_a_client_of_its_own_service() {
    run("a_backend_can_be_a_client_of_its_own_service", |h| {
        // hairpin: turn 0 sends backend 0's own connection back to it; full
        // NAT makes the reply come back through the balancer
        let (b0, b0_mac) = BACKENDS[0];
        let s = step(h, &syn(b0, 60000));
        expect_fwd(&s, &syn_to_backend(0, 60000));
        let s = step(
            h,
            &tcp(b0, TCP_BACKEND_PORT, SOURCE, 60000, TcpFlags::SYN_ACK),
        );
        expect_fwd(
            &s,
            &fwd(
                BACK_MAC,
                b0_mac,
                VIP,
                b0,
                L4::Tcp {
                    sport: TCP_PORT,
                    dport: 60000,
                    flags: TcpFlags::SYN_ACK,
                },
            ),
        );
    });
}

/// `frame`'s IPv4 packet (header and the first 8 bytes of L4) as an ICMP
/// error quotes it, with the TTL it had after one hop (63).
fn quoted_after_one_hop(frame: &[u8]) -> Vec<u8> {
    let mut q = ip_packet(frame)[..28].to_vec();
    let ck = replace2(
        u16::from_be_bytes([q[10], q[11]]),
        u16::from_be_bytes([q[8], q[9]]),
        u16::from_be_bytes([63, q[9]]),
    );
    q[8] = 63;
    q[10..12].copy_from_slice(&ck.to_be_bytes());
    q
}

#[test]
fn icmp_errors_about_flows_are_translated_both_ways() {
    run("icmp_errors_about_flows_are_translated_both_ways", |h| {
        // a UDP flow client -> backend 0, and the backend's reply
        let request = udp(C0, 61000, VIP, UDP_PORT);
        let to_backend = step(h, &request);
        expect(&to_backend, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        let reply = udp(BACKENDS[0].0, UDP_BACKEND_PORT, SOURCE, 61000);
        let to_client = step(h, &reply);
        expect(&to_client, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);

        // the backend itself says port unreachable about what it received:
        // the client hears it from the VIP, about the packet it sent
        let err = frame(
            ANY_MAC,
            BACK_MAC,
            &Ip::new(BACKENDS[0].0, SOURCE),
            &L4::IcmpError {
                kind: port_unreachable(),
                quoted: ip_packet(&to_backend.data)[..28].to_vec(),
            },
            &[],
        );
        let want = frame(
            FRONT_MAC,
            C0_MAC,
            &Ip::new(VIP, C0).ttl(63),
            &L4::IcmpError {
                kind: port_unreachable(),
                quoted: quoted_after_one_hop(&request),
            },
            &[],
        );
        expect_fwd(&step(h, &err), &want);

        // a router on the client's side says fragmentation needed about the
        // reply: the backend hears it from the router, about its own packet
        let router = Ipv4Addr::new(192, 0, 2, 1);
        let err = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip::new(router, VIP),
            &L4::IcmpError {
                kind: frag_needed(1400),
                quoted: ip_packet(&to_client.data)[..28].to_vec(),
            },
            &[],
        );
        let want = frame(
            BACK_MAC,
            BACKENDS[0].1,
            &Ip::new(router, BACKENDS[0].0).ttl(63),
            &L4::IcmpError {
                kind: frag_needed(1400),
                quoted: quoted_after_one_hop(&reply),
            },
            &[],
        );
        expect_fwd(&step(h, &err), &want);
    });
}

#[test]
fn icmp_errors_about_no_flow_go_to_the_host() {
    run("icmp_errors_about_no_flow_go_to_the_host", |h| {
        // a UDP health check's port unreachable: the host's own socket needs it
        let probe = udp(SOURCE, 50000, BACKENDS[1].0, UDP_BACKEND_PORT);
        let f = frame(
            ANY_MAC,
            BACK_MAC,
            &Ip::new(BACKENDS[1].0, SOURCE),
            &L4::IcmpError {
                kind: port_unreachable(),
                quoted: ip_packet(&probe)[..28].to_vec(),
            },
            &[],
        );
        let s = step(h, &f);
        expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_OURS);
        // an error to the VIP about nothing we track, and a truncated one
        let quoted = udp(VIP, UDP_PORT, C0, 61000)[14..14 + 28].to_vec();
        let f = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip::new(C0, VIP),
            &L4::IcmpError {
                kind: frag_needed(1400),
                quoted: quoted.clone(),
            },
            &[],
        );
        let s = step(h, &f);
        expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
        let f = frame(
            ANY_MAC,
            FRONT_MAC,
            &Ip::new(C0, VIP),
            &L4::IcmpError {
                kind: frag_needed(1400),
                quoted: quoted[..24].to_vec(),
            },
            &[],
        );
        let s = step(h, &f);
        expect_untouched(&s, &f, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
    });
}

#[test]
fn flows_are_confirmed_by_the_clients_ack_and_the_first_udp_reply() {
    run(
        "flows_are_confirmed_by_the_clients_ack_and_the_first_udp_reply",
        |h| {
            // (confirmed, embryonic) in the model; check_conntrack compares the program
            let tables = |h: &KonveyHarness| {
                h.check_conntrack().unwrap();
                let ct = h.model.conntrack();
                (ct.confirmed.len(), ct.embryonic.len())
            };
            expect(
                &step(h, &syn(C0, 46000)),
                XDP_REDIRECT,
                kw_stat::KW_STAT_FWD_REDIRECT,
            );
            assert_eq!(tables(h), (0, 2));
            let back = tcp(
                BACKENDS[0].0,
                TCP_BACKEND_PORT,
                SOURCE,
                46000,
                TcpFlags::SYN_ACK,
            );
            expect(&step(h, &back), XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert_eq!(tables(h), (0, 2), "the backend's SYN-ACK confirms nothing");
            let ack = tcp(C0, 46000, VIP, TCP_PORT, TcpFlags::ACK);
            expect(&step(h, &ack), XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert_eq!(tables(h), (2, 0), "the client's ACK moves both entries");
            // UDP: the backend's first answer confirms
            let out = step(h, &udp(C1, 47000, VIP, UDP_PORT));
            expect(&out, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert_eq!(tables(h), (2, 2));
            let backend = Ipv4Addr::new(out.data[30], out.data[31], out.data[32], out.data[33]);
            let nport = u16::from_be_bytes([out.data[34], out.data[35]]);
            let answer = udp(backend, UDP_BACKEND_PORT, SOURCE, nport);
            expect(
                &step(h, &answer),
                XDP_REDIRECT,
                kw_stat::KW_STAT_FWD_REDIRECT,
            );
            assert_eq!(tables(h), (4, 0));
        },
    );
}
