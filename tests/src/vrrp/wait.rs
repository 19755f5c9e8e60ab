//! Bounded polling helpers for the VRRP labs.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Polls `cond` every 10 ms until it holds; an error naming `what` after `limit`.
pub fn until(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        if cond()? {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `cond` every 10 ms for `span`; an error naming `what` as soon as it fails.
pub fn holds(what: &str, span: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < span {
        if !cond()? {
            bail!("{what} stopped holding after {:?}", t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
