//! The failover scenario shared by the failover test and `kowabunga-vrrp-report`:
//! r1 master (priority 150), r2 backup (priority 100), a UDP probe to the VIP, then
//! a crash (r1 cut off the segment and its speaker SIGKILLed at the same instant)
//! or a graceful stop (SIGTERM), and the takeover measured at the client.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::lab::VrrpLab;
use super::node::{Impl, Node, Spec};
use super::probe::{Probe, Takeover};
use super::wait::{holds, until};

/// What happens to the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Node crash: cut off the segment and SIGKILL, at once.
    Crash,
    /// Graceful stop: SIGTERM (priority 0, VIP removed).
    Graceful,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Event::Crash => "crash (kill -9)",
            Event::Graceful => "graceful stop",
        })
    }
}

/// One measured failover.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// Implementation of both routers.
    pub imp: Impl,
    /// Advert interval.
    pub interval_ms: u32,
    /// The event.
    pub event: Event,
    /// Probe rate.
    pub rate: u32,
    /// What the probe saw.
    pub takeover: Takeover,
}

/// Runs one failover of `imp` routers at `interval_ms` with a probe at `rate`/s.
/// `immediate`: ours only, the backup takes over at once on priority 0.
pub fn failover(
    ours: &Path,
    imp: Impl,
    interval_ms: u32,
    event: Event,
    rate: u32,
    immediate: bool,
) -> Result<Measurement> {
    let lab = VrrpLab::new()?;
    let interval = Duration::from_millis(u64::from(interval_ms));
    let spec = |priority| Spec {
        immediate_handover: immediate,
        ..Spec::new(imp, priority, interval_ms)
    };
    let mut master = Node::start(&lab, 0, &spec(150), ours)?;
    until(
        "r1 to hold the VIP",
        interval * 5 + Duration::from_secs(3),
        || lab.vip_on(0),
    )
    .with_context(|| master.log_text())?;
    let backup = Node::start(&lab, 1, &spec(100), ours)?;
    // Let the backup hear a few adverts (and check it stays backup).
    holds(
        "r2 staying backup",
        (interval * 4).max(Duration::from_millis(600)),
        || Ok(!lab.vip_on(1)?),
    )
    .with_context(|| format!("r1:\n{}\nr2:\n{}", master.log_text(), backup.log_text()))?;
    let probe = Probe::start(&lab, rate)?;
    until("probe replies from r1", Duration::from_secs(5), || {
        Ok(probe.snapshot().replies.iter().any(|r| r.router == 0))
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    match event {
        Event::Crash => {
            lab.cut(0)?;
            master.kill9();
        }
        Event::Graceful => master.terminate(),
    }
    let limit = interval * 5 + Duration::from_secs(3);
    let ok = until("probe replies from r2", limit, || {
        Ok(probe
            .snapshot()
            .replies
            .iter()
            .any(|r| r.router == 1 && r.at >= t0))
    });
    // Keep probing a while: any flap back or loss after the takeover shows up.
    std::thread::sleep(Duration::from_millis(500).max(interval * 2));
    let log = probe.finish()?;
    if let Err(e) = ok {
        bail!("{e}\nr2 log:\n{}", backup.log_text());
    }
    Ok(Measurement {
        imp,
        interval_ms,
        event,
        rate,
        takeover: log.takeover(t0, 1),
    })
}

/// Spins `threads` busy loops for `span` (bounded), to load the machine.
pub fn cpu_hogs(threads: usize, span: Duration) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut x: u64 = 1;
                while t0.elapsed() < span {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect()
}

/// A stable master/backup pair of `imp` at `interval_ms` while `hogs` busy threads
/// load the machine for `span`: how many times the backup wrongly became master
/// (every such transition is a flap: the master is alive).
pub fn flaps_under_load(
    ours: &Path,
    imp: Impl,
    interval_ms: u32,
    hogs: usize,
    span: Duration,
) -> Result<usize> {
    let lab = VrrpLab::new()?;
    let interval = Duration::from_millis(u64::from(interval_ms));
    let master = Node::start(&lab, 0, &Spec::new(imp, 150, interval_ms), ours)?;
    until(
        "r1 to hold the VIP",
        interval * 5 + Duration::from_secs(3),
        || lab.vip_on(0),
    )
    .with_context(|| master.log_text())?;
    let backup = Node::start(&lab, 1, &Spec::new(imp, 100, interval_ms), ours)?;
    holds(
        "r2 staying backup",
        (interval * 4).max(Duration::from_millis(600)),
        || Ok(!lab.vip_on(1)?),
    )
    .with_context(|| format!("r1:\n{}\nr2:\n{}", master.log_text(), backup.log_text()))?;
    let before = backup.became_master();
    for h in cpu_hogs(hogs, span) {
        let _ = h.join();
    }
    // Let a late transition show up in the log.
    std::thread::sleep(interval * 2);
    Ok(backup.became_master() - before)
}
