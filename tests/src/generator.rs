//! Random Kawaii traffic for the differential test.
//!
//! Packets are drawn from small address and port pools around the
//! [`crate::world`] configuration so that rules, conntrack hits, port
//! collisions and replies happen often. Replies and ICMP errors are made
//! from frames the program actually forwarded; a share of all frames is then
//! mangled (bytes flipped, truncated, header fields broken) to exercise
//! every malformed-packet path.

use std::net::Ipv4Addr;

use kowabunga_dataplane::Role;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::fixture_net::{PER_MAC, PRV_MAC, PUB_MAC};
use crate::packets::{frag_needed, frame, port_unreachable, time_exceeded, Ip, TcpFlags, L4};

const PRIVATE: [[u8; 4]; 6] = [
    [10, 0, 0, 10],
    [10, 0, 0, 11],
    [10, 0, 0, 12],
    [10, 0, 0, 13],
    [10, 0, 0, 1],
    [10, 0, 0, 127],
];
const INTERNET: [[u8; 4]; 6] = [
    [198, 51, 100, 1],
    [198, 51, 100, 7],
    [192, 0, 2, 77],
    [5, 6, 7, 8],
    [203, 0, 113, 1],
    [203, 0, 113, 2],
];
const VIPS: [[u8; 4]; 2] = [[203, 0, 113, 10], [203, 0, 113, 11]];
const PEERS: [[u8; 4]; 2] = [[10, 1, 0, 5], [10, 1, 0, 6]];
const OTHER: [[u8; 4]; 5] = [
    [172, 16, 1, 5],
    [224, 0, 0, 5],
    [255, 255, 255, 255],
    [10, 9, 9, 9],
    [10, 1, 0, 1],
];
const PORTS: [u16; 14] = [
    22, 25, 53, 80, 443, 500, 4500, 5005, 8080, 9999, 1024, 2000, 40000, 40001,
];
const FLAGS: [TcpFlags; 6] = [
    TcpFlags::SYN,
    TcpFlags::SYN,
    TcpFlags::SYN_ACK,
    TcpFlags::ACK,
    TcpFlags::PSH_ACK,
    TcpFlags::FIN_ACK,
];
const SRC_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];

/// A frame and the role of the interface it arrives on.
#[derive(Debug, Clone)]
pub struct Input {
    /// Arrival role.
    pub role: Role,
    /// The frame.
    pub frame: Vec<u8>,
}

/// Generator state: frames forwarded so far, to answer them.
#[derive(Debug, Default)]
pub struct Generator {
    forwarded: Vec<(Role, Vec<u8>)>,
}

fn addr(rng: &mut impl Rng, pool: &[[u8; 4]]) -> Ipv4Addr {
    Ipv4Addr::from(*pool.choose(rng).expect("non-empty pool"))
}

fn any_addr(rng: &mut impl Rng) -> Ipv4Addr {
    match rng.random_range(0..10) {
        0..=2 => addr(rng, &PRIVATE),
        3..=5 => addr(rng, &INTERNET),
        6 => addr(rng, &VIPS),
        7 => addr(rng, &PEERS),
        8 => addr(rng, &OTHER),
        _ => {
            // anything routable: not 0/8, not 127/8
            let first = rng.random_range(1..=223u8);
            let first = if first == 127 { 126 } else { first };
            Ipv4Addr::new(first, rng.random(), rng.random(), rng.random())
        }
    }
}

/// `n` random rules around the generator's addresses and ports, for large
/// tables: prefixes of every length over the address pools (a `/0`
/// rarely), protocols any / ICMP / TCP / UDP / ESP, single ports and ranges.
pub fn random_rules(rng: &mut impl Rng, n: usize) -> Vec<kowabunga_bindings::kw_rule> {
    (0..n)
        .map(|_| {
            let len: u32 = match rng.random_range(0..100) {
                0 => 0,
                1..=10 => *[8u32, 16].choose(rng).expect("lens"),
                11..=30 => rng.random_range(17..=31),
                31..=60 => 24,
                _ => 32,
            };
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            let base = u32::from(if rng.random_bool(0.5) {
                any_addr(rng)
            } else {
                Ipv4Addr::new(100, 64, rng.random(), rng.random())
            });
            let lo = port(rng);
            // wide ranges on short prefixes only rarely: each is copied into
            // every longer prefix under it (see dataplane kawaii::index)
            let hi = match rng.random_range(0..if len < 24 { 8 } else { 10 }) {
                0..=5 => lo,
                6..=7 => lo.saturating_add(rng.random_range(1..=10)),
                8 => lo.saturating_add(rng.random_range(1..=5000)),
                _ => 65535,
            };
            kowabunga_bindings::kw_rule {
                cidr: kowabunga_bindings::kw_cidr {
                    addr: (base & mask).to_be(),
                    mask: mask.to_be(),
                },
                port_lo: lo,
                port_hi: hi,
                proto: *[0u8, 1, 6, 6, 17, 17, 50].choose(rng).expect("protos"),
                ..Default::default()
            }
        })
        .collect()
}

/// A global IPv6 source around the IPv6 ingress rules of the world
/// (2001:db8:1::/48, 2001:db8::/32) and outside them.
fn any_addr6(rng: &mut impl Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..6].copy_from_slice(match rng.random_range(0..4) {
        0 => &[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01],
        1 => &[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02],
        2 => &[0x20, 0x01, 0x0d, 0xb9, 0x00, 0x01],
        _ => &[0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff],
    });
    a[15] = rng.random();
    a
}

/// `n` random IPv6 rules of firewall.ingress around [`any_addr6`]: prefix
/// lengths 0-128, protocols any / TCP / UDP / ICMPv6, ports and ranges.
pub fn random_rules6(rng: &mut impl Rng, n: usize) -> Vec<kowabunga_bindings::kw_rule6> {
    (0..n)
        .map(|_| {
            let len: u32 = match rng.random_range(0..100) {
                0 => 0,
                1..=20 => *[16u32, 32, 47].choose(rng).expect("lens"),
                21..=60 => 48,
                _ => rng.random_range(49..=128),
            };
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            let lo = port(rng);
            let hi = match rng.random_range(0..if len < 48 { 8 } else { 10 }) {
                0..=5 => lo,
                6..=7 => lo.saturating_add(rng.random_range(1..=10)),
                8 => lo.saturating_add(rng.random_range(1..=5000)),
                _ => 65535,
            };
            kowabunga_bindings::kw_rule6 {
                addr: (u128::from_be_bytes(any_addr6(rng)) & mask).to_be_bytes(),
                prefix_len: len as u8,
                proto: *[0u8, 6, 6, 17, 17, 58].choose(rng).expect("protos"),
                port_lo: lo,
                port_hi: hi,
                ..Default::default()
            }
        })
        .collect()
}

fn port(rng: &mut impl Rng) -> u16 {
    if rng.random_bool(0.8) {
        *PORTS.choose(rng).expect("ports")
    } else {
        rng.random_range(1..=65535)
    }
}

fn role_of_mac(mac: &[u8]) -> Role {
    if mac == PUB_MAC {
        Role::Public
    } else if mac == PER_MAC {
        Role::Peering
    } else {
        Role::Private
    }
}

fn mac_of(role: Role) -> [u8; 6] {
    match role {
        Role::Public => PUB_MAC,
        Role::Private => PRV_MAC,
        Role::Peering => PER_MAC,
    }
}

impl Generator {
    /// Remember what the program did with a frame (forwarded frames can be
    /// answered later).
    pub fn observe(&mut self, verdict: u32, out: &[u8]) {
        if verdict == crate::model::XDP_REDIRECT && out.len() >= 34 {
            let role = role_of_mac(&out[6..12]);
            if self.forwarded.len() >= 256 {
                self.forwarded.swap_remove(0);
            }
            self.forwarded.push((role, out.to_vec()));
        }
    }

    /// The next input.
    pub fn next(&mut self, rng: &mut impl Rng) -> Input {
        let roll = rng.random_range(0..100);
        let mut input = if roll < 35 && !self.forwarded.is_empty() {
            self.reply(rng)
        } else if roll < 40 && !self.forwarded.is_empty() {
            self.icmp_error(rng)
        } else if roll < 43 {
            ipv6(rng)
        } else {
            self.fresh(rng)
        };
        if rng.random_range(0..100) < 8 {
            mangle(rng, &mut input.frame);
        }
        input
    }

    fn fresh(&mut self, rng: &mut impl Rng) -> Input {
        let role = match rng.random_range(0..10) {
            0..=4 => Role::Private,
            5..=8 => Role::Public,
            _ => Role::Peering,
        };
        let (src, dst) = match role {
            Role::Private => (
                if rng.random_bool(0.9) {
                    addr(rng, &PRIVATE[..4])
                } else {
                    any_addr(rng)
                },
                any_addr(rng),
            ),
            Role::Public => (
                any_addr(rng),
                if rng.random_bool(0.8) {
                    addr(rng, &VIPS)
                } else {
                    any_addr(rng)
                },
            ),
            Role::Peering => (
                if rng.random_bool(0.85) {
                    addr(rng, &PEERS)
                } else {
                    any_addr(rng)
                },
                if rng.random_bool(0.85) {
                    addr(rng, &PRIVATE[..4])
                } else {
                    any_addr(rng)
                },
            ),
        };
        let mut ip = Ip::new(src, dst);
        ip.ttl = match rng.random_range(0..20) {
            0 => 1,
            1 => 0,
            2 => 2,
            _ => 64,
        };
        ip.df = rng.random_bool(0.8);
        let l4 = match rng.random_range(0..20) {
            0..=8 => L4::Tcp {
                sport: port(rng),
                dport: port(rng),
                flags: *FLAGS.choose(rng).expect("flags"),
            },
            9..=14 => L4::Udp {
                sport: port(rng),
                dport: port(rng),
                zero_csum: rng.random_bool(0.1),
            },
            15..=17 => L4::Echo {
                request: rng.random_bool(0.8),
                id: port(rng),
                seq: rng.random(),
            },
            18 => L4::IcmpOther {
                kind: etherparse::Icmpv4Type::Unknown {
                    type_u8: 13,
                    code_u8: 0,
                    bytes5to8: [0; 4],
                },
            },
            _ => L4::Raw {
                proto: *[47u8, 50, 132].choose(rng).expect("protos"),
            },
        };
        let len = if rng.random_range(0..50) == 0 {
            rng.random_range(1400..1600)
        } else {
            rng.random_range(0..48)
        };
        let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        Input {
            role,
            frame: frame(SRC_MAC, mac_of(role), &ip, &l4, &payload),
        }
    }

    /// A reply to a forwarded frame: addresses and ports swapped, arriving
    /// on the interface the frame left through.
    fn reply(&mut self, rng: &mut impl Rng) -> Input {
        let (role, out) = self.forwarded.choose(rng).expect("non-empty").clone();
        let src = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
        let dst = Ipv4Addr::new(out[26], out[27], out[28], out[29]);
        let proto = out[23];
        let sp = u16::from_be_bytes([out[36], out[37]]);
        let dp = u16::from_be_bytes([out[34], out[35]]);
        let l4 = match proto {
            6 => L4::Tcp {
                sport: sp,
                dport: dp,
                flags: *FLAGS[2..].choose(rng).expect("flags"),
            },
            17 => L4::Udp {
                sport: sp,
                dport: dp,
                zero_csum: false,
            },
            _ => L4::Echo {
                request: false,
                id: u16::from_be_bytes([out[38], out[39]]),
                seq: 1,
            },
        };
        let payload: Vec<u8> = (0..rng.random_range(0..32)).map(|_| rng.random()).collect();
        Input {
            role,
            frame: frame(SRC_MAC, mac_of(role), &Ip::new(src, dst), &l4, &payload),
        }
    }

    /// An ICMP error quoting a forwarded frame, from its destination or a
    /// router, arriving where that frame left.
    fn icmp_error(&mut self, rng: &mut impl Rng) -> Input {
        let (role, out) = self.forwarded.choose(rng).expect("non-empty").clone();
        let quoted_dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
        let from = if rng.random_bool(0.5) {
            quoted_dst
        } else {
            addr(rng, &INTERNET)
        };
        Input {
            role,
            frame: icmp_error_about(rng, &out, from, mac_of(role)),
        }
    }
}

/// An IPv6 datagram on any side, to a link-local, multicast or global
/// destination (only the first two stay for the host on the project side),
/// from a link-local or a global source: UDP, a TCP SYN or an ICMPv6 echo
/// request, to the ports of the world's IPv6 ingress rules or others.
fn ipv6(rng: &mut impl Rng) -> Input {
    let role = *[Role::Private, Role::Public, Role::Peering]
        .choose(rng)
        .expect("role");
    let dst: [u8; 16] = match rng.random_range(0..4) {
        0 => [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        1 => [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        2 => [0xfe, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], // site-local: not link-local
        _ => [
            0x20,
            0x01,
            0x0d,
            0xb8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            rng.random(),
        ],
    };
    let src = if rng.random_bool(0.3) {
        let mut a = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        a[15] = rng.random();
        a
    } else {
        any_addr6(rng)
    };
    let dport = if rng.random_bool(0.5) {
        *[8022u16, 8023, 5353, 5360, 5361, 22]
            .choose(rng)
            .expect("ports")
    } else {
        port(rng)
    };
    let b = etherparse::PacketBuilder::ethernet2(SRC_MAC, mac_of(role)).ipv6(src, dst, 64);
    let mut frame = Vec::new();
    match rng.random_range(0..3) {
        0 => b.udp(rng.random(), dport).write(&mut frame, &[0u8; 8]),
        1 => b
            .tcp(rng.random(), dport, rng.random(), 65535)
            .syn()
            .write(&mut frame, &[0u8; 8]),
        _ => b
            .icmpv6(etherparse::Icmpv6Type::EchoRequest(
                etherparse::IcmpEchoHeader {
                    id: rng.random(),
                    seq: 1,
                },
            ))
            .write(&mut frame, &[0u8; 8]),
    }
    .expect("IPv6 frame");
    Input { role, frame }
}

/// Break a frame in one of several ways (shared by the Kawaii and Konvey
/// generators).
pub(crate) fn mangle(rng: &mut impl Rng, f: &mut Vec<u8>) {
    match rng.random_range(0..8) {
        0 => {
            let i = rng.random_range(0..f.len());
            f[i] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let keep = rng.random_range(14..=f.len());
            f.truncate(keep);
        }
        2 if f.len() > 14 => f[14] = rng.random(), // version / ihl
        3 if f.len() > 17 => {
            let v: u16 = rng.random_range(0..200);
            f[16..18].copy_from_slice(&v.to_be_bytes()); // tot_len
        }
        4 if f.len() > 21 => f[20] |= *[0x20u8, 0x01, 0x3f].choose(rng).expect("frag"),
        5 => f.extend((0..rng.random_range(1..16)).map(|_| rng.random::<u8>())),
        6 if f.len() > 23 => f[23] = *[1u8, 6, 17, 47].choose(rng).expect("proto"), // protocol
        _ => {
            let i = rng.random_range(0..f.len());
            f[i] = rng.random();
        }
    }
}

/// An ICMP error (port unreachable, time exceeded or fragmentation needed)
/// quoting the forwarded frame `out` (whole, 28 bytes or a truncated header),
/// sent from `from` to the quoted packet's source, on a link to `dst_mac`.
pub(crate) fn icmp_error_about(
    rng: &mut impl Rng,
    out: &[u8],
    from: Ipv4Addr,
    dst_mac: [u8; 6],
) -> Vec<u8> {
    let quoted_src = Ipv4Addr::new(out[26], out[27], out[28], out[29]);
    let kind = match rng.random_range(0..3) {
        0 => port_unreachable(),
        1 => time_exceeded(),
        _ => frag_needed(1400),
    };
    let quoted_len = match rng.random_range(0..3) {
        0 => 28,
        1 => 20 + rng.random_range(0..8),
        _ => out.len() - 14,
    };
    let quoted = out[14..14 + quoted_len.min(out.len() - 14)].to_vec();
    frame(
        SRC_MAC,
        dst_mac,
        &Ip::new(from, quoted_src),
        &L4::IcmpError { kind, quoted },
        &[],
    )
}
