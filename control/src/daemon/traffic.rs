//! The one-line traffic summary logged at `info`: rates since the last
//! summary, written only when the counters moved, at most once every
//! [`TRAFFIC_PERIOD`].
//!
//! ```text
//! traffic: 1.2 kpps forwarded (9.8 Mbit/s), 40 pps to the kernel, 3 drops/s (top: drop_ingress_denied 2/s, drop_no_port 1/s)
//! ```
//!
//! [`summary_line`] is the pure formatting; [`TrafficSummary`] keeps the
//! previous reading and the time of the last line.

use std::time::{Duration, Instant};

use kowabunga_dataplane::Counters;

/// The shortest interval between two summaries.
pub const TRAFFIC_PERIOD: Duration = Duration::from_secs(10);
/// How many drop reasons the line names.
pub const TOP_DROPS: usize = 3;

/// `value` with a k/M/G prefix and at most one decimal (`1.2 k`, `3`, `0.5`).
pub fn si(value: f64) -> String {
    let (v, prefix) = if value >= 1e9 {
        (value / 1e9, " G")
    } else if value >= 1e6 {
        (value / 1e6, " M")
    } else if value >= 1e3 {
        (value / 1e3, " k")
    } else {
        (value, " ")
    };
    let mut n = if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    if let Some(stripped) = n.strip_suffix(".0") {
        n = stripped.to_owned();
    }
    format!("{n}{prefix}")
}

/// The summary of what moved between `before` and `now` over `elapsed`;
/// `None` when no packet was counted (or no time passed).
///
/// Forwarded = `fwd_*`, to the kernel = `pass_*`, drops = `drop_*`, the
/// [`TOP_DROPS`] largest drop reasons named.
pub fn summary_line(before: &Counters, now: &Counters, elapsed: Duration) -> Option<String> {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let delta = now.since(before);
    let (mut fwd, mut fwd_bytes, mut pass, mut drops) = (0u64, 0u64, 0u64, 0u64);
    let mut reasons: Vec<(&str, u64)> = Vec::new();
    for (name, c) in delta.iter() {
        if c.packets == 0 {
            continue;
        }
        if name.starts_with("fwd_") {
            fwd += c.packets;
            fwd_bytes += c.bytes;
        } else if name.starts_with("pass_") {
            pass += c.packets;
        } else if name.starts_with("drop_") {
            drops += c.packets;
            reasons.push((name, c.packets));
        }
    }
    if fwd + pass + drops == 0 {
        return None;
    }
    let rate = |n: u64| n as f64 / secs;
    let mut line = format!(
        "{}pps forwarded ({}bit/s), {}pps to the kernel, {}drops/s",
        si(rate(fwd)),
        si(rate(fwd_bytes) * 8.0),
        si(rate(pass)),
        si(rate(drops))
    );
    if !reasons.is_empty() {
        // Largest first; equal counts in counter order (stable sort).
        reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        let top: Vec<String> = reasons
            .iter()
            .take(TOP_DROPS)
            .map(|(name, n)| format!("{name} {}/s", si(rate(*n)).trim_end()))
            .collect();
        line.push_str(&format!(" (top: {})", top.join(", ")));
    }
    Some(line)
}

/// The previous reading and when the last summary was written.
#[derive(Debug, Default)]
pub struct TrafficSummary {
    last: Option<(Counters, Instant)>,
}

impl TrafficSummary {
    /// No reading yet.
    pub fn new() -> Self {
        TrafficSummary::default()
    }

    /// Feeds a reading taken at `at`; returns the line to log, if any.
    /// The first reading only sets the baseline; later ones give a line
    /// when at least [`TRAFFIC_PERIOD`] passed since the baseline and the
    /// counters moved, and then become the new baseline. A reading that
    /// shows no movement also becomes the baseline (the next line covers
    /// only the time traffic flowed).
    pub fn observe(&mut self, now: Counters, at: Instant) -> Option<String> {
        let Some((before, since)) = &self.last else {
            self.last = Some((now, at));
            return None;
        };
        let elapsed = at.saturating_duration_since(*since);
        if elapsed < TRAFFIC_PERIOD {
            return None;
        }
        let line = summary_line(before, &now, elapsed);
        self.last = Some((now, at));
        line
    }
}

#[cfg(test)]
mod tests {
    use kowabunga_bindings::kw_stat::{
        KW_STAT_DROP_INGRESS_DENIED, KW_STAT_DROP_NO_PORT, KW_STAT_DROP_TTL, KW_STAT_FWD_REDIRECT,
        KW_STAT_PASS_LOCAL,
    };
    use kowabunga_bindings::{kw_counter, kw_stat};
    use kowabunga_dataplane::stats::STAT_COUNT;

    use super::*;

    fn counters(set: &[(kw_stat::Type, u64, u64)]) -> Counters {
        let mut values = [kw_counter::default(); STAT_COUNT];
        for &(stat, packets, bytes) in set {
            values[stat as usize] = kw_counter { packets, bytes };
        }
        Counters::from_values(values)
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(si(0.0), "0 ");
        assert_eq!(si(3.0), "3 ");
        assert_eq!(si(0.25), "0.2 ");
        assert_eq!(si(1234.0), "1.2 k");
        assert_eq!(si(150_000.0), "150 k");
        assert_eq!(si(9_800_000.0), "9.8 M");
        assert_eq!(si(2e9), "2 G");
    }

    #[test]
    fn line_with_rates_and_top_drops() {
        let before = counters(&[(KW_STAT_FWD_REDIRECT, 1000, 1_000_000)]);
        let now = counters(&[
            (KW_STAT_FWD_REDIRECT, 13_000, 13_250_000),
            (KW_STAT_PASS_LOCAL, 400, 40_000),
            (KW_STAT_DROP_INGRESS_DENIED, 20, 1000),
            (KW_STAT_DROP_NO_PORT, 10, 500),
            (KW_STAT_DROP_TTL, 30, 900),
        ]);
        let line = summary_line(&before, &now, Duration::from_secs(10)).expect("moved");
        assert_eq!(
            line,
            "1.2 kpps forwarded (9.8 Mbit/s), 40 pps to the kernel, 6 drops/s \
             (top: drop_ttl 3/s, drop_ingress_denied 2/s, drop_no_port 1/s)"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn no_line_without_movement() {
        let c = counters(&[(KW_STAT_FWD_REDIRECT, 5, 500)]);
        assert_eq!(summary_line(&c, &c, Duration::from_secs(10)), None);
        assert_eq!(summary_line(&Counters::default(), &c, Duration::ZERO), None);
        let line = summary_line(&Counters::default(), &c, Duration::from_secs(1)).expect("5");
        assert!(
            line.starts_with("5 pps forwarded (4 kbit/s), 0 pps"),
            "{line}"
        );
        assert!(!line.contains("top:"), "{line}");
    }

    #[test]
    fn rate_limited_and_only_when_moving() {
        let t0 = Instant::now();
        let mut s = TrafficSummary::new();
        let a = counters(&[(KW_STAT_FWD_REDIRECT, 100, 10_000)]);
        let b = counters(&[(KW_STAT_FWD_REDIRECT, 200, 20_000)]);
        assert_eq!(s.observe(a.clone(), t0), None, "baseline");
        assert_eq!(s.observe(b.clone(), t0 + Duration::from_secs(3)), None);
        let line = s
            .observe(b.clone(), t0 + TRAFFIC_PERIOD)
            .expect("10 s and 100 packets");
        assert!(line.starts_with("10 pps forwarded"), "{line}");
        // Nothing moved since: no line, however long.
        assert_eq!(s.observe(b.clone(), t0 + 3 * TRAFFIC_PERIOD), None);
        let c = counters(&[
            (KW_STAT_DROP_NO_PORT, 50, 5000),
            (KW_STAT_FWD_REDIRECT, 200, 20_000),
        ]);
        let line = s.observe(c, t0 + 4 * TRAFFIC_PERIOD).expect("drops moved");
        assert!(
            line.ends_with("5 drops/s (top: drop_no_port 5/s)"),
            "{line}"
        );
    }
}
