//! The supervisor loop: signals, periodic ticks, and the roles' own timers
//! and task wake-ups. It knows roles only through [`Daemon`].

use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{interval, Interval, MissedTickBehavior};
use tracing::{error, info};

use super::supervisor::Daemon;
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

/// When the roles next need a poll (far in the future when none does).
pub fn next_deadline(daemon: &Daemon) -> tokio::time::Instant {
    let far = Instant::now() + Duration::from_secs(3600);
    tokio::time::Instant::from_std(daemon.poll_timeout().unwrap_or(far))
}

/// Runs until SIGTERM or SIGINT; answers the operator socket's requests
/// (`inbox`) between the other events.
pub async fn run(daemon: &mut Daemon, signals: &mut Signals, inbox: &mut Inbox) {
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
                if let Err(e) = daemon.reload() {
                    error!("reload failed, keeping the running config: {e}");
                }
            }
            _ = signals.term.recv() => {
                info!("SIGTERM: exiting; XDP programs and pinned maps stay in place");
                break;
            }
            _ = signals.int.recv() => {
                info!("SIGINT: exiting; XDP programs and pinned maps stay in place");
                break;
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
