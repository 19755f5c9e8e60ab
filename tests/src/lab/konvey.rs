//! The Konvey lab: a client, a Konvey node and three backends on one L2 segment.
//!
//! ```text
//!                       [sw] bridge br0 (GRO on every port)
//!        ┌──────────────┬──────────┴───┬──────────────┬──────────────┐
//!  [client] eth0   [lb] eth0        [b1] eth0      [b2] eth0      [b3] eth0
//!  10.0.0.50/24    10.0.0.5/24      10.0.0.11/24   10.0.0.12/24   10.0.0.13/24
//!                  + VIP 10.0.0.100/32
//! ```
//!
//! As upstream's Konvey, the balancer sits in the project subnet: `kowabungad` runs
//! in `lb` with the Konvey program on its `eth0`, and the program sends translated
//! frames back out of the same interface. Each backend runs a TCP and a UDP server
//! that answer with their name (`b1`, `b2`, `b3`); the lab starts and stops them.
//!
//! Services of the generated configuration: `web` tcp VIP:80 -> backends:7000 and
//! `echo` udp VIP:5300 -> backends:7001, health every [`HEALTH_INTERVAL_MS`] ms
//! with rise and fall [`HEALTH_RISE`] / [`HEALTH_FALL`].
//!
//! veth settings (see [`super::topology`]): GRO on the switch ports (frames the
//! balancer's XDP sends out of its `eth0` arrive on `sw`'s end, which needs NAPI)
//! and on the hosts' ends; transmit checksum offload off on the hosts' ends, whose
//! packets the balancer rewrites. The VIP is added by the lab (VRRP will own it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::counters::Counters;
use super::daemon::Daemon;
use super::netns::{unique_prefix, Netns};
use super::topology::{ensure_bpffs, BPFFS};
use super::traffic::{ping, Agent, Background, Finished};

/// The client's address.
pub const CLIENT_ADDR: &str = "10.0.0.50";
/// The Konvey node's own address (the full-NAT source).
pub const LB_ADDR: &str = "10.0.0.5";
/// The VIP of every service.
pub const VIP: &str = "10.0.0.100";
/// Names and addresses of the backends, in configuration order.
pub const BACKENDS: [(&str, &str); 3] = [
    ("b1", "10.0.0.11"),
    ("b2", "10.0.0.12"),
    ("b3", "10.0.0.13"),
];
/// TCP service port on the VIP.
pub const TCP_PORT: u16 = 80;
/// TCP port of the backends.
pub const TCP_BACKEND_PORT: u16 = 7000;
/// UDP service port on the VIP.
pub const UDP_PORT: u16 = 5300;
/// UDP port of the backends.
pub const UDP_BACKEND_PORT: u16 = 7001;
/// Name of the TCP endpoint.
pub const TCP_ENDPOINT: &str = "web";
/// Name of the UDP endpoint.
pub const UDP_ENDPOINT: &str = "echo";
/// `node.konvey.health.interval_ms` of the lab.
pub const HEALTH_INTERVAL_MS: u64 = 200;
/// The daemon's metrics port (`node.metrics.listen`, on 127.0.0.1 of the
/// balancer's namespace).
pub const METRICS_PORT: u16 = 9465;
/// `node.konvey.health.timeout_ms` of the lab.
pub const HEALTH_TIMEOUT_MS: u64 = 100;
/// `rise` of the lab.
pub const HEALTH_RISE: u32 = 2;
/// `fall` of the lab.
pub const HEALTH_FALL: u32 = 2;
/// How long the backend servers live at most (s).
pub const SERVER_SECONDS: u64 = 300;

/// One backend: its namespace and, while it runs, its two servers.
#[derive(Debug)]
pub struct BackendHost {
    /// `b1`, `b2`, `b3`.
    pub name: &'static str,
    /// Its address.
    pub addr: &'static str,
    /// Its namespace.
    pub ns: Netns,
    servers: Option<(Background, Background)>,
}

impl BackendHost {
    /// Whether its servers run.
    pub fn running(&self) -> bool {
        self.servers.is_some()
    }
}

/// The namespaces, the generated config and (once started) the daemon. Dropping
/// it stops the daemon and the servers, removes the pin and temporary
/// directories, then deletes the namespaces.
#[derive(Debug)]
pub struct KonveyLab {
    daemon: Option<Daemon>,
    /// The backends, in configuration order.
    pub backends: Vec<BackendHost>,
    /// The client (`eth0` 10.0.0.50/24).
    pub client: Netns,
    /// The Konvey node (`eth0` 10.0.0.5/24 + VIP).
    pub lb: Netns,
    /// The switch (bridge `br0`).
    pub sw: Netns,
    prefix: String,
    pin_dir: PathBuf,
    dir: PathBuf,
    /// Backends configured per endpoint (by backend name).
    configured: BTreeMap<&'static str, Vec<&'static str>>,
}

impl KonveyLab {
    /// Builds the namespaces, bridge, veths and addresses, and writes the config.
    pub fn new() -> Result<Self> {
        let prefix = unique_prefix();
        ensure_bpffs()?;
        let dir = std::env::temp_dir().join(format!("{prefix}-konvey-lab"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let sw = Netns::new(&format!("{prefix}-sw"))?;
        let client = Netns::new(&format!("{prefix}-client"))?;
        let lb = Netns::new(&format!("{prefix}-lb"))?;
        let mut backends = Vec::new();
        for (name, addr) in BACKENDS {
            backends.push(BackendHost {
                name,
                addr,
                ns: Netns::new(&format!("{prefix}-{name}"))?,
                servers: None,
            });
        }
        let all: Vec<&'static str> = BACKENDS.iter().map(|(n, _)| *n).collect();
        let lab = KonveyLab {
            daemon: None,
            backends,
            client,
            lb,
            sw,
            pin_dir: Path::new(BPFFS).join(&prefix),
            prefix,
            dir,
            configured: [(TCP_ENDPOINT, all.clone()), (UDP_ENDPOINT, all)]
                .into_iter()
                .collect(),
        };
        lab.wire().context("building the Konvey lab topology")?;
        lab.write_config()?;
        Ok(lab)
    }

    fn wire(&self) -> Result<()> {
        let sw = &self.sw;
        sw.ip(&["link", "add", "br0", "type", "bridge"])?;
        sw.ip(&["link", "set", "br0", "up"])?;
        let mut hosts: Vec<(&Netns, String, &str)> = vec![
            (&self.client, "client".into(), CLIENT_ADDR),
            (&self.lb, "lb".into(), LB_ADDR),
        ];
        for b in &self.backends {
            hosts.push((&b.ns, b.name.into(), b.addr));
        }
        for (ns, tag, addr) in hosts {
            let port = format!("p-{tag}");
            sw.veth(&port, ns, "eth0")?;
            sw.ip(&["link", "set", &port, "master", "br0"])?;
            sw.ip(&["link", "set", &port, "up"])?;
            sw.run_ok("ethtool", &["-K", &port, "gro", "on"])
                .context("setting veth offloads (apt-get install ethtool)")?;
            ns.addr("eth0", &format!("{addr}/24"))?;
            ns.run_ok("ethtool", &["-K", "eth0", "gro", "on", "tx", "off"])
                .context("setting veth offloads (apt-get install ethtool)")?;
        }
        self.lb
            .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;
        Ok(())
    }

    /// Pings every host from the client and the balancer once, so neighbours
    /// are resolved before measurements (bounded: 3 pings per host).
    pub fn warm_up(&self) -> Result<()> {
        let mut targets = vec![(&self.client, LB_ADDR), (&self.client, VIP)];
        for b in &self.backends {
            targets.push((&self.lb, b.addr));
        }
        targets.push((&self.lb, CLIENT_ADDR));
        for (ns, dest) in targets {
            let out = ping(ns, dest)?;
            if !out.success() {
                bail!("ping {dest} from {}: {out}", ns.name());
            }
        }
        Ok(())
    }

    /// The lab's unique name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The daemon's bpffs pin directory (`node.bpffs`).
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("kowabungad.yaml")
    }

    fn addr_of(name: &str) -> &'static str {
        BACKENDS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("0.0.0.0", |(_, a)| a)
    }

    /// The daemon's operator socket (`node.api.socket`, in the lab's directory).
    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("kowabungad.sock")
    }

    /// The configuration as YAML.
    pub fn config_yaml(&self) -> String {
        let ips = |endpoint: &str| -> String {
            self.configured
                .get(endpoint)
                .map(|names| {
                    names
                        .iter()
                        .map(|n| Self::addr_of(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        format!(
            "# Generated by the kowabunga-tests Konvey lab ({prefix}).\n\
             node:\n  zone: eu-west-a\n  interfaces: {{konvey: [eth0]}}\n  bpffs: {pin}\n\
             \x20 api: {{socket: {socket}}}\n  metrics: {{listen: \"127.0.0.1:{METRICS_PORT}\"}}\n\
             \x20 konvey:\n    source_ip: {LB_ADDR}\n    nat_port_range: \"1024-32767\"\n\
             \x20   health: {{interval_ms: {HEALTH_INTERVAL_MS}, timeout_ms: {HEALTH_TIMEOUT_MS}, rise: {HEALTH_RISE}, fall: {HEALTH_FALL}, udp_probe: {{send: health, expect: \"name=\"}}}}\n\
             konvey:\n  vip: {VIP}\n  endpoints:\n\
             \x20   - {{name: {TCP_ENDPOINT}, protocol: tcp, port: {TCP_PORT}, backend_port: {TCP_BACKEND_PORT}, backend_ips: [{tcp}]}}\n\
             \x20   - {{name: {UDP_ENDPOINT}, protocol: udp, port: {UDP_PORT}, backend_port: {UDP_BACKEND_PORT}, backend_ips: [{udp}]}}\n",
            prefix = self.prefix,
            pin = self.pin_dir.display(),
            socket = self.api_socket().display(),
            tcp = ips(TCP_ENDPOINT),
            udp = ips(UDP_ENDPOINT),
        )
    }

    /// Writes [`KonveyLab::config_yaml`] atomically (temporary file, rename).
    pub fn write_config(&self) -> Result<()> {
        let path = self.config_path();
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, self.config_yaml())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Sets the backends (by name) of both endpoints and rewrites the config
    /// (no reload).
    pub fn set_backends(&mut self, names: &[&'static str]) -> Result<()> {
        for list in self.configured.values_mut() {
            *list = names.to_vec();
        }
        self.write_config()
    }

    /// Starts the TCP and UDP servers of backend `i` (no-op if they run).
    pub fn start_backend(&mut self, agent: &Agent, i: usize) -> Result<()> {
        let b = self.backends.get_mut(i).context("no such backend")?;
        if b.servers.is_none() {
            let tcp = agent.tcp_name_server(&b.ns, TCP_BACKEND_PORT, b.name, SERVER_SECONDS)?;
            let udp = agent.udp_name_server(&b.ns, UDP_BACKEND_PORT, b.name, SERVER_SECONDS)?;
            b.servers = Some((tcp, udp));
        }
        Ok(())
    }

    /// Starts every backend's servers.
    pub fn start_backends(&mut self, agent: &Agent) -> Result<()> {
        for i in 0..self.backends.len() {
            self.start_backend(agent, i)?;
        }
        Ok(())
    }

    /// Kills the servers of backend `i` (its host stays up, so connections are
    /// refused and UDP gets ICMP port unreachable).
    pub fn stop_backend(&mut self, i: usize) {
        if let Some(b) = self.backends.get_mut(i) {
            b.servers = None;
        }
    }

    /// Starts `kowabungad` (binary `bin`) in the balancer namespace and waits
    /// until it is ready.
    pub fn start_daemon(&mut self, bin: &Path) -> Result<&mut Daemon> {
        self.daemon = None;
        let daemon = Daemon::start(&self.lb, bin, &self.config_path())?;
        Ok(self.daemon.insert(daemon))
    }

    /// Stops the daemon (SIGTERM); its pinned program and maps stay.
    pub fn stop_daemon(&mut self) {
        self.daemon = None;
    }

    /// Runs `kowabungad --config FILE --detach` in the balancer namespace
    /// (20 s limit): removes the program and the pins.
    pub fn detach(&self, bin: &Path) -> Result<Finished> {
        let mut cmd = super::daemon::command(bin, &self.config_path());
        cmd.arg("--detach");
        self.lb.enter_net_only(&mut cmd)?;
        super::traffic::run_bounded(cmd, Duration::from_secs(20))
    }

    /// The running daemon, if started.
    pub fn daemon(&mut self) -> Option<&mut Daemon> {
        self.daemon.as_mut()
    }

    /// Waits at most `timeout` until the daemon has logged, for each
    /// `(endpoint, backend name, state)`, that the backend of the endpoint is
    /// `state` (`up` or `down`) `n` times in all; returns for each how long
    /// after `since` its line was first seen (polled every 10 ms).
    pub fn wait_backend_states(
        &mut self,
        waits: &[(&str, &str, &str)],
        n: usize,
        since: Instant,
        timeout: Duration,
    ) -> Result<Vec<Duration>> {
        let needles: Vec<(String, String)> = waits
            .iter()
            .map(|(endpoint, backend, state)| {
                let port = if *endpoint == UDP_ENDPOINT {
                    UDP_BACKEND_PORT
                } else {
                    TCP_BACKEND_PORT
                };
                (
                    format!("backend {}:{port} of {endpoint} (", Self::addr_of(backend)),
                    format!(") is {state}"),
                )
            })
            .collect();
        let mut seen: Vec<Option<Duration>> = vec![None; waits.len()];
        let daemon = self.daemon.as_mut().context("daemon not started")?;
        let deadline = Instant::now() + timeout;
        loop {
            let log = daemon.log();
            for ((head, tail), slot) in needles.iter().zip(seen.iter_mut()) {
                let hits = log
                    .lines()
                    .filter(|l| l.contains(head.as_str()) && l.contains(tail.as_str()))
                    .count();
                if slot.is_none() && hits >= n {
                    *slot = Some(since.elapsed());
                }
            }
            if seen.iter().all(Option::is_some) {
                return Ok(seen.into_iter().flatten().collect());
            }
            if Instant::now() >= deadline {
                bail!(
                    "kowabungad did not log every state change of {waits:?} (#{n}) within {timeout:?}; log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reads the Konvey dataplane counters (`<pin_dir>/konvey/kw_stats`).
    pub fn counters(&self) -> Result<Counters> {
        Counters::read(&self.pin_dir.join("konvey"))
    }
}

impl Drop for KonveyLab {
    fn drop(&mut self) {
        self.daemon = None;
        for b in &mut self.backends {
            b.servers = None;
        }
        if self.pin_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.pin_dir) {
                eprintln!("lab: removing {}: {e}", self.pin_dir.display());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The backend that answered a client run: the `name=` field of its greeting or
/// answer (`None` when the client failed).
pub fn answered_by(out: &Finished) -> Option<String> {
    if !out.success() {
        return None;
    }
    out.field("name=")
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// How many answers each backend gave over `n` new connections (TCP) or flows
/// (UDP, a new source port each) from the client to the VIP; failures are
/// counted under `"failed"`.
pub fn distribution(
    lab: &KonveyLab,
    agent: &Agent,
    udp: bool,
    n: usize,
) -> Result<BTreeMap<String, usize>> {
    // Every UDP flow from a source port no earlier flow of this process
    // used: an ephemeral port may repeat one still in conntrack, which would
    // go to its old backend instead of taking a round-robin turn.
    static NEXT_SPORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(20_000);
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let out = if udp {
            let sport = NEXT_SPORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            anyhow::ensure!(sport < 32_000, "out of distinct UDP source ports");
            agent.udp_client_from(&lab.client, &format!("{VIP}:{UDP_PORT}"), sport)?
        } else {
            agent.tcp_client(&lab.client, &format!("{VIP}:{TCP_PORT}"))?
        };
        let who = answered_by(&out).unwrap_or_else(|| "failed".to_owned());
        *counts.entry(who).or_insert(0) += 1;
    }
    Ok(counts)
}
