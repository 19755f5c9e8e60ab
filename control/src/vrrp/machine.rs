//! The sans-IO VRRPv3 state machine (RFC 9568 section 6), one per virtual router.
//!
//! No socket and no clock inside: the caller feeds it decoded adverts, the current
//! [`Instant`] and admin events, then drains [`Machine::poll_action`] and sleeps until
//! [`Machine::poll_timeout`]. Deadlines are absolute instants computed from the
//! previous deadline, not from the time the caller woke up, so a late wake-up does not
//! accumulate drift (the master keeps its advert phase).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use std::net::{IpAddr, Ipv4Addr};
//! use kowabunga_control::vrrp::machine::{Action, Machine, MachineConfig, State};
//! let cfg = MachineConfig {
//!     vrid: 51,
//!     priority: 150,
//!     advert_interval_cs: 10,
//!     preempt: true,
//!     addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
//!     local_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
//!     garp_count: 1,
//!     garp_delay: Duration::from_millis(0),
//!     immediate_handover: false,
//! };
//! let t0 = Instant::now();
//! let mut m = Machine::new(cfg);
//! m.start(t0, false);
//! assert_eq!(m.state(), State::Backup);
//! // Nobody advertises: after 3 x 100 ms + skew ((256-150)/256 x 100 ms) we take over.
//! let down = m.poll_timeout().unwrap();
//! assert_eq!(down - t0, Duration::from_nanos(341_406_250));
//! m.handle_timeout(down);
//! assert_eq!(m.state(), State::Master);
//! assert!(std::iter::from_fn(|| m.poll_action()).any(|a| a == Action::AddAddresses));
//! ```

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::packet::Advert;

/// Priority of the address owner.
pub const PRIORITY_OWNER: u8 = 255;
/// Priority a master sends when it stops.
pub const PRIORITY_STOP: u8 = 0;

/// Protocol state of a virtual router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started, or stopped.
    Initialize,
    /// Listening to the master.
    Backup,
    /// Owning the addresses, sending adverts.
    Master,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
        })
    }
}

/// The parameters of one virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Our priority, 1..=255 (255: we own the addresses).
    pub priority: u8,
    /// Advert interval in centiseconds, 1..=4095.
    pub advert_interval_cs: u16,
    /// Whether a higher-priority backup preempts a lower-priority master.
    pub preempt: bool,
    /// The virtual addresses, in advert order.
    pub addresses: Vec<IpAddr>,
    /// Our primary address on the interface (election tie-break, pseudo-header).
    pub local_addr: IpAddr,
    /// Gratuitous ARP / unsolicited NA rounds on takeover (at least 1).
    pub garp_count: u32,
    /// Delay between two announcement rounds.
    pub garp_delay: Duration,
    /// On a priority-0 advert, take over at once instead of after Skew_Time.
    ///
    /// RFC 9568 waits Skew_Time ((256 - priority) / 256 of the advert interval) so
    /// that the best of several backups wins; with Kowabunga's equal backup
    /// priorities the skew orders nothing, and skipping it makes a graceful
    /// handover take one packet time. Off by default (RFC behaviour).
    pub immediate_handover: bool,
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this advert to the multicast group.
    SendAdvert(Advert),
    /// Make the virtual addresses present on the interface.
    AddAddresses,
    /// Remove the virtual addresses from the interface.
    RemoveAddresses,
    /// Send one gratuitous ARP (IPv4) / unsolicited NA (IPv6) per address.
    Announce,
    /// The state changed (for logs and status).
    Transition {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: &'static str,
    },
}

/// Counters of one virtual router.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Valid adverts for our VRID handled.
    pub adverts_rx: u64,
    /// Adverts sent.
    pub adverts_tx: u64,
    /// Priority-0 adverts received.
    pub priority_zero_rx: u64,
    /// Priority-0 adverts sent.
    pub priority_zero_tx: u64,
    /// Adverts dropped: address list differs and the sender is not the owner.
    pub address_mismatch: u64,
    /// Adverts whose interval differs from ours (accepted, the backup learns it).
    pub interval_mismatch: u64,
    /// Transitions to master.
    pub became_master: u64,
    /// Transitions to backup (including at start).
    pub became_backup: u64,
    /// Adverts of lower priority ignored (by a master, or a preempting backup).
    pub lower_priority_rx: u64,
}

/// One VRRPv3 virtual router.
#[derive(Debug)]
pub struct Machine {
    cfg: MachineConfig,
    state: State,
    /// Active_Adver_Interval: learned from the master while backup.
    active_interval_cs: u16,
    adver_deadline: Option<Instant>,
    down_deadline: Option<Instant>,
    garp_left: u32,
    garp_deadline: Option<Instant>,
    master: Option<(IpAddr, u8)>,
    actions: VecDeque<Action>,
    counters: Counters,
    /// `cfg.addresses` sorted: adverts may list the same set in another order.
    sorted: Vec<IpAddr>,
    /// Restarted with the addresses found: listening for a master during
    /// [`Machine::resume_window`].
    resuming: bool,
}

fn cs(v: u16) -> Duration {
    Duration::from_millis(u64::from(v) * 10)
}

impl Machine {
    /// A machine in `Initialize`.
    pub fn new(cfg: MachineConfig) -> Self {
        let active_interval_cs = cfg.advert_interval_cs;
        let mut sorted = cfg.addresses.clone();
        sorted.sort_unstable();
        Machine {
            sorted,
            cfg,
            state: State::Initialize,
            active_interval_cs,
            adver_deadline: None,
            down_deadline: None,
            garp_left: 0,
            garp_deadline: None,
            master: None,
            actions: VecDeque::new(),
            counters: Counters::default(),
            resuming: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MachineConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The current master's address and priority, as last heard (ourselves when master).
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        self.master
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The advert interval in use: ours when master, the master's when backup.
    pub fn active_interval(&self) -> Duration {
        cs(self.active_interval_cs)
    }

    /// Skew_Time = ((256 - Priority) * Active_Adver_Interval) / 256.
    pub fn skew_time(&self) -> Duration {
        self.active_interval() * (256 - u32::from(self.cfg.priority)) / 256
    }

    /// Active_Down_Interval = 3 * Active_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.active_interval() * 3 + self.skew_time()
    }

    /// Starts the router (RFC 9568 Initialize: backup unless we own the
    /// addresses). `resuming` tells that the virtual addresses were on the
    /// interface at start, left by a previous run killed while master; the
    /// driver has removed them before this call, because a backup may have
    /// taken over since, and holding them now would duplicate them.
    ///
    /// Resuming with preemption on, the router listens for
    /// [`Machine::resume_window`] (one advert interval plus the skew time)
    /// instead of the whole master-down interval: if no master is heard, it
    /// was a quick restart and it takes the addresses back before a backup
    /// takes over; if a master of higher or equal priority is heard, it stays
    /// backup; a lower-priority master is preempted at the end of the window,
    /// as preemption says.
    pub fn start(&mut self, now: Instant, resuming: bool) {
        if self.state != State::Initialize {
            return;
        }
        if self.cfg.priority == PRIORITY_OWNER {
            self.become_master(now, "address owner (priority 255)");
            return;
        }
        self.become_backup(now, self.cfg.advert_interval_cs, "startup");
        if resuming && self.cfg.preempt {
            self.down_deadline = Some(now + self.resume_window());
            self.resuming = true;
        }
    }

    /// How long a restarted router that found its addresses listens before
    /// taking them back: the advert interval plus the skew time.
    pub fn resume_window(&self) -> Duration {
        cs(self.cfg.advert_interval_cs) + self.skew_time()
    }

    /// Whether the router is still in its [`Machine::resume_window`] after a
    /// restart (no master heard yet).
    pub fn resuming(&self) -> bool {
        self.resuming
    }

    /// Stops the router: a master sends priority 0 so a backup takes over after
    /// its skew time, and gives the addresses up.
    pub fn shutdown(&mut self, _now: Instant) {
        if self.state == State::Master {
            self.send_advert(PRIORITY_STOP);
            self.counters.priority_zero_tx += 1;
            self.actions.push_back(Action::RemoveAddresses);
        }
        self.transition(State::Initialize, "shutdown");
        self.adver_deadline = None;
        self.down_deadline = None;
        self.garp_deadline = None;
        self.garp_left = 0;
        self.master = None;
    }

    /// Handles a valid advert for our VRID from `src` (codec, TTL and VRID checks
    /// done by the caller).
    pub fn handle_advert(&mut self, now: Instant, src: IpAddr, advert: &Advert) {
        if advert.priority != PRIORITY_OWNER && !self.same_addresses(&advert.addresses) {
            self.counters.address_mismatch += 1;
            return;
        }
        self.counters.adverts_rx += 1;
        if advert.max_advert_cs != self.cfg.advert_interval_cs {
            self.counters.interval_mismatch += 1;
        }
        if advert.priority == PRIORITY_STOP {
            self.counters.priority_zero_rx += 1;
        }
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if advert.priority == PRIORITY_STOP {
                    let wait = if self.cfg.immediate_handover {
                        Duration::ZERO
                    } else {
                        self.skew_time()
                    };
                    self.down_deadline = Some(now + wait);
                    self.master = None;
                    self.resuming = false;
                } else if !self.cfg.preempt || advert.priority >= self.cfg.priority {
                    self.active_interval_cs = advert.max_advert_cs.max(1);
                    self.resuming = false;
                    self.down_deadline = Some(now + self.master_down_interval());
                    self.master = Some((src, advert.priority));
                } else {
                    self.counters.lower_priority_rx += 1;
                }
            }
            State::Master => {
                if advert.priority == PRIORITY_STOP {
                    self.send_advert(self.cfg.priority);
                    self.adver_deadline = Some(now + self.active_interval());
                } else if advert.priority > self.cfg.priority
                    || (advert.priority == self.cfg.priority && src > self.cfg.local_addr)
                {
                    self.actions.push_back(Action::RemoveAddresses);
                    self.become_backup(
                        now,
                        advert.max_advert_cs.max(1),
                        "higher priority master heard",
                    );
                    self.master = Some((src, advert.priority));
                } else {
                    self.counters.lower_priority_rx += 1;
                }
            }
        }
    }

    /// Handles the expiry of whatever deadlines are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if self.down_deadline.is_some_and(|d| d <= now) {
                    let reason = if self.resuming {
                        "no master heard since the restart"
                    } else {
                        "master down interval expired"
                    };
                    self.become_master(now, reason);
                }
            }
            State::Master => {
                if let Some(d) = self.adver_deadline.filter(|d| *d <= now) {
                    self.send_advert(self.cfg.priority);
                    // Keep the phase: the next deadline follows the previous one, and
                    // slots missed by a late wake-up are skipped, not sent in a burst.
                    let step = self.active_interval();
                    let mut next = d + step;
                    while next <= now {
                        next += step;
                    }
                    self.adver_deadline = Some(next);
                }
                if let Some(d) = self.garp_deadline.filter(|d| *d <= now) {
                    self.actions.push_back(Action::Announce);
                    self.garp_left = self.garp_left.saturating_sub(1);
                    self.garp_deadline =
                        (self.garp_left > 0).then(|| d.max(now) + self.cfg.garp_delay);
                }
            }
        }
    }

    /// The next instant [`Machine::handle_timeout`] must be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.adver_deadline, self.down_deadline, self.garp_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn same_addresses(&self, other: &[IpAddr]) -> bool {
        if other.len() != self.sorted.len() {
            return false;
        }
        let mut o = other.to_vec();
        o.sort_unstable();
        o == self.sorted
    }

    fn advert(&self, priority: u8) -> Advert {
        Advert {
            vrid: self.cfg.vrid,
            priority,
            max_advert_cs: self.cfg.advert_interval_cs,
            addresses: self.cfg.addresses.clone(),
        }
    }

    fn send_advert(&mut self, priority: u8) {
        self.counters.adverts_tx += 1;
        self.actions
            .push_back(Action::SendAdvert(self.advert(priority)));
    }

    fn transition(&mut self, to: State, reason: &'static str) {
        self.resuming = false;
        if self.state != to {
            self.actions.push_back(Action::Transition {
                from: self.state,
                to,
                reason,
            });
            self.state = to;
        }
    }

    fn become_master(&mut self, now: Instant, reason: &'static str) {
        self.transition(State::Master, reason);
        self.counters.became_master += 1;
        self.active_interval_cs = self.cfg.advert_interval_cs;
        self.down_deadline = None;
        // Advert first, so backups stop their timers as early as possible.
        self.send_advert(self.cfg.priority);
        self.actions.push_back(Action::AddAddresses);
        self.actions.push_back(Action::Announce);
        self.garp_left = self.cfg.garp_count.saturating_sub(1);
        self.garp_deadline = (self.garp_left > 0).then(|| now + self.cfg.garp_delay);
        self.adver_deadline = Some(now + self.active_interval());
        self.master = Some((self.cfg.local_addr, self.cfg.priority));
    }

    fn become_backup(&mut self, now: Instant, interval_cs: u16, reason: &'static str) {
        self.transition(State::Backup, reason);
        self.counters.became_backup += 1;
        self.adver_deadline = None;
        self.garp_deadline = None;
        self.garp_left = 0;
        self.active_interval_cs = interval_cs;
        self.down_deadline = Some(now + self.master_down_interval());
        self.master = None;
    }
}
