//! The systemd notify protocol (`sd_notify(3)`), written out: the daemon
//! tells the service manager when it is ready, reloading and stopping,
//! and feeds the watchdog from its main loop.
//!
//! systemd passes `NOTIFY_SOCKET` (a unix datagram socket: a path, or an
//! abstract address written with a leading `@`) and, with `WatchdogSec=`,
//! `WATCHDOG_USEC` (and `WATCHDOG_PID`). Each notification is one datagram
//! of `KEY=VALUE` lines. Without `NOTIFY_SOCKET` every call is a no-op, so
//! the daemon runs the same by hand, in tests and under systemd.
//!
//! | message | when |
//! |---|---|
//! | `READY=1` + `STATUS=` | programs attached, config applied; again after each reload |
//! | `RELOADING=1` + `MONOTONIC_USEC=` | `SIGHUP` received (systemd >= 253 wants the timestamp) |
//! | `STOPPING=1` | `SIGTERM` / `SIGINT` received |
//! | `WATCHDOG=1` | from the main loop, every half `WATCHDOG_USEC`: a stuck loop stops feeding |
//!
//! The socket is created by [`Notifier::from_env`] before the daemon
//! enters `node.netns`: abstract addresses belong to a network namespace,
//! and a socket keeps the namespace it was created in.
//!
//! ```
//! use kowabunga_control::daemon::notify::{message, State};
//! assert_eq!(message(&[State::Ready, State::Status("ready")]), "READY=1\nSTATUS=ready\n");
//! ```

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The variable naming the notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// The variable with the watchdog timeout in microseconds.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The variable with the PID the watchdog applies to.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `NOTIFY_SOCKET` is neither a path nor an `@` abstract address.
    #[error("NOTIFY_SOCKET={0:?}: not an absolute path or an @abstract address")]
    Address(String),
    /// `WATCHDOG_USEC` or `WATCHDOG_PID` is not a positive number.
    #[error("{name}={value:?}: not a positive integer")]
    Number {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The datagram socket could not be created or the message not sent.
    #[error("NOTIFY_SOCKET: {0}")]
    Socket(#[from] io::Error),
}

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A socket file.
    Path(std::path::PathBuf),
    /// An abstract socket name (without the leading `@` / NUL).
    Abstract(Vec<u8>),
}

impl Address {
    /// Parses a `NOTIFY_SOCKET` value.
    ///
    /// # Errors
    /// [`Error::Address`] for anything but `/path` or `@name` (systemd's
    /// `vsock:` addresses are not supported).
    pub fn parse(value: &str) -> Result<Self, Error> {
        if let Some(name) = value.strip_prefix('@') {
            if !name.is_empty() {
                return Ok(Address::Abstract(name.as_bytes().to_vec()));
            }
        } else if value.starts_with('/') {
            return Ok(Address::Path(value.into()));
        }
        Err(Error::Address(value.to_owned()))
    }

    fn socket_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Address::Path(p) => SocketAddr::from_pathname(p),
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                SocketAddr::from_abstract_name(name)
            }
        }
    }
}

/// One notification field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State<'a> {
    /// `READY=1`.
    Ready,
    /// `RELOADING=1` (send [`State::MonotonicUsec`] with it).
    Reloading,
    /// `MONOTONIC_USEC=`: `CLOCK_MONOTONIC` when the reload started.
    MonotonicUsec(u64),
    /// `STOPPING=1`.
    Stopping,
    /// `WATCHDOG=1`.
    Watchdog,
    /// `STATUS=`: one line for `systemctl status` (newlines are replaced).
    Status(&'a str),
}

/// The datagram for `states`: one `KEY=VALUE` line each.
pub fn message(states: &[State<'_>]) -> String {
    let mut out = String::new();
    for state in states {
        match state {
            State::Ready => out.push_str("READY=1\n"),
            State::Reloading => out.push_str("RELOADING=1\n"),
            State::MonotonicUsec(us) => out.push_str(&format!("MONOTONIC_USEC={us}\n")),
            State::Stopping => out.push_str("STOPPING=1\n"),
            State::Watchdog => out.push_str("WATCHDOG=1\n"),
            State::Status(s) => {
                out.push_str("STATUS=");
                out.push_str(&s.replace('\n', " "));
                out.push('\n');
            }
        }
    }
    out
}

/// The watchdog timeout systemd asks for: `WATCHDOG_USEC`, unless
/// `WATCHDOG_PID` names another process (then it is not ours).
///
/// # Errors
/// [`Error::Number`] for a value that is not a positive integer.
///
/// ```
/// use std::time::Duration;
/// use kowabunga_control::daemon::notify::watchdog_timeout;
/// assert_eq!(watchdog_timeout(Some("3000000"), None, 7).unwrap(), Some(Duration::from_secs(3)));
/// assert_eq!(watchdog_timeout(Some("3000000"), Some("8"), 7).unwrap(), None);
/// assert_eq!(watchdog_timeout(None, None, 7).unwrap(), None);
/// ```
pub fn watchdog_timeout(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Result<Option<Duration>, Error> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    let positive = |name: &'static str, value: &str| -> Result<u64, Error> {
        match value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::Number {
                name,
                value: value.to_owned(),
            }),
        }
    };
    let us = positive(WATCHDOG_USEC, usec)?;
    if let Some(pid) = pid {
        if positive(WATCHDOG_PID, pid)? != u64::from(my_pid) {
            return Ok(None);
        }
    }
    Ok(Some(Duration::from_micros(us)))
}

/// `CLOCK_MONOTONIC` now, in microseconds (what `MONOTONIC_USEC=` wants).
pub fn monotonic_usec() -> u64 {
    kowabunga_dataplane::monotonic_now_ns() / 1000
}

/// The daemon's link to the service manager: a no-op without
/// `NOTIFY_SOCKET`.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, Address)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier::default()
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` and
    /// creates the socket. Call it before entering another network
    /// namespace.
    ///
    /// # Errors
    /// A malformed variable, or the socket cannot be created.
    pub fn from_env() -> Result<Self, Error> {
        let var = |name| std::env::var(name).ok();
        Notifier::new(
            var(NOTIFY_SOCKET).as_deref(),
            var(WATCHDOG_USEC).as_deref(),
            var(WATCHDOG_PID).as_deref(),
        )
    }

    /// A notifier for these variable values (`None`: unset).
    ///
    /// # Errors
    /// A malformed value, or the socket cannot be created.
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Result<Self, Error> {
        let Some(socket) = socket.filter(|s| !s.is_empty()) else {
            return Ok(Notifier::disabled());
        };
        let address = Address::parse(socket)?;
        let watchdog = watchdog_timeout(watchdog_usec, watchdog_pid, std::process::id())?;
        let sock = UnixDatagram::unbound()?;
        // A full socket must not stall the main loop: drop the message.
        sock.set_nonblocking(true)?;
        Ok(Notifier {
            target: Some((sock, address)),
            watchdog,
        })
    }

    /// True when notifications are sent.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the timeout systemd asked for.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.target.as_ref()?;
        self.watchdog.map(|t| t / 2)
    }

    /// Sends `states` as one datagram; a no-op when disabled.
    ///
    /// # Errors
    /// The datagram could not be sent.
    pub fn send(&self, states: &[State<'_>]) -> Result<(), Error> {
        let Some((sock, address)) = &self.target else {
            return Ok(());
        };
        let addr = address.socket_addr()?;
        sock.send_to_addr(message(states).as_bytes(), &addr)?;
        Ok(())
    }

    /// [`Notifier::send`], logging a failure at `warn` instead of
    /// returning it (systemd gone must not stop the daemon).
    pub fn notify(&self, states: &[State<'_>]) {
        if let Err(e) = self.send(states) {
            tracing::warn!("{e}");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&[State::Ready, State::Status(status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` now.
    pub fn reloading(&self) {
        self.notify(&[
            State::Reloading,
            State::MonotonicUsec(monotonic_usec()),
            State::Status("reloading"),
        ]);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify(&[State::Stopping, State::Status("stopping")]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.notify(&[State::Watchdog]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            message(&[State::Reloading, State::MonotonicUsec(12)]),
            "RELOADING=1\nMONOTONIC_USEC=12\n"
        );
        assert_eq!(
            message(&[State::Stopping, State::Status("a\nb")]),
            "STOPPING=1\nSTATUS=a b\n"
        );
        assert_eq!(message(&[State::Watchdog]), "WATCHDOG=1\n");
    }

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("/run/systemd/notify").expect("path"),
            Address::Path("/run/systemd/notify".into())
        );
        assert_eq!(
            Address::parse("@kw/notify").expect("abstract"),
            Address::Abstract(b"kw/notify".to_vec())
        );
        for bad in ["", "@", "relative", "vsock:2:1234"] {
            let e = Address::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with("NOTIFY_SOCKET="), "{e}");
        }
    }

    #[test]
    fn watchdog_values() {
        assert_eq!(
            watchdog_timeout(Some("500000"), Some("42"), 42).expect("ours"),
            Some(Duration::from_millis(500))
        );
        for bad in ["0", "-1", "x", ""] {
            let e = watchdog_timeout(Some(bad), None, 1).expect_err(bad);
            assert!(e.to_string().starts_with("WATCHDOG_USEC="), "{e}");
        }
        let e = watchdog_timeout(Some("1"), Some("pid"), 1).expect_err("pid");
        assert!(e.to_string().starts_with("WATCHDOG_PID="), "{e}");
    }

    #[test]
    fn unset_is_a_no_op() {
        let n = Notifier::new(None, Some("1000000"), None).expect("unset");
        assert!(!n.enabled());
        assert_eq!(n.watchdog_period(), None);
        n.send(&[State::Ready]).expect("no-op");
        assert!(!Notifier::new(Some(""), None, None)
            .expect("empty")
            .enabled());
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("kw-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let pid = std::process::id().to_string();
        let n = Notifier::new(path.to_str(), Some("2000000"), Some(&pid)).expect("notifier");
        assert_eq!(n.watchdog_period(), Some(Duration::from_secs(1)));
        n.ready("ready: test");
        assert_eq!(recv(&server), "READY=1\nSTATUS=ready: test\n");
        n.reloading();
        let msg = recv(&server);
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
        let us: u64 = msg
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!(us > 0 && us <= monotonic_usec());
        n.watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1\n");
        n.stopping();
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=stopping\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("kw-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::new(Some(&format!("@{name}")), None, None).expect("notifier");
        assert_eq!(n.watchdog_period(), None);
        n.watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1\n");
    }

    #[test]
    fn a_missing_listener_is_an_error_not_a_panic() {
        let n = Notifier::new(Some("/nonexistent/kw/notify.sock"), None, None).expect("n");
        assert!(n.send(&[State::Ready]).is_err());
        n.ready("logged, not fatal");
    }
}
