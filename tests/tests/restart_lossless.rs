//! Restarts that lose nothing (issue 12, item 5), proven under live traffic.
//!
//! Kawaii (4 SNAT connections private -> Internet and 4 DNAT connections
//! Internet -> VIP:8080 -> private host) and Konvey (6 connections client ->
//! VIP:80 -> the three backends) each exchange a numbered line every 50 ms
//! over one TCP connection while `kowabungad`:
//!
//! * is killed with `SIGKILL` and started again a second later;
//! * stops on `SIGTERM` and is started again;
//! * is upgraded: stopped, then replaced by a daemon whose programs differ
//!   (the `-mcpu=v2` build, `KOWABUNGA_BPF_VARIANT=v2`); on the Kawaii side,
//!   a daemon asked for a build it lacks (`v9`) is refused first, with one
//!   line and exit 1, while the traffic goes on.
//!
//! Each: every line echoed, no reset, every connection alive to the end; the
//! pinned link is the same link with a new program inside (an upgrade: a new
//! tag); the conntrack entries of those flows are the same (same translated
//! ports); Konvey's rotations are the same. Figures (lines, longest gap
//! between two echoes, time without a daemon) are printed; nothing is timed.
//!
//! VRRP: a `kowabungad` master killed with `SIGKILL` leaves its VIP; the
//! backup takes over; the restarted daemon removes the VIP during its start-up
//! and stays backup, and the two nodes never hold the VIP together again.
//!
//! Privileged: skipped with a message when not root, or failed where skipping
//! is forbidden (`kowabunga_testkit::privileged`). Needs `kowabungad`
//! (`cargo build -p kowabunga-control --bins`), `bpftool` and `arping`
//! (`cargo xtask test` installs and builds them).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kowabunga_dataplane::conntrack::CtTable;
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::daemon::Daemon;
use kowabunga_tests::lab::exchange::{Exchange, ExchangeReport};
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::konvey::{self, KonveyLab};
use kowabunga_tests::lab::links::{dump_map, pinned_links, LinkInfo};
use kowabunga_tests::lab::topology::{KawaiiLab, DNAT_PORT, INET_ADDR, PRIV_ADDR, VIP};
use kowabunga_tests::lab::traffic::{run_bounded, Agent};
use kowabunga_tests::vrrp::lab::{VrrpLab, ROUTER_ADDRS, VIP_CIDR, VRID};
use kowabunga_tests::vrrp::wait::until;

/// Labs of this file run one at a time: each runs daemons, the machine has 2 cores.
static LAB: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(PoisonError::into_inner)
}

fn agent() -> Agent {
    Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"))
}

/// TCP echo port on the Internet host (SNAT traffic).
const INET_TCP: u16 = 7000;
/// How long each exchanger sends (s).
const SECONDS: u64 = 8;
/// One line every this many ms.
const INTERVAL_MS: u64 = 50;
/// Traffic before the restart.
const BEFORE: Duration = Duration::from_millis(1500);
/// Time without a daemon in the kill and SIGTERM scenarios.
const DOWN: Duration = Duration::from_secs(1);

/// How the daemon is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// `SIGKILL`, then a new start.
    Kill9,
    /// `SIGTERM`, then a new start.
    Graceful,
    /// `SIGTERM`, then a daemon whose programs differ.
    Upgrade,
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Restart::Kill9 => "kill -9 + start",
            Restart::Graceful => "SIGTERM + start",
            Restart::Upgrade => "upgrade to another program build",
        })
    }
}

/// The binary the restart starts: `kowabungad`, or for an upgrade a wrapper
/// that starts it with the other program build.
struct NewDaemon {
    path: PathBuf,
    script: Option<PathBuf>,
}

impl NewDaemon {
    fn new(how: Restart, bin: &Path, tag: &str) -> Result<Self> {
        if how != Restart::Upgrade {
            return Ok(NewDaemon {
                path: bin.to_owned(),
                script: None,
            });
        }
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::env::temp_dir().join(format!("{tag}-kowabungad-v2"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n# kowabungad with the -mcpu=v2 build of its programs\nKOWABUNGA_BPF_VARIANT=v2 exec '{}' \"$@\"\n",
                bin.display()
            ),
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(NewDaemon {
            script: Some(path.clone()),
            path,
        })
    }
}

impl Drop for NewDaemon {
    fn drop(&mut self) {
        if let Some(p) = &self.script {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A lab whose daemon can be stopped.
trait DaemonLab {
    fn daemon(&mut self) -> Option<&mut Daemon>;
    fn stop_daemon(&mut self);

    /// Stops the running daemon as `how` says (`SIGKILL` or `SIGTERM`),
    /// waits [`DOWN`] unless upgrading, and returns when it was stopped.
    fn stop_for(&mut self, how: Restart) -> Result<Instant> {
        let t0 = Instant::now();
        match how {
            Restart::Kill9 => self.daemon().context("no daemon")?.kill()?,
            Restart::Graceful | Restart::Upgrade => self.stop_daemon(),
        }
        if how != Restart::Upgrade {
            std::thread::sleep(DOWN);
        }
        Ok(t0)
    }
}

impl DaemonLab for KawaiiLab {
    fn daemon(&mut self) -> Option<&mut Daemon> {
        KawaiiLab::daemon(self)
    }
    fn stop_daemon(&mut self) {
        KawaiiLab::stop_daemon(self);
    }
}

impl DaemonLab for KonveyLab {
    fn daemon(&mut self) -> Option<&mut Daemon> {
        KonveyLab::daemon(self)
    }
    fn stop_daemon(&mut self) {
        KonveyLab::stop_daemon(self);
    }
}

/// The translation of one flow as conntrack holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Translation {
    nat_src: SocketAddr,
    nat_dst: SocketAddr,
}

/// The original-direction conntrack entries of TCP flows from the given
/// client addresses, by client address.
fn translations(ct: &Path, clients: &[SocketAddr]) -> Result<BTreeMap<SocketAddr, Translation>> {
    let table =
        CtTable::from_pin("kw_ct4", ct).with_context(|| format!("opening {}", ct.display()))?;
    let mut out = BTreeMap::new();
    for (k, v) in table.entries()? {
        let from = SocketAddr::from((Ipv4Addr::from(k.saddr.to_ne_bytes()), u16::from_be(k.sport)));
        if k.proto == 6
            && clients.contains(&from)
            && v.flags & kowabunga_bindings::KW_CT_F_REPLY as u8 == 0
        {
            out.insert(
                from,
                Translation {
                    nat_src: SocketAddr::from((
                        Ipv4Addr::from(v.nat_saddr.to_ne_bytes()),
                        u16::from_be(v.nat_sport),
                    )),
                    nat_dst: SocketAddr::from((
                        Ipv4Addr::from(v.nat_daddr.to_ne_bytes()),
                        u16::from_be(v.nat_dport),
                    )),
                },
            );
        }
    }
    Ok(out)
}

/// The exchangers' client addresses as the gateway sees them (`local` is the
/// address inside the client's namespace, the same here: no NAT before).
fn clients(exchanges: &[Exchange]) -> Vec<SocketAddr> {
    exchanges.iter().map(|e| e.local).collect()
}

/// Checks that every exchange of `exchanges` has its conntrack entry in `ct`
/// and that the server saw the translated source it holds; returns them.
fn check_translations(
    ct: &Path,
    exchanges: &[Exchange],
    when: &str,
) -> Result<BTreeMap<SocketAddr, Translation>> {
    let found = translations(ct, &clients(exchanges))?;
    for e in exchanges {
        let t = found.get(&e.local).with_context(|| {
            format!("{when}: no conntrack entry for {} ({})", e.name(), e.local)
        })?;
        let seen = e
            .seen_as()
            .with_context(|| format!("{}: greeting {:?}", e.name(), e.greeting))?;
        ensure!(
            t.nat_src == seen,
            "{when}: {} holds source {} but the server saw {seen}",
            e.name(),
            t.nat_src
        );
    }
    Ok(found)
}

/// Waits for every exchanger, prints their figures and checks that none lost
/// a line or was reset.
fn finish(
    what: &str,
    how: Restart,
    exchanges: &mut [Exchange],
    stopped: Instant,
    down: Duration,
) -> Result<()> {
    let mut reports: Vec<(String, ExchangeReport)> = Vec::new();
    for e in exchanges.iter_mut() {
        let r = e.finish()?;
        reports.push((e.name().to_owned(), r));
    }
    let sent: u64 = reports.iter().map(|(_, r)| r.sent).sum();
    let echoed: u64 = reports.iter().map(|(_, r)| r.echoed).sum();
    let gap = reports.iter().map(|(_, r)| r.max_gap_ms).max().unwrap_or(0);
    let delay = reports
        .iter()
        .map(|(_, r)| r.max_delay_ms)
        .max()
        .unwrap_or(0);
    println!(
        "{what}, {how}: {} connections, {sent} lines sent, {echoed} echoed, longest gap between two echoes {gap} ms, longest wait for an echo {delay} ms (a line every {INTERVAL_MS} ms), {} ms from the stop to the new daemon's ready",
        reports.len(),
        down.as_millis()
    );
    for ((name, r), e) in reports.iter().zip(exchanges.iter()) {
        let stop_at = stopped
            .saturating_duration_since(e.connected_at)
            .as_millis();
        println!("  {name}: {r}; the daemon was stopped {stop_at} ms after the connection");
        ensure!(
            r.lossless(),
            "{what}, {how}: {name} lost exchanges or was reset: {r}\n{}",
            e.output()
        );
    }
    Ok(())
}

/// Checks the links after a restart: the same links, a new program in each,
/// with a new tag exactly when upgrading.
fn check_links(
    what: &str,
    how: Restart,
    before: &[(String, LinkInfo)],
    after: &[(String, LinkInfo)],
) -> Result<()> {
    ensure!(!before.is_empty(), "{what}: no pinned link");
    ensure!(
        before
            .iter()
            .map(|(n, _)| n)
            .eq(after.iter().map(|(n, _)| n)),
        "{what}: links {before:?} became {after:?}"
    );
    for ((name, b), (_, a)) in before.iter().zip(after) {
        println!("{what}, {how}: {name}: {b} -> {a}");
        ensure!(
            a.id == b.id,
            "{what}: {name}: the link was replaced ({b} -> {a})"
        );
        ensure!(
            a.prog_id != b.prog_id,
            "{what}: {name}: the new daemon did not swap its program in ({b} -> {a})"
        );
        if how == Restart::Upgrade {
            ensure!(
                a.tag != b.tag,
                "{what}: {name}: same program tag after the upgrade ({b} -> {a})"
            );
        } else {
            ensure!(
                a.tag == b.tag,
                "{what}: {name}: the same build changed tag ({b} -> {a})"
            );
        }
    }
    Ok(())
}

fn kawaii(how: Restart) -> Result<()> {
    let _serial = serial();
    let agent = agent();
    let bin = find_kowabungad()?;
    let mut lab = KawaiiLab::new()?;
    let new = NewDaemon::new(how, &bin, lab.prefix())?;
    lab.start_daemon(&bin)?;
    let _tcp = agent.tcp_echo_server(&lab.inet, INET_TCP, 60)?;
    let _dnat = agent.tcp_echo_server(&lab.private, DNAT_PORT, 60)?;

    let mut snat = Vec::new();
    let mut dnat = Vec::new();
    for i in 0..4 {
        let to = format!("{INET_ADDR}:{INET_TCP}");
        snat.push(Exchange::start(
            &agent,
            &lab.private,
            &format!("snat {i}"),
            &to,
            SECONDS,
            INTERVAL_MS,
        )?);
        let to = format!("{VIP}:{DNAT_PORT}");
        dnat.push(Exchange::start(
            &agent,
            &lab.inet,
            &format!("dnat {i}"),
            &to,
            SECONDS,
            INTERVAL_MS,
        )?);
    }
    let ct = lab.pin_dir().join("kw_ct4");
    let links = lab.pin_dir().join("links");
    std::thread::sleep(BEFORE);
    let snat_before = check_translations(&ct, &snat, "before")?;
    let dnat_before = check_translations(&ct, &dnat, "before")?;
    for (client, t) in &snat_before {
        ensure!(
            t.nat_src.ip().to_string() == VIP && client.ip().to_string() == PRIV_ADDR,
            "SNAT {client}: {t:?}"
        );
    }
    for t in dnat_before.values() {
        ensure!(
            t.nat_dst == SocketAddr::from((PRIV_ADDR.parse::<Ipv4Addr>()?, DNAT_PORT)),
            "DNAT: {t:?}"
        );
    }
    let links_before = pinned_links(&links)?;

    let t0 = lab.stop_for(how)?;
    if how == Restart::Upgrade {
        unknown_build_is_refused(&lab, &bin)?;
    }
    let daemon = lab.start_daemon(&new.path)?;
    let down = t0.elapsed();
    let log = daemon.log();
    ensure!(
        log.matches("pinned XDP link reused").count() == links_before.len(),
        "the new daemon did not reuse every pinned link:\n{log}"
    );
    if how == Restart::Upgrade {
        ensure!(
            log.contains("KOWABUNGA_BPF_VARIANT=v2"),
            "not the v2 build:\n{log}"
        );
    }
    check_links("kawaii", how, &links_before, &pinned_links(&links)?)?;

    std::thread::sleep(Duration::from_secs(1));
    let snat_after = check_translations(&ct, &snat, "after the restart")?;
    let dnat_after = check_translations(&ct, &dnat, "after the restart")?;
    ensure!(
        snat_after == snat_before,
        "SNAT translations changed: {snat_before:?} -> {snat_after:?}"
    );
    ensure!(
        dnat_after == dnat_before,
        "DNAT translations changed: {dnat_before:?} -> {dnat_after:?}"
    );
    finish("kawaii SNAT", how, &mut snat, t0, down)?;
    finish("kawaii DNAT", how, &mut dnat, t0, down)?;
    ensure!(
        lab.daemon().context("daemon")?.running(),
        "the new daemon exited"
    );
    Ok(())
}

/// A daemon asked for a program build it does not have exits 1 with one
/// line naming the variable, before touching the pinned maps or links.
fn unknown_build_is_refused(lab: &KawaiiLab, bin: &Path) -> Result<()> {
    let mut cmd = kowabunga_tests::lab::daemon::command(bin, &lab.config_path());
    cmd.env("KOWABUNGA_BPF_VARIANT", "v9");
    lab.gw.enter_net_only(&mut cmd)?;
    let out = run_bounded(cmd, Duration::from_secs(20))?;
    ensure!(out.code == Some(1), "want exit 1: {out}");
    ensure!(
        out.stderr.lines().any(|l| l.starts_with("kowabungad: ")
            && l.contains("KOWABUNGA_BPF_VARIANT=\"v9\": unknown program build")),
        "no one-line refusal: {out}"
    );
    Ok(())
}

fn konvey(how: Restart) -> Result<()> {
    let _serial = serial();
    let agent = agent();
    let bin = find_kowabungad()?;
    let mut lab = KonveyLab::new()?;
    let new = NewDaemon::new(how, &bin, lab.prefix())?;
    lab.start_backends(&agent)?;
    lab.start_daemon(&bin)?;
    lab.warm_up()?;

    let mut flows = Vec::new();
    for i in 0..6 {
        let to = format!("{}:{}", konvey::VIP, konvey::TCP_PORT);
        flows.push(Exchange::start(
            &agent,
            &lab.client,
            &format!("konvey {i}"),
            &to,
            SECONDS,
            INTERVAL_MS,
        )?);
    }
    let mut by_backend: BTreeMap<String, usize> = BTreeMap::new();
    for e in &flows {
        let name = e
            .greeting
            .split_whitespace()
            .find_map(|w| w.strip_prefix("name="))
            .with_context(|| format!("{}: greeting {:?}", e.name(), e.greeting))?;
        *by_backend.entry(name.to_owned()).or_default() += 1;
    }
    ensure!(
        by_backend.len() == 3,
        "the 6 connections reached {by_backend:?}"
    );
    let dir = lab.pin_dir().join("konvey");
    let ct = dir.join("kw_ct4");
    let links = dir.join("links");
    let services = dir.join("kv_services");
    std::thread::sleep(BEFORE);
    let before = check_translations(&ct, &flows, "before")?;
    let rotations_before = dump_map(&services)?;
    ensure!(
        rotations_before.contains("key"),
        "no rotation in kv_services:\n{rotations_before}"
    );
    let links_before = pinned_links(&links)?;

    let t0 = lab.stop_for(how)?;
    let daemon = lab.start_daemon(&new.path)?;
    let down = t0.elapsed();
    let log = daemon.log();
    ensure!(
        log.contains("pinned XDP link reused"),
        "the new daemon did not reuse the pinned link:\n{log}"
    );
    let rewrites = daemon.log_count(" rotation: ");
    ensure!(
        rewrites == 0,
        "the new daemon rewrote {rewrites} rotations:\n{log}"
    );
    check_links("konvey", how, &links_before, &pinned_links(&links)?)?;

    std::thread::sleep(Duration::from_secs(1));
    let after = check_translations(&ct, &flows, "after the restart")?;
    ensure!(
        after == before,
        "Konvey translations changed: {before:?} -> {after:?}"
    );
    let rotations_after = dump_map(&services)?;
    ensure!(
        rotations_after == rotations_before,
        "rotations changed:\n{rotations_before}\n->\n{rotations_after}"
    );
    println!("konvey, {how}: connections per backend {by_backend:?}, rotations unchanged");
    finish("konvey", how, &mut flows, t0, down)?;
    ensure!(
        lab.daemon().context("daemon")?.running(),
        "the new daemon exited"
    );
    Ok(())
}

#[test]
fn kawaii_kill9_and_start_loses_nothing() -> Result<()> {
    if !privileged("kawaii_kill9_and_start_loses_nothing") {
        return Ok(());
    }
    kawaii(Restart::Kill9)
}

#[test]
fn kawaii_sigterm_and_start_loses_nothing() -> Result<()> {
    if !privileged("kawaii_sigterm_and_start_loses_nothing") {
        return Ok(());
    }
    kawaii(Restart::Graceful)
}

#[test]
fn kawaii_upgrade_to_another_program_loses_nothing() -> Result<()> {
    if !privileged("kawaii_upgrade_to_another_program_loses_nothing") {
        return Ok(());
    }
    kawaii(Restart::Upgrade)
}

#[test]
fn konvey_kill9_and_start_loses_nothing() -> Result<()> {
    if !privileged("konvey_kill9_and_start_loses_nothing") {
        return Ok(());
    }
    konvey(Restart::Kill9)
}

#[test]
fn konvey_sigterm_and_start_loses_nothing() -> Result<()> {
    if !privileged("konvey_sigterm_and_start_loses_nothing") {
        return Ok(());
    }
    konvey(Restart::Graceful)
}

#[test]
fn konvey_upgrade_to_another_program_loses_nothing() -> Result<()> {
    if !privileged("konvey_upgrade_to_another_program_loses_nothing") {
        return Ok(());
    }
    konvey(Restart::Upgrade)
}

/// `kowabungad`'s configuration for router `i` of the VRRP lab: a Konvey
/// node whose VIP is the VRRP VIP, both routers at priority 100, 100 ms adverts.
fn vrrp_config(bpffs: &str) -> String {
    format!(
        "node:\n  zone: zone-a\n  interfaces: {{konvey: [eth0]}}\n  bpffs: {bpffs}\n  vrrp:\n    instances:\n      - {{name: konvey-a, vrid: {VRID}, interface: eth0, zone: zone-a, priority: 100, advert_interval_ms: 100, virtual_ips: [{VIP_CIDR}]}}\n\
         konvey:\n  vip: {vip}\n  endpoints:\n    - {{name: E, protocol: udp, port: 7000, backend_port: 7000, backend_ips: [{}]}}\n",
        ROUTER_ADDRS[1],
        vip = kowabunga_tests::vrrp::lab::VIP,
    )
}

/// One `kowabungad` per router, detached and unpinned on drop.
struct VrrpNodes<'a> {
    lab: &'a VrrpLab,
    bin: PathBuf,
    confs: Vec<PathBuf>,
    bpffs: Vec<String>,
}

impl<'a> VrrpNodes<'a> {
    fn new(lab: &'a VrrpLab, bin: PathBuf) -> Result<Self> {
        let mut confs = Vec::new();
        let mut bpffs = Vec::new();
        for r in &lab.routers {
            let dir = format!("/sys/fs/bpf/{}", r.name());
            let conf = lab.dir().join(format!("{}.yaml", r.name()));
            std::fs::write(&conf, vrrp_config(&dir))?;
            confs.push(conf);
            bpffs.push(dir);
        }
        Ok(VrrpNodes {
            lab,
            bin,
            confs,
            bpffs,
        })
    }

    fn start(&self, i: usize) -> Result<Daemon> {
        Daemon::start(&self.lab.routers[i], &self.bin, &self.confs[i])
    }
}

impl Drop for VrrpNodes<'_> {
    fn drop(&mut self) {
        for (i, conf) in self.confs.iter().enumerate() {
            let mut detach = std::process::Command::new(&self.bin);
            detach.arg("--config").arg(conf).arg("--detach");
            if self.lab.routers[i].enter_net_only(&mut detach).is_ok() {
                let _ = detach.output();
            }
            let _ = std::fs::remove_dir_all(&self.bpffs[i]);
        }
    }
}

/// A master killed with `SIGKILL` leaves its VIP (the backup takes over: a
/// duplicate while it is down); restarted, it removes the VIP during its
/// start-up, stays backup, and the two never hold the VIP together again.
#[test]
fn vrrp_master_killed_and_restarted_leaves_no_duplicate_vip() -> Result<()> {
    if !privileged("vrrp_master_killed_and_restarted_leaves_no_duplicate_vip") {
        return Ok(());
    }
    let _serial = serial();
    let lab = VrrpLab::new()?;
    let nodes = VrrpNodes::new(&lab, find_kowabungad()?)?;
    let mut a = nodes.start(0)?;
    until("r1 to hold the VIP", Duration::from_secs(5), || {
        lab.vip_on(0)
    })
    .with_context(|| a.log())?;
    let b = nodes.start(1)?;
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        lab.vip_on(0)? && !lab.vip_on(1)?,
        "r2 took over from a live master:\n{}",
        b.log()
    );

    a.kill()?;
    let took = until("r2 to take over", Duration::from_secs(5), || lab.vip_on(1))
        .with_context(|| b.log())?;
    ensure!(
        lab.vip_on(0)?,
        "the killed daemon's VIP should still be on r1 (nothing removes it)"
    );
    let macs = lab.arping_vip()?;
    println!(
        "r1's daemon killed: r2 master after {took:?}; both hold the VIP now (duplicate), ARP answers from {macs:?} (r1 {}, r2 {})",
        lab.mac(0)?,
        lab.mac(1)?
    );
    drop(a);

    let a = nodes.start(0)?;
    // Right after `kowabungad ready`: the start-up removed it.
    ensure!(
        !lab.vip_on(0)?,
        "the restarted daemon still holds the VIP after its start-up:\n{}",
        a.log()
    );
    ensure!(
        a.log().contains("VIP left by a previous run removed"),
        "no removal logged:\n{}",
        a.log()
    );
    // Bounded poll of both nodes: never both, r2 stays master (equal
    // priorities: the restarted node hears r2 and stays backup).
    let t0 = Instant::now();
    let mut polls = 0;
    while t0.elapsed() < Duration::from_secs(3) {
        let (on_a, on_b) = (lab.vip_on(0)?, lab.vip_on(1)?);
        if on_a && on_b {
            bail!(
                "both nodes hold the VIP {:?} after the restart:\n{}\n---\n{}",
                t0.elapsed(),
                a.log(),
                b.log()
            );
        }
        ensure!(
            on_b && !on_a,
            "r2 lost the VIP or r1 took it:\n{}\n---\n{}",
            a.log(),
            b.log()
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let macs = lab.arping_vip()?;
    let mac_b = lab.mac(1)?;
    println!("after the restart: {polls} polls of both nodes in 3 s, the VIP only on r2; ARP answers from {macs:?}");
    ensure!(
        macs.iter().all(|m| *m == mac_b) && !macs.is_empty(),
        "ARP for the VIP answered by {macs:?}, want only r2 ({mac_b})"
    );
    ensure!(
        a.log().matches("to=master").count() == 0,
        "the restarted node became master:\n{}",
        a.log()
    );
    Ok(())
}
