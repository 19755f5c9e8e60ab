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
//! - rules at scale: a denied packet (ingress, the address in a rule's
//!   prefix, no port matching) and a new flow (egress under `egress_policy:
//!   drop`, the accepting rule last) at 10, 100, 1,000 and 10,000 rules per
//!   table, in the same run, then a table with the ratio 10,000 / 10.
//!
//! - established at conntrack occupancies: the established row again with
//!   1,024, 65,536 and 1,048,576 other entries in the confirmed table (all
//!   three in tables of the same size), in the same run, then a table.
//!
//! - the flow cache: a confirmed, established flow (both entries inserted
//!   confirmed, so each packet may be forwarded from the cache) with the
//!   cache and without it (`KOWABUNGA_BPF_VARIANT=nofcache`), alternately:
//!   with, without, with, in the same run, then a table.
//!
//! The measuring is in `kowabunga_benches`; `KOWABUNGA_BENCH_REPEAT` and
//! `KOWABUNGA_BENCH_FLOWS` scale the run.

use std::net::Ipv4Addr;

use anyhow::Result;
use kowabunga_benches::{Frames, Row};
use kowabunga_bindings::{kw_stat, kw_table};
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

/// Rule counts of the scale table.
const RULE_COUNTS: [usize; 4] = [10, 100, 1_000, 10_000];

/// The fixture configuration with `n` ingress rules (hosts of 100.64.0.0/10,
/// then REMOTE's /24 on tcp/22: a denied packet from REMOTE to another port
/// goes through every lookup) and `n` egress rules under a drop policy (hosts
/// of 198.18.0.0/15, then SERVER on tcp/80).
fn scaled(n: usize) -> Result<Harness> {
    let (mut cfg, mut tables) = world::config();
    cfg.sample_shift = 6;
    cfg.egress_policy = 1;
    let hosts = |base: u32| {
        (0..n as u32 - 1).map(move |i| {
            world::rule(
                world::cidr(Ipv4Addr::from(base + i), 32),
                6,
                1000 + (i % 5000) as u16,
                1000 + (i % 5000) as u16,
                None,
            )
        })
    };
    let ingress = &mut tables[kw_table::KW_TABLE_INGRESS as usize];
    *ingress = hosts(0x6440_0000).collect();
    ingress.push(world::rule(
        world::cidr(Ipv4Addr::new(192, 0, 2, 0), 24),
        6,
        22,
        22,
        None,
    ));
    let egress = &mut tables[kw_table::KW_TABLE_EGRESS as usize];
    *egress = hosts(0xc612_0000).collect();
    egress.push(world::rule(world::cidr(SERVER, 32), 6, 80, 80, None));
    Harness::new(cfg, &tables)
}

fn scale_rows(n: usize) -> Vec<Row<Role>> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let flows = kowabunga_benches::Knobs::from_env().flows as usize;
    let new_flows = (1024..=65535u16)
        .take(flows)
        .map(|sport| {
            tcp(
                Ipv4Addr::new(10, 0, 0, 10),
                sport,
                SERVER,
                80,
                TcpFlags::SYN,
            )
        })
        .collect();
    vec![
        Row::new(
            leak(format!("denied_{n}_rules")),
            leak(format!("drop (ingress denied, {n} rules)")),
            Role::Public,
            Frames::Repeat(tcp(REMOTE, 50000, VIP, 9999, TcpFlags::SYN)),
            kw_stat::KW_STAT_DROP_INGRESS_DENIED,
            XDP_DROP,
        ),
        Row::new(
            leak(format!("new_flow_{n}_rules")),
            leak(format!("new flow (egress, {n} rules)")),
            Role::Private,
            Frames::NewFlows(new_flows),
            kw_stat::KW_STAT_FWD_REDIRECT,
            XDP_REDIRECT,
        ),
    ]
}

/// Confirmed-table occupancies of the conntrack table.
const OCCUPANCIES: [u32; 3] = [1 << 10, 1 << 16, 1 << 20];
/// Size of each conntrack table in the occupancy rows: above the largest
/// occupancy, the same for all three.
const OCCUPANCY_TABLE: u32 = (1 << 20) + (1 << 18);

/// The fixture program with `n` confirmed entries of other flows (clients
/// in 172.16.0.0/12 to SERVER:443) in its conntrack.
fn occupied(n: u32) -> Result<Harness> {
    let (mut cfg, tables) = world::config();
    cfg.sample_shift = 6;
    let h = Harness::with_ct_entries(cfg, &tables, OCCUPANCY_TABLE)?;
    let table = h
        .kawaii
        .conntrack_table(kowabunga_dataplane::kawaii::MAP_CT4)?;
    let now = kowabunga_dataplane::monotonic_now_ns();
    let entries: Vec<_> = (0..n)
        .map(|i| {
            let client = u32::from(Ipv4Addr::new(172, 16, 0, 0)) + (i >> 6);
            let sport = 1024 + (i & 63) as u16;
            let key = kowabunga_bindings::kw_ct_key {
                saddr: client.to_be(),
                daddr: u32::from(SERVER).to_be(),
                sport: sport.to_be(),
                dport: 443u16.to_be(),
                proto: 6,
                _pad: [0; 3],
            };
            let value = kowabunga_bindings::kw_ct_value {
                nat_saddr: u32::from(VIP).to_be(),
                nat_daddr: u32::from(SERVER).to_be(),
                nat_sport: sport.to_be(),
                nat_dport: 443u16.to_be(),
                in_role: kowabunga_bindings::kw_role::KW_ROLE_PRIVATE as u8,
                flags: 0,
                state: kowabunga_bindings::kw_ct_state::KW_CT_ESTABLISHED as u8,
                _pad: 0,
                last_seen_ns: now,
                packets: 1,
                bytes: 64,
                ..Default::default()
            };
            (key, value)
        })
        .collect();
    table.insert(&entries)?;
    Ok(h)
}

fn occupancy_rows(n: u32) -> Vec<Row<Role>> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let client = Ipv4Addr::new(10, 0, 0, 10);
    vec![Row::new(
        leak(format!("established_ct_{n}")),
        leak(format!("established ({n} ct entries)")),
        Role::Private,
        Frames::PerCall(tcp(client, 40000, SERVER, 443, TcpFlags::PSH_ACK)),
        kw_stat::KW_STAT_FWD_REDIRECT,
        XDP_REDIRECT,
    )
    .primed_by(tcp(client, 40000, SERVER, 443, TcpFlags::SYN), XDP_REDIRECT)]
}

/// The fixture program with the measured flow (10.0.0.10:40000 ->
/// SERVER:443, translated to VIP:40000) confirmed and established in
/// conntrack, both directions, as after its handshake.
fn confirmed() -> Result<Harness> {
    use kowabunga_bindings::{kw_ct_key, kw_ct_state, kw_ct_value, kw_role};
    let h = harness()?;
    let now = kowabunga_dataplane::monotonic_now_ns();
    let be = |a: Ipv4Addr| u32::from(a).to_be();
    let key = |src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16| kw_ct_key {
        saddr: be(src),
        daddr: be(dst),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: 6,
        _pad: [0; 3],
    };
    let client = Ipv4Addr::new(10, 0, 0, 10);
    let value = |nat: kw_ct_key, role: u32, flags: u32| kw_ct_value {
        nat_saddr: nat.saddr,
        nat_daddr: nat.daddr,
        nat_sport: nat.sport,
        nat_dport: nat.dport,
        in_role: role as u8,
        flags: flags as u8,
        state: kw_ct_state::KW_CT_ESTABLISHED as u8,
        last_seen_ns: now,
        ..Default::default()
    };
    let snat = kowabunga_bindings::KW_CT_F_SNAT;
    let reply = kowabunga_bindings::KW_CT_F_REPLY;
    h.kawaii
        .conntrack_table(kowabunga_dataplane::kawaii::MAP_CT4)?
        .insert(&[
            (
                key(client, 40000, SERVER, 443),
                value(key(VIP, 40000, SERVER, 443), kw_role::KW_ROLE_PRIVATE, snat),
            ),
            (
                key(SERVER, 443, VIP, 40000),
                value(
                    key(SERVER, 443, client, 40000),
                    kw_role::KW_ROLE_PUBLIC,
                    snat | reply,
                ),
            ),
        ])?;
    Ok(h)
}

fn confirmed_row(suffix: &str) -> Vec<Row<Role>> {
    let client = Ipv4Addr::new(10, 0, 0, 10);
    vec![Row::new(
        Box::leak(format!("established_confirmed_{suffix}").into_boxed_str()),
        "established, confirmed (SNAT, redirect)",
        Role::Private,
        Frames::PerCall(tcp(client, 40000, SERVER, 443, TcpFlags::PSH_ACK)),
        kw_stat::KW_STAT_FWD_REDIRECT,
        XDP_REDIRECT,
    )]
}

/// The confirmed established path with the flow cache (`kawaii.o`) and
/// without it (`kawaii-nofcache.o`), alternately: with, without, with.
fn flow_cache_cost() -> Result<()> {
    use kowabunga_dataplane::variant::ENV;
    let mut with = Vec::new();
    let mut without = Vec::new();
    for (round, off) in [(1, false), (2, true), (3, false)] {
        if off {
            std::env::set_var(ENV, "nofcache");
        } else {
            std::env::remove_var(ENV);
        }
        let suffix = format!("{}{round}", if off { "nofcache" } else { "fcache" });
        let (_, lines) = kowabunga_benches::run::run_lines(&confirmed_row(&suffix), confirmed)?;
        let ns: Vec<(f64, f64)> = lines
            .iter()
            .map(|l| (l.program_ns, l.baseline_ns))
            .collect();
        if off {
            without.extend(ns);
        } else {
            with.extend(ns);
        }
    }
    std::env::remove_var(ENV);
    let mean = |v: &[(f64, f64)]| v.iter().map(|(p, _)| p).sum::<f64>() / v.len().max(1) as f64;
    if with.is_empty() || without.is_empty() {
        return Ok(());
    }
    let base = with.iter().chain(&without).map(|(_, b)| b).sum::<f64>()
        / (with.len() + without.len()) as f64;
    println!(
        "
Kawaii established path, confirmed flow, BPF_PROG_TEST_RUN, kernel-timed ns/packet (one run)"
    );
    println!(
        "{:>12} {:>12} {:>12} {:>8}",
        "flow cache", "no cache", "xdp_pass", "ratio"
    );
    println!(
        "{:>10.1}ns {:>10.1}ns {:>10.1}ns {:>8.3}",
        mean(&with),
        mean(&without),
        base,
        mean(&with) / mean(&without)
    );
    Ok(())
}

fn main() -> Result<()> {
    kowabunga_benches::run(&rows(), harness)?;
    flow_cache_cost()?;

    // established at conntrack occupancies, all in this run
    let mut occ = Vec::new();
    for n in OCCUPANCIES {
        let (_, lines) = kowabunga_benches::run::run_lines(&occupancy_rows(n), || occupied(n))?;
        if let [line] = lines.as_slice() {
            occ.push((n, line.program_ns, line.baseline_ns));
        }
    }
    if !occ.is_empty() {
        println!("\nKawaii established path at conntrack occupancies, BPF_PROG_TEST_RUN, kernel-timed ns/packet");
        println!(
            "{:>10} {:>12} {:>12} {:>12}",
            "entries", "kawaii", "xdp_pass", "difference"
        );
        for (n, p, b) in &occ {
            println!("{n:>10} {p:>10.1}ns {b:>10.1}ns {:>10.1}ns", p - b);
        }
    }

    // rules at scale: one subject per rule count, all in this run
    let mut table = Vec::new();
    for n in RULE_COUNTS {
        let (_, lines) = kowabunga_benches::run::run_lines(&scale_rows(n), || scaled(n))?;
        if let [denied, new_flow] = lines.as_slice() {
            table.push((n, denied.program_ns, new_flow.program_ns));
        }
    }
    if let (Some(first), Some(last)) = (table.first(), table.last()) {
        println!("\nKawaii rules at scale, BPF_PROG_TEST_RUN, kernel-timed ns/packet");
        println!("{:>8} {:>16} {:>16}", "rules", "ingress denied", "new flow");
        for (n, denied, new_flow) in &table {
            println!("{n:>8} {denied:>14.1}ns {new_flow:>14.1}ns");
        }
        println!(
            "{:>8} {:>16.3} {:>16.3}",
            format!("{}/{}", last.0, first.0),
            last.1 / first.1,
            last.2 / first.2
        );
    }
    Ok(())
}
