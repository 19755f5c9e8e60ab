//! What the sink must have seen for a measurement to score.
//!
//! The sink records one delivered packet in 64 by (source, destination)
//! address. A mode scores only when at least [`MIN_SAMPLES`] were recorded
//! and [`MIN_MATCHING`] of them carry the source and destination the mode
//! must produce: the translated source (the VIP, the full-NAT source, the
//! masquerade address) or, for the modes that do not translate, the client's
//! own; the destination sent, or for a load balancer one of the backends,
//! each of which must get its share within [`SPREAD_TOLERANCE`]. A mode that
//! forwards without translating, or sends everything to one backend, scores
//! zero however fast it is.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

/// Fewest recorded packets a verdict is based on.
pub const MIN_SAMPLES: u64 = 32;
/// Share of recorded packets that must be as expected.
pub const MIN_MATCHING: f64 = 0.99;
/// A backend's share may differ from 1/n by this fraction of 1/n.
pub const SPREAD_TOLERANCE: f64 = 0.2;

/// The source address delivered packets must carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Translated to exactly this address.
    Translated(Ipv4Addr),
    /// Untranslated: the generator's own sources, inside this prefix.
    Kept(Ipv4Net),
}

/// The destination delivered packets must carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// As sent, inside this prefix.
    Kept(Ipv4Net),
    /// Spread over these backends, evenly.
    Backends(Vec<Ipv4Addr>),
}

/// What one mode must deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expect {
    /// Source rule.
    pub source: Source,
    /// Destination rule.
    pub destination: Destination,
}

impl Expect {
    fn source_ok(&self, a: Ipv4Addr) -> bool {
        match &self.source {
            Source::Translated(s) => a == *s,
            Source::Kept(net) => net.contains(&a),
        }
    }

    fn destination_ok(&self, a: Ipv4Addr) -> bool {
        match &self.destination {
            Destination::Kept(net) => net.contains(&a),
            Destination::Backends(b) => b.contains(&a),
        }
    }
}

/// Packets the sink recorded with one (source, destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
    /// Recorded packets.
    pub packets: u64,
}

/// The verdict on one measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// True when the measurement scores.
    pub ok: bool,
    /// Packets recorded (about 1 in 64 delivered).
    pub sampled: u64,
    /// Share of recorded packets with the expected source and destination.
    pub matching: f64,
    /// Share of recorded packets per backend (load balancer modes).
    pub backends: BTreeMap<String, f64>,
    /// The most frequent source address seen.
    pub top_source: Option<Ipv4Addr>,
    /// Why it does not score.
    pub reason: Option<String>,
}

/// Judges what the sink recorded against what the mode must deliver.
pub fn check(expect: &Expect, seen: &[Seen]) -> Verdict {
    let sampled: u64 = seen.iter().map(|s| s.packets).sum();
    let matching_packets: u64 = seen
        .iter()
        .filter(|s| expect.source_ok(s.source) && expect.destination_ok(s.destination))
        .map(|s| s.packets)
        .sum();
    let mut by_source: BTreeMap<Ipv4Addr, u64> = BTreeMap::new();
    for s in seen {
        *by_source.entry(s.source).or_default() += s.packets;
    }
    let top_source = by_source.iter().max_by_key(|(_, n)| **n).map(|(a, _)| *a);
    let matching = if sampled == 0 {
        0.0
    } else {
        matching_packets as f64 / sampled as f64
    };
    let mut backends = BTreeMap::new();
    let mut reason = None;
    if let Destination::Backends(list) = &expect.destination {
        let fair = 1.0 / list.len().max(1) as f64;
        for b in list {
            let n: u64 = seen
                .iter()
                .filter(|s| s.destination == *b && expect.source_ok(s.source))
                .map(|s| s.packets)
                .sum();
            let share = if sampled == 0 {
                0.0
            } else {
                n as f64 / sampled as f64
            };
            if reason.is_none() && (share - fair).abs() > SPREAD_TOLERANCE * fair {
                reason = Some(format!(
                    "backend {b} got {:.1}% of the packets, not {:.1}% +/- {:.0}%",
                    100.0 * share,
                    100.0 * fair,
                    100.0 * SPREAD_TOLERANCE
                ));
            }
            backends.insert(b.to_string(), share);
        }
    }
    if sampled < MIN_SAMPLES {
        reason = Some(format!(
            "only {sampled} packets recorded at the sink (< {MIN_SAMPLES})"
        ));
    } else if matching < MIN_MATCHING {
        let what = match (&expect.source, top_source) {
            (Source::Translated(want), Some(got)) if got != *want => {
                format!("; most came from {got}, not {want}")
            }
            _ => String::new(),
        };
        reason = Some(format!(
            "{:.1}% of the packets as expected (< {:.0}%){what}",
            100.0 * matching,
            100.0 * MIN_MATCHING
        ));
    }
    Verdict {
        ok: reason.is_none(),
        sampled,
        matching,
        backends,
        top_source,
        reason,
    }
}

/// What a measurement scores: its rate when the verdict is ok, else zero.
pub fn score(kpps: f64, verdict: Option<&Verdict>) -> f64 {
    match verdict {
        Some(v) if v.ok => kpps,
        Some(_) => 0.0,
        // Not a forwarding mode (generator calibration): nothing to check.
        None => kpps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().expect("address")
    }

    fn snat() -> Expect {
        Expect {
            source: Source::Translated(a("10.210.2.100")),
            destination: Destination::Kept("10.211.0.0/16".parse().expect("net")),
        }
    }

    fn balancer() -> Expect {
        Expect {
            source: Source::Translated(a("10.210.2.1")),
            destination: Destination::Backends(vec![
                a("10.210.3.1"),
                a("10.210.3.2"),
                a("10.210.3.3"),
            ]),
        }
    }

    fn seen(source: &str, destination: &str, packets: u64) -> Seen {
        Seen {
            source: a(source),
            destination: a(destination),
            packets,
        }
    }

    #[test]
    fn a_translating_mode_scores_its_rate() {
        let v = check(
            &snat(),
            &[
                seen("10.210.2.100", "10.211.0.1", 500),
                seen("10.210.2.100", "10.211.3.9", 500),
            ],
        );
        assert!(v.ok, "{v:?}");
        assert_eq!(v.sampled, 1000);
        assert_eq!(score(2000.0, Some(&v)), 2000.0);
    }

    #[test]
    fn a_mode_that_does_not_translate_cannot_score() {
        // Fast, but the sink sees the client's own source: forwarding, not NAT.
        let v = check(&snat(), &[seen("10.210.1.2", "10.211.0.1", 100_000)]);
        assert!(!v.ok);
        assert_eq!(v.matching, 0.0);
        assert_eq!(v.top_source, Some(a("10.210.1.2")));
        let why = v.reason.clone().expect("a reason");
        assert!(why.contains("most came from 10.210.1.2"), "{why}");
        assert_eq!(score(3000.0, Some(&v)), 0.0);
        // Translated to the wrong address is no better.
        let v = check(&snat(), &[seen("10.210.2.1", "10.211.0.1", 1000)]);
        assert_eq!(score(3000.0, Some(&v)), 0.0);
    }

    #[test]
    fn a_few_untranslated_packets_are_tolerated_but_not_two_percent() {
        let ok = check(
            &snat(),
            &[
                seen("10.210.2.100", "10.211.0.1", 995),
                seen("10.210.1.2", "10.211.0.1", 5),
            ],
        );
        assert!(ok.ok, "{ok:?}");
        let bad = check(
            &snat(),
            &[
                seen("10.210.2.100", "10.211.0.1", 980),
                seen("10.210.1.2", "10.211.0.1", 20),
            ],
        );
        assert!(!bad.ok);
    }

    #[test]
    fn a_balancer_must_spread_over_every_backend() {
        let even = check(
            &balancer(),
            &[
                seen("10.210.2.1", "10.210.3.1", 340),
                seen("10.210.2.1", "10.210.3.2", 330),
                seen("10.210.2.1", "10.210.3.3", 330),
            ],
        );
        assert!(even.ok, "{even:?}");
        assert_eq!(even.backends.len(), 3);
        let one = check(&balancer(), &[seen("10.210.2.1", "10.210.3.1", 1000)]);
        assert!(!one.ok);
        let why = one.reason.expect("reason");
        assert!(why.contains("10.210.3.1 got 100.0%"), "{why}");
        // Untranslated to the VIP: neither source nor destination as expected.
        let none = check(&balancer(), &[seen("10.212.0.1", "10.210.5.1", 1000)]);
        assert_eq!(score(1500.0, Some(&none)), 0.0);
    }

    #[test]
    fn nothing_at_the_sink_does_not_score() {
        let v = check(&snat(), &[]);
        assert!(!v.ok);
        assert!(v.reason.expect("reason").contains("only 0 packets"));
        let few = check(&snat(), &[seen("10.210.2.100", "10.211.0.1", 5)]);
        assert!(!few.ok);
    }

    #[test]
    fn untranslated_modes_must_keep_the_source() {
        let kept = Expect {
            source: Source::Kept("10.210.1.0/24".parse().expect("net")),
            destination: Destination::Kept("10.211.0.0/16".parse().expect("net")),
        };
        assert!(check(&kept, &[seen("10.210.1.2", "10.211.0.5", 100)]).ok);
        assert!(!check(&kept, &[seen("10.210.2.1", "10.211.0.5", 100)]).ok);
        assert_eq!(score(700.0, None), 700.0);
    }
}
