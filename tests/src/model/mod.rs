//! A pure-Rust reference model of the Kawaii and Konvey dataplanes.
//!
//! The model states the semantics of `ebpf/kawaii.c` and `ebpf/konvey.c`
//! (sharing the flow life cycle of `kw_flow.h`, in [`flow`]) in plain Rust over raw
//! frames: the same classification, conntrack pairs, SNAT port probing,
//! checksum arithmetic (RFC 1624) and forwarding decisions. Fixtures and the
//! differential test compare it with the BPF program packet by packet:
//! verdict, bytes out and the counter each packet bumps.

pub mod csum;
pub mod fib;
pub mod flow;
pub mod icmp;
pub mod kawaii;
pub mod konvey;

pub use fib::{FibModel, FibResult};
pub use kawaii::{KawaiiModel, Outcome};
pub use konvey::KonveyModel;

/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;
/// `XDP_REDIRECT`.
pub const XDP_REDIRECT: u32 = 4;
