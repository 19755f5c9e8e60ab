//! Konvey's control plane: health checks of the backends and the
//! reconciliation of each service's rotation into the dataplane.
//!
//! * [`health`]: the sans-IO health state machine of one backend (rise/fall,
//!   up/down/draining), fed with probe outcomes and time;
//! * [`probe`]: the tokio probes (TCP connect, UDP payload and reply).
pub mod health;
pub mod probe;
