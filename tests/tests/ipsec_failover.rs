//! IPsec with VIP failover: site A is two Kawaii nodes sharing the zone's
//! VIPs by VRRP (100 ms adverts), each running `kowabungad` and charon. The
//! master dies: the backup takes the VIP and brings the tunnel up; the old
//! master comes back and takes over: the backup tears its SAs down. The
//! time from the event to traffic flowing again is measured and printed.
//!
//! Privileged: skipped with a message when not root, or failed where
//! skipping is forbidden (`kowabunga_testkit::privileged`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::ipsec::B_HOST_ADDR;
use kowabunga_tests::lab::ipsec_failover::IpsecFailoverLab;
use kowabunga_tests::lab::netns::Netns;

const UP: &str = "(kw-acme-office): up";

/// One ping from `ns` to `dest`, waiting at most 200 ms for the answer.
fn one_ping(ns: &Netns, dest: &str) -> bool {
    let mut cmd: Command = ns.command("ping");
    cmd.args(["-n", "-q", "-c", "1", "-W", "0.2", dest]);
    cmd.output().is_ok_and(|o| o.status.success())
}

/// Pings every 100 ms until one is answered (at most `limit`); the time
/// from `since` to that answer.
fn until_traffic(ns: &Netns, dest: &str, since: Instant, limit: Duration) -> Result<Duration> {
    while since.elapsed() < limit {
        if one_ping(ns, dest) {
            return Ok(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("no answer from {dest} within {limit:?}")
}

#[test]
fn the_backup_brings_the_tunnel_up_when_the_master_dies_and_hands_it_back() -> Result<()> {
    if !privileged("the_backup_brings_the_tunnel_up_when_the_master_dies_and_hands_it_back") {
        return Ok(());
    }
    let bin = find_kowabungad()?;
    let mut lab = IpsecFailoverLab::new()?;
    lab.nodes[0].start_daemon(&bin)?;
    lab.nodes[1].start_daemon(&bin)?;
    lab.nodes[0]
        .daemon()?
        .wait_log(UP, 1, Duration::from_secs(20))
        .context("a1 (master) never brought the tunnel up")?;
    ensure!(
        lab.nodes[0].holds_vip()? && !lab.nodes[1].holds_vip()?,
        "a1 is the master"
    );
    let first = until_traffic(
        &lab.private,
        B_HOST_ADDR,
        Instant::now(),
        Duration::from_secs(10),
    )?;
    println!("through a1: first answer after {first:?}");
    let a2_log = lab.nodes[1].daemon()?.log();
    ensure!(
        a2_log.contains("standby") || !a2_log.contains(UP),
        "the backup must not bring the tunnel up while a1 holds the VIP:\n{a2_log}"
    );

    // the master dies
    let crash = Instant::now();
    lab.nodes[0].crash()?;
    let took = until_traffic(&lab.private, B_HOST_ADDR, crash, Duration::from_secs(30))
        .with_context(|| {
            format!(
                "a2:\n{}",
                lab.nodes[1].daemon().map(|d| d.log()).unwrap_or_default()
            )
        })?;
    ensure!(lab.nodes[1].holds_vip()?, "a2 holds the VIP");
    lab.nodes[1]
        .daemon()?
        .wait_log(UP, 1, Duration::from_secs(1))?;
    println!("master crashed: traffic to site B flows again through a2 after {took:?}");

    // the old master comes back and takes over (priority 150): a2 tears
    // its SAs down, a1 brings the tunnel up
    lab.nodes[0].revive()?;
    let back = Instant::now();
    lab.nodes[0].start_daemon(&bin)?;
    lab.nodes[0]
        .daemon()?
        .wait_log(UP, 1, Duration::from_secs(20))
        .context("a1 never brought the tunnel up again")?;
    let handback = until_traffic(&lab.private, B_HOST_ADDR, back, Duration::from_secs(30))?;
    lab.nodes[1]
        .daemon()?
        .wait_log(
            "lost the VIP, terminating its SAs",
            1,
            Duration::from_secs(5),
        )
        .context("a2 kept its SAs")?;
    ensure!(
        lab.nodes[0].holds_vip()? && !lab.nodes[1].holds_vip()?,
        "a1 is the master again"
    );
    println!("old master back: traffic through a1 again {handback:?} after its daemon started");
    // a2 holds no SA any more
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.nodes[1].charon.list_sas().contains("ESTABLISHED") {
        ensure!(
            Instant::now() < deadline,
            "a2 still has SAs:\n{}",
            lab.nodes[1].charon.list_sas()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(one_ping(&lab.private, B_HOST_ADDR), "traffic through a1");
    Ok(())
}
