//! The I/O half of the health checks: one probe of one backend, with tokio.
//!
//! * **TCP**: a connection to `backend:backend_port` completes within the
//!   timeout (then it is closed normally). Refused (RST) or no answer: down.
//! * **UDP**: a connected socket sends the configured payload to
//!   `backend:backend_port`. With `expect`, a reply containing it must come
//!   within the timeout. Without `expect`, any reply is a success, and so is
//!   silence for half the timeout (UDP services need not answer); an ICMP
//!   port unreachable always means down: the kernel reports it on a
//!   connected UDP socket as `ECONNREFUSED` on the next receive.
//!
//! [`probe`] never fails: every problem is an [`Outcome::Failure`] whose text
//! is the reason logged with the state change.

use std::io::ErrorKind;
use std::net::SocketAddrV4;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, timeout_at};

use super::health::Outcome;

/// Largest UDP reply read by a probe.
pub const MAX_REPLY: usize = 2048;

/// Bound on the readiness wake-ups of one UDP probe.
const MAX_WAKEUPS: usize = 64;

/// How a UDP service is probed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UdpProbe {
    /// Payload sent to the backend.
    pub send: Vec<u8>,
    /// If set, the reply must contain these bytes.
    pub expect: Option<Vec<u8>>,
}

impl std::fmt::Debug for UdpProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpProbe")
            .field("send", &String::from_utf8_lossy(&self.send))
            .field(
                "expect",
                &self.expect.as_deref().map(String::from_utf8_lossy),
            )
            .finish()
    }
}

/// What to probe and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// TCP connect.
    Tcp,
    /// UDP payload, optional expected reply.
    Udp(UdpProbe),
}

/// One probe to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// `backend_ip:backend_port`.
    pub addr: SocketAddrV4,
    /// TCP or UDP.
    pub kind: ProbeKind,
}

/// Runs one probe, bounded by `limit`.
///
/// ```no_run
/// # async fn f() {
/// use std::time::Duration;
/// use kowabunga_control::konvey::health::Outcome;
/// use kowabunga_control::konvey::probe::{probe, ProbeKind, ProbeTarget};
///
/// let target = ProbeTarget { addr: "10.0.0.11:80".parse().unwrap(), kind: ProbeKind::Tcp };
/// if let Outcome::Failure(why) = probe(&target, Duration::from_millis(500)).await {
///     eprintln!("10.0.0.11:80 is down: {why}");
/// }
/// # }
/// ```
pub async fn probe(target: &ProbeTarget, limit: Duration) -> Outcome {
    match &target.kind {
        ProbeKind::Tcp => tcp(target.addr, limit).await,
        ProbeKind::Udp(udp_probe) => udp(target.addr, udp_probe, limit).await,
    }
}

async fn tcp(addr: SocketAddrV4, limit: Duration) -> Outcome {
    match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(io_reason("tcp connect", &e)),
        Err(_) => Outcome::Failure(format!(
            "tcp connect: no answer within {} ms",
            limit.as_millis()
        )),
    }
}

async fn udp(addr: SocketAddrV4, spec: &UdpProbe, limit: Duration) -> Outcome {
    let socket = match UdpSocket::bind(("0.0.0.0", 0)).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failure(io_reason("udp bind", &e)),
    };
    if let Err(e) = socket.connect(addr).await {
        return Outcome::Failure(io_reason("udp connect", &e));
    }
    if let Err(e) = socket.send(&spec.send).await {
        return Outcome::Failure(io_reason("udp send", &e));
    }
    // Without an expected reply, silence is fine: wait long enough for an
    // ICMP error (one round trip), and conclude before the state machine's
    // own deadline.
    let wait = match spec.expect {
        Some(_) => limit,
        None => limit / 2,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; MAX_REPLY];
    // An ICMP error is reported as error readiness (EPOLLERR), which a plain
    // `recv` would not wake up for: wait for either, then look at both.
    for _ in 0..MAX_WAKEUPS {
        let ready = timeout_at(deadline, socket.ready(Interest::READABLE | Interest::ERROR)).await;
        match ready {
            Err(_) if spec.expect.is_none() => return Outcome::Success,
            Err(_) => {
                return Outcome::Failure(format!("udp: no reply within {} ms", wait.as_millis()))
            }
            Ok(Err(e)) => return Outcome::Failure(io_reason("udp", &e)),
            Ok(Ok(_)) => {}
        }
        if let Ok(Some(e)) = socket.take_error() {
            return Outcome::Failure(io_reason("udp", &e));
        }
        match socket.try_recv(&mut buf) {
            Ok(n) => {
                return match &spec.expect {
                    Some(want) if !contains(&buf[..n], want) => Outcome::Failure(format!(
                        "udp reply {:?} does not contain {:?}",
                        String::from_utf8_lossy(&buf[..n.min(64)]),
                        String::from_utf8_lossy(want)
                    )),
                    _ => Outcome::Success,
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Outcome::Failure(io_reason("udp", &e)),
        }
    }
    Outcome::Failure("udp: spurious wakeups".to_owned())
}

fn io_reason(what: &str, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused if what.starts_with("udp") => {
            "udp: port unreachable (ICMP)".to_owned()
        }
        ErrorKind::ConnectionRefused => format!("{what}: connection refused"),
        _ => format!("{what}: {e}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn local(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    const LIMIT: Duration = Duration::from_millis(500);

    #[test]
    fn tcp_listening_is_up_and_closed_port_is_refused() {
        rt().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let up = ProbeTarget {
                addr: local(port),
                kind: ProbeKind::Tcp,
            };
            assert_eq!(probe(&up, LIMIT).await, Outcome::Success);
            drop(listener);
            assert_eq!(
                probe(&up, LIMIT).await,
                Outcome::failure("tcp connect: connection refused")
            );
        });
    }

    /// A UDP server answering `reply` to every datagram, for `n` datagrams.
    async fn udp_server(reply: &'static [u8], n: usize) -> (u16, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            for _ in 0..n {
                let Ok((_, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let _ = socket.send_to(reply, peer).await;
            }
        });
        (port, task)
    }

    #[test]
    fn udp_expected_reply() {
        rt().block_on(async {
            let (port, task) = udp_server(b"name=b1 pong", 2).await;
            let mut target = ProbeTarget {
                addr: local(port),
                kind: ProbeKind::Udp(UdpProbe {
                    send: b"ping".to_vec(),
                    expect: Some(b"pong".to_vec()),
                }),
            };
            assert_eq!(probe(&target, LIMIT).await, Outcome::Success);
            target.kind = ProbeKind::Udp(UdpProbe {
                send: b"ping".to_vec(),
                expect: Some(b"PONG".to_vec()),
            });
            assert_eq!(
                probe(&target, LIMIT).await,
                Outcome::failure(r#"udp reply "name=b1 pong" does not contain "PONG""#)
            );
            task.await.expect("server");
        });
    }

    #[test]
    fn udp_closed_port_is_down_by_icmp() {
        rt().block_on(async {
            // Bind then drop to find a port nobody listens on.
            let port = {
                let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
                s.local_addr().expect("addr").port()
            };
            for expect in [None, Some(b"pong".to_vec())] {
                let target = ProbeTarget {
                    addr: local(port),
                    kind: ProbeKind::Udp(UdpProbe {
                        send: b"ping".to_vec(),
                        expect,
                    }),
                };
                assert_eq!(
                    probe(&target, LIMIT).await,
                    Outcome::failure("udp: port unreachable (ICMP)")
                );
            }
        });
    }

    #[test]
    fn udp_silence_is_up_without_expect_and_down_with_it() {
        rt().block_on(async {
            // Bound but never answering.
            let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let port = silent.local_addr().expect("addr").port();
            let mut spec = UdpProbe {
                send: b"ping".to_vec(),
                expect: None,
            };
            let target = |spec: &UdpProbe| ProbeTarget {
                addr: local(port),
                kind: ProbeKind::Udp(spec.clone()),
            };
            assert_eq!(probe(&target(&spec), LIMIT).await, Outcome::Success);
            spec.expect = Some(b"pong".to_vec());
            assert_eq!(
                probe(&target(&spec), Duration::from_millis(200)).await,
                Outcome::failure("udp: no reply within 200 ms")
            );
            drop(silent);
        });
    }

    #[test]
    fn contains_and_debug() {
        assert!(contains(b"abc", b""));
        assert!(contains(b"abc", b"bc"));
        assert!(!contains(b"ab", b"abc"));
        let p = UdpProbe {
            send: b"ping".to_vec(),
            expect: None,
        };
        assert_eq!(
            format!("{p:?}"),
            r#"UdpProbe { send: "ping", expect: None }"#
        );
    }
}
