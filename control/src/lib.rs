//! The Kowabunga node daemon: configuration, reconciliation, supervision.
//!
//! * [`config`]: the YAML file, its validation and its compilation into the
//!   dataplane's map contents (pure, no kernel access).
//! * [`engine`]: the [`engine::Dataplane`] trait the daemon drives, and its
//!   implementation over `kowabunga_dataplane::Kawaii`.
//! * [`konvey`]: Konvey's health checks and rotation reconciliation.
//! * [`sysctl`]: kernel settings a gateway needs.
//! * [`vrrp`]: VIP failover, a VRRPv3 engine interoperable with keepalived.
//! * [`daemon`]: `kowabungad`'s command line, startup and main loop.

pub mod config;
pub mod daemon;
pub mod engine;
pub mod konvey;
pub mod sysctl;
pub mod vrrp;
