//! The operator socket of `kowabungad`: what the `kowabunga` CLI talks to.
//!
//! A Unix socket, `node.api.socket` (default [`DEFAULT_SOCKET`]), mode
//! 0600 (root only), carrying one JSON object per line each way, every
//! message versioned ([`wire::API_VERSION`]; another version is refused
//! with a message naming both).
//!
//! | file | job |
//! |---|---|
//! | [`wire`] | the messages, their encoding and the version check |
//! | [`server`] | the daemon's accept task and the [`server::Inbox`] its loop reads |
//! | [`handle`] | the answers, computed from the [`crate::daemon::Daemon`] |
//! | [`client`] | the CLI's blocking client |
//!
//! Conntrack flows and counters are not carried over the socket: the CLI
//! reads them from the pinned maps itself (see [`crate::cli`]), so they work
//! with the daemon stopped and never load the daemon's loop.

pub mod client;
pub mod handle;
pub mod server;
pub mod wire;

use std::path::PathBuf;

use thiserror::Error;

pub use wire::{Answer, ErrorKind, Request, API_VERSION};

/// Where the socket is unless `node.api.socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/kowabunga/kowabungad.sock";

/// The socket unless `node.api.socket` says otherwise: [`DEFAULT_SOCKET`],
/// or `/run/kowabunga/kowabungad-<netns>.sock` for a daemon working in a
/// named namespace (as `node.bpffs`).
///
/// ```
/// use std::path::Path;
/// use kowabunga_control::api::default_socket;
/// assert_eq!(default_socket(None), Path::new("/run/kowabunga/kowabungad.sock"));
/// assert_eq!(default_socket(Some("gw1")), Path::new("/run/kowabunga/kowabungad-gw1.sock"));
/// ```
pub fn default_socket(netns: Option<&str>) -> PathBuf {
    match netns {
        None => PathBuf::from(DEFAULT_SOCKET),
        Some(ns) => PathBuf::from(format!("/run/kowabunga/kowabungad-{ns}.sock")),
    }
}

/// Errors of the operator socket, both ends.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The daemon cannot listen.
    #[error("cannot listen on {}: {source}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon answers on the socket.
    #[error("{} is in use by another running kowabungad", .0.display())]
    InUse(PathBuf),
    /// No daemon listens.
    #[error("kowabungad is not reachable on {}: {source}", path.display())]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("operator socket: {0}")]
    Io(#[source] std::io::Error),
    /// A message could not be decoded.
    #[error("{0}")]
    Wire(#[from] wire::WireError),
    /// The daemon answered with an error.
    #[error("{}", .0.message)]
    Daemon(wire::ApiError),
}
