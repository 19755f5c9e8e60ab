//! The Kowabunga node daemon: configuration, reconciliation, supervision.
//!
//! * [`config`]: the YAML file, its validation and its compilation into the
//!   dataplane's map contents (pure, no kernel access).

pub mod config;
