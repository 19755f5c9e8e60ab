//! `kowabunga flows`: conntrack flows read from the pinned tables, one row
//! per flow (its original-direction entry), filtered while the tables are
//! read batch by batch and stopped at `--limit`: a million entries are
//! never loaded at once.

use std::net::Ipv4Addr;
use std::ops::ControlFlow;

use kowabunga_bindings::{kw_ct_key, kw_ct_state, kw_ct_value, KW_CT_F_REPLY};
use kowabunga_dataplane::conntrack::{peer_key, timeout, CtTable};
use serde::Serialize;

use super::table::{human_secs, render};
use super::CliError;
use crate::role::drops::proto_name;

/// What `--proto --src --dst --port --vip --backend` select; every set
/// field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// IP protocol number.
    pub proto: Option<u8>,
    /// The client (original source address).
    pub src: Option<Ipv4Addr>,
    /// The original destination address.
    pub dst: Option<Ipv4Addr>,
    /// A port on either side, before or after translation.
    pub port: Option<u16>,
    /// The VIP or public address the flow was addressed to, or the address
    /// it was translated to (SNAT).
    pub vip: Option<Ipv4Addr>,
    /// The translated destination (Konvey backend, DNAT target), with an
    /// optional port.
    pub backend: Option<(Ipv4Addr, Option<u16>)>,
}

/// Parses a protocol name or number (`tcp`, `udp`, `icmp`, `47`).
///
/// # Errors
/// [`CliError::Usage`].
pub fn parse_proto(s: &str) -> Result<u8, CliError> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "esp" => Ok(50),
        n => n.parse().map_err(|_| {
            CliError::Usage(format!("--proto: {s:?} is not tcp, udp, icmp or a number"))
        }),
    }
}

/// Parses `ADDR` or `ADDR:PORT`.
///
/// # Errors
/// [`CliError::Usage`] naming `flag`.
pub fn parse_endpoint(flag: &str, s: &str) -> Result<(Ipv4Addr, Option<u16>), CliError> {
    let bad = || CliError::Usage(format!("{flag}: {s:?} is not ADDR or ADDR:PORT"));
    match s.split_once(':') {
        Some((a, p)) => Ok((
            a.parse().map_err(|_| bad())?,
            Some(p.parse().map_err(|_| bad())?),
        )),
        None => Ok((s.parse().map_err(|_| bad())?, None)),
    }
}

fn ip(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(be))
}

fn port(be: u16) -> u16 {
    u16::from_be(be)
}

impl Filter {
    /// Whether the flow whose original entry is `(key, value)` matches.
    pub fn matches(&self, key: &kw_ct_key, value: &kw_ct_value) -> bool {
        if self.proto.is_some_and(|p| p != key.proto) {
            return false;
        }
        if self.src.is_some_and(|a| a != ip(key.saddr)) {
            return false;
        }
        if self.dst.is_some_and(|a| a != ip(key.daddr)) {
            return false;
        }
        if let Some(p) = self.port {
            let ports = [key.sport, key.dport, value.nat_sport, value.nat_dport];
            if !ports.iter().any(|&x| port(x) == p) {
                return false;
            }
        }
        if let Some(v) = self.vip {
            if v != ip(key.daddr) && v != ip(value.nat_saddr) {
                return false;
            }
        }
        if let Some((a, p)) = self.backend {
            if a != ip(value.nat_daddr) || p.is_some_and(|p| p != port(value.nat_dport)) {
                return false;
            }
        }
        true
    }
}

/// One flow, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// `kawaii` or `konvey`.
    pub role: String,
    /// `confirmed` or `embryonic`.
    pub table: String,
    /// `tcp`, `udp`, `icmp`, or the number.
    pub proto: String,
    /// Original tuple, `src -> dst`.
    pub original: String,
    /// Translated tuple, `src -> dst`.
    pub translated: String,
    /// `new`, `established`, `closing`.
    pub state: String,
    /// Seconds since the last packet (either direction).
    pub age_s: u64,
    /// Seconds left before the sweeper removes it.
    pub remaining_s: u64,
    /// Packets of both directions.
    pub packets: u64,
    /// Bytes of both directions.
    pub bytes: u64,
}

fn endpoint(addr: u32, p: u16, proto: u8) -> String {
    if matches!(proto, 6 | 17) {
        format!("{}:{}", ip(addr), port(p))
    } else {
        ip(addr).to_string()
    }
}

fn state_name(state: u8) -> &'static str {
    match u32::from(state) {
        kw_ct_state::KW_CT_NEW => "new",
        kw_ct_state::KW_CT_ESTABLISHED => "established",
        kw_ct_state::KW_CT_CLOSING => "closing",
        _ => "unknown",
    }
}

/// The row of the flow whose original entry is `(key, value)`; `reply` is
/// its other entry when found. Age and state follow both entries (the
/// freshest packet, the most advanced state), as the sweeper does.
pub fn flow(
    role: &str,
    table: &str,
    key: &kw_ct_key,
    value: &kw_ct_value,
    reply: Option<&kw_ct_value>,
    now_ns: u64,
) -> Flow {
    let last = reply.map_or(value.last_seen_ns, |r| {
        r.last_seen_ns.max(value.last_seen_ns)
    });
    let state = reply.map_or(value.state, |r| r.state.max(value.state));
    let age_ns = now_ns.saturating_sub(last);
    let limit = timeout(key.proto, state);
    Flow {
        role: role.to_owned(),
        table: table.to_owned(),
        proto: proto_name(key.proto),
        original: format!(
            "{} -> {}",
            endpoint(key.saddr, key.sport, key.proto),
            endpoint(key.daddr, key.dport, key.proto)
        ),
        translated: format!(
            "{} -> {}",
            endpoint(value.nat_saddr, value.nat_sport, key.proto),
            endpoint(value.nat_daddr, value.nat_dport, key.proto)
        ),
        state: state_name(state).to_owned(),
        age_s: age_ns / 1_000_000_000,
        remaining_s: limit.as_secs().saturating_sub(age_ns / 1_000_000_000),
        packets: value.packets + reply.map_or(0, |r| r.packets),
        bytes: value.bytes + reply.map_or(0, |r| r.bytes),
    }
}

/// What a listing found.
#[derive(Debug, Default, Serialize)]
pub struct Listing {
    /// The flows shown (at most the limit).
    pub flows: Vec<Flow>,
    /// Whether more matching flows exist beyond the limit.
    pub truncated: bool,
    /// Entries read to find them.
    pub scanned: u64,
}

/// Lists the matching flows of `tables` (`(role, [confirmed, embryonic])`),
/// at most `limit`; reading stops at the first batch that fills it.
///
/// # Errors
/// A table could not be read.
pub fn list(
    tables: &[(&str, Vec<CtTable>)],
    filter: &Filter,
    limit: usize,
    now_ns: u64,
) -> Result<Listing, CliError> {
    let mut out = Listing::default();
    for (role, pair) in tables {
        for table in pair {
            let label = if table.name().ends_with("_new") {
                "embryonic"
            } else {
                "confirmed"
            };
            table
                .for_each_batch(|batch| {
                    out.scanned += batch.len() as u64;
                    for (key, value) in batch {
                        if u32::from(value.flags) & KW_CT_F_REPLY != 0
                            || !filter.matches(key, value)
                        {
                            continue;
                        }
                        if out.flows.len() == limit {
                            out.truncated = true;
                            return ControlFlow::Break(());
                        }
                        let peer = peer_key(key, value);
                        let reply = pair.iter().find_map(|t| t.get(&peer).ok().flatten());
                        out.flows
                            .push(flow(role, label, key, value, reply.as_ref(), now_ns));
                    }
                    ControlFlow::Continue(())
                })
                .map_err(|e| CliError::Pins(e.to_string()))?;
            if out.truncated {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// The table of `listing`.
pub fn format(listing: &Listing) -> String {
    let rows: Vec<Vec<String>> = listing
        .flows
        .iter()
        .map(|f| {
            vec![
                f.role.clone(),
                f.proto.clone(),
                f.original.clone(),
                f.translated.clone(),
                f.state.clone(),
                human_secs(f.age_s),
                human_secs(f.remaining_s),
                f.packets.to_string(),
                f.bytes.to_string(),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "ROLE",
            "PROTO",
            "ORIGINAL",
            "TRANSLATED",
            "STATE",
            "AGE",
            "EXPIRES",
            "PACKETS",
            "BYTES",
        ],
        &rows,
    );
    if listing.truncated {
        out.push_str(&format!(
            "(first {} matching flows shown; raise --limit or add filters for more)\n",
            listing.flows.len()
        ));
    } else {
        out.push_str(&format!("{} flows\n", listing.flows.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(a: [u8; 4]) -> u32 {
        u32::from_be_bytes(a).to_be()
    }

    /// client 198.51.100.7:40000 -> VIP 10.0.0.100:80, full-NATed to
    /// 10.0.0.5:1025 -> backend 10.0.0.11:8080.
    fn konvey_flow() -> (kw_ct_key, kw_ct_value) {
        (
            kw_ct_key {
                saddr: be([198, 51, 100, 7]),
                daddr: be([10, 0, 0, 100]),
                sport: 40000u16.to_be(),
                dport: 80u16.to_be(),
                proto: 6,
                _pad: [0; 3],
            },
            kw_ct_value {
                nat_saddr: be([10, 0, 0, 5]),
                nat_daddr: be([10, 0, 0, 11]),
                nat_sport: 1025u16.to_be(),
                nat_dport: 8080u16.to_be(),
                state: kw_ct_state::KW_CT_ESTABLISHED as u8,
                last_seen_ns: 100_000_000_000,
                packets: 10,
                bytes: 1000,
                ..Default::default()
            },
        )
    }

    #[test]
    fn filters_select_on_every_field() -> Result<(), CliError> {
        let (k, v) = konvey_flow();
        let all = Filter::default();
        assert!(all.matches(&k, &v));
        let cases: Vec<(Filter, bool)> = vec![
            (
                Filter {
                    proto: Some(parse_proto("tcp")?),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    proto: Some(parse_proto("UDP")?),
                    ..all.clone()
                },
                false,
            ),
            (
                Filter {
                    src: Some(
                        "198.51.100.7"
                            .parse()
                            .map_err(|_| CliError::Usage(String::new()))?,
                    ),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    src: Some(Ipv4Addr::new(198, 51, 100, 8)),
                    ..all.clone()
                },
                false,
            ),
            (
                Filter {
                    dst: Some(Ipv4Addr::new(10, 0, 0, 100)),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    port: Some(80),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    port: Some(8080),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    port: Some(1025),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    port: Some(443),
                    ..all.clone()
                },
                false,
            ),
            (
                Filter {
                    vip: Some(Ipv4Addr::new(10, 0, 0, 100)),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    vip: Some(Ipv4Addr::new(10, 0, 0, 101)),
                    ..all.clone()
                },
                false,
            ),
            (
                Filter {
                    backend: Some(parse_endpoint("--backend", "10.0.0.11")?),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    backend: Some(parse_endpoint("--backend", "10.0.0.11:8080")?),
                    ..all.clone()
                },
                true,
            ),
            (
                Filter {
                    backend: Some(parse_endpoint("--backend", "10.0.0.11:80")?),
                    ..all.clone()
                },
                false,
            ),
            (
                Filter {
                    backend: Some(parse_endpoint("--backend", "10.0.0.12")?),
                    ..all.clone()
                },
                false,
            ),
        ];
        for (i, (f, want)) in cases.iter().enumerate() {
            assert_eq!(f.matches(&k, &v), *want, "case {i}: {f:?}");
        }
        assert!(parse_proto("gre").is_err());
        assert_eq!(parse_proto("47")?, 47);
        assert!(parse_endpoint("--backend", "10.0.0.1:x").is_err());
        assert!(parse_endpoint("--backend", "host").is_err());
        Ok(())
    }

    #[test]
    fn a_flow_row_follows_both_entries() {
        let (k, v) = konvey_flow();
        let now = 130_000_000_000; // 30 s after the original entry's last packet
        let alone = flow("konvey", "confirmed", &k, &v, None, now);
        assert_eq!(alone.original, "198.51.100.7:40000 -> 10.0.0.100:80");
        assert_eq!(alone.translated, "10.0.0.5:1025 -> 10.0.0.11:8080");
        assert_eq!((alone.age_s, alone.remaining_s), (30, 7440 - 30));
        assert_eq!(alone.state, "established");
        let reply = kw_ct_value {
            last_seen_ns: 125_000_000_000,
            state: kw_ct_state::KW_CT_CLOSING as u8,
            packets: 5,
            bytes: 500,
            ..v
        };
        let both = flow("konvey", "confirmed", &k, &v, Some(&reply), now);
        assert_eq!((both.age_s, both.remaining_s), (5, 240 - 5));
        assert_eq!(both.state, "closing");
        assert_eq!((both.packets, both.bytes), (15, 1500));
        let mut icmp = k;
        icmp.proto = 1;
        let row = flow("kawaii", "embryonic", &icmp, &v, None, now);
        assert_eq!(row.original, "198.51.100.7 -> 10.0.0.100");
        assert_eq!(row.proto, "icmp");
    }

    #[test]
    fn the_table_says_when_it_was_cut() {
        let (k, v) = konvey_flow();
        let f = flow("konvey", "confirmed", &k, &v, None, 130_000_000_000);
        let mut listing = Listing {
            flows: vec![f],
            truncated: true,
            scanned: 8192,
        };
        let text = format(&listing);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ROLE    PROTO  ORIGINAL"), "{text}");
        assert!(lines[1].contains("198.51.100.7:40000 -> 10.0.0.100:80  10.0.0.5:1025 -> 10.0.0.11:8080  established  30s  2h03m"), "{text}");
        assert!(
            lines[2].starts_with("(first 1 matching flows shown"),
            "{text}"
        );
        listing.truncated = false;
        assert!(format(&listing).ends_with("1 flows\n"));
    }
}
