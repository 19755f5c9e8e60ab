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
//! load the dataplane with maps pinned under `node.bpffs`, apply the
//! config, attach the programs (public, private, each peering), then log
//! `kowabungad ready`.
//!
//! Running:
//! * `SIGHUP`: re-read, validate and apply the file. On any error the
//!   running configuration stays, one line is logged, the daemon continues.
//!   `node.interfaces`, `node.bpffs` and `node.conntrack_entries` only
//!   change with a restart (a reload that changes them is refused).
//! * `SIGTERM` / `SIGINT`: exit 0. Pinned maps and links stay, so traffic
//!   keeps flowing and the next daemon takes over without a gap; run
//!   `kowabungad --config FILE --detach` to remove them.
//! * Every 10 s: conntrack sweep. Every 200 ms: drop events are logged at
//!   `debug` with reason and tuple. Every 60 s: counters at `debug`.

use std::io::IsTerminal as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kowabunga_dataplane::{caps, Counters, DropEvent, LoadOptions, Role};
use thiserror::Error;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{interval, Interval, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::config::compile::{compile, Compiled};
use crate::config::{self, ConfigError, ValidConfig};
use crate::engine::{Dataplane, KawaiiDataplane};
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

/// Command line of `kowabungad`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kowabungad",
    version,
    about = "Kowabunga node daemon (Kawaii XDP gateway)"
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
}

/// The interfaces of a config with the role each gets.
pub fn interface_roles(config: &ValidConfig) -> Vec<(String, Role)> {
    let ifaces = &config.node.interfaces;
    let mut out = vec![
        (ifaces.public.clone(), Role::Public),
        (ifaces.private.clone(), Role::Private),
    ];
    out.extend(ifaces.peerings.iter().map(|p| (p.clone(), Role::Peering)));
    out
}

/// The running daemon's state: the dataplane and the configuration it runs.
#[derive(Debug)]
pub struct Daemon<D: Dataplane> {
    dp: D,
    config_path: PathBuf,
    current: ValidConfig,
    compiled: Compiled,
    bank: u32,
    last_counters: Option<Counters>,
}

impl<D: Dataplane> Daemon<D> {
    /// Applies `config` to `dp`, then attaches every interface.
    ///
    /// # Errors
    /// [`StartError`] when the dataplane refuses.
    pub fn start(mut dp: D, config_path: PathBuf, config: ValidConfig) -> Result<Self, StartError> {
        let compiled = compile(&config);
        let bank = dp.apply(&compiled).map_err(StartError::Apply)?;
        log_applied(&config, &compiled, bank);
        for (ifname, role) in interface_roles(&config) {
            dp.attach(&ifname, role).map_err(StartError::Attach)?;
        }
        Ok(Daemon {
            dp,
            config_path,
            current: config,
            compiled,
            bank,
            last_counters: None,
        })
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
        let compiled = compile(&new);
        let bank = self.dp.apply(&compiled).map_err(ReloadError::Apply)?;
        log_applied(&new, &compiled, bank);
        self.current = new;
        self.compiled = compiled;
        self.bank = bank;
        Ok(bank)
    }

    /// The configuration running now.
    pub fn config(&self) -> &ValidConfig {
        &self.current
    }

    /// What was last applied.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The active bank.
    pub fn bank(&self) -> u32 {
        self.bank
    }

    /// The dataplane.
    pub fn dataplane(&self) -> &D {
        &self.dp
    }

    /// Sweeps expired conntrack flows; errors are logged.
    pub fn sweep(&mut self, now_ns: u64) {
        match self.dp.sweep(now_ns) {
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

    /// Logs every pending drop event at `debug`; returns how many.
    pub fn poll_events(&mut self) -> usize {
        let events = self.dp.drain_events();
        for event in &events {
            log_drop(event);
        }
        events.len()
    }

    /// Logs the counters that moved since the last call at `debug`; returns
    /// the line (empty when nothing moved).
    pub fn log_counters(&mut self) -> String {
        let now = match self.dp.counters() {
            Ok(c) => c,
            Err(e) => {
                warn!("{e:#}");
                return String::new();
            }
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

fn log_applied(config: &ValidConfig, compiled: &Compiled, bank: u32) {
    let k = &config.kawaii;
    info!(
        "applied config: bank {bank}, {}, snat {}, {} public ips, {} peerings, {} ipsec connections",
        compiled.summary(),
        k.snat_ip,
        k.public_ips.len(),
        k.peerings.len(),
        k.ipsec.len()
    );
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

fn load_options(config: &ValidConfig) -> anyhow::Result<LoadOptions> {
    let pin_dir = config.node.bpffs.clone();
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
            .collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let changed = sysctl::apply(
            Path::new(sysctl::PROC_SYS),
            &sysctl::gateway_settings(&name_refs),
        )?;
        if !changed.is_empty() {
            info!("sysctls set: {}", changed.join(", "));
        }

        let dp = KawaiiDataplane::load(&load_options(&config)?)?;
        let mut daemon = Daemon::start(dp, config_path, config)?;
        info!("{READY_LINE}");
        main_loop(&mut daemon, &mut signals).await;
        Ok(())
    })
}

/// Fails with one line naming the first configured interface that does not
/// exist in this network namespace.
fn check_interfaces(config: &ValidConfig) -> anyhow::Result<()> {
    let ifaces = &config.node.interfaces;
    let mut named = vec![
        ("node.interfaces.public".to_owned(), &ifaces.public),
        ("node.interfaces.private".to_owned(), &ifaces.private),
    ];
    for (i, p) in ifaces.peerings.iter().enumerate() {
        named.push((format!("node.interfaces.peerings[{i}]"), p));
    }
    for (field, name) in named {
        if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
            anyhow::bail!("{field}: interface {name:?} does not exist");
        }
    }
    Ok(())
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

async fn main_loop<D: Dataplane>(daemon: &mut Daemon<D>, signals: &mut Signals) {
    let mut sweep = ticker(SWEEP_PERIOD);
    let mut events = ticker(EVENTS_PERIOD);
    let mut counters = ticker(COUNTERS_PERIOD);
    // The first tick of an interval fires at once: consume it.
    sweep.tick().await;
    counters.tick().await;
    loop {
        tokio::select! {
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
            _ = counters.tick() => { daemon.log_counters(); }
        }
    }
}

fn detach(config: &ValidConfig) -> anyhow::Result<()> {
    let mut dp = KawaiiDataplane::load(&load_options(config)?)?;
    for (ifname, _) in interface_roles(config) {
        if dp.detach(&ifname)? {
            info!(interface = %ifname, "detached");
        }
    }
    drop(dp);
    let pin_dir = &config.node.bpffs;
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
        let daemon = Daemon::start(Fake::default(), file.0.clone(), config).expect("start");
        (file, daemon)
    }

    fn ingress_len(d: &Daemon<Fake>) -> usize {
        d.compiled().table(kw_table::KW_TABLE_INGRESS).len()
    }

    #[test]
    fn start_applies_then_attaches_every_interface() {
        let (_file, d) = started("start");
        let fake = d.dataplane();
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
        assert_eq!(fake.applied[0], *d.compiled());
        assert_eq!(fake.applied[0].table(kw_table::KW_TABLE_DNAT).len(), 1);
    }

    #[test]
    fn start_fails_on_apply_or_attach_errors() {
        let config = config::parse_str(GOOD).expect("valid");
        let fake = Fake {
            fail_apply: true,
            ..Fake::default()
        };
        let err = Daemon::start(fake, "x".into(), config.clone()).expect_err("apply");
        assert_eq!(err.to_string(), "map kw_rules: write failed");
        let fake = Fake {
            fail_attach: true,
            ..Fake::default()
        };
        let err = Daemon::start(fake, "x".into(), config).expect_err("attach");
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
        assert_eq!(d.dataplane().applied.len(), 2);
        // Attachments are not redone.
        assert_eq!(d.dataplane().attached.len(), 4);
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
        assert_eq!(d.dataplane().applied.len(), 1, "nothing applied");

        // A YAML typo, then a missing file: same.
        file.write(&GOOD.replace("dnat:", "dnatt:"));
        let err = d.reload().expect_err("typo");
        assert!(err.to_string().contains("unknown field `dnatt`"), "{err}");
        fs::remove_file(&file.0).expect("rm");
        let err = d.reload().expect_err("missing");
        assert!(matches!(err, ReloadError::Config(ConfigError::Read { .. })));
        assert_eq!(d.dataplane().applied.len(), 1);
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
            assert_eq!(d.dataplane().applied.len(), 1);
        }
        // nat_port_range and zone are reloadable.
        file.write(&GOOD.replace(
            "  zone: eu-west-a\n",
            "  zone: eu-west-b\n  nat_port_range: \"2000-3000\"\n",
        ));
        d.reload().expect("reload");
        assert_eq!(d.compiled().config.port_min, 2000);
    }

    #[test]
    fn failed_apply_on_reload_keeps_the_old_config() {
        let (file, mut d) = started("reload-apply");
        let before = d.config().clone();
        let before_compiled = d.compiled().clone();
        file.write(&GOOD.replace("\"22\"", "\"23\""));
        d.dp.fail_apply = true;
        let err = d.reload().expect_err("apply");
        assert_eq!(err.to_string(), "map kw_rules: write failed");
        assert_eq!(d.config(), &before);
        assert_eq!(d.compiled(), &before_compiled);
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
        d.dp.events = vec![event, icmp];
        assert_eq!(d.poll_events(), 2);
        assert_eq!(d.poll_events(), 0);
        d.sweep(42);
        assert_eq!(d.dataplane().sweeps, [42]);
    }

    #[test]
    fn counters_are_logged_as_deltas() {
        let (_file, mut d) = started("counters");
        d.dp.counters = vec![10, 0, 2];
        assert_eq!(d.log_counters(), "fwd_redirect=10 pass_no_config=2");
        d.dp.counters = vec![15, 0, 2];
        assert_eq!(d.log_counters(), "fwd_redirect=5");
        assert_eq!(d.log_counters(), "");
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
