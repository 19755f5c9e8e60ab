//! Network-namespace labs: real traffic through a Kawaii gateway run by `kowabungad`.
//!
//! One job per module:
//! * [`netns`]: namespaces and veth pairs, deleted on drop (also while panicking);
//! * [`topology`]: the Kawaii lab (`priv` host, `gw` node, `inet` host) and its config;
//! * [`daemon`]: `kowabungad` started inside the gateway namespace, killed on drop;
//! * [`traffic`]: bounded servers, clients and pings run inside namespaces;
//! * [`exchange`]: a long-lived TCP exchanger (a line every 50 ms) that counts losses and gaps;
//! * [`agent`]: the small TCP/UDP servers and clients behind `kowabunga-lab-agent`;
//! * [`capture`]: `tcpdump` on a host's interface, read back a line a packet;
//! * [`links`]: pinned XDP links, their programs and tags (`bpftool`);
//! * [`counters`]: the dataplane's outcome counters, read from the pinned `kw_stats`;
//! * [`charon`]: strongSwan's charon run by hand in a namespace;
//! * [`ipsec`]: the IPsec lab (site A: the Kawaii lab with charon; site B: a remote office);
//! * [`ipsec_failover`]: site A as two Kawaii nodes sharing the VIPs by VRRP.
//! * [`kiwi`], [`dns`]: the Kiwi DNS lab (node, client, stub recursor) and its DNS tools.
//!
//! Everything here needs root (CAP_NET_ADMIN + CAP_BPF). Tests call
//! [`kowabunga_testkit::privileged`] first: it skips with a message when not privileged,
//! or fails where skipping is forbidden ([`kowabunga_testkit::REQUIRE_PRIVILEGED`]).
//!
//! ```no_run
//! use kowabunga_tests::lab::{topology::KawaiiLab, traffic::Agent};
//! # fn main() -> anyhow::Result<()> {
//! // In an integration test: `Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"))`.
//! let agent = Agent::new("target/debug/kowabunga-lab-agent");
//! let mut lab = KawaiiLab::new()?;
//! lab.start_daemon(&kowabunga_tests::lab::find_kowabungad()?)?;
//! let server = agent.tcp_echo_server(&lab.inet, 7000, 20)?;
//! let out = agent.tcp_client(&lab.private, "203.0.113.1:7000")?;
//! assert!(out.stdout.contains("peer=203.0.113.10:"));
//! # drop(server); Ok(()) }
//! ```

pub mod agent;
pub mod capture;
pub mod charon;
pub mod counters;
pub mod daemon;
pub mod dns;
pub mod dns_bench;
pub mod exchange;
pub mod ipsec;
pub mod ipsec_failover;
pub mod kiwi;
pub mod kiwi_demo;
pub mod konvey;
pub mod links;
pub mod netns;
pub mod paper;
pub mod topology;
pub mod traffic;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// `target/<profile>/` of the running executable: its own directory, or the parent
/// of `deps/` for test executables.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The `kowabungad` binary: `$KOWABUNGAD` if set, else next to this executable in
/// `target/<profile>/`.
pub fn find_kowabungad() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("KOWABUNGAD") {
        return Ok(path.into());
    }
    let dir = profile_dir()?;
    let path = dir.join("kowabungad");
    if !path.is_file() {
        bail!(
            "{} not found: run `cargo build -p kowabunga-control` first{} \
             (`cargo xtask test` builds every binary before testing)",
            path.display(),
            if dir.ends_with("release") {
                " --release"
            } else {
                ""
            }
        );
    }
    Ok(path)
}

/// The `kowabunga` CLI: `$KOWABUNGA` if set, else beside `kowabungad` (see
/// [`find_kowabungad`]).
pub fn find_kowabunga() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("KOWABUNGA") {
        return Ok(path.into());
    }
    let path = find_kowabungad()?.with_file_name("kowabunga");
    if !path.is_file() {
        bail!(
            "{} not found: run `cargo build -p kowabunga-control --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// The `kowabunga-lab-agent` binary next to this executable in `target/<profile>/`.
pub fn find_agent() -> Result<PathBuf> {
    let path = profile_dir()?.join("kowabunga-lab-agent");
    if !path.is_file() {
        bail!(
            "{} not found: run `cargo build -p kowabunga-tests --bins`",
            path.display()
        );
    }
    Ok(path)
}
