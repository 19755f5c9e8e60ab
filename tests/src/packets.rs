//! Test packets, built with etherparse (never by hand).
//!
//! [`Ip`] describes the IPv4 header (addresses, TTL, flags, options) and
//! [`L4`] the transport; [`frame`] writes an Ethernet frame with every
//! length and checksum computed by etherparse.

use std::net::Ipv4Addr;

use etherparse::{
    icmpv4, Icmpv4Type, IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv4Options,
    PacketBuilder,
};

/// An IPv4 header description.
#[derive(Debug, Clone)]
pub struct Ip {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub id: u16,
    /// Don't-fragment flag.
    pub df: bool,
    /// More-fragments flag.
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// Raw IPv4 options (a multiple of 4 bytes, at most 40).
    pub options: Vec<u8>,
}

impl Ip {
    /// A plain header: TTL 64, DF set, no options.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
            src,
            dst,
            ttl: 64,
            id: 0x1234,
            df: true,
            mf: false,
            frag_offset: 0,
            options: Vec::new(),
        }
    }

    /// The same header with another TTL.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }
}

/// TCP flags of a test segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// PSH.
    pub psh: bool,
}

impl TcpFlags {
    /// A bare SYN.
    pub const SYN: Self = Self {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
    };
    /// SYN + ACK.
    pub const SYN_ACK: Self = Self {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
        psh: false,
    };
    /// A bare ACK.
    pub const ACK: Self = Self {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
        psh: false,
    };
    /// PSH + ACK (data).
    pub const PSH_ACK: Self = Self {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
        psh: true,
    };
    /// FIN + ACK.
    pub const FIN_ACK: Self = Self {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
        psh: false,
    };
    /// RST.
    pub const RST: Self = Self {
        syn: false,
        ack: false,
        fin: false,
        rst: true,
        psh: false,
    };
}

/// The transport part of a test packet.
#[derive(Debug, Clone)]
pub enum L4 {
    /// A TCP segment.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flags.
        flags: TcpFlags,
    },
    /// A UDP datagram; `zero_csum` sends it without checksum.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Send checksum 0 ("none").
        zero_csum: bool,
    },
    /// An ICMP echo request (`request`) or reply.
    Echo {
        /// Request or reply.
        request: bool,
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
    },
    /// An ICMP error quoting `quoted` (an IPv4 packet without Ethernet).
    IcmpError {
        /// Type and code.
        kind: Icmpv4Type,
        /// The quoted packet (IPv4 header + at least 8 bytes).
        quoted: Vec<u8>,
    },
    /// Another ICMP message.
    IcmpOther {
        /// Type and code.
        kind: Icmpv4Type,
    },
    /// Any other protocol, with a raw payload.
    Raw {
        /// IP protocol number.
        proto: u8,
    },
}

/// Build an Ethernet + IPv4 frame.
pub fn frame(smac: [u8; 6], dmac: [u8; 6], ip: &Ip, l4: &L4, payload: &[u8]) -> Vec<u8> {
    let proto = match l4 {
        L4::Tcp { .. } => IpNumber::TCP,
        L4::Udp { .. } => IpNumber::UDP,
        L4::Echo { .. } | L4::IcmpError { .. } | L4::IcmpOther { .. } => IpNumber::ICMP,
        L4::Raw { proto } => IpNumber(*proto),
    };
    let mut h = Ipv4Header::new(0, ip.ttl, proto, ip.src.octets(), ip.dst.octets())
        .expect("valid IPv4 header");
    h.identification = ip.id;
    h.dont_fragment = ip.df;
    h.more_fragments = ip.mf;
    h.fragment_offset = IpFragOffset::try_new(ip.frag_offset).expect("fragment offset");
    h.options = Ipv4Options::try_from(ip.options.as_slice()).expect("IPv4 options");
    let b = PacketBuilder::ethernet2(smac, dmac).ip(IpHeaders::Ipv4(h, Ipv4Extensions::default()));
    let mut out = Vec::new();
    match l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
        } => {
            let mut t = b.tcp(*sport, *dport, 1000, 64240);
            if flags.syn {
                t = t.syn();
            }
            if flags.ack {
                t = t.ack(2000);
            }
            if flags.fin {
                t = t.fin();
            }
            if flags.rst {
                t = t.rst();
            }
            if flags.psh {
                t = t.psh();
            }
            t.write(&mut out, payload).expect("write TCP");
        }
        L4::Udp {
            sport,
            dport,
            zero_csum,
        } => {
            b.udp(*sport, *dport)
                .write(&mut out, payload)
                .expect("write UDP");
            if *zero_csum {
                let off = 14 + 20 + ip.options.len() + 6;
                out[off] = 0;
                out[off + 1] = 0;
            }
        }
        L4::Echo { request, id, seq } => {
            let e = if *request {
                b.icmpv4_echo_request(*id, *seq)
            } else {
                b.icmpv4_echo_reply(*id, *seq)
            };
            e.write(&mut out, payload).expect("write ICMP echo");
        }
        L4::IcmpError { kind, quoted } => {
            b.icmpv4(kind.clone())
                .write(&mut out, quoted)
                .expect("write ICMP error");
        }
        L4::IcmpOther { kind } => {
            b.icmpv4(kind.clone())
                .write(&mut out, payload)
                .expect("write ICMP");
        }
        L4::Raw { .. } => {
            // PacketBuilder has no raw-protocol step: write the headers here.
            let mut h = h_with_len(ip, proto, payload.len());
            h.header_checksum = h.calc_header_checksum();
            out.extend_from_slice(&dmac);
            out.extend_from_slice(&smac);
            out.extend_from_slice(&[0x08, 0x00]);
            h.write(&mut out).expect("write IPv4");
            out.extend_from_slice(payload);
        }
    }
    out
}

fn h_with_len(ip: &Ip, proto: IpNumber, payload: usize) -> Ipv4Header {
    let mut h = Ipv4Header::new(
        u16::try_from(payload).expect("payload fits"),
        ip.ttl,
        proto,
        ip.src.octets(),
        ip.dst.octets(),
    )
    .expect("valid IPv4 header");
    h.identification = ip.id;
    h.dont_fragment = ip.df;
    h.more_fragments = ip.mf;
    h.fragment_offset = IpFragOffset::try_new(ip.frag_offset).expect("fragment offset");
    h.options = Ipv4Options::try_from(ip.options.as_slice()).expect("IPv4 options");
    h.total_len += u16::try_from(ip.options.len()).expect("options fit");
    h
}

/// The IPv4 packet (no Ethernet header) of a frame: what an ICMP error quotes.
pub fn ip_packet(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// ICMP "port unreachable".
pub fn port_unreachable() -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Port)
}

/// ICMP "fragmentation needed" with a next-hop MTU.
pub fn frag_needed(mtu: u16) -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: mtu,
    })
}

/// ICMP "time exceeded in transit".
pub fn time_exceeded() -> Icmpv4Type {
    Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit)
}

/// Checks every checksum of a frame with etherparse: IPv4 header, and the
/// TCP / UDP / ICMP checksum. Returns a description of the first error.
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).map_err(|e| e.to_string())?;
    let Some(etherparse::NetSlice::Ipv4(ip)) = &sliced.net else {
        return Ok(());
    };
    let hdr = ip.header().to_header();
    if hdr.calc_header_checksum() != hdr.header_checksum {
        return Err("IPv4 header checksum".into());
    }
    let (src, dst) = (hdr.source, hdr.destination);
    match &sliced.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => {
            let want = t
                .to_header()
                .calc_checksum_ipv4_raw(src, dst, t.payload())
                .map_err(|e| e.to_string())?;
            if want != t.checksum() {
                return Err(format!("TCP checksum {:#06x} != {want:#06x}", t.checksum()));
            }
        }
        Some(etherparse::TransportSlice::Udp(u)) if u.checksum() != 0 => {
            let want = u
                .to_header()
                .calc_checksum_ipv4_raw(src, dst, u.payload())
                .map_err(|e| e.to_string())?;
            if want != u.checksum() {
                return Err(format!("UDP checksum {:#06x} != {want:#06x}", u.checksum()));
            }
        }
        Some(etherparse::TransportSlice::Icmpv4(c)) => {
            let want = c.header().icmp_type.calc_checksum(c.payload());
            if want != c.checksum() {
                return Err(format!(
                    "ICMP checksum {:#06x} != {want:#06x}",
                    c.checksum()
                ));
            }
        }
        _ => {}
    }
    Ok(())
}
