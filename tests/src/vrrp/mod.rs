//! VRRP labs: two routers and a client on one Ethernet segment, running our engine
//! (`kowabunga-vrrp-node`) or keepalived 2.2 in each router, with a UDP probe that
//! measures takeover time and loss.
//!
//! * [`lab`]: the namespaces (`r1`, `r2` and a client holding the bridge);
//! * [`node`]: one VRRP speaker (ours or keepalived) in a router, killed on drop;
//! * [`probe`]: the client's UDP probe and the routers' responders;
//! * [`capture`]: raw VRRP packets as seen on the segment (wire vectors);
//! * [`scenario`]: the measured failover (crash or graceful stop under traffic);
//! * [`wait`]: bounded polling.
//!
//! Everything here needs root; tests call [`kowabunga_testkit::privileged`] first.

pub mod capture;
pub mod lab;
pub mod node;
pub mod probe;
pub mod scenario;
pub mod wait;

use std::time::Duration;

use kowabunga_control::vrrp::config::{Handover, InstanceConfig, VrrpConfig};
use kowabunga_control::vrrp::driver::{Engine, EngineOptions};
use kowabunga_control::vrrp::packet::ChecksumMode;

/// Enters network namespace `name` for the calling thread only.
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns on a descriptor we own; affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        anyhow::bail!("setns {name}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn parse_node_args(args: &[String]) -> Result<(InstanceConfig, bool), String> {
    let mut c = InstanceConfig {
        name: Some("lab".into()),
        vrid: 51,
        interface: "eth0".into(),
        zone: None,
        priority: Some(100),
        advert_interval_ms: 1000,
        virtual_ips: Vec::new(),
        preempt: true,
        checksum: ChecksumMode::PseudoHeader,
        garp_count: 3,
        garp_delay_ms: 100,
        priority_zero_handover: Handover::Skew,
    };
    let mut realtime = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u32>().map_err(|e| format!("{a} {v}: {e}"));
        match a.as_str() {
            "--interface" => c.interface = val()?,
            "--vrid" => c.vrid = num(val()?)? as u16,
            "--priority" => c.priority = Some(num(val()?)? as u16),
            "--interval-ms" => c.advert_interval_ms = num(val()?)?,
            "--vip" => c
                .virtual_ips
                .push(val()?.parse().map_err(|e| format!("--vip: {e}"))?),
            "--garp-count" => c.garp_count = num(val()?)?,
            "--garp-delay-ms" => c.garp_delay_ms = num(val()?)?,
            "--no-preempt" => c.preempt = false,
            "--no-pseudo-header" => c.checksum = ChecksumMode::NoPseudoHeader,
            "--no-realtime" => realtime = false,
            "--immediate-handover" => c.priority_zero_handover = Handover::Immediate,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((c, realtime))
}

/// The `kowabunga-vrrp-node` binary: returns the exit code.
pub fn node_main(args: &[String]) -> i32 {
    use nix::sys::signal::{SigSet, Signal};
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (inst, realtime) = match parse_node_args(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("kowabunga-vrrp-node: {e}");
            return 2;
        }
    };
    let cfg = VrrpConfig {
        instances: vec![inst],
    };
    let resolved = match cfg.resolve(None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kowabunga-vrrp-node: {e}");
            return 2;
        }
    };
    // Block the stop signals before the engine thread exists, so it inherits the
    // mask and only this thread receives them (sigwait below).
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if let Err(e) = set.thread_block() {
        eprintln!("kowabunga-vrrp-node: blocking signals: {e}");
        return 1;
    }
    let opts = EngineOptions {
        realtime_priority: realtime.then_some(kowabunga_control::vrrp::driver::DEFAULT_RT_PRIORITY),
    };
    let engine = match Engine::start(resolved, opts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kowabunga-vrrp-node: {e}");
            return 1;
        }
    };
    eprintln!("kowabunga-vrrp-node: ready");
    let sig = set.wait();
    eprintln!("kowabunga-vrrp-node: {sig:?}, stopping");
    let status = engine.status();
    engine.shutdown();
    for s in status {
        println!("{s}");
    }
    // Give the priority-0 advert time to leave before the process is reaped.
    std::thread::sleep(Duration::from_millis(1));
    0
}
