//! Test support for Kowabunga: the reference model, packet fixtures and labs.
//!
//! - [`model`]: the pure-Rust reference model of the Kawaii and Konvey semantics;
//! - [`packets`]: test packets built with etherparse;
//! - [`generator`]: random and malformed traffic for the differential test;
//! - [`fixture_net`]: the namespace `BPF_PROG_TEST_RUN` fixtures run in;
//! - [`fixture_konvey`], [`harness_konvey`], [`generator_konvey`]: the same
//!   for Konvey;
//! - [`world`]: the configuration fixtures, differential test and bench share;
//! - [`lab`]: network-namespace labs with the real daemon;
//! - [`vrrp`]: VRRP labs: our engine and keepalived, failover probes.

pub mod fixture_konvey;
pub mod fixture_net;
pub mod generator;
pub mod generator_konvey;
pub mod harness;
pub mod harness_konvey;
pub mod lab;
pub mod model;
pub mod packets;
pub mod vrrp;
pub mod world;
