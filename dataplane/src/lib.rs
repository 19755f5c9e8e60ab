//! Loads, attaches, pins and drives the Kowabunga XDP programs.
//!
//! The kernel side is C (`ebpf/`), compiled by this crate's build script and
//! embedded; this crate is the userspace half of the contract written down in
//! `ebpf/README.md`: typed access to the maps of `kawaii.o` and `konvey.o`, attachment of one
//! program per interface [`Role`], pinning under a bpffs directory so a
//! daemon restart keeps traffic and conntrack, and, with the cargo feature
//! `test-util`, `BPF_PROG_TEST_RUN` helpers for tests and benchmarks.
//!
//! | module | job |
//! |---|---|
//! | [`kawaii`] | load `kawaii.o`, pinned or private maps; [`kawaii::config`] its configuration as Rust types, encoded into the ABI; [`kawaii::banks`] apply it to the inactive bank and flip |
//! | [`konvey`] | load `konvey.o`, program it; [`konvey::service`] services, backends, node settings as Rust types |
//! | [`abi`] | the ABI version pinned beside the maps (`kw_meta`): reuse, create or refuse pins |
//! | [`attach`] | attach / detach a role's program, pinned links |
//! | [`variant`] | which build of the programs to load: the default, or the `-mcpu=v2` one upgrade tests select with `KOWABUNGA_BPF_VARIANT=v2` |
//! | [`fcache`] | the established path's per-CPU flow cache: size, seed, generation |
//! | [`conntrack`] | list and sweep `kw_ct4` (confirmed) and `kw_ct4_new` (embryonic), on a sweeper thread |
//! | [`stats`] | per-CPU counters summed, with names |
//! | [`events`] | sampled drop events from the ring buffer |
//! | `test_run` | feature `test-util` only: run a program on a packet (`Kawaii::run`, `Konvey::run`); the `xdp_pass` baseline; pinned-map checks |
//! | [`caps`] | CAP_BPF / CAP_NET_ADMIN check |
//! | [`bpffs`] | is a path on bpffs; mount one |
//!
//! # Example
//!
//! ```no_run
//! use kowabunga_dataplane::{caps, Kawaii, KawaiiConfig, LoadOptions, Role};
//!
//! caps::check()?;
//! let mut kawaii = Kawaii::load(&LoadOptions {
//!     pin_dir: Some("/sys/fs/bpf/kowabunga".into()),
//!     ct_entries: None,
//! })?;
//! let config = KawaiiConfig::new("203.0.113.10".parse()?, "10.0.0.0/25".parse()?);
//! kawaii.apply(&config)?;
//! kawaii.attach(Role::Public, "eth0")?;
//! kawaii.attach(Role::Private, "eth1")?;
//!
//! let report = kawaii.sweep(kowabunga_dataplane::conntrack::monotonic_now_ns())?;
//! for (name, counter) in kawaii.counters()?.iter() {
//!     println!("{name} {}", counter.packets);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod abi;
pub mod attach;
pub mod bpffs;
pub mod caps;
pub mod conntrack;
pub mod events;
pub mod fcache;
pub mod kawaii;
pub mod konvey;
pub mod role;
pub mod stats;
#[cfg(feature = "test-util")]
pub mod test_run;
pub mod variant;

pub use attach::{Attached, Mode};
pub use conntrack::{monotonic_now_ns, SweepReport};
pub use events::{DropEvent, DropEvents};
pub use kawaii::banks::{ActiveConfig, Tables, Tables6};
pub use kawaii::config::KawaiiConfig;
pub use kawaii::{Kawaii, LoadOptions};
pub use konvey::Konvey;
pub use role::Role;
pub use stats::Counters;
#[cfg(feature = "test-util")]
pub use test_run::{Baseline, TestRunOutput, Verdict};
