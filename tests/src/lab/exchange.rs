//! A long-lived TCP exchanger: one connection, a numbered line every
//! `--interval-ms` (default 50) whatever the answers do, echoed by the lab's
//! TCP echo servers; it counts what was sent and echoed, notices a reset, a
//! line out of order and the longest silence, and ends within a bounded time.
//!
//! Agent side ([`run`], subcommand `tcp-exchange`):
//!
//! | option | meaning |
//! |---|---|
//! | `--to IP:PORT` | the server (or VIP) |
//! | `--seconds S` | how long to send (at most 600) |
//! | `--interval-ms I` | one line every I ms (default 50, at least 5) |
//! | `--drain-ms D` | after the last line, wait at most D ms for the missing echoes (default 5000) |
//!
//! It prints `connected local=IP:PORT greeting=LINE` once the server's
//! greeting arrived, then one last line
//! `sent=N echoed=M max_gap_ms=G max_gap_at_ms=T max_delay_ms=D reset=0|1`:
//! G is the longest time between two echoes (or the connection and the first
//! echo), ending T ms after the connection; D the longest time a line waited
//! for its echo. It exits 0 only if every line came
//! back, in order, and the connection was never reset.
//!
//! Lab side: [`Exchange`] starts one in a namespace and reads its figures back
//! as an [`ExchangeReport`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::netns::Netns;
use super::traffic::{Agent, Background};

/// Longest a `tcp-exchange` sends (s).
const MAX_SECONDS: u64 = 600;
/// Shortest interval between two lines (ms).
const MIN_INTERVAL_MS: u64 = 5;
/// Longest drain after the last line (ms).
const MAX_DRAIN_MS: u64 = 60_000;

fn opt<'a>(args: &'a [(String, String)], name: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn num(args: &[(String, String)], name: &str, default: u64) -> Result<u64, String> {
    opt(args, name).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| format!("--{name}: not a number: {v:?}"))
    })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// What the reader thread saw.
#[derive(Debug, Default)]
struct Seen {
    /// Echoes received, in order.
    echoed: u64,
    /// When each line was sent (index = number), filled by the writer.
    sent_at: Vec<Instant>,
    max_gap: Duration,
    /// When the longest gap ended, since the connection.
    max_gap_at: Duration,
    max_delay: Duration,
    reset: bool,
    /// The first thing that went wrong (out of order, closed, error).
    failure: Option<String>,
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// The agent's `tcp-exchange` subcommand (see the module docs).
///
/// # Errors
/// A usage error, a failed connect, or a lost or reset exchange (after the
/// figures are printed).
pub fn run(args: &[(String, String)]) -> Result<(), String> {
    let to: SocketAddr = opt(args, "to")
        .ok_or("--to IP:PORT is required")?
        .parse()
        .map_err(|_| "--to: not IP:PORT".to_owned())?;
    let seconds = num(args, "seconds", 10)?.min(MAX_SECONDS);
    let interval = num(args, "interval-ms", 50)?.max(MIN_INTERVAL_MS);
    let drain = Duration::from_millis(num(args, "drain-ms", 5000)?.min(MAX_DRAIN_MS));
    let rounds = (seconds * 1000 / interval).max(1);
    let step = Duration::from_millis(interval);

    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))
        .map_err(|e| format!("connect {to}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    let mut writer = stream;

    // The greeting (`peer=...` or `name=... peer=...`), read byte by byte so
    // no echo is swallowed with it.
    reader
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    while greeting.len() < 512 {
        match reader.read(&mut byte) {
            Ok(0) => return Err("closed before the greeting".into()),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => greeting.push(byte[0]),
            Err(e) => return Err(format!("reading the greeting: {e}")),
        }
    }
    let greeting = String::from_utf8_lossy(&greeting).into_owned();
    say(&format!("connected local={local} greeting={greeting}"));

    let seen = Arc::new(Mutex::new(Seen {
        sent_at: Vec::with_capacity(rounds as usize),
        ..Seen::default()
    }));
    let done = Arc::new(AtomicBool::new(false));
    let connected = Instant::now();
    let reader_thread = {
        let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
        std::thread::spawn(move || read_echoes(reader, &seen, &done, connected))
    };

    let start = Instant::now();
    for i in 0..rounds {
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sent_at
            .push(Instant::now());
        if let Err(e) = writer.write_all(format!("{i}\n").as_bytes()) {
            let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
            s.reset |= is_reset(&e);
            s.failure.get_or_insert(format!("write {i}: {e}"));
            s.sent_at.pop();
            break;
        }
        let next = start + step * u32::try_from(i + 1).unwrap_or(u32::MAX);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failure
            .is_some()
        {
            break;
        }
    }
    let deadline = Instant::now() + drain;
    loop {
        let s = seen.lock().unwrap_or_else(PoisonError::into_inner);
        if s.echoed == s.sent_at.len() as u64 || s.failure.is_some() || Instant::now() >= deadline {
            break;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(5));
    }
    // The reader stops within its 100 ms read timeout; only then is the
    // connection closed, so our own close is never taken for the peer's.
    done.store(true, Ordering::Relaxed);
    let _ = reader_thread.join();
    let _ = writer.shutdown(std::net::Shutdown::Both);

    let s = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let sent = s.sent_at.len() as u64;
    say(&format!(
        "sent={sent} echoed={} max_gap_ms={} max_gap_at_ms={} max_delay_ms={} reset={}",
        s.echoed,
        s.max_gap.as_millis(),
        s.max_gap_at.as_millis(),
        s.max_delay.as_millis(),
        u8::from(s.reset)
    ));
    if let Some(f) = &s.failure {
        return Err(f.clone());
    }
    if s.echoed != sent {
        return Err(format!("{} of {sent} lines never echoed", sent - s.echoed));
    }
    Ok(())
}

/// Reads echoes until `done`, checking their order and timing.
fn read_echoes(mut reader: TcpStream, seen: &Mutex<Seen>, done: &AtomicBool, connected: Instant) {
    let _ = reader.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut last = connected;
    while !done.load(Ordering::Relaxed) {
        let n = match reader.read(&mut chunk) {
            Ok(0) => {
                let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                s.failure
                    .get_or_insert("connection closed by the peer".into());
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => {
                let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                s.reset |= is_reset(&e);
                s.failure.get_or_insert(format!("read: {e}"));
                return;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        let now = Instant::now();
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..pos]).into_owned();
            let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let want = s.echoed;
            if text.parse::<u64>().ok() != Some(want) {
                s.failure
                    .get_or_insert(format!("echo {want} expected, got {text:?}"));
                return;
            }
            if let Some(at) = s.sent_at.get(want as usize).copied() {
                s.max_delay = s.max_delay.max(now.saturating_duration_since(at));
            }
            let gap = now.saturating_duration_since(last);
            if gap > s.max_gap {
                s.max_gap = gap;
                s.max_gap_at = now.saturating_duration_since(connected);
            }
            last = now;
            s.echoed += 1;
        }
    }
}

/// The figures of a finished exchanger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeReport {
    /// Lines sent.
    pub sent: u64,
    /// Lines echoed back, in order.
    pub echoed: u64,
    /// Longest time between two echoes (ms).
    pub max_gap_ms: u64,
    /// When that gap ended, in ms since the connection.
    pub max_gap_at_ms: u64,
    /// Longest time a line waited for its echo (ms).
    pub max_delay_ms: u64,
    /// Whether the connection was reset.
    pub reset: bool,
    /// The agent's exit code.
    pub code: Option<i32>,
}

impl ExchangeReport {
    /// Parses the agent's last line (`sent=... reset=...`).
    ///
    /// # Errors
    /// When the line is missing a field.
    pub fn parse(line: &str, code: Option<i32>) -> Result<Self> {
        let field = |name: &str| -> Result<u64> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .with_context(|| format!("no {name}= in {line:?}"))?
                .parse()
                .with_context(|| format!("{name} in {line:?}"))
        };
        Ok(ExchangeReport {
            sent: field("sent")?,
            echoed: field("echoed")?,
            max_gap_ms: field("max_gap_ms")?,
            max_gap_at_ms: field("max_gap_at_ms")?,
            max_delay_ms: field("max_delay_ms")?,
            reset: field("reset")? != 0,
            code,
        })
    }

    /// Every line echoed, no reset, exit 0.
    pub fn lossless(&self) -> bool {
        self.sent > 0 && self.echoed == self.sent && !self.reset && self.code == Some(0)
    }
}

impl std::fmt::Display for ExchangeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} echoed {} max gap {} ms (ending {} ms after the connection) max delay {} ms reset {} exit {:?}",
            self.sent,
            self.echoed,
            self.max_gap_ms,
            self.max_gap_at_ms,
            self.max_delay_ms,
            self.reset,
            self.code
        )
    }
}

/// One running exchanger (killed on drop, as every [`Background`]).
#[derive(Debug)]
pub struct Exchange {
    name: String,
    process: Background,
    seconds: u64,
    /// The client's own address and port (`IP:PORT`), once connected.
    pub local: SocketAddr,
    /// The server's greeting (`peer=IP:PORT`, `name=b1 peer=IP:PORT`).
    pub greeting: String,
    /// When the lab saw it connected.
    pub connected_at: Instant,
}

impl Exchange {
    /// Starts `tcp-exchange` in `ns` to `to` for `seconds`, one line every
    /// `interval_ms`, and waits (at most 5 s) until it is connected.
    pub fn start(
        agent: &Agent,
        ns: &Netns,
        name: &str,
        to: &str,
        seconds: u64,
        interval_ms: u64,
    ) -> Result<Self> {
        let (secs, every) = (seconds.to_string(), interval_ms.to_string());
        let cmd = agent.command(
            ns,
            &[
                "tcp-exchange",
                "--to",
                to,
                "--seconds",
                &secs,
                "--interval-ms",
                &every,
            ],
        );
        let mut process = Background::spawn(&format!("tcp-exchange {name}"), cmd)?;
        let line = process
            .wait_for("connected local=", Duration::from_secs(5))
            .with_context(|| format!("{name} did not connect"))?;
        let rest = line
            .split_once("connected local=")
            .map_or("", |(_, r)| r)
            .to_owned();
        let (local, greeting) = rest
            .split_once(" greeting=")
            .with_context(|| format!("{name}: {line:?}"))?;
        Ok(Exchange {
            name: name.to_owned(),
            local: local
                .parse()
                .with_context(|| format!("{name}: local address {local:?}"))?,
            greeting: greeting.to_owned(),
            connected_at: Instant::now(),
            process,
            seconds,
        })
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `peer=IP:PORT` the server saw (after translation), if greeted so.
    pub fn seen_as(&self) -> Option<SocketAddr> {
        self.greeting
            .split_whitespace()
            .find_map(|w| w.strip_prefix("peer="))?
            .parse()
            .ok()
    }

    /// Waits for the end (its sending time plus 15 s at most) and returns its
    /// figures; fails only when it printed none (e.g. it crashed).
    pub fn finish(&mut self) -> Result<ExchangeReport> {
        let code = self
            .process
            .wait_exit(Duration::from_secs(self.seconds + 15))?;
        let lines = self.process.lines();
        let Some(last) = lines.iter().rev().find(|l| l.starts_with("sent=")) else {
            bail!(
                "{}: no figures (exit {code:?}):\n{}",
                self.name,
                self.process.output()
            );
        };
        ExchangeReport::parse(last, code)
    }

    /// Everything it printed.
    pub fn output(&self) -> String {
        self.process.output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_line_parses_and_judges() {
        let r = ExchangeReport::parse(
            "sent=160 echoed=160 max_gap_ms=240 max_gap_at_ms=1700 max_delay_ms=230 reset=0",
            Some(0),
        )
        .expect("test setup");
        assert!(r.lossless());
        assert_eq!((r.sent, r.max_gap_ms), (160, 240));
        let r = ExchangeReport::parse(
            "sent=160 echoed=150 max_gap_ms=240 max_gap_at_ms=1700 max_delay_ms=230 reset=1",
            Some(1),
        )
        .expect("test setup");
        assert!(!r.lossless() && r.reset);
        assert!(ExchangeReport::parse("sent=1 echoed=1", Some(0)).is_err());
    }

    /// A one-connection loopback echo server that greets, then echoes until
    /// EOF, or, with `reset_after`, resets the connection after that many lines.
    fn echo_server(reset_after: Option<usize>) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("test setup");
        let addr = listener.local_addr().expect("test setup");
        let server = std::thread::spawn(move || {
            let (mut s, peer) = listener.accept().expect("test setup");
            s.write_all(format!("peer={peer}\n").as_bytes())
                .expect("test setup");
            let mut r = s.try_clone().expect("test setup");
            let mut got = 0;
            let mut b = [0u8; 1];
            while reset_after.is_none_or(|n| got < n) && matches!(r.read(&mut b), Ok(1)) {
                if s.write_all(&b).is_err() {
                    return;
                }
                got += usize::from(b[0] == b'\n');
            }
            if reset_after.is_some() {
                socket_linger_zero(&s);
            }
        });
        (addr, server)
    }

    fn args(addr: SocketAddr) -> Vec<(String, String)> {
        [
            ("to", addr.to_string()),
            ("seconds", "1".into()),
            ("interval-ms", "20".into()),
            ("drain-ms", "1000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn an_exchange_over_loopback_loses_nothing() {
        let (addr, server) = echo_server(None);
        run(&args(addr)).expect("test setup");
        server.join().expect("test setup");
    }

    #[test]
    fn a_reset_connection_is_seen() {
        let (addr, server) = echo_server(Some(10));
        let e = run(&args(addr)).expect_err("must fail");
        assert!(
            e.contains("reset") || e.contains("closed") || e.contains("never echoed"),
            "{e}"
        );
        server.join().expect("test setup");
    }

    /// Closes `s` with an RST.
    fn socket_linger_zero(s: &TcpStream) {
        use std::os::fd::AsRawFd as _;
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: valid socket and option of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::from_ref(&l).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}
