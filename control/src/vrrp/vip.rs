//! The single owner of virtual-address presence: adds and removes VIPs on
//! interfaces over rtnetlink (`RTM_NEWADDR` / `RTM_DELADDR`), and lists what is
//! there (`RTM_GETADDR`). Nothing else in the daemon touches VIP addresses.
//!
//! Adding a present address and removing an absent one succeed (idempotent), so
//! a restarted daemon adopts the addresses its predecessor left.
//!
//! Messages are `netlink-packet-route`'s (the types `rtnetlink` builds on),
//! sent over a blocking `netlink-sys` socket with a 2 s receive timeout.
//! Why not `rtnetlink`'s async handle: the owner is used from inside the
//! daemon's tokio runtime (at engine start) and from the VRRP engine's
//! `SCHED_RR` thread (every transition); a runtime of its own would need a
//! thread outside the real-time one (a VIP added late is a failover lost)
//! or a `block_on` that panics inside the daemon's runtime. A request and
//! its acknowledgement are two system calls; the blocking socket is the
//! simplest correct way to make them.
//!
//! ```no_run
//! use kowabunga_control::vrrp::vip::VipOwner;
//!
//! let mut vips = VipOwner::new()?;
//! let vip = "203.0.113.10/32".parse()?;
//! vips.add(2, &vip)?; // present (again: still fine)
//! assert!(vips.present(2)?.contains(&vip.addr));
//! vips.remove(2, &vip)?; // absent (again: still fine)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::config::VirtualIp;

/// Receive buffer: a dump datagram is at most one page of the kernel's
/// choosing (32 KiB covers every page size it uses for netlink).
const RECV_BUFFER: usize = 32 * 1024;
/// Datagrams read for one acknowledgement before giving up.
const MAX_ACK_DATAGRAMS: usize = 64;
/// Datagrams read for one address dump before giving up.
const MAX_DUMP_DATAGRAMS: usize = 1024;

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
    socket: Socket,
    seq: u32,
    added: BTreeSet<(u32, VirtualIp)>,
}

/// The `ifaddrmsg` of `vip` on `ifindex`: IPv4 with `IFA_LOCAL` and
/// `IFA_ADDRESS` (as `ip addr add` sends), IPv6 with `IFA_ADDRESS` and no
/// duplicate address detection (a VIP must answer at once).
fn address_message(ifindex: u32, vip: &VirtualIp) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.prefix_len = vip.prefix;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = ifindex;
    match vip.addr {
        IpAddr::V4(_) => {
            msg.header.family = AddressFamily::Inet;
            msg.attributes.push(AddressAttribute::Local(vip.addr));
        }
        IpAddr::V6(_) => {
            msg.header.family = AddressFamily::Inet6;
            msg.header.flags = AddressHeaderFlags::Nodad;
        }
    }
    msg.attributes.push(AddressAttribute::Address(vip.addr));
    msg
}

/// The address of a dumped `ifaddrmsg`: `IFA_LOCAL` for IPv4 (`IFA_ADDRESS`
/// is the peer on point-to-point links), `IFA_ADDRESS` for IPv6.
fn dumped_address(msg: &AddressMessage) -> Option<IpAddr> {
    let want_local = msg.header.family == AddressFamily::Inet;
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) if want_local => Some(*ip),
        AddressAttribute::Address(ip) if !want_local => Some(*ip),
        _ => None,
    })
}

/// The netlink messages of one datagram, in order.
fn messages(datagram: &[u8]) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>, VipError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < datagram.len() {
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[off..])
            .map_err(|_| VipError::Malformed)?;
        let len = msg.header.length as usize;
        if len == 0 {
            return Err(VipError::Malformed);
        }
        out.push(msg);
        off += (len + 3) & !3;
    }
    Ok(out)
}

impl VipOwner {
    /// Opens a `NETLINK_ROUTE` socket in the caller's network namespace.
    pub fn new() -> Result<Self, VipError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(VipError::Socket)?;
        socket.bind_auto().map_err(VipError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(VipError::Socket)?;
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: valid option pointer and length for SO_RCVTIMEO on our socket.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
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
            socket,
            seq: 1,
            added: BTreeSet::new(),
        })
    }

    /// Sends `payload` with `flags` (plus `NLM_F_REQUEST`); returns its sequence number.
    fn send(&mut self, payload: RouteNetlinkMessage, flags: u16) -> Result<u32, VipError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(VipError::Socket)?;
        Ok(self.seq)
    }

    fn recv(&self, buf: &mut [u8]) -> Result<usize, VipError> {
        let n = self
            .socket
            .recv(&mut &mut buf[..], 0)
            .map_err(VipError::Socket)?;
        // A datagram longer than the buffer was cut: its tail is lost.
        if n > buf.len() {
            return Err(VipError::Malformed);
        }
        Ok(n)
    }

    /// Sends one request with `NLM_F_ACK`; returns the kernel's errno (0: done).
    fn request(&mut self, payload: RouteNetlinkMessage, flags: u16) -> Result<i32, VipError> {
        let seq = self.send(payload, flags | NLM_F_ACK)?;
        let mut buf = vec![0u8; RECV_BUFFER];
        for _ in 0..MAX_ACK_DATAGRAMS {
            let n = self.recv(&mut buf)?;
            for msg in messages(&buf[..n])? {
                if msg.header.sequence_number != seq {
                    continue; // a late reply to an earlier request
                }
                if let NetlinkPayload::Error(e) = msg.payload {
                    return Ok(e.raw_code().abs());
                }
            }
        }
        Err(VipError::Malformed)
    }

    /// Makes `vip` present on interface `ifindex` (present already: fine).
    pub fn add(&mut self, ifindex: u32, vip: &VirtualIp) -> Result<(), VipError> {
        let msg = RouteNetlinkMessage::NewAddress(address_message(ifindex, vip));
        match self.request(msg, NLM_F_CREATE | NLM_F_REPLACE)? {
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
        self.added.remove(&(ifindex, *vip));
        let msg = RouteNetlinkMessage::DelAddress(address_message(ifindex, vip));
        match self.request(msg, 0)? {
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
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = AddressMessage::default();
            query.header.family = family;
            let seq = self.send(RouteNetlinkMessage::GetAddress(query), NLM_F_DUMP)?;
            let mut buf = vec![0u8; RECV_BUFFER];
            let mut done = false;
            for _ in 0..MAX_DUMP_DATAGRAMS {
                let n = self.recv(&mut buf)?;
                for msg in messages(&buf[..n])? {
                    if msg.header.sequence_number != seq {
                        continue;
                    }
                    match msg.payload {
                        NetlinkPayload::Done(_) | NetlinkPayload::Error(_) => done = true,
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a))
                            if a.header.index == ifindex =>
                        {
                            out.extend(dumped_address(&a));
                        }
                        _ => {}
                    }
                }
                if done {
                    break;
                }
            }
            if !done {
                return Err(VipError::Malformed);
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

#[cfg(test)]
mod tests;
