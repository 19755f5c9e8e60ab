//! `kowabunga ipsec` and `kowabunga dns`: the IPsec tunnels and Kiwi's
//! counters.

use super::table::{human_secs, render};
use crate::api::wire::Tunnel;

/// The table of tunnels.
pub fn format_tunnels(tunnels: &[Tunnel]) -> String {
    let rows: Vec<Vec<String>> = tunnels
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.remote_subnet.clone(),
                t.state.clone(),
                human_secs(t.since_s),
                t.last_failure.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    render(
        &["TUNNEL", "REMOTE SUBNET", "STATE", "SINCE", "LAST FAILURE"],
        &rows,
    )
}

/// Kiwi's status lines.
pub fn format_dns(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnels_and_dns() {
        let text = format_tunnels(&[Tunnel {
            name: "to-dc2".into(),
            remote_subnet: "10.2.0.0/16".into(),
            state: "down".into(),
            since_s: 61,
            last_failure: Some("peer unreachable".into()),
        }]);
        assert_eq!(
            text,
            "TUNNEL  REMOTE SUBNET  STATE  SINCE  LAST FAILURE\nto-dc2  10.2.0.0/16    down   1m01s  peer unreachable\n"
        );
        assert_eq!(format_dns(&["kiwi: 3 queries".into()]), "kiwi: 3 queries\n");
    }
}
