//! Kawaii in the kernel: loading, bank flips, test runs, the conntrack
//! sweep, pinning and attachment. They need the kernel: when this process
//! is not privileged they print why and pass, or fail where skipping is
//! forbidden (`kowabunga_testkit::privileged`).

#![allow(clippy::unwrap_used)]

mod support;

use std::{fs, process::Command};

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
use kowabunga_bindings::{kw_config, kw_ct_key, kw_ct_state, kw_ct_value, kw_rule, kw_stat};
use kowabunga_dataplane::kawaii::config::{Policy, Rule, RuleProto};
use kowabunga_dataplane::KawaiiConfig;
use kowabunga_dataplane::{
    conntrack,
    kawaii::banks::{self as rules, Tables},
    kawaii::index::BankIndex,
    kawaii::{self, MAP_NAMES},
    test_run::{kawaii_pin_mismatches, XDP_PASS},
    Baseline, Kawaii, LoadOptions, Mode, Role,
};
use kowabunga_testkit::{missing, privileged};

use support::{unique, PinDir};

fn arp_frame() -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &[2, 0, 0, 0, 0, 1],
        &[10, 0, 0, 1],
        &[0; 6],
        &[10, 0, 0, 2],
    )
    .unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0xff; 6])
        .arp(arp)
        .write_to_vec(&mut frame)
        .unwrap();
    frame.resize(60, 0);
    frame
}

fn sample_config(snat: [u8; 4]) -> (kw_config, Tables) {
    let mut config = kw_config {
        snat_ip: u32::from_ne_bytes(snat),
        port_min: 1024,
        port_max: 65535,
        n_vips: 1,
        ..Default::default()
    };
    config.vips[0] = config.snat_ip;
    let mut tables = Tables::default();
    tables[0].push(kw_rule {
        port_lo: 22,
        port_hi: 22,
        proto: 6,
        ..Default::default()
    });
    tables[2].push(kw_rule {
        target: u32::from_ne_bytes([10, 0, 0, 10]),
        port_lo: 80,
        port_hi: 80,
        proto: 6,
        ..Default::default()
    });
    tables[2].push(kw_rule {
        target: u32::from_ne_bytes([10, 0, 0, 10]),
        port_lo: 443,
        port_hi: 443,
        proto: 6,
        ..Default::default()
    });
    (config, tables)
}

fn ct_pair(last_seen_ns: u64, port: u16) -> [(kw_ct_key, kw_ct_value); 2] {
    let client = u32::from_ne_bytes([10, 0, 0, 2]);
    let server = u32::from_ne_bytes([8, 8, 8, 8]);
    let vip = u32::from_ne_bytes([203, 0, 113, 10]);
    let key = kw_ct_key {
        saddr: client,
        daddr: server,
        sport: port.to_be(),
        dport: 53u16.to_be(),
        proto: 17,
        _pad: [0; 3],
    };
    let value = kw_ct_value {
        nat_saddr: vip,
        nat_daddr: server,
        nat_sport: port.to_be(),
        nat_dport: 53u16.to_be(),
        in_role: Role::Private.into(),
        state: kw_ct_state::KW_CT_ESTABLISHED as u8,
        last_seen_ns,
        ..Default::default()
    };
    let reply = conntrack::peer_key(&key, &value);
    let reply_value = kw_ct_value {
        nat_saddr: server,
        nat_daddr: client,
        nat_sport: 53u16.to_be(),
        nat_dport: port.to_be(),
        in_role: Role::Public.into(),
        ..value
    };
    [(key, value), (reply, reply_value)]
}

#[test]
fn loads_without_pinning() {
    if !privileged("loads_without_pinning") {
        return;
    }
    let mut kawaii = Kawaii::load(&LoadOptions::default()).unwrap();
    assert_eq!(kawaii.pin_dir(), None);
    for role in Role::ALL {
        kawaii.program(role).unwrap();
    }
    assert_eq!(kawaii.active_bank().unwrap(), None);
    assert_eq!(kawaii.active_config().unwrap(), None);
    assert!(kawaii.conntrack_entries().unwrap().is_empty());
    assert_eq!(kawaii.counters().unwrap().total_packets(), 0);
    let mut events = kawaii.drop_events().unwrap();
    assert_eq!(events.poll(), None);
    assert!(kawaii.drop_events().is_err(), "one reader only");
    // A second, independent load has its own maps.
    let other = Kawaii::load(&LoadOptions {
        pin_dir: None,
        ct_entries: Some(128),
    })
    .unwrap();
    assert_eq!(other.active_bank().unwrap(), None);
}

#[test]
fn applies_and_reads_back_with_bank_flips() {
    if !privileged("applies_and_reads_back_with_bank_flips") {
        return;
    }
    let mut kawaii = Kawaii::load(&LoadOptions::default()).unwrap();
    let (a, a_tables) = sample_config([203, 0, 113, 10]);
    let (mut b, mut b_tables) = sample_config([198, 51, 100, 1]);
    b.egress_policy = 1;
    b_tables[4] = vec![
        kw_rule {
            port_lo: 1,
            port_hi: 65535,
            proto: 6,
            ..Default::default()
        };
        3
    ];

    assert_eq!(kawaii.apply_raw(&a, &a_tables).unwrap(), 0);
    let got = kawaii.active_config().unwrap().unwrap();
    assert_eq!(got.bank, 0);
    assert_eq!(got.tables, a_tables);
    assert_eq!(got.config, rules::pack(&a, &a_tables).unwrap().0);
    assert_eq!(kawaii.active_word().unwrap(), 1);

    assert_eq!(kawaii.apply_raw(&b, &b_tables).unwrap(), 1);
    let got = kawaii.active_config().unwrap().unwrap();
    assert_eq!(
        (got.bank, got.config.snat_ip, got.config.egress_policy),
        (1, b.snat_ip, 1)
    );
    assert_eq!(got.tables, b_tables);
    assert_eq!(got.config.rule_start, [0, 1, 1, 3, 3]);

    // Invalid: nothing changes.
    let mut bad = b_tables.clone();
    bad[0] = vec![kw_rule::default(); kowabunga_bindings::KW_MAX_RULES_PER_TABLE as usize + 1];
    assert!(kawaii.apply_raw(&a, &bad).is_err());
    assert_eq!(kawaii.active_bank().unwrap(), Some(1));

    assert_eq!(kawaii.apply_raw(&a, &a_tables).unwrap(), 0);
    assert_eq!(kawaii.active_config().unwrap().unwrap().tables, a_tables);

    // The typed configuration lands in the kernel as it encodes.
    let mut typed = KawaiiConfig::new(
        std::net::Ipv4Addr::new(203, 0, 113, 10),
        "10.0.0.0/25".parse().unwrap(),
    );
    typed.rules.dnat.push(Rule::dnat(
        std::net::Ipv4Addr::new(10, 0, 0, 10),
        RuleProto::Tcp,
        (80, 443),
    ));
    typed.egress_policy = Policy::Drop;
    assert_eq!(kawaii.apply(&typed).unwrap(), 1);
    let got = kawaii.active_config().unwrap().unwrap();
    let (raw, tables) = typed.encode().unwrap();
    assert_eq!(got.tables, tables);
    assert_eq!(got.config, rules::pack(&raw, &tables).unwrap().0);
    assert_eq!(got.tables[2][0].target.to_ne_bytes(), [10, 0, 0, 10]);

    kawaii.deactivate().unwrap();
    assert_eq!(kawaii.active_bank().unwrap(), None);
}

#[test]
fn every_role_passes_arp() {
    if !privileged("every_role_passes_arp") {
        return;
    }
    let frame = arp_frame();
    assert_eq!(frame.len(), 60);
    let mut kawaii = Kawaii::load(&LoadOptions::default()).unwrap();
    for configured in [false, true] {
        if configured {
            let (c, t) = sample_config([203, 0, 113, 10]);
            kawaii.apply_raw(&c, &t).unwrap();
        }
        for role in Role::ALL {
            let out = kawaii.run(role, &frame).unwrap();
            assert_eq!(out.verdict, XDP_PASS, "{role} configured={configured}");
            assert_eq!(out.data, frame, "{role}");
            kawaii.run_repeat(role, &frame, 100).unwrap();
        }
    }
    // The counters (if the program counts) only ever say "pass".
    let counters = kawaii.counters().unwrap();
    for (name, c) in counters.iter() {
        if name.starts_with("drop_") {
            assert_eq!(c.packets, 0, "{name}");
        }
    }
    let _ = counters.packets(kw_stat::KW_STAT_PASS_NOT_IPV4);
    kawaii.reset_counters().unwrap();
    assert_eq!(kawaii.counters().unwrap().total_packets(), 0);

    let baseline = Baseline::load().unwrap();
    assert_eq!(baseline.run(&frame).unwrap().verdict, XDP_PASS);
    baseline.run_repeat(&frame, 1000).unwrap();
}

#[test]
fn sweeps_expired_flows_in_the_kernel() {
    if !privileged("sweeps_expired_flows_in_the_kernel") {
        return;
    }
    let mut kawaii = Kawaii::load(&LoadOptions {
        pin_dir: None,
        ct_entries: Some(1024),
    })
    .unwrap();
    let now = 1_000_000 * 1_000_000_000u64;
    let old = ct_pair(now - 500 * 1_000_000_000, 40000);
    let fresh = ct_pair(now - 1_000_000_000, 40001);
    for (k, v) in old.iter().chain(fresh.iter()) {
        kawaii.conntrack_insert(k, v).unwrap();
    }
    assert_eq!(kawaii.conntrack_entries().unwrap().len(), 4);
    let report = kawaii.sweep(now).unwrap();
    assert_eq!(report.scanned, 4);
    assert_eq!(report.flows_expired, 1);
    assert_eq!(report.entries_removed, 2);
    assert_eq!(kawaii.conntrack_get(&old[0].0).unwrap(), None);
    assert_eq!(kawaii.conntrack_get(&fresh[1].0).unwrap(), Some(fresh[1].1));
    assert_eq!(kawaii.sweep(now).unwrap().entries_removed, 0);
}

/// 10,000 ingress rules (distinct /32 sources, one port each, the last
/// one a range) and 10,000 egress rules applied, replaced and applied again:
/// each apply well under a second, the index in the kernel as built.
#[test]
fn applies_ten_thousand_rules_in_under_a_second() {
    if !privileged("applies_ten_thousand_rules_in_under_a_second") {
        return;
    }
    let mut kawaii = Kawaii::load(&LoadOptions::default()).unwrap();
    let big = |salt: u32| {
        let (config, mut tables) = sample_config([203, 0, 113, 10]);
        tables[0] = (0..10_000u32)
            .map(|i| kw_rule {
                cidr: kowabunga_bindings::kw_cidr {
                    addr: (0x6400_0000 + salt * 0x10_0000 + i).to_be(),
                    mask: u32::MAX.to_be(),
                },
                port_lo: 1000 + (i % 5000) as u16,
                port_hi: if i == 9_999 {
                    65535
                } else {
                    1000 + (i % 5000) as u16
                },
                proto: if i % 3 == 0 { 17 } else { 6 },
                ..Default::default()
            })
            .collect();
        tables[1] = tables[0].clone();
        (config, tables)
    };
    for salt in [0, 1, 2, 2] {
        let (config, tables) = big(salt);
        let started = std::time::Instant::now();
        let bank = kawaii.apply_raw(&config, &tables).unwrap();
        let took = started.elapsed();
        // a figure, not an assertion: timing belongs to benchmarks (the
        // machine may be busy); the bar is read from this line
        println!("apply of 2 x 10,000 rules (salt {salt}) into bank {bank}: {took:?}");
        assert_eq!(
            kawaii.read_rule_index(bank).unwrap(),
            BankIndex::build(bank, &tables).unwrap()
        );
    }
}

#[test]
fn pinned_maps_are_reused_and_checked() {
    if !privileged("pinned_maps_are_reused_and_checked") {
        return;
    }
    let pins = PinDir::new();
    let options = LoadOptions {
        pin_dir: Some(pins.dir.clone()),
        ct_entries: Some(4096),
    };
    let (config, tables) = sample_config([203, 0, 113, 10]);
    let flow = ct_pair(12345, 40000);
    {
        let mut kawaii = Kawaii::load(&options).unwrap();
        kawaii.apply_raw(&config, &tables).unwrap();
        kawaii.conntrack_insert(&flow[0].0, &flow[0].1).unwrap();
    }
    // The pins exist and match what this build expects (and so the ELF).
    let mismatches = kawaii_pin_mismatches(&pins.dir, 4096);
    assert_eq!(
        mismatches.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        MAP_NAMES
    );
    for (map, difference) in mismatches {
        assert_eq!(difference, None, "{map}");
    }
    {
        let mut kawaii = Kawaii::load(&options).unwrap();
        let active = kawaii.active_config().unwrap().unwrap();
        assert_eq!((active.bank, active.tables), (0, tables.clone()));
        assert_eq!(kawaii.conntrack_get(&flow[0].0).unwrap(), Some(flow[0].1));
        assert_eq!(
            kawaii.read_rule_index(0).unwrap(),
            BankIndex::build(0, &tables).unwrap()
        );
        // A new process knows nothing of the index it finds: it reads it
        // back and updates it (bank 1, then bank 0 again).
        let (other, mut other_tables) = sample_config([198, 51, 100, 1]);
        other_tables[0].clear();
        for tables_now in [&other_tables, &tables, &other_tables] {
            let bank = kawaii.apply_raw(&other, tables_now).unwrap();
            assert_eq!(
                kawaii.read_rule_index(bank).unwrap(),
                BankIndex::build(bank, tables_now).unwrap()
            );
        }
        kawaii.apply_raw(&config, &tables).unwrap();
    }
    // Another conntrack size: refused, naming the map and the fix.
    let err = Kawaii::load(&LoadOptions {
        pin_dir: Some(pins.dir.clone()),
        ct_entries: Some(8192),
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, kawaii::Error::PinnedMapMismatch { map: "kw_ct4", .. }),
        "{msg}"
    );
    assert!(
        msg.contains("kw_ct4") && msg.contains("remove the pin"),
        "{msg}"
    );

    kawaii::remove_pinned_maps(&pins.dir).unwrap();
    for name in MAP_NAMES {
        assert!(!pins.dir.join(name).exists(), "{name}");
    }
    let kawaii = Kawaii::load(&options).unwrap();
    assert_eq!(
        kawaii.active_bank().unwrap(),
        None,
        "fresh maps after removal"
    );
}

#[test]
fn pin_dir_must_be_on_bpffs() {
    if !privileged("pin_dir_must_be_on_bpffs") {
        return;
    }
    let dir = std::env::temp_dir().join(unique("kowabunga-not-bpffs"));
    let err = Kawaii::load(&LoadOptions {
        pin_dir: Some(dir.clone()),
        ct_entries: None,
    })
    .unwrap_err();
    let _ = fs::remove_dir_all(&dir);
    assert!(matches!(err, kawaii::Error::NotBpffs(_)), "{err}");
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_xdp(ifname: &str) -> bool {
    ip(&["link", "show", "dev", ifname]).contains("xdp")
}

#[test]
fn attaches_pins_reuses_and_detaches_in_a_netns() {
    if !privileged("attaches_pins_reuses_and_detaches_in_a_netns") {
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        missing(
            "attaches_pins_reuses_and_detaches_in_a_netns",
            "the `ip` command (iproute2)",
        );
        return;
    }
    // A thread in a private network namespace: veths die with it.
    std::thread::spawn(|| {
        // SAFETY: unshare only changes this thread's namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        ip(&[
            "link", "add", "kwt0", "type", "veth", "peer", "name", "kwt1",
        ]);
        ip(&["link", "set", "kwt0", "up"]);
        ip(&["link", "set", "kwt1", "up"]);

        let pins = PinDir::new();
        let options = LoadOptions {
            pin_dir: Some(pins.dir.clone()),
            ct_entries: Some(1024),
        };
        let link_pin = pins.dir.join("links/kwt0");
        {
            let mut kawaii = Kawaii::load(&options).unwrap();
            let a = kawaii.attach(Role::Public, "kwt0").unwrap();
            assert!(a.pinned && !a.replaced, "{a:?}");
            assert_eq!(a.mode, Mode::Driver, "veth has native XDP");
            assert!(link_pin.exists());
            let b = kawaii.attach(Role::Private, "kwt0").unwrap();
            assert!(b.replaced && b.pinned, "{b:?}");
            assert_eq!(
                kawaii.attachments().collect::<Vec<_>>(),
                [("kwt0", Role::Private, Mode::Driver)]
            );
            assert!(kawaii.attach(Role::Public, "no-such-if0").is_err());
        }
        // The daemon is gone; the pinned link keeps the program attached.
        assert!(has_xdp("kwt0"));
        {
            let mut kawaii = Kawaii::load(&options).unwrap();
            let c = kawaii.attach(Role::Public, "kwt0").unwrap();
            assert!(c.replaced && c.pinned, "{c:?}");
            assert_eq!(c.mode, Mode::Inherited);
            assert!(kawaii.detach("kwt0").unwrap());
            assert!(!link_pin.exists());
            assert!(!has_xdp("kwt0"));
            assert!(!kawaii.detach("kwt0").unwrap());
        }
        // Not pinned: attached while the value lives, detached on drop.
        {
            let mut kawaii = Kawaii::load(&LoadOptions::default()).unwrap();
            let d = kawaii.attach(Role::Peering, "kwt1").unwrap();
            assert!(!d.pinned && !d.replaced, "{d:?}");
            assert!(has_xdp("kwt1"));
        }
        assert!(!has_xdp("kwt1"));
    })
    .join()
    .unwrap();
}

#[test]
fn a_routing_change_empties_the_flow_cache() {
    if !privileged("a_routing_change_empties_the_flow_cache") {
        return;
    }
    // A thread in a private network namespace: its routes and veths die with it.
    std::thread::spawn(|| {
        // SAFETY: unshare only changes this thread's namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let kawaii = Kawaii::load(&LoadOptions {
            pin_dir: None,
            ct_entries: Some(1024),
        })
        .unwrap();
        let watch = kawaii.flow_cache_route_watch().unwrap();
        let before = kawaii.flow_cache_generation().unwrap();
        ip(&[
            "link", "add", "kwr0", "type", "veth", "peer", "name", "kwr1",
        ]);
        ip(&["link", "set", "kwr0", "up"]);
        ip(&["addr", "add", "192.0.2.1/24", "dev", "kwr0"]);
        ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.2"]);
        // bounded wait: the watch thread bumps after each batch of messages
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut now = before;
        while now == before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            now = kawaii.flow_cache_generation().unwrap();
        }
        assert_ne!(now, before, "no new generation after route changes");
        // and a route removed alone is seen too
        std::thread::sleep(std::time::Duration::from_millis(300));
        let settled = kawaii.flow_cache_generation().unwrap();
        ip(&["route", "del", "198.51.100.0/24"]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut after = settled;
        while after == settled && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            after = kawaii.flow_cache_generation().unwrap();
        }
        assert_ne!(after, settled, "no new generation after a route removal");
        drop(watch); // joins its thread
    })
    .join()
    .unwrap();
}
