//! VIP failover: a VRRPv3 engine (RFC 9568), interoperable with keepalived 2.2.
//!
//! * [`packet`]: the advert codec and its checksum variants;
//! * [`machine`]: the sans-IO state machine (no sockets, no clock inside);
//! * [`config`]: the `node.vrrp` key, its validation and the zone rule;
//! * [`vip`]: the single owner of VIP presence (rtnetlink);
//! * [`driver`]: the engine thread, gratuitous ARP, timers;
//! * [`socket`]: the driver's system calls and [`socket::DriverError`];
//! * [`status`]: per-instance counters and status line;
//! * [`role`]: the role of `kowabungad` (started after the dataplanes).
//!
//! ```no_run
//! use kowabunga_control::vrrp::{config::VrrpConfig, driver::{Engine, EngineOptions}};
//! # fn main() -> anyhow::Result<()> {
//! let cfg: VrrpConfig = serde_norway::from_str(
//!     "instances: [{vrid: 51, interface: eth0, zone: a, virtual_ips: [10.0.0.1/24]}]",
//! )?;
//! let engine = Engine::start(cfg.resolve(Some("a"))?, EngineOptions::default())?;
//! for s in engine.status() {
//!     println!("{s}");
//! }
//! engine.shutdown(); // priority 0: a backup takes over within its skew time
//! # Ok(()) }
//! ```

pub mod config;
pub mod driver;
pub mod machine;
pub mod packet;
pub mod role;
pub mod socket;
pub mod status;
pub mod vip;
