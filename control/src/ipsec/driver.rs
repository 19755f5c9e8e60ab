//! The IPsec driver: one tokio task that keeps charon, Kawaii's gates and
//! the tunnels' firewall in step with the configuration.
//!
//! Every 250 ms (and at once on a charon event or a new configuration) it:
//! 1. connects to charon if it is not connected (after a charon restart:
//!    reconnects, loads everything again, unloads `kw-*` connections that
//!    left the configuration);
//! 2. loads new or changed connections (`load-shared` then `load-conn`),
//!    unloads removed ones (their SAs terminated first); an unchanged
//!    connection is never sent again, so its SAs and SPIs stay;
//! 3. checks whether the tunnels' local address (the zone's VIP) is on this
//!    node: the zone's master initiates `start` tunnels, a node that lost
//!    the VIP terminates its SAs;
//! 4. lists the SAs and sets each tunnel's state; Kawaii's gate to a remote
//!    subnet is open only while its child SA is installed (or its trap
//!    policy, for `start_action: trap`).
//!
//! Initiations run on a VICI session of their own, so a slow peer never
//! holds the others up. Failure reasons come from charon's log lines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use ipnet::Ipv4Net;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::charon::{fingerprint, load_conn, load_shared};
use super::config::{DpdAction, Ipsec, StartAction};
use super::firewall::TunnelFirewalls;
use super::reason::{classify, Reason};
use super::tunnel::{state_of, TunnelState};
use super::vici::{LogLine, Vici};

/// How often the driver looks at charon and the VIP.
pub const TICK: Duration = Duration::from_millis(250);
/// Least time between two initiations of one tunnel by kowabungad.
pub const REINITIATE_AFTER: Duration = Duration::from_secs(5);
/// Longest round of the driver (every command of a round waits on charon).
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one initiation may take before it is reported as pending.
pub const INITIATE_TIMEOUT_MS: u32 = 10_000;

/// What the driver works towards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The tunnels.
    pub conns: Vec<Ipsec>,
    /// Their local address: the zone's public VIP.
    pub vip: Ipv4Addr,
    /// The project subnet (local traffic selector).
    pub project: Ipv4Net,
    /// Force UDP encapsulation (userspace ESP).
    pub encap: bool,
    /// The tunnels' firewall table.
    pub firewall_table: String,
}

/// Opens and closes Kawaii's gate to a remote subnet.
pub trait Gate: Send {
    /// Sets the gate of `net`.
    ///
    /// # Errors
    /// The map refused.
    fn set(&mut self, net: Ipv4Net, up: bool) -> anyhow::Result<()>;
}

impl Gate for kowabunga_dataplane::kawaii::ipsec_gate::IpsecGate<aya::maps::MapData> {
    fn set(&mut self, net: Ipv4Net, up: bool) -> anyhow::Result<()> {
        Ok(kowabunga_dataplane::kawaii::ipsec_gate::IpsecGate::set(
            self, net, up,
        )?)
    }
}

/// One tunnel as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelStatus {
    /// The configured name.
    pub name: String,
    /// charon's name.
    pub charon_name: String,
    /// The remote subnet.
    pub remote_subnet: Ipv4Net,
    /// Its state.
    pub state: TunnelState,
    /// When it entered this state.
    pub since: Instant,
    /// The last failure, kept after the tunnel came back.
    pub last_failure: Option<Reason>,
}

/// The tunnels' states, shared with the role.
pub type Shared = Arc<Mutex<BTreeMap<String, TunnelStatus>>>;

enum Event {
    Change,
    Log(LogLine),
    Initiated(String, Result<(), Reason>),
}

/// Whether `addr` is assigned to an interface of this network namespace.
pub fn is_local(addr: Ipv4Addr) -> bool {
    nix::ifaddrs::getifaddrs().is_ok_and(|mut it| {
        it.any(|ifa| {
            ifa.address
                .and_then(|a| a.as_sockaddr_in().map(|s| s.ip()))
                .is_some_and(|ip| IpAddr::V4(ip) == IpAddr::V4(addr))
        })
    })
}

struct Driver {
    socket: PathBuf,
    gate: Box<dyn Gate>,
    shared: Shared,
    events_tx: mpsc::Sender<Event>,
    session: Option<Vici>,
    last_connect: Option<Instant>,
    /// charon name -> fingerprint of what charon holds.
    loaded: HashMap<String, String>,
    applied_firewall: Option<String>,
    reasons: HashMap<String, Reason>,
    last_initiate: HashMap<String, Instant>,
    gates: HashMap<Ipv4Net, bool>,
    master: Option<bool>,
    unreachable_logged: bool,
}

/// Runs the driver until `desired`'s sender is dropped.
pub async fn run(
    socket: PathBuf,
    mut desired: watch::Receiver<Desired>,
    gate: Box<dyn Gate>,
    shared: Shared,
) {
    let (events_tx, mut events_rx) = mpsc::channel(256);
    let mut d = Driver {
        socket,
        gate,
        shared,
        events_tx,
        session: None,
        last_connect: None,
        loaded: HashMap::new(),
        applied_firewall: None,
        reasons: HashMap::new(),
        last_initiate: HashMap::new(),
        gates: HashMap::new(),
        master: None,
        unreachable_logged: false,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(ev) = events_rx.recv() => d.event(ev),
            changed = desired.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        while let Ok(ev) = events_rx.try_recv() {
            d.event(ev);
        }
        let want = desired.borrow().clone();
        // a charon that died or hangs must not hold the driver: a round
        // that takes too long gives the session up (reconnect next tick)
        let round = tokio::time::timeout(ROUND_TIMEOUT, d.step(&want)).await;
        if round.is_err() {
            d.lost(&format!("no answer within {} s", ROUND_TIMEOUT.as_secs()));
        }
    }
    // The daemon stops: the gates stay as they are, so tunnels charon keeps
    // up go on carrying traffic; a tunnel that goes down meanwhile meets
    // the backstop's `rt ipsec missing` rule.
}

impl Driver {
    fn event(&mut self, ev: Event) {
        match ev {
            Event::Change => {}
            Event::Log(line) => {
                if let (Some(name), Some(reason)) = (line.ikesa_name.clone(), classify(&line.msg)) {
                    self.reasons.insert(name, reason);
                }
            }
            Event::Initiated(name, Err(reason)) => {
                self.reasons.insert(name, reason);
            }
            Event::Initiated(_, Ok(())) => {}
        }
    }

    fn close_all_gates(&mut self) {
        let open: Vec<Ipv4Net> = self
            .gates
            .iter()
            .filter(|(_, up)| **up)
            .map(|(n, _)| *n)
            .collect();
        for net in open {
            self.set_gate(net, false);
        }
    }

    fn set_gate(&mut self, net: Ipv4Net, up: bool) {
        if self.gates.get(&net) == Some(&up) {
            return;
        }
        match self.gate.set(net, up) {
            Ok(()) => {
                self.gates.insert(net, up);
            }
            Err(e) => warn!(
                "ipsec: cannot {} the gate of {net}: {e:#}",
                if up { "open" } else { "close" }
            ),
        }
    }

    async fn connect(&mut self) -> bool {
        if self.session.is_some() {
            return true;
        }
        if self
            .last_connect
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return false;
        }
        self.last_connect = Some(Instant::now());
        let mut vici = match Vici::connect(&self.socket).await {
            Ok(v) => v,
            Err(e) => {
                if !self.unreachable_logged {
                    warn!("ipsec: {e}; tunnels down, traffic to their subnets dropped");
                    self.unreachable_logged = true;
                }
                return false;
            }
        };
        if let Err(e) = vici.ping().await {
            warn!("ipsec: {e}");
            return false;
        }
        for event in ["ike-updown", "child-updown", "ike-rekey", "child-rekey"] {
            let stream = vici.changes(event);
            let tx = self.events_tx.clone();
            tokio::spawn(async move {
                futures_util::pin_mut!(stream);
                while let Some(Ok(_)) = stream.next().await {
                    if tx.send(Event::Change).await.is_err() {
                        break;
                    }
                }
            });
        }
        let logs = vici.logs();
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            futures_util::pin_mut!(logs);
            while let Some(Ok(line)) = logs.next().await {
                if tx.send(Event::Log(line)).await.is_err() {
                    break;
                }
            }
        });
        info!("ipsec: connected to charon at {}", self.socket.display());
        self.unreachable_logged = false;
        self.loaded.clear();
        self.session = Some(vici);
        true
    }

    fn lost(&mut self, e: &dyn std::fmt::Display) {
        warn!("ipsec: lost charon: {e}");
        self.session = None;
        self.loaded.clear();
    }

    async fn step(&mut self, want: &Desired) {
        self.apply_firewall(want);
        if !self.connect().await {
            let reason = Reason::CharonUnreachable(self.socket.display().to_string());
            self.close_all_gates();
            self.publish(want, |_| TunnelState::Down(Some(reason.clone())));
            return;
        }
        if let Err(e) = self.reconcile(want).await {
            self.lost(&e);
            return;
        }
        let master = is_local(want.vip);
        if self.master != Some(master) {
            info!(
                "ipsec: the tunnels' address {} is {} this node",
                want.vip,
                if master { "on" } else { "not on" }
            );
            self.master = Some(master);
            self.last_initiate.clear();
        }
        let Some(vici) = self.session.as_mut() else {
            return;
        };
        let sas = match vici.list_sas().await {
            Ok(s) => s,
            Err(e) => {
                self.lost(&e);
                return;
            }
        };
        let traps: HashSet<String> = if want
            .conns
            .iter()
            .any(|c| c.start_action == StartAction::Trap)
        {
            match vici.trap_policies().await {
                Ok(t) => t.into_iter().collect(),
                Err(e) => {
                    self.lost(&e);
                    return;
                }
            }
        } else {
            HashSet::new()
        };
        let mut states = HashMap::new();
        let mut terminate = Vec::new();
        let mut initiate = Vec::new();
        for c in &want.conns {
            let name = &c.charon_name;
            let sa = state_of(name, &sas);
            if !master {
                if sa.is_some() {
                    terminate.push(name.clone());
                }
                states.insert(name.clone(), TunnelState::Down(Some(Reason::NotMaster)));
                continue;
            }
            let state = match sa {
                Some(s) => s,
                None if traps.contains(&format!("{name}/{name}")) => TunnelState::Trapped,
                None => {
                    let reason = self.reasons.get(name).cloned().or(match c.start_action {
                        StartAction::None => Some(Reason::WaitingForPeer),
                        _ => None,
                    });
                    TunnelState::Down(reason)
                }
            };
            let may_start = c.start_action == StartAction::Start
                && (c.dpd_action == DpdAction::Restart || !self.last_initiate.contains_key(name));
            if matches!(state, TunnelState::Down(_))
                && may_start
                && self
                    .last_initiate
                    .get(name)
                    .is_none_or(|t| t.elapsed() >= REINITIATE_AFTER)
            {
                initiate.push(name.clone());
            }
            states.insert(name.clone(), state);
        }
        for name in terminate {
            info!("ipsec: {name}: this node lost the VIP, terminating its SAs");
            if let Some(vici) = self.session.as_mut() {
                if let Err(e) = vici.terminate(&name).await {
                    self.lost(&e);
                    return;
                }
            }
        }
        for name in initiate {
            self.spawn_initiate(name);
        }
        for c in &want.conns {
            let open = states
                .get(&c.charon_name)
                .is_some_and(TunnelState::gate_open);
            self.set_gate(c.remote_subnet, open);
        }
        // gates of subnets no longer configured
        let configured: HashSet<Ipv4Net> = want.conns.iter().map(|c| c.remote_subnet).collect();
        let stale: Vec<Ipv4Net> = self
            .gates
            .keys()
            .filter(|n| !configured.contains(n))
            .copied()
            .collect();
        for net in stale {
            self.set_gate(net, false);
            self.gates.remove(&net);
        }
        self.publish(want, |name| {
            states.get(name).cloned().unwrap_or(TunnelState::Down(None))
        });
    }

    fn spawn_initiate(&mut self, name: String) {
        self.last_initiate.insert(name.clone(), Instant::now());
        let socket = self.socket.clone();
        let tx = self.events_tx.clone();
        info!("ipsec: {name}: initiating");
        tokio::spawn(async move {
            let result = match Vici::connect(&socket).await {
                Err(e) => Err(Reason::CharonUnreachable(e.to_string())),
                Ok(mut v) => match v.initiate(&name, INITIATE_TIMEOUT_MS).await {
                    Ok(_) => Ok(()),
                    Err((e, lines)) => Err(lines
                        .iter()
                        .find_map(|l| classify(&l.msg))
                        .unwrap_or_else(|| Reason::Refused(e.to_string()))),
                },
            };
            let _ = tx.send(Event::Initiated(name, result)).await;
        });
    }

    fn apply_firewall(&mut self, want: &Desired) {
        let fw = TunnelFirewalls::new(want.firewall_table.clone(), want.project, &want.conns);
        let script = fw.script();
        if self.applied_firewall.as_deref() == Some(script.as_str()) {
            return;
        }
        match fw.apply() {
            Ok(()) => self.applied_firewall = Some(script),
            Err(e) => warn!("ipsec: {e:#}"),
        }
    }

    async fn reconcile(&mut self, want: &Desired) -> Result<(), super::vici::ViciError> {
        let Some(vici) = self.session.as_mut() else {
            return Ok(());
        };
        let wanted: HashSet<&str> = want.conns.iter().map(|c| c.charon_name.as_str()).collect();
        if self.loaded.is_empty() {
            // first look after a (re)connect: what charon holds of ours
            for name in vici.list_conns().await? {
                if name.starts_with("kw-") && !wanted.contains(name.as_str()) {
                    info!("ipsec: {name}: left the configuration, unloading");
                    vici.terminate(&name).await?;
                    vici.unload_conn(&name).await?;
                    vici.unload_shared(&name).await.ok();
                }
            }
        }
        let gone: Vec<String> = self
            .loaded
            .keys()
            .filter(|n| !wanted.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            info!("ipsec: {name}: left the configuration, unloading");
            vici.terminate(&name).await?;
            vici.unload_conn(&name).await?;
            vici.unload_shared(&name).await.ok();
            self.loaded.remove(&name);
            self.reasons.remove(&name);
        }
        for c in &want.conns {
            let conn = load_conn(c, want.vip, want.project, want.encap);
            let key = load_shared(c);
            let fp = fingerprint(&conn, &key);
            let before = self.loaded.get(&c.charon_name).cloned();
            if before.as_ref() == Some(&fp) {
                continue;
            }
            let result = async {
                vici.load_shared(&key).await?;
                vici.load_conn(&conn).await
            }
            .await;
            match result {
                Ok(()) => {
                    info!(
                        "ipsec: {} ({}): loaded into charon, {} <-> {} via {}",
                        c.name, c.charon_name, want.project, c.remote_subnet, c.remote_ip
                    );
                    self.loaded.insert(c.charon_name.clone(), fp);
                    if before.is_some() {
                        // changed: its SAs were negotiated with the old
                        // settings; bring it up again with the new ones
                        info!("ipsec: {}: changed, re-establishing", c.charon_name);
                        vici.terminate(&c.charon_name).await?;
                        self.last_initiate.remove(&c.charon_name);
                        self.reasons.remove(&c.charon_name);
                    }
                }
                Err(e @ super::vici::ViciError::Refused { .. }) => {
                    warn!("ipsec: {}: {e}", c.name);
                    self.reasons
                        .insert(c.charon_name.clone(), Reason::Refused(e.to_string()));
                    // recorded as loaded so it is not resent every tick
                    self.loaded.insert(c.charon_name.clone(), fp);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn publish(&mut self, want: &Desired, state: impl Fn(&str) -> TunnelState) {
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        let names: HashSet<&str> = want.conns.iter().map(|c| c.charon_name.as_str()).collect();
        shared.retain(|k, _| names.contains(k.as_str()));
        for c in &want.conns {
            let new = state(&c.charon_name);
            let entry = shared
                .entry(c.charon_name.clone())
                .or_insert_with(|| TunnelStatus {
                    name: c.name.clone(),
                    charon_name: c.charon_name.clone(),
                    remote_subnet: c.remote_subnet,
                    state: TunnelState::Down(None),
                    since: Instant::now(),
                    last_failure: None,
                });
            let reason = match &new {
                TunnelState::Down(Some(r)) => Some(r.clone()),
                TunnelState::Connecting | TunnelState::Down(None) => {
                    self.reasons.get(&c.charon_name).cloned()
                }
                _ => None,
            };
            if let Some(r) = reason {
                if entry.last_failure.as_ref() != Some(&r) && r != Reason::NotMaster {
                    info!("ipsec: {} ({}): last failure: {r}", c.name, c.charon_name);
                }
                entry.last_failure = Some(r);
            }
            if std::mem::discriminant(&entry.state) != std::mem::discriminant(&new)
                || matches!((&entry.state, &new), (TunnelState::Down(a), TunnelState::Down(b)) if a != b)
                || matches!((&entry.state, &new), (TunnelState::Up(a), TunnelState::Up(b)) if a.spi_in != b.spi_in)
            {
                info!("ipsec: {} ({}): {new}", c.name, c.charon_name);
                entry.since = Instant::now();
                if matches!(new, TunnelState::Up(_)) {
                    self.reasons.remove(&c.charon_name);
                }
            }
            entry.state = new;
        }
    }
}
