//! The health of one backend as a deterministic state machine (sans-IO, in the
//! style of quinn-proto): no sockets, no clocks. The caller feeds it the time
//! and the outcome of each probe; it says when the next probe is due and
//! returns a [`Transition`] whenever the backend changes state.
//!
//! * **Up**: in rotation. `fall` failed probes in a row make it **Down**.
//! * **Down**: out of rotation (no new flows). `rise` successful probes in a
//!   row make it **Up** again.
//! * **Draining**: removed from the configuration; never probed again, never
//!   back in rotation (terminal).
//!
//! Start state: a new backend is **Up** and its first probe is due at once
//! ("up until proven down"). A daemon restart therefore never empties the
//! rotations that the pinned maps still serve, and a dead backend leaves the
//! rotation after `fall` probes, that is within `(fall - 1) x interval +
//! timeout` of the start.
//!
//! Probes run at a fixed rate: probe *n+1* is due `interval` after probe *n*
//! started; a probe with no outcome `timeout` after it started is a failure.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use kowabunga_control::konvey::health::{Health, HealthConfig, Outcome, State};
//!
//! let config = HealthConfig { interval: Duration::from_secs(1), timeout: Duration::from_millis(500), rise: 2, fall: 2 };
//! let t0 = Instant::now();
//! let mut h = Health::new(config, t0);
//! assert_eq!(h.state(), State::Up);
//! let probe = h.poll_probe(t0).expect("first probe is due at once");
//! assert!(h.on_outcome(probe, t0, Outcome::failure("connection refused")).is_none());
//! let t1 = t0 + Duration::from_secs(1);
//! let probe = h.poll_probe(t1).expect("due after one interval");
//! let change = h.on_outcome(probe, t1, Outcome::failure("connection refused")).expect("down");
//! assert_eq!((change.from, change.to), (State::Up, State::Down));
//! assert_eq!(change.reason, "2 failed probes in a row, last: connection refused");
//! ```

use std::fmt;
use std::time::{Duration, Instant};

/// Default probe period.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
/// Default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default successes in a row that bring a backend back.
pub const DEFAULT_RISE: u32 = 2;
/// Default failures in a row that take a backend out.
pub const DEFAULT_FALL: u32 = 2;

/// Probe timing and thresholds (`node.konvey.health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between the starts of two probes.
    pub interval: Duration,
    /// A probe without an outcome after this long has failed.
    pub timeout: Duration,
    /// Successful probes in a row that make a down backend up (>= 1).
    pub rise: u32,
    /// Failed probes in a row that make an up backend down (>= 1).
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
        }
    }
}

/// Where a backend stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Healthy: gets new flows.
    Up,
    /// Unhealthy: gets no new flows; still probed.
    Down,
    /// Removed from the configuration: established flows continue, no new
    /// ones, no more probes.
    Draining,
}

impl State {
    /// Lower-case name, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Draining => "draining",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered as expected.
    Success,
    /// It did not; the reason is logged (e.g. `connection refused`).
    Failure(String),
}

impl Outcome {
    /// A failure with `reason`.
    pub fn failure(reason: impl Into<String>) -> Self {
        Outcome::Failure(reason.into())
    }
}

/// Identifies one probe; outcomes of stale probes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeId(u64);

/// A change of state, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
    /// Why, one line, e.g. `2 failed probes in a row, last: timeout`.
    pub reason: String,
}

/// The last probe of a backend, for the operator (`kowabunga backends`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastProbe {
    /// When it ended (an answer or its deadline).
    pub at: Instant,
    /// From start to end.
    pub latency: Duration,
    /// `None` for a success, else why it failed.
    pub failure: Option<String>,
}

/// The health state machine of one backend.
#[derive(Debug, Clone)]
pub struct Health {
    config: HealthConfig,
    state: State,
    /// When the backend entered its state.
    since: Instant,
    /// The last probe that ended.
    last_probe: Option<LastProbe>,
    /// When the probe in flight started.
    probe_started: Option<Instant>,
    /// Successes in a row (counted while down).
    successes: u32,
    /// Failures in a row (counted while up).
    failures: u32,
    /// When the next probe is due (`None` while draining).
    next_probe: Option<Instant>,
    /// The probe in flight and its deadline.
    in_flight: Option<(ProbeId, Instant)>,
    next_id: u64,
}

impl Health {
    /// A backend that is [`State::Up`], with its first probe due at `now`.
    pub fn new(config: HealthConfig, now: Instant) -> Self {
        Health {
            config: sanitize(config),
            state: State::Up,
            since: now,
            last_probe: None,
            probe_started: None,
            successes: 0,
            failures: 0,
            next_probe: Some(now),
            in_flight: None,
            next_id: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// When the backend entered its current state.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// The last probe that ended.
    pub fn last_probe(&self) -> Option<&LastProbe> {
        self.last_probe.as_ref()
    }

    /// The timing and thresholds in use.
    pub fn config(&self) -> HealthConfig {
        self.config
    }

    /// Whether the backend may get new flows.
    pub fn in_rotation(&self) -> bool {
        self.state == State::Up
    }

    /// Changes timing and thresholds (configuration reload); the state and
    /// the counts so far are kept and the next probe is rescheduled.
    pub fn set_config(&mut self, config: HealthConfig, now: Instant) -> Option<Transition> {
        self.config = sanitize(config);
        if let Some(next) = self.next_probe {
            self.next_probe = Some(next.min(now + self.config.interval));
        }
        // Lower thresholds may already be met.
        let transition = match self.state {
            State::Up if self.failures >= self.config.fall => Some(self.go(
                State::Down,
                format!("{} failed probes in a row", self.failures),
            )),
            State::Down if self.successes >= self.config.rise => Some(self.go(
                State::Up,
                format!("{} successful probes in a row", self.successes),
            )),
            _ => None,
        };
        if transition.is_some() {
            self.since = now;
        }
        transition
    }

    /// When the caller must call [`Health::poll_probe`] or
    /// [`Health::handle_timeout`] next; `None` when draining.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.in_flight, self.next_probe) {
            (Some((_, deadline)), _) => Some(deadline),
            (None, next) => next,
        }
    }

    /// A probe to start now, if one is due and none is in flight.
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeId> {
        if self.in_flight.is_some() {
            return None;
        }
        let due = self.next_probe?;
        if now < due {
            return None;
        }
        let id = ProbeId(self.next_id);
        self.next_id += 1;
        self.in_flight = Some((id, now + self.config.timeout));
        self.probe_started = Some(now);
        // Fixed rate; after a long stall (suspended process), not a burst.
        let mut next = due + self.config.interval;
        if next <= now {
            next = now + self.config.interval;
        }
        self.next_probe = Some(next);
        Some(id)
    }

    /// Fails the probe in flight if its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transition> {
        match self.in_flight {
            Some((id, deadline)) if now >= deadline => {
                let reason = format!("no answer within {} ms", self.config.timeout.as_millis());
                self.on_outcome(id, now, Outcome::Failure(reason))
            }
            _ => None,
        }
    }

    /// Feeds the outcome of probe `id`. Outcomes of probes that are not in
    /// flight (already timed out, or from before a drain) are ignored.
    pub fn on_outcome(
        &mut self,
        id: ProbeId,
        now: Instant,
        outcome: Outcome,
    ) -> Option<Transition> {
        match self.in_flight {
            Some((current, _)) if current == id => self.in_flight = None,
            _ => return None,
        }
        let started = self.probe_started.take().unwrap_or(now);
        self.last_probe = Some(LastProbe {
            at: now,
            latency: now.saturating_duration_since(started),
            failure: match &outcome {
                Outcome::Success => None,
                Outcome::Failure(why) => Some(why.clone()),
            },
        });
        let transition = self.on_outcome_state(outcome);
        if transition.is_some() {
            self.since = now;
        }
        transition
    }

    fn on_outcome_state(&mut self, outcome: Outcome) -> Option<Transition> {
        match (self.state, outcome) {
            (State::Draining, _) => None,
            (State::Up, Outcome::Success) => {
                self.failures = 0;
                None
            }
            (State::Up, Outcome::Failure(why)) => {
                self.failures += 1;
                (self.failures >= self.config.fall).then(|| {
                    let reason = if self.failures == 1 {
                        format!("probe failed: {why}")
                    } else {
                        format!("{} failed probes in a row, last: {why}", self.failures)
                    };
                    self.go(State::Down, reason)
                })
            }
            (State::Down, Outcome::Success) => {
                self.successes += 1;
                (self.successes >= self.config.rise).then(|| {
                    let reason = if self.successes == 1 {
                        "probe succeeded".to_owned()
                    } else {
                        format!("{} successful probes in a row", self.successes)
                    };
                    self.go(State::Up, reason)
                })
            }
            (State::Down, Outcome::Failure(_)) => {
                self.successes = 0;
                None
            }
        }
    }

    /// Removes the backend from service for good: no more probes, no new
    /// flows. `None` if it was already draining.
    pub fn drain(&mut self, reason: impl Into<String>) -> Option<Transition> {
        if self.state == State::Draining {
            return None;
        }
        self.next_probe = None;
        self.in_flight = None;
        self.since = Instant::now();
        Some(self.go(State::Draining, reason.into()))
    }

    fn go(&mut self, to: State, reason: String) -> Transition {
        let from = self.state;
        self.state = to;
        self.successes = 0;
        self.failures = 0;
        Transition { from, to, reason }
    }
}

/// Thresholds of 0 would mean "never" or "always": treat them as 1 (the
/// configuration validator refuses them anyway).
fn sanitize(mut config: HealthConfig) -> HealthConfig {
    config.rise = config.rise.max(1);
    config.fall = config.fall.max(1);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg(rise: u32, fall: u32) -> HealthConfig {
        HealthConfig {
            interval: 1000 * MS,
            timeout: 500 * MS,
            rise,
            fall,
        }
    }

    /// A simulated clock driving one [`Health`] the way the daemon does.
    struct Sim {
        t0: Instant,
        now: Instant,
        health: Health,
        transitions: Vec<(Duration, Transition)>,
    }

    impl Sim {
        fn new(config: HealthConfig) -> Self {
            let t0 = Instant::now();
            Sim {
                t0,
                now: t0,
                health: Health::new(config, t0),
                transitions: Vec::new(),
            }
        }

        fn at(&self) -> Duration {
            self.now - self.t0
        }

        /// Runs the next probe at its due time; the backend answers `outcome`
        /// after `delay` (or never, for `None`).
        fn probe(&mut self, outcome: Option<Outcome>, delay: Duration) {
            let due = self.health.poll_timeout().expect("scheduled");
            self.now = self.now.max(due);
            let id = self.health.poll_probe(self.now).expect("due");
            match outcome {
                Some(o) => {
                    self.now += delay;
                    if let Some(t) = self.health.on_outcome(id, self.now, o) {
                        self.transitions.push((self.at(), t));
                    }
                }
                None => {
                    let deadline = self.health.poll_timeout().expect("deadline");
                    assert!(self.health.handle_timeout(deadline - MS).is_none());
                    self.now = deadline;
                    if let Some(t) = self.health.handle_timeout(self.now) {
                        self.transitions.push((self.at(), t));
                    }
                }
            }
        }

        fn ok(&mut self) {
            self.probe(Some(Outcome::Success), 2 * MS);
        }

        fn fail(&mut self) {
            self.probe(Some(Outcome::failure("connection refused")), MS);
        }
    }

    #[test]
    fn starts_up_and_probes_at_once() {
        let mut sim = Sim::new(cfg(2, 2));
        assert_eq!(sim.health.state(), State::Up);
        assert!(sim.health.in_rotation());
        assert_eq!(sim.health.poll_timeout(), Some(sim.t0));
        assert!(sim.health.poll_probe(sim.t0).is_some());
        // One in flight: no second probe, the deadline is what matters now.
        assert!(sim.health.poll_probe(sim.t0 + 5000 * MS).is_none());
        assert_eq!(sim.health.poll_timeout(), Some(sim.t0 + 500 * MS));
    }

    #[test]
    fn fall_failures_in_a_row_take_it_down_within_interval_times_fall() {
        let mut sim = Sim::new(cfg(2, 3));
        sim.ok();
        sim.fail();
        sim.fail();
        assert_eq!(sim.health.state(), State::Up, "2 < fall");
        sim.fail();
        assert_eq!(sim.health.state(), State::Down);
        let (at, t) = &sim.transitions[0];
        assert_eq!((t.from, t.to), (State::Up, State::Down));
        assert_eq!(
            t.reason,
            "3 failed probes in a row, last: connection refused"
        );
        // Probes at 0, 1 s, 2 s, 3 s: the backend died after the first one and
        // is out 3 failures later, within interval x fall of its death.
        assert_eq!(*at, 3001 * MS);
        assert!(!sim.health.in_rotation());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut sim = Sim::new(cfg(2, 2));
        for _ in 0..5 {
            sim.fail();
            sim.ok();
        }
        assert_eq!(sim.health.state(), State::Up);
        assert!(sim.transitions.is_empty());
    }

    #[test]
    fn rise_successes_in_a_row_bring_it_back() {
        let mut sim = Sim::new(cfg(3, 1));
        sim.fail();
        assert_eq!(sim.health.state(), State::Down);
        assert_eq!(
            sim.transitions[0].1.reason,
            "probe failed: connection refused"
        );
        sim.ok();
        sim.ok();
        sim.fail(); // resets the success count
        sim.ok();
        sim.ok();
        assert_eq!(sim.health.state(), State::Down);
        sim.ok();
        assert_eq!(sim.health.state(), State::Up);
        let (at, t) = sim.transitions.last().expect("up");
        assert_eq!((t.from, t.to), (State::Down, State::Up));
        assert_eq!(t.reason, "3 successful probes in a row");
        assert_eq!(*at, 6002 * MS);
        assert_eq!(sim.transitions.len(), 2);
    }

    #[test]
    fn a_probe_without_answer_fails_at_its_deadline() {
        let mut sim = Sim::new(cfg(2, 2));
        sim.probe(None, MS);
        sim.probe(None, MS);
        let (at, t) = &sim.transitions[0];
        assert_eq!(t.to, State::Down);
        assert_eq!(
            t.reason,
            "2 failed probes in a row, last: no answer within 500 ms"
        );
        assert_eq!(*at, 1500 * MS);
    }

    #[test]
    fn late_and_foreign_outcomes_are_ignored() {
        let cfg = cfg(1, 1);
        let t0 = Instant::now();
        let mut h = Health::new(cfg, t0);
        let id = h.poll_probe(t0).expect("due");
        // Timed out first ...
        let t = h.handle_timeout(t0 + 500 * MS).expect("down");
        assert_eq!(t.to, State::Down);
        // ... so the late success of the same probe changes nothing.
        assert!(h.on_outcome(id, t0 + 600 * MS, Outcome::Success).is_none());
        assert_eq!(h.state(), State::Down);
        // Nor does an outcome for a probe that never ran.
        assert!(h.on_outcome(ProbeId(99), t0, Outcome::Success).is_none());
        assert_eq!(h.state(), State::Down);
    }

    #[test]
    fn probes_run_at_a_fixed_rate_without_bursts() {
        let t0 = Instant::now();
        let mut h = Health::new(cfg(2, 2), t0);
        let id = h.poll_probe(t0).expect("due");
        h.on_outcome(id, t0 + 300 * MS, Outcome::Success);
        assert_eq!(h.poll_timeout(), Some(t0 + 1000 * MS), "start to start");
        assert!(h.poll_probe(t0 + 999 * MS).is_none());
        // A 10 s stall: one probe now, the next one an interval later.
        let late = t0 + 10_000 * MS;
        let id = h.poll_probe(late).expect("due");
        h.on_outcome(id, late, Outcome::Success);
        assert_eq!(h.poll_timeout(), Some(late + 1000 * MS));
    }

    #[test]
    fn draining_is_terminal_and_stops_probing() {
        let mut sim = Sim::new(cfg(1, 1));
        let id = sim.health.poll_probe(sim.now).expect("due");
        let t = sim
            .health
            .drain("removed from the configuration")
            .expect("drain");
        assert_eq!((t.from, t.to), (State::Up, State::Draining));
        assert_eq!(t.reason, "removed from the configuration");
        assert!(sim.health.drain("again").is_none());
        assert_eq!(sim.health.poll_timeout(), None);
        assert!(sim.health.poll_probe(sim.now + 5000 * MS).is_none());
        assert!(sim
            .health
            .on_outcome(id, sim.now, Outcome::Success)
            .is_none());
        assert!(sim.health.handle_timeout(sim.now + 5000 * MS).is_none());
        assert_eq!(sim.health.state(), State::Draining);
        assert!(!sim.health.in_rotation());
    }

    #[test]
    fn reload_keeps_state_and_applies_lower_thresholds() {
        let t0 = Instant::now();
        let mut h = Health::new(cfg(2, 3), t0);
        for i in 0..2u32 {
            let now = t0 + 1000 * MS * i;
            let id = h.poll_probe(now).expect("due");
            assert!(h.on_outcome(id, now, Outcome::failure("refused")).is_none());
        }
        // fall 3 -> 2: the two failures already count.
        let t = h.set_config(cfg(2, 2), t0 + 2100 * MS).expect("down now");
        assert_eq!(t.to, State::Down);
        assert_eq!(t.reason, "2 failed probes in a row");
        assert_eq!(h.poll_timeout(), Some(t0 + 2000 * MS), "overdue probe kept");

        // A shorter interval brings the next probe forward.
        let mut h = Health::new(cfg(2, 2), t0);
        let id = h.poll_probe(t0).expect("due");
        h.on_outcome(id, t0, Outcome::Success);
        assert_eq!(h.poll_timeout(), Some(t0 + 1000 * MS));
        let mut fast = cfg(2, 2);
        fast.interval = 100 * MS;
        assert!(h.set_config(fast, t0 + 10 * MS).is_none());
        assert_eq!(h.poll_timeout(), Some(t0 + 110 * MS));
        assert_eq!(h.config().interval, 100 * MS);
        assert_eq!(h.state(), State::Up);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let t0 = Instant::now();
        let mut h = Health::new(cfg(0, 0), t0);
        assert_eq!((h.config().rise, h.config().fall), (1, 1));
        let id = h.poll_probe(t0).expect("due");
        assert!(h.on_outcome(id, t0, Outcome::failure("x")).is_some());
        assert_eq!(h.state(), State::Down);
    }

    #[test]
    fn state_names() {
        assert_eq!(State::Up.to_string(), "up");
        assert_eq!(State::Down.as_str(), "down");
        assert_eq!(State::Draining.to_string(), "draining");
    }

    #[test]
    fn the_last_probe_and_the_state_age_are_kept() {
        let mut sim = Sim::new(cfg(1, 2));
        assert!(sim.health.last_probe().is_none());
        assert_eq!(sim.health.since(), sim.t0);
        sim.probe(Some(Outcome::Success), 3 * MS);
        let last = sim.health.last_probe().cloned().expect("one probe ended");
        assert_eq!((last.latency, last.failure), (3 * MS, None));
        assert_eq!(sim.health.since(), sim.t0, "no transition yet");
        sim.probe(Some(Outcome::failure("connection refused")), 7 * MS);
        sim.probe(Some(Outcome::failure("connection refused")), 9 * MS);
        assert_eq!(sim.health.state(), State::Down);
        let last = sim
            .health
            .last_probe()
            .cloned()
            .expect("three probes ended");
        assert_eq!(last.latency, 9 * MS);
        assert_eq!(last.failure.as_deref(), Some("connection refused"));
        assert_eq!(sim.health.since(), last.at, "down since the failing probe");
        // a timed-out probe lasts its timeout
        sim.probe(None, Duration::ZERO);
        let last = sim.health.last_probe().cloned().expect("a timeout");
        assert_eq!(last.latency, 500 * MS);
        assert!(last.failure.is_some_and(|f| f.contains("no answer")));
    }
}
