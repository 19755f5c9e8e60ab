//! Counters read at the start and the end of a measurement.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::modes::Gateway;
use super::progs::{Generator, Sink};
use super::topology::{InNetns, Topology, GEN_CPU, GW_CPU};

/// The gateway's `/proc/net/dev`, opened inside its namespace.
pub struct GwDev {
    file: File,
    ingress: String,
}

impl GwDev {
    /// Opens the gateway's `/proc/thread-self/net/dev`.
    pub fn open(topo: &Topology) -> Result<Self> {
        let _in = InNetns::enter(&topo.gw)?;
        Ok(GwDev {
            file: File::open("/proc/thread-self/net/dev").context("gateway /proc/net/dev")?,
            ingress: topo.g0.clone(),
        })
    }

    /// (received, dropped at receive) of the gateway's ingress interface.
    pub fn ingress(&self) -> Result<(u64, u64)> {
        let mut buf = vec![0u8; 1 << 16];
        let n = self.file.read_at(&mut buf, 0)?;
        let text = String::from_utf8_lossy(&buf[..n]);
        parse_dev(&text, &self.ingress)
    }
}

/// (rx packets, rx drops) of `dev` in `/proc/net/dev` text.
pub fn parse_dev(text: &str, dev: &str) -> Result<(u64, u64)> {
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == dev {
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if v.len() < 4 {
                bail!("short /proc/net/dev line for {dev}");
            }
            return Ok((v[1], v[3]));
        }
    }
    bail!("{dev} not in /proc/net/dev")
}

/// Idle (+iowait) nanoseconds of `cpu` from `/proc/stat` text.
pub fn parse_idle(text: &str, cpu: usize) -> Result<u64> {
    let name = format!("cpu{cpu}");
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() == Some(name.as_str()) {
            let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
            if v.len() < 5 {
                bail!("short /proc/stat line for {name}");
            }
            return Ok((v[3] + v[4]) * 1_000_000_000 / hz.max(1));
        }
    }
    bail!("{name} not in /proc/stat")
}

/// A thread's run time in ns (first field of `/proc/TID/schedstat`).
pub fn run_ns(tid: i32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/schedstat"))
        .with_context(|| format!("reading /proc/{tid}/schedstat"))?;
    text.split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .with_context(|| format!("parsing /proc/{tid}/schedstat {text:?}"))
}

/// Every counter at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When.
    pub at: Instant,
    /// Frames counted by the sink.
    pub sink: u64,
    /// Frames written by the generator.
    pub generated: u64,
    /// Frames received by the gateway's ingress (with those `xdp_drop`
    /// dropped: a veth does not count them).
    pub gw_rx: u64,
    /// Frames dropped at the gateway's ingress (ring full).
    pub gw_rx_drop: u64,
    /// Idle ns of the generator's CPU.
    pub idle_gen: u64,
    /// Idle ns of the gateway's CPU.
    pub idle_gw: u64,
    /// Run time (ns, schedstat) of the gateway's and the sink's NAPI threads.
    pub napi_run: u64,
}

impl Snapshot {
    /// Reads them all.
    pub fn take(
        sink: &Sink,
        gen: &Generator,
        dev: &GwDev,
        gw: &Gateway,
        napi: [i32; 2],
    ) -> Result<Self> {
        let at = Instant::now();
        let stat = std::fs::read_to_string("/proc/stat")?;
        let (gw_rx, gw_rx_drop) = dev.ingress()?;
        Ok(Snapshot {
            at,
            sink: sink.count()?,
            generated: gen.count()?,
            gw_rx: gw_rx + gw.ingress_drops()?,
            gw_rx_drop,
            idle_gen: parse_idle(&stat, GEN_CPU)?,
            idle_gw: parse_idle(&stat, GW_CPU)?,
            napi_run: napi.iter().map(|t| run_ns(*t)).sum::<Result<u64>>()?,
        })
    }
}

/// What one measurement interval gave.
#[derive(Clone, Debug, Serialize)]
pub struct Rates {
    /// Seconds measured.
    pub secs: f64,
    /// Frames counted at the sink.
    pub sink_packets: u64,
    /// Frames per second at the sink, thousands.
    pub sink_kpps: f64,
    /// Frames per second the generator wrote, thousands.
    pub offered_kpps: f64,
    /// Frames per second the gateway's ingress received, thousands.
    pub gw_rx_kpps: f64,
    /// Share of offered frames dropped at the gateway's full ingress ring.
    pub ring_full: f64,
    /// Non-idle share of the gateway's CPU (gateway + sink).
    pub cpu_gw: f64,
    /// Non-idle share of the generator's CPU.
    pub cpu_gen: f64,
    /// Gateway CPU nanoseconds per packet counted (at the sink, or at the
    /// gateway's ingress for the generator calibration): the CPU's non-idle
    /// time, so anything else running there counts too.
    pub ns_per_packet: f64,
    /// Run time of the gateway's and the sink's NAPI threads per packet
    /// counted (schedstat): the same cost without other tasks on the CPU.
    pub napi_ns_per_packet: f64,
}

/// The rates between two snapshots; `at_ingress` counts the gateway's
/// ingress instead of the sink (generator calibration).
pub fn rates(a: &Snapshot, b: &Snapshot, at_ingress: bool) -> Rates {
    let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let wall = dt * 1e9;
    let sink = b.sink.saturating_sub(a.sink);
    let rx = b.gw_rx.saturating_sub(a.gw_rx);
    let drop = b.gw_rx_drop.saturating_sub(a.gw_rx_drop);
    let counted = if at_ingress { rx } else { sink };
    let busy_gw = (wall - b.idle_gw.saturating_sub(a.idle_gw) as f64).max(0.0);
    let busy_gen = (wall - b.idle_gen.saturating_sub(a.idle_gen) as f64).max(0.0);
    Rates {
        secs: dt,
        sink_packets: sink,
        sink_kpps: counted as f64 / dt / 1e3,
        offered_kpps: b.generated.saturating_sub(a.generated) as f64 / dt / 1e3,
        gw_rx_kpps: rx as f64 / dt / 1e3,
        ring_full: drop as f64 / (rx + drop).max(1) as f64,
        cpu_gw: busy_gw / wall,
        cpu_gen: busy_gen / wall,
        ns_per_packet: busy_gw / counted.max(1) as f64,
        napi_ns_per_packet: b.napi_run.saturating_sub(a.napi_run) as f64 / counted.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop\n\
                   kb1g0: 6400 100 0 7 0 0 0 0 640 10 0 0 0 0 0 0\n";
        assert_eq!(parse_dev(dev, "kb1g0").expect("dev"), (100, 7));
        assert!(parse_dev(dev, "eth0").is_err());
        let stat = "cpu  1 2 3 4 5 6 7\ncpu0 1 2 3 400 5 0 0\ncpu1 1 2 3 100 0 0 0\n";
        // SAFETY: sysconf has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).expect("hz");
        assert_eq!(parse_idle(stat, 0).expect("cpu0"), 405 * 1_000_000_000 / hz);
        assert_eq!(parse_idle(stat, 1).expect("cpu1"), 100 * 1_000_000_000 / hz);
    }
}
