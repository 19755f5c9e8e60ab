//! Batched UDP I/O for Kiwi's receive loops: `recvmmsg` takes every
//! datagram waiting on the socket (up to [`BATCH`]) in one system call and
//! `sendmmsg` sends the answers in one, so a loaded server spends its time
//! answering rather than entering the kernel twice per query.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams taken or sent per system call.
pub const BATCH: usize = 32;

/// Receive buffers and their headers, reused from call to call.
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("size", &self.bufs.len())
            .finish()
    }
}

impl Batch {
    /// [`BATCH`] buffers of `size` bytes each.
    pub fn new(size: usize) -> Self {
        Batch {
            bufs: (0..BATCH).map(|_| vec![0u8; size]).collect(),
            // SAFETY: all-zero bytes are a valid sockaddr_storage, iovec and
            // mmsghdr (null pointers, zero lengths).
            addrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            msgs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    /// Waits for at least one datagram (the socket's read timeout bounds
    /// the wait) and takes every one waiting, up to [`BATCH`]; returns how
    /// many. Datagram `i` is [`Batch::get`]`(i)`.
    ///
    /// # Errors
    /// The socket's error (`WouldBlock` at the timeout).
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.bufs[i].len(),
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&raw mut self.addrs[i]).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &raw mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every header points into this batch's own buffers, address
        // slots and iovecs, which live and stay in place for the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last [`Batch::recv`]: its bytes (a datagram
    /// longer than the buffer is cut; the flag says so) and its source.
    pub fn get(&self, i: usize) -> (&[u8], bool, Option<SocketAddr>) {
        let len = (self.msgs[i].msg_len as usize).min(self.bufs[i].len());
        let cut = self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (&self.bufs[i][..len], cut, to_socket_addr(&self.addrs[i]))
    }
}

/// The address in `ss`, if IPv4 or IPv6.
pub fn to_socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let sin = unsafe { &*(std::ptr::from_ref(ss).cast::<libc::sockaddr_in>()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(std::ptr::from_ref(ss).cast::<libc::sockaddr_in6>()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends every `(bytes, destination)` of `replies` with as few `sendmmsg`
/// calls as it takes; a reply the kernel refuses is dropped (UDP: the
/// client asks again).
pub fn send_all(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) {
    let mut start = 0;
    while start < replies.len() {
        let chunk = &replies[start..replies.len().min(start + BATCH)];
        let addrs: Vec<socket2::SockAddr> = chunk
            .iter()
            .map(|(_, a)| socket2::SockAddr::from(*a))
            .collect();
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(bytes, _)| libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..chunk.len())
            .map(|i| {
                // SAFETY: all-zero bytes are a valid mmsghdr.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = addrs[i].as_ptr().cast_mut().cast();
                m.msg_hdr.msg_namelen = addrs[i].len();
                m.msg_hdr.msg_iov = &raw mut iovs[i];
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: the headers point into `addrs`, `iovs` and the replies'
        // bytes, all alive and unmoved until the call returns; the kernel
        // only reads the payloads.
        let sent = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        drop(addrs);
        // Sent ones, then skip the one the kernel refused.
        let sent = usize::try_from(sent).unwrap_or(0);
        start += if sent < chunk.len() { sent + 1 } else { sent };
    }
}
