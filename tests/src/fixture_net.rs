//! The network that `BPF_PROG_TEST_RUN` fixtures run in.
//!
//! `bpf_fib_lookup` answers from the network namespace of the thread that
//! runs the test, so each fixture moves its own thread into a fresh
//! namespace (`unshare(CLONE_NEWNET)`), gives it three veth links with
//! fixed MACs, addresses, routes and permanent neighbours, and builds the
//! matching [`FibModel`]. The namespace disappears with the thread.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;

use crate::model::fib::{FibModel, Route};

/// MAC of the gateway's public interface.
pub const PUB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the gateway's private interface.
pub const PRV_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// MAC of the gateway's peering interface.
pub const PER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
/// MAC of the Internet router (203.0.113.1).
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
/// Address of the Internet router, the default gateway.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The gateway's own public address.
pub const GW_PUB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The gateway's private address.
pub const GW_PRV: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The gateway's peering address.
pub const GW_PER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

/// Private hosts with a resolved neighbour entry, and their MACs.
pub const PRIVATE_HOSTS: [(Ipv4Addr, [u8; 6]); 2] = [
    (Ipv4Addr::new(10, 0, 0, 10), [0x02, 0, 0, 0, 0x02, 0x10]),
    (Ipv4Addr::new(10, 0, 0, 11), [0x02, 0, 0, 0, 0x02, 0x11]),
];
/// Peered hosts with a resolved neighbour entry, and their MACs.
pub const PEER_HOSTS: [(Ipv4Addr, [u8; 6]); 1] =
    [(Ipv4Addr::new(10, 1, 0, 5), [0x02, 0, 0, 0, 0x03, 0x05])];

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

pub(crate) fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One veth of a fixture network: the end the program runs on, its peer,
/// the end's MAC and its address with prefix.
pub(crate) type Link<'a> = (&'a str, &'a str, [u8; 6], &'a str);

/// Moves the calling thread into a new network namespace and builds the
/// fixture links, a default route via `router` on `router_dev`, permanent
/// neighbours, and forwarding. `what` names the network in errors. Needs
/// CAP_SYS_ADMIN and CAP_NET_ADMIN.
pub(crate) fn build(
    what: &str,
    links: &[Link<'_>],
    router: (Ipv4Addr, &str),
    neigh: &[(Ipv4Addr, [u8; 6], &str)],
) -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("unshare(CLONE_NEWNET) for the {what}"))?;
    run(&["ip", "link", "set", "lo", "up"])?;
    for (dev, peer, m, addr) in links {
        run(&[
            "ip", "link", "add", dev, "type", "veth", "peer", "name", peer,
        ])?;
        run(&["ip", "link", "set", dev, "address", &mac(m)])?;
        run(&["ip", "addr", "add", addr, "dev", dev])?;
        run(&["ip", "link", "set", peer, "up"])?;
        run(&["ip", "link", "set", dev, "up"])?;
    }
    let via = router.0.to_string();
    run(&[
        "ip", "route", "add", "default", "via", &via, "dev", router.1,
    ])?;
    for (addr, m, dev) in neigh {
        let addr = addr.to_string();
        run(&[
            "ip",
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &mac(m),
            "dev",
            dev,
            "nud",
            "permanent",
        ])?;
    }
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .with_context(|| format!("enable forwarding in the {what} namespace"))
}

/// The fixture network of the calling thread.
#[derive(Debug)]
pub struct FixtureNet {
    fib: FibModel,
}

impl FixtureNet {
    /// Move the calling thread into a new network namespace and build the
    /// fixture links in it. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
    pub fn enter() -> Result<Self> {
        let mut neigh = vec![(ROUTER, ROUTER_MAC, "pub0")];
        neigh.extend(PRIVATE_HOSTS.iter().map(|(a, m)| (*a, *m, "prv0")));
        neigh.extend(PEER_HOSTS.iter().map(|(a, m)| (*a, *m, "per0")));
        build(
            "fixture network",
            &[
                ("pub0", "pub1", PUB_MAC, "203.0.113.2/24"),
                ("prv0", "prv1", PRV_MAC, "10.0.0.1/25"),
                ("per0", "per1", PER_MAC, "10.1.0.1/24"),
            ],
            (ROUTER, "pub0"),
            &neigh,
        )?;

        let net = |s: &str| -> Ipv4Net { s.parse().expect("static prefix") };
        let fib = FibModel {
            routes: vec![
                Route {
                    dst: net("0.0.0.0/0"),
                    via: Some(ROUTER),
                    dev_mac: PUB_MAC,
                    mtu: MTU,
                },
                Route {
                    dst: net("203.0.113.0/24"),
                    via: None,
                    dev_mac: PUB_MAC,
                    mtu: MTU,
                },
                Route {
                    dst: net("10.0.0.0/25"),
                    via: None,
                    dev_mac: PRV_MAC,
                    mtu: MTU,
                },
                Route {
                    dst: net("10.1.0.0/24"),
                    via: None,
                    dev_mac: PER_MAC,
                    mtu: MTU,
                },
            ],
            neighbours: neigh
                .iter()
                .map(|(a, m, _)| (*a, *m))
                .collect::<HashMap<_, _>>(),
            local: [
                GW_PUB,
                GW_PRV,
                GW_PER,
                Ipv4Addr::new(203, 0, 113, 255),
                Ipv4Addr::new(10, 0, 0, 127),
                Ipv4Addr::new(10, 1, 0, 255),
            ]
            .into_iter()
            .map(Ipv4Net::from)
            .chain([net("127.0.0.0/8")])
            .collect(),
            forward6: Vec::new(),
            local6: Vec::new(),
        };
        Ok(Self { fib })
    }

    /// What `bpf_fib_lookup` answers in this network.
    pub fn fib_model(&self) -> FibModel {
        self.fib.clone()
    }
}
