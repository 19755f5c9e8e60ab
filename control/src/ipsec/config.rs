//! IPsec connections (`kawaii.ipsec_connections[]`): the validated type and
//! its validation. The connections are part of the Kawaii section (the
//! guide's vocabulary); the IPsec role drives strongSwan with them.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::proposal::{validate_proposal, Proposal};
use crate::config::error::{err, ErrorKind, ValidationError};
use crate::config::fields::{check_disjoint, check_name, check_unique, parse_addr, parse_net};
use crate::config::model::{IpsecConnection, Secret};

/// Ingress rules added per IPsec connection (IKE udp 500, udp 4500, ESP).
pub const IKE_RULES_PER_CONNECTION: usize = 3;

/// A validated IPsec connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipsec {
    /// Connection name, `[A-Za-z0-9_.-]+`.
    pub name: String,
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
}

/// Validates the connection at `path`: its name (unique among `earlier`),
/// its peer (outside the project subnet), its remote subnet (disjoint from
/// `routed`: the project subnet, peerings, earlier remote subnets), its key
/// and proposals.
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
    check_name(&name_path, &conn.name)?;
    check_unique(
        &name_path,
        &conn.name,
        earlier.iter().map(|c| c.name.as_str()),
        |j| format!("kawaii.ipsec_connections[{j}].name"),
    )?;
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
    Ok(Ipsec {
        name: conn.name.clone(),
        remote_ip,
        remote_subnet,
        pre_shared_key: conn.pre_shared_key.clone(),
        phase1,
        phase2,
    })
}

#[cfg(test)]
mod tests;
