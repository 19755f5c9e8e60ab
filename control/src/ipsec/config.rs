//! IPsec connections (`kawaii.ipsec_connections[]`): the validated type and
//! its validation. The connections are part of the Kawaii section (the
//! guide's vocabulary); the IPsec role drives strongSwan with them.
//!
//! Defaults are upstream's: `phase1_lifetime` and `phase2_lifetime` 1 h,
//! `rekey_time` 2 h (capped at 90 % of `phase2_lifetime`, strongSwan
//! rekeys before the hard lifetime), `dpd_timeout` 240 s,
//! `dpd_timeout_action` restart, `start_action` start.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::proposal::{validate_proposal, Proposal};
use crate::config::error::{err, ErrorKind, ValidationError};
use crate::config::fields::{
    check_disjoint, check_unique, parse_addr, parse_net, parse_proto_ports, Protocol,
};
use crate::config::model::{DurationSpec, Firewall, IpsecConnection, Policy, Secret};

/// Ingress rules added per IPsec connection (IKE udp 500, udp 4500, ESP).
pub const IKE_RULES_PER_CONNECTION: usize = 3;

/// Longest accepted lifetime or timeout: 30 days.
pub const MAX_DURATION_S: u32 = 30 * 24 * 3600;

/// What charon does with a tunnel whose peer stopped answering
/// (`dpd_timeout_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdAction {
    /// Close the tunnel.
    Clear,
    /// Close it and bring it up again on the next packet (trap).
    Hold,
    /// Bring it up again at once.
    Restart,
}

impl DpdAction {
    /// charon's word for it (`dpd_action`).
    pub fn charon(self) -> &'static str {
        match self {
            DpdAction::Clear => "clear",
            DpdAction::Hold => "trap",
            DpdAction::Restart => "restart",
        }
    }
}

/// When the tunnel is brought up (`start_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Never by this side: the peer initiates.
    None,
    /// On the first packet to the remote subnet.
    Trap,
    /// At once (and again whenever this node becomes the zone's master).
    Start,
}

/// A validated per-tunnel filter rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRule {
    /// Ingress: the source, inside the remote subnet; egress: the
    /// destination, inside the remote subnet.
    pub net: Ipv4Net,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port ranges; empty for icmp.
    pub ports: Vec<(u16, u16)>,
}

/// A tunnel's own firewall (`ipsec_connections[].firewall`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelFirewall {
    /// New flows out of the tunnel that are accepted (the rest is dropped).
    pub ingress: Vec<TunnelRule>,
    /// Default verdict of new flows into the tunnel.
    pub egress_policy: Policy,
    /// Exceptions to `egress_policy`.
    pub egress: Vec<TunnelRule>,
}

/// A validated IPsec connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipsec {
    /// Connection name, as written ("ACME Office").
    pub name: String,
    /// The name charon knows it by: [`charon_name`] of `name`.
    pub charon_name: String,
    /// Free text.
    pub desc: Option<String>,
    /// Remote peer.
    pub remote_ip: Ipv4Addr,
    /// Subnet behind the peer.
    pub remote_subnet: Ipv4Net,
    /// Pre-shared key (redacted in `Debug`).
    pub pre_shared_key: Secret,
    /// IKE SA proposal.
    pub phase1: Proposal,
    /// Child SA proposal (PFS with its DH group).
    pub phase2: Proposal,
    /// IKE SA lifetime, s (rekeyed at this age).
    pub phase1_lifetime_s: u32,
    /// Child SA hard lifetime, s.
    pub phase2_lifetime_s: u32,
    /// Child SA rekey time, s (below `phase2_lifetime_s`).
    pub rekey_time_s: u32,
    /// Dead peer timeout, s.
    pub dpd_timeout_s: u32,
    /// What to do with a dead peer's tunnel.
    pub dpd_action: DpdAction,
    /// When to bring the tunnel up.
    pub start_action: StartAction,
    /// The tunnel's firewall; `None`: not filtered.
    pub firewall: Option<TunnelFirewall>,
}

/// The name charon knows a connection by: `kw-` then the name in lower
/// case with every run of other characters than `a-z0-9_.` turned into one
/// `-` (so "ACME Office" is `kw-acme-office`), at most 60 bytes.
///
/// ```
/// use kowabunga_control::ipsec::config::charon_name;
/// assert_eq!(charon_name("ACME Office"), "kw-acme-office");
/// assert_eq!(charon_name("  a/b\t{c}  "), "kw-a-b-c");
/// ```
pub fn charon_name(name: &str) -> String {
    let mut out = String::from("kw-");
    let mut dash = false;
    for c in name.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            if dash && !out.ends_with('-') {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else {
            dash = true;
        }
    }
    while out.ends_with('-') && out.len() > 3 {
        out.pop();
    }
    out.truncate(60);
    out
}

/// A duration in strongSwan's syntax: seconds, or a number with `s`, `m`,
/// `h` or `d`; 1 s to 30 days.
///
/// # Errors
/// [`ErrorKind::Duration`], [`ErrorKind::OutOfRange`].
pub fn parse_duration(path: &str, spec: &DurationSpec) -> Result<u32, ValidationError> {
    let text = spec.as_str().trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let scale: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return err(path, ErrorKind::Duration(spec.as_str().to_owned())),
    };
    let Ok(n) = digits.parse::<u64>() else {
        return err(path, ErrorKind::Duration(spec.as_str().to_owned()));
    };
    let secs = n.saturating_mul(scale);
    if secs == 0 || secs > u64::from(MAX_DURATION_S) {
        return err(
            path,
            ErrorKind::OutOfRange {
                value: secs,
                min: 1,
                max: u64::from(MAX_DURATION_S),
            },
        );
    }
    Ok(u32::try_from(secs).unwrap_or(MAX_DURATION_S))
}

fn one_of<T: Copy>(
    path: String,
    value: &str,
    allowed: &'static str,
    table: &[(&str, T)],
) -> Result<T, ValidationError> {
    table
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(value.trim()))
        .map(|(_, v)| *v)
        .map_or_else(
            || {
                err(
                    path,
                    ErrorKind::NotOneOf {
                        value: value.to_owned(),
                        allowed,
                    },
                )
            },
            Ok,
        )
}

/// A rule's prefix inside the remote subnet: `0.0.0.0/0` (the default)
/// stands for the whole remote subnet.
fn tunnel_net(path: &str, text: &str, remote: Ipv4Net) -> Result<Ipv4Net, ValidationError> {
    let net = parse_net(path, text, true)?;
    if net.prefix_len() == 0 {
        return Ok(remote);
    }
    if !remote.contains(&net) {
        return err(
            path,
            ErrorKind::OutsideSubnet {
                value: text.to_owned(),
                what: "the connection's remote_subnet",
                subnet: remote,
            },
        );
    }
    Ok(net)
}

fn validate_firewall(
    path: &str,
    fw: &Firewall,
    remote: Ipv4Net,
) -> Result<TunnelFirewall, ValidationError> {
    let mut ingress = Vec::with_capacity(fw.ingress.len());
    for (j, rule) in fw.ingress.iter().enumerate() {
        let p = format!("{path}.ingress[{j}]");
        let net = tunnel_net(&format!("{p}.source"), &rule.source, remote)?;
        let pr = parse_proto_ports(&p, &rule.protocol, rule.ports.as_ref())?;
        ingress.push(TunnelRule {
            net,
            protocol: pr.protocol,
            ports: pr.ports,
        });
    }
    let mut egress = Vec::with_capacity(fw.egress.len());
    for (j, rule) in fw.egress.iter().enumerate() {
        let p = format!("{path}.egress[{j}]");
        let net = tunnel_net(&format!("{p}.destination"), &rule.destination, remote)?;
        let pr = parse_proto_ports(&p, &rule.protocol, rule.ports.as_ref())?;
        egress.push(TunnelRule {
            net,
            protocol: pr.protocol,
            ports: pr.ports,
        });
    }
    Ok(TunnelFirewall {
        ingress,
        egress_policy: fw.egress_policy,
        egress,
    })
}

/// Validates the connection at `path`: its name (its charon name unique
/// among `earlier`), its peer (outside the project subnet, one key per
/// peer), its remote subnet (disjoint from `routed`: the project subnet,
/// peerings, earlier remote subnets), its key, proposals, timers, actions
/// and firewall.
///
/// # Errors
/// The first problem found, with its field path.
pub fn validate_connection(
    path: &str,
    conn: &IpsecConnection,
    earlier: &[Ipsec],
    private_subnet: Ipv4Net,
    routed: &[(String, Ipv4Net)],
) -> Result<Ipsec, ValidationError> {
    let name_path = format!("{path}.name");
    if conn.name.trim().is_empty() {
        return err(name_path, ErrorKind::Empty);
    }
    if conn.name.len() > 128 || conn.name.chars().any(char::is_control) {
        return err(name_path, ErrorKind::BadName(conn.name.clone()));
    }
    check_unique(
        &name_path,
        &conn.name,
        earlier.iter().map(|c| c.name.as_str()),
        |j| format!("kawaii.ipsec_connections[{j}].name"),
    )?;
    let charon = charon_name(&conn.name);
    if charon == "kw-" {
        return err(name_path, ErrorKind::BadName(conn.name.clone()));
    }
    if let Some(j) = earlier.iter().position(|c| c.charon_name == charon) {
        return err(
            name_path,
            ErrorKind::CharonNameClash {
                value: conn.name.clone(),
                charon,
                other: format!("kawaii.ipsec_connections[{j}].name"),
            },
        );
    }
    let ip_path = format!("{path}.remote_ip");
    let remote_ip = parse_addr(&ip_path, &conn.remote_ip)?;
    if remote_ip.is_unspecified() {
        return err(ip_path, ErrorKind::Unspecified(conn.remote_ip.clone()));
    }
    if private_subnet.contains(&remote_ip) {
        return err(
            ip_path,
            ErrorKind::InsidePrivateSubnet {
                value: conn.remote_ip.clone(),
                subnet: private_subnet,
            },
        );
    }
    let subnet_path = format!("{path}.remote_subnet");
    let remote_subnet = parse_net(&subnet_path, &conn.remote_subnet, false)?;
    check_disjoint(&subnet_path, &conn.remote_subnet, remote_subnet, routed)?;
    if conn.pre_shared_key.is_empty() {
        return err(format!("{path}.pre_shared_key"), ErrorKind::Empty);
    }
    if let Some(j) = earlier
        .iter()
        .position(|c| c.remote_ip == remote_ip && c.pre_shared_key != conn.pre_shared_key)
    {
        return err(
            format!("{path}.pre_shared_key"),
            ErrorKind::PeerKeyMismatch {
                other: format!("kawaii.ipsec_connections[{j}]"),
            },
        );
    }
    let phase1 = validate_proposal(
        path,
        1,
        conn.phase1_dh_group_number,
        &conn.phase1_integrity_algorithm,
        &conn.phase1_encryption_algorithm,
    )?;
    let phase2 = validate_proposal(
        path,
        2,
        conn.phase2_dh_group_number,
        &conn.phase2_integrity_algorithm,
        &conn.phase2_encryption_algorithm,
    )?;
    let phase1_lifetime_s =
        parse_duration(&format!("{path}.phase1_lifetime"), &conn.phase1_lifetime)?;
    let phase2_lifetime_s =
        parse_duration(&format!("{path}.phase2_lifetime"), &conn.phase2_lifetime)?;
    let rekey = parse_duration(&format!("{path}.rekey_time"), &conn.rekey_time)?;
    let dpd_timeout_s = parse_duration(&format!("{path}.dpd_timeout"), &conn.dpd_timeout)?;
    let dpd_action = one_of(
        format!("{path}.dpd_timeout_action"),
        &conn.dpd_timeout_action,
        "clear, hold, restart",
        &[
            ("clear", DpdAction::Clear),
            ("hold", DpdAction::Hold),
            ("trap", DpdAction::Hold),
            ("restart", DpdAction::Restart),
        ],
    )?;
    let start_action = one_of(
        format!("{path}.start_action"),
        &conn.start_action,
        "none, trap, start",
        &[
            ("none", StartAction::None),
            ("trap", StartAction::Trap),
            ("start", StartAction::Start),
        ],
    )?;
    let firewall = conn
        .firewall
        .as_ref()
        .map(|fw| validate_firewall(&format!("{path}.firewall"), fw, remote_subnet))
        .transpose()?;
    Ok(Ipsec {
        name: conn.name.clone(),
        charon_name: charon,
        desc: conn.desc.clone(),
        remote_ip,
        remote_subnet,
        pre_shared_key: conn.pre_shared_key.clone(),
        phase1,
        phase2,
        phase1_lifetime_s,
        phase2_lifetime_s,
        rekey_time_s: rekey.min(phase2_lifetime_s / 10 * 9).max(1),
        dpd_timeout_s,
        dpd_action,
        start_action,
        firewall,
    })
}

#[cfg(test)]
mod tests;
