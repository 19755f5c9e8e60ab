//! Konvey's node-wide dataplane settings, found on the node: the full-NAT
//! source address and the port range, checked against the ports the node's
//! own connections use.

use kowabunga_dataplane::konvey::KonveyConfig;
use tracing::warn;

use crate::config::ValidConfig;
use crate::daemon::node::{parse_port_range_sysctl, NodeEnv, IP_LOCAL_PORT_RANGE};
use crate::kawaii::compile::SAMPLE_SHIFT;

/// Konvey's node-wide dataplane settings for `config`: the source addresses
/// (`node.konvey.source_ip` or `source_ips`, else the first IPv4 address of the first
/// Konvey interface that is not the VIP, which VRRP moves between nodes)
/// and the port range, checked against
/// `net.ipv4.ip_local_port_range`. `None` without a `konvey` section.
///
/// # Errors
/// One line naming the field and the value.
pub fn konvey_config(config: &ValidConfig, env: &NodeEnv) -> Result<Option<KonveyConfig>, String> {
    if config.konvey.is_none() {
        return Ok(None);
    }
    let node = &config.node.konvey;
    let sources = if node.source_ips.is_empty() {
        vec![{
            let ifname = config
                .node
                .interfaces
                .konvey
                .first()
                .map_or("", String::as_str);
            let vip = config.konvey.as_ref().map(|k| k.vip);
            (env.interface_ipv4)(ifname)
                .into_iter()
                .find(|a| Some(*a) != vip)
                .ok_or_else(|| {
                    format!(
                        "node.konvey.source_ip: not set, and interface {ifname:?} (node.interfaces.konvey[0]) has no IPv4 address besides the VIP"
                    )
                })?
        }]
    } else {
        // Backends answer to these addresses: one no Konvey interface
        // carries gets its replies only if the network routes them here.
        let local: Vec<_> = config
            .node
            .interfaces
            .konvey
            .iter()
            .flat_map(|ifname| (env.interface_ipv4)(ifname))
            .collect();
        for ip in &node.source_ips {
            if !local.contains(ip) {
                warn!(
                    "node.konvey.source_ips: {ip} is on none of node.interfaces.konvey; backends' replies to it must be routed to this node"
                );
            }
        }
        node.source_ips.clone()
    };
    let (min, max) = node.nat_ports;
    let path = env.proc_sys.join(IP_LOCAL_PORT_RANGE);
    match std::fs::read_to_string(&path)
        .ok()
        .as_deref()
        .and_then(parse_port_range_sysctl)
    {
        Some((lo, hi)) if min <= hi && lo <= max => {
            return Err(format!(
                "node.konvey.nat_port_range: \"{min}-{max}\" overlaps net.ipv4.ip_local_port_range ({lo}-{hi}), which the node's own connections (health checks) use; choose a range outside it"
            ));
        }
        Some(_) => {}
        None => warn!(
            "cannot read {}: not checking node.konvey.nat_port_range against it",
            path.display()
        ),
    }
    Ok(Some(KonveyConfig {
        sources,
        port_min: min,
        port_max: max,
        sample_shift: SAMPLE_SHIFT,
    }))
}
