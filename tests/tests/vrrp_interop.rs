//! Interop of kowabungad's VRRP engine with a real keepalived 2.2 (Debian), in
//! network namespaces: wire bytes, ours as master with keepalived as backup and the
//! reverse, takeover after a crash answered on ARP and ping.
//!
//! Privileged: skipped with a message when not root, or failed where skipping is
//! forbidden (`kowabunga_testkit::privileged`).

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kowabunga_control::vrrp::packet::{Advert, ChecksumMode, MCAST_V4};
use kowabunga_testkit::privileged;
use kowabunga_tests::vrrp::capture::{capture, hex};
use kowabunga_tests::vrrp::lab::{VrrpLab, ROUTER_ADDRS, VIP, VIP2_CIDR, VIP_CIDR, VRID};
use kowabunga_tests::vrrp::node::{Impl, Node, Spec};
use kowabunga_tests::vrrp::wait::{holds, until};

/// Labs run one at a time: timing matters and the machine has 2 cores.
static LAB: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ours() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_kowabunga-vrrp-node"))
}

fn vip_addr() -> IpAddr {
    VIP.parse().expect("VIP")
}

/// keepalived's adverts, byte for byte, are what our encoder produces for the same
/// parameters (pseudo-header checksum), including the priority-0 advert of a
/// graceful stop; the variant without pseudo-header differs only in the checksum.
#[test]
fn keepalived_wire_bytes_match_our_codec() -> Result<()> {
    if !privileged("keepalived_wire_bytes_match_our_codec") {
        return Ok(());
    }
    let _serial = serial();
    let lab = VrrpLab::new()?;
    let mut spec = Spec::new(Impl::Keepalived, 150, 100);
    spec.vips = vec![VIP_CIDR.to_owned(), VIP2_CIDR.to_owned()];
    let cap = capture(lab.client.name(), "br0", 3, Duration::from_secs(10), |_| {
        true
    })?;
    let mut node = Node::start(&lab, 0, &spec, ours())?;
    let adverts = cap.wait()?;
    ensure!(
        adverts.len() == 3,
        "captured {} adverts:\n{}",
        adverts.len(),
        node.log_text()
    );
    let src: IpAddr = ROUTER_ADDRS[0].parse()?;
    let dst = IpAddr::V4(MCAST_V4);
    let want = Advert {
        vrid: VRID,
        priority: 150,
        max_advert_cs: 10,
        addresses: vec![vip_addr(), "10.77.0.2".parse()?],
    };
    for a in &adverts {
        println!(
            "keepalived advert {} -> {} ttl {} tos {:#04x}: {}",
            a.src,
            a.dst,
            a.ttl,
            a.tos,
            hex(&a.vrrp)
        );
        ensure!(
            a.ttl == 255 && a.dst == MCAST_V4 && IpAddr::V4(a.src) == src,
            "{a:?}"
        );
        let decoded = Advert::decode(&a.vrrp, src, dst, ChecksumMode::PseudoHeader)?;
        ensure!(decoded == want, "{decoded:?}");
        ensure!(
            a.vrrp == want.encode(src, dst, ChecksumMode::PseudoHeader)?,
            "bytes differ"
        );
        ensure!(Advert::decode(&a.vrrp, src, dst, ChecksumMode::NoPseudoHeader).is_err());
        let v2 = want.encode(src, dst, ChecksumMode::NoPseudoHeader)?;
        ensure!(v2[..6] == a.vrrp[..6] && v2[8..] == a.vrrp[8..] && v2[6..8] != a.vrrp[6..8]);
    }
    // A graceful stop sends priority 0.
    let cap = capture(lab.client.name(), "br0", 1, Duration::from_secs(5), |c| {
        c.vrrp.get(2) == Some(&0)
    })?;
    node.terminate();
    let stop = cap.wait()?;
    ensure!(stop.len() == 1, "no priority-0 advert from keepalived");
    println!("keepalived priority-0 advert: {}", hex(&stop[0].vrrp));
    let want0 = Advert {
        priority: 0,
        ..want
    };
    ensure!(stop[0].vrrp == want0.encode(src, dst, ChecksumMode::PseudoHeader)?);
    Ok(())
}

/// Our adverts are byte-identical to keepalived's for the same parameters.
#[test]
fn our_wire_bytes_match_keepalived() -> Result<()> {
    if !privileged("our_wire_bytes_match_keepalived") {
        return Ok(());
    }
    let _serial = serial();
    let lab = VrrpLab::new()?;
    let cap = capture(lab.client.name(), "br0", 2, Duration::from_secs(10), |_| {
        true
    })?;
    let mut spec = Spec::new(Impl::Ours, 150, 100);
    spec.vips = vec![VIP_CIDR.to_owned(), VIP2_CIDR.to_owned()];
    let mut ours_node = Node::start(&lab, 0, &spec, ours())?;
    let mine = cap.wait()?;
    ensure!(mine.len() == 2, "{}", ours_node.log_text());
    ours_node.terminate();
    let cap = capture(lab.client.name(), "br0", 2, Duration::from_secs(10), |_| {
        true
    })?;
    spec.imp = Impl::Keepalived;
    let theirs_node = Node::start(&lab, 0, &spec, ours())?;
    let theirs = cap.wait()?;
    drop(theirs_node);
    ensure!(theirs.len() == 2);
    for (m, t) in mine.iter().zip(&theirs) {
        println!("ours {} / keepalived {}", hex(&m.vrrp), hex(&t.vrrp));
        ensure!(
            m.vrrp == t.vrrp
                && m.ttl == t.ttl
                && m.src == t.src
                && m.dst == t.dst
                && m.tos == t.tos,
            "{m:?} vs {t:?}"
        );
    }
    Ok(())
}

fn interop(master: Impl, backup: Impl) -> Result<()> {
    let lab = VrrpLab::new()?;
    let mut m = Node::start(&lab, 0, &Spec::new(master, 150, 100), ours())?;
    let b = Node::start(&lab, 1, &Spec::new(backup, 100, 100), ours())?;
    until("r1 to hold the VIP", Duration::from_secs(5), || {
        lab.vip_on(0)
    })
    .with_context(|| format!("r1 log:\n{}\nr2 log:\n{}", m.log_text(), b.log_text()))?;
    // The backup accepts the master's adverts: it never claims the VIP.
    holds("r2 staying backup", Duration::from_millis(1500), || {
        Ok(!lab.vip_on(1)? && lab.vip_on(0)?)
    })
    .with_context(|| format!("r1 log:\n{}\nr2 log:\n{}", m.log_text(), b.log_text()))?;
    ensure!(lab.ping_vip()?, "ping the VIP on r1");
    let r1_mac = lab.mac(0)?;
    ensure!(
        lab.arping_vip()? == vec![r1_mac.clone()],
        "ARP for the VIP answered by r1 only"
    );

    // Crash of the master: cut off and SIGKILLed.
    lab.cut(0)?;
    m.kill9();
    let took = until("r2 to take the VIP", Duration::from_secs(5), || {
        lab.vip_on(1)
    })
    .with_context(|| format!("r2 log:\n{}", b.log_text()))?;
    println!("{master} master crashed, {backup} backup holds the VIP after {took:?}");
    ensure!(lab.ping_vip()?, "ping the VIP on r2");
    let r2_mac = lab.mac(1)?;
    ensure!(
        lab.arping_vip()? == vec![r2_mac],
        "ARP for the VIP answered by r2 only"
    );
    Ok(())
}

/// Ours as master, keepalived as backup; the crash moves the VIP to keepalived.
#[test]
fn ours_master_keepalived_backup() -> Result<()> {
    if !privileged("ours_master_keepalived_backup") {
        return Ok(());
    }
    let _serial = serial();
    interop(Impl::Ours, Impl::Keepalived)
}

/// keepalived as master, ours as backup; the crash moves the VIP to us.
#[test]
fn keepalived_master_ours_backup() -> Result<()> {
    if !privileged("keepalived_master_ours_backup") {
        return Ok(());
    }
    let _serial = serial();
    interop(Impl::Keepalived, Impl::Ours)
}

/// Graceful stops hand over both ways: priority 0 from one is understood by the other.
#[test]
fn graceful_handover_both_ways() -> Result<()> {
    if !privileged("graceful_handover_both_ways") {
        return Ok(());
    }
    let _serial = serial();
    for (a, b) in [
        (Impl::Ours, Impl::Keepalived),
        (Impl::Keepalived, Impl::Ours),
    ] {
        let lab = VrrpLab::new()?;
        let mut m = Node::start(&lab, 0, &Spec::new(a, 150, 1000), ours())?;
        // Adverts every second: only the priority-0 advert explains a fast handover.
        let n = Node::start(&lab, 1, &Spec::new(b, 100, 1000), ours())?;
        until("r1 to hold the VIP", Duration::from_secs(8), || {
            lab.vip_on(0)
        })?;
        holds("r2 staying backup", Duration::from_millis(1500), || {
            Ok(!lab.vip_on(1)?)
        })?;
        let t0 = std::time::Instant::now();
        m.terminate();
        let took = until("r2 to take the VIP", Duration::from_secs(5), || {
            lab.vip_on(1)
        })
        .with_context(|| format!("r2 log:\n{}", n.log_text()))?;
        println!(
            "{a} stopped gracefully, {b} holds the VIP after {:?}",
            t0.elapsed()
        );
        ensure!(
            took < Duration::from_millis(2500),
            "handover took {took:?}: priority 0 was not honoured"
        );
        ensure!(!lab.vip_on(0)?, "r1 kept the VIP after a graceful stop");
    }
    Ok(())
}
