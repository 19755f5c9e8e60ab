//! Katran-style fixtures: packet in -> verdict, counter and exact packet out,
//! through `BPF_PROG_TEST_RUN` on the real `kawaii.o`. Every step is also
//! run through the reference model, which must agree byte for byte.
//!
//! Expected frames are built from scratch with etherparse (fresh checksums),
//! so the incremental checksum updates of the program are checked too.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use kowabunga_bindings::{kw_config, kw_rule, kw_stat, kw_table};
use kowabunga_dataplane::Role;
use kowabunga_testkit::privileged;
use kowabunga_tests::fixture_net::{GW_PUB, PER_MAC, PRV_MAC, PUB_MAC, ROUTER, ROUTER_MAC};
use kowabunga_tests::harness::{Harness, Step};
use kowabunga_tests::model::flow::Tuple;
use kowabunga_tests::model::{XDP_DROP, XDP_PASS, XDP_REDIRECT};
use kowabunga_tests::packets::{
    frag_needed, frame, ip_packet, port_unreachable, time_exceeded, verify_checksums, Ip, TcpFlags,
    L4,
};
use kowabunga_tests::world::{self, cidr, rule, VIP, VIP2};

const C1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const C2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const C2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x11];
const C1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x10];
const PEER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x03, 0x05];
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const ANY_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const PAYLOAD: &[u8] = b"kowabunga";

fn run(name: &str, body: impl FnOnce(&mut Harness)) {
    run_with(name, world::config(), body);
}

fn run_with(
    name: &str,
    (cfg, tables): (kw_config, Vec<Vec<kw_rule>>),
    body: impl FnOnce(&mut Harness),
) {
    if !privileged(name) {
        return;
    }
    let mut h = Harness::new(cfg, &tables).unwrap();
    body(&mut h);
}

/// A TCP frame arriving on the interface whose MAC is `mac`.
fn tcp_on(
    mac: [u8; 6],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: TcpFlags,
) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport,
        dport,
        flags,
    };
    frame(ANY_MAC, mac, &Ip::new(src, dst), &l4, PAYLOAD)
}

/// A UDP frame arriving on the interface whose MAC is `mac`.
fn udp_on(mac: [u8; 6], src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let l4 = L4::Udp {
        sport,
        dport,
        zero_csum: false,
    };
    frame(ANY_MAC, mac, &Ip::new(src, dst), &l4, PAYLOAD)
}

/// A TCP frame arriving on the private side.
fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: TcpFlags) -> Vec<u8> {
    tcp_on(PRV_MAC, src, sport, dst, dport, flags)
}

/// A UDP frame arriving on the private side.
fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    udp_on(PRV_MAC, src, sport, dst, dport)
}

/// The frame as forwarded: new addresses/ports, TTL 63, next-hop MACs.
fn fwd(smac: [u8; 6], dmac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Vec<u8> {
    frame(smac, dmac, &Ip::new(src, dst).ttl(63), &l4, PAYLOAD)
}

fn step(h: &mut Harness, role: Role, f: &[u8]) -> Step {
    h.step(role, f).unwrap()
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

fn sport_of(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[34], f[35]])
}

// ---------------------------------------------------------------- L2 / L3

#[test]
fn unconfigured_program_passes_everything() {
    if !privileged("unconfigured_program_passes_everything") {
        return;
    }
    let mut h = Harness::unconfigured().unwrap();
    let s = step(
        &mut h,
        Role::Private,
        &tcp(C1, 40000, SERVER, 80, TcpFlags::SYN),
    );
    expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_NO_CONFIG);
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
                    &C1.octets(),
                    &[0; 6],
                    &[10, 0, 0, 1],
                )
                .unwrap(),
            )
            .write(&mut arp)
            .unwrap();
        let s = step(h, Role::Private, &arp);
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_IPV4);
        assert_eq!(s.data, arp);
    });
}

#[test]
fn ipv6_to_the_node_is_closed_but_replies_and_discovery() {
    run(
        "ipv6_to_the_node_is_closed_but_replies_and_discovery",
        |h| {
            let mut f = Vec::new();
            etherparse::PacketBuilder::ethernet2(ANY_MAC, PUB_MAC)
                .ipv6(
                    [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    64,
                )
                .udp(1000, 53)
                .write(&mut f, PAYLOAD)
                .unwrap();
            // to an address of the node, no flow of its own: closed
            let s = step(h, Role::Public, &f);
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            let icmp6 = |dst: [u8; 16], kind: u8| {
                let mut f = Vec::new();
                etherparse::PacketBuilder::ethernet2(ANY_MAC, PUB_MAC)
                    .ipv6(
                        [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                        dst,
                        255,
                    )
                    .icmpv6(match kind {
                        129 => etherparse::Icmpv6Type::EchoReply(etherparse::IcmpEchoHeader {
                            id: 1,
                            seq: 1,
                        }),
                        128 => etherparse::Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader {
                            id: 1,
                            seq: 1,
                        }),
                        _ => etherparse::Icmpv6Type::Unknown {
                            type_u8: kind,
                            code_u8: 0,
                            bytes5to8: [0; 4],
                        },
                    })
                    .write(&mut f, PAYLOAD)
                    .unwrap();
                f
            };
            let node = [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
            // echo replies and neighbour discovery pass; echo requests do not
            expect(
                &step(h, Role::Public, &icmp6(node, 129)),
                XDP_PASS,
                kw_stat::KW_STAT_PASS_HOST_REPLY,
            );
            expect(
                &step(h, Role::Public, &icmp6(node, 135)),
                XDP_PASS,
                kw_stat::KW_STAT_PASS_HOST_REPLY,
            );
            expect(
                &step(h, Role::Public, &icmp6(node, 128)),
                XDP_DROP,
                kw_stat::KW_STAT_DROP_HOST_DENIED,
            );
            // link-local and multicast destinations are the host's business
            let all_nodes = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            expect(
                &step(h, Role::Public, &icmp6(all_nodes, 128)),
                XDP_PASS,
                kw_stat::KW_STAT_PASS_NOT_IPV4,
            );
        },
    );
}

/// An IPv6 frame from `src` to `dst` arriving on the interface whose MAC is
/// `mac`: TCP SYN to `dport`, UDP to `dport`, or (`proto` 58) an echo request.
fn v6_on(
    mac: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    proto: u8,
    dport: u16,
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(ANY_MAC, mac).ipv6(src.octets(), dst.octets(), 64);
    let mut f = Vec::new();
    match proto {
        6 => b.tcp(40000, dport, 1, 65535).syn().write(&mut f, PAYLOAD),
        17 => b.udp(40000, dport).write(&mut f, PAYLOAD),
        _ => b
            .icmpv6(etherparse::Icmpv6Type::EchoRequest(
                etherparse::IcmpEchoHeader { id: 7, seq: 1 },
            ))
            .write(&mut f, PAYLOAD),
    }
    .unwrap();
    f
}

fn v6(text: &str) -> std::net::Ipv6Addr {
    text.parse().unwrap()
}

#[test]
fn ipv6_rules_open_the_nodes_own_ports_and_nothing_else() {
    run(
        "ipv6_rules_open_the_nodes_own_ports_and_nothing_else",
        |h| {
            let (cfg, tables) = world::config();
            h.apply6(cfg, &tables, &world::ingress6()).unwrap();
            let node = v6("2001:db8::2");
            let pubv6 =
                |src: &str, proto: u8, dport: u16| v6_on(PUB_MAC, v6(src), node, proto, dport);
            // a v6 rule opens its port to its prefix
            let s = step(h, Role::Public, &pubv6("2001:db8:1::77", 6, 8022));
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
            let s = step(h, Role::Public, &pubv6("2001:db8:ffff::1", 17, 5355));
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
            let s = step(h, Role::Public, &pubv6("2001:db9::1", 58, 0));
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
            // an unlisted port stays closed
            let s = step(h, Role::Public, &pubv6("2001:db8:1::77", 6, 8023));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            let s = step(h, Role::Public, &pubv6("2001:db8:1::77", 17, 8022));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            // a source outside the prefix is dropped
            let s = step(h, Role::Public, &pubv6("2001:db8:2::77", 6, 8022));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            let s = step(h, Role::Public, &pubv6("2001:db9::1", 17, 5355));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            // families stay apart: the IPv4 rule tcp 22 from 0.0.0.0/0 opens no
            // IPv6 port, and the IPv6 rule's port is not open over IPv4
            let s = step(h, Role::Public, &pubv6("2001:db8:1::77", 6, 22));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            let s = step(
                h,
                Role::Public,
                &tcp_on(PUB_MAC, SERVER, 40000, GW_PUB, 8022, TcpFlags::SYN),
            );
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            let s = step(
                h,
                Role::Public,
                &tcp_on(PUB_MAC, SERVER, 40000, GW_PUB, 22, TcpFlags::SYN),
            );
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
            // IPv6 from the project side still never crosses, whatever the rules
            for role in [Role::Private, Role::Peering] {
                let mac = if role == Role::Private {
                    PRV_MAC
                } else {
                    PER_MAC
                };
                let s = step(
                    h,
                    role,
                    &v6_on(mac, v6("2001:db8:1::77"), v6("2001:db8:1::1"), 6, 8022),
                );
                expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_IPV6);
            }
            // without the v6 rules the same packets are closed again
            let (cfg, tables) = world::config();
            h.apply6(cfg, &tables, &[]).unwrap();
            let s = step(h, Role::Public, &pubv6("2001:db8:1::77", 6, 8022));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
        },
    );
}

#[test]
fn ipv6_transit_stays_dropped_whatever_the_rules_say() {
    run("ipv6_transit_stays_dropped_whatever_the_rules_say", |h| {
        // the host forwards IPv6 and has a route to a project-side prefix
        let sh = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(&[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8::2/64",
            "dev",
            "pub0",
            "nodad",
        ]);
        sh(&[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:10::1/64",
            "dev",
            "prv0",
            "nodad",
        ]);
        std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").unwrap();
        h.model.fib.forward6 = vec![
            "2001:db8::/64".parse().unwrap(),
            "2001:db8:10::/64".parse().unwrap(),
        ];
        h.model.fib.local6 = vec![
            "2001:db8::2/128".parse().unwrap(),
            "2001:db8:10::1/128".parse().unwrap(),
        ];
        let (cfg, tables) = world::config();
        let everything = vec![world::rule6(
            std::net::Ipv6Addr::UNSPECIFIED,
            0,
            0,
            0,
            u16::MAX,
        )];
        h.apply6(cfg, &tables, &everything).unwrap();
        let from = v6("2001:db8:1::77");
        // to the node's own addresses: the rule opens them
        for dst in ["2001:db8::2", "2001:db8:10::1"] {
            let s = step(h, Role::Public, &v6_on(PUB_MAC, from, v6(dst), 6, 8022));
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
        }
        // through the node to the project side, or back out: never
        for dst in ["2001:db8:10::5", "2001:db8::9"] {
            for proto in [6, 17, 58] {
                let s = step(h, Role::Public, &v6_on(PUB_MAC, from, v6(dst), proto, 8022));
                expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_IPV6);
            }
        }
        let s = step(
            h,
            Role::Private,
            &v6_on(PRV_MAC, v6("2001:db8:10::5"), from, 6, 443),
        );
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_IPV6);
    });
}

#[test]
fn ipv6_from_the_project_side_stays_on_the_link() {
    run("ipv6_from_the_project_side_stays_on_the_link", |h| {
        let v6 = |dst: [u8; 16]| {
            let mut f = Vec::new();
            etherparse::PacketBuilder::ethernet2(ANY_MAC, PRV_MAC)
                .ipv6(
                    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
                    dst,
                    64,
                )
                .udp(1000, 53)
                .write(&mut f, PAYLOAD)
                .unwrap();
            f
        };
        let global = [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        for role in [Role::Private, Role::Peering] {
            // beyond the link: only the kernel could forward it, never
            let s = step(h, role, &v6(global));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_IPV6);
            // neighbour discovery, link-local and multicast: the host's
            let link_local = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let s = step(h, role, &v6(link_local));
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_IPV4);
            let all_nodes = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let s = step(h, role, &v6(all_nodes));
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_NOT_IPV4);
            // a truncated header
            let s = step(h, role, &v6(global)[..40]);
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED);
        }
    });
}

#[test]
fn truncated_ipv4_header_is_dropped() {
    run("truncated_ipv4_header_is_dropped", |h| {
        let f = tcp(C1, 40000, SERVER, 80, TcpFlags::SYN);
        let s = step(h, Role::Private, &f[..14 + 12]);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED);
    });
}

#[test]
fn bad_ip_version_is_dropped() {
    run("bad_ip_version_is_dropped", |h| {
        let mut f = tcp(C1, 40000, SERVER, 80, TcpFlags::SYN);
        f[14] = 0x65;
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED);
    });
}

#[test]
fn short_ihl_is_dropped() {
    run("short_ihl_is_dropped", |h| {
        let mut f = tcp(C1, 40000, SERVER, 80, TcpFlags::SYN);
        f[14] = 0x44;
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED);
    });
}

#[test]
fn total_length_beyond_frame_is_dropped() {
    run("total_length_beyond_frame_is_dropped", |h| {
        let mut f = tcp(C1, 40000, SERVER, 80, TcpFlags::SYN);
        let tl = u16::from_be_bytes([f[16], f[17]]) + 40;
        f[16..18].copy_from_slice(&tl.to_be_bytes());
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED);
    });
}

#[test]
fn truncated_tcp_header_is_dropped() {
    run("truncated_tcp_header_is_dropped", |h| {
        let f = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &L4::Raw { proto: 6 },
            &[0u8; 12],
        );
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED_L4);
    });
}

#[test]
fn ethernet_padding_is_not_read_as_udp() {
    run("ethernet_padding_is_not_read_as_udp", |h| {
        // 4 bytes of UDP inside tot_len, padding after: still truncated.
        let mut f = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &L4::Raw { proto: 17 },
            &[0u8; 4],
        );
        f.extend_from_slice(&[0u8; 20]);
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_MALFORMED_L4);
    });
}

#[test]
fn ip_options_on_translated_path_are_dropped() {
    run("ip_options_on_translated_path_are_dropped", |h| {
        let mut ip = Ip::new(C1, SERVER);
        ip.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
        let f = frame(
            ANY_MAC,
            PRV_MAC,
            &ip,
            &L4::Tcp {
                sport: 40000,
                dport: 80,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_IP_OPTIONS);
    });
}

#[test]
fn first_fragment_is_dropped() {
    run("first_fragment_is_dropped", |h| {
        let mut ip = Ip::new(C1, SERVER);
        ip.df = false;
        ip.mf = true;
        let f = frame(
            ANY_MAC,
            PRV_MAC,
            &ip,
            &L4::Udp {
                sport: 5353,
                dport: 53,
                zero_csum: false,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_FRAGMENT);
    });
}

#[test]
fn non_first_fragment_is_dropped() {
    run("non_first_fragment_is_dropped", |h| {
        let mut ip = Ip::new(REMOTE, VIP);
        ip.df = false;
        ip.frag_offset = 185;
        let f = frame(ANY_MAC, PUB_MAC, &ip, &L4::Raw { proto: 17 }, &[0u8; 64]);
        let s = step(h, Role::Public, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_FRAGMENT);
    });
}

#[test]
fn multicast_and_local_subnet_pass() {
    run("multicast_and_local_subnet_pass", |h| {
        let s = step(
            h,
            Role::Private,
            &udp(C1, 5353, Ipv4Addr::new(224, 0, 0, 251), 5353),
        );
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_LOCAL);
        let s = step(
            h,
            Role::Private,
            &udp(C1, 5353, Ipv4Addr::new(10, 0, 0, 1), 53),
        );
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_LOCAL);
    });
}

// ---------------------------------------------------------------- SNAT egress

#[test]
fn tcp_egress_is_source_translated_and_reply_restored() {
    run("tcp_egress_is_source_translated_and_reply_restored", |h| {
        let s = step(
            h,
            Role::Private,
            &tcp(C1, 40000, SERVER, 443, TcpFlags::SYN),
        );
        let want = fwd(
            PUB_MAC,
            ROUTER_MAC,
            VIP,
            SERVER,
            L4::Tcp {
                sport: 40000,
                dport: 443,
                flags: TcpFlags::SYN,
            },
        );
        expect_fwd(&s, &want);

        let reply = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(SERVER, VIP),
            &L4::Tcp {
                sport: 443,
                dport: 40000,
                flags: TcpFlags::SYN_ACK,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Public, &reply);
        let want = fwd(
            PRV_MAC,
            C1_MAC,
            SERVER,
            C1,
            L4::Tcp {
                sport: 443,
                dport: 40000,
                flags: TcpFlags::SYN_ACK,
            },
        );
        expect_fwd(&s, &want);

        // established: data both ways
        let s = step(
            h,
            Role::Private,
            &tcp(C1, 40000, SERVER, 443, TcpFlags::PSH_ACK),
        );
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
    });
}

#[test]
fn udp_egress_and_reply() {
    run("udp_egress_and_reply", |h| {
        let s = step(h, Role::Private, &udp(C2, 5353, SERVER, 53));
        let want = fwd(
            PUB_MAC,
            ROUTER_MAC,
            VIP,
            SERVER,
            L4::Udp {
                sport: 5353,
                dport: 53,
                zero_csum: false,
            },
        );
        expect_fwd(&s, &want);
        let reply = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(SERVER, VIP),
            &L4::Udp {
                sport: 53,
                dport: 5353,
                zero_csum: false,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Public, &reply);
        let want = fwd(
            PRV_MAC,
            C2_MAC,
            SERVER,
            C2,
            L4::Udp {
                sport: 53,
                dport: 5353,
                zero_csum: false,
            },
        );
        expect_fwd(&s, &want);
    });
}

#[test]
fn udp_without_checksum_stays_without() {
    run("udp_without_checksum_stays_without", |h| {
        let f = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &L4::Udp {
                sport: 6000,
                dport: 53,
                zero_csum: true,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Private, &f);
        let want = fwd(
            PUB_MAC,
            ROUTER_MAC,
            VIP,
            SERVER,
            L4::Udp {
                sport: 6000,
                dport: 53,
                zero_csum: true,
            },
        );
        expect_fwd(&s, &want);
    });
}

#[test]
fn ping_egress_uses_echo_id_as_port() {
    run("ping_egress_uses_echo_id_as_port", |h| {
        let req = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &L4::Echo {
                request: true,
                id: 4242,
                seq: 1,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Private, &req);
        expect_fwd(
            &s,
            &fwd(
                PUB_MAC,
                ROUTER_MAC,
                VIP,
                SERVER,
                L4::Echo {
                    request: true,
                    id: 4242,
                    seq: 1,
                },
            ),
        );
        let rep = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(SERVER, VIP),
            &L4::Echo {
                request: false,
                id: 4242,
                seq: 1,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Public, &rep);
        expect_fwd(
            &s,
            &fwd(
                PRV_MAC,
                C1_MAC,
                SERVER,
                C1,
                L4::Echo {
                    request: false,
                    id: 4242,
                    seq: 1,
                },
            ),
        );
    });
}

#[test]
fn port_collision_picks_another_port_and_replies_find_their_host() {
    run(
        "port_collision_picks_another_port_and_replies_find_their_host",
        |h| {
            let s1 = step(
                h,
                Role::Private,
                &tcp(C1, 40000, SERVER, 443, TcpFlags::SYN),
            );
            assert_eq!(sport_of(&s1.data), 40000);
            let s2 = step(
                h,
                Role::Private,
                &tcp(C2, 40000, SERVER, 443, TcpFlags::SYN),
            );
            expect(&s2, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            let p2 = sport_of(&s2.data);
            assert_ne!(p2, 40000, "second flow must get another port");
            assert!(p2 >= 1024);
            expect_fwd(
                &s2,
                &fwd(
                    PUB_MAC,
                    ROUTER_MAC,
                    VIP,
                    SERVER,
                    L4::Tcp {
                        sport: p2,
                        dport: 443,
                        flags: TcpFlags::SYN,
                    },
                ),
            );
            let reply = frame(
                ANY_MAC,
                PUB_MAC,
                &Ip::new(SERVER, VIP),
                &L4::Tcp {
                    sport: 443,
                    dport: p2,
                    flags: TcpFlags::SYN_ACK,
                },
                PAYLOAD,
            );
            let s = step(h, Role::Public, &reply);
            expect_fwd(
                &s,
                &fwd(
                    PRV_MAC,
                    C2_MAC,
                    SERVER,
                    C2,
                    L4::Tcp {
                        sport: 443,
                        dport: 40000,
                        flags: TcpFlags::SYN_ACK,
                    },
                ),
            );
        },
    );
}

fn small_port_range() -> (kw_config, Vec<Vec<kw_rule>>) {
    let (mut cfg, tables) = world::config();
    cfg.port_min = 2000;
    cfg.port_max = 2001;
    (cfg, tables)
}

#[test]
fn a_nearly_full_port_range_is_searched_whole_then_marked_full() {
    let (mut cfg, tables) = world::config();
    cfg.port_min = 2000;
    cfg.port_max = 2063;
    run_with(
        "a_nearly_full_port_range_is_searched_whole_then_marked_full",
        (cfg, tables),
        |h| {
            // 64 flows, 64 ports: the last flows' 32 hashed probes mostly hit
            // taken ports; the scan of the whole range finds the free ones.
            let mut ports = std::collections::BTreeSet::new();
            for sport in 3000..3064 {
                let s = step(h, Role::Private, &udp(C1, sport, SERVER, 53));
                expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
                assert!(ports.insert(sport_of(&s.data)), "port given twice");
            }
            assert_eq!(ports.len(), 64);
            assert_eq!((ports.first(), ports.last()), (Some(&2000), Some(&2063)));
            // full: dropped, and the space is marked (kw_noport), so the next
            // packets of such flows are refused without a scan
            for sport in [3064, 3064, 3065] {
                let s = step(h, Role::Private, &udp(C1, sport, SERVER, 53));
                expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_NO_PORT);
            }
            assert_eq!(h.model.conntrack_mut().full_spaces.len(), 1);
            // another destination has its own port space
            let s = step(h, Role::Private, &udp(C1, 3064, REMOTE, 53));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        },
    );
}

#[test]
fn exhausted_port_range_drops_with_counter() {
    run_with(
        "exhausted_port_range_drops_with_counter",
        small_port_range(),
        |h| {
            for sport in [3000, 3001] {
                let s = step(h, Role::Private, &udp(C1, sport, SERVER, 53));
                expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
                assert!((2000..=2001).contains(&sport_of(&s.data)));
            }
            let s = step(h, Role::Private, &udp(C1, 3002, SERVER, 53));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_NO_PORT);
            // another destination has its own port space
            let s = step(h, Role::Private, &udp(C1, 3002, REMOTE, 53));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        },
    );
}

#[test]
fn source_port_outside_range_is_remapped_into_it() {
    run_with(
        "source_port_outside_range_is_remapped_into_it",
        small_port_range(),
        |h| {
            let s = step(h, Role::Private, &tcp(C1, 50000, SERVER, 80, TcpFlags::SYN));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            assert!((2000..=2001).contains(&sport_of(&s.data)));
        },
    );
}

#[test]
fn new_tcp_flow_needs_a_bare_syn() {
    run("new_tcp_flow_needs_a_bare_syn", |h| {
        let s = step(h, Role::Private, &tcp(C1, 40001, SERVER, 80, TcpFlags::ACK));
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_TCP_NOT_SYN);
    });
}

#[test]
fn egress_exception_to_accept_policy_drops() {
    run("egress_exception_to_accept_policy_drops", |h| {
        let s = step(h, Role::Private, &tcp(C1, 40002, SERVER, 25, TcpFlags::SYN));
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_EGRESS_DENIED);
    });
}

#[test]
fn egress_drop_policy_allows_only_its_exceptions() {
    let (mut cfg, mut tables) = world::config();
    cfg.egress_policy = 1;
    tables[kw_table::KW_TABLE_EGRESS as usize] = vec![rule(cidr(SERVER, 32), 17, 53, 53, None)];
    run_with(
        "egress_drop_policy_allows_only_its_exceptions",
        (cfg, tables),
        |h| {
            let s = step(h, Role::Private, &udp(C1, 5000, SERVER, 53));
            expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
            let s = step(h, Role::Private, &udp(C1, 5000, REMOTE, 53));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_EGRESS_DENIED);
            let s = step(h, Role::Private, &tcp(C1, 5000, SERVER, 80, TcpFlags::SYN));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_EGRESS_DENIED);
        },
    );
}

#[test]
fn ttl_one_goes_to_kernel_without_state() {
    run("ttl_one_goes_to_kernel_without_state", |h| {
        let f = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER).ttl(1),
            &L4::Udp {
                sport: 33434,
                dport: 33435,
                zero_csum: false,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TTL);
        assert_eq!(
            s.data, f,
            "a packet for the kernel to answer stays untouched"
        );
        let reply = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(SERVER, VIP),
            &L4::Udp {
                sport: 33435,
                dport: 33434,
                zero_csum: false,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Public, &reply);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_INGRESS_DENIED);
    });
}

#[test]
fn spoofed_private_source_is_dropped() {
    run("spoofed_private_source_is_dropped", |h| {
        let s = step(
            h,
            Role::Private,
            &tcp(Ipv4Addr::new(10, 9, 9, 9), 40000, SERVER, 80, TcpFlags::SYN),
        );
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_SPOOFED);
    });
}

#[test]
fn untranslatable_protocol_is_dropped() {
    run("untranslatable_protocol_is_dropped", |h| {
        let f = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &L4::Raw { proto: 47 },
            &[0u8; 24],
        );
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_UNSUPPORTED);
        let ts = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &L4::IcmpOther {
                kind: etherparse::Icmpv4Type::TimestampRequest(
                    etherparse::icmpv4::TimestampMessage {
                        id: 1,
                        seq: 1,
                        originate_timestamp: 0,
                        receive_timestamp: 0,
                        transmit_timestamp: 0,
                    },
                ),
            },
            &[],
        );
        let s = step(h, Role::Private, &ts);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_UNSUPPORTED);
    });
}

#[test]
fn oversized_packet_goes_untranslated_to_kernel() {
    run("oversized_packet_goes_untranslated_to_kernel", |h| {
        let f = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &L4::Udp {
                sport: 7000,
                dport: 9000,
                zero_csum: false,
            },
            &[7u8; 1600],
        );
        let s = step(h, Role::Private, &f);
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_FIB);
        assert_eq!(s.data, f);
    });
}

#[test]
fn oversized_with_df_clear_crosses_translated_for_the_kernel_to_fragment() {
    run(
        "oversized_with_df_clear_crosses_translated_for_the_kernel_to_fragment",
        |h| {
            let f = frame(
                ANY_MAC,
                PRV_MAC,
                &Ip {
                    df: false,
                    ..Ip::new(C1, SERVER)
                },
                &L4::Udp {
                    sport: 7001,
                    dport: 9000,
                    zero_csum: false,
                },
                &[7u8; 1600],
            );
            let s = step(h, Role::Private, &f);
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_FRAGMENT);
            let ip = &s.data[14..34];
            assert_eq!(ip[12..16], VIP.octets(), "source translated to the VIP");
            assert_eq!(ip[16..20], SERVER.octets());
            assert_eq!(ip[8], 64, "TTL and fragmentation left to the kernel");
        },
    );
}

#[test]
fn inbound_oversized_with_df_fails_closed() {
    run("inbound_oversized_with_df_fails_closed", |h| {
        // DNATed: untranslated, the kernel would take it for itself (the
        // VIP is local): dropped and counted, never passed
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP),
            &L4::Tcp {
                sport: 51000,
                dport: 80,
                flags: TcpFlags::SYN,
            },
            &[7u8; 1600],
        );
        let s = step(h, Role::Public, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_FIB);
    });
}

#[test]
fn inbound_ttl_one_on_a_translated_destination_fails_closed() {
    run(
        "inbound_ttl_one_on_a_translated_destination_fails_closed",
        |h| {
            for ttl in [0u8, 1] {
                let f = frame(
                    ANY_MAC,
                    PUB_MAC,
                    &Ip::new(REMOTE, VIP).ttl(ttl),
                    &L4::Tcp {
                        sport: 51001,
                        dport: 80,
                        flags: TcpFlags::SYN,
                    },
                    PAYLOAD,
                );
                let s = step(h, Role::Public, &f);
                expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_TTL);
            }
        },
    );
}

// ---------------------------------------------------------------- DNAT / ingress

#[test]
fn dnat_tcp_reaches_private_server_and_reply_comes_from_vip() {
    run(
        "dnat_tcp_reaches_private_server_and_reply_comes_from_vip",
        |h| {
            let syn = frame(
                ANY_MAC,
                PUB_MAC,
                &Ip::new(REMOTE, VIP),
                &L4::Tcp {
                    sport: 51000,
                    dport: 80,
                    flags: TcpFlags::SYN,
                },
                PAYLOAD,
            );
            let s = step(h, Role::Public, &syn);
            expect_fwd(
                &s,
                &fwd(
                    PRV_MAC,
                    C1_MAC,
                    REMOTE,
                    C1,
                    L4::Tcp {
                        sport: 51000,
                        dport: 80,
                        flags: TcpFlags::SYN,
                    },
                ),
            );
            let s = step(
                h,
                Role::Private,
                &tcp(C1, 80, REMOTE, 51000, TcpFlags::SYN_ACK),
            );
            expect_fwd(
                &s,
                &fwd(
                    PUB_MAC,
                    ROUTER_MAC,
                    VIP,
                    REMOTE,
                    L4::Tcp {
                        sport: 80,
                        dport: 51000,
                        flags: TcpFlags::SYN_ACK,
                    },
                ),
            );
        },
    );
}

#[test]
fn dnat_udp_port_range() {
    run("dnat_udp_port_range", |h| {
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP),
            &L4::Udp {
                sport: 40000,
                dport: 5005,
                zero_csum: false,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Public, &f);
        expect_fwd(
            &s,
            &fwd(
                PRV_MAC,
                C2_MAC,
                REMOTE,
                C2,
                L4::Udp {
                    sport: 40000,
                    dport: 5005,
                    zero_csum: false,
                },
            ),
        );
    });
}

#[test]
fn dnat_protocol_is_honoured() {
    run("dnat_protocol_is_honoured", |h| {
        // dnat says tcp 80; udp 80 is not forwarded (upstream ignored the protocol)
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP),
            &L4::Udp {
                sport: 40000,
                dport: 80,
                zero_csum: false,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Public, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_INGRESS_DENIED);
    });
}

#[test]
fn dnat_needs_a_syn() {
    run("dnat_needs_a_syn", |h| {
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP),
            &L4::Tcp {
                sport: 51000,
                dport: 443,
                flags: TcpFlags::ACK,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Public, &f);
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_TCP_NOT_SYN);
    });
}

#[test]
fn dnat_to_unresolved_neighbour_is_translated_and_passed() {
    run(
        "dnat_to_unresolved_neighbour_is_translated_and_passed",
        |h| {
            let f = frame(
                ANY_MAC,
                PUB_MAC,
                &Ip::new(REMOTE, VIP),
                &L4::Tcp {
                    sport: 51000,
                    dport: 8080,
                    flags: TcpFlags::SYN,
                },
                PAYLOAD,
            );
            let s = step(h, Role::Public, &f);
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_NO_NEIGH);
            // translated, TTL and MACs left to the kernel
            let want = frame(
                ANY_MAC,
                PUB_MAC,
                &Ip::new(REMOTE, Ipv4Addr::new(10, 0, 0, 12)),
                &L4::Tcp {
                    sport: 51000,
                    dport: 8080,
                    flags: TcpFlags::SYN,
                },
                PAYLOAD,
            );
            verify_checksums(&s.data).unwrap();
            assert_eq!(s.data, want);
        },
    );
}

#[test]
fn firewall_ingress_rule_delivers_to_gateway() {
    run("firewall_ingress_rule_delivers_to_gateway", |h| {
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP),
            &L4::Tcp {
                sport: 51000,
                dport: 22,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Public, &f);
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
        assert_eq!(s.data, f);
        // the other zone's VIP is ours too
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP2),
            &L4::Tcp {
                sport: 51000,
                dport: 22,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        expect(
            &step(h, Role::Public, &f),
            XDP_PASS,
            kw_stat::KW_STAT_PASS_TO_HOST,
        );
    });
}

#[test]
fn ingress_source_cidr_is_checked() {
    run("ingress_source_cidr_is_checked", |h| {
        let ping = |src| {
            frame(
                ANY_MAC,
                PUB_MAC,
                &Ip::new(src, VIP),
                &L4::Echo {
                    request: true,
                    id: 7,
                    seq: 1,
                },
                PAYLOAD,
            )
        };
        expect(
            &step(h, Role::Public, &ping(Ipv4Addr::new(198, 51, 100, 7))),
            XDP_PASS,
            kw_stat::KW_STAT_PASS_TO_HOST,
        );
        expect(
            &step(h, Role::Public, &ping(REMOTE)),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_INGRESS_DENIED,
        );
    });
}

#[test]
fn closed_port_is_denied() {
    run("closed_port_is_denied", |h| {
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP),
            &L4::Tcp {
                sport: 51000,
                dport: 9999,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        expect(
            &step(h, Role::Public, &f),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_INGRESS_DENIED,
        );
    });
}

/// 9,997 rules that do not match, then a port range, a protocol-any rule and
/// the single port the packet wants: the tables' last rules still decide.
fn ten_thousand(last: [kw_rule; 3]) -> Vec<kw_rule> {
    let mut rules: Vec<kw_rule> = (0..9_997u32)
        .map(|i| {
            let host = Ipv4Addr::from(0x6440_0000 + i); // 100.64.0.0/10
            rule(
                cidr(host, 32 - (i % 3) as u8),
                [6, 17, 0][i as usize % 3],
                22,
                22,
                None,
            )
        })
        .collect();
    rules.extend(last);
    rules
}

#[test]
fn ten_thousand_ingress_rules_the_matching_ones_last() {
    let (cfg, mut tables) = world::config();
    let remote_net = cidr(Ipv4Addr::new(192, 0, 2, 0), 24);
    tables[kw_table::KW_TABLE_INGRESS as usize] = ten_thousand([
        rule(remote_net, 6, 3000, 3005, None),
        rule(cidr(REMOTE, 32), 0, 7000, 7001, None),
        rule(cidr(REMOTE, 32), 6, 8443, 8443, None),
    ]);
    assert_eq!(tables[kw_table::KW_TABLE_INGRESS as usize].len(), 10_000);
    run_with(
        "ten_thousand_ingress_rules_the_matching_ones_last",
        (cfg, tables),
        |h| {
            let other = Ipv4Addr::new(192, 0, 3, 1);
            let syn = |src, dport| {
                frame(
                    ANY_MAC,
                    PUB_MAC,
                    &Ip::new(src, VIP),
                    &L4::Tcp {
                        sport: 51000,
                        dport,
                        flags: TcpFlags::SYN,
                    },
                    PAYLOAD,
                )
            };
            let dgram = |src, dport| {
                frame(
                    ANY_MAC,
                    PUB_MAC,
                    &Ip::new(src, VIP),
                    &L4::Udp {
                        zero_csum: false,
                        sport: 51000,
                        dport,
                    },
                    PAYLOAD,
                )
            };
            let ping = |src| {
                frame(
                    ANY_MAC,
                    PUB_MAC,
                    &Ip::new(src, VIP),
                    &L4::Echo {
                        request: true,
                        id: 9,
                        seq: 1,
                    },
                    PAYLOAD,
                )
            };
            let pass = kw_stat::KW_STAT_PASS_TO_HOST;
            let denied = kw_stat::KW_STAT_DROP_INGRESS_DENIED;
            for (case, (f, verdict, stat)) in [
                (syn(REMOTE, 8443), XDP_PASS, pass),
                (syn(REMOTE, 8444), XDP_DROP, denied),
                (syn(REMOTE, 3000), XDP_PASS, pass),
                (syn(REMOTE, 3005), XDP_PASS, pass),
                (syn(other, 3003), XDP_DROP, denied),
                (syn(REMOTE, 3006), XDP_DROP, denied),
                (dgram(REMOTE, 3003), XDP_DROP, denied),
                // protocol any: its ports for TCP and UDP, none for ICMP
                (dgram(REMOTE, 7001), XDP_PASS, pass),
                (syn(REMOTE, 7000), XDP_PASS, pass),
                (dgram(REMOTE, 7002), XDP_DROP, denied),
                (ping(REMOTE), XDP_PASS, pass),
                (ping(other), XDP_DROP, denied),
                // the world's rules are gone: tcp/22 only from the noise
                (syn(other, 22), XDP_DROP, denied),
                (syn(Ipv4Addr::new(100, 64, 0, 0), 22), XDP_PASS, pass),
                // a noise rule: 100.64.0.3/32 tcp 22 was the first, a /31
                // udp 22 covers 100.64.0.4
                (dgram(Ipv4Addr::new(100, 64, 0, 5), 22), XDP_PASS, pass),
                (dgram(Ipv4Addr::new(100, 64, 0, 5), 23), XDP_DROP, denied),
            ]
            .into_iter()
            .enumerate()
            {
                let s = step(h, Role::Public, &f);
                assert_eq!((s.verdict, s.stat), (verdict, stat), "case {case}");
            }
        },
    );
}

#[test]
fn ten_thousand_egress_exceptions_under_drop_policy() {
    let (mut cfg, mut tables) = world::config();
    cfg.egress_policy = 1;
    tables[kw_table::KW_TABLE_EGRESS as usize] = ten_thousand([
        rule(cidr(Ipv4Addr::new(198, 51, 100, 0), 24), 17, 1, 65535, None),
        rule(cidr(REMOTE, 32), 0, 0, 65535, None),
        rule(cidr(SERVER, 32), 6, 443, 443, None),
    ]);
    run_with(
        "ten_thousand_egress_exceptions_under_drop_policy",
        (cfg, tables),
        |h| {
            let fwd = kw_stat::KW_STAT_FWD_REDIRECT;
            let denied = kw_stat::KW_STAT_DROP_EGRESS_DENIED;
            for (f, verdict, stat) in [
                (
                    tcp(C1, 40100, SERVER, 443, TcpFlags::SYN),
                    XDP_REDIRECT,
                    fwd,
                ),
                (tcp(C1, 40101, SERVER, 444, TcpFlags::SYN), XDP_DROP, denied),
                (udp(C1, 40102, SERVER, 9), XDP_REDIRECT, fwd),
                (tcp(C1, 40103, REMOTE, 1, TcpFlags::SYN), XDP_REDIRECT, fwd),
                (
                    udp(C1, 40104, Ipv4Addr::new(192, 0, 2, 78), 53),
                    XDP_DROP,
                    denied,
                ),
            ] {
                expect(&step(h, Role::Private, &f), verdict, stat);
            }
        },
    );
}

#[test]
fn public_side_cannot_address_private_hosts() {
    run("public_side_cannot_address_private_hosts", |h| {
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, C1),
            &L4::Tcp {
                sport: 51000,
                dport: 22,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        expect(
            &step(h, Role::Public, &f),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_TO_PRIVATE,
        );
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, PEER),
            &L4::Tcp {
                sport: 51000,
                dport: 22,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        expect(
            &step(h, Role::Public, &f),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_TO_PRIVATE,
        );
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, Ipv4Addr::new(203, 0, 113, 2)),
            &L4::Tcp {
                sport: 51000,
                dport: 22,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        // the node's own address: firewall.ingress opens tcp/22
        expect(
            &step(h, Role::Public, &f),
            XDP_PASS,
            kw_stat::KW_STAT_PASS_TO_HOST,
        );
    });
}

#[test]
fn flow_entry_is_only_valid_on_its_interface_role() {
    run("flow_entry_is_only_valid_on_its_interface_role", |h| {
        expect(
            &step(
                h,
                Role::Private,
                &tcp(C1, 40000, SERVER, 443, TcpFlags::SYN),
            ),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        // the reply tuple arriving from the private side is not a reply
        let f = tcp(SERVER, 443, VIP, 40000, TcpFlags::SYN_ACK);
        expect(
            &step(h, Role::Private, &f),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_SPOOFED,
        );
        // the original tuple arriving from the public side is transit:
        // denied like anything the node did not open
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(C1, SERVER),
            &L4::Tcp {
                sport: 40000,
                dport: 443,
                flags: TcpFlags::ACK,
            },
            PAYLOAD,
        );
        expect(
            &step(h, Role::Public, &f),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_HOST_DENIED,
        );
    });
}

// ---------------------------------------------------------------- the node itself

/// A frame from `src` to the node's public address `GW_PUB`.
fn to_node(src: Ipv4Addr, ip: Ip, l4: L4) -> Vec<u8> {
    frame(ANY_MAC, PUB_MAC, &Ip { src, ..ip }, &l4, PAYLOAD)
}

#[test]
fn the_nodes_own_addresses_are_closed_by_default() {
    run("the_nodes_own_addresses_are_closed_by_default", |h| {
        let ip = Ip::new(REMOTE, GW_PUB);
        let tcp_to = |dport| L4::Tcp {
            sport: 51000,
            dport,
            flags: TcpFlags::SYN,
        };
        // firewall.ingress opens tcp/22 for the node as for the VIP
        let s = step(h, Role::Public, &to_node(REMOTE, ip.clone(), tcp_to(22)));
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
        for l4 in [
            tcp_to(23),
            L4::Udp {
                sport: 5353,
                dport: 53,
                zero_csum: false,
            },
            L4::Echo {
                request: true,
                id: 7,
                seq: 1,
            },
            L4::Raw { proto: 47 },
        ] {
            let s = step(h, Role::Public, &to_node(REMOTE, ip.clone(), l4));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
        }
        // icmp from 198.51.100.0/24 is allowed by a rule
        let echo = L4::Echo {
            request: true,
            id: 7,
            seq: 2,
        };
        let s = step(
            h,
            Role::Public,
            &to_node(Ipv4Addr::new(198, 51, 100, 9), ip.clone(), echo),
        );
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_TO_HOST);
        // replies to the node's pings and ICMP errors: the kernel matches them
        let reply = L4::Echo {
            request: false,
            id: 7,
            seq: 1,
        };
        let s = step(h, Role::Public, &to_node(REMOTE, ip.clone(), reply));
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_HOST_REPLY);
        // VRRP only as sent on the link (TTL 255)
        let vrrp = |ttl| to_node(REMOTE, ip.clone().ttl(ttl), L4::Raw { proto: 112 });
        expect(
            &step(h, Role::Public, &vrrp(255)),
            XDP_PASS,
            kw_stat::KW_STAT_PASS_VRRP,
        );
        expect(
            &step(h, Role::Public, &vrrp(64)),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_HOST_DENIED,
        );
        // a later fragment: its first fragment was decided
        let later = Ip {
            frag_offset: 185,
            ..ip.clone()
        };
        let s = step(
            h,
            Role::Public,
            &to_node(REMOTE, later, L4::Raw { proto: 17 }),
        );
        expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_HOST_FRAGMENT);
        // transit through the node: not its own, denied
        let transit = Ip::new(REMOTE, Ipv4Addr::new(198, 51, 100, 77));
        let s = step(h, Role::Public, &to_node(REMOTE, transit, tcp_to(80)));
        expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
    });
}

/// `connect()` without waiting: a TCP socket in SYN_SENT from `local`.
fn connecting(local: Ipv4Addr, to: Ipv4Addr, port: u16) -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let sin = |a: Ipv4Addr, p: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: p.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor owned right away, with
    // sockaddr_in values of the size passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0, "socket");
        let fd = OwnedFd::from_raw_fd(fd);
        let me = sin(local, 0);
        assert_eq!(
            libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&me).cast(), len),
            0
        );
        let peer = sin(to, port);
        let rc = libc::connect(fd.as_raw_fd(), std::ptr::from_ref(&peer).cast(), len);
        assert!(
            rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS)
        );
        let mut got = sin(local, 0);
        let mut got_len = len;
        assert_eq!(
            libc::getsockname(
                fd.as_raw_fd(),
                std::ptr::from_mut(&mut got).cast(),
                &mut got_len
            ),
            0
        );
        (fd, u16::from_be(got.sin_port))
    }
}

#[test]
fn replies_to_the_nodes_own_flows_pass_and_servers_need_rules() {
    run(
        "replies_to_the_nodes_own_flows_pass_and_servers_need_rules",
        |h| {
            // TCP: the node connects out (SYN_SENT); the answer passes
            let (_sock, port) = connecting(GW_PUB, ROUTER, 80);
            h.model
                .host_flows
                .insert(Tuple::new(6, ROUTER, 80, GW_PUB, port));
            let ip = Ip::new(ROUTER, GW_PUB);
            let from = |sport| L4::Tcp {
                sport,
                dport: port,
                flags: TcpFlags::SYN_ACK,
            };
            let s = step(h, Role::Public, &to_node(ROUTER, ip.clone(), from(80)));
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_HOST_REPLY);
            let s = step(h, Role::Public, &to_node(ROUTER, ip.clone(), from(81)));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            // UDP: a connected socket (a resolver's query) gets its answer
            let udp = std::net::UdpSocket::bind((GW_PUB, 0)).expect("bind");
            udp.connect((ROUTER, 53)).expect("connect");
            let uport = udp.local_addr().expect("addr").port();
            h.model
                .host_flows
                .insert(Tuple::new(17, ROUTER, 53, GW_PUB, uport));
            let answer = |sport| L4::Udp {
                sport,
                dport: uport,
                zero_csum: false,
            };
            let s = step(h, Role::Public, &to_node(ROUTER, ip.clone(), answer(53)));
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_HOST_REPLY);
            let s = step(h, Role::Public, &to_node(ROUTER, ip.clone(), answer(54)));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            // a server (unconnected UDP, TCP listener) owns no flow: rules decide
            let server = std::net::UdpSocket::bind((GW_PUB, 0)).expect("bind");
            let sport = server.local_addr().expect("addr").port();
            let to_server = L4::Udp {
                sport: 40000,
                dport: sport,
                zero_csum: false,
            };
            let s = step(h, Role::Public, &to_node(ROUTER, ip.clone(), to_server));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
            let listener = std::net::TcpListener::bind((GW_PUB, 0)).expect("listen");
            let lport = listener.local_addr().expect("addr").port();
            let syn = L4::Tcp {
                sport: 40001,
                dport: lport,
                flags: TcpFlags::SYN,
            };
            let s = step(h, Role::Public, &to_node(ROUTER, ip.clone(), syn));
            expect(&s, XDP_DROP, kw_stat::KW_STAT_DROP_HOST_DENIED);
        },
    );
}

// ---------------------------------------------------------------- IPsec

#[test]
fn ipsec_remote_subnet_goes_to_kernel_untranslated_while_up() {
    run(
        "ipsec_remote_subnet_goes_to_kernel_untranslated_while_up",
        |h| {
            h.set_ipsec_up("172.16.1.0/24".parse().unwrap(), true)
                .unwrap();
            let f = tcp(C1, 40000, Ipv4Addr::new(172, 16, 1, 5), 22, TcpFlags::SYN);
            let s = step(h, Role::Private, &f);
            expect(&s, XDP_PASS, kw_stat::KW_STAT_PASS_IPSEC);
            assert_eq!(s.data, f);
        },
    );
}

#[test]
fn ipsec_remote_subnet_is_dropped_while_its_tunnel_is_down() {
    run(
        "ipsec_remote_subnet_is_dropped_while_its_tunnel_is_down",
        |h| {
            let net = "172.16.1.0/24".parse().unwrap();
            let f = tcp(C1, 40000, Ipv4Addr::new(172, 16, 1, 5), 22, TcpFlags::SYN);
            // never up: dropped, never SNATed to the VIP nor routed in clear
            expect(
                &step(h, Role::Private, &f),
                XDP_DROP,
                kw_stat::KW_STAT_DROP_IPSEC_DOWN,
            );
            h.set_ipsec_up(net, true).unwrap();
            expect(
                &step(h, Role::Private, &f),
                XDP_PASS,
                kw_stat::KW_STAT_PASS_IPSEC,
            );
            // the child SA went down again: the gate closes
            h.set_ipsec_up(net, false).unwrap();
            let udp = udp(C1, 40001, Ipv4Addr::new(172, 16, 1, 9), 53);
            expect(
                &step(h, Role::Private, &udp),
                XDP_DROP,
                kw_stat::KW_STAT_DROP_IPSEC_DOWN,
            );
            // another subnet's gate does not open this one
            h.set_ipsec_up("172.16.2.0/24".parse().unwrap(), true)
                .unwrap();
            expect(
                &step(h, Role::Private, &f),
                XDP_DROP,
                kw_stat::KW_STAT_DROP_IPSEC_DOWN,
            );
        },
    );
}

#[test]
fn ike_and_esp_from_ipsec_peer_reach_gateway() {
    run("ike_and_esp_from_ipsec_peer_reach_gateway", |h| {
        let peer = world::IPSEC_PEER;
        for port in [500, 4500] {
            let f = frame(
                ANY_MAC,
                PUB_MAC,
                &Ip::new(peer, VIP),
                &L4::Udp {
                    sport: port,
                    dport: port,
                    zero_csum: false,
                },
                PAYLOAD,
            );
            expect(
                &step(h, Role::Public, &f),
                XDP_PASS,
                kw_stat::KW_STAT_PASS_TO_HOST,
            );
        }
        let esp = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(peer, VIP),
            &L4::Raw { proto: 50 },
            &[1u8; 32],
        );
        expect(
            &step(h, Role::Public, &esp),
            XDP_PASS,
            kw_stat::KW_STAT_PASS_TO_HOST,
        );
        let esp = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP),
            &L4::Raw { proto: 50 },
            &[1u8; 32],
        );
        expect(
            &step(h, Role::Public, &esp),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_INGRESS_DENIED,
        );
    });
}

// ---------------------------------------------------------------- VPC peering

#[test]
fn peering_egress_is_routed_without_nat() {
    run("peering_egress_is_routed_without_nat", |h| {
        let s = step(h, Role::Private, &tcp(C1, 40000, PEER, 5432, TcpFlags::SYN));
        expect_fwd(
            &s,
            &fwd(
                PER_MAC,
                PEER_MAC,
                C1,
                PEER,
                L4::Tcp {
                    sport: 40000,
                    dport: 5432,
                    flags: TcpFlags::SYN,
                },
            ),
        );
        let back = frame(
            ANY_MAC,
            PER_MAC,
            &Ip::new(PEER, C1),
            &L4::Tcp {
                sport: 5432,
                dport: 40000,
                flags: TcpFlags::SYN_ACK,
            },
            PAYLOAD,
        );
        let s = step(h, Role::Peering, &back);
        expect_fwd(
            &s,
            &fwd(
                PRV_MAC,
                C1_MAC,
                PEER,
                C1,
                L4::Tcp {
                    sport: 5432,
                    dport: 40000,
                    flags: TcpFlags::SYN_ACK,
                },
            ),
        );
    });
}

#[test]
fn peering_egress_policy_drop_without_rule() {
    run("peering_egress_policy_drop_without_rule", |h| {
        expect(
            &step(h, Role::Private, &udp(C1, 4000, PEER, 123)),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_PEERING_DENIED,
        );
        expect(
            &step(h, Role::Private, &udp(C1, 4000, PEER, 53)),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
    });
}

#[test]
fn peering_ingress_rules() {
    run("peering_ingress_rules", |h| {
        let f = |dport| {
            frame(
                ANY_MAC,
                PER_MAC,
                &Ip::new(PEER, C1),
                &L4::Tcp {
                    sport: 50000,
                    dport,
                    flags: TcpFlags::SYN,
                },
                PAYLOAD,
            )
        };
        let s = step(h, Role::Peering, &f(22));
        expect_fwd(
            &s,
            &fwd(
                PRV_MAC,
                C1_MAC,
                PEER,
                C1,
                L4::Tcp {
                    sport: 50000,
                    dport: 22,
                    flags: TcpFlags::SYN,
                },
            ),
        );
        expect(
            &step(h, Role::Peering, &f(80)),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_PEERING_DENIED,
        );
        // and the reply to the allowed one goes back untranslated
        let s = step(
            h,
            Role::Private,
            &tcp(C1, 22, PEER, 50000, TcpFlags::SYN_ACK),
        );
        expect_fwd(
            &s,
            &fwd(
                PER_MAC,
                PEER_MAC,
                C1,
                PEER,
                L4::Tcp {
                    sport: 22,
                    dport: 50000,
                    flags: TcpFlags::SYN_ACK,
                },
            ),
        );
    });
}

#[test]
fn peering_policy_accept_allows_everything() {
    let (mut cfg, tables) = world::config();
    cfg.peerings[0].policy = 0;
    run_with(
        "peering_policy_accept_allows_everything",
        (cfg, tables),
        |h| {
            let f = frame(
                ANY_MAC,
                PER_MAC,
                &Ip::new(PEER, C1),
                &L4::Udp {
                    sport: 50000,
                    dport: 9999,
                    zero_csum: false,
                },
                PAYLOAD,
            );
            expect(
                &step(h, Role::Peering, &f),
                XDP_REDIRECT,
                kw_stat::KW_STAT_FWD_REDIRECT,
            );
        },
    );
}

#[test]
fn peering_interface_rejects_foreign_sources() {
    run("peering_interface_rejects_foreign_sources", |h| {
        let f = frame(
            ANY_MAC,
            PER_MAC,
            &Ip::new(REMOTE, C1),
            &L4::Tcp {
                sport: 50000,
                dport: 22,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        expect(
            &step(h, Role::Peering, &f),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_SPOOFED,
        );
        let f = frame(
            ANY_MAC,
            PER_MAC,
            &Ip::new(PEER, SERVER),
            &L4::Tcp {
                sport: 50000,
                dport: 22,
                flags: TcpFlags::SYN,
            },
            PAYLOAD,
        );
        expect(
            &step(h, Role::Peering, &f),
            XDP_PASS,
            kw_stat::KW_STAT_PASS_NOT_OURS,
        );
    });
}

// ---------------------------------------------------------------- ICMP errors

#[test]
fn frag_needed_for_snat_flow_is_translated_for_pmtu() {
    run("frag_needed_for_snat_flow_is_translated_for_pmtu", |h| {
        let out = step(
            h,
            Role::Private,
            &tcp(C1, 40000, SERVER, 443, TcpFlags::SYN),
        );
        expect(&out, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        // a router on the way quotes the translated packet
        let router = Ipv4Addr::new(192, 0, 2, 1);
        let quoted = ip_packet(&out.data);
        let err = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(router, VIP),
            &L4::IcmpError {
                kind: frag_needed(1400),
                quoted,
            },
            &[],
        );
        let s = step(h, Role::Public, &err);
        // what the client sees: its own packet quoted, from the router
        let orig = tcp(C1, 40000, SERVER, 443, TcpFlags::SYN);
        let mut orig_quoted = ip_packet(&orig);
        orig_quoted[8] = 63; // the quoted packet had been forwarded once
        let ck = kowabunga_tests::model::csum::replace2(
            u16::from_be_bytes([orig_quoted[10], orig_quoted[11]]),
            u16::from_be_bytes([64, 6]),
            u16::from_be_bytes([63, 6]),
        );
        orig_quoted[10..12].copy_from_slice(&ck.to_be_bytes());
        let want = frame(
            PRV_MAC,
            C1_MAC,
            &Ip::new(router, C1).ttl(63),
            &L4::IcmpError {
                kind: frag_needed(1400),
                quoted: orig_quoted,
            },
            &[],
        );
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        assert_eq!(s.data, want);
    });
}

#[test]
fn time_exceeded_for_snat_udp_is_translated() {
    run("time_exceeded_for_snat_udp_is_translated", |h| {
        let out = step(h, Role::Private, &udp(C2, 33434, SERVER, 33435));
        let router = Ipv4Addr::new(192, 0, 2, 1);
        let err = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(router, VIP),
            &L4::IcmpError {
                kind: time_exceeded(),
                quoted: ip_packet(&out.data)[..28].to_vec(),
            },
            &[],
        );
        let s = step(h, Role::Public, &err);
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        verify_checksums(&s.data).unwrap();
        let inner = &s.data[14 + 20 + 8..];
        assert_eq!(&inner[12..16], &C2.octets(), "quoted source restored");
        assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), 33434);
        assert_eq!(
            kowabunga_tests::model::csum::checksum(&inner[..20]),
            0,
            "quoted IPv4 checksum valid"
        );
    });
}

#[test]
fn port_unreachable_from_dnat_target_leaves_as_vip() {
    run("port_unreachable_from_dnat_target_leaves_as_vip", |h| {
        let f = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(REMOTE, VIP),
            &L4::Udp {
                sport: 40000,
                dport: 5001,
                zero_csum: false,
            },
            PAYLOAD,
        );
        let inbound = step(h, Role::Public, &f);
        expect(&inbound, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        let err = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C2, REMOTE),
            &L4::IcmpError {
                kind: port_unreachable(),
                quoted: ip_packet(&inbound.data),
            },
            &[],
        );
        let s = step(h, Role::Private, &err);
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        verify_checksums(&s.data).unwrap();
        assert_eq!(&s.data[26..30], &VIP.octets(), "outer source is the VIP");
        let inner = &s.data[14 + 20 + 8..];
        assert_eq!(
            &inner[16..20],
            &VIP.octets(),
            "quoted destination is the VIP"
        );
    });
}

#[test]
fn icmp_error_about_an_echo_through_nat() {
    run("icmp_error_about_an_echo_through_nat", |h| {
        let req = frame(
            ANY_MAC,
            PRV_MAC,
            &Ip::new(C1, SERVER),
            &L4::Echo {
                request: true,
                id: 999,
                seq: 3,
            },
            PAYLOAD,
        );
        let out = step(h, Role::Private, &req);
        let router = Ipv4Addr::new(192, 0, 2, 1);
        let err = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(router, VIP),
            &L4::IcmpError {
                kind: time_exceeded(),
                quoted: ip_packet(&out.data),
            },
            &[],
        );
        let s = step(h, Role::Public, &err);
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        verify_checksums(&s.data).unwrap();
    });
}

#[test]
fn icmp_error_about_unknown_flow_is_dropped() {
    run("icmp_error_about_unknown_flow_is_dropped", |h| {
        let ghost = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(VIP, SERVER),
            &L4::Udp {
                sport: 1111,
                dport: 53,
                zero_csum: false,
            },
            PAYLOAD,
        );
        let err = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(SERVER, VIP),
            &L4::IcmpError {
                kind: port_unreachable(),
                quoted: ip_packet(&ghost),
            },
            &[],
        );
        expect(
            &step(h, Role::Public, &err),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_ICMP_UNMATCHED,
        );
    });
}

#[test]
fn truncated_icmp_error_is_dropped() {
    run("truncated_icmp_error_is_dropped", |h| {
        let err = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(SERVER, VIP),
            &L4::IcmpError {
                kind: port_unreachable(),
                quoted: vec![0x45, 0, 0, 20],
            },
            &[],
        );
        expect(
            &step(h, Role::Public, &err),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_MALFORMED_L4,
        );
    });
}

// ---------------------------------------------------------------- hairpin, reload

#[test]
fn hairpin_to_own_vip_is_full_nat() {
    run("hairpin_to_own_vip_is_full_nat", |h| {
        let s = step(h, Role::Private, &tcp(C2, 45000, VIP, 443, TcpFlags::SYN));
        expect_fwd(
            &s,
            &fwd(
                PRV_MAC,
                C1_MAC,
                VIP,
                C1,
                L4::Tcp {
                    sport: 45000,
                    dport: 443,
                    flags: TcpFlags::SYN,
                },
            ),
        );
        let s = step(
            h,
            Role::Private,
            &tcp(C1, 443, VIP, 45000, TcpFlags::SYN_ACK),
        );
        expect_fwd(
            &s,
            &fwd(
                PRV_MAC,
                C2_MAC,
                VIP,
                C2,
                L4::Tcp {
                    sport: 443,
                    dport: 45000,
                    flags: TcpFlags::SYN_ACK,
                },
            ),
        );
        // a non-dnat port of the VIP from inside is the gateway's
        expect(
            &step(h, Role::Private, &tcp(C2, 45000, VIP, 22, TcpFlags::SYN)),
            XDP_PASS,
            kw_stat::KW_STAT_PASS_TO_HOST,
        );
    });
}

#[test]
fn reload_keeps_established_flows() {
    run("reload_keeps_established_flows", |h| {
        expect(
            &step(
                h,
                Role::Private,
                &tcp(C1, 40000, SERVER, 443, TcpFlags::SYN),
            ),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        // new config: egress drop-all; the established flow continues both ways
        let (mut cfg, mut tables) = world::config();
        cfg.egress_policy = 1;
        tables[kw_table::KW_TABLE_EGRESS as usize].clear();
        h.apply(cfg, &tables).unwrap();
        expect(
            &step(
                h,
                Role::Private,
                &tcp(C1, 40000, SERVER, 443, TcpFlags::PSH_ACK),
            ),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        let reply = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(SERVER, VIP),
            &L4::Tcp {
                sport: 443,
                dport: 40000,
                flags: TcpFlags::PSH_ACK,
            },
            PAYLOAD,
        );
        expect(
            &step(h, Role::Public, &reply),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        expect(
            &step(
                h,
                Role::Private,
                &tcp(C1, 40001, SERVER, 443, TcpFlags::SYN),
            ),
            XDP_DROP,
            kw_stat::KW_STAT_DROP_EGRESS_DENIED,
        );
    });
}

#[test]
fn conntrack_state_follows_the_flow() {
    run("conntrack_state_follows_the_flow", |h| {
        use kowabunga_bindings::{kw_ct_key, kw_ct_state};
        step(
            h,
            Role::Private,
            &tcp(C1, 40000, SERVER, 443, TcpFlags::SYN),
        );
        let key = kw_ct_key {
            saddr: world::be(C1),
            daddr: world::be(SERVER),
            sport: 40000u16.to_be(),
            dport: 443u16.to_be(),
            proto: 6,
            ..Default::default()
        };
        let state = |h: &Harness| h.kawaii.conntrack_get(&key).unwrap().unwrap().state;
        assert_eq!(u32::from(state(h)), kw_ct_state::KW_CT_NEW);
        let reply = frame(
            ANY_MAC,
            PUB_MAC,
            &Ip::new(SERVER, VIP),
            &L4::Tcp {
                sport: 443,
                dport: 40000,
                flags: TcpFlags::SYN_ACK,
            },
            PAYLOAD,
        );
        step(h, Role::Public, &reply);
        assert_eq!(u32::from(state(h)), kw_ct_state::KW_CT_ESTABLISHED);
        step(
            h,
            Role::Private,
            &tcp(C1, 40000, SERVER, 443, TcpFlags::FIN_ACK),
        );
        assert_eq!(u32::from(state(h)), kw_ct_state::KW_CT_CLOSING);
        assert_eq!(
            h.kawaii.conntrack_entries().unwrap().len(),
            2,
            "two entries per flow"
        );
    });
}

// ---------------------------------------------------------------------
// Conntrack in two tables: embryonic (LRU) and confirmed (never evicted).
// ---------------------------------------------------------------------

/// A TCP frame arriving on the public side.
fn tcp_pub(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: TcpFlags) -> Vec<u8> {
    tcp_on(PUB_MAC, src, sport, dst, dport, flags)
}

/// A UDP frame arriving on the public side.
fn udp_pub(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    udp_on(PUB_MAC, src, sport, dst, dport)
}

/// (confirmed, embryonic) entries of the program, checked against the model.
fn tables_of(h: &Harness) -> (usize, usize) {
    use kowabunga_dataplane::kawaii::{MAP_CT4, MAP_CT4_NEW};
    let confirmed = h
        .kawaii
        .conntrack_table(MAP_CT4)
        .unwrap()
        .entries()
        .unwrap();
    let embryonic = h
        .kawaii
        .conntrack_table(MAP_CT4_NEW)
        .unwrap()
        .entries()
        .unwrap();
    let model = h.model.conntrack();
    assert_eq!(
        confirmed.len(),
        model.confirmed.len(),
        "confirmed: bpf vs model"
    );
    for (k, _) in &confirmed {
        let t = kowabunga_tests::model::flow::Tuple {
            saddr: u32::from_be(k.saddr),
            daddr: u32::from_be(k.daddr),
            sport: u16::from_be(k.sport),
            dport: u16::from_be(k.dport),
            proto: k.proto,
        };
        assert!(
            model.confirmed.contains_key(&t),
            "{t:?} confirmed in bpf only"
        );
    }
    (confirmed.len(), embryonic.len())
}

#[test]
fn flows_are_confirmed_when_the_initiator_hears_back() {
    run("flows_are_confirmed_when_the_initiator_hears_back", |h| {
        // TCP SNAT: SYN and SYN-ACK keep the flow embryonic, the ACK confirms it
        expect(
            &step(
                h,
                Role::Private,
                &tcp(C1, 40000, SERVER, 443, TcpFlags::SYN),
            ),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        assert_eq!(tables_of(h), (0, 2));
        let s = step(
            h,
            Role::Public,
            &tcp_pub(SERVER, 443, VIP, 40000, TcpFlags::SYN_ACK),
        );
        expect(&s, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        assert_eq!(tables_of(h), (0, 2), "a SYN-ACK alone confirms nothing");
        step(
            h,
            Role::Private,
            &tcp(C1, 40000, SERVER, 443, TcpFlags::ACK),
        );
        assert_eq!(tables_of(h), (2, 0), "both entries move together");
        // the confirmed flow keeps working both ways
        expect(
            &step(
                h,
                Role::Public,
                &tcp_pub(SERVER, 443, VIP, 40000, TcpFlags::PSH_ACK),
            ),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        expect(
            &step(
                h,
                Role::Private,
                &tcp(C1, 40000, SERVER, 443, TcpFlags::PSH_ACK),
            ),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        assert_eq!(tables_of(h), (2, 0));

        // TCP DNAT: same, the handshake's ACK comes from the Internet side
        step(
            h,
            Role::Public,
            &tcp_pub(REMOTE, 50000, VIP, 80, TcpFlags::SYN),
        );
        assert_eq!(tables_of(h), (2, 2));
        step(
            h,
            Role::Private,
            &tcp(C1, 80, REMOTE, 50000, TcpFlags::SYN_ACK),
        );
        assert_eq!(tables_of(h), (2, 2));
        step(
            h,
            Role::Public,
            &tcp_pub(REMOTE, 50000, VIP, 80, TcpFlags::ACK),
        );
        assert_eq!(tables_of(h), (4, 0));

        // UDP: the first reply confirms
        let out = step(h, Role::Private, &udp(C1, 5353, SERVER, 53));
        expect(&out, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        assert_eq!(tables_of(h), (4, 2));
        let nport = u16::from_be_bytes([out.data[34], out.data[35]]);
        expect(
            &step(h, Role::Public, &udp_pub(SERVER, 53, VIP, nport)),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        assert_eq!(tables_of(h), (6, 0));
        // FIN on a confirmed flow: closing, still confirmed
        step(
            h,
            Role::Private,
            &tcp(C1, 40000, SERVER, 443, TcpFlags::FIN_ACK),
        );
        assert_eq!(tables_of(h), (6, 0));
    });
}

#[test]
fn a_syn_flood_evicts_only_embryonic_flows() {
    if !privileged("a_syn_flood_evicts_only_embryonic_flows") {
        return;
    }
    let (cfg, tables) = world::config();
    let mut h = Harness::with_ct_entries(cfg, &tables, 256).unwrap();
    let h = &mut h;
    // one confirmed DNAT flow and one confirmed SNAT flow
    step(
        h,
        Role::Public,
        &tcp_pub(REMOTE, 50000, VIP, 80, TcpFlags::SYN),
    );
    step(
        h,
        Role::Private,
        &tcp(C1, 80, REMOTE, 50000, TcpFlags::SYN_ACK),
    );
    step(
        h,
        Role::Public,
        &tcp_pub(REMOTE, 50000, VIP, 80, TcpFlags::ACK),
    );
    step(
        h,
        Role::Private,
        &tcp(C1, 40000, SERVER, 443, TcpFlags::SYN),
    );
    step(
        h,
        Role::Public,
        &tcp_pub(SERVER, 443, VIP, 40000, TcpFlags::SYN_ACK),
    );
    step(
        h,
        Role::Private,
        &tcp(C1, 40000, SERVER, 443, TcpFlags::ACK),
    );
    assert_eq!(tables_of(h), (4, 0));
    // 4 x the table of spoofed SYNs to the DNAT port: all forwarded, the
    // LRU evicts embryonic entries only (the model does not evict: only
    // verdicts, counters and bytes are compared here)
    for i in 0..1024u32 {
        let src = Ipv4Addr::from(0x6400_0000 + i * 7 + 1);
        expect(
            &step(
                h,
                Role::Public,
                &tcp_pub(src, 1024 + (i as u16), VIP, 80, TcpFlags::SYN),
            ),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
    }
    let (confirmed, embryonic) = {
        use kowabunga_dataplane::kawaii::{MAP_CT4, MAP_CT4_NEW};
        (
            h.kawaii
                .conntrack_table(MAP_CT4)
                .unwrap()
                .entries()
                .unwrap()
                .len(),
            h.kawaii
                .conntrack_table(MAP_CT4_NEW)
                .unwrap()
                .entries()
                .unwrap()
                .len(),
        )
    };
    assert_eq!(confirmed, 4, "no confirmed entry evicted");
    assert!(embryonic <= 256, "{embryonic} embryonic entries");
    // both confirmed flows still translate, both ways
    for (role, f) in [
        (
            Role::Public,
            tcp_pub(REMOTE, 50000, VIP, 80, TcpFlags::PSH_ACK),
        ),
        (Role::Private, tcp(C1, 80, REMOTE, 50000, TcpFlags::PSH_ACK)),
        (
            Role::Private,
            tcp(C1, 40000, SERVER, 443, TcpFlags::PSH_ACK),
        ),
        (
            Role::Public,
            tcp_pub(SERVER, 443, VIP, 40000, TcpFlags::PSH_ACK),
        ),
    ] {
        expect(
            &step(h, role, &f),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
    }
}

#[test]
fn a_full_confirmed_table_keeps_its_flows_and_new_ones_stay_embryonic() {
    if !privileged("a_full_confirmed_table_keeps_its_flows_and_new_ones_stay_embryonic") {
        return;
    }
    let (cfg, tables) = world::config();
    let mut h = Harness::with_ct_entries(cfg, &tables, 64).unwrap();
    let h = &mut h;
    let flow = |h: &mut Harness, cport: u16| {
        let out = step(h, Role::Private, &udp(C1, cport, SERVER, 53));
        expect(&out, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        let nport = u16::from_be_bytes([out.data[34], out.data[35]]);
        let back = step(h, Role::Public, &udp_pub(SERVER, 53, VIP, nport));
        expect(&back, XDP_REDIRECT, kw_stat::KW_STAT_FWD_REDIRECT);
        nport
    };
    // 32 flows fill the 64 confirmed entries
    let ports: Vec<u16> = (0..32).map(|i| flow(h, 20000 + i)).collect();
    assert_eq!(tables_of(h), (64, 0));
    // the 33rd is answered and forwarded but cannot be confirmed: counted
    let before = h.counters().unwrap();
    let nport = flow(h, 30000);
    let delta = h.counters().unwrap().since(&before);
    assert_eq!(delta.packets(kw_stat::KW_STAT_CT_CONFIRM_FULL), 1);
    assert_eq!(tables_of(h), (64, 2));
    // it keeps working as an embryonic flow, and tries again (still full)
    expect(
        &step(h, Role::Public, &udp_pub(SERVER, 53, VIP, nport)),
        XDP_REDIRECT,
        kw_stat::KW_STAT_FWD_REDIRECT,
    );
    // every confirmed flow still translates
    for (i, p) in ports.iter().enumerate() {
        expect(
            &step(h, Role::Public, &udp_pub(SERVER, 53, VIP, *p)),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
        expect(
            &step(h, Role::Private, &udp(C1, 20000 + i as u16, SERVER, 53)),
            XDP_REDIRECT,
            kw_stat::KW_STAT_FWD_REDIRECT,
        );
    }
    assert_eq!(tables_of(h), (64, 2));
}
