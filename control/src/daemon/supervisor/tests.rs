//! Tests of the supervisor: reloads, sweeps, events and counters reach the
//! roles; restart-only changes are refused; a failed reload changes nothing.

use super::*;
use crate::config::ConfigError;
use crate::daemon::testing::{kawaii, kawaii_fake, kawaii_fake_mut, started, GOOD};
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::DropEvent;
use std::fs;
use std::net::Ipv4Addr;

#[test]
fn bad_config_on_reload_keeps_the_old_state() {
    let (file, mut d) = started("reload-bad");
    let before = d.config().clone();
    file.write(&GOOD.replace("\"8080\"", "\"80,x\""));
    let err = d.reload().expect_err("invalid");
    assert!(matches!(err, ReloadError::Config(ConfigError::Invalid(_))));
    assert_eq!(
        err.to_string(),
        r#"kawaii.dnat[0].ports: "80,x" is not a port list ("x" is not a port)"#
    );
    assert_eq!(d.config(), &before);
    assert_eq!(kawaii(&d).bank(), 0);
    assert_eq!(kawaii_fake(&d).applied.len(), 1, "nothing applied");

    // A YAML typo, then a missing file: same.
    file.write(&GOOD.replace("dnat:", "dnatt:"));
    let err = d.reload().expect_err("typo");
    assert!(err.to_string().contains("unknown field `dnatt`"), "{err}");
    fs::remove_file(&file.0).expect("rm");
    let err = d.reload().expect_err("missing");
    assert!(matches!(err, ReloadError::Config(ConfigError::Read { .. })));
    assert_eq!(kawaii_fake(&d).applied.len(), 1);
    assert_eq!(d.config(), &before);

    // And a good file afterwards is applied.
    file.write(GOOD);
    d.reload().expect("reload");
    assert_eq!(kawaii(&d).bank(), 1);
}

#[test]
fn reload_refuses_restart_only_changes() {
    let (file, mut d) = started("reload-restart");
    let before = d.config().clone();
    for (yaml, field) in [
        (GOOD.replace("peer1]", "peer2]"), "node.interfaces"),
        (
            GOOD.replace(
                "  zone: eu-west-a\n",
                "  zone: eu-west-a\n  bpffs: /sys/fs/bpf/other\n",
            ),
            "node.bpffs",
        ),
        (
            GOOD.replace(
                "  zone: eu-west-a\n",
                "  zone: eu-west-a\n  conntrack_entries: 1024\n",
            ),
            "node.conntrack_entries",
        ),
        (
            GOOD.replace(
                "  zone: eu-west-a\n",
                "  zone: eu-west-a\n  vrrp: {instances: [{vrid: 51, interface: pub0, zone: eu-west-a, virtual_ips: [203.0.113.10/24]}]}\n",
            ),
            "node.vrrp",
        ),
    ] {
        file.write(&yaml);
        let err = d.reload().expect_err(field);
        assert_eq!(
            err.to_string(),
            format!("{field} changed: restart kowabungad to apply it")
        );
        assert_eq!(d.config(), &before);
        assert_eq!(kawaii_fake(&d).applied.len(), 1);
    }
    // nat_port_range and zone are reloadable.
    file.write(&GOOD.replace(
        "  zone: eu-west-a\n",
        "  zone: eu-west-b\n  nat_port_range: \"2000-3000\"\n",
    ));
    d.reload().expect("reload");
    assert_eq!(kawaii(&d).applied().nat_ports.0, 2000);
}

#[test]
fn failed_apply_on_reload_keeps_the_old_config() {
    let (file, mut d) = started("reload-apply");
    let before = d.config().clone();
    let before_applied = kawaii(&d).applied().clone();
    file.write(&GOOD.replace("\"22\"", "\"23\""));
    kawaii_fake_mut(&mut d).fail_apply = true;
    let err = d.reload().expect_err("apply");
    assert_eq!(err.to_string(), "map kw_rules: write failed");
    assert_eq!(d.config(), &before);
    assert_eq!(kawaii(&d).applied(), &before_applied);
    assert_eq!(kawaii(&d).bank(), 0);
}

#[test]
fn events_and_sweeps_reach_the_roles() {
    let (_file, mut d) = started("events");
    let event = DropEvent {
        ts_ns: 1,
        ifindex: 3,
        reason: kw_stat::KW_STAT_DROP_INGRESS_DENIED as u8,
        reason_name: "drop_ingress_denied",
        proto: 6,
        saddr: Ipv4Addr::new(198, 51, 100, 1),
        daddr: Ipv4Addr::new(203, 0, 113, 10),
        sport: 40000,
        dport: 23,
    };
    assert_eq!(
        crate::role::drops::describe_drop(&event),
        "drop_ingress_denied tcp 198.51.100.1:40000 -> 203.0.113.10:23 ifindex 3"
    );
    let icmp = DropEvent {
        proto: 1,
        ..event.clone()
    };
    assert_eq!(
        crate::role::drops::describe_drop(&icmp),
        "drop_ingress_denied icmp 198.51.100.1 -> 203.0.113.10 ifindex 3"
    );
    kawaii_fake_mut(&mut d).events = vec![event, icmp];
    assert_eq!(d.poll_events(), 2);
    assert_eq!(d.poll_events(), 0);
    d.sweep(42);
    assert_eq!(kawaii_fake(&d).sweeps, [42]);
}

#[test]
fn counters_are_logged_as_deltas() {
    let (_file, mut d) = started("counters");
    kawaii_fake_mut(&mut d).counters = vec![10, 0, 2];
    assert_eq!(d.log_counters(), "fwd_redirect=10 pass_no_config=2");
    kawaii_fake_mut(&mut d).counters = vec![15, 0, 2];
    assert_eq!(d.log_counters(), "fwd_redirect=5");
    assert_eq!(d.log_counters(), "");
}
