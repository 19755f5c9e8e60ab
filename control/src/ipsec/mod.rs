//! IPsec peering (`kawaii.ipsec_connections`): kowabungad drives a real
//! charon (strongSwan) over VICI, keeps each tunnel's state, and holds
//! Kawaii's gate to each remote subnet shut while its child SA is not up.
//!
//! | file | job |
//! |---|---|
//! | [`config`] | one connection, validated (guide and API vocabulary, upstream defaults) |
//! | [`proposal`] | DH groups, integrity and encryption algorithms, strongSwan names |
//! | [`node`] | `node.ipsec`: charon's VICI socket, userspace ESP |
//! | [`charon`] | the `load-conn` / `load-shared` messages of a connection (pure) |
//! | [`vici`] | a VICI session: commands with their `success` checked, SA lists, events |
//! | [`tunnel`] | a tunnel's state from `list-sas` (pure) |
//! | [`reason`] | charon's failure lines in a network engineer's words (pure) |
//! | [`firewall`] | the tunnels' own firewalls, as one nftables table |
//! | [`driver`] | the task that keeps charon, the gates and the firewall in step |
//! | [`role`] | the daemon's `ipsec` role |

pub mod charon;
pub mod config;
pub mod driver;
pub mod firewall;
pub mod node;
pub mod proposal;
pub mod reason;
pub mod role;
pub mod tunnel;
pub mod vici;
