//! `kowabunga-vrrp-node`: kowabungad's VRRP engine alone, for the VRRP labs.
//!
//! ```text
//! kowabunga-vrrp-node --interface eth0 --vrid 51 --priority 150 --interval-ms 100 \
//!     --vip 10.77.0.1/24 [--vip ...] [--no-preempt] [--no-pseudo-header] \
//!     [--garp-count 3] [--garp-delay-ms 100] [--immediate-handover] [--no-realtime]
//! ```
//!
//! Runs until SIGTERM or SIGINT, then stops gracefully (priority 0, VIPs removed);
//! SIGKILL simulates a crash. Logs transitions on stderr; prints the final status.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(kowabunga_tests::vrrp::node_main(&args));
}
