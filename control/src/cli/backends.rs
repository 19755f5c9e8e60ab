//! `kowabunga services` and `kowabunga backends`: Konvey's rotations and
//! each backend's health and flows.

use super::table::{human_secs, render};
use crate::api::wire::Backends;

/// The table of services and their programmed rotations.
pub fn format_services(b: &Backends) -> String {
    let rows: Vec<Vec<String>> = b
        .services
        .iter()
        .map(|s| {
            let up = b
                .backends
                .iter()
                .filter(|x| x.service.as_deref() == Some(s.service.as_str()))
                .count();
            vec![
                s.endpoint.clone(),
                s.service.clone(),
                format!("{}/{up}", s.rotation.len()),
                if s.rotation.is_empty() {
                    "(empty: new flows dropped)".into()
                } else {
                    s.rotation.join(" ")
                },
            ]
        })
        .collect();
    render(&["ENDPOINT", "SERVICE", "IN ROTATION", "ROTATION"], &rows)
}

/// The table of backends: health, last probe, flows.
pub fn format_backends(b: &Backends) -> String {
    let rows: Vec<Vec<String>> = b
        .backends
        .iter()
        .map(|x| {
            let probe = match &x.last_probe {
                None => "-".to_owned(),
                Some(p) if p.ok => format!(
                    "ok {:.1} ms, {} ago",
                    p.latency_us as f64 / 1000.0,
                    human_secs(p.age_ms / 1000)
                ),
                Some(p) => format!(
                    "failed ({}) {:.1} ms, {} ago",
                    p.error.as_deref().unwrap_or("?"),
                    p.latency_us as f64 / 1000.0,
                    human_secs(p.age_ms / 1000)
                ),
            };
            let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
            vec![
                x.endpoint.clone().unwrap_or_else(|| "-".into()),
                x.service.clone().unwrap_or_else(|| "-".into()),
                x.backend.clone(),
                x.state.clone(),
                x.since_ms
                    .map_or_else(|| "-".into(), |ms| human_secs(ms / 1000)),
                probe,
                opt(x.active_flows),
                opt(x.total_flows),
            ]
        })
        .collect();
    render(
        &[
            "ENDPOINT",
            "SERVICE",
            "BACKEND",
            "STATE",
            "SINCE",
            "LAST PROBE",
            "ACTIVE",
            "TOTAL",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{BackendInfo, Probe, ServiceInfo};

    fn sample() -> Backends {
        let backend = |addr: &str, state: &str, probe: Option<Probe>| BackendInfo {
            endpoint: Some("web".into()),
            service: Some("10.0.0.100:80/tcp".into()),
            backend: addr.into(),
            state: state.into(),
            since_ms: Some(65_000),
            last_probe: probe,
            active_flows: Some(3),
            total_flows: Some(40),
        };
        Backends {
            services: vec![ServiceInfo {
                endpoint: "web".into(),
                service: "10.0.0.100:80/tcp".into(),
                rotation: vec!["10.0.0.11:8080".into()],
            }],
            backends: vec![
                backend(
                    "10.0.0.11:8080",
                    "up",
                    Some(Probe {
                        ok: true,
                        error: None,
                        latency_us: 1500,
                        age_ms: 400,
                    }),
                ),
                backend(
                    "10.0.0.12:8080",
                    "down",
                    Some(Probe {
                        ok: false,
                        error: Some("connection refused".into()),
                        latency_us: 200,
                        age_ms: 2000,
                    }),
                ),
                BackendInfo {
                    endpoint: None,
                    service: None,
                    backend: "10.0.0.13:8080".into(),
                    state: "draining".into(),
                    since_ms: None,
                    last_probe: None,
                    active_flows: Some(7),
                    total_flows: None,
                },
            ],
        }
    }

    #[test]
    fn services_show_their_rotation() {
        let text = format_services(&sample());
        assert_eq!(
            text.lines().nth(1),
            Some("web       10.0.0.100:80/tcp  1/2          10.0.0.11:8080")
        );
    }

    #[test]
    fn backends_show_health_probe_and_flows() {
        let text = format_backends(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].contains("10.0.0.11:8080  up        1m05s  ok 1.5 ms, 0s ago"),
            "{text}"
        );
        assert!(
            lines[2].contains("down      1m05s  failed (connection refused) 0.2 ms, 2s ago"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("-         -                  10.0.0.13:8080  draining  -"),
            "{text}"
        );
        assert!(lines[3].trim_end().ends_with("7       -"), "{text}");
    }
}
