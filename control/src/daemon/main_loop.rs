//! The supervisor loop: signals, periodic ticks, and the roles' own timers
//! and task wake-ups. It knows roles only through [`Daemon`].

use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{interval, Interval, MissedTickBehavior};
use tracing::{error, info};

use super::notify::Notifier;
use super::supervisor::Daemon;
use super::traffic::{TrafficSummary, TRAFFIC_PERIOD};
use crate::api::server::Inbox;

/// Conntrack sweep period.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(10);
/// Drop-event poll period.
pub const EVENTS_PERIOD: Duration = Duration::from_millis(200);
/// Counter and status summary period.
pub const COUNTERS_PERIOD: Duration = Duration::from_secs(60);
/// Housekeeping period: retry failed writes, count draining flows.
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);

/// The signals the daemon handles.
pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers (do it first: a SIGHUP right after "ready" must
    /// not kill the daemon).
    ///
    /// # Errors
    /// A handler could not be installed.
    pub fn new() -> std::io::Result<Self> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

fn ticker(period: Duration) -> Interval {
    let mut t = interval(period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// The `STATUS=` systemd shows once the daemon is ready: its roles.
pub fn ready_status(daemon: &Daemon) -> String {
    let names: Vec<&str> = daemon.roles().map(|r| r.name()).collect();
    format!("ready: {}", names.join(", "))
}

/// When the roles next need a poll (far in the future when none does).
pub fn next_deadline(daemon: &Daemon) -> tokio::time::Instant {
    let far = Instant::now() + Duration::from_secs(3600);
    tokio::time::Instant::from_std(daemon.poll_timeout().unwrap_or(far))
}

/// Runs until SIGTERM or SIGINT; answers the operator socket's requests
/// (`inbox`) between the other events; tells systemd about reloads and the
/// stop through `notify`, and feeds its watchdog from this loop (a stuck
/// loop stops feeding it).
pub async fn run(daemon: &mut Daemon, signals: &mut Signals, notify: &Notifier, inbox: &mut Inbox) {
    let watchdog_period = notify.watchdog_period();
    let mut watchdog = ticker(watchdog_period.unwrap_or(Duration::from_secs(3600)));
    let mut traffic_tick = ticker(TRAFFIC_PERIOD);
    let mut traffic = TrafficSummary::new();
    let mut sweep = ticker(SWEEP_PERIOD);
    let mut events = ticker(EVENTS_PERIOD);
    let mut counters = ticker(COUNTERS_PERIOD);
    let mut housekeeping = ticker(HOUSEKEEPING_PERIOD);
    let wake = daemon.wake();
    // The first tick of an interval fires at once: consume it.
    sweep.tick().await;
    counters.tick().await;
    loop {
        let deadline = next_deadline(daemon);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => daemon.poll(Instant::now()),
            _ = wake.notified() => daemon.poll(Instant::now()),
            _ = housekeeping.tick() => daemon.housekeeping(),
            (request, reply) = inbox.recv() => {
                let _ = reply.send(crate::api::handle::answer(daemon, request));
            }
            _ = signals.hup.recv() => {
                info!("SIGHUP: reloading {}", daemon.config_path().display());
                notify.reloading();
                let mut status = ready_status(daemon);
                if let Err(e) = daemon.reload() {
                    error!("reload failed, keeping the running config: {e}");
                    status.push_str("; last reload failed, running the previous config");
                }
                notify.ready(&status);
            }
            _ = signals.term.recv() => {
                info!("SIGTERM: exiting; XDP programs and pinned maps stay in place");
                notify.stopping();
                break;
            }
            _ = signals.int.recv() => {
                info!("SIGINT: exiting; XDP programs and pinned maps stay in place");
                notify.stopping();
                break;
            }
            _ = watchdog.tick(), if watchdog_period.is_some() => notify.watchdog(),
            _ = traffic_tick.tick() => {
                if let Some(counters) = daemon.counters() {
                    if let Some(line) = traffic.observe(counters, Instant::now()) {
                        info!("traffic: {line}");
                    }
                }
            }
            _ = sweep.tick() => daemon.sweep(kowabunga_dataplane::monotonic_now_ns()),
            _ = events.tick() => { daemon.poll_events(); }
            _ = counters.tick() => {
                daemon.log_counters();
                daemon.log_status();
            }
        }
    }
}
