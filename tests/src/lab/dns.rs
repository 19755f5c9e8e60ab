//! DNS for the Kiwi lab and bench: a client, a bounded load and a stub
//! recursor, run by `kowabunga-lab-agent` inside namespaces (wire format
//! by `hickory-proto`, plain std sockets).
//!
//! | subcommand | does | prints |
//! |---|---|---|
//! | `dns-query --server IP:PORT --name N [--type A] [--edns 1232] [--tcp yes] [--count C] [--timeout-ms T]` | C queries over UDP (or TCP), each retried over TCP when the UDP answer has TC (as resolvers do) | one line a query: `proto=udp\|tcp udp_tc=0\|1 rcode=NOERROR aa=1 answers=IP,IP ms=M` |
//! | `dns-load --server IP:PORT --names N,N --seconds S [--rate R]` | R queries a second (default 200) cycling over the names, each waiting up to 2 s; a failure is silence, an RCODE other than NOERROR or no address | `sent=N answered=M failed=K` (and `failure=...` for the first ones) |
//! | `dns-recursor --listen IP:PORT [--seconds S] [--silent yes]` | a stub recursor: `*.example.test` A 198.51.100.7 (TTL 30), `many.example.test` 40 addresses, NXDOMAIN otherwise; `--silent yes` reads and never answers (a dead upstream that hangs) | `ready dns ADDR`, `answered=N` at the end |
//!
//! Every loop is bounded in count and time.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The stub recursor's answer to every `*.example.test` name.
pub const STUB_ADDRESS: &str = "198.51.100.7";
/// Most queries one `dns-query` sends.
const MAX_COUNT: u64 = 10_000;
/// Longest `dns-load` or `dns-recursor` run.
const MAX_SECONDS: u64 = 600;

/// One answer as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `udp` or `tcp` (the protocol of the answer used).
    pub proto: &'static str,
    /// The UDP answer had TC (and TCP was asked next).
    pub udp_tc: bool,
    /// RCODE.
    pub rcode: ResponseCode,
    /// AA flag.
    pub aa: bool,
    /// A and AAAA addresses of the answer section, in order.
    pub addresses: Vec<IpAddr>,
    /// Round trip, ms.
    pub ms: u128,
}

impl Answer {
    /// The agent's line for it.
    pub fn line(&self) -> String {
        let answers: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        format!(
            "proto={} udp_tc={} rcode={} aa={} answers={} ms={}",
            self.proto,
            u8::from(self.udp_tc),
            rcode_name(self.rcode),
            u8::from(self.aa),
            answers.join(","),
            self.ms
        )
    }

    /// Parses [`Answer::line`] back (for the lab reading agent output).
    pub fn parse(line: &str) -> Option<Answer> {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
        };
        Some(Answer {
            proto: if field("proto")? == "tcp" {
                "tcp"
            } else {
                "udp"
            },
            udp_tc: field("udp_tc")? == "1",
            rcode: parse_rcode(field("rcode")?)?,
            aa: field("aa")? == "1",
            addresses: field("answers")?
                .split(',')
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse().ok())
                .collect(),
            ms: field("ms")?.parse().ok()?,
        })
    }
}

const RCODES: [(ResponseCode, &str); 6] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
];

/// `NOERROR`, `NXDOMAIN`, ... or `RCODE<n>`: one word, as dig writes them.
pub fn rcode_name(code: ResponseCode) -> String {
    RCODES.iter().find(|(c, _)| *c == code).map_or_else(
        || format!("RCODE{}", u16::from(code)),
        |(_, n)| (*n).to_owned(),
    )
}

/// The inverse of [`rcode_name`].
pub fn parse_rcode(name: &str) -> Option<ResponseCode> {
    RCODES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(c, _)| *c)
        .or_else(|| {
            name.strip_prefix("RCODE")?
                .parse::<u16>()
                .ok()
                .map(|n| ResponseCode::from((n >> 4) as u8, (n & 0xf) as u8))
        })
}

/// Encodes a query for `name`/`rtype` (EDNS with `payload` when set).
pub fn encode_query(
    id: u16,
    name: &str,
    rtype: RecordType,
    payload: Option<u16>,
) -> Result<Vec<u8>, String> {
    let name = Name::from_str(name).map_err(|e| format!("name {name:?}: {e}"))?;
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, rtype));
    if let Some(p) = payload {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.set_edns(e);
    }
    m.to_vec().map_err(|e| e.to_string())
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn udp_exchange(
    socket: &UdpSocket,
    server: SocketAddr,
    query: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Message, String> {
    socket
        .send_to(query, server)
        .map_err(|e| format!("send: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".into());
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == server => {
                let m = Message::from_vec(&buf[..n]).map_err(|e| format!("bad answer: {e}"))?;
                if m.metadata.id == id {
                    return Ok(m);
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timeout".into())
            }
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

/// One query over TCP (length-prefixed), bounded by `timeout`.
pub fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> Result<Message, String> {
    let mut s =
        TcpStream::connect_timeout(&server, timeout).map_err(|e| format!("tcp connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut framed = u16::try_from(query.len())
        .map_err(|e| e.to_string())?
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed)
        .map_err(|e| format!("tcp write: {e}"))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| format!("tcp read: {e}"))?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut body)
        .map_err(|e| format!("tcp read: {e}"))?;
    Message::from_vec(&body).map_err(|e| format!("bad answer: {e}"))
}

/// Asks `server` like a stub resolver: UDP, then TCP when the answer has
/// TC (or TCP only with `tcp`).
pub fn ask(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    payload: Option<u16>,
    tcp: bool,
    timeout: Duration,
) -> Result<Answer, String> {
    let id: u16 = rand::random();
    let query = encode_query(id, name, rtype, payload)?;
    let start = Instant::now();
    let (m, proto, udp_tc) = if tcp {
        (tcp_exchange(server, &query, timeout)?, "tcp", false)
    } else {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|_| "bind")?;
        let socket = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
        let m = udp_exchange(&socket, server, &query, id, timeout)?;
        if m.metadata.truncation {
            (tcp_exchange(server, &query, timeout)?, "tcp", true)
        } else {
            (m, "udp", false)
        }
    };
    Ok(Answer {
        proto,
        udp_tc,
        rcode: m.metadata.response_code,
        aa: m.metadata.authoritative,
        addresses: addresses(&m),
        ms: start.elapsed().as_millis(),
    })
}

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

fn addr(args: &[(String, String)], name: &str) -> Result<SocketAddr, String> {
    let v = opt(args, name).ok_or_else(|| format!("--{name} IP:PORT is required"))?;
    v.parse()
        .map_err(|_| format!("--{name}: not IP:PORT: {v:?}"))
}

fn rtype(args: &[(String, String)]) -> Result<RecordType, String> {
    let t = opt(args, "type").unwrap_or("A");
    RecordType::from_str(&t.to_ascii_uppercase()).map_err(|_| format!("--type {t:?}"))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs a `dns-*` subcommand with its `--key value` options.
///
/// # Errors
/// Usage, or the first failure (printed by the agent as `error=...`).
pub fn run(cmd: &str, args: &[(String, String)]) -> Result<(), String> {
    match cmd {
        "dns-query" => query(args),
        "dns-load" => load(args),
        "dns-recursor" => recursor(args),
        other => Err(format!("unknown subcommand {other:?}")),
    }
}

fn query(args: &[(String, String)]) -> Result<(), String> {
    let server = addr(args, "server")?;
    let name = opt(args, "name").ok_or("--name is required")?;
    let rtype = rtype(args)?;
    let payload = match num(args, "edns", 0)? {
        0 => None,
        p => Some(u16::try_from(p).map_err(|_| "--edns")?),
    };
    let tcp = opt(args, "tcp") == Some("yes");
    let timeout = Duration::from_millis(num(args, "timeout-ms", 3000)?);
    for _ in 0..num(args, "count", 1)?.min(MAX_COUNT) {
        let start = Instant::now();
        match ask(server, name, rtype, payload, tcp, timeout) {
            Ok(answer) => say(&answer.line()),
            Err(e) => say(&format!("failure={e} ms={}", start.elapsed().as_millis())),
        }
    }
    Ok(())
}

fn load(args: &[(String, String)]) -> Result<(), String> {
    let server = addr(args, "server")?;
    let names: Vec<String> = opt(args, "names")
        .ok_or("--names is required")?
        .split(',')
        .map(str::to_owned)
        .collect();
    let seconds = num(args, "seconds", 5)?.min(MAX_SECONDS);
    let rate = num(args, "rate", 200)?.clamp(1, 10_000);
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let period = Duration::from_micros(1_000_000 / rate);
    let (mut sent, mut answered, mut failed) = (0u64, 0u64, 0u64);
    let mut next = Instant::now();
    while Instant::now() < end {
        let name = &names[(sent as usize) % names.len()];
        let id = (sent & 0xffff) as u16;
        let q = encode_query(id, name, RecordType::A, None)?;
        sent += 1;
        let verdict = match udp_exchange(&socket, server, &q, id, Duration::from_secs(2)) {
            Ok(m)
                if m.metadata.response_code == ResponseCode::NoError
                    && !addresses(&m).is_empty() =>
            {
                Ok(())
            }
            Ok(m) => Err(format!(
                "{name}: rcode {} answers {:?}",
                m.metadata.response_code,
                addresses(&m)
            )),
            Err(e) => Err(format!("{name}: {e}")),
        };
        match verdict {
            Ok(()) => answered += 1,
            Err(e) => {
                failed += 1;
                if failed <= 5 {
                    say(&format!("failure={e}"));
                }
            }
        }
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    say(&format!("sent={sent} answered={answered} failed={failed}"));
    if failed > 0 {
        return Err(format!("{failed} of {sent} queries failed"));
    }
    Ok(())
}

/// The stub recursor's answer to `query` (`None` for garbage).
pub fn stub_answer(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_query(question.clone());
    let name = question.name().to_lowercase().to_string();
    if let Some(edns) = &q.edns {
        let mut e = Edns::new();
        e.set_max_payload(edns.max_payload().clamp(512, 1232));
        r.set_edns(e);
    }
    if name.ends_with(".example.test.") && question.query_type() == RecordType::A {
        let count = if name == "many.example.test." { 40 } else { 1 };
        for i in 0..count {
            let ip = if count == 1 {
                A::new(198, 51, 100, 7)
            } else {
                A::new(198, 51, 100, 100 + i)
            };
            r.add_answer(Record::from_rdata(
                question.name().clone(),
                30,
                RData::A(ip),
            ));
        }
    } else if !name.ends_with(".example.test.") {
        r.metadata.response_code = ResponseCode::NXDomain;
    }
    r.to_vec().ok()
}

fn recursor(args: &[(String, String)]) -> Result<(), String> {
    let listen = addr(args, "listen")?;
    let seconds = num(args, "seconds", 60)?.min(MAX_SECONDS);
    let silent = opt(args, "silent") == Some("yes");
    let socket = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let tcp = std::net::TcpListener::bind(listen).map_err(|e| format!("bind tcp {listen}: {e}"))?;
    tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    say(&format!(
        "ready dns {listen}{}",
        if silent { " silent" } else { "" }
    ));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut buf = vec![0u8; 4096];
    let mut answered = 0u64;
    while Instant::now() < end {
        // TCP (forwarders retry truncated answers there): one query per
        // connection is enough for the stub.
        if let Ok((mut conn, _)) = tcp.accept() {
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut len = [0u8; 2];
            if conn.read_exact(&mut len).is_ok() {
                let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut body).is_ok() && !silent {
                    if let Some(out) = stub_answer(&body) {
                        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        let _ = conn.write_all(&framed);
                        answered += 1;
                    }
                }
            }
        }
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if silent {
            continue;
        }
        if let Some(out) = stub_answer(&buf[..n]) {
            let _ = socket.send_to(&out, from);
            answered += 1;
        }
    }
    say(&format!("answered={answered}"));
    Ok(())
}
