//! The VRRPv3 advertisement codec (RFC 9568 section 5), IPv4 and IPv6.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPvX Address(es)                        |
//! ```
//!
//! The checksum covers the VRRP message and, by default, the IP pseudo-header
//! (source, destination, zero, protocol 112, VRRP length): what keepalived 2.2
//! sends and expects ([`ChecksumMode::PseudoHeader`]). Some implementations compute
//! it over the VRRP message alone, as VRRPv2 did; [`ChecksumMode::NoPseudoHeader`]
//! selects that variant. IPv6 always uses the pseudo-header (RFC 8200 section 8.1).
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use kowabunga_control::vrrp::packet::{Advert, ChecksumMode};
//! let advert = Advert {
//!     vrid: 51,
//!     priority: 150,
//!     max_advert_cs: 100,
//!     addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
//! };
//! let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
//! let dst = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
//! let wire = advert.encode(src, dst, ChecksumMode::PseudoHeader).unwrap();
//! assert_eq!(Advert::decode(&wire, src, dst, ChecksumMode::PseudoHeader).unwrap(), advert);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group of VRRP adverts.
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP adverts.
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// VRRP version handled here.
pub const VERSION: u8 = 3;
/// The only VRRPv3 message type: ADVERTISEMENT.
pub const TYPE_ADVERT: u8 = 1;
/// Fixed header length, before the addresses.
pub const HEADER_LEN: usize = 8;
/// Largest advert interval the 12-bit field carries, in centiseconds.
pub const MAX_ADVERT_CS: u16 = 0x0fff;

/// How the checksum is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// VRRP message plus the IP pseudo-header (RFC 9568, keepalived's default).
    #[default]
    PseudoHeader,
    /// IPv4 only: the VRRP message alone, without pseudo-header (as VRRPv2 did).
    NoPseudoHeader,
}

/// Why a received advert was refused; each has a counter in the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header, or than its address count says.
    #[error("advert truncated: {len} bytes")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Longer than its address count says.
    #[error("advert length {len} does not match {count} addresses")]
    BadLength {
        /// Bytes received.
        len: usize,
        /// The address count field.
        count: u8,
    },
    /// Version field is not 3.
    #[error("VRRP version {0} (only 3 is handled)")]
    BadVersion(u8),
    /// Type field is not ADVERTISEMENT.
    #[error("VRRP type {0} (only 1, advertisement)")]
    BadType(u8),
    /// Zero addresses.
    #[error("advert carries no address")]
    NoAddress,
    /// Checksum mismatch.
    #[error("bad checksum {got:#06x}, expected {want:#06x}")]
    BadChecksum {
        /// Checksum field received.
        got: u16,
        /// Checksum computed.
        want: u16,
    },
    /// Source and destination are of different families, or the addresses of
    /// an advert to encode do not match the family of the IP header.
    #[error("address family mismatch")]
    Family,
    /// More than 255 addresses, or an advert interval over 4095 cs, to encode.
    #[error("advert cannot be encoded: {0}")]
    Unencodable(&'static str),
}

/// A decoded VRRPv3 advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Virtual router id (1..=255).
    pub vrid: u8,
    /// Sender's priority: 0 = stops being master, 255 = address owner.
    pub priority: u8,
    /// Advert interval in centiseconds (12 bits).
    pub max_advert_cs: u16,
    /// The virtual addresses (all of the IP header's family).
    pub addresses: Vec<IpAddr>,
}

impl Advert {
    /// Encodes the VRRP message (without IP header) sent from `src` to `dst`.
    pub fn encode(
        &self,
        src: IpAddr,
        dst: IpAddr,
        mode: ChecksumMode,
    ) -> Result<Vec<u8>, PacketError> {
        let count = u8::try_from(self.addresses.len())
            .map_err(|_| PacketError::Unencodable("more than 255 addresses"))?;
        if self.max_advert_cs > MAX_ADVERT_CS {
            return Err(PacketError::Unencodable("advert interval over 4095 cs"));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + 16 * self.addresses.len());
        out.extend_from_slice(&[
            (VERSION << 4) | TYPE_ADVERT,
            self.vrid,
            self.priority,
            count,
        ]);
        out.extend_from_slice(&self.max_advert_cs.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in &self.addresses {
            match (a, src) {
                (IpAddr::V4(a), IpAddr::V4(_)) => out.extend_from_slice(&a.octets()),
                (IpAddr::V6(a), IpAddr::V6(_)) => out.extend_from_slice(&a.octets()),
                _ => return Err(PacketError::Family),
            }
        }
        let sum = checksum(&out, src, dst, mode)?;
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        Ok(out)
    }

    /// Decodes and validates a VRRP message (the IP payload) received from `src`
    /// to `dst`: length, version, type, address count and checksum. The TTL / hop
    /// limit check belongs to the caller, which sees the IP header.
    pub fn decode(
        buf: &[u8],
        src: IpAddr,
        dst: IpAddr,
        mode: ChecksumMode,
    ) -> Result<Self, PacketError> {
        if buf.len() < HEADER_LEN {
            return Err(PacketError::Truncated { len: buf.len() });
        }
        let version = buf[0] >> 4;
        if version != VERSION {
            return Err(PacketError::BadVersion(version));
        }
        let ty = buf[0] & 0x0f;
        if ty != TYPE_ADVERT {
            return Err(PacketError::BadType(ty));
        }
        let count = buf[3];
        if count == 0 {
            return Err(PacketError::NoAddress);
        }
        let alen = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 4,
            (IpAddr::V6(_), IpAddr::V6(_)) => 16,
            _ => return Err(PacketError::Family),
        };
        let want_len = HEADER_LEN + alen * usize::from(count);
        if buf.len() < want_len {
            return Err(PacketError::Truncated { len: buf.len() });
        }
        if buf.len() > want_len {
            return Err(PacketError::BadLength {
                len: buf.len(),
                count,
            });
        }
        let got = u16::from_be_bytes([buf[6], buf[7]]);
        let mut zeroed = buf.to_vec();
        zeroed[6] = 0;
        zeroed[7] = 0;
        let want = checksum(&zeroed, src, dst, mode)?;
        if got != want {
            return Err(PacketError::BadChecksum { got, want });
        }
        let addresses = buf[HEADER_LEN..]
            .chunks_exact(alen)
            .map(|c| match <[u8; 4]>::try_from(c) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                Err(_) => {
                    let mut v6 = [0u8; 16];
                    v6.copy_from_slice(c);
                    IpAddr::V6(Ipv6Addr::from(v6))
                }
            })
            .collect();
        Ok(Advert {
            vrid: buf[1],
            priority: buf[2],
            max_advert_cs: u16::from_be_bytes([buf[4], buf[5]]) & MAX_ADVERT_CS,
            addresses,
        })
    }
}

/// The VRRP checksum of `msg` (checksum field zeroed) between `src` and `dst`.
pub fn checksum(
    msg: &[u8],
    src: IpAddr,
    dst: IpAddr,
    mode: ChecksumMode,
) -> Result<u16, PacketError> {
    let mut sum: u32 = 0;
    let len = u32::try_from(msg.len()).map_err(|_| PacketError::Unencodable("too long"))?;
    match (src, dst, mode) {
        (IpAddr::V4(_), IpAddr::V4(_), ChecksumMode::NoPseudoHeader) => {}
        (IpAddr::V4(s), IpAddr::V4(d), ChecksumMode::PseudoHeader) => {
            sum = add_words(sum, &s.octets());
            sum = add_words(sum, &d.octets());
            sum += u32::from(IPPROTO_VRRP);
            sum += len;
        }
        (IpAddr::V6(s), IpAddr::V6(d), _) => {
            sum = add_words(sum, &s.octets());
            sum = add_words(sum, &d.octets());
            sum = add_words(sum, &len.to_be_bytes());
            sum += u32::from(IPPROTO_VRRP);
        }
        _ => return Err(PacketError::Family),
    }
    sum = add_words(sum, msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    Ok(!(sum as u16))
}

fn add_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn round_trip_both_modes_and_v6() {
        for mode in [ChecksumMode::PseudoHeader, ChecksumMode::NoPseudoHeader] {
            let a = Advert {
                vrid: 7,
                priority: 100,
                max_advert_cs: 2,
                addresses: vec![v4(10, 0, 0, 1), v4(10, 0, 0, 2)],
            };
            let (s, d) = (v4(10, 0, 0, 3), IpAddr::V4(MCAST_V4));
            let w = a.encode(s, d, mode).expect("encode");
            assert_eq!(w.len(), 16);
            assert_eq!(Advert::decode(&w, s, d, mode).expect("decode"), a);
        }
        let a = Advert {
            vrid: 9,
            priority: 255,
            max_advert_cs: 100,
            addresses: vec![IpAddr::V6("2001:db8::1".parse().expect("v6"))],
        };
        let s: IpAddr = "fe80::1".parse().expect("v6");
        let d = IpAddr::V6(MCAST_V6);
        let w = a.encode(s, d, ChecksumMode::PseudoHeader).expect("encode");
        assert_eq!(w.len(), 24);
        assert_eq!(
            Advert::decode(&w, s, d, ChecksumMode::PseudoHeader).expect("decode"),
            a
        );
    }

    #[test]
    fn rejections() {
        let a = Advert {
            vrid: 7,
            priority: 100,
            max_advert_cs: 100,
            addresses: vec![v4(10, 0, 0, 1)],
        };
        let (s, d) = (v4(10, 0, 0, 3), IpAddr::V4(MCAST_V4));
        let mode = ChecksumMode::PseudoHeader;
        let w = a.encode(s, d, mode).expect("encode");
        assert_eq!(
            Advert::decode(&w[..7], s, d, mode),
            Err(PacketError::Truncated { len: 7 })
        );
        assert_eq!(
            Advert::decode(&w[..11], s, d, mode),
            Err(PacketError::Truncated { len: 11 })
        );
        let mut long = w.clone();
        long.push(0);
        assert!(matches!(
            Advert::decode(&long, s, d, mode),
            Err(PacketError::BadLength { .. })
        ));
        let mut v2 = w.clone();
        v2[0] = 0x21;
        assert_eq!(
            Advert::decode(&v2, s, d, mode),
            Err(PacketError::BadVersion(2))
        );
        let mut ty = w.clone();
        ty[0] = 0x32;
        assert_eq!(
            Advert::decode(&ty, s, d, mode),
            Err(PacketError::BadType(2))
        );
        let mut none = w.clone();
        none[3] = 0;
        assert_eq!(
            Advert::decode(&none, s, d, mode),
            Err(PacketError::NoAddress)
        );
        // The same bytes from another source fail the pseudo-header checksum only.
        assert!(matches!(
            Advert::decode(&w, v4(10, 0, 0, 4), d, mode),
            Err(PacketError::BadChecksum { .. })
        ));
        assert!(matches!(
            Advert::decode(&w, s, d, ChecksumMode::NoPseudoHeader),
            Err(PacketError::BadChecksum { .. })
        ));
        assert_eq!(
            Advert::decode(&w, s, IpAddr::V6(MCAST_V6), mode),
            Err(PacketError::Family)
        );
        let big = Advert {
            max_advert_cs: 4096,
            ..a
        };
        assert!(big.encode(s, d, mode).is_err());
    }
}
