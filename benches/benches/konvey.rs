//! ns/packet of the Konvey program through `BPF_PROG_TEST_RUN`, beside the
//! trivial `xdp_pass` program measured in the same run.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p kowabunga-benches`), as
//! root; it runs in the Konvey fixture network (three backends with
//! resolved neighbours). Paths measured:
//! - established, both directions: a tracked TCP flow translated and
//!   redirected (rewritten: one call per packet);
//! - drop: a SYN to a VIP port without service (packet unchanged: `repeat`);
//! - pass: traffic that is not the balancer's (`repeat`);
//! - new flow: service lookup, round-robin turn (atomic add), source port
//!   reservation and two conntrack inserts, full NAT and redirect, one call
//!   per new tuple, into fresh maps (last: it reloads the program).
//!   Afterwards the flows left must be spread round-robin over the backends.
//!
//! The measuring is in `kowabunga_benches`; `KOWABUNGA_BENCH_REPEAT` and
//! `KOWABUNGA_BENCH_FLOWS` scale the run.

use std::net::Ipv4Addr;

use anyhow::{ensure, Result};
use kowabunga_benches::{Frames, Row};
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::konvey::{Backend, KonveyConfig};
use kowabunga_tests::fixture_konvey::{
    self, BACKENDS, CLIENTS, FRONT_ADDR, FRONT_MAC, SOURCE, TCP_BACKEND_PORT, TCP_PORT, VIP,
};
use kowabunga_tests::harness_konvey::KonveyHarness;
use kowabunga_tests::model::{XDP_DROP, XDP_PASS, XDP_REDIRECT};
use kowabunga_tests::packets::{frame, Ip, TcpFlags, L4};

const CLIENT_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: TcpFlags) -> Vec<u8> {
    frame(
        CLIENT_MAC,
        FRONT_MAC,
        &Ip::new(src, dst),
        &L4::Tcp {
            sport,
            dport,
            flags,
        },
        &[0u8; 18],
    )
}

/// The Konvey fixture network with the program loaded and its services
/// programmed, configured as the daemon would.
fn harness() -> Result<KonveyHarness> {
    let cfg = KonveyConfig {
        sample_shift: 6, // as the daemon sets it
        ..fixture_konvey::config()
    };
    KonveyHarness::new(cfg, &fixture_konvey::services())
}

/// The two established rows again, named `<id><suffix>`: the per-backend
/// counters' cost is measured by running them with and without the
/// counters (`KOWABUNGA_BPF_VARIANT=nostats`) in one run.
fn established_rows(suffix: &'static str) -> Vec<Row<()>> {
    rows()
        .into_iter()
        .filter(|r| r.id.starts_with("established"))
        .map(|mut r| {
            r.id = Box::leak(format!("{}{suffix}", r.id).into_boxed_str());
            r
        })
        .collect()
}

fn rows() -> Vec<Row<()>> {
    let (client, _) = CLIENTS[0];
    // The first flow goes to backend 0 (round-robin) and keeps its port.
    let syn = tcp(client, 1024, VIP, TCP_PORT, TcpFlags::SYN);
    let est = tcp(client, 1024, VIP, TCP_PORT, TcpFlags::PSH_ACK);
    let reply = tcp(
        BACKENDS[0].0,
        TCP_BACKEND_PORT,
        SOURCE,
        1024,
        TcpFlags::PSH_ACK,
    );
    let flows = kowabunga_benches::Knobs::from_env().flows as usize;
    // client ports are kept: no two tuples collide
    let new_flows = CLIENTS
        .iter()
        .flat_map(|(c, _)| (1024..=65535u16).map(move |p| (*c, p)))
        .take(flows)
        .map(|(c, p)| tcp(c, p, VIP, TCP_PORT, TcpFlags::SYN))
        .collect();
    vec![
        Row::new(
            "established_to_backend",
            "established (client -> backend)",
            (),
            Frames::PerCall(est),
            kw_stat::KW_STAT_FWD_REDIRECT,
            XDP_REDIRECT,
        )
        .primed_by(syn, XDP_REDIRECT),
        Row::new(
            "established_to_client",
            "established (backend -> client)",
            (),
            Frames::PerCall(reply),
            kw_stat::KW_STAT_FWD_REDIRECT,
            XDP_REDIRECT,
        ),
        Row::new(
            "drop_no_service",
            "drop (VIP port without service)",
            (),
            Frames::Repeat(tcp(client, 40000, VIP, 81, TcpFlags::SYN)),
            kw_stat::KW_STAT_DROP_NO_SERVICE,
            XDP_DROP,
        ),
        Row::new(
            "pass_not_ours",
            "pass (not for a VIP or source)",
            (),
            Frames::Repeat(tcp(client, 40000, FRONT_ADDR, 22, TcpFlags::SYN)),
            kw_stat::KW_STAT_PASS_NOT_OURS,
            XDP_PASS,
        ),
        Row::new(
            "new_flow",
            "new flow (full NAT, 2 ct inserts)",
            (),
            Frames::NewFlows(new_flows),
            kw_stat::KW_STAT_FWD_REDIRECT,
            XDP_REDIRECT,
        ),
    ]
}

/// Established-flow cost with the per-backend counters (`konvey.o`) and
/// without them (`konvey-nostats.o`), alternately: with, without, with.
fn backend_counters_cost() -> Result<()> {
    use kowabunga_dataplane::variant::ENV;
    let mut with = Vec::new();
    let mut without = Vec::new();
    for (round, nostats) in [(1, false), (2, true), (3, false)] {
        if nostats {
            std::env::set_var(ENV, "nostats");
        } else {
            std::env::remove_var(ENV);
        }
        let suffix: &'static str = Box::leak(
            format!("_{}{round}", if nostats { "nostats" } else { "stats" }).into_boxed_str(),
        );
        let (_, lines) = kowabunga_benches::run::run_lines(&established_rows(suffix), harness)?;
        if nostats {
            without.extend(lines);
        } else {
            with.extend(lines);
        }
    }
    std::env::remove_var(ENV);
    if with.is_empty() || without.is_empty() {
        return Ok(());
    }
    println!("\nper-backend counters, established path (ns/packet, BPF_PROG_TEST_RUN, one run):");
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "path", "counters", "without", "ratio"
    );
    for w in &without {
        let base = w.path;
        let ours: Vec<f64> = with
            .iter()
            .filter(|l| l.path == base)
            .map(|l| l.program_ns)
            .collect();
        let mean = ours.iter().sum::<f64>() / ours.len().max(1) as f64;
        println!(
            "{:<34} {:>12.1} {:>12.1} {:>8.3}",
            base,
            mean,
            w.program_ns,
            mean / w.program_ns
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let Some(h) = kowabunga_benches::run(&rows(), harness)? else {
        return Ok(());
    };
    backend_counters_cost()?;
    // The flows left are those made since the program was last loaded:
    // consecutive round-robin turns, so no backend is more than one ahead.
    let spread = h.konvey.flows_by_backend()?;
    let count = |b: &(Ipv4Addr, [u8; 6])| {
        spread
            .get(&Backend {
                addr: b.0,
                port: TCP_BACKEND_PORT,
            })
            .copied()
            .unwrap_or(0)
    };
    let counts: Vec<usize> = BACKENDS.iter().map(count).collect();
    let (lo, hi) = (counts.iter().min(), counts.iter().max());
    ensure!(
        hi.zip(lo).is_some_and(|(h, l)| h - l <= 1)
            && counts.iter().sum::<usize>() == spread.values().sum::<usize>(),
        "round-robin spread {spread:?}"
    );
    Ok(())
}
