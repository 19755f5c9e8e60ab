//! A UDP probe: the client sends numbered datagrams to the VIP at a fixed rate; a
//! responder in each router, bound to the VIP (`IP_FREEBIND`, so it receives only
//! what reaches the VIP on that router), echoes the number and its router index.
//! From the log, [`ProbeLog::takeover`] computes when the new master answered
//! and how many probes were lost.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::enter_netns;
use super::lab::{VrrpLab, VIP};

/// UDP port of the responders.
pub const PROBE_PORT: u16 = 9999;
/// Longest probe run accepted (every loop is bounded).
pub const MAX_PROBE: Duration = Duration::from_secs(120);

/// One reply: probe number, arrival, responding router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Probe number.
    pub seq: u64,
    /// When it arrived at the client.
    pub at: Instant,
    /// Router index that answered.
    pub router: u8,
}

/// What a probe saw.
#[derive(Debug, Clone, Default)]
pub struct ProbeLog {
    /// Send time of each probe, by number.
    pub sent: Vec<Instant>,
    /// Replies in arrival order.
    pub replies: Vec<Reply>,
}

/// Takeover measured around an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// From the event to the first reply of the new router; `None`: never answered.
    pub time: Option<Duration>,
    /// Probes sent after the event (until the end) that got no reply.
    pub lost: usize,
    /// Probes sent after the event.
    pub sent: usize,
    /// Replies after the first one of the new router that came from another router.
    pub flaps: usize,
}

impl std::fmt::Display for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.time {
            Some(t) => write!(f, "{:>7.1} ms", t.as_secs_f64() * 1000.0)?,
            None => write!(f, "  never   ")?,
        }
        write!(
            f,
            "  lost {:>4}/{:<5} flaps {}",
            self.lost, self.sent, self.flaps
        )
    }
}

impl ProbeLog {
    /// Takeover by router `to` after `event`.
    pub fn takeover(&self, event: Instant, to: usize) -> Takeover {
        let first = self
            .replies
            .iter()
            .filter(|r| r.at >= event && usize::from(r.router) == to)
            .map(|r| r.at)
            .min();
        let mut answered = vec![false; self.sent.len()];
        for r in &self.replies {
            if let Some(a) = answered.get_mut(r.seq as usize) {
                *a = true;
            }
        }
        let after: Vec<usize> = (0..self.sent.len())
            .filter(|&s| self.sent[s] >= event)
            .collect();
        let lost = after.iter().filter(|&&s| !answered[s]).count();
        let flaps = first.map_or(0, |f| {
            self.replies
                .iter()
                .filter(|r| r.at > f && usize::from(r.router) != to)
                .count()
        });
        Takeover {
            time: first.map(|f| f - event),
            lost,
            sent: after.len(),
            flaps,
        }
    }
}

fn vip_socket(bind: &str) -> Result<UdpSocket> {
    // SAFETY: plain socket(2); owned right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("udp socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor, owned by the UdpSocket from now on.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: i32 = 1;
    // SAFETY: valid int option.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_FREEBIND,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    let addr: SocketAddr = bind.parse()?;
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: match addr.ip() {
                std::net::IpAddr::V4(a) => u32::from_ne_bytes(a.octets()),
                std::net::IpAddr::V6(_) => bail!("IPv4 only"),
            },
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid sockaddr_in.
    let rc = unsafe {
        libc::bind(
            fd,
            std::ptr::from_ref(&sa).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("bind {bind}: {}", std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// A running probe; [`Probe::finish`] stops it and returns the log.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
    log: Arc<Mutex<ProbeLog>>,
}

impl Probe {
    /// Starts the responders and the client at `rate` probes per second.
    pub fn start(lab: &VrrpLab, rate: u32) -> Result<Probe> {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let mut threads = Vec::new();
        let t_start = Instant::now();
        for (i, r) in lab.routers.iter().enumerate() {
            let ns = r.name().to_owned();
            let stop = Arc::clone(&stop);
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || -> Result<()> {
                let sock =
                    enter_netns(&ns).and_then(|()| vip_socket(&format!("{VIP}:{PROBE_PORT}")));
                let sock = match sock {
                    Ok(s) => {
                        let _ = tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return Err(e);
                    }
                };
                sock.set_read_timeout(Some(Duration::from_millis(50)))?;
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) && t_start.elapsed() < MAX_PROBE {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        if n >= 8 {
                            buf[8] = i as u8;
                            let _ = sock.send_to(&buf[..9], from);
                        }
                    }
                }
                Ok(())
            }));
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("responder in r{}: {e}", i + 1),
                Err(_) => bail!("responder in r{} did not start", i + 1),
            }
        }
        let ns = lab.client.name().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let c_stop = Arc::clone(&stop);
        let c_log = Arc::clone(&log);
        let period = Duration::from_secs(1) / rate.max(1);
        threads.push(std::thread::spawn(move || -> Result<()> {
            let sock = enter_netns(&ns).and_then(|()| Ok(UdpSocket::bind("0.0.0.0:0")?));
            let sock = match sock {
                Ok(s) => {
                    let _ = tx.send(());
                    s
                }
                Err(e) => return Err(e),
            };
            sock.set_read_timeout(Some(Duration::from_millis(50)))?;
            let rx_sock = sock.try_clone()?;
            let r_stop = Arc::clone(&c_stop);
            let r_log = Arc::clone(&c_log);
            let receiver = std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !r_stop.load(Ordering::Relaxed) && t_start.elapsed() < MAX_PROBE {
                    if let Ok((9, _)) = rx_sock.recv_from(&mut buf) {
                        let at = Instant::now();
                        let mut s = [0u8; 8];
                        s.copy_from_slice(&buf[..8]);
                        r_log
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .replies
                            .push(Reply {
                                seq: u64::from_be_bytes(s),
                                at,
                                router: buf[8],
                            });
                    }
                }
            });
            let dst = format!("{VIP}:{PROBE_PORT}");
            let mut next = Instant::now();
            let mut seq: u64 = 0;
            while !c_stop.load(Ordering::Relaxed) && t_start.elapsed() < MAX_PROBE {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                let at = Instant::now();
                c_log
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .sent
                    .push(at);
                let _ = sock.send_to(&seq.to_be_bytes(), &dst);
                seq += 1;
                next += period;
            }
            let _ = receiver.join();
            Ok(())
        }));
        rx.recv_timeout(Duration::from_secs(5))
            .context("probe client did not start")?;
        Ok(Probe { stop, threads, log })
    }

    /// A copy of the log so far.
    pub fn snapshot(&self) -> ProbeLog {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops every thread and returns the log.
    pub fn finish(mut self) -> Result<ProbeLog> {
        self.stop_threads()?;
        Ok(self.snapshot())
    }

    fn stop_threads(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(r) => r?,
                Err(_) => bail!("probe thread panicked"),
            }
        }
        Ok(())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.stop_threads();
    }
}
