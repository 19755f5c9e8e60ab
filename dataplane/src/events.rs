//! Sampled drop events from the `kw_events` ring buffer.
//!
//! [`DropEvents::poll`] never blocks. To wait for events, register the ring
//! buffer's file descriptor (it implements [`AsFd`]) with epoll or tokio's
//! `AsyncFd`, and drain with `poll` when it turns readable.

use std::{
    mem,
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    ptr,
};

use aya::maps::{MapData, MapError, RingBuf};
use kowabunga_bindings::kw_drop_event;

use crate::{kawaii::MAP_EVENTS, stats::stat_name, Kawaii};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ring buffer was already taken, or is missing from the object.
    #[error("map {MAP_EVENTS} already taken (only one reader per Kawaii) or missing")]
    Unavailable,
    /// The ring buffer could not be mapped.
    #[error("map {MAP_EVENTS}: cannot open the ring buffer")]
    Map(#[source] MapError),
}

/// One sampled drop, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns()` of the drop (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Interface the packet arrived on.
    pub ifindex: u32,
    /// The `kw_stat` reason code.
    pub reason: u8,
    /// Its name, e.g. `"drop_ingress_denied"`.
    pub reason_name: &'static str,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub saddr: Ipv4Addr,
    /// Destination address.
    pub daddr: Ipv4Addr,
    /// Source port (host order; ICMP: identifier or 0).
    pub sport: u16,
    /// Destination port (host order).
    pub dport: u16,
}

impl DropEvent {
    /// Decodes a `kw_drop_event` record; `None` if it is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < mem::size_of::<kw_drop_event>() {
            return None;
        }
        // SAFETY: the length is checked above, kw_drop_event is plain data
        // valid for any bit pattern, and read_unaligned has no alignment need.
        let raw: kw_drop_event = unsafe { ptr::read_unaligned(bytes.as_ptr().cast()) };
        Some(Self::from(raw))
    }
}

impl From<kw_drop_event> for DropEvent {
    fn from(e: kw_drop_event) -> Self {
        Self {
            ts_ns: e.ts_ns,
            ifindex: e.ifindex,
            reason: e.reason,
            reason_name: stat_name(e.reason.into()),
            proto: e.proto,
            // Network order in memory: the bytes are the address as written.
            saddr: Ipv4Addr::from(e.saddr.to_ne_bytes()),
            daddr: Ipv4Addr::from(e.daddr.to_ne_bytes()),
            sport: u16::from_be(e.sport),
            dport: u16::from_be(e.dport),
        }
    }
}

/// Reader of the `kw_events` ring buffer, from [`Kawaii::drop_events`].
pub struct DropEvents {
    ring: RingBuf<MapData>,
    malformed: u64,
}

impl DropEvents {
    /// The next event, or `None` when the ring is empty. Never blocks;
    /// records too short to be a `kw_drop_event` are skipped and counted.
    pub fn poll(&mut self) -> Option<DropEvent> {
        loop {
            let item = self.ring.next()?;
            match DropEvent::from_bytes(&item) {
                Some(event) => return Some(event),
                None => self.malformed += 1,
            }
        }
    }

    /// Every event available now.
    pub fn drain(&mut self) -> Vec<DropEvent> {
        std::iter::from_fn(|| self.poll()).collect()
    }

    /// Records skipped because they were too short.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl std::fmt::Debug for DropEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropEvents")
            .field("fd", &self.ring.as_raw_fd())
            .field("malformed", &self.malformed)
            .finish()
    }
}

impl AsFd for DropEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl AsRawFd for DropEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// The events methods of a loaded object (`Kawaii`, `Konvey`): both
/// have the shared maps of `kw_maps.h`.
macro_rules! events_api {
    ($object:ty) => {
        impl $object {
            /// Takes the ring buffer out of this value as a [`DropEvents`] reader.
            /// Only one reader exists: a second call fails with [`Error::Unavailable`].
            pub fn drop_events(&mut self) -> Result<DropEvents, Error> {
                let map = self.ebpf.take_map(MAP_EVENTS).ok_or(Error::Unavailable)?;
                let ring = RingBuf::try_from(map).map_err(Error::Map)?;
                Ok(DropEvents { ring, malformed: 0 })
            }
        }
    };
}

events_api!(Kawaii);
events_api!(crate::Konvey);

#[cfg(test)]
mod tests {
    use super::*;
    use kowabunga_bindings::kw_stat;

    #[test]
    fn decodes_network_order() {
        let raw = kw_drop_event {
            ts_ns: 42,
            ifindex: 7,
            reason: kw_stat::KW_STAT_DROP_INGRESS_DENIED as u8,
            proto: 6,
            _pad: 0,
            saddr: u32::from_ne_bytes([198, 51, 100, 7]),
            daddr: u32::from_ne_bytes([203, 0, 113, 10]),
            sport: 40000u16.to_be(),
            dport: 22u16.to_be(),
        };
        // SAFETY: kw_drop_event is plain data; viewing it as bytes is sound.
        let bytes: [u8; 32] = unsafe { mem::transmute(raw) };
        let e = DropEvent::from_bytes(&bytes).expect("long enough");
        assert_eq!(e.reason_name, "drop_ingress_denied");
        assert_eq!(e.saddr, Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(e.daddr, Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(
            (e.sport, e.dport, e.ifindex, e.ts_ns, e.proto),
            (40000, 22, 7, 42, 6)
        );
        assert_eq!(DropEvent::from_bytes(&bytes[..31]), None);
    }
}
