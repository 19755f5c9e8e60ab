//! The live bench's three namespaces and how their work is laid on the CPUs.
//!
//! ```text
//!  [c] c0 10.210.1.2/24 ==== g0 10.210.1.1/24 [g] g1 10.210.2.1/24 ==== s0 10.210.2.2/24 [s]
//!      l0 <==> l1 (loop)        + 10.210.5.1/32     + 10.210.2.100/32      + 10.210.3.1-3/32
//!                                 (Konvey VIP)        (Kawaii VIP)           (backends)
//! ```
//!
//! Destinations of the forwarding modes are in 10.211.0.0/16 and load
//! balancer clients in 10.212.0.0/16 (the generator varies them); the
//! gateway routes 10.211.0.0/16, 10.210.3.0/24 and 10.210.4.0/24 to the
//! sink and 10.212.0.0/16 back to the client (the sink's answers during a
//! warm-up). Neighbours are static, so no ARP happens during a measurement.
//!
//! CPU layout (2 cores): the generator's loop runs in CPU0's softirq (the
//! harness and `kowabungad` are pinned there too); the gateway's ingress
//! NAPI thread (threaded NAPI, SCHED_FIFO 50: XDP, the kernel's forwarding
//! and nftables, the egress veth) and the sink's NAPI thread (SCHED_FIFO
//! 60, so the sink never drops) share CPU1. The rate is "gateway + sink on
//! one core", and CPU1's busy time per packet is the per-packet cost.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use kowabunga_tests::lab::netns::Netns;

/// The generator's CPU (and the harness', and `kowabungad`'s).
pub const GEN_CPU: usize = 0;
/// The gateway's and the sink's CPU.
pub const GW_CPU: usize = 1;
/// SCHED_FIFO priority of the gateway's ingress NAPI thread.
pub const GW_FIFO: i32 = 50;
/// SCHED_FIFO priority of the sink's NAPI thread (above the gateway's).
pub const SINK_FIFO: i32 = 60;

/// The client's address (forwarding modes' source).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 210, 1, 2);
/// The gateway's client-side address.
pub const GW_IN: Ipv4Addr = Ipv4Addr::new(10, 210, 1, 1);
/// The gateway's sink-side address: masquerade and Konvey's full-NAT source.
pub const GW_OUT: Ipv4Addr = Ipv4Addr::new(10, 210, 2, 1);
/// The sink's address, the gateway's next hop.
pub const SINK: Ipv4Addr = Ipv4Addr::new(10, 210, 2, 2);
/// Kawaii's public VIP (its SNAT address), on g1.
pub const KAWAII_VIP: Ipv4Addr = Ipv4Addr::new(10, 210, 2, 100);
/// Konvey's VIP, on g0.
pub const KONVEY_VIP: Ipv4Addr = Ipv4Addr::new(10, 210, 5, 1);
/// The nftables DNAT mode's VIP (routed to the sink, translated before).
pub const NFT_VIP: Ipv4Addr = Ipv4Addr::new(10, 210, 4, 1);
/// The three backends of both load balancers, on the sink.
pub const BACKENDS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 210, 3, 1),
    Ipv4Addr::new(10, 210, 3, 2),
    Ipv4Addr::new(10, 210, 3, 3),
];
/// Destination UDP port of every generated frame (the sink counts it).
pub const DPORT: u16 = 9;

/// Destinations of the forwarding modes.
pub fn destinations() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 211, 0, 0), 16).unwrap_or_default()
}

/// Sources of the load balancer modes (many clients, one VIP).
pub fn lb_clients() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 212, 0, 0), 16).unwrap_or_default()
}

/// The client's subnet.
pub fn client_subnet() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 210, 1, 0), 24).unwrap_or_default()
}

const MAC_C0: [u8; 6] = [0x02, 0, 0x0a, 0xd2, 0x01, 0x02];
const MAC_G0: [u8; 6] = [0x02, 0, 0x0a, 0xd2, 0x01, 0x01];
const MAC_G1: [u8; 6] = [0x02, 0, 0x0a, 0xd2, 0x02, 0x01];
const MAC_S0: [u8; 6] = [0x02, 0, 0x0a, 0xd2, 0x02, 0x02];

/// `aa:bb:..` form of a MAC address.
pub fn mac_str(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// The three namespaces and their interface names (unique per process, so
/// that each interface's NAPI thread can be found by name).
#[derive(Debug)]
pub struct Topology {
    /// The client: generator and its loop.
    pub client: Netns,
    /// The gateway under test.
    pub gw: Netns,
    /// The sink.
    pub sink: Netns,
    /// Client uplink (peer of `g0`).
    pub c0: String,
    /// Generator loop end that bounces frames (XDP_TX).
    pub l0: String,
    /// Generator loop end that broadcasts them.
    pub l1: String,
    /// Gateway ingress (client side).
    pub g0: String,
    /// Gateway egress (sink side).
    pub g1: String,
    /// Sink interface.
    pub s0: String,
}

impl Topology {
    /// Creates the namespaces, links, addresses, routes and static neighbours.
    pub fn new() -> Result<Self> {
        let tag = std::process::id() % 10_000;
        let name = |s: &str| format!("kb{tag}{s}");
        let client = Netns::new(&name("c"))?;
        let gw = Netns::new(&name("g"))?;
        let sink = Netns::new(&name("s"))?;
        let t = Topology {
            c0: name("c0"),
            l0: name("l0"),
            l1: name("l1"),
            g0: name("g0"),
            g1: name("g1"),
            s0: name("s0"),
            client,
            gw,
            sink,
        };
        t.client.veth(&t.c0, &t.gw, &t.g0)?;
        t.gw.veth(&t.g1, &t.sink, &t.s0)?;
        t.client.veth(&t.l0, &t.client, &t.l1)?;
        for (ns, dev, mac) in [
            (&t.client, &t.c0, MAC_C0),
            (&t.gw, &t.g0, MAC_G0),
            (&t.gw, &t.g1, MAC_G1),
            (&t.sink, &t.s0, MAC_S0),
        ] {
            ns.ip(&["link", "set", "dev", dev, "address", &mac_str(mac)])?;
        }
        for l in [&t.l0, &t.l1] {
            // nothing but the seeds enters the loop
            t.client
                .sysctl(&format!("net.ipv6.conf.{l}.disable_ipv6"), "1")?;
            t.client.ip(&["link", "set", l, "up"])?;
        }
        t.client.addr(&t.c0, &format!("{CLIENT}/24"))?;
        t.gw.addr(&t.g0, &format!("{GW_IN}/24"))?;
        t.gw.addr(&t.g0, &format!("{KONVEY_VIP}/32"))?;
        t.gw.addr(&t.g1, &format!("{GW_OUT}/24"))?;
        t.gw.addr(&t.g1, &format!("{KAWAII_VIP}/32"))?;
        t.sink.addr(&t.s0, &format!("{SINK}/24"))?;
        for b in BACKENDS {
            t.sink.addr(&t.s0, &format!("{b}/32"))?;
        }
        t.client
            .ip(&["route", "add", "default", "via", &GW_IN.to_string()])?;
        t.sink
            .ip(&["route", "add", "default", "via", &GW_OUT.to_string()])?;
        for net in [
            "10.210.3.0/24",
            "10.210.4.0/24",
            &destinations().to_string(),
        ] {
            t.gw.ip(&["route", "add", net, "via", &SINK.to_string()])?;
        }
        // the load balancers' answers go back to their clients
        t.gw.ip(&[
            "route",
            "add",
            &lb_clients().to_string(),
            "via",
            &CLIENT.to_string(),
        ])?;
        for (ns, addr, mac, dev) in [
            (&t.client, GW_IN, MAC_G0, &t.c0),
            (&t.gw, SINK, MAC_S0, &t.g1),
            (&t.gw, CLIENT, MAC_C0, &t.g0),
            (&t.sink, GW_OUT, MAC_G1, &t.s0),
        ] {
            ns.ip(&[
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &mac_str(mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        // what kowabungad sets, for every mode alike
        t.gw.sysctl("net.ipv4.ip_forward", "1")?;
        for c in ["all", "default", &t.g0, &t.g1] {
            t.gw.sysctl(&format!("net.ipv4.conf.{c}.accept_local"), "1")?;
            t.gw.sysctl(&format!("net.ipv4.conf.{c}.rp_filter"), "0")?;
        }
        Ok(t)
    }

    /// The client's uplink MAC, the gateway's ingress MAC (generator frames).
    pub fn client_macs(&self) -> ([u8; 6], [u8; 6]) {
        (MAC_C0, MAC_G0)
    }

    /// The gateway's egress MAC and the sink's (the limit's rewrite).
    pub fn egress_macs(&self) -> ([u8; 6], [u8; 6]) {
        (MAC_G1, MAC_S0)
    }

    /// Makes the gateway's ingress and the sink's NAPI threaded and pins
    /// their threads to [`GW_CPU`] with their priorities. Called after every mode change: attaching XDP
    /// to a veth can create its NAPI thread anew.
    /// Their thread ids, gateway first.
    pub fn pin_napi(&self) -> Result<[i32; 2]> {
        let mut tids = [0; 2];
        for (ns, dev, prio) in [
            (&self.gw, &self.g0, GW_FIFO),
            (&self.sink, &self.s0, SINK_FIFO),
        ] {
            // A veth has NAPI only with an XDP program (or GRO): set once one is attached.
            ns.run_ok(
                "sh",
                &["-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")],
            )
            .with_context(|| format!("threaded NAPI on {dev}"))?;
            let tid = napi_thread(dev)?;
            pin_thread(tid, GW_CPU)?;
            set_fifo(tid, prio)?;
            tids[usize::from(dev == &self.s0)] = tid;
        }
        Ok(tids)
    }
}

/// The newest kernel thread named `napi/<dev>-<id>` (waits up to 5 s).
pub fn napi_thread(dev: &str) -> Result<i32> {
    let prefix = format!("napi/{dev}-");
    for _ in 0..50 {
        let mut best = None;
        for e in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
                if comm.trim_end().starts_with(&prefix) {
                    best = best.max(Some(pid));
                }
            }
        }
        if let Some(pid) = best {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("no NAPI thread {prefix}* (threaded NAPI on {dev}?)")
}

/// Pins thread `tid` (0: the caller) to one CPU.
pub fn pin_thread(tid: i32, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!(
            "pinning thread {tid} to CPU{cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn set_fifo(tid: i32, prio: i32) -> Result<()> {
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: plain syscall on a valid sched_param.
    let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        bail!(
            "SCHED_FIFO {prio} for thread {tid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// While alive, the calling thread is in another network namespace
/// (interface names, ifindexes, XDP attachment and sockets are per
/// namespace); back in the original one on drop.
pub struct InNetns {
    home: OwnedFd,
}

impl InNetns {
    /// Moves the calling thread into `ns`'s network namespace.
    pub fn enter(ns: &Netns) -> Result<Self> {
        let home: OwnedFd = File::open("/proc/thread-self/ns/net")
            .context("opening /proc/thread-self/ns/net")?
            .into();
        let path = format!("/run/netns/{}", ns.name());
        let target = File::open(&path).with_context(|| format!("opening {path}"))?;
        // SAFETY: setns on a descriptor we own; affects the calling thread only.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "entering {}: {}",
                ns.name(),
                std::io::Error::last_os_error()
            );
        }
        Ok(InNetns { home })
    }
}

impl Drop for InNetns {
    fn drop(&mut self) {
        // SAFETY: as in `enter`; the descriptor is the thread's original namespace.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "live bench: cannot return to the original network namespace: {}",
                std::io::Error::last_os_error()
            );
            std::process::abort();
        }
    }
}

/// The ifindex of `dev` inside `ns`.
pub fn ifindex(ns: &Netns, dev: &str) -> Result<u32> {
    let _in = InNetns::enter(ns)?;
    let c = std::ffi::CString::new(dev)?;
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no interface {dev} in {}", ns.name());
    }
    Ok(idx)
}
