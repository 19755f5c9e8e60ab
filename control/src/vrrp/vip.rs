//! The single owner of virtual-address presence: adds and removes VIPs on
//! interfaces over rtnetlink (`RTM_NEWADDR` / `RTM_DELADDR`), and lists what is
//! there (`RTM_GETADDR`). Nothing else in the daemon touches VIP addresses.
//!
//! Adding a present address and removing an absent one succeed (idempotent), so
//! a restarted daemon adopts the addresses its predecessor left.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::config::VirtualIp;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_REPLACE: u16 = 0x100;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
const RT_SCOPE_UNIVERSE: u8 = 0;

/// A netlink failure.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The socket could not be opened or used.
    #[error("rtnetlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused the request.
    #[error("{op} {vip} on ifindex {ifindex}: {source}")]
    Refused {
        /// `add` or `del`.
        op: &'static str,
        /// The address.
        vip: VirtualIp,
        /// The interface index.
        ifindex: u32,
        /// errno from the kernel.
        #[source]
        source: io::Error,
    },
    /// A reply the parser did not understand.
    #[error("malformed rtnetlink reply")]
    Malformed,
}

/// The rtnetlink socket through which VIPs come and go.
#[derive(Debug)]
pub struct VipOwner {
    fd: OwnedFd,
    seq: u32,
    added: BTreeSet<(u32, VirtualIp)>,
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl VipOwner {
    /// Opens a `NETLINK_ROUTE` socket in the caller's network namespace.
    pub fn new() -> Result<Self, VipError> {
        // SAFETY: plain socket(2) call; the descriptor is owned right after.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(VipError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: valid option pointer and length for SO_RCVTIMEO.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(VipError::Socket(io::Error::last_os_error()));
        }
        Ok(VipOwner {
            fd,
            seq: 1,
            added: BTreeSet::new(),
        })
    }

    fn message(&mut self, ty: u16, flags: u16, body: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let mut m = Vec::with_capacity(NLMSG_HDR + body.len());
        m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m
    }

    fn send(&self, msg: &[u8]) -> Result<(), VipError> {
        // SAFETY: `msg` is a valid buffer; a zeroed sockaddr_nl addresses the kernel.
        let rc = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                std::ptr::from_ref(&sa).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(VipError::Socket(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> Result<usize, VipError> {
        // SAFETY: `buf` is a valid writable buffer of the given length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(VipError::Socket(io::Error::last_os_error()));
        }
        Ok(n as usize)
    }

    /// Sends one request with NLM_F_ACK and returns the kernel's errno (0: done).
    fn request(&mut self, ty: u16, flags: u16, body: &[u8]) -> Result<i32, VipError> {
        let msg = self.message(ty, flags | NLM_F_REQUEST | NLM_F_ACK, body);
        let seq = self.seq;
        self.send(&msg)?;
        let mut buf = vec![0u8; 8192];
        for _ in 0..64 {
            let n = self.recv(&mut buf)?;
            let mut off = 0;
            while off + NLMSG_HDR <= n {
                let len = u32::from_ne_bytes(
                    buf[off..off + 4]
                        .try_into()
                        .map_err(|_| VipError::Malformed)?,
                ) as usize;
                let mty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let mseq = u32::from_ne_bytes(
                    buf[off + 8..off + 12]
                        .try_into()
                        .map_err(|_| VipError::Malformed)?,
                );
                if len < NLMSG_HDR || off + len > n {
                    return Err(VipError::Malformed);
                }
                if mty == NLMSG_ERROR && mseq == seq && len >= NLMSG_HDR + 4 {
                    let e = i32::from_ne_bytes(
                        buf[off + 16..off + 20]
                            .try_into()
                            .map_err(|_| VipError::Malformed)?,
                    );
                    return Ok(-e);
                }
                off += (len + 3) & !3;
            }
        }
        Err(VipError::Malformed)
    }

    fn addr_body(ifindex: u32, vip: &VirtualIp) -> Vec<u8> {
        let (family, flags) = match vip.addr {
            IpAddr::V4(_) => (libc::AF_INET as u8, 0),
            IpAddr::V6(_) => (libc::AF_INET6 as u8, IFA_F_NODAD),
        };
        let mut b = vec![family, vip.prefix, flags, RT_SCOPE_UNIVERSE];
        b.extend_from_slice(&ifindex.to_ne_bytes());
        let o = octets(vip.addr);
        if vip.addr.is_ipv4() {
            push_attr(&mut b, IFA_LOCAL, &o);
        }
        push_attr(&mut b, IFA_ADDRESS, &o);
        b
    }

    /// Makes `vip` present on interface `ifindex` (present already: fine).
    pub fn add(&mut self, ifindex: u32, vip: &VirtualIp) -> Result<(), VipError> {
        let body = Self::addr_body(ifindex, vip);
        match self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &body)? {
            0 | libc::EEXIST => {
                self.added.insert((ifindex, *vip));
                Ok(())
            }
            e => Err(VipError::Refused {
                op: "add",
                vip: *vip,
                ifindex,
                source: io::Error::from_raw_os_error(e),
            }),
        }
    }

    /// Makes `vip` absent from interface `ifindex` (absent already: fine).
    pub fn remove(&mut self, ifindex: u32, vip: &VirtualIp) -> Result<(), VipError> {
        let body = Self::addr_body(ifindex, vip);
        self.added.remove(&(ifindex, *vip));
        match self.request(RTM_DELADDR, 0, &body)? {
            0 | libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV => Ok(()),
            e => Err(VipError::Refused {
                op: "del",
                vip: *vip,
                ifindex,
                source: io::Error::from_raw_os_error(e),
            }),
        }
    }

    /// The addresses configured on `ifindex` right now (both families).
    pub fn present(&mut self, ifindex: u32) -> Result<Vec<IpAddr>, VipError> {
        let mut out = Vec::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let body = [family, 0, 0, 0, 0, 0, 0, 0];
            let msg = self.message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, &body);
            self.send(&msg)?;
            let mut buf = vec![0u8; 32 * 1024];
            'dump: for _ in 0..1024 {
                let n = self.recv(&mut buf)?;
                let mut off = 0;
                while off + NLMSG_HDR <= n {
                    let len = u32::from_ne_bytes(
                        buf[off..off + 4]
                            .try_into()
                            .map_err(|_| VipError::Malformed)?,
                    ) as usize;
                    let mty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                    if len < NLMSG_HDR || off + len > n {
                        return Err(VipError::Malformed);
                    }
                    if mty == NLMSG_DONE || mty == NLMSG_ERROR {
                        break 'dump;
                    }
                    if mty == RTM_NEWADDR && len >= NLMSG_HDR + 8 {
                        let m = &buf[off + NLMSG_HDR..off + len];
                        let idx = u32::from_ne_bytes(
                            m[4..8].try_into().map_err(|_| VipError::Malformed)?,
                        );
                        if idx == ifindex {
                            if let Some(a) = parse_addr(m[0], &m[8..]) {
                                out.push(a);
                            }
                        }
                    }
                    off += (len + 3) & !3;
                }
            }
        }
        Ok(out)
    }

    /// Removes every address this owner added and did not remove (shutdown path).
    pub fn remove_all(&mut self) -> Result<(), VipError> {
        let all: Vec<_> = self.added.iter().copied().collect();
        for (ifindex, vip) in all {
            self.remove(ifindex, &vip)?;
        }
        Ok(())
    }
}

/// IFA_LOCAL for IPv4 (IFA_ADDRESS is the peer on point-to-point links), IFA_ADDRESS for IPv6.
fn parse_addr(family: u8, mut attrs: &[u8]) -> Option<IpAddr> {
    let want = if family == libc::AF_INET as u8 {
        IFA_LOCAL
    } else {
        IFA_ADDRESS
    };
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        let p = &attrs[4..len];
        if ty == want {
            if let Ok(a) = <[u8; 4]>::try_from(p) {
                return Some(IpAddr::from(a));
            }
            if let Ok(a) = <[u8; 16]>::try_from(p) {
                return Some(IpAddr::from(a));
            }
        }
        let step = (len + 3) & !3;
        attrs = attrs.get(step..).unwrap_or(&[]);
    }
    None
}
