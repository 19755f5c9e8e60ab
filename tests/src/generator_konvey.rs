//! Random Konvey traffic and service changes for the differential test.
//!
//! Frames come from small address and port pools around the
//! [`crate::fixture_konvey`] network so that services, round-robin turns,
//! port collisions, conntrack hits and replies happen often: new flows from
//! clients to the VIPs, replies to frames the program forwarded (from the
//! backend to the balancer's source, or from the client to the VIP),
//! untracked traffic to the source address (health-check replies), other
//! protocols, fragments, IP options, non-IPv4 frames. A share of all frames
//! is mangled (bytes flipped, truncated, header fields broken). Now and then
//! a service's rotation is replaced, or a service removed or added, or the
//! source port range changed.

use std::net::Ipv4Addr;

use kowabunga_dataplane::konvey::{Backend, KonveyConfig, Proto, ServiceKey};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::fixture_konvey::{
    backend, tcp_service, udp2_service, udp_service, BACKENDS, BACKEND_NO_NEIGH, CLIENTS,
    FRONT_ADDR, FRONT_MAC, REMOTE_CLIENT, SOURCE, TCP_BACKEND_PORT, UDP_BACKEND_PORT, VIP, VIP2,
};
use crate::generator::{icmp_error_about, mangle};
use crate::packets::{frame, Ip, TcpFlags, L4};

const VIP3: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 102);
const OTHER_CLIENTS: [Ipv4Addr; 3] = [
    REMOTE_CLIENT,
    Ipv4Addr::new(198, 51, 100, 8),
    Ipv4Addr::new(192, 0, 2, 77),
];
const PORTS: [u16; 14] = [
    80, 53, 5000, 443, 81, 8080, 5353, 1024, 40000, 40001, 40002, 40003, 50000, 65535,
];
const FLAGS: [TcpFlags; 6] = [
    TcpFlags::SYN,
    TcpFlags::SYN,
    TcpFlags::SYN,
    TcpFlags::SYN_ACK,
    TcpFlags::ACK,
    TcpFlags::PSH_ACK,
];
const LATER_FLAGS: [TcpFlags; 5] = [
    TcpFlags::SYN_ACK,
    TcpFlags::ACK,
    TcpFlags::PSH_ACK,
    TcpFlags::FIN_ACK,
    TcpFlags::RST,
];
const SRC_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];

/// What the differential test does next.
#[derive(Debug, Clone)]
pub enum Input {
    /// Run a frame.
    Frame(Vec<u8>),
    /// Create a service or replace its rotation.
    SetService(ServiceKey, Vec<Backend>),
    /// Remove a service.
    RemoveService(ServiceKey),
    /// Replace the balancer settings (another source port range).
    SetConfig(KonveyConfig),
}

/// Generator state: frames forwarded so far, to answer them.
#[derive(Debug, Default)]
pub struct KonveyGenerator {
    forwarded: Vec<Vec<u8>>,
}

/// Every service key the generator programs (the standard three, plus a
/// TCP service on the same VIP and one on a VIP of its own).
pub fn service_keys() -> [ServiceKey; 5] {
    [
        tcp_service(),
        udp_service(),
        udp2_service(),
        ServiceKey {
            vip: VIP,
            proto: Proto::Tcp,
            port: 443,
        },
        ServiceKey {
            vip: VIP3,
            proto: Proto::Tcp,
            port: 80,
        },
    ]
}

fn pick<T: Copy>(rng: &mut impl Rng, pool: &[T]) -> T {
    *pool.choose(rng).expect("non-empty pool")
}

fn port(rng: &mut impl Rng) -> u16 {
    if rng.random_bool(0.8) {
        pick(rng, &PORTS)
    } else {
        rng.random_range(1..=65535)
    }
}

fn client(rng: &mut impl Rng) -> Ipv4Addr {
    match rng.random_range(0..10) {
        0..=5 => CLIENTS[rng.random_range(0..CLIENTS.len())].0,
        6..=8 => pick(rng, &OTHER_CLIENTS),
        _ => {
            let first = rng.random_range(1..=223u8);
            let first = if first == 127 { 126 } else { first };
            Ipv4Addr::new(first, rng.random(), rng.random(), rng.random())
        }
    }
}

fn backend_addr(rng: &mut impl Rng) -> Ipv4Addr {
    if rng.random_bool(0.9) {
        BACKENDS[rng.random_range(0..BACKENDS.len())].0
    } else {
        BACKEND_NO_NEIGH
    }
}

fn destination(rng: &mut impl Rng) -> Ipv4Addr {
    match rng.random_range(0..20) {
        0..=10 => VIP,
        11..=13 => VIP2,
        14 => VIP3,
        15..=16 => SOURCE,
        17 => FRONT_ADDR,
        18 => backend_addr(rng),
        _ => client(rng),
    }
}

fn random_rotation(rng: &mut impl Rng) -> Vec<Backend> {
    let n = match rng.random_range(0..10) {
        0 => 0,
        1..=2 => 1,
        3..=5 => 2,
        6..=8 => 3,
        _ => 4,
    };
    let mut pool: Vec<Backend> = (0..BACKENDS.len())
        .map(|i| backend(i, TCP_BACKEND_PORT))
        .chain((0..BACKENDS.len()).map(|i| backend(i, UDP_BACKEND_PORT)))
        .chain([Backend {
            addr: BACKEND_NO_NEIGH,
            port: TCP_BACKEND_PORT,
        }])
        .collect();
    pool.shuffle(rng);
    pool.truncate(n);
    pool
}

impl KonveyGenerator {
    /// Remember what the program did with a frame (forwarded frames can be
    /// answered later).
    pub fn observe(&mut self, verdict: u32, out: &[u8]) {
        if verdict == crate::model::XDP_REDIRECT && out.len() >= 38 {
            if self.forwarded.len() >= 256 {
                self.forwarded.swap_remove(0);
            }
            self.forwarded.push(out.to_vec());
        }
    }

    /// The next input.
    pub fn next(&mut self, rng: &mut impl Rng) -> Input {
        let roll = rng.random_range(0..1000);
        if roll < 2 {
            let keys = service_keys();
            return Input::RemoveService(pick(rng, &keys));
        }
        if roll < 6 {
            let keys = service_keys();
            return Input::SetService(pick(rng, &keys), random_rotation(rng));
        }
        if roll < 7 && rng.random_bool(0.5) {
            let (port_min, port_max) = pick(rng, &[(1024, 65535), (40000, 40003), (40000, 40000)]);
            let [s2, s3] = crate::fixture_konvey::SOURCES_MORE;
            let sources = match rng.random_range(0..3) {
                0 => vec![crate::fixture_konvey::SOURCE],
                1 => vec![crate::fixture_konvey::SOURCE, s2],
                _ => vec![s3, crate::fixture_konvey::SOURCE, s2],
            };
            return Input::SetConfig(KonveyConfig {
                port_min,
                port_max,
                sources,
                ..crate::fixture_konvey::config()
            });
        }
        let mut f = if roll < 310 && !self.forwarded.is_empty() {
            self.reply(rng)
        } else if roll < 350 && !self.forwarded.is_empty() {
            self.icmp_error(rng)
        } else if roll < 400 {
            self.health_reply(rng)
        } else if roll < 415 {
            other_ethertype(rng)
        } else {
            self.fresh(rng)
        };
        if rng.random_range(0..100) < 8 {
            mangle(rng, &mut f);
        }
        Input::Frame(f)
    }

    fn fresh(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        let mut ip = Ip::new(client(rng), destination(rng));
        ip.ttl = match rng.random_range(0..20) {
            0 => 1,
            1 => 0,
            2 => 2,
            _ => 64,
        };
        ip.df = rng.random_bool(0.8);
        match rng.random_range(0..40) {
            0 => ip.mf = true,
            1 => ip.frag_offset = rng.random_range(1..200),
            2 => ip.options = vec![1, 1, 1, 0],
            _ => {}
        }
        let l4 = match rng.random_range(0..20) {
            0..=9 => L4::Tcp {
                sport: port(rng),
                dport: port(rng),
                flags: pick(rng, &FLAGS),
            },
            10..=15 => L4::Udp {
                sport: port(rng),
                dport: port(rng),
                zero_csum: rng.random_bool(0.1),
            },
            16..=17 => L4::Echo {
                request: rng.random_bool(0.8),
                id: port(rng),
                seq: rng.random(),
            },
            18 => L4::IcmpError {
                kind: crate::packets::port_unreachable(),
                quoted: vec![0x45; 28],
            },
            _ => L4::Raw {
                proto: pick(rng, &[47u8, 50, 132]),
            },
        };
        let len = if rng.random_range(0..50) == 0 {
            rng.random_range(1400..1600)
        } else {
            rng.random_range(0..48)
        };
        let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        frame(SRC_MAC, FRONT_MAC, &ip, &l4, &payload)
    }

    /// An ICMP error quoting a forwarded frame, from its destination or a
    /// router, to where the frame came from (the balancer's source or a VIP).
    fn icmp_error(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        let out = self.forwarded.choose(rng).expect("non-empty").clone();
        let from = if rng.random_bool(0.5) {
            Ipv4Addr::new(out[30], out[31], out[32], out[33])
        } else {
            Ipv4Addr::new(192, 0, 2, rng.random_range(1..4))
        };
        icmp_error_about(rng, &out, from, FRONT_MAC)
    }

    /// A reply to a forwarded frame: addresses and ports swapped (the
    /// backend answering the balancer, or the client sending on).
    fn reply(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        let out = self.forwarded.choose(rng).expect("non-empty").clone();
        let src = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
        let dst = Ipv4Addr::new(out[26], out[27], out[28], out[29]);
        let proto = out[23];
        let sp = u16::from_be_bytes([out[36], out[37]]);
        let dp = u16::from_be_bytes([out[34], out[35]]);
        let l4 = match proto {
            6 => L4::Tcp {
                sport: sp,
                dport: dp,
                flags: pick(rng, &LATER_FLAGS),
            },
            _ => L4::Udp {
                sport: sp,
                dport: dp,
                zero_csum: rng.random_bool(0.1),
            },
        };
        let mut ip = Ip::new(src, dst);
        if rng.random_range(0..30) == 0 {
            ip.ttl = 1;
        }
        let payload: Vec<u8> = (0..rng.random_range(0..32)).map(|_| rng.random()).collect();
        frame(SRC_MAC, FRONT_MAC, &ip, &l4, &payload)
    }

    /// Untracked traffic from a backend to the balancer's source address:
    /// health-check replies and the host's own connections.
    fn health_reply(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        let ip = Ip::new(backend_addr(rng), SOURCE);
        let bport = pick(rng, &[TCP_BACKEND_PORT, UDP_BACKEND_PORT]);
        let l4 = if rng.random_bool(0.6) {
            L4::Tcp {
                sport: bport,
                dport: port(rng),
                flags: pick(rng, &LATER_FLAGS),
            }
        } else {
            L4::Udp {
                sport: bport,
                dport: port(rng),
                zero_csum: false,
            }
        };
        frame(SRC_MAC, FRONT_MAC, &ip, &l4, b"health")
    }
}

/// ARP or IPv6.
fn other_ethertype(rng: &mut impl Rng) -> Vec<u8> {
    let mut f = Vec::new();
    if rng.random_bool(0.5) {
        etherparse::PacketBuilder::ethernet2(SRC_MAC, FRONT_MAC)
            .ipv6(
                [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(1000, 53)
            .write(&mut f, b"v6")
            .expect("write IPv6");
    } else {
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&SRC_MAC);
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend((0..28).map(|_| rng.random::<u8>()));
    }
    f
}
