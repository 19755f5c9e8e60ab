//! `kowabunga`, the operator's command line of a Kowabunga node.
//!
//! It asks the daemon over its socket (`node.api.socket`, default
//! [`crate::api::DEFAULT_SOCKET`], root only) for what only the daemon
//! knows (status, health, VRRP, reloads), and reads conntrack and counters
//! from the pinned maps itself, so `flows` and `drops` work while the
//! daemon is stopped.
//!
//! ```text
//! kowabunga [--socket PATH] [--config FILE] [--bpffs DIR] [--json] COMMAND
//!   status                 node, roles, programs, config generation, counts
//!   flows [--limit N] [--proto P] [--src A] [--dst A] [--port N] [--vip A] [--backend A[:P]]
//!   services | backends    Konvey rotations, backend health and flows
//!   drops [--interval-ms N] counters by reason with rates, sampled drops
//!   vrrp | ipsec | dns     the other roles
//!   reload                 apply the config file now (as SIGHUP)
//!   check FILE             validate FILE, touch nothing
//! ```
//!
//! Exit codes: [`EXIT_OK`] 0, [`EXIT_RUNTIME`] 1 (the daemon or a map
//! failed, the node does not run that role), [`EXIT_CONFIG`] 2 (a
//! configuration refused by `reload` or `check`, a usage error),
//! [`EXIT_UNREACHABLE`] 3 (no daemon answers on the socket).
//!
//! | file | job |
//! |---|---|
//! | [`mod@self`] | arguments, dispatch, exit codes |
//! | [`status`], [`flows`], [`backends`], [`drops`], [`vrrp`], [`roles`], [`reload`] | one subcommand each: its pure formatting |
//! | [`pins`] | the pinned maps the CLI reads itself |
//! | [`table`] | aligned text tables |

pub mod backends;
pub mod drops;
pub mod flows;
pub mod pins;
pub mod reload;
pub mod roles;
pub mod status;
pub mod table;
pub mod vrrp;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::Serialize;
use thiserror::Error;

use crate::api::{self, client, Answer, ApiError, ErrorKind, Request};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The daemon or a map failed, or the node does not run the role asked.
pub const EXIT_RUNTIME: u8 = 1;
/// A configuration refused (`reload`, `check`) or a usage error.
pub const EXIT_CONFIG: u8 = 2;
/// No daemon answers on the socket.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Default `--limit` of `flows`.
pub const DEFAULT_LIMIT: usize = 100;

/// Errors of the CLI; each has its exit code ([`CliError::exit_code`]).
#[derive(Debug, Error)]
pub enum CliError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The daemon's socket.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// A pinned map could not be opened or read.
    #[error("pinned maps: {0}")]
    Pins(String),
    /// A configuration file is refused.
    #[error("{0}")]
    Config(String),
    /// The answer is not the one asked for.
    #[error("unexpected answer from the daemon")]
    Unexpected,
}

impl CliError {
    /// The process exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => EXIT_CONFIG,
            CliError::Api(ApiError::Unreachable { .. }) => EXIT_UNREACHABLE,
            CliError::Api(ApiError::Daemon(e)) if e.kind == ErrorKind::ConfigRefused => EXIT_CONFIG,
            _ => EXIT_RUNTIME,
        }
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "kowabunga",
    version,
    about = "Operate a Kowabunga node (kowabungad)"
)]
pub struct Cli {
    /// The daemon's socket (default: the config's node.api.socket, else
    /// /run/kowabunga/kowabungad.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// The node's configuration file: where the socket and the pinned maps are.
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    /// The pin directory (node.bpffs) for `flows` and `drops` (default: the
    /// config's, else the daemon's, else /sys/fs/bpf/kowabunga).
    #[arg(long, global = true)]
    pub bpffs: Option<PathBuf>,
    /// JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Node, zone, roles, programs and their attach mode, config generation, uptime, VRRP, counts.
    Status,
    /// Conntrack flows, filtered, at most --limit.
    Flows {
        /// At most this many flows.
        #[arg(long, default_value_t = DEFAULT_LIMIT)]
        limit: usize,
        /// tcp, udp, icmp or a protocol number.
        #[arg(long)]
        proto: Option<String>,
        /// Client address.
        #[arg(long)]
        src: Option<std::net::Ipv4Addr>,
        /// Original destination address.
        #[arg(long)]
        dst: Option<std::net::Ipv4Addr>,
        /// A port on either side, before or after translation.
        #[arg(long)]
        port: Option<u16>,
        /// The VIP (or public address) of the flow.
        #[arg(long)]
        vip: Option<std::net::Ipv4Addr>,
        /// The translated destination: ADDR or ADDR:PORT.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Konvey services and their rotations.
    Services,
    /// Konvey backends: health, last probe, flows; draining backends.
    Backends,
    /// Drop and pass counters by reason, with rates; the last sampled drops.
    Drops {
        /// Rate interval in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// VRRP instances.
    Vrrp,
    /// IPsec tunnels: state, since when, last failure.
    Ipsec,
    /// Kiwi (DNS): zones and query counters.
    Dns,
    /// Apply the configuration file now (as SIGHUP); prints what changed or the refusal.
    Reload,
    /// Validate FILE as kowabungad would; touches nothing.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Runs the CLI; returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    match execute(&cli) {
        Ok(text) => {
            print!("{text}");
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("kowabunga: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"{e}\""));
    s.push('\n');
    s
}

/// What the command prints, or its error.
///
/// # Errors
/// [`CliError`].
pub fn execute(cli: &Cli) -> Result<String, CliError> {
    let config = match &cli.config {
        Some(path) => Some(crate::config::load(path).map_err(|e| CliError::Config(e.to_string()))?),
        None => None,
    };
    let socket = cli
        .socket
        .clone()
        .or_else(|| config.as_ref().map(|c| c.node.api_socket.clone()))
        .unwrap_or_else(|| PathBuf::from(api::DEFAULT_SOCKET));
    let ask = |r: Request| client::ask(&socket, r).map_err(CliError::from);
    let bpffs = || -> PathBuf {
        cli.bpffs
            .clone()
            .or_else(|| config.as_ref().map(|c| c.node.bpffs.clone()))
            .or_else(|| match client::ask(&socket, Request::Status) {
                Ok(Answer::Status(s)) => Some(PathBuf::from(s.bpffs)),
                _ => None,
            })
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/kowabunga"))
    };
    match &cli.command {
        Command::Status => match ask(Request::Status)? {
            Answer::Status(s) if cli.json => Ok(json(&s)),
            Answer::Status(s) => Ok(status::format(&s)),
            _ => Err(CliError::Unexpected),
        },
        Command::Flows {
            limit,
            proto,
            src,
            dst,
            port,
            vip,
            backend,
        } => {
            let filter = flows::Filter {
                proto: proto.as_deref().map(flows::parse_proto).transpose()?,
                src: *src,
                dst: *dst,
                port: *port,
                vip: *vip,
                backend: backend
                    .as_deref()
                    .map(|b| flows::parse_endpoint("--backend", b))
                    .transpose()?,
            };
            let dirs = pins::role_dirs(&bpffs());
            if dirs.is_empty() {
                return Err(CliError::Pins(format!(
                    "no conntrack maps pinned under {}",
                    bpffs().display()
                )));
            }
            let tables = dirs
                .iter()
                .map(|(role, dir)| Ok((*role, pins::ct_tables(dir)?)))
                .collect::<Result<Vec<_>, CliError>>()?;
            let listing = flows::list(
                &tables,
                &filter,
                *limit,
                kowabunga_dataplane::monotonic_now_ns(),
            )?;
            Ok(if cli.json {
                json(&listing)
            } else {
                flows::format(&listing)
            })
        }
        Command::Services | Command::Backends => match ask(Request::Backends)? {
            Answer::Backends(b) if cli.json => Ok(json(&b)),
            Answer::Backends(b) if matches!(cli.command, Command::Services) => {
                Ok(backends::format_services(&b))
            }
            Answer::Backends(b) => Ok(backends::format_backends(&b)),
            _ => Err(CliError::Unexpected),
        },
        Command::Drops { interval_ms } => drops_cmd(cli, &bpffs(), &socket, *interval_ms),
        Command::Vrrp => match ask(Request::Vrrp)? {
            Answer::Vrrp(v) if cli.json => Ok(json(&v)),
            Answer::Vrrp(v) => Ok(vrrp::format(&v)),
            _ => Err(CliError::Unexpected),
        },
        Command::Ipsec => match ask(Request::Ipsec)? {
            Answer::Ipsec(t) if cli.json => Ok(json(&t)),
            Answer::Ipsec(t) => Ok(roles::format_tunnels(&t)),
            _ => Err(CliError::Unexpected),
        },
        Command::Dns => match ask(Request::Dns)? {
            Answer::Dns(d) if cli.json => Ok(json(&d)),
            Answer::Dns(d) => Ok(roles::format_dns(&d)),
            _ => Err(CliError::Unexpected),
        },
        Command::Reload => match ask(Request::Reload)? {
            Answer::Reload(r) if cli.json => Ok(json(&r)),
            Answer::Reload(r) => Ok(reload::format_reload(&r)),
            _ => Err(CliError::Unexpected),
        },
        Command::Check { file } => match reload::check(file) {
            Ok(_) if cli.json => Ok(json(&serde_json::json!({"ok": true, "file": file}))),
            Ok(line) => Ok(line),
            Err(e) => Err(CliError::Config(e)),
        },
    }
}

#[derive(Serialize)]
struct DropsJson {
    reasons: Vec<drops::Reason>,
    events: Option<Vec<api::wire::DropSample>>,
}

fn drops_cmd(cli: &Cli, bpffs: &Path, socket: &Path, interval_ms: u64) -> Result<String, CliError> {
    let dirs = pins::role_dirs(bpffs);
    if dirs.is_empty() {
        return Err(CliError::Pins(format!(
            "no maps pinned under {}",
            bpffs.display()
        )));
    }
    let start = Instant::now();
    let before = dirs
        .iter()
        .map(|(_, d)| pins::counters(d))
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::sleep(Duration::from_millis(interval_ms));
    let elapsed = start.elapsed();
    let mut reasons = Vec::new();
    for ((role, dir), before) in dirs.iter().zip(&before) {
        reasons.extend(drops::reasons(role, before, &pins::counters(dir)?, elapsed));
    }
    let events = match client::ask(socket, Request::DropEvents) {
        Ok(Answer::DropEvents(e)) => Some(e),
        _ => None,
    };
    Ok(if cli.json {
        json(&DropsJson { reasons, events })
    } else {
        drops::format(&reasons, events.as_deref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_error() {
        let unreachable = CliError::Api(ApiError::Unreachable {
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert_eq!(unreachable.exit_code(), EXIT_UNREACHABLE);
        let refused = CliError::Api(ApiError::Daemon(api::wire::ApiError {
            kind: ErrorKind::ConfigRefused,
            message: "node.zone: empty".into(),
        }));
        assert_eq!(refused.exit_code(), EXIT_CONFIG);
        assert_eq!(refused.to_string(), "node.zone: empty");
        let no_role = CliError::Api(ApiError::Daemon(api::wire::ApiError {
            kind: ErrorKind::NoRole,
            message: "this node does not run konvey".into(),
        }));
        assert_eq!(no_role.exit_code(), EXIT_RUNTIME);
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_CONFIG);
        assert_eq!(CliError::Pins("x".into()).exit_code(), EXIT_RUNTIME);
    }

    #[test]
    fn arguments_parse() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "kowabunga",
            "--json",
            "flows",
            "--limit",
            "10",
            "--proto",
            "tcp",
            "--backend",
            "10.0.0.11:80",
        ])?;
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Flows { limit: 10, .. }));
        let cli = Cli::try_parse_from(["kowabunga", "check", "/etc/k.yaml", "--socket", "/tmp/s"])?;
        assert_eq!(cli.socket.as_deref(), Some(Path::new("/tmp/s")));
        assert!(Cli::try_parse_from(["kowabunga", "flows", "--limit", "x"]).is_err());
        assert!(Cli::try_parse_from(["kowabunga"]).is_err());
        Ok(())
    }

    #[test]
    fn an_absent_daemon_is_exit_3() {
        let cli = Cli::try_parse_from([
            "kowabunga",
            "--socket",
            "/nonexistent/kowabunga-test.sock",
            "status",
        ])
        .expect("parses");
        let e = execute(&cli).expect_err("no daemon");
        assert_eq!(e.exit_code(), EXIT_UNREACHABLE, "{e}");
        assert!(
            e.to_string().contains("/nonexistent/kowabunga-test.sock"),
            "{e}"
        );
    }
}
