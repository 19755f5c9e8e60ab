//! The sans-IO VRRPv3 machine on a simulated clock and a simulated segment:
//! election, preemption, priority-0 handover, master-down timing, learned advert
//! interval, split-brain resolution, late wake-ups, restart adoption, GARP bursts.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kowabunga_control::vrrp::machine::{Action, Machine, MachineConfig, State};
use kowabunga_control::vrrp::packet::Advert;

const MS: Duration = Duration::from_millis(1);

fn addr(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, d))
}

fn cfg(local: u8, priority: u8, interval_ms: u16) -> MachineConfig {
    MachineConfig {
        vrid: 51,
        priority,
        advert_interval_cs: interval_ms / 10,
        preempt: true,
        addresses: vec![addr(1)],
        local_addr: addr(local),
        garp_count: 1,
        garp_delay: Duration::ZERO,
        immediate_handover: false,
    }
}

#[derive(Debug)]
struct Node {
    m: Machine,
    up: bool,
    vips: bool,
    announces: Vec<Duration>,
    masters: Vec<Duration>,
    sent: Vec<(Duration, u8)>,
}

/// Routers on one segment, a virtual clock, adverts delivered after `delay`.
struct Sim {
    t0: Instant,
    now: Instant,
    delay: Duration,
    nodes: Vec<Node>,
    inflight: Vec<(Instant, usize, Advert)>,
}

impl Sim {
    fn new(cfgs: Vec<MachineConfig>) -> Self {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            delay: Duration::from_micros(100),
            nodes: cfgs
                .into_iter()
                .map(|c| Node {
                    m: Machine::new(c),
                    up: false,
                    vips: false,
                    announces: vec![],
                    masters: vec![],
                    sent: vec![],
                })
                .collect(),
            inflight: vec![],
        }
    }

    fn at(&self) -> Duration {
        self.now - self.t0
    }

    fn start(&mut self, i: usize) {
        self.start_with(i, false);
    }

    fn start_with(&mut self, i: usize, present: bool) {
        self.nodes[i].up = true;
        let now = self.now;
        self.nodes[i].m.start(now, present);
        self.drain(i);
    }

    fn shutdown(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].m.shutdown(now);
        self.drain(i);
        self.nodes[i].up = false;
    }

    /// A crash: silent, nothing more is sent or handled.
    fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    fn drain(&mut self, i: usize) {
        let at = self.at();
        while let Some(a) = self.nodes[i].m.poll_action() {
            let n = &mut self.nodes[i];
            match a {
                Action::SendAdvert(adv) => {
                    n.sent.push((at, adv.priority));
                    self.inflight.push((self.now + self.delay, i, adv));
                }
                Action::AddAddresses => n.vips = true,
                Action::RemoveAddresses => n.vips = false,
                Action::Announce => n.announces.push(at),
                Action::Transition {
                    to: State::Master, ..
                } => n.masters.push(at),
                Action::Transition { .. } => {}
            }
        }
    }

    fn run_until(&mut self, end: Duration) {
        let end = self.t0 + end;
        for _ in 0..1_000_000 {
            let timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.m.poll_timeout())
                .min();
            let packet = self.inflight.iter().map(|p| p.0).min();
            let Some(next) = [timer, packet].into_iter().flatten().min() else {
                self.now = end;
                return;
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = self.inflight.drain(..).partition(|p| p.0 <= now);
            self.inflight = later;
            for (_, from, adv) in due {
                let src = self.nodes[from].m.config().local_addr;
                for j in 0..self.nodes.len() {
                    if j != from && self.nodes[j].up {
                        self.nodes[j].m.handle_advert(now, src, &adv);
                        self.drain(j);
                    }
                }
            }
            for j in 0..self.nodes.len() {
                if self.nodes[j].up && self.nodes[j].m.poll_timeout().is_some_and(|d| d <= now) {
                    self.nodes[j].m.handle_timeout(now);
                    self.drain(j);
                }
            }
        }
        panic!("simulation did not converge");
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].m.state() == State::Master)
            .collect()
    }
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= Duration::from_micros(500)
}

#[test]
fn election_highest_priority_wins_at_its_master_down_interval() {
    let mut s = Sim::new(vec![cfg(11, 150, 100), cfg(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_until(Duration::from_secs(3));
    assert_eq!(s.masters(), vec![0]);
    assert!(s.nodes[0].vips && !s.nodes[1].vips);
    // 3 x 100 ms + (256 - 150) x 100 ms / 256.
    assert_eq!(s.nodes[0].masters.len(), 1);
    assert!(
        close(s.nodes[0].masters[0], Duration::from_micros(341_406)),
        "{:?}",
        s.nodes[0].masters
    );
    assert!(s.nodes[1].masters.is_empty(), "the backup never flapped");
    // The master keeps its phase: one advert every 100 ms.
    let sent: Vec<Duration> = s.nodes[0].sent.iter().map(|x| x.0).collect();
    for w in sent.windows(2) {
        assert!(close(w[1] - w[0], 100 * MS), "{w:?}");
    }
}

#[test]
fn crash_detected_after_master_down_interval() {
    let mut s = Sim::new(vec![cfg(11, 150, 100), cfg(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_until(Duration::from_secs(2));
    let last = s.nodes[0].sent.last().expect("adverts").0;
    s.crash(0);
    s.run_until(Duration::from_secs(4));
    assert_eq!(s.masters(), vec![1]);
    // Backup (priority 100): 3 x 100 ms + 156 x 100 ms / 256 = 360.9 ms after the last advert.
    let took = s.nodes[1].masters[0] - last;
    assert!(
        close(took, Duration::from_micros(360_937) + s.delay),
        "{took:?}"
    );
    assert!(s.nodes[1].vips);
    assert_eq!(s.nodes[1].announces.len(), 1);
}

#[test]
fn priority_zero_hands_over_after_skew_time() {
    let mut s = Sim::new(vec![cfg(11, 150, 100), cfg(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_until(Duration::from_secs(2));
    let t = s.at();
    s.shutdown(0);
    assert!(
        !s.nodes[0].vips,
        "the stopping master gives the addresses up"
    );
    assert_eq!(s.nodes[0].sent.last().map(|x| x.1), Some(0));
    s.run_until(Duration::from_secs(3));
    let took = s.nodes[1].masters[0] - t;
    // Skew_Time of priority 100 at 100 ms: 60.9 ms.
    assert!(
        close(took, Duration::from_micros(60_937) + s.delay),
        "{took:?}"
    );
    assert_eq!(s.masters(), vec![1]);
}

#[test]
fn master_answers_priority_zero_of_another_with_an_advert() {
    let mut s = Sim::new(vec![cfg(11, 150, 1000), cfg(12, 100, 1000)]);
    s.start(0);
    s.start(1);
    s.run_until(Duration::from_secs(6));
    let before = s.nodes[0].sent.len();
    // A stale former master announcing its stop: the master re-asserts itself at once.
    let now = s.now;
    let zero = Advert {
        vrid: 51,
        priority: 0,
        max_advert_cs: 100,
        addresses: vec![addr(1)],
    };
    s.nodes[0].m.handle_advert(now, addr(13), &zero);
    s.drain(0);
    assert_eq!(s.nodes[0].sent.len(), before + 1);
    assert_eq!(s.nodes[0].m.state(), State::Master);
}

#[test]
fn preemption_on_and_off() {
    for preempt in [true, false] {
        let mut high = cfg(11, 150, 100);
        high.preempt = preempt;
        let mut s = Sim::new(vec![high, cfg(12, 100, 100)]);
        s.start(1);
        s.run_until(Duration::from_secs(2));
        assert_eq!(s.masters(), vec![1]);
        s.start(0);
        s.run_until(Duration::from_secs(5));
        if preempt {
            assert_eq!(s.masters(), vec![0], "the higher priority takes over");
            let took = s.nodes[0].masters[0] - Duration::from_secs(2);
            assert!(took < 400 * MS, "{took:?}");
            assert!(!s.nodes[1].vips);
        } else {
            assert_eq!(s.masters(), vec![1], "no preemption: the master stays");
            assert_eq!(s.nodes[0].m.counters().lower_priority_rx, 0);
        }
    }
}

/// Two masters after a healed partition: node 0 became master alone, was cut
/// off (it keeps its state), node 1 became master alone, then 0 is back.
fn split_brain(cfgs: Vec<MachineConfig>) -> Sim {
    let mut s = Sim::new(cfgs);
    s.start(0);
    s.run_until(Duration::from_secs(1));
    s.crash(0);
    s.start(1);
    s.run_until(Duration::from_secs(2));
    s.nodes[0].up = true;
    assert_eq!(s.masters(), vec![0, 1]);
    s
}

#[test]
fn split_brain_resolved_by_priority_then_address() {
    // Priority.
    let mut s = split_brain(vec![cfg(11, 100, 100), cfg(12, 120, 100)]);
    s.run_until(Duration::from_secs(3));
    assert_eq!(s.masters(), vec![1]);
    assert!(!s.nodes[0].vips && s.nodes[1].vips);
    // Equal priority: the higher primary address wins.
    let mut s = split_brain(vec![cfg(12, 100, 100), cfg(11, 100, 100)]);
    s.run_until(Duration::from_secs(3));
    assert_eq!(s.masters(), vec![0], "10.0.0.12 > 10.0.0.11");
    assert!(s.nodes[0].vips && !s.nodes[1].vips);
}

#[test]
fn backup_learns_the_masters_advert_interval() {
    // The backup is configured with 1 s, the master sends every 100 ms: the backup
    // must detect the crash within 3 x 100 ms + skew, not 3 x 1 s.
    let mut s = Sim::new(vec![cfg(11, 150, 100), cfg(12, 100, 1000)]);
    s.start(0);
    s.run_until(Duration::from_secs(1));
    s.start(1);
    s.run_until(Duration::from_secs(2));
    assert_eq!(s.nodes[1].m.active_interval(), 100 * MS);
    assert!(s.nodes[1].m.counters().interval_mismatch > 0);
    let last = s.nodes[0].sent.last().expect("adverts").0;
    s.crash(0);
    s.run_until(Duration::from_secs(5));
    let took = s.nodes[1].masters[0] - last;
    assert!(
        close(took, Duration::from_micros(360_937) + s.delay),
        "{took:?}"
    );
}

#[test]
fn owner_priority_255_is_master_at_once() {
    let mut s = Sim::new(vec![cfg(11, 255, 100), cfg(12, 254, 100)]);
    s.start(1);
    s.run_until(Duration::from_secs(1));
    assert_eq!(s.masters(), vec![1]);
    s.start(0);
    assert_eq!(s.nodes[0].masters, vec![Duration::from_secs(1)]);
    s.run_until(Duration::from_millis(1010));
    assert_eq!(s.masters(), vec![0]);
}

#[test]
fn late_wakeups_keep_the_advert_phase() {
    let t0 = Instant::now();
    let mut m = Machine::new(cfg(11, 255, 100));
    m.start(t0, false);
    while m.poll_action().is_some() {}
    // Woken 250 ms late: one advert now, and the next on the original grid.
    m.handle_timeout(t0 + 350 * MS);
    let sent = std::iter::from_fn(|| m.poll_action())
        .filter(|a| matches!(a, Action::SendAdvert(_)))
        .count();
    assert_eq!(sent, 1, "missed slots are skipped, not sent in a burst");
    assert_eq!(m.poll_timeout(), Some(t0 + 400 * MS));
    // Woken 3 ms late: the next deadline does not drift.
    m.handle_timeout(t0 + 403 * MS);
    assert_eq!(m.poll_timeout(), Some(t0 + 500 * MS));
}

#[test]
fn restart_with_addresses_present() {
    let t0 = Instant::now();
    // Preemption on: backup, the addresses are not taken back (the driver
    // removed them), and no master heard within the resume window (100 ms +
    // skew 41.4 ms): master again, far sooner than a backup's 341 ms.
    let mut m = Machine::new(cfg(11, 150, 100));
    m.start(t0, true);
    assert_eq!(m.state(), State::Backup);
    assert!(m.resuming());
    let acts: Vec<Action> = std::iter::from_fn(|| m.poll_action()).collect();
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::AddAddresses | Action::SendAdvert(_))),
        "{acts:?}"
    );
    assert_eq!(m.resume_window(), Duration::from_nanos(141_406_250));
    assert_eq!(m.poll_timeout(), Some(t0 + m.resume_window()));
    m.handle_timeout(t0 + m.resume_window());
    assert_eq!(m.state(), State::Master);
    let acts: Vec<Action> = std::iter::from_fn(|| m.poll_action()).collect();
    assert!(
        acts.iter().any(|a| matches!(
            a,
            Action::Transition {
                reason: "no master heard since the restart",
                ..
            }
        )),
        "{acts:?}"
    );
    assert!(acts.contains(&Action::AddAddresses), "{acts:?}");

    // A master of equal priority heard in the window: backup for good.
    let mut m = Machine::new(cfg(11, 100, 100));
    m.start(t0, true);
    let advert = Advert {
        vrid: 51,
        priority: 100,
        max_advert_cs: 10,
        addresses: vec![addr(1)],
    };
    m.handle_advert(t0 + 50 * MS, addr(12), &advert);
    assert!(!m.resuming());
    assert_eq!(
        m.poll_timeout(),
        Some(t0 + 50 * MS + m.master_down_interval())
    );

    // Preemption off: an ordinary backup.
    let mut c = cfg(11, 150, 100);
    c.preempt = false;
    let mut m = Machine::new(c);
    m.start(t0, true);
    assert_eq!(m.state(), State::Backup);
    assert!(!m.resuming());
    assert_eq!(m.poll_timeout(), Some(t0 + m.master_down_interval()));
}

#[test]
fn a_master_killed_and_restarted_after_the_takeover_never_holds_the_addresses() {
    // Equal priorities: 0 is master, is killed (its addresses stay: the sim
    // keeps `vips`), 1 takes over, 0 restarts with the addresses found.
    let mut s = Sim::new(vec![cfg(11, 100, 100), cfg(12, 100, 100)]);
    s.start(0);
    s.run_until(Duration::from_secs(1));
    s.start(1);
    s.run_until(Duration::from_secs(2));
    assert_eq!(s.masters(), vec![0]);
    s.crash(0);
    s.run_until(Duration::from_secs(3));
    assert_eq!(s.masters(), vec![1]);
    assert!(s.nodes[0].vips, "a killed master leaves its addresses");
    // A new process; the driver removes them before starting the machine.
    s.nodes[0].m = Machine::new(cfg(11, 100, 100));
    s.nodes[0].vips = false;
    s.start_with(0, true);
    for step in 1..=300 {
        s.run_until(Duration::from_secs(3) + step * 10 * MS);
        assert!(!s.nodes[0].vips, "the restarted node took the addresses");
        assert_eq!(s.masters(), vec![1]);
    }
    // A higher-priority node restarted the same way preempts at the end of
    // its resume window, as preemption says, and only then holds them.
    let mut s = Sim::new(vec![cfg(11, 150, 100), cfg(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_until(Duration::from_secs(1));
    s.crash(0);
    s.run_until(Duration::from_secs(2));
    assert_eq!(s.masters(), vec![1]);
    s.nodes[0].m = Machine::new(cfg(11, 150, 100));
    s.nodes[0].vips = false;
    s.start_with(0, true);
    s.run_until(Duration::from_secs(2) + 100 * MS);
    assert!(!s.nodes[0].vips && s.masters() == vec![1]);
    s.run_until(Duration::from_secs(3));
    assert_eq!(s.masters(), vec![0]);
    assert!(s.nodes[0].vips && !s.nodes[1].vips);
}

#[test]
fn a_quick_restart_resumes_before_the_backup_takes_over() {
    let mut s = Sim::new(vec![cfg(11, 150, 100), cfg(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_until(Duration::from_secs(1));
    s.crash(0);
    s.run_until(Duration::from_secs(1) + 50 * MS);
    s.nodes[0].m = Machine::new(cfg(11, 150, 100));
    s.nodes[0].vips = false;
    s.start_with(0, true);
    s.run_until(Duration::from_secs(3));
    assert_eq!(s.masters(), vec![0]);
    assert!(s.nodes[1].masters.is_empty(), "the backup never took over");
    assert_eq!(s.nodes[0].masters.len(), 2);
    let back = s.nodes[0].masters[1] - (Duration::from_secs(1) + 50 * MS);
    assert!(close(back, Duration::from_micros(141_406)), "{back:?}");
}

#[test]
fn address_mismatch_is_dropped_and_counted_unless_from_owner() {
    let t0 = Instant::now();
    let mut m = Machine::new(cfg(12, 100, 100));
    m.start(t0, false);
    let other = Advert {
        vrid: 51,
        priority: 200,
        max_advert_cs: 10,
        addresses: vec![addr(9)],
    };
    m.handle_advert(t0 + MS, addr(11), &other);
    assert_eq!(m.counters().address_mismatch, 1);
    assert_eq!(m.counters().adverts_rx, 0);
    assert_eq!(m.master(), None);
    // The same set in another order is the same virtual router.
    let mut two = cfg(12, 100, 100);
    two.addresses = vec![addr(1), addr(2)];
    let mut m2 = Machine::new(two);
    m2.start(t0, false);
    let swapped = Advert {
        vrid: 51,
        priority: 200,
        max_advert_cs: 10,
        addresses: vec![addr(2), addr(1)],
    };
    m2.handle_advert(t0 + MS, addr(11), &swapped);
    assert_eq!(m2.counters().address_mismatch, 0);
    assert_eq!(m2.master(), Some((addr(11), 200)));
    let owner = Advert {
        priority: 255,
        ..other
    };
    m.handle_advert(t0 + 2 * MS, addr(11), &owner);
    assert_eq!(m.counters().adverts_rx, 1);
    assert_eq!(m.master(), Some((addr(11), 255)));
}

#[test]
fn gratuitous_arp_burst_follows_count_and_delay() {
    let mut c = cfg(11, 150, 1000);
    c.garp_count = 3;
    c.garp_delay = 100 * MS;
    let mut s = Sim::new(vec![c]);
    s.start(0);
    s.run_until(Duration::from_secs(5));
    let took = s.nodes[0].masters[0];
    let want: Vec<Duration> = (0..3).map(|k| took + k * 100 * MS).collect();
    assert_eq!(s.nodes[0].announces, want);
}

#[test]
fn three_routers_converge_to_one_master_under_jitter() {
    // Adverts delivered late (up to 80 ms at 100 ms intervals): never two masters
    // once converged, and the best priority wins.
    let mut s = Sim::new(vec![
        cfg(11, 100, 100),
        cfg(12, 150, 100),
        cfg(13, 120, 100),
    ]);
    s.delay = 80 * MS;
    for i in 0..3 {
        s.start(i);
    }
    s.run_until(Duration::from_secs(2));
    let flips: Vec<usize> = s.nodes.iter().map(|n| n.masters.len()).collect();
    s.run_until(Duration::from_secs(30));
    assert_eq!(s.masters(), vec![1]);
    assert_eq!(
        flips,
        s.nodes.iter().map(|n| n.masters.len()).collect::<Vec<_>>(),
        "no flap after convergence"
    );
}

#[test]
fn immediate_handover_skips_the_skew() {
    let mut backup = cfg(12, 100, 100);
    backup.immediate_handover = true;
    let mut s = Sim::new(vec![cfg(11, 150, 100), backup]);
    s.start(0);
    s.start(1);
    s.run_until(Duration::from_secs(2));
    let t = s.at();
    s.shutdown(0);
    s.run_until(Duration::from_secs(3));
    let took = s.nodes[1].masters[0] - t;
    assert!(close(took, s.delay), "{took:?}");
}
