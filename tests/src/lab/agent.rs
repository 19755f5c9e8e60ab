//! The lab agent: small TCP/UDP servers and clients run inside namespaces.
//!
//! The binary `kowabunga-lab-agent` only calls [`main`]. Every loop is bounded in
//! time (servers live `--seconds`, clients wait `--timeout-ms`) and in count.
//!
//! | subcommand | does | prints |
//! |---|---|---|
//! | `tcp-echo-server --port P [--seconds N] [--name NAME]` | answers each connection with `peer=IP:PORT` (with `--name`: `name=NAME peer=IP:PORT`), then echoes lines | `ready tcp ADDR`, `accepted peer=IP:PORT` |
//! | `udp-echo-server --port P [--seconds N] [--name NAME]` | answers each datagram with `peer=IP:PORT` and `echo=PAYLOAD` (with `--name`: `name=NAME` first) | `ready udp ADDR`, `datagram peer=IP:PORT` |
//! | `tcp-client --to IP:PORT [--timeout-ms T] [--line L]` | connects, sends one line | `peer=...`, `echo=L` |
//! | `udp-client --to IP:PORT [--timeout-ms T] [--line L] [--sport P] [--df no]` | sends one datagram (from port P, default any; `--df no`: DF clear, the kernel fragments) | `peer=...`, `echo=L` |
//! | `tcp-hold --to IP:PORT --seconds S` | one connection, a line every 200 ms | `peer=...`, `exchanges=N` |
//! | `udp-hold --to IP:PORT --seconds S [--rate R]` | R datagrams a second (default 100), each waiting up to 1 s for its echo | `sent=N answered=M lost=K` |
//!
//! The `--name` servers are the Konvey lab's backends: clients print the greeting,
//! so the lab sees which backend answered (`name=b1 peer=...`).
//!
//! Exit codes: 0 success, [`EXIT_TIMEOUT`] timeout, [`EXIT_REFUSED`] refused, 1 other
//! errors, 2 usage. Errors are printed as `error=...` on stdout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Exit code of a client whose connect or answer timed out.
pub const EXIT_TIMEOUT: i32 = 3;
/// Exit code of a client whose connection was refused (RST).
pub const EXIT_REFUSED: i32 = 4;
/// Longest lifetime a server accepts (`--seconds`).
const MAX_SECONDS: u64 = 600;
/// Most connections a TCP server accepts.
const MAX_CONNECTIONS: usize = 1024;
/// Most datagrams a UDP server answers.
const MAX_DATAGRAMS: usize = 100_000;

/// Parsed `--key value` options.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let Some(name) = key.strip_prefix("--") else {
                return Err(format!("unexpected argument {key:?}"));
            };
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            out.push((name.to_owned(), value.clone()));
        }
        Ok(Opts(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn num(&self, name: &str, default: u64) -> Result<u64, String> {
        self.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}"))
        })
    }

    fn addr(&self) -> Result<SocketAddr, String> {
        let to = self.get("to").ok_or("--to IP:PORT is required")?;
        to.parse().map_err(|_| format!("--to: not IP:PORT: {to:?}"))
    }
}

/// Runs the agent with `args` (without the program name); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: kowabunga-lab-agent tcp-echo-server|udp-echo-server|tcp-client|udp-client|tcp-hold --opt value ...");
        return 2;
    };
    let opts = match Opts::parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kowabunga-lab-agent: {e}");
            return 2;
        }
    };
    let result = match cmd.as_str() {
        "tcp-echo-server" => tcp_echo_server(&opts),
        "udp-echo-server" => udp_echo_server(&opts),
        "tcp-client" => tcp_client(&opts),
        "udp-client" => udp_client(&opts),
        "tcp-hold" => tcp_hold(&opts),
        "udp-hold" => udp_hold(&opts),
        other => Err(Failure::Usage(format!("unknown subcommand {other:?}"))),
    };
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => 0,
        Err(Failure::Usage(e)) => {
            eprintln!("kowabunga-lab-agent: {e}");
            2
        }
        Err(Failure::Io(what, e)) => {
            let (code, kind) = match e.kind() {
                ErrorKind::TimedOut | ErrorKind::WouldBlock => (EXIT_TIMEOUT, "timeout"),
                ErrorKind::ConnectionRefused => (EXIT_REFUSED, "refused"),
                _ => (1, "io"),
            };
            println!("error={kind} during {what}: {e}");
            code
        }
        Err(Failure::Other(e)) => {
            println!("error={e}");
            1
        }
    }
}

/// Why an agent command failed.
enum Failure {
    Usage(String),
    Io(&'static str, std::io::Error),
    Other(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Usage(e)
    }
}

fn io<T>(what: &'static str, r: std::io::Result<T>) -> Result<T, Failure> {
    r.map_err(|e| Failure::Io(what, e))
}

/// Prints a line and flushes it at once: the lab reads agent output line by line.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Reads `\n`-terminated lines from a TCP stream, never past a deadline.
struct Lines {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Lines {
    fn new(stream: TcpStream) -> Self {
        Lines {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next line without its `\n`; `Ok(None)` at end of stream.
    fn next(&mut self, deadline: Instant) -> std::io::Result<Option<String>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..pos]).into_owned()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            self.stream
                .set_read_timeout(Some(left.min(Duration::from_millis(500))))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn server_deadline(opts: &Opts) -> Result<Instant, Failure> {
    let secs = opts.num("seconds", 30)?.min(MAX_SECONDS);
    Ok(Instant::now() + Duration::from_secs(secs))
}

fn tcp_echo_server(opts: &Opts) -> Result<(), Failure> {
    let port = opts.num("port", 8080)?;
    let port = u16::try_from(port).map_err(|_| Failure::Usage(format!("--port {port}")))?;
    let deadline = server_deadline(opts)?;
    let listener = io("bind", TcpListener::bind(("0.0.0.0", port)))?;
    io("set_nonblocking", listener.set_nonblocking(true))?;
    say(&format!(
        "ready tcp {}",
        io("local_addr", listener.local_addr())?
    ));
    let mut accepted = 0;
    while Instant::now() < deadline && accepted < MAX_CONNECTIONS {
        match listener.accept() {
            Ok((stream, peer)) => {
                accepted += 1;
                say(&format!("accepted peer={peer}"));
                let greeting = greeting(opts, peer);
                std::thread::spawn(move || serve_tcp(stream, peer, greeting, deadline));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(Failure::Io("accept", e)),
        }
    }
    Ok(())
}

/// The greeting line: `peer=IP:PORT`, or `name=NAME peer=IP:PORT` with `--name`.
fn greeting(opts: &Opts, peer: SocketAddr) -> String {
    match opts.get("name") {
        Some(name) => format!("name={name} peer={peer}"),
        None => format!("peer={peer}"),
    }
}

/// One server connection: greet, then echo lines until EOF or the server's deadline.
fn serve_tcp(stream: TcpStream, peer: SocketAddr, greeting: String, deadline: Instant) {
    let run = || -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        let mut writer = stream.try_clone()?;
        writer.write_all(format!("{greeting}\n").as_bytes())?;
        let mut lines = Lines::new(stream);
        while let Some(line) = lines.next(deadline)? {
            writer.write_all(format!("{line}\n").as_bytes())?;
        }
        Ok(())
    };
    if let Err(e) = run() {
        if e.kind() != ErrorKind::TimedOut {
            say(&format!("connection peer={peer} ended: {e}"));
        }
    }
}

fn udp_echo_server(opts: &Opts) -> Result<(), Failure> {
    let port = opts.num("port", 8080)?;
    let port = u16::try_from(port).map_err(|_| Failure::Usage(format!("--port {port}")))?;
    let deadline = server_deadline(opts)?;
    let socket = io("bind", UdpSocket::bind(("0.0.0.0", port)))?;
    io(
        "set_read_timeout",
        socket.set_read_timeout(Some(Duration::from_millis(200))),
    )?;
    say(&format!(
        "ready udp {}",
        io("local_addr", socket.local_addr())?
    ));
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    while Instant::now() < deadline && answered < MAX_DATAGRAMS {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                answered += 1;
                say(&format!("datagram peer={peer}"));
                let payload = String::from_utf8_lossy(&buf[..n]);
                let name = opts
                    .get("name")
                    .map(|n| format!("name={n}\n"))
                    .unwrap_or_default();
                let reply = format!("{name}peer={peer}\necho={}\n", payload.trim_end());
                io("send_to", socket.send_to(reply.as_bytes(), peer))?;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(Failure::Io("recv_from", e)),
        }
    }
    Ok(())
}

fn client_timeout(opts: &Opts) -> Result<Duration, Failure> {
    Ok(Duration::from_millis(
        opts.num("timeout-ms", 3000)?.clamp(1, 60_000),
    ))
}

fn tcp_client(opts: &Opts) -> Result<(), Failure> {
    let to = opts.addr()?;
    let timeout = client_timeout(opts)?;
    let line = opts.get("line").unwrap_or("hello").to_owned();
    let stream = io("connect", TcpStream::connect_timeout(&to, timeout))?;
    let deadline = Instant::now() + timeout;
    let mut writer = io("clone", stream.try_clone())?;
    let mut lines = Lines::new(stream);
    let peer = io("read greeting", lines.next(deadline))?
        .ok_or(Failure::Other("closed before greeting".into()))?;
    say(&peer);
    io("write", writer.write_all(format!("{line}\n").as_bytes()))?;
    let echo = io("read echo", lines.next(deadline))?
        .ok_or(Failure::Other("closed before echo".into()))?;
    say(&format!("echo={echo}"));
    if echo != line {
        return Err(Failure::Other(format!(
            "echo mismatch: sent {line:?}, got {echo:?}"
        )));
    }
    Ok(())
}

/// `IP_PMTUDISC_DONT`: datagrams leave with DF clear, fragmented by whoever
/// needs to.
fn no_path_mtu_discovery(socket: &UdpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let value: libc::c_int = libc::IP_PMTUDISC_DONT;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn udp_client(opts: &Opts) -> Result<(), Failure> {
    let to = opts.addr()?;
    let timeout = client_timeout(opts)?;
    let line = opts.get("line").unwrap_or("hello");
    let sport = u16::try_from(opts.num("sport", 0)?)
        .map_err(|_| Failure::from("--sport: not a port".to_owned()))?;
    let socket = io("bind", UdpSocket::bind(("0.0.0.0", sport)))?;
    if opts.get("df") == Some("no") {
        io("IP_MTU_DISCOVER", no_path_mtu_discovery(&socket))?;
    }
    io("connect", socket.connect(to))?;
    io("set_read_timeout", socket.set_read_timeout(Some(timeout)))?;
    io("send", socket.send(line.as_bytes()))?;
    let mut buf = [0u8; 2048];
    let n = io("recv", socket.recv(&mut buf))?;
    let reply = String::from_utf8_lossy(&buf[..n]);
    for l in reply.lines() {
        say(l);
    }
    if !reply.lines().any(|l| l == format!("echo={line}")) {
        return Err(Failure::Other(format!(
            "echo mismatch: sent {line:?}, got {reply:?}"
        )));
    }
    Ok(())
}

/// Most datagrams a second `udp-hold` sends.
const MAX_RATE: u64 = 1000;

fn udp_hold(opts: &Opts) -> Result<(), Failure> {
    let to = opts.addr()?;
    let seconds = opts.num("seconds", 4)?.min(MAX_SECONDS);
    let rate = opts.num("rate", 100)?.clamp(1, MAX_RATE);
    let step = Duration::from_micros(1_000_000 / rate);
    let socket = io("bind", UdpSocket::bind(("0.0.0.0", 0)))?;
    io("connect", socket.connect(to))?;
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    for i in 0..seconds * rate {
        let line = format!("hold {i}");
        io("send", socket.send(line.as_bytes()))?;
        sent += 1;
        // Wait for this datagram's echo (older, late echoes are skipped).
        let deadline = Instant::now() + Duration::from_secs(1);
        let want = format!("echo={line}");
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            io(
                "set_read_timeout",
                socket.set_read_timeout(Some(left.max(Duration::from_millis(1)))),
            )?;
            match socket.recv(&mut buf) {
                Ok(n)
                    if String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .any(|l| l == want) =>
                {
                    answered += 1;
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(Failure::Other(format!("recv: {e}"))),
            }
        }
        // Paced on the schedule, not on the answers.
        let next = start + step * u32::try_from(i + 1).unwrap_or(u32::MAX);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    say(&format!(
        "sent={sent} answered={answered} lost={}",
        sent - answered
    ));
    if answered == sent {
        Ok(())
    } else {
        Err(Failure::Other(format!(
            "{} of {sent} datagrams unanswered",
            sent - answered
        )))
    }
}

fn tcp_hold(opts: &Opts) -> Result<(), Failure> {
    let to = opts.addr()?;
    let seconds = opts.num("seconds", 4)?.min(MAX_SECONDS);
    let step = Duration::from_millis(200);
    let rounds = seconds * 5;
    let stream = io(
        "connect",
        TcpStream::connect_timeout(&to, Duration::from_secs(3)),
    )?;
    let mut writer = io("clone", stream.try_clone())?;
    let mut lines = Lines::new(stream);
    let greeting = io(
        "read greeting",
        lines.next(Instant::now() + Duration::from_secs(3)),
    )?
    .ok_or(Failure::Other("closed before greeting".into()))?;
    say(&greeting);
    for i in 0..rounds {
        let line = format!("hold {i}");
        io("write", writer.write_all(format!("{line}\n").as_bytes()))?;
        match lines.next(Instant::now() + Duration::from_secs(1)) {
            Ok(Some(echo)) if echo == line => {}
            Ok(Some(echo)) => return Err(Failure::Other(format!("exchange {i}: got {echo:?}"))),
            Ok(None) => return Err(Failure::Other(format!("exchange {i}: connection closed"))),
            Err(e) => return Err(Failure::Other(format!("exchange {i}: {e}"))),
        }
        std::thread::sleep(step);
    }
    say(&format!("exchanges={rounds}"));
    Ok(())
}
