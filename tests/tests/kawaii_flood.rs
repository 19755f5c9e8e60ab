//! Conntrack that survives floods (issue 9 item 4), in the Kawaii lab with
//! `node.conntrack_entries: 8192`: 20 long TCP connections through DNAT and
//! 20 through SNAT, confirmed before the flood, exchange a line every 8 s and
//! idle in between, while 32,768 spoofed SYNs hit the DNAT port from the
//! Internet side and 32,768 new UDP flows (one source port each) leave the
//! private side for an echo server (whose answers confirm flows until the
//! confirmed table is full); every exchange after the floods must succeed.
//! New flows only evict embryonic entries; a full confirmed table refuses
//! confirmations (`ct_confirm_full`), never an old flow. (Idle matters: an
//! LRU keeps busy entries, so connections exchanging during the flood
//! survive even one shared LRU table; idle ones do not, checked by hand by
//! keeping every flow embryonic.)
//!
//! Privileged: skipped with a message when not root, or failed where skipping
//! is forbidden (`kowabunga_testkit::privileged`). Needs `kowabungad` and
//! `ethtool` (`cargo xtask test` installs and builds them).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kowabunga_dataplane::conntrack::CtTable;
use kowabunga_dataplane::kawaii::{MAP_CT4, MAP_CT4_NEW};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::topology::{KawaiiLab, DNAT_PORT, INET_ADDR, VIP};
use kowabunga_tests::lab::traffic::{Agent, Background};

/// Each conntrack table's size in this lab.
const CT_ENTRIES: u32 = 8192;
/// Packets of each flood.
const FLOOD: u64 = 32_768;
/// Packets a second of each flood.
const RATE: u64 = 8_000;
/// TCP echo port on the Internet host (SNAT traffic).
const INET_TCP: u16 = 7000;
/// UDP echo port on the Internet host (the UDP flood).
const INET_UDP: u16 = 7001;

#[test]
fn established_flows_survive_a_syn_flood_and_a_udp_flow_flood() -> Result<()> {
    if !privileged("established_flows_survive_a_syn_flood_and_a_udp_flow_flood") {
        return Ok(());
    }
    let agent = Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"));
    let bin = find_kowabungad()?;
    let mut lab = KawaiiLab::new()?;
    lab.set_conntrack_entries(CT_ENTRIES)?;
    lab.start_daemon(&bin)?;
    let _tcp = agent.tcp_echo_server(&lab.inet, INET_TCP, 90)?;
    let _udp = agent.udp_echo_server(&lab.inet, INET_UDP, 90)?;
    let _dnat = agent.tcp_echo_server(&lab.private, DNAT_PORT, 90)?;

    // the floods at RATE take FLOOD / RATE s (~4 s), between the holds'
    // exchanges at 0, 8 and 16 s
    let seconds = 24;
    let every = 8000;
    let mut holds: Vec<(String, Background)> = Vec::new();
    for i in 0..20 {
        let to = format!("{INET_ADDR}:{INET_TCP}");
        holds.push((
            format!("snat {i}"),
            agent.tcp_hold_every(&lab.private, &to, seconds, every)?,
        ));
        let to = format!("{VIP}:{DNAT_PORT}");
        holds.push((
            format!("dnat {i}"),
            agent.tcp_hold_every(&lab.inet, &to, seconds, every)?,
        ));
    }
    for (name, hold) in &mut holds {
        hold.wait_for("peer=", Duration::from_secs(5))
            .with_context(|| format!("{name} did not connect"))?;
    }
    let confirmed = CtTable::from_pin(MAP_CT4, &lab.pin_dir().join(MAP_CT4))?;
    let embryonic = CtTable::from_pin(MAP_CT4_NEW, &lab.pin_dir().join(MAP_CT4_NEW))?;
    let before = lab.counters()?;
    let held = confirmed.entries()?.len();
    ensure!(
        held >= 80,
        "the 40 connections are confirmed: {held} entries"
    );

    let start = Instant::now();
    let mut syn = agent.flood(
        &lab.inet,
        "tcp-syn",
        &format!("{VIP}:{DNAT_PORT}"),
        FLOOD,
        RATE,
        Some("100.64.0.0/10"),
    )?;
    let mut udp = agent.flood(
        &lab.private,
        "udp",
        &format!("{INET_ADDR}:{INET_UDP}"),
        FLOOD,
        RATE,
        None,
    )?;
    for (name, flood) in [("SYN", &mut syn), ("UDP", &mut udp)] {
        let code = flood.wait_exit(Duration::from_secs(60))?;
        ensure!(
            code == Some(0) && flood.count(&format!("sent={FLOOD}")) == 1,
            "{name} flood (exit {code:?}): {}",
            flood.output()
        );
    }
    let flood_time = start.elapsed();
    let during = lab.counters()?.since(&before);
    let (n_confirmed, n_embryonic) = (confirmed.entries()?.len(), embryonic.entries()?.len());

    for (name, hold) in &mut holds {
        let code = hold.wait_exit(Duration::from_secs(seconds + 15))?;
        ensure!(
            code == Some(0),
            "{name}: an exchange was lost during the floods (exit {code:?}):\n{}",
            hold.output()
        );
    }
    eprintln!(
        "kawaii_flood: 40 connections held through {FLOOD} spoofed SYNs + {FLOOD} UDP flows \
         in {flood_time:?}; tables after: {n_confirmed} confirmed, {n_embryonic} embryonic \
         (of {CT_ENTRIES} each); fwd_redirect {}, ct_confirm_full {}, drop_ct_full {}, \
         pass_fib {}",
        during.packets("fwd_redirect"),
        during.packets("ct_confirm_full"),
        during.packets("drop_ct_full"),
        during.packets("pass_fib"),
    );
    ensure!(
        n_confirmed <= CT_ENTRIES as usize && n_embryonic <= CT_ENTRIES as usize,
        "tables overflow: {n_confirmed} / {n_embryonic}"
    );
    ensure!(
        during.packets("drop_ct_full") == 0,
        "no new flow may fail for a full table: the embryonic LRU makes room"
    );
    Ok(())
}
