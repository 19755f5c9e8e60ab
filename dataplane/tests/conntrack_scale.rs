//! Conntrack expiry at scale (issue 9 item 5): fill the confirmed table
//! with 262,144 and 1,048,576 entries (half the flows expired), sweep it on
//! the [`Sweeper`] thread and print how long the sweep took and how long the
//! caller was held (request + poll). Correctness is asserted; times are
//! printed, never asserted (design section 7). Run with `--nocapture`:
//!
//! ```text
//! cargo test -p kowabunga-dataplane --test conntrack_scale -- --nocapture
//! ```
//!
//! Needs the kernel: when this process is not privileged it prints why and
//! passes, or fails where skipping is forbidden.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kowabunga_bindings::{kw_ct_key, kw_ct_state, kw_ct_value};
use kowabunga_dataplane::{
    conntrack::{self, Entry},
    kawaii::{MAP_CT4, MAP_CT4_NEW},
    Kawaii, LoadOptions, Role,
};
use kowabunga_testkit::privileged;

const S: u64 = 1_000_000_000;

/// Flow `i` of a table (two entries), last seen at `seen`.
fn pair(i: u32, seen: u64) -> [Entry; 2] {
    let client = (0x0a00_0000 + (i >> 14)).to_be();
    let server = 0x0808_0808u32.to_be();
    let vip = 0xcb00_710au32.to_be();
    let port = (1024 + (i & 0x3fff) as u16).to_be();
    let key = kw_ct_key {
        saddr: client,
        daddr: server,
        sport: port,
        dport: 53u16.to_be(),
        proto: 17,
        _pad: [0; 3],
    };
    let value = kw_ct_value {
        nat_saddr: vip,
        nat_daddr: server,
        nat_sport: (i as u16).to_be(),
        nat_dport: 53u16.to_be(),
        in_role: Role::Private.into(),
        state: kw_ct_state::KW_CT_ESTABLISHED as u8,
        last_seen_ns: seen,
        ..Default::default()
    };
    let reply = conntrack::peer_key(&key, &value);
    let reply_value = kw_ct_value {
        nat_saddr: server,
        nat_daddr: client,
        nat_sport: 53u16.to_be(),
        nat_dport: port,
        in_role: Role::Public.into(),
        ..value
    };
    // flows sharing a nat_sport would share a reply key: vary the VIP
    let reply = kw_ct_key {
        daddr: (0xcb00_0000 + (i >> 16)).to_be(),
        ..reply
    };
    let value = kw_ct_value {
        nat_saddr: reply.daddr,
        ..value
    };
    [(key, value), (reply, reply_value)]
}

fn sweep_at_scale(entries: u32) {
    let kawaii = Kawaii::load(&LoadOptions {
        pin_dir: None,
        ct_entries: Some(entries),
    })
    .unwrap();
    let now = conntrack::monotonic_now_ns().max(10_000 * S);
    let flows = entries / 2;
    let mut all = Vec::with_capacity(entries as usize);
    for i in 0..flows {
        // even flows idle for 10 min (UDP: 120 s timeout), odd ones fresh
        let seen = if i % 2 == 0 { now - 600 * S } else { now - S };
        all.extend(pair(i, seen));
    }
    let table = kawaii.conntrack_table(MAP_CT4).unwrap();
    let t = Instant::now();
    table.insert(&all).unwrap();
    let fill = t.elapsed();
    drop(all);

    let t = Instant::now();
    let read = table.entries().unwrap().len();
    let read_time = t.elapsed();
    assert_eq!(read, entries as usize);

    let mut sweeper = kawaii.sweeper().unwrap();
    let t = Instant::now();
    assert!(sweeper.request(now));
    assert!(sweeper.poll().is_none() || !sweeper.running());
    let held = t.elapsed();
    // the caller polls as the daemon's loop would, never blocking
    let mut polls = 0u64;
    let mut longest_poll = Duration::ZERO;
    let report = loop {
        let p = Instant::now();
        let r = sweeper.poll();
        longest_poll = longest_poll.max(p.elapsed());
        polls += 1;
        if let Some(r) = r {
            break r.unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let wall = t.elapsed();
    assert_eq!(report.scanned, entries as usize);
    assert_eq!(report.flows_expired, (flows / 2) as usize);
    assert_eq!(report.entries_removed, flows as usize);
    assert_eq!(table.entries().unwrap().len(), (entries / 2) as usize);
    let embryonic = kawaii.conntrack_table(MAP_CT4_NEW).unwrap();
    assert_eq!(embryonic.entries().unwrap().len(), 0);
    println!(
        "conntrack_scale: {entries} entries: fill {fill:?}, batch read {read_time:?}, \
         sweep {:?} on the sweeper thread (wall {wall:?}; {} flows / {} entries removed); \
         caller held {held:?} to request, longest poll {longest_poll:?} over {polls} polls",
        report.elapsed, report.flows_expired, report.entries_removed
    );
}

#[test]
fn sweeps_262144_entries_off_the_caller() {
    if privileged("sweeps_262144_entries_off_the_caller") {
        sweep_at_scale(262_144);
    }
}

#[test]
fn sweeps_1048576_entries_off_the_caller() {
    if privileged("sweeps_1048576_entries_off_the_caller") {
        sweep_at_scale(1_048_576);
    }
}
