//! The VRRP driver's system calls: its error type, raw and packet sockets,
//! socket options, interface index and hardware address.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::vip::VipError;

/// Driver errors (startup only; at run time failures are counted and logged).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An interface that does not exist.
    #[error("vrrp instance {instance}: no interface {interface}")]
    NoInterface {
        /// Instance name.
        instance: String,
        /// Interface name.
        interface: String,
    },
    /// No IPv4 address to send adverts from.
    #[error("vrrp instance {instance}: interface {interface} has no IPv4 address of its own")]
    NoAddress {
        /// Instance name.
        instance: String,
        /// Interface name.
        interface: String,
    },
    /// IPv6 instances: the machine and codec handle them, the driver not yet.
    #[error("vrrp instance {0}: IPv6 instances are not supported by the driver yet")]
    Ipv6(String),
    /// A socket call failed.
    #[error("vrrp {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// rtnetlink failed.
    #[error(transparent)]
    Vip(#[from] VipError),
    /// The engine thread could not be started.
    #[error("vrrp thread: {0}")]
    Thread(#[source] io::Error),
}

pub(crate) fn io_err(what: &'static str) -> DriverError {
    DriverError::Io {
        what,
        source: io::Error::last_os_error(),
    }
}

pub(crate) fn setsockopt<T>(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    value: &T,
    what: &'static str,
) -> Result<(), DriverError> {
    // SAFETY: `value` points to a live `T` whose size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io_err(what));
    }
    Ok(())
}

pub(crate) fn socket(
    domain: i32,
    ty: i32,
    proto: i32,
    what: &'static str,
) -> Result<OwnedFd, DriverError> {
    // SAFETY: plain socket(2); the descriptor is owned right after.
    let raw = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, proto) };
    if raw < 0 {
        return Err(io_err(what));
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

pub(crate) fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

pub(crate) fn hw_addr(fd: &OwnedFd, name: &str) -> Result<[u8; 6], DriverError> {
    // SAFETY: a zeroed ifreq is valid; the name fits (checked by config, <= 15 bytes).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads and writes the ifreq we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc != 0 {
        return Err(io_err("SIOCGIFHWADDR"));
    }
    // SAFETY: after SIOCGIFHWADDR the union holds `ifru_hwaddr`.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}
