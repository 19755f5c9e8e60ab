//! Captures VRRP packets on the lab segment, as the wire carries them.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::enter_netns;

/// One captured IPv4 VRRP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// IP source.
    pub src: Ipv4Addr,
    /// IP destination.
    pub dst: Ipv4Addr,
    /// IP TTL.
    pub ttl: u8,
    /// IP TOS.
    pub tos: u8,
    /// The VRRP message (IP payload).
    pub vrrp: Vec<u8>,
}

/// A capture running in the background; [`Capture::wait`] returns what it saw.
#[derive(Debug)]
pub struct Capture {
    handle: std::thread::JoinHandle<Result<Vec<Captured>>>,
}

impl Capture {
    /// Waits for the capture to end (count reached or time limit).
    pub fn wait(self) -> Result<Vec<Captured>> {
        match self.handle.join() {
            Ok(r) => r,
            Err(_) => bail!("capture thread panicked"),
        }
    }
}

/// Starts collecting VRRP packets reaching namespace `ns` (a raw protocol-112
/// socket that joins 224.0.0.18 on `dev`) until `count` are seen or `limit`
/// passes; returns once the socket listens. `keep` selects the packets.
pub fn capture(
    ns: &str,
    dev: &str,
    count: usize,
    limit: Duration,
    keep: impl Fn(&Captured) -> bool + Send + 'static,
) -> Result<Capture> {
    let ns = ns.to_owned();
    let dev = dev.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::spawn(move || -> Result<Vec<Captured>> {
        enter_netns(&ns)?;
        // SAFETY: plain socket(2); owned right after.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 112) };
        if raw < 0 {
            bail!("raw socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c = std::ffi::CString::new(dev.clone())?;
        // SAFETY: valid NUL-terminated name.
        let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
        let mreq = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from_ne_bytes([224, 0, 0, 18]),
            },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: idx as i32,
        };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: valid option values of the sizes given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_ADD_MEMBERSHIP,
                std::ptr::from_ref(&mreq).cast(),
                std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let _ = ready_tx.send(());
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while out.len() < count && t0.elapsed() < limit {
            // SAFETY: valid writable buffer.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 20 {
                continue;
            }
            let p = &buf[..n as usize];
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if p.len() < ihl {
                continue;
            }
            let cap = Captured {
                src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
                dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
                ttl: p[8],
                tos: p[1],
                vrrp: p[ihl..].to_vec(),
            };
            if keep(&cap) {
                out.push(cap);
            }
        }
        Ok(out)
    });
    let capture = Capture { handle };
    if ready_rx.recv_timeout(Duration::from_secs(5)).is_err() {
        return match capture.wait() {
            Err(e) => Err(e),
            Ok(_) => bail!("capture did not start"),
        };
    }
    Ok(capture)
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
