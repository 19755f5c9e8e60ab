//! The one-line wording of a sampled drop event, shared by every XDP role.

use std::net::Ipv4Addr;

use kowabunga_dataplane::DropEvent;
use tracing::debug;

/// Name of an IP protocol number.
pub fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        50 => "esp".into(),
        n => n.to_string(),
    }
}

fn endpoint(addr: Ipv4Addr, port: u16, proto: u8) -> String {
    if matches!(proto, 6 | 17) {
        format!("{addr}:{port}")
    } else {
        addr.to_string()
    }
}

/// The one-line description of a drop event.
///
/// ```
/// use std::net::Ipv4Addr;
/// use kowabunga_control::role::drops::describe_drop;
/// use kowabunga_dataplane::DropEvent;
///
/// let event = DropEvent {
///     ts_ns: 1,
///     ifindex: 3,
///     reason: 0,
///     reason_name: "drop_ingress_denied",
///     proto: 6,
///     saddr: Ipv4Addr::new(198, 51, 100, 1),
///     daddr: Ipv4Addr::new(203, 0, 113, 10),
///     sport: 40000,
///     dport: 23,
/// };
/// assert_eq!(
///     describe_drop(&event),
///     "drop_ingress_denied tcp 198.51.100.1:40000 -> 203.0.113.10:23 ifindex 3"
/// );
/// ```
pub fn describe_drop(event: &DropEvent) -> String {
    format!(
        "{} {} {} -> {} ifindex {}",
        event.reason_name,
        proto_name(event.proto),
        endpoint(event.saddr, event.sport, event.proto),
        endpoint(event.daddr, event.dport, event.proto),
        event.ifindex
    )
}

/// Logs a drop event at `debug`.
pub fn log_drop(event: &DropEvent) {
    debug!(
        reason = event.reason_name,
        "packet dropped: {}",
        describe_drop(event)
    );
}
