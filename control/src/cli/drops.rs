//! `kowabunga drops`: every outcome counter of the pinned maps (drops and
//! passes by reason) with its rate over a short interval, and the last
//! sampled drop events the daemon read.

use std::time::Duration;

use kowabunga_dataplane::Counters;
use serde::Serialize;

use super::table::render;
use crate::api::wire::DropSample;

/// One counter of one role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// `kawaii` or `konvey`.
    pub role: String,
    /// The counter's name (`drop_no_backend`, `pass_to_host`, ...).
    pub reason: String,
    /// Packets since the maps were created.
    pub packets: u64,
    /// Bytes since the maps were created.
    pub bytes: u64,
    /// Packets per second over the interval.
    pub pps: f64,
}

/// Every counter that is not zero, drops first, from two readings
/// `interval` apart.
pub fn reasons(role: &str, before: &Counters, now: &Counters, interval: Duration) -> Vec<Reason> {
    let secs = interval.as_secs_f64().max(1e-3);
    let mut out: Vec<Reason> = now
        .iter()
        .zip(now.since(before).iter())
        .filter(|((_, c), _)| c.packets > 0)
        .map(|((name, c), (_, d))| Reason {
            role: role.to_owned(),
            reason: name.to_owned(),
            packets: c.packets,
            bytes: c.bytes,
            pps: d.packets as f64 / secs,
        })
        .collect();
    out.sort_by_key(|r| !r.reason.starts_with("drop_"));
    out
}

/// The counters table and the sampled events.
pub fn format(reasons: &[Reason], events: Option<&[DropSample]>) -> String {
    let rows: Vec<Vec<String>> = reasons
        .iter()
        .map(|r| {
            vec![
                r.role.clone(),
                r.reason.clone(),
                r.packets.to_string(),
                r.bytes.to_string(),
                format!("{:.1}", r.pps),
            ]
        })
        .collect();
    let mut out = render(&["ROLE", "REASON", "PACKETS", "BYTES", "PPS"], &rows);
    match events {
        None => out.push_str("\n(sampled drop events: the daemon is not running)\n"),
        Some([]) => out.push_str("\nno sampled drop events yet\n"),
        Some(events) => {
            out.push_str(&format!("\nlast {} sampled drop events:\n", events.len()));
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        format!("{:.3}", e.ts_ns as f64 / 1e9),
                        e.role.clone(),
                        e.reason.clone(),
                        e.packet.clone(),
                    ]
                })
                .collect();
            out.push_str(&render(&["MONOTONIC_S", "ROLE", "REASON", "PACKET"], &rows));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kowabunga_bindings::{kw_counter, kw_stat};
    use kowabunga_dataplane::stats::STAT_COUNT;

    fn counters(pairs: &[(kw_stat::Type, u64)]) -> Counters {
        let mut v = [kw_counter::default(); STAT_COUNT];
        for (stat, n) in pairs {
            v[*stat as usize] = kw_counter {
                packets: *n,
                bytes: *n * 100,
            };
        }
        Counters::from_values(v)
    }

    #[test]
    fn reasons_have_rates_and_drops_come_first() {
        let before = counters(&[
            (kw_stat::KW_STAT_FWD_REDIRECT, 1000),
            (kw_stat::KW_STAT_DROP_NO_BACKEND, 10),
        ]);
        let now = counters(&[
            (kw_stat::KW_STAT_FWD_REDIRECT, 3000),
            (kw_stat::KW_STAT_DROP_NO_BACKEND, 11),
        ]);
        let r = reasons("konvey", &before, &now, Duration::from_secs(2));
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].reason.as_str(), r[0].packets, r[0].pps),
            ("drop_no_backend", 11, 0.5)
        );
        assert_eq!(
            (r[1].reason.as_str(), r[1].bytes, r[1].pps),
            ("fwd_redirect", 300_000, 1000.0)
        );
        let text = format(&r, None);
        assert_eq!(
            text.lines().take(3).collect::<Vec<_>>(),
            [
                "ROLE    REASON           PACKETS  BYTES   PPS",
                "konvey  drop_no_backend  11       1100    0.5",
                "konvey  fwd_redirect     3000     300000  1000.0",
            ]
        );
        assert!(text.contains("the daemon is not running"));
        let events = [DropSample {
            role: "konvey".into(),
            ts_ns: 1_500_000_000,
            reason: "drop_no_backend".into(),
            packet: "tcp 1.2.3.4:5 -> 10.0.0.100:80 ifindex 2".into(),
        }];
        let text = format(&r, Some(&events));
        assert!(text.contains("last 1 sampled drop events:\nMONOTONIC_S  ROLE    REASON           PACKET\n1.500        konvey  drop_no_backend  tcp 1.2.3.4:5 -> 10.0.0.100:80 ifindex 2\n"), "{text}");
    }
}
