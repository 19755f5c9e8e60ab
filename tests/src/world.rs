//! The Kawaii configuration that fixtures, the differential test and the
//! benchmark share, written directly in ABI terms (`kw_config`, `kw_rule`).
//!
//! VIPs 203.0.113.10 (this zone, SNAT source) and 203.0.113.11; project
//! subnet 10.0.0.0/25; ingress tcp 22 from anywhere, icmp from
//! 198.51.100.0/24, IKE + ESP from the IPsec peer 5.6.7.8; egress accept
//! except tcp 25; dnat tcp 80,443 -> 10.0.0.10, udp 5000-5010 -> 10.0.0.11,
//! tcp 8080 -> 10.0.0.12 (no neighbour: passed to the kernel); peering
//! 10.1.0.0/24 with policy drop, in: tcp 22 + icmp, out: tcp any + udp 53;
//! IPsec remote subnet 172.16.1.0/24.

use std::net::Ipv4Addr;

use kowabunga_bindings::{kw_cidr, kw_config, kw_peering, kw_rule, kw_rule6, kw_table};

/// This zone's VIP, the SNAT source.
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Another zone's VIP, also served here.
pub const VIP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
/// An IPsec peer.
pub const IPSEC_PEER: Ipv4Addr = Ipv4Addr::new(5, 6, 7, 8);

/// Network-order address as the ABI stores it.
pub fn be(a: Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

/// A prefix as the ABI stores it.
pub fn cidr(a: Ipv4Addr, len: u8) -> kw_cidr {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    kw_cidr {
        addr: (u32::from(a) & mask).to_be(),
        mask: mask.to_be(),
    }
}

/// A rule as the ABI stores it.
pub fn rule(c: kw_cidr, proto: u8, lo: u16, hi: u16, target: Option<Ipv4Addr>) -> kw_rule {
    kw_rule {
        cidr: c,
        target: target.map_or(0, be),
        port_lo: lo,
        port_hi: hi,
        proto,
        ..Default::default()
    }
}

/// The shared configuration: bank config and the five rule tables.
pub fn config() -> (kw_config, Vec<Vec<kw_rule>>) {
    let any = cidr(Ipv4Addr::UNSPECIFIED, 0);
    let mut cfg = kw_config {
        snat_ip: be(VIP),
        private_net: cidr(Ipv4Addr::new(10, 0, 0, 0), 25),
        port_min: 1024,
        port_max: 65535,
        egress_policy: 0,
        sample_shift: 0,
        n_vips: 2,
        n_peerings: 1,
        n_ipsec: 1,
        ..Default::default()
    };
    cfg.vips[0] = be(VIP);
    cfg.vips[1] = be(VIP2);
    cfg.peerings[0] = kw_peering {
        subnet: cidr(Ipv4Addr::new(10, 1, 0, 0), 24),
        policy: 1,
        ..Default::default()
    };
    cfg.ipsec[0] = cidr(Ipv4Addr::new(172, 16, 1, 0), 24);

    let peer = cidr(Ipv4Addr::new(10, 1, 0, 0), 24);
    let peer_host = cidr(IPSEC_PEER, 32);
    let mut tables = vec![Vec::new(); kw_table::KW_TABLE_COUNT as usize];
    tables[kw_table::KW_TABLE_INGRESS as usize] = vec![
        rule(any, 6, 22, 22, None),
        rule(cidr(Ipv4Addr::new(198, 51, 100, 0), 24), 1, 0, 65535, None),
        rule(peer_host, 17, 500, 500, None),
        rule(peer_host, 17, 4500, 4500, None),
        rule(peer_host, 50, 0, 0, None),
    ];
    tables[kw_table::KW_TABLE_EGRESS as usize] = vec![rule(any, 6, 25, 25, None)];
    tables[kw_table::KW_TABLE_DNAT as usize] = vec![
        rule(any, 6, 80, 80, Some(Ipv4Addr::new(10, 0, 0, 10))),
        rule(any, 6, 443, 443, Some(Ipv4Addr::new(10, 0, 0, 10))),
        rule(any, 17, 5000, 5010, Some(Ipv4Addr::new(10, 0, 0, 11))),
        rule(any, 6, 8080, 8080, Some(Ipv4Addr::new(10, 0, 0, 12))),
    ];
    tables[kw_table::KW_TABLE_PEER_IN as usize] =
        vec![rule(peer, 6, 22, 22, None), rule(peer, 1, 0, 65535, None)];
    tables[kw_table::KW_TABLE_PEER_OUT as usize] =
        vec![rule(peer, 6, 1, 65535, None), rule(peer, 17, 53, 53, None)];
    (cfg, tables)
}

/// An IPv6 rule of firewall.ingress as the ABI stores it.
pub fn rule6(addr: std::net::Ipv6Addr, len: u8, proto: u8, lo: u16, hi: u16) -> kw_rule6 {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    kw_rule6 {
        addr: (u128::from(addr) & mask).to_be_bytes(),
        prefix_len: len,
        proto,
        port_lo: lo,
        port_hi: hi,
        ..Default::default()
    }
}

/// The IPv6 rules of firewall.ingress the fixtures and the differential
/// test share: tcp 8022 from 2001:db8:1::/48, udp 5353-5360 from
/// 2001:db8::/32, ICMPv6 (echo requests) from anywhere.
pub fn ingress6() -> Vec<kw_rule6> {
    vec![
        rule6("2001:db8:1::".parse().expect("static"), 48, 6, 8022, 8022),
        rule6("2001:db8::".parse().expect("static"), 32, 17, 5353, 5360),
        rule6(std::net::Ipv6Addr::UNSPECIFIED, 0, 58, 0, u16::MAX),
    ]
}
