//! The lab agent: small TCP/UDP servers and clients run inside namespaces.
//!
//! The binary `kowabunga-lab-agent` only calls [`main`]. Every loop is bounded in
//! time (servers live `--seconds`, clients wait `--timeout-ms`) and in count.
//!
//! | subcommand | does | prints |
//! |---|---|---|
//! | `tcp-echo-server --port P [--seconds N] [--name NAME] [--bind IP]` | listens on IP (default `0.0.0.0`; `::` for IPv6 and IPv4), answers each connection with `peer=IP:PORT` (with `--name`: `name=NAME peer=IP:PORT`), then echoes lines | `ready tcp ADDR`, `accepted peer=IP:PORT` |
//! | `udp-echo-server --port P [--seconds N] [--name NAME]` | answers each datagram with `peer=IP:PORT` and `echo=PAYLOAD` (with `--name`: `name=NAME` first) | `ready udp ADDR`, `datagram peer=IP:PORT` |
//! | `tcp-client --to IP:PORT [--timeout-ms T] [--line L]` | connects, sends one line | `peer=...`, `echo=L` |
//! | `udp-client --to IP:PORT [--timeout-ms T] [--line L] [--sport P] [--df no]` | sends one datagram (from port P, default any; `--df no`: DF clear, the kernel fragments) | `peer=...`, `echo=L` |
//! | `tcp-hold --to IP:PORT --seconds S [--interval-ms I]` | one connection, a line every I ms (default 200; idle in between) | `peer=...`, `exchanges=N` |
//! | `udp-hold --to IP:PORT --seconds S [--rate R]` | R datagrams a second (default 100), each waiting up to 1 s for its echo | `sent=N answered=M lost=K` |
//! | `flood --kind tcp-syn\|udp --to IP:PORT --count N [--rate R] [--spoof CIDR]` | N packets (at most 1,000,000) at R a second (default 10000) from a raw socket: `tcp-syn` bare SYNs from random sources in CIDR, `udp` datagrams from this host, source ports 10000 up (each a new flow); gives up after 2 N / R + 10 s | `sent=N` |
//!
//! A long-lived exchanger that counts losses and gaps (`tcp-exchange`) is in
//! [`super::exchange`].
//!
//! DNS clients, a bounded DNS load and a stub recursor (`dns-query`,
//! `dns-load`, `dns-recursor`) are in [`super::dns`].
//!
//! The `--name` servers are the Konvey lab's backends: clients print the greeting,
//! so the lab sees which backend answered (`name=b1 peer=...`).
//!
//! Exit codes: 0 success, [`EXIT_TIMEOUT`] timeout, [`EXIT_REFUSED`] refused, 1 other
//! errors, 2 usage. Errors are printed as `error=...` on stdout.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
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
        "flood" => flood(&opts),
        "tcp-exchange" => super::exchange::run(&opts.0).map_err(Failure::Other),
        "dns-query" | "dns-load" | "dns-recursor" => {
            super::dns::run(cmd, &opts.0).map_err(Failure::Other)
        }
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
    let bind: IpAddr = match opts.get("bind") {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(text) => text
            .parse()
            .map_err(|_| Failure::Usage(format!("--bind: not an IP address: {text:?}")))?,
    };
    let listener = io("bind", TcpListener::bind((bind, port)))?;
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
    let interval = opts.num("interval-ms", 200)?.clamp(1, MAX_SECONDS * 1000);
    let step = Duration::from_millis(interval);
    let rounds = (seconds * 1000 / interval).max(1);
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

/// Most packets one `flood` sends.
const MAX_FLOOD: u64 = 1_000_000;

/// RFC 1071 checksum of `parts` concatenated (each of even length but the last).
fn inet_csum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet from `src` to `dst` carrying the L4 header + payload `l4`
/// of protocol `proto`, whose checksum (at `csum_at` in `l4`) is filled in.
fn ipv4_packet(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    mut l4: Vec<u8>,
    csum_at: usize,
    id: u16,
) -> Vec<u8> {
    let len = (20 + l4.len()) as u16;
    let pseudo = [
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
        0,
        proto,
        (l4.len() >> 8) as u8,
        l4.len() as u8,
    ];
    let c = inet_csum(&[&pseudo, &l4]);
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        (id >> 8) as u8,
        id as u8,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = inet_csum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&l4);
    ip
}

/// `flood`: see the module table.
fn flood(opts: &Opts) -> Result<(), Failure> {
    let to = match opts.addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => return Err(Failure::Usage("--to must be IPv4".into())),
    };
    let count = opts.num("count", 1000)?.min(MAX_FLOOD);
    let rate = opts.num("rate", 10_000)?.clamp(1, 1_000_000);
    let kind = opts.get("kind").unwrap_or("udp").to_owned();
    let spoof = match opts.get("spoof") {
        Some(c) => {
            let (a, l) = c
                .split_once('/')
                .ok_or_else(|| Failure::Usage(format!("--spoof: not a CIDR: {c:?}")))?;
            let a: std::net::Ipv4Addr = a
                .parse()
                .map_err(|_| Failure::Usage(format!("--spoof: {c:?}")))?;
            let l: u32 = l
                .parse()
                .map_err(|_| Failure::Usage(format!("--spoof: {c:?}")))?;
            let mask = if l == 0 {
                0
            } else {
                u32::MAX << (32 - l.min(32))
            };
            Some((u32::from(a) & mask, !mask))
        }
        None => None,
    };
    if kind != "tcp-syn" && kind != "udp" {
        return Err(Failure::Usage(format!("--kind tcp-syn|udp, not {kind:?}")));
    }
    // this host's address towards `to`, for unspoofed packets
    let probe = io("bind", UdpSocket::bind("0.0.0.0:0"))?;
    io("connect", probe.connect(to))?;
    let local = match io("local_addr", probe.local_addr())? {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => return Err(Failure::Other("no IPv4 source".into())),
    };
    drop(probe);

    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(Failure::Io("raw socket", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let dst = to.ip().octets();
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst),
        },
        sin_zero: [0; 8],
    };
    let mut seed = Instant::now().elapsed().as_nanos() as u64
        ^ u64::from(std::process::id()) << 32
        ^ 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(2 * count / rate + 10);
    let mut sent = 0u64;
    while sent < count {
        if Instant::now() >= deadline {
            say(&format!("sent={sent}"));
            return Err(Failure::Other(format!("gave up after {sent} of {count}")));
        }
        // pace: no more than `rate` a second since the start
        let due = (start.elapsed().as_micros() as u64).saturating_mul(rate) / 1_000_000 + 1;
        if sent >= due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let r = rnd();
        let pkt = if kind == "tcp-syn" {
            let src = match spoof {
                Some((base, host)) => (base | (r as u32 & host)).to_be_bytes(),
                None => local.octets(),
            };
            let sport = 1024 + (r >> 32) as u16 % 60000;
            let mut tcp = vec![0u8; 20];
            tcp[0..2].copy_from_slice(&sport.to_be_bytes());
            tcp[2..4].copy_from_slice(&to.port().to_be_bytes());
            tcp[4..8].copy_from_slice(&((r >> 16) as u32).to_be_bytes());
            tcp[12] = 5 << 4;
            tcp[13] = 0x02; // SYN
            tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
            ipv4_packet(src, dst, 6, tcp, 16, r as u16)
        } else {
            let src = match spoof {
                Some((base, host)) => (base | (r as u32 & host)).to_be_bytes(),
                None => local.octets(),
            };
            let sport = 10_000 + (sent % 55_000) as u16;
            let payload = b"flood";
            let mut udp = vec![0u8; 8];
            udp[0..2].copy_from_slice(&sport.to_be_bytes());
            udp[2..4].copy_from_slice(&to.port().to_be_bytes());
            udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            udp.extend_from_slice(payload);
            ipv4_packet(src, dst, 17, udp, 6, r as u16)
        };
        // SAFETY: pkt and sa are live for the call; sizes are theirs.
        let rc = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                _ => return Err(Failure::Io("sendto", e)),
            }
        }
        sent += 1;
    }
    say(&format!("sent={sent}"));
    Ok(())
}
