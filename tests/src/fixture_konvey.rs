//! The network Konvey's `BPF_PROG_TEST_RUN` fixtures run in.
//!
//! As for [`crate::fixture_net`], the calling thread moves into a fresh
//! network namespace (`bpf_fib_lookup` answers from it). The balancer gets
//! two veth links with fixed MACs: `front0` (10.20.0.5/24) where clients
//! live, with a router 10.20.0.1 as default gateway, and `back0`
//! (10.20.1.5/24, the balancer's source address) where the backends live.
//! Clients, the router and three backends are permanent neighbours, so
//! lookups succeed with exact MACs; [`BACKEND_NO_NEIGH`] has no neighbour
//! entry (the kernel must resolve it). The matching [`FibModel`] is built
//! alongside. The namespace disappears with the thread.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use anyhow::Result;
use ipnet::Ipv4Net;
use kowabunga_dataplane::konvey::{Backend, KonveyConfig, Proto, ServiceKey};

use crate::fixture_net;
use crate::model::fib::{FibModel, Route};

/// MAC of the balancer's client-side interface `front0`.
pub const FRONT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x01];
/// MAC of the balancer's backend-side interface `back0`.
pub const BACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x02];
/// The router on the client side, the default gateway.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
/// MAC of [`ROUTER`].
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x20, 0x01];
/// The balancer's client-side address.
pub const FRONT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 5);
/// The balancer's own address on the backend side: the source of
/// translated flows (`snat_ip`).
pub const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
/// The VIP of the TCP and UDP services.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 100);
/// Second and third full-NAT source addresses (configs with several).
pub const SOURCES_MORE: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 20, 1, 6), Ipv4Addr::new(10, 20, 1, 7)];
/// A second VIP, with one UDP service.
pub const VIP2: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 101);
/// Clients on the `front0` link, with their MACs.
pub const CLIENTS: [(Ipv4Addr, [u8; 6]); 2] = [
    (Ipv4Addr::new(10, 20, 0, 50), [0x02, 0, 0, 0, 0x20, 0x50]),
    (Ipv4Addr::new(10, 20, 0, 51), [0x02, 0, 0, 0, 0x20, 0x51]),
];
/// A client behind the router.
pub const REMOTE_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// Backends on the `back0` link, with their MACs.
pub const BACKENDS: [(Ipv4Addr, [u8; 6]); 3] = [
    (Ipv4Addr::new(10, 20, 1, 11), [0x02, 0, 0, 0, 0x21, 0x11]),
    (Ipv4Addr::new(10, 20, 1, 12), [0x02, 0, 0, 0, 0x21, 0x12]),
    (Ipv4Addr::new(10, 20, 1, 13), [0x02, 0, 0, 0, 0x21, 0x13]),
];
/// A backend address without a neighbour entry.
pub const BACKEND_NO_NEIGH: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 14);
/// TCP service port on [`VIP`].
pub const TCP_PORT: u16 = 80;
/// UDP service port on [`VIP`].
pub const UDP_PORT: u16 = 53;
/// UDP service port on [`VIP2`].
pub const UDP2_PORT: u16 = 5000;
/// Port the TCP service is translated to.
pub const TCP_BACKEND_PORT: u16 = 8080;
/// Port the UDP services are translated to.
pub const UDP_BACKEND_PORT: u16 = 5353;
/// Device MTU of every fixture link.
pub const MTU: u16 = 1500;

/// The balancer settings of the fixtures: source [`SOURCE`], the whole
/// unprivileged port range, every drop sampled.
pub fn config() -> KonveyConfig {
    KonveyConfig {
        sources: vec![SOURCE],
        port_min: 1024,
        port_max: 65535,
        sample_shift: 0,
    }
}

/// The TCP service `VIP:80`.
pub fn tcp_service() -> ServiceKey {
    ServiceKey {
        vip: VIP,
        proto: Proto::Tcp,
        port: TCP_PORT,
    }
}

/// The UDP service `VIP:53`.
pub fn udp_service() -> ServiceKey {
    ServiceKey {
        vip: VIP,
        proto: Proto::Udp,
        port: UDP_PORT,
    }
}

/// The UDP service `VIP2:5000`.
pub fn udp2_service() -> ServiceKey {
    ServiceKey {
        vip: VIP2,
        proto: Proto::Udp,
        port: UDP2_PORT,
    }
}

/// Backend `i` of [`BACKENDS`] on `port`.
pub fn backend(i: usize, port: u16) -> Backend {
    Backend {
        addr: BACKENDS[i].0,
        port,
    }
}

/// The three backends of [`BACKENDS`], in order, on `port`.
pub fn rotation(port: u16) -> Vec<Backend> {
    (0..BACKENDS.len()).map(|i| backend(i, port)).collect()
}

/// The services every fixture starts with: TCP `VIP:80` and UDP `VIP:53`
/// over the three backends, UDP `VIP2:5000` over backend 0 and the
/// backend without a neighbour.
pub fn services() -> Vec<(ServiceKey, Vec<Backend>)> {
    vec![
        (tcp_service(), rotation(TCP_BACKEND_PORT)),
        (udp_service(), rotation(UDP_BACKEND_PORT)),
        (
            udp2_service(),
            vec![
                backend(0, UDP_BACKEND_PORT),
                Backend {
                    addr: BACKEND_NO_NEIGH,
                    port: UDP_BACKEND_PORT,
                },
            ],
        ),
    ]
}

/// The MAC of a neighbour of the fixture network.
pub fn mac_of(addr: Ipv4Addr) -> Option<[u8; 6]> {
    CLIENTS
        .iter()
        .chain(BACKENDS.iter())
        .chain(std::iter::once(&(ROUTER, ROUTER_MAC)))
        .find(|(a, _)| *a == addr)
        .map(|(_, m)| *m)
}

/// What `bpf_fib_lookup` answers in the Konvey fixture network (the model
/// half of [`KonveyNet`], usable without privileges).
pub fn fib_model() -> FibModel {
    let net = |s: &str| -> Ipv4Net { s.parse().expect("static prefix") };
    FibModel {
        routes: vec![
            Route {
                dst: net("0.0.0.0/0"),
                via: Some(ROUTER),
                dev_mac: FRONT_MAC,
                mtu: MTU,
            },
            Route {
                dst: net("10.20.0.0/24"),
                via: None,
                dev_mac: FRONT_MAC,
                mtu: MTU,
            },
            Route {
                dst: net("10.20.1.0/24"),
                via: None,
                dev_mac: BACK_MAC,
                mtu: MTU,
            },
        ],
        neighbours: CLIENTS
            .iter()
            .chain(BACKENDS.iter())
            .chain(std::iter::once(&(ROUTER, ROUTER_MAC)))
            .copied()
            .collect::<HashMap<_, _>>(),
        local: [
            FRONT_ADDR,
            SOURCE,
            Ipv4Addr::new(10, 20, 0, 255),
            Ipv4Addr::new(10, 20, 1, 255),
        ]
        .into_iter()
        .map(Ipv4Net::from)
        .chain([net("127.0.0.0/8")])
        .collect(),
        forward6: Vec::new(),
        local6: Vec::new(),
    }
}

/// The Konvey fixture network of the calling thread.
#[derive(Debug)]
pub struct KonveyNet {
    fib: FibModel,
}

impl KonveyNet {
    /// Move the calling thread into a new network namespace and build the
    /// fixture links in it. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
    pub fn enter() -> Result<Self> {
        let mut neigh = vec![(ROUTER, ROUTER_MAC, "front0")];
        neigh.extend(CLIENTS.iter().map(|(a, m)| (*a, *m, "front0")));
        neigh.extend(BACKENDS.iter().map(|(a, m)| (*a, *m, "back0")));
        fixture_net::build(
            "Konvey fixture network",
            &[
                ("front0", "front1", FRONT_MAC, "10.20.0.5/24"),
                ("back0", "back1", BACK_MAC, "10.20.1.5/24"),
            ],
            (ROUTER, "front0"),
            &neigh,
        )?;
        Ok(Self { fib: fib_model() })
    }

    /// What `bpf_fib_lookup` answers in this network.
    pub fn fib_model(&self) -> FibModel {
        self.fib.clone()
    }
}
