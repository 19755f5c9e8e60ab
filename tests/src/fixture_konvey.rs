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
use std::process::Command;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use kowabunga_dataplane::konvey::{Backend, KonveyConfig, Proto, ServiceKey};

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

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The balancer settings of the fixtures: source [`SOURCE`], the whole
/// unprivileged port range, every drop sampled.
pub fn config() -> KonveyConfig {
    KonveyConfig {
        source: SOURCE,
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
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("unshare(CLONE_NEWNET) for the Konvey fixture network")?;
        run(&["ip", "link", "set", "lo", "up"])?;
        for (dev, peer, m, addr) in [
            ("front0", "front1", FRONT_MAC, "10.20.0.5/24"),
            ("back0", "back1", BACK_MAC, "10.20.1.5/24"),
        ] {
            run(&[
                "ip", "link", "add", dev, "type", "veth", "peer", "name", peer,
            ])?;
            run(&["ip", "link", "set", dev, "address", &mac(&m)])?;
            run(&["ip", "addr", "add", addr, "dev", dev])?;
            run(&["ip", "link", "set", peer, "up"])?;
            run(&["ip", "link", "set", dev, "up"])?;
        }
        run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &ROUTER.to_string(),
            "dev",
            "front0",
        ])?;
        let mut neigh = vec![(ROUTER, ROUTER_MAC, "front0")];
        neigh.extend(CLIENTS.iter().map(|(a, m)| (*a, *m, "front0")));
        neigh.extend(BACKENDS.iter().map(|(a, m)| (*a, *m, "back0")));
        for (addr, m, dev) in &neigh {
            run(&[
                "ip",
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &mac(m),
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .context("enable forwarding in the Konvey fixture namespace")?;

        Ok(Self { fib: fib_model() })
    }

    /// What `bpf_fib_lookup` answers in this network.
    pub fn fib_model(&self) -> FibModel {
        self.fib.clone()
    }
}
