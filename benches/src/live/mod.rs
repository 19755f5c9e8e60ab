//! The live-traffic bench (`cargo xtask bench --live`): real 64-byte UDP
//! frames through a gateway namespace, every forwarding mode measured in one
//! interleaved run, every repetition checked at the sink.
//!
//! ```text
//!  [client] c0 ==veth== g0 [gateway] g1 ==veth== s0 [sink]
//!   generator (CPU0)      one core (CPU1) does all    XDP: count + drop
//!   loop l0/l1            gateway work                (also on CPU1)
//! ```
//!
//! One job per module:
//! * [`options`]: what a run measures (modes, flow sets, repetitions, seconds);
//! * [`topology`]: the three namespaces, addresses, routes, NAPI threads and CPUs;
//! * [`progs`]: the bench's own XDP programs (`benches/bpf/`): generator, sink,
//!   gateway baselines;
//! * [`modes`]: putting the gateway in one mode (XDP, nftables, `kowabungad`);
//! * [`sample`]: counters read before and after a measurement;
//! * [`verify`]: what the sink must have seen for a mode to score;
//! * [`report`]: medians, ratios, the table and the JSON;
//! * [`plot`]: rate against flow count per mode (SVG);
//! * [`run`](mod@run): the interleaved loop.

pub mod modes;
pub mod options;
pub mod plot;
pub mod progs;
pub mod report;
pub mod run;
pub mod sample;
pub mod topology;
pub mod verify;

pub use options::{FlowSet, Mode, Options};
pub use run::run;
