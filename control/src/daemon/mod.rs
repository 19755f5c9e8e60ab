//! `kowabungad`: the node daemon's command line, start-up, supervisor loop
//! and node discovery. Roles plug in through [`crate::role::Role`] and are
//! listed once, in [`registry`].
//!
//! | file | job |
//! |---|---|
//! | [`args`] | the command line |
//! | [`mod@self`] | [`run`]: exit codes, `--check`, `--detach`, start-up |
//! | [`registry`] | the roles a node can run, in start order |
//! | [`supervisor`] | [`supervisor::Daemon`]: the roles and their configuration, reload |
//! | [`main_loop`] | signals, periodic ticks, role timers, watchdog |
//! | [`notify`] | the systemd notify protocol: ready, reloading, stopping, watchdog |
//! | [`traffic`] | the one-line traffic summary at `info` |
//! | [`node`] | node discovery: interface addresses, `/proc/sys`, pin directories |
//! | [`sysctl`] | the kernel settings a gateway needs |
//! | [`veth`] | veth interfaces: one warning at start with what their peers need |
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
//! Startup: logging (`RUST_LOG`, default `info`, to stderr; `--log-format
//! json` writes one JSON object a line), read and
//! validate the config, capability check, interfaces checked (one `warn`
//! per veth with what its peer and the sending hosts need, see [`veth`]),
//! sysctls (see [`sysctl`]),
//! load the dataplanes the config asks for (Kawaii with maps pinned under
//! `node.bpffs`, Konvey under `node.bpffs/konvey`; pins of another ABI
//! version are refused with the one line of
//! [`kowabunga_dataplane::kawaii::Error::AbiMismatch`], exit 1, see
//! [`kowabunga_dataplane::abi`]), apply the config,
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
//! * Every 10 s: conntrack sweep, and when the counters moved, one
//!   `traffic:` line at `info` (see [`traffic`]). Every 200 ms: drop events
//!   are logged at `debug` with reason and tuple. Every 60 s: counters at
//!   `debug`.
//!
//! Under systemd (`Type=notify`, see `packaging/kowabungad.service`):
//! `READY=1` once ready, `RELOADING=1` then `READY=1` around each
//! `SIGHUP`, `STOPPING=1` on `SIGTERM`, and `WATCHDOG=1` from the main
//! loop every half `WatchdogSec=` (see [`notify`]).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use kowabunga_dataplane::caps;
use tokio::sync::Notify;
use tracing::info;

use crate::config::{self, ValidConfig};

pub mod args;
pub mod main_loop;
pub mod netns;
pub mod node;
pub mod notify;
pub mod registry;
pub mod state;
pub mod supervisor;
pub mod sysctl;
#[cfg(test)]
pub(crate) mod testing;
pub mod traffic;
pub mod veth;

pub use args::{Args, LogFormat};
pub use supervisor::Daemon;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Runtime failure: capabilities, sysctls, loading or attaching.
pub const EXIT_RUNTIME: u8 = 1;
/// The configuration is unusable; nothing was applied.
pub const EXIT_CONFIG: u8 = 2;

/// Line logged once the programs are attached and the config applied.
pub const READY_LINE: &str = "kowabungad ready";

/// Crates whose `info` lines are per request (hickory's): `warn` and up
/// only, unless `RUST_LOG` says otherwise.
pub const QUIET_CRATES: &str =
    "hickory_server=warn,hickory_proto=warn,hickory_net=warn,hickory_resolver=warn";

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // hickory logs every request at info: Kiwi counts them instead.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_CRATES}")));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => fmt.with_ansi(ansi).try_init(),
        LogFormat::Json => fmt.json().with_ansi(false).try_init(),
    };
}

/// Reads the systemd notify variables and removes them from the
/// environment, so that the programs the daemon starts (charon, nft) do
/// not notify in its name. Called before any thread exists.
fn take_notifier() -> notify::Notifier {
    let notifier = notify::Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!("systemd notifications disabled: {e}");
        notify::Notifier::disabled()
    });
    for var in [
        notify::NOTIFY_SOCKET,
        notify::WATCHDOG_USEC,
        notify::WATCHDOG_PID,
    ] {
        std::env::remove_var(var);
    }
    notifier
}

/// Runs `kowabungad` with parsed arguments; returns the process exit code.
pub fn run(args: Args) -> ExitCode {
    init_tracing(args.log_format);
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
    // Before node.netns: an abstract NOTIFY_SOCKET lives in our namespace.
    let notifier = take_notifier();
    // Before any thread exists: every thread of the daemon is born in it.
    if let Some(name) = &config.node.netns {
        if let Err(e) = netns::enter(name) {
            eprintln!("kowabungad: {e:#}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    }
    if let Err(e) = caps::check() {
        // The message already starts with "kowabungad needs ...".
        eprintln!("{e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    let result = node::prepare_pins(&config).and_then(|()| {
        if args.detach {
            registry::detach(&config)?;
            restore_sysctls(&config)
        } else {
            serve(args.config, config, &notifier)
        }
    });
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("kowabungad: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// `--detach`: the sysctls the daemon changed get the values it found.
fn restore_sysctls(config: &ValidConfig) -> anyhow::Result<()> {
    let dir = state::dir_for(&config.node.bpffs);
    let previous = state::take_sysctls(&dir)?;
    let done = sysctl::restore(Path::new(sysctl::PROC_SYS), &previous)?;
    if !done.is_empty() {
        info!("sysctls restored: {}", done.join(", "));
    }
    Ok(())
}

/// Start-up and the loop: interfaces checked, sysctls set, every role
/// loaded and attached in registry order, then `kowabungad ready`.
fn serve(
    config_path: PathBuf,
    config: ValidConfig,
    notifier: &notify::Notifier,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Handlers first: a SIGHUP right after "ready" must not kill us.
        let mut signals = main_loop::Signals::new()?;

        registry::check_interfaces(&config)?;
        veth::warn_veths(&registry::interfaces(&config));
        let names: Vec<String> = registry::interfaces(&config)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // A node without interface roles (Kiwi alone) forwards nothing.
        let settings = if name_refs.is_empty() {
            Vec::new()
        } else {
            sysctl::gateway_settings(&name_refs)
        };
        let changed = sysctl::apply(Path::new(sysctl::PROC_SYS), &settings)?;
        if !changed.is_empty() {
            let keys: Vec<String> = changed.iter().map(sysctl::Previous::key).collect();
            info!("sysctls set: {}", keys.join(", "));
            state::record_sysctls(&state::dir_for(&config.node.bpffs), &changed)?;
        }

        let ctx = registry::Context {
            env: node::NodeEnv::system(),
            wake: Arc::new(Notify::new()),
        };
        let roles = registry::load(&config, &ctx)?;
        let api_socket = config.node.api_socket.clone();
        let mut daemon = Daemon::start(roles, config_path, config, ctx.wake)?;
        // The socket is the operator's convenience: the gateway runs without it.
        let mut inbox = match crate::api::server::start(&api_socket) {
            Ok(inbox) => {
                info!("operator socket on {}", api_socket.display());
                inbox
            }
            Err(e) => {
                tracing::warn!("{e}: `kowabunga` cannot reach this daemon (flows and drops still work from the pinned maps)");
                crate::api::server::Inbox::closed()
            }
        };
        if let Some(addr) = daemon.config().node.metrics_listen {
            match crate::metrics::http::start(addr, inbox.sender()).await {
                Ok(bound) => info!("metrics on http://{bound}/metrics"),
                Err(e) => tracing::warn!("{e}: no metrics"),
            }
        }
        info!("{READY_LINE}");
        notifier.ready(&main_loop::ready_status(&daemon));
        main_loop::run(&mut daemon, &mut signals, notifier, &mut inbox).await;
        daemon.shutdown();
        Ok(())
    })
}
