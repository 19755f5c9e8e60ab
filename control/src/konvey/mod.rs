//! Konvey, the L4 load balancer, as a role of `kowabungad`: health checks
//! of the backends and the reconciliation of each service's rotation into
//! the dataplane.
//!
//! | file | job |
//! |---|---|
//! | [`config`] | the `konvey` section and `node.konvey`, validated |
//! | [`settings`] | node-wide dataplane settings found on the node (source address, port range) |
//! | [`reconcile`] | [`reconcile::Balancer`]: desired services, one health check per (service, backend), rotations written when they change, draining |
//! | [`health`] | the sans-IO health state machine of one backend (rise/fall, up/down/draining) |
//! | [`probe`] | the tokio probes (TCP connect, UDP payload and reply) |
//! | [`engine`] | [`engine::KonveyEngine`]: the dataplane behind a trait (real and fake) |
//! | [`role`] | [`role::KonveyRole`]: probes as tasks, reload, housekeeping; its registry entry |

pub mod config;
pub mod engine;
pub mod health;
pub mod probe;
pub mod reconcile;
pub mod role;
pub mod settings;
