//! Konvey's control plane: health checks of the backends and the
//! reconciliation of each service's rotation into the dataplane.
//!
//! * [`health`]: the sans-IO health state machine of one backend (rise/fall,
//!   up/down/draining), fed with probe outcomes and time;
//! * [`probe`]: the tokio probes (TCP connect, UDP payload and reply);
//! * [`engine`]: the [`engine::KonveyDataplane`] trait the daemon drives, and
//!   its implementation over `kowabunga_dataplane::Konvey`;
//! * [`reconcile`]: the [`reconcile::Balancer`]: desired services, one health
//!   check per (service, backend), rotations written when they change,
//!   draining of removed backends.
//!
//! The daemon ([`crate::daemon`]) owns the timers and the sockets: it asks the
//! balancer which probes are due, runs them with [`probe::probe`], and feeds
//! the outcomes back.

pub mod engine;
pub mod health;
pub mod probe;
pub mod reconcile;
