//! Benchmarks of the Kowabunga dataplane: what `benches/kawaii.rs` and
//! `benches/konvey.rs` share.
//!
//! A bench describes its rows ([`Row`]: frames, the counter that proves the
//! path, the verdict) and how its harness is built; [`run()`] does the rest
//! under criterion. Every row is timed by the kernel (`BPF_PROG_TEST_RUN`'s
//! `duration`), for the program and for the trivial `xdp_pass` program in
//! the same run, and ends in one summary table: program ns/packet,
//! `xdp_pass` ns/packet, their difference.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p kowabunga-benches`), as
//! root; criterion writes its reports under `target/criterion`.
//! [`Knobs`] lists the environment variables that scale a run.
//!
//! - [`knobs`]: the environment variables;
//! - [`subject`]: the program object measured, for both harnesses;
//! - [`measure`]: rows, kernel timing and the path check;
//! - [`report`]: the summary table;
//! - [`run`](mod@run): the criterion groups;
//! - [`live`]: the live-traffic bench (`cargo xtask bench --live`).

pub mod knobs;
pub mod live;
pub mod measure;
pub mod report;
pub mod run;
pub mod subject;

pub use knobs::Knobs;
pub use measure::{Frames, Row};
pub use run::run;
pub use subject::Subject;
