//! `kowabungad`: the node daemon's command line, startup and main loop.
//!
//! ```text
//! kowabungad --config FILE            run the gateway
//! kowabungad --config FILE --check    validate FILE, print "config OK", touch nothing
//! kowabungad --config FILE --detach   remove the XDP programs and pinned maps, exit
//! ```
//!
//! Exit codes: [`EXIT_OK`] (0), [`EXIT_RUNTIME`] (1: missing capabilities,
//! sysctl, load or attach failure), [`EXIT_CONFIG`] (2: the configuration
//! file cannot be read, parsed or validated; nothing was applied; also
//! command-line usage errors).
//!
//! Startup: logging (`RUST_LOG`, default `info`, to stderr), read and
//! validate the config, capability check, sysctls (see [`crate::sysctl`]),
//! load the dataplanes the config asks for (Kawaii with maps pinned under
//! `node.bpffs`, Konvey under `node.bpffs/konvey`), apply the config,
//! attach the programs (Kawaii: public, private, each peering; Konvey: each
//! of `node.interfaces.konvey`), then log `kowabungad ready`.
//!
//! VRRP (`node.vrrp`): after the dataplanes, the VRRPv3 engine starts on its own
//! `SCHED_RR` thread (see [`crate::vrrp`]); transitions are logged at `info`,
//! every instance's state, priority, master and counters every 60 s.
//!
//! Konvey: the backends are probed from the start (see
//! [`crate::konvey::health`]: a backend is up until proven down); each
//! state change reprograms the affected rotations. Every second, rotations
//! whose write failed are retried and draining backends are counted (and
//! forgotten once they have no flow left).
//!
//! Running:
//! * `SIGHUP`: re-read, validate and apply the file. On any error the
//!   running configuration stays, one line is logged, the daemon continues.
//!   `node.interfaces`, `node.bpffs`, `node.conntrack_entries`, `node.vrrp`
//!   and the presence of the `kawaii` / `konvey` sections only change with a
//!   restart (a reload that changes them is refused).
//! * `SIGTERM` / `SIGINT`: exit 0. VRRP masters send priority 0 and remove
//!   their VIPs (a backup takes over at once). Pinned maps and links stay, so
//!   traffic keeps flowing and the next daemon takes over without a gap; run
//!   `kowabungad --config FILE --detach` to remove them.
//! * Every 10 s: conntrack sweep. Every 200 ms: drop events are logged at
//!   `debug` with reason and tuple. Every 60 s: counters at `debug`.

use std::io::IsTerminal as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use kowabunga_dataplane::konvey::KonveyConfig;
use kowabunga_dataplane::{caps, Counters, DropEvent, LoadOptions, Role};
use thiserror::Error;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{interval, Interval, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::config::compile::{compile, Compiled, SAMPLE_SHIFT};
use crate::config::{self, ConfigError, ValidConfig};
use crate::engine::{Dataplane, KawaiiDataplane};
use crate::konvey::engine::{KonveyDataplane, KonveyEngine};
use crate::konvey::health::{Outcome, ProbeId};
use crate::konvey::probe::probe;
use crate::konvey::reconcile::{desired_services, Balancer, CheckKey};
use crate::sysctl;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Runtime failure: capabilities, sysctls, loading or attaching.
pub const EXIT_RUNTIME: u8 = 1;
/// The configuration is unusable; nothing was applied.
pub const EXIT_CONFIG: u8 = 2;

/// Line logged once the programs are attached and the config applied.
pub const READY_LINE: &str = "kowabungad ready";

/// Conntrack sweep period.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(10);
/// Drop-event poll period.
pub const EVENTS_PERIOD: Duration = Duration::from_millis(200);
/// Counter summary period.
pub const COUNTERS_PERIOD: Duration = Duration::from_secs(60);

/// Mount point of the bpffs that holds the default pin directory.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Konvey's pin directory under `node.bpffs`.
pub const KONVEY_PIN_SUBDIR: &str = "konvey";

/// Konvey housekeeping period: retry failed rotation writes, count the
/// flows of draining backends.
pub const KONVEY_HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);

/// The sysctl listing the ports of the node's own outgoing connections.
pub const IP_LOCAL_PORT_RANGE: &str = "net/ipv4/ip_local_port_range";

/// Command line of `kowabungad`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kowabungad",
    version,
    about = "Kowabunga node daemon (Kawaii XDP gateway, Konvey XDP load balancer)"
)]
pub struct Args {
    /// Configuration file (YAML).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the configuration, print "config OK" and exit; touches nothing.
    #[arg(long)]
    pub check: bool,
    /// Detach the XDP programs from the configured interfaces and remove the
    /// pinned maps and links under node.bpffs (conntrack is lost), then exit.
    #[arg(long, conflicts_with = "check")]
    pub detach: bool,
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, Error)]
pub enum ReloadError {
    /// The new file is unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The new file changes a setting that needs a restart.
    #[error("{field} changed: restart kowabungad to apply it")]
    NeedsRestart {
        /// The field path.
        field: &'static str,
    },
    /// The dataplane refused the new configuration.
    #[error("{0:#}")]
    Apply(anyhow::Error),
    /// The node cannot run the new configuration (Konvey source address,
    /// port range).
    #[error("{0}")]
    Node(String),
}

/// A fatal startup failure (exit code [`EXIT_RUNTIME`]).
#[derive(Debug, Error)]
pub enum StartError {
    /// The first apply failed.
    #[error("{0:#}")]
    Apply(anyhow::Error),
    /// Attaching a program failed.
    #[error("{0:#}")]
    Attach(anyhow::Error),
    /// The config needs a dataplane the daemon was not given.
    #[error("no {0} dataplane")]
    Missing(&'static str),
    /// Konvey could not be set up (source address, port range, maps).
    #[error("{0}")]
    Konvey(String),
}

/// The Kawaii interfaces of a config with the role each gets (none without
/// a `kawaii` section).
pub fn interface_roles(config: &ValidConfig) -> Vec<(String, Role)> {
    if config.kawaii.is_none() {
        return Vec::new();
    }
    let ifaces = &config.node.interfaces;
    let mut out = Vec::new();
    if let Some(public) = &ifaces.public {
        out.push((public.clone(), Role::Public));
    }
    if let Some(private) = &ifaces.private {
        out.push((private.clone(), Role::Private));
    }
    out.extend(ifaces.peerings.iter().map(|p| (p.clone(), Role::Peering)));
    out
}

/// The Konvey interfaces of a config (none without a `konvey` section).
pub fn konvey_interfaces(config: &ValidConfig) -> Vec<String> {
    match config.konvey {
        Some(_) => config.node.interfaces.konvey.clone(),
        None => Vec::new(),
    }
}

/// What the daemon reads from the node it runs on; replaceable in tests.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    /// `/proc/sys`, or a test directory.
    pub proc_sys: PathBuf,
    /// The IPv4 addresses of an interface, in the kernel's order.
    pub interface_ipv4: fn(&str) -> Vec<Ipv4Addr>,
}

impl NodeEnv {
    /// The running system.
    pub fn system() -> Self {
        NodeEnv {
            proc_sys: PathBuf::from(sysctl::PROC_SYS),
            interface_ipv4: ipv4_addresses,
        }
    }
}

/// The IPv4 addresses of `ifname` in this network namespace (empty when it
/// has none or does not exist).
pub fn ipv4_addresses(ifname: &str) -> Vec<Ipv4Addr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| a.interface_name == ifname)
        .filter_map(|a| a.address?.as_sockaddr_in().map(|sin| sin.ip()))
        .collect()
}

/// Parses `ip_local_port_range` ("32768\t60999").
pub fn parse_port_range_sysctl(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => Some((lo, hi)),
        _ => None,
    }
}

/// Konvey's node-wide dataplane settings for `config`: the source address
/// (`node.konvey.source_ip`, else the first IPv4 address of the first
/// Konvey interface that is not the VIP, which VRRP moves between nodes)
/// and the port range, checked against
/// `net.ipv4.ip_local_port_range`. `None` without a `konvey` section.
///
/// # Errors
/// One line naming the field and the value.
pub fn konvey_config(config: &ValidConfig, env: &NodeEnv) -> Result<Option<KonveyConfig>, String> {
    if config.konvey.is_none() {
        return Ok(None);
    }
    let node = &config.node.konvey;
    let source = match node.source_ip {
        Some(ip) => ip,
        None => {
            let ifname = config
                .node
                .interfaces
                .konvey
                .first()
                .map_or("", String::as_str);
            let vip = config.konvey.as_ref().map(|k| k.vip);
            (env.interface_ipv4)(ifname)
                .into_iter()
                .find(|a| Some(*a) != vip)
                .ok_or_else(|| {
                    format!(
                        "node.konvey.source_ip: not set, and interface {ifname:?} (node.interfaces.konvey[0]) has no IPv4 address besides the VIP"
                    )
                })?
        }
    };
    let (min, max) = node.nat_ports;
    let path = env.proc_sys.join(IP_LOCAL_PORT_RANGE);
    match std::fs::read_to_string(&path)
        .ok()
        .as_deref()
        .and_then(parse_port_range_sysctl)
    {
        Some((lo, hi)) if min <= hi && lo <= max => {
            return Err(format!(
                "node.konvey.nat_port_range: \"{min}-{max}\" overlaps net.ipv4.ip_local_port_range ({lo}-{hi}), which the node's own connections (health checks) use; choose a range outside it"
            ));
        }
        Some(_) => {}
        None => warn!(
            "cannot read {}: not checking node.konvey.nat_port_range against it",
            path.display()
        ),
    }
    Ok(Some(KonveyConfig {
        source,
        port_min: min,
        port_max: max,
        sample_shift: SAMPLE_SHIFT,
    }))
}

/// A probe result on its way back to the main loop.
type ProbeResult = (CheckKey, ProbeId, Outcome);

/// The running daemon's state: the dataplanes and the configuration they run.
#[derive(Debug)]
pub struct Daemon<D: Dataplane, K: KonveyDataplane = KonveyEngine> {
    dp: Option<D>,
    konvey: Option<Balancer<K>>,
    env: NodeEnv,
    config_path: PathBuf,
    current: ValidConfig,
    compiled: Option<Compiled>,
    bank: u32,
    last_counters: Option<Counters>,
}

impl<D: Dataplane, K: KonveyDataplane> Daemon<D, K> {
    /// Applies `config` to the dataplanes (Kawaii `dp`, Konvey `kv`), then
    /// attaches every interface.
    ///
    /// # Errors
    /// [`StartError`] when a dataplane refuses or is missing.
    pub fn start(
        dp: Option<D>,
        kv: Option<K>,
        config_path: PathBuf,
        config: ValidConfig,
    ) -> Result<Self, StartError> {
        Self::start_with_env(dp, kv, config_path, config, NodeEnv::system())
    }

    /// [`Daemon::start`] reading the node through `env`.
    ///
    /// # Errors
    /// [`StartError`] when a dataplane refuses or is missing.
    pub fn start_with_env(
        dp: Option<D>,
        kv: Option<K>,
        config_path: PathBuf,
        config: ValidConfig,
        env: NodeEnv,
    ) -> Result<Self, StartError> {
        if config.kawaii.is_some() && dp.is_none() {
            return Err(StartError::Missing("kawaii"));
        }
        if config.konvey.is_some() && kv.is_none() {
            return Err(StartError::Missing("konvey"));
        }
        let compiled = compile(&config);
        let mut bank = 0;
        let dp = match (&compiled, dp) {
            (Some(compiled), Some(mut dp)) => {
                bank = dp.apply(compiled).map_err(StartError::Apply)?;
                Some(dp)
            }
            (Some(_), None) => return Err(StartError::Missing("kawaii")),
            (None, _) => None,
        };
        let kv_config = konvey_config(&config, &env).map_err(StartError::Konvey)?;
        let konvey = match (&config.konvey, kv_config, kv) {
            (Some(k), Some(kv_config), Some(engine)) => {
                let mut balancer =
                    Balancer::new(engine).map_err(|e| StartError::Konvey(e.to_string()))?;
                balancer
                    .apply(
                        &kv_config,
                        desired_services(k),
                        config.node.konvey.health,
                        Instant::now(),
                    )
                    .map_err(|e| StartError::Konvey(e.to_string()))?;
                Some(balancer)
            }
            (Some(_), _, None) => return Err(StartError::Missing("konvey")),
            _ => None,
        };
        log_applied(&config, compiled.as_ref(), bank);
        let mut daemon = Daemon {
            dp,
            konvey,
            env,
            config_path,
            current: config,
            compiled,
            bank,
            last_counters: None,
        };
        if let Some(dp) = daemon.dp.as_mut() {
            for (ifname, role) in interface_roles(&daemon.current) {
                dp.attach(&ifname, role).map_err(StartError::Attach)?;
            }
        }
        if let Some(balancer) = daemon.konvey.as_mut() {
            for ifname in konvey_interfaces(&daemon.current) {
                balancer
                    .engine_mut()
                    .attach(&ifname)
                    .map_err(StartError::Attach)?;
            }
        }
        Ok(daemon)
    }

    /// Re-reads the config file and applies it; on error nothing changes.
    ///
    /// # Errors
    /// [`ReloadError`]; the previous configuration stays active.
    pub fn reload(&mut self) -> Result<u32, ReloadError> {
        let new = config::load(&self.config_path)?;
        self.reload_with(new)
    }

    /// Applies an already validated configuration as a reload.
    ///
    /// # Errors
    /// [`ReloadError::NeedsRestart`] or [`ReloadError::Apply`]; the previous
    /// configuration stays active.
    pub fn reload_with(&mut self, new: ValidConfig) -> Result<u32, ReloadError> {
        let (old, next) = (&self.current.node, &new.node);
        if old.interfaces != next.interfaces {
            return Err(ReloadError::NeedsRestart {
                field: "node.interfaces",
            });
        }
        if old.bpffs != next.bpffs {
            return Err(ReloadError::NeedsRestart {
                field: "node.bpffs",
            });
        }
        if old.conntrack_entries != next.conntrack_entries {
            return Err(ReloadError::NeedsRestart {
                field: "node.conntrack_entries",
            });
        }
        if old.vrrp != next.vrrp {
            return Err(ReloadError::NeedsRestart { field: "node.vrrp" });
        }
        if self.current.kawaii.is_some() != new.kawaii.is_some() {
            return Err(ReloadError::NeedsRestart { field: "kawaii" });
        }
        if self.current.konvey.is_some() != new.konvey.is_some() {
            return Err(ReloadError::NeedsRestart { field: "konvey" });
        }
        let kv_config = konvey_config(&new, &self.env).map_err(ReloadError::Node)?;
        let compiled = compile(&new);
        let mut bank = self.bank;
        if let (Some(compiled), Some(dp)) = (&compiled, self.dp.as_mut()) {
            bank = dp.apply(compiled).map_err(ReloadError::Apply)?;
        }
        if let (Some(k), Some(kv_config), Some(balancer)) =
            (&new.konvey, kv_config, self.konvey.as_mut())
        {
            // A failed write is retried by the housekeeping tick; the new
            // configuration is the one to converge to either way.
            if let Err(e) = balancer.apply(
                &kv_config,
                desired_services(k),
                new.node.konvey.health,
                Instant::now(),
            ) {
                error!("konvey: {e} (will retry)");
            }
        }
        log_applied(&new, compiled.as_ref(), bank);
        self.current = new;
        self.compiled = compiled;
        self.bank = bank;
        Ok(bank)
    }

    /// The configuration running now.
    pub fn config(&self) -> &ValidConfig {
        &self.current
    }

    /// What was last applied to Kawaii (`None` without a `kawaii` section).
    pub fn compiled(&self) -> Option<&Compiled> {
        self.compiled.as_ref()
    }

    /// The active bank.
    pub fn bank(&self) -> u32 {
        self.bank
    }

    /// The Kawaii dataplane (`None` without a `kawaii` section).
    pub fn dataplane(&self) -> Option<&D> {
        self.dp.as_ref()
    }

    /// The Konvey balancer (`None` without a `konvey` section).
    pub fn konvey(&self) -> Option<&Balancer<K>> {
        self.konvey.as_ref()
    }

    /// The Konvey balancer, mutably.
    pub fn konvey_mut(&mut self) -> Option<&mut Balancer<K>> {
        self.konvey.as_mut()
    }

    /// Sweeps expired conntrack flows; errors are logged.
    pub fn sweep(&mut self, now_ns: u64) {
        let kawaii = self.dp.as_mut().map(|dp| dp.sweep(now_ns));
        let konvey = self.konvey.as_mut().map(|b| b.engine_mut().sweep(now_ns));
        for result in [kawaii, konvey].into_iter().flatten() {
            match result {
                Ok(report) if report.flows_expired > 0 => debug!(
                    scanned = report.scanned,
                    flows = report.flows_expired,
                    entries = report.entries_removed,
                    "conntrack sweep removed expired flows"
                ),
                Ok(_) => {}
                Err(e) => warn!("{e:#}"),
            }
        }
    }

    /// Logs every pending drop event at `debug`; returns how many.
    pub fn poll_events(&mut self) -> usize {
        let mut events = self
            .dp
            .as_mut()
            .map(|dp| dp.drain_events())
            .unwrap_or_default();
        if let Some(b) = self.konvey.as_mut() {
            events.extend(b.engine_mut().drain_events());
        }
        for event in &events {
            log_drop(event);
        }
        events.len()
    }

    /// Konvey housekeeping: retries failed rotation writes and counts the
    /// flows of draining backends; errors are logged.
    pub fn konvey_housekeeping(&mut self) {
        let Some(balancer) = self.konvey.as_mut() else {
            return;
        };
        if balancer.dirty() {
            if let Err(e) = balancer.reconcile() {
                warn!("konvey: {e} (will retry)");
            }
        }
        if let Err(e) = balancer.refresh_draining() {
            warn!("konvey: {e}");
        }
    }

    /// Logs the counters that moved since the last call at `debug`; returns
    /// the line (empty when nothing moved). Kawaii and Konvey share the
    /// counter names; a node running both logs their sum.
    pub fn log_counters(&mut self) -> String {
        let kawaii = self.dp.as_ref().map(|dp| dp.counters());
        let konvey = self.konvey.as_ref().map(|b| b.engine().counters());
        let mut now: Option<Counters> = None;
        for result in [kawaii, konvey].into_iter().flatten() {
            match result {
                Ok(c) => now = Some(sum_counters(now.as_ref(), &c)),
                Err(e) => warn!("{e:#}"),
            }
        }
        let Some(now) = now else {
            return String::new();
        };
        let delta = match &self.last_counters {
            Some(before) => now.since(before),
            None => now.clone(),
        };
        let line = delta
            .iter()
            .filter(|(_, c)| c.packets > 0)
            .map(|(name, c)| format!("{name}={}", c.packets))
            .collect::<Vec<_>>()
            .join(" ");
        if !line.is_empty() {
            debug!("counters: {line}");
        }
        self.last_counters = Some(now);
        line
    }
}

/// `a + b`, counter by counter.
fn sum_counters(a: Option<&Counters>, b: &Counters) -> Counters {
    let Some(a) = a else {
        return b.clone();
    };
    let mut values =
        [kowabunga_bindings::kw_counter::default(); kowabunga_dataplane::stats::STAT_COUNT];
    for ((slot, (_, x)), (_, y)) in values.iter_mut().zip(a.iter()).zip(b.iter()) {
        slot.packets = x.packets.wrapping_add(y.packets);
        slot.bytes = x.bytes.wrapping_add(y.bytes);
    }
    Counters::from_values(values)
}

fn log_applied(config: &ValidConfig, compiled: Option<&Compiled>, bank: u32) {
    let mut parts = Vec::new();
    if let (Some(k), Some(compiled)) = (&config.kawaii, compiled) {
        parts.push(format!(
            "bank {bank}, {}, snat {}, {} public ips, {} peerings, {} ipsec connections",
            compiled.summary(),
            k.snat_ip,
            k.public_ips.len(),
            k.peerings.len(),
            k.ipsec.len()
        ));
    }
    if let Some(k) = &config.konvey {
        let backends: usize = k.endpoints.iter().map(|e| e.backends.len()).sum();
        let h = &config.node.konvey.health;
        parts.push(format!(
            "konvey vip {}, {} endpoints, {backends} backends, health every {} ms (timeout {} ms, rise {}, fall {})",
            k.vip,
            k.endpoints.len(),
            h.interval.as_millis(),
            h.timeout.as_millis(),
            h.rise,
            h.fall
        ));
    }
    info!("applied config: {}", parts.join("; "));
}

/// Name of an IP protocol number.
pub fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        50 => "esp".into(),
        n => n.to_string(),
    }
}

fn endpoint(addr: Ipv4Addr, port: u16, proto: u8) -> String {
    if matches!(proto, 6 | 17) {
        format!("{addr}:{port}")
    } else {
        addr.to_string()
    }
}

/// The one-line description of a drop event.
pub fn describe_drop(event: &DropEvent) -> String {
    format!(
        "{} {} {} -> {} ifindex {}",
        event.reason_name,
        proto_name(event.proto),
        endpoint(event.saddr, event.sport, event.proto),
        endpoint(event.daddr, event.dport, event.proto),
        event.ifindex
    )
}

fn log_drop(event: &DropEvent) {
    debug!(
        reason = event.reason_name,
        "packet dropped: {}",
        describe_drop(event)
    );
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Runs `kowabungad` with parsed arguments; returns the process exit code.
pub fn run(args: Args) -> ExitCode {
    init_tracing();
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kowabungad: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        println!("config OK");
        return ExitCode::from(EXIT_OK);
    }
    if let Err(e) = caps::check() {
        // The message already starts with "kowabungad needs ...".
        eprintln!("{e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    let result = if args.detach {
        detach(&config)
    } else {
        serve(args.config, config)
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("kowabungad: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn load_options(config: &ValidConfig, subdir: Option<&str>) -> anyhow::Result<LoadOptions> {
    let pin_dir = match subdir {
        Some(sub) => config.node.bpffs.join(sub),
        None => config.node.bpffs.clone(),
    };
    // The default pin directory lives on /sys/fs/bpf, which containers and
    // minimal systems may not have mounted.
    if pin_dir.starts_with(BPFFS_ROOT) && Path::new(BPFFS_ROOT).is_dir() {
        match kowabunga_dataplane::bpffs::ensure_mounted(Path::new(BPFFS_ROOT)) {
            Ok(true) => info!("mounted bpffs on {BPFFS_ROOT}"),
            Ok(false) => {}
            Err(e) => warn!("cannot mount bpffs on {BPFFS_ROOT}: {e}"),
        }
    }
    Ok(LoadOptions {
        pin_dir: Some(pin_dir),
        ct_entries: config.node.conntrack_entries,
    })
}

fn serve(config_path: PathBuf, config: ValidConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Handlers first: a SIGHUP right after "ready" must not kill us.
        let mut signals = Signals::new()?;

        check_interfaces(&config)?;
        let names: Vec<String> = interface_roles(&config)
            .into_iter()
            .map(|(n, _)| n)
            .chain(konvey_interfaces(&config))
            .collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let changed = sysctl::apply(
            Path::new(sysctl::PROC_SYS),
            &sysctl::gateway_settings(&name_refs),
        )?;
        if !changed.is_empty() {
            info!("sysctls set: {}", changed.join(", "));
        }

        let dp = match config.kawaii {
            Some(_) => Some(KawaiiDataplane::load(&load_options(&config, None)?)?),
            None => None,
        };
        let kv = match config.konvey {
            Some(_) => Some(KonveyEngine::load(&load_options(
                &config,
                Some(KONVEY_PIN_SUBDIR),
            )?)?),
            None => None,
        };
        let vrrp_instances = config.node.vrrp.clone();
        let mut daemon = Daemon::start(dp, kv, config_path, config)?;
        let vrrp = start_vrrp(vrrp_instances)?;
        info!("{READY_LINE}");
        main_loop(&mut daemon, &mut signals, vrrp.as_ref()).await;
        if let Some(engine) = vrrp {
            engine.shutdown();
            info!("vrrp: stopped (masters sent priority 0 and removed their VIPs)");
        }
        Ok(())
    })
}

/// Fails with one line naming the first configured interface that does not
/// exist in this network namespace.
fn check_interfaces(config: &ValidConfig) -> anyhow::Result<()> {
    let ifaces = &config.node.interfaces;
    let mut named = Vec::new();
    if config.kawaii.is_some() {
        if let Some(public) = &ifaces.public {
            named.push(("node.interfaces.public".to_owned(), public));
        }
        if let Some(private) = &ifaces.private {
            named.push(("node.interfaces.private".to_owned(), private));
        }
        for (i, p) in ifaces.peerings.iter().enumerate() {
            named.push((format!("node.interfaces.peerings[{i}]"), p));
        }
    }
    if config.konvey.is_some() {
        for (i, k) in ifaces.konvey.iter().enumerate() {
            named.push((format!("node.interfaces.konvey[{i}]"), k));
        }
    }
    for (field, name) in named {
        if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
            anyhow::bail!("{field}: interface {name:?} does not exist");
        }
    }
    Ok(())
}

/// Starts the VRRP engine when `node.vrrp` has instances.
fn start_vrrp(
    instances: Vec<crate::vrrp::config::Instance>,
) -> anyhow::Result<Option<crate::vrrp::driver::Engine>> {
    if instances.is_empty() {
        return Ok(None);
    }
    let engine = crate::vrrp::driver::Engine::start(
        instances,
        crate::vrrp::driver::EngineOptions::default(),
    )?;
    log_vrrp(Some(&engine));
    Ok(Some(engine))
}

/// One `info` line per VRRP instance: state, priority, master, counters.
fn log_vrrp(vrrp: Option<&crate::vrrp::driver::Engine>) {
    for s in vrrp
        .map(crate::vrrp::driver::Engine::status)
        .unwrap_or_default()
    {
        info!("{s}");
    }
}

struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

fn ticker(period: Duration) -> Interval {
    let mut t = interval(period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Runs the Konvey probes due now as tokio tasks that report to `results`.
fn start_probes<D: Dataplane, K: KonveyDataplane>(
    daemon: &mut Daemon<D, K>,
    results: &mpsc::UnboundedSender<ProbeResult>,
) {
    let Some(balancer) = daemon.konvey.as_mut() else {
        return;
    };
    let now = Instant::now();
    if let Err(e) = balancer.handle_timeouts(now) {
        warn!("konvey: {e} (will retry)");
    }
    for request in balancer.poll_probes(now) {
        let results = results.clone();
        tokio::spawn(async move {
            let outcome = probe(&request.target, request.timeout).await;
            // The receiver only goes away when the daemon exits.
            let _ = results.send((request.key, request.id, outcome));
        });
    }
}

/// When the next Konvey probe or probe deadline is due.
fn next_probe_deadline<D: Dataplane, K: KonveyDataplane>(
    daemon: &Daemon<D, K>,
) -> tokio::time::Instant {
    let far = Instant::now() + Duration::from_secs(3600);
    let next = daemon
        .konvey
        .as_ref()
        .and_then(Balancer::poll_timeout)
        .unwrap_or(far);
    tokio::time::Instant::from_std(next)
}

async fn main_loop<D: Dataplane, K: KonveyDataplane>(
    daemon: &mut Daemon<D, K>,
    signals: &mut Signals,
    vrrp: Option<&crate::vrrp::driver::Engine>,
) {
    let mut sweep = ticker(SWEEP_PERIOD);
    let mut events = ticker(EVENTS_PERIOD);
    let mut counters = ticker(COUNTERS_PERIOD);
    let mut housekeeping = ticker(KONVEY_HOUSEKEEPING_PERIOD);
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel::<ProbeResult>();
    // The first tick of an interval fires at once: consume it.
    sweep.tick().await;
    counters.tick().await;
    loop {
        let probe_deadline = next_probe_deadline(daemon);
        tokio::select! {
            _ = tokio::time::sleep_until(probe_deadline) => start_probes(daemon, &probe_tx),
            Some((key, id, outcome)) = probe_rx.recv() => {
                if let Some(balancer) = daemon.konvey.as_mut() {
                    if let Err(e) = balancer.on_outcome(key, id, Instant::now(), outcome) {
                        warn!("konvey: {e} (will retry)");
                    }
                }
            }
            _ = housekeeping.tick() => daemon.konvey_housekeeping(),
            _ = signals.hup.recv() => {
                info!("SIGHUP: reloading {}", daemon.config_path.display());
                if let Err(e) = daemon.reload() {
                    error!("reload failed, keeping the running config: {e}");
                }
            }
            _ = signals.term.recv() => {
                info!("SIGTERM: exiting; XDP programs and pinned maps stay in place");
                break;
            }
            _ = signals.int.recv() => {
                info!("SIGINT: exiting; XDP programs and pinned maps stay in place");
                break;
            }
            _ = sweep.tick() => daemon.sweep(kowabunga_dataplane::monotonic_now_ns()),
            _ = events.tick() => { daemon.poll_events(); }
            _ = counters.tick() => {
                daemon.log_counters();
                log_vrrp(vrrp);
            }
        }
    }
}

fn detach(config: &ValidConfig) -> anyhow::Result<()> {
    let pin_dir = &config.node.bpffs;
    if config.konvey.is_some() {
        let mut kv = KonveyEngine::load(&load_options(config, Some(KONVEY_PIN_SUBDIR))?)?;
        for ifname in konvey_interfaces(config) {
            if kv.detach(&ifname)? {
                info!(interface = %ifname, "detached the konvey program");
            }
        }
        drop(kv);
        let konvey_dir = pin_dir.join(KONVEY_PIN_SUBDIR);
        kowabunga_dataplane::konvey::remove_pinned_maps(&konvey_dir)?;
        let _ = std::fs::remove_dir(konvey_dir.join("links"));
        let _ = std::fs::remove_dir(&konvey_dir);
        info!(
            "removed the pinned Konvey maps under {}",
            konvey_dir.display()
        );
    }
    if config.kawaii.is_none() {
        let _ = std::fs::remove_dir(pin_dir);
        return Ok(());
    }
    let mut dp = KawaiiDataplane::load(&load_options(config, None)?)?;
    for (ifname, _) in interface_roles(config) {
        if dp.detach(&ifname)? {
            info!(interface = %ifname, "detached");
        }
    }
    drop(dp);
    kowabunga_dataplane::kawaii::remove_pinned_maps(pin_dir)?;
    // Empty directories only: anything else is not ours to delete.
    let _ = std::fs::remove_dir(pin_dir.join("links"));
    let _ = std::fs::remove_dir(pin_dir);
    info!("removed the pinned maps under {}", pin_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kowabunga_bindings::{kw_counter, kw_stat, kw_table};
    use kowabunga_dataplane::SweepReport;
    use std::fs;

    /// Records what the daemon asks; can be told to fail.
    #[derive(Debug, Default)]
    struct Fake {
        applied: Vec<Compiled>,
        attached: Vec<(String, Role)>,
        active: Option<u32>,
        fail_apply: bool,
        fail_attach: bool,
        events: Vec<DropEvent>,
        counters: Vec<u64>,
        sweeps: Vec<u64>,
    }

    impl Dataplane for Fake {
        fn apply(&mut self, compiled: &Compiled) -> anyhow::Result<u32> {
            if self.fail_apply {
                anyhow::bail!("map kw_rules: write failed");
            }
            let bank = match self.active {
                Some(b) => 1 - b,
                None => 0,
            };
            self.applied.push(compiled.clone());
            self.active = Some(bank);
            Ok(bank)
        }
        fn attach(&mut self, ifname: &str, role: Role) -> anyhow::Result<()> {
            if self.fail_attach {
                anyhow::bail!("no interface {ifname}");
            }
            self.attached.push((ifname.to_owned(), role));
            Ok(())
        }
        fn detach(&mut self, ifname: &str) -> anyhow::Result<bool> {
            let before = self.attached.len();
            self.attached.retain(|(n, _)| n != ifname);
            Ok(before != self.attached.len())
        }
        fn sweep(&mut self, now_ns: u64) -> anyhow::Result<SweepReport> {
            self.sweeps.push(now_ns);
            Ok(SweepReport::default())
        }
        fn drain_events(&mut self) -> Vec<DropEvent> {
            std::mem::take(&mut self.events)
        }
        fn counters(&self) -> anyhow::Result<Counters> {
            let mut values = [kw_counter::default(); kw_stat::KW_STAT_COUNT as usize];
            for (slot, packets) in values.iter_mut().zip(&self.counters) {
                slot.packets = *packets;
            }
            Ok(Counters::from_values(values))
        }
    }

    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, text: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("kowabungad-test-{tag}-{}.yaml", std::process::id()));
            fs::write(&path, text).expect("write config");
            TempFile(path)
        }
        fn write(&self, text: &str) {
            fs::write(&self.0, text).expect("write config");
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    const GOOD: &str = r#"
node:
  zone: eu-west-a
  interfaces: {public: pub0, private: priv0, peerings: [peer0, peer1]}
kawaii:
  public_ips: [203.0.113.10]
  private_subnet: 10.0.0.0/25
  firewall:
    ingress: [{protocol: tcp, ports: "22"}]
  dnat: [{destination: 10.0.0.10, protocol: tcp, ports: "8080"}]
"#;

    fn started(tag: &str) -> (TempFile, Daemon<Fake>) {
        let file = TempFile::new(tag, GOOD);
        let config = config::load(&file.0).expect("valid");
        let daemon =
            Daemon::start(Some(Fake::default()), None, file.0.clone(), config).expect("start");
        (file, daemon)
    }

    fn kawaii(d: &Daemon<Fake>) -> &Fake {
        d.dataplane().expect("kawaii")
    }

    fn kawaii_mut(d: &mut Daemon<Fake>) -> &mut Fake {
        d.dp.as_mut().expect("kawaii")
    }

    fn ingress_len(d: &Daemon<Fake>) -> usize {
        d.compiled()
            .expect("kawaii")
            .table(kw_table::KW_TABLE_INGRESS)
            .len()
    }

    #[test]
    fn start_applies_then_attaches_every_interface() {
        let (_file, d) = started("start");
        let fake = d.dataplane().expect("kawaii");
        assert_eq!(fake.applied.len(), 1);
        assert_eq!(d.bank(), 0);
        assert_eq!(
            fake.attached,
            [
                ("pub0".to_owned(), Role::Public),
                ("priv0".to_owned(), Role::Private),
                ("peer0".to_owned(), Role::Peering),
                ("peer1".to_owned(), Role::Peering),
            ]
        );
        assert_eq!(Some(&fake.applied[0]), d.compiled());
        assert_eq!(fake.applied[0].table(kw_table::KW_TABLE_DNAT).len(), 1);
    }

    #[test]
    fn start_fails_on_apply_or_attach_errors() {
        let config = config::parse_str(GOOD).expect("valid");
        let fake = Fake {
            fail_apply: true,
            ..Fake::default()
        };
        let err = Daemon::<_, KonveyEngine>::start(Some(fake), None, "x".into(), config.clone())
            .expect_err("apply");
        assert_eq!(err.to_string(), "map kw_rules: write failed");
        let fake = Fake {
            fail_attach: true,
            ..Fake::default()
        };
        let err = Daemon::<_, KonveyEngine>::start(Some(fake), None, "x".into(), config)
            .expect_err("attach");
        assert_eq!(err.to_string(), "no interface pub0");
    }

    #[test]
    fn reload_applies_a_good_config_to_the_other_bank() {
        let (file, mut d) = started("reload-good");
        file.write(&GOOD.replace(
            "ingress: [{protocol: tcp, ports: \"22\"}]",
            "ingress: [{protocol: tcp, ports: \"22,2222\"}]",
        ));
        assert_eq!(d.reload().expect("reload"), 1);
        assert_eq!(d.bank(), 1);
        assert_eq!(ingress_len(&d), 2);
        assert_eq!(kawaii(&d).applied.len(), 2);
        // Attachments are not redone.
        assert_eq!(kawaii(&d).attached.len(), 4);
        assert_eq!(d.reload().expect("reload"), 0);
    }

    #[test]
    fn bad_config_on_reload_keeps_the_old_state() {
        let (file, mut d) = started("reload-bad");
        let before = d.config().clone();
        file.write(&GOOD.replace("\"8080\"", "\"80,x\""));
        let err = d.reload().expect_err("invalid");
        assert!(matches!(err, ReloadError::Config(ConfigError::Invalid(_))));
        assert_eq!(
            err.to_string(),
            r#"kawaii.dnat[0].ports: "80,x" is not a port list ("x" is not a port)"#
        );
        assert_eq!(d.config(), &before);
        assert_eq!(d.bank(), 0);
        assert_eq!(kawaii(&d).applied.len(), 1, "nothing applied");

        // A YAML typo, then a missing file: same.
        file.write(&GOOD.replace("dnat:", "dnatt:"));
        let err = d.reload().expect_err("typo");
        assert!(err.to_string().contains("unknown field `dnatt`"), "{err}");
        fs::remove_file(&file.0).expect("rm");
        let err = d.reload().expect_err("missing");
        assert!(matches!(err, ReloadError::Config(ConfigError::Read { .. })));
        assert_eq!(kawaii(&d).applied.len(), 1);
        assert_eq!(d.config(), &before);

        // And a good file afterwards is applied.
        file.write(GOOD);
        assert_eq!(d.reload().expect("reload"), 1);
    }

    #[test]
    fn reload_refuses_restart_only_changes() {
        let (file, mut d) = started("reload-restart");
        let before = d.config().clone();
        for (yaml, field) in [
            (GOOD.replace("peer1]", "peer2]"), "node.interfaces"),
            (
                GOOD.replace(
                    "  zone: eu-west-a\n",
                    "  zone: eu-west-a\n  bpffs: /sys/fs/bpf/other\n",
                ),
                "node.bpffs",
            ),
            (
                GOOD.replace(
                    "  zone: eu-west-a\n",
                    "  zone: eu-west-a\n  conntrack_entries: 1024\n",
                ),
                "node.conntrack_entries",
            ),
        ] {
            file.write(&yaml);
            let err = d.reload().expect_err(field);
            assert_eq!(
                err.to_string(),
                format!("{field} changed: restart kowabungad to apply it")
            );
            assert_eq!(d.config(), &before);
            assert_eq!(kawaii(&d).applied.len(), 1);
        }
        // nat_port_range and zone are reloadable.
        file.write(&GOOD.replace(
            "  zone: eu-west-a\n",
            "  zone: eu-west-b\n  nat_port_range: \"2000-3000\"\n",
        ));
        d.reload().expect("reload");
        assert_eq!(d.compiled().expect("kawaii").config.port_min, 2000);
    }

    #[test]
    fn failed_apply_on_reload_keeps_the_old_config() {
        let (file, mut d) = started("reload-apply");
        let before = d.config().clone();
        let before_compiled = d.compiled().cloned();
        file.write(&GOOD.replace("\"22\"", "\"23\""));
        kawaii_mut(&mut d).fail_apply = true;
        let err = d.reload().expect_err("apply");
        assert_eq!(err.to_string(), "map kw_rules: write failed");
        assert_eq!(d.config(), &before);
        assert_eq!(d.compiled().cloned(), before_compiled);
        assert_eq!(d.bank(), 0);
    }

    #[test]
    fn events_and_sweeps_reach_the_dataplane() {
        let (_file, mut d) = started("events");
        let event = DropEvent {
            ts_ns: 1,
            ifindex: 3,
            reason: kw_stat::KW_STAT_DROP_INGRESS_DENIED as u8,
            reason_name: "drop_ingress_denied",
            proto: 6,
            saddr: Ipv4Addr::new(198, 51, 100, 1),
            daddr: Ipv4Addr::new(203, 0, 113, 10),
            sport: 40000,
            dport: 23,
        };
        assert_eq!(
            describe_drop(&event),
            "drop_ingress_denied tcp 198.51.100.1:40000 -> 203.0.113.10:23 ifindex 3"
        );
        let icmp = DropEvent {
            proto: 1,
            ..event.clone()
        };
        assert_eq!(
            describe_drop(&icmp),
            "drop_ingress_denied icmp 198.51.100.1 -> 203.0.113.10 ifindex 3"
        );
        kawaii_mut(&mut d).events = vec![event, icmp];
        assert_eq!(d.poll_events(), 2);
        assert_eq!(d.poll_events(), 0);
        d.sweep(42);
        assert_eq!(kawaii(&d).sweeps, [42]);
    }

    #[test]
    fn counters_are_logged_as_deltas() {
        let (_file, mut d) = started("counters");
        kawaii_mut(&mut d).counters = vec![10, 0, 2];
        assert_eq!(d.log_counters(), "fwd_redirect=10 pass_no_config=2");
        kawaii_mut(&mut d).counters = vec![15, 0, 2];
        assert_eq!(d.log_counters(), "fwd_redirect=5");
        assert_eq!(d.log_counters(), "");
    }

    mod konvey {
        use super::*;
        use crate::konvey::engine::fake::FakeKonvey;
        use crate::konvey::health::State;
        use kowabunga_dataplane::konvey::{Backend, Proto, ServiceKey};

        const KONVEY: &str = r#"
node:
  zone: eu-west-a
  interfaces: {konvey: [lb0]}
  konvey:
    health: {interval_ms: 100, timeout_ms: 50}
konvey:
  vip: 10.0.0.100
  endpoints:
    - {name: web, protocol: tcp, port: 80, backend_port: 8080, backend_ips: [10.0.0.11, 10.0.0.12, 10.0.0.13]}
"#;

        /// A /proc/sys with `ip_local_port_range`, removed on drop.
        struct ProcSys(PathBuf);

        impl ProcSys {
            fn new(tag: &str, range: &str) -> Self {
                let root = std::env::temp_dir()
                    .join(format!("kowabungad-proc-{tag}-{}", std::process::id()));
                fs::create_dir_all(root.join("net/ipv4")).expect("mkdir");
                fs::write(root.join(IP_LOCAL_PORT_RANGE), range).expect("write");
                ProcSys(root)
            }
            fn env(&self) -> NodeEnv {
                NodeEnv {
                    proc_sys: self.0.clone(),
                    interface_ipv4: |name| match name {
                        "lb0" => vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 5)],
                        "lb2" => vec![Ipv4Addr::new(10, 0, 0, 100)],
                        _ => Vec::new(),
                    },
                }
            }
        }

        impl Drop for ProcSys {
            fn drop(&mut self) {
                let _ = fs::remove_dir_all(&self.0);
            }
        }

        fn web() -> ServiceKey {
            ServiceKey {
                vip: Ipv4Addr::new(10, 0, 0, 100),
                proto: Proto::Tcp,
                port: 80,
            }
        }

        fn be(last: u8) -> Backend {
            Backend {
                addr: Ipv4Addr::new(10, 0, 0, last),
                port: 8080,
            }
        }

        fn start(
            tag: &str,
            yaml: &str,
            proc_sys: &ProcSys,
        ) -> (TempFile, Result<Daemon<Fake, FakeKonvey>, StartError>) {
            let file = TempFile::new(tag, yaml);
            let config = config::load(&file.0).expect("valid");
            let d = Daemon::start_with_env(
                None,
                Some(FakeKonvey::default()),
                file.0.clone(),
                config,
                proc_sys.env(),
            );
            (file, d)
        }

        fn engine(d: &Daemon<Fake, FakeKonvey>) -> &FakeKonvey {
            d.konvey().expect("konvey").engine()
        }

        #[test]
        fn start_programs_services_then_attaches() {
            let proc_sys = ProcSys::new("start", "32768\t60999\n");
            let (_file, d) = start("kv-start", KONVEY, &proc_sys);
            let d = d.expect("start");
            assert!(d.dataplane().is_none() && d.compiled().is_none());
            let fake = engine(&d);
            let config = fake.config.expect("set_config");
            assert_eq!(
                config.source,
                Ipv4Addr::new(10, 0, 0, 5),
                "first address of lb0 that is not the VIP"
            );
            assert_eq!((config.port_min, config.port_max), (1024, 32767));
            assert_eq!(fake.services[&web()], [be(11), be(12), be(13)]);
            assert_eq!(fake.attached, ["lb0"]);
            assert!(d.konvey().expect("konvey").poll_timeout().is_some());
        }

        #[test]
        fn start_refuses_a_port_range_overlapping_the_local_one() {
            let proc_sys = ProcSys::new("overlap", "20000 60999\n");
            let (_file, d) = start("kv-overlap", KONVEY, &proc_sys);
            let err = d.expect_err("overlap");
            assert_eq!(
                err.to_string(),
                "node.konvey.nat_port_range: \"1024-32767\" overlaps net.ipv4.ip_local_port_range (20000-60999), which the node's own connections (health checks) use; choose a range outside it"
            );
        }

        #[test]
        fn start_needs_a_source_address() {
            let proc_sys = ProcSys::new("source", "32768 60999");
            let yaml = KONVEY.replace("konvey: [lb0]", "konvey: [lb1]");
            let (_file, d) = start("kv-source", &yaml, &proc_sys);
            assert_eq!(
                d.expect_err("no address").to_string(),
                r#"node.konvey.source_ip: not set, and interface "lb1" (node.interfaces.konvey[0]) has no IPv4 address besides the VIP"#
            );
            let only_vip = KONVEY.replace("konvey: [lb0]", "konvey: [lb2]");
            let (_file, d) = start("kv-source-vip", &only_vip, &proc_sys);
            assert!(d.is_err(), "the VIP is not a source address");
            let yaml = yaml.replace("    health:", "    source_ip: 10.0.0.6\n    health:");
            let (_file, d) = start("kv-source2", &yaml, &proc_sys);
            let d = d.expect("explicit source");
            assert_eq!(
                engine(&d).config.expect("config").source,
                Ipv4Addr::new(10, 0, 0, 6)
            );
        }

        #[test]
        fn reload_drains_a_removed_backend_and_refuses_new_sections() {
            let proc_sys = ProcSys::new("reload", "32768 60999");
            let (file, d) = start("kv-reload", KONVEY, &proc_sys);
            let mut d = d.expect("start");
            file.write(&KONVEY.replace("10.0.0.12, ", ""));
            d.reload().expect("reload");
            assert_eq!(engine(&d).services[&web()], [be(11), be(13)]);
            let balancer = d.konvey_mut().expect("konvey");
            balancer.engine_mut().flows.insert(be(12), 1);
            d.konvey_housekeeping();
            let status = d.konvey().expect("konvey").status();
            let drained = status
                .iter()
                .find(|s| s.backend == be(12))
                .expect("draining");
            assert_eq!((drained.state, drained.flows), (State::Draining, Some(1)));
            d.konvey_mut().expect("konvey").engine_mut().flows.clear();
            d.konvey_housekeeping();
            assert!(d.konvey().expect("konvey").draining().next().is_none());

            // A reload that adds a Kawaii section needs a restart.
            let before = d.config().clone();
            file.write(&format!(
                "{}kawaii: {{public_ips: [203.0.113.10], private_subnet: 10.1.0.0/25}}\n",
                KONVEY.replace("konvey: [lb0]", "konvey: [lb0], public: p, private: q")
            ));
            let err = d.reload().expect_err("restart");
            assert!(
                err.to_string().starts_with("node.interfaces changed"),
                "{err}"
            );
            assert_eq!(d.config(), &before);
        }

        /// The main loop's probe machinery (deadline, spawned probes, results
        /// fed back) against real listeners on loopback: a backend whose
        /// listener closes leaves the rotation, and comes back when it listens
        /// again. Bounded: at most 5 s of loop per phase.
        #[test]
        fn probes_drive_the_rotation_over_real_sockets() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let listeners: Vec<std::net::TcpListener> = (11..=13)
                    .map(|last| {
                        std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), 0))
                            .expect("bind")
                    })
                    .collect();
                // One backend_port for all: bind the others on the first one's port.
                let port = listeners[0].local_addr().expect("addr").port();
                drop(listeners);
                let bind = |last: u8| {
                    std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), port))
                        .expect("bind backend")
                };
                let mut up: Vec<Option<std::net::TcpListener>> =
                    vec![Some(bind(11)), Some(bind(12)), Some(bind(13))];
                let yaml = format!(
                    "node:\n  zone: a\n  interfaces: {{konvey: [lb0]}}\n  konvey:\n    source_ip: 127.0.0.5\n    health: {{interval_ms: 50, timeout_ms: 40, rise: 2, fall: 2}}\nkonvey:\n  vip: 10.0.0.100\n  endpoints:\n    - {{name: web, protocol: tcp, port: 80, backend_port: {port}, backend_ips: [127.0.0.11, 127.0.0.12, 127.0.0.13]}}\n"
                );
                let proc_sys = ProcSys::new("probes", "32768 60999");
                let (_file, d) = start("kv-probes", &yaml, &proc_sys);
                let mut d = d.expect("start");
                let key = ServiceKey {
                    vip: Ipv4Addr::new(10, 0, 0, 100),
                    proto: Proto::Tcp,
                    port: 80,
                };
                let backend = |last: u8| Backend {
                    addr: Ipv4Addr::new(127, 0, 0, last),
                    port,
                };
                let (tx, mut rx) = mpsc::unbounded_channel::<ProbeResult>();

                // Runs the loop until the programmed rotation is `want`.
                async fn run_until(
                    d: &mut Daemon<Fake, FakeKonvey>,
                    tx: &mpsc::UnboundedSender<ProbeResult>,
                    rx: &mut mpsc::UnboundedReceiver<ProbeResult>,
                    key: ServiceKey,
                    want: &[Backend],
                ) -> Duration {
                    let started = Instant::now();
                    while started.elapsed() < Duration::from_secs(5) {
                        if engine(d).services.get(&key).map(Vec::as_slice) == Some(want) {
                            return started.elapsed();
                        }
                        let deadline = next_probe_deadline(d);
                        tokio::select! {
                            _ = tokio::time::sleep_until(deadline) => start_probes(d, tx),
                            Some((k, id, outcome)) = rx.recv() => {
                                let b = d.konvey_mut().expect("konvey");
                                let _ = b.on_outcome(k, id, Instant::now(), outcome);
                            }
                        }
                    }
                    panic!("rotation never became {want:?}: {:?}", engine(d).services);
                }

                let all = [backend(11), backend(12), backend(13)];
                run_until(&mut d, &tx, &mut rx, key, &all).await;
                up[1] = None; // 127.0.0.12 stops listening: refused
                let took = run_until(&mut d, &tx, &mut rx, key, &[backend(11), backend(13)]).await;
                assert!(took < Duration::from_secs(2), "out after {took:?}");
                up[1] = Some(bind(12));
                run_until(&mut d, &tx, &mut rx, key, &all).await;
                let status = d.konvey().expect("konvey").status();
                assert!(status.iter().all(|s| s.state == State::Up), "{status:?}");
                drop(up);
            });
        }

        #[test]
        fn one_node_runs_kawaii_and_konvey() {
            let proc_sys = ProcSys::new("both", "32768 60999");
            let yaml = format!(
                "{}{}",
                GOOD.replace(
                    "peerings: [peer0, peer1]}",
                    "peerings: [peer0, peer1], konvey: [lb0]}"
                ),
                KONVEY
                    .split("konvey:\n  vip")
                    .nth(1)
                    .map(|rest| format!("konvey:\n  vip{rest}"))
                    .expect("konvey section")
            );
            let file = TempFile::new("kv-both", &yaml);
            let config = config::load(&file.0).expect("valid");
            let mut d = Daemon::start_with_env(
                Some(Fake::default()),
                Some(FakeKonvey::default()),
                file.0.clone(),
                config,
                proc_sys.env(),
            )
            .expect("start");
            let kawaii = d.dataplane().expect("kawaii");
            assert_eq!(kawaii.applied.len(), 1);
            assert_eq!(kawaii.attached.len(), 4);
            assert_eq!(engine(&d).attached, ["lb0"]);
            assert_eq!(engine(&d).services[&web()].len(), 3);
            // A reload reaches both.
            file.write(
                &yaml
                    .replace("10.0.0.12, ", "")
                    .replace("\"8080\"", "\"8081\""),
            );
            assert_eq!(d.reload().expect("reload"), 1);
            assert_eq!(engine(&d).services[&web()], [be(11), be(13)]);
            assert_eq!(d.dataplane().expect("kawaii").applied.len(), 2);
            d.sweep(7);
            assert_eq!(d.dataplane().expect("kawaii").sweeps, [7]);
            assert_eq!(engine(&d).sweeps, [7]);
        }

        #[test]
        fn a_konvey_config_needs_a_konvey_dataplane() {
            let config = config::parse_str(KONVEY).expect("valid");
            let err = Daemon::<Fake, FakeKonvey>::start(None, None, "x".into(), config)
                .expect_err("missing");
            assert_eq!(err.to_string(), "no konvey dataplane");
        }
    }

    #[test]
    fn node_helpers() {
        assert_eq!(
            parse_port_range_sysctl("32768\t60999\n"),
            Some((32768, 60999))
        );
        assert_eq!(parse_port_range_sysctl("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_port_range_sysctl("x"), None);
        assert_eq!(ipv4_addresses("lo"), [Ipv4Addr::LOCALHOST]);
        assert!(ipv4_addresses("no-such-if0").is_empty());
        // Kawaii-only: no Konvey settings, no Konvey interfaces.
        let config = config::parse_str(GOOD).expect("valid");
        assert_eq!(konvey_config(&config, &NodeEnv::system()), Ok(None));
        assert!(konvey_interfaces(&config).is_empty());
        assert_eq!(interface_roles(&config).len(), 4);
    }

    #[test]
    fn cli_parses() {
        let args = Args::try_parse_from(["kowabungad", "--config", "/etc/k.yaml", "--check"])
            .expect("args");
        assert_eq!(args.config, PathBuf::from("/etc/k.yaml"));
        assert!(args.check && !args.detach);
        assert!(Args::try_parse_from(["kowabungad"]).is_err());
        assert!(Args::try_parse_from(["kowabungad", "-c", "x", "--check", "--detach"]).is_err());
    }
}
