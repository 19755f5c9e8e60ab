//! IPsec peering (`kawaii.ipsec_connections`). Today: the connections
//! validated and their proposals named as strongSwan names them; the
//! connections open IKE/NAT-T/ESP from their peers in Kawaii's ingress table
//! ([`crate::kawaii::compile`]).
//!
//! | file | job |
//! |---|---|
//! | [`config`] | one connection, validated |
//! | [`proposal`] | DH groups, integrity and encryption algorithms, strongSwan names |

pub mod config;
pub mod proposal;
