//! ns/packet of the Kawaii program through `BPF_PROG_TEST_RUN`, beside the
//! trivial `xdp_pass` program measured in the same run.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p kowabunga-benches`), as
//! root. Paths measured:
//! - established: a tracked TCP flow, translated and redirected (rewritten:
//!   one call per packet);
//! - drop: a new inbound flow to a closed VIP port (rule scans, counter);
//! - malformed: a truncated IPv4 header (the earliest drop);
//! - new flow: SNAT with port reservation and two conntrack inserts, one
//!   call per new tuple, into fresh maps (last: it reloads the program).
//!
//! The measuring is in `kowabunga_benches`; `KOWABUNGA_BENCH_REPEAT` and
//! `KOWABUNGA_BENCH_FLOWS` scale the run.

use std::net::Ipv4Addr;

use anyhow::Result;
use kowabunga_benches::{Frames, Row};
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::Role;
use kowabunga_tests::fixture_net::PRV_MAC;
use kowabunga_tests::harness::Harness;
use kowabunga_tests::model::{XDP_DROP, XDP_REDIRECT};
use kowabunga_tests::packets::{frame, Ip, TcpFlags, L4};
use kowabunga_tests::world::{self, VIP};

const CLIENT_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: TcpFlags) -> Vec<u8> {
    frame(
        CLIENT_MAC,
        PRV_MAC,
        &Ip::new(src, dst),
        &L4::Tcp {
            sport,
            dport,
            flags,
        },
        &[0u8; 18],
    )
}

/// The fixture network with the program loaded and configured as the
/// daemon would.
fn harness() -> Result<Harness> {
    let (mut cfg, tables) = world::config();
    cfg.sample_shift = 6; // as the daemon sets it
    Harness::new(cfg, &tables)
}

fn rows() -> Vec<Row<Role>> {
    let client = Ipv4Addr::new(10, 0, 0, 10);
    let syn = tcp(client, 40000, SERVER, 443, TcpFlags::SYN);
    let est = tcp(client, 40000, SERVER, 443, TcpFlags::PSH_ACK);
    let closed = tcp(REMOTE, 50000, VIP, 9999, TcpFlags::SYN);
    let malformed = est[..14 + 12].to_vec();
    let flows = kowabunga_benches::Knobs::from_env().flows as usize;
    let new_flows = (10..=13u8)
        .flat_map(|host| (1024..=65535u16).map(move |sport| (host, sport)))
        .take(flows)
        .map(|(host, sport)| {
            tcp(
                Ipv4Addr::new(10, 0, 0, host),
                sport,
                SERVER,
                80,
                TcpFlags::SYN,
            )
        })
        .collect();
    vec![
        Row::new(
            "established",
            "established (SNAT, redirect)",
            Role::Private,
            Frames::PerCall(est),
            kw_stat::KW_STAT_FWD_REDIRECT,
            XDP_REDIRECT,
        )
        .primed_by(syn, XDP_REDIRECT),
        Row::new(
            "drop_denied",
            "drop (ingress denied, 9 rules)",
            Role::Public,
            Frames::Repeat(closed),
            kw_stat::KW_STAT_DROP_INGRESS_DENIED,
            XDP_DROP,
        ),
        Row::new(
            "drop_malformed",
            "drop (malformed IPv4)",
            Role::Private,
            Frames::Repeat(malformed),
            kw_stat::KW_STAT_DROP_MALFORMED,
            XDP_DROP,
        ),
        Row::new(
            "new_flow",
            "new flow (SNAT, 2 ct inserts)",
            Role::Private,
            Frames::NewFlows(new_flows),
            kw_stat::KW_STAT_FWD_REDIRECT,
            XDP_REDIRECT,
        ),
    ]
}

fn main() -> Result<()> {
    kowabunga_benches::run(&rows(), harness)?;
    Ok(())
}
