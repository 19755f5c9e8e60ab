//! The Kowabunga node daemon, `kowabungad`: configuration, roles,
//! supervision.
//!
//! One folder per role, each with the same few files (`config`, `compile` or
//! `reconcile`, `engine`, `role`):
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the YAML file: schema, the `node` section, shared validators |
//! | [`role`] | the [`role::Role`] trait every role implements, and what XDP roles share |
//! | [`kawaii`] | Kawaii, the project's Internet gateway (XDP NAT and firewall) |
//! | [`konvey`] | Konvey, the L4 load balancer (XDP, health checks, rotations) |
//! | [`vrrp`] | VIP failover, a VRRPv3 engine interoperable with keepalived |
//! | [`kiwi`] | Kiwi, the region's DNS server (authoritative zones, forwarding; hickory) |
//! | [`ipsec`] | IPsec peering: connections and strongSwan proposals |
//! | [`api`] | the operator socket: versioned JSON lines between `kowabunga` and the daemon |
//! | [`cli`] | `kowabunga`, the operator's command line |
//! | [`metrics`] | the Prometheus endpoint (`node.metrics.listen`) |
//! | [`daemon`] | `kowabungad`'s command line, start-up, registry of roles, supervisor loop, node discovery |

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod ipsec;
pub mod kawaii;
pub mod kiwi;
pub mod konvey;
pub mod metrics;
pub mod role;
pub mod vrrp;
