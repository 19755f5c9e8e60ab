//! ICMP errors about translated flows, mirroring `ebpf/include/kw_icmp.h`:
//! found through the embedded header ([`find`]), then translated in the outer
//! and the embedded headers and forwarded ([`forward`]). Kawaii drops what
//! [`find`] rejects; Konvey passes it to the host.

use std::net::Ipv4Addr;

use kowabunga_bindings::kw_stat;

use super::csum::{replace2, replace4};
use super::fib::{FibModel, FibResult};
use super::flow::{
    fwd_commit, pass, Conntrack, CtEntry, Pkt, Tuple, ETH, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
};

/// The flow an ICMP error is about (`struct kw_icmp_ref`).
pub(crate) struct IcmpRef {
    v: CtEntry,
    peer: u32,
    iproto: u8,
    itype: u8,
}

// kw_icmp_find(): the flow of the embedded packet, or why not.
pub(crate) fn find(ct: &Conntrack, p: &Pkt, role: u8) -> Result<IcmpRef, u32> {
    let icmp = ETH + 20;
    let inner = icmp + 8;
    let il4 = inner + 20;
    let avail = usize::from(p.tot_len()) - 20;
    if il4 + 8 > p.buf.len() || avail < 8 + 20 + 8 {
        return Err(kw_stat::KW_STAT_DROP_MALFORMED_L4);
    }
    if p.buf[inner] != 0x45 {
        return Err(kw_stat::KW_STAT_DROP_UNSUPPORTED);
    }
    let iproto = p.buf[inner + 9];
    let (mut isport, mut idport, mut itype) = (0u16, 0u16, 0u8);
    match iproto {
        IPPROTO_TCP | IPPROTO_UDP => {
            isport = p.u16_at(il4);
            idport = p.u16_at(il4 + 2);
        }
        IPPROTO_ICMP => {
            itype = p.buf[il4];
            match itype {
                8 => isport = p.u16_at(il4 + 4),
                0 => idport = p.u16_at(il4 + 4),
                _ => return Err(kw_stat::KW_STAT_DROP_UNSUPPORTED),
            }
        }
        _ => return Err(kw_stat::KW_STAT_DROP_UNSUPPORTED),
    }
    let in_saddr = p.u32_at(inner + 12);
    let in_daddr = p.u32_at(inner + 16);
    let k = Tuple {
        saddr: in_daddr,
        daddr: in_saddr,
        sport: idport,
        dport: isport,
        proto: iproto,
    };
    let Some(v) = ct.get(&k).copied() else {
        return Err(kw_stat::KW_STAT_DROP_ICMP_UNMATCHED);
    };
    if v.in_role != role || p.key.daddr != in_saddr {
        return Err(kw_stat::KW_STAT_DROP_ICMP_UNMATCHED);
    }
    Ok(IcmpRef {
        v,
        peer: k.saddr,
        iproto,
        itype,
    })
}

// kw_icmp_forward(): translate and forward an error about r's flow.
pub(crate) fn forward(fib: &FibModel, p: &mut Pkt, r: &IcmpRef) -> (u32, u32) {
    let (v, iproto, itype) = (r.v, r.iproto, r.itype);
    let icmp = ETH + 20;
    let inner = icmp + 8;
    let il4 = inner + 20;
    let avail = usize::from(p.tot_len()) - 20;
    if p.ttl_expiring() {
        return pass(kw_stat::KW_STAT_PASS_TTL);
    }
    let n_daddr = v.nat.daddr;
    let n_saddr = if p.key.saddr == r.peer {
        v.nat.saddr
    } else {
        p.key.saddr
    };
    let fib = fib.lookup(Ipv4Addr::from(n_daddr), p.tot_len());
    if matches!(fib, FibResult::Other | FibResult::FragNeeded) {
        return pass(kw_stat::KW_STAT_PASS_FIB);
    }

    let icmp_sum = icmp + 2;
    let ip_sum = inner + 10;
    let l4sum = match iproto {
        IPPROTO_UDP if p.u16_at(il4 + 6) != 0 => Some(il4 + 6),
        IPPROTO_TCP if il4 + 18 <= p.buf.len() && avail >= 8 + 20 + 18 => Some(il4 + 16),
        _ => None,
    };
    icmp_addr(p, icmp_sum, ip_sum, l4sum, inner + 12, v.nat.daddr);
    icmp_addr(p, icmp_sum, ip_sum, l4sum, inner + 16, v.nat.saddr);
    if iproto == IPPROTO_ICMP {
        let nid = if itype == 8 { v.nat.dport } else { v.nat.sport };
        icmp_field2(p, icmp_sum, Some(il4 + 2), il4 + 4, nid);
    } else {
        icmp_field2(p, icmp_sum, l4sum, il4, v.nat.dport);
        icmp_field2(p, icmp_sum, l4sum, il4 + 2, v.nat.sport);
        if iproto == IPPROTO_UDP {
            if let Some(off) = l4sum {
                if p.u16_at(off) == 0 {
                    p.set16(off, 0xffff);
                    let s = replace2(p.u16_at(icmp_sum), 0, 0xffff);
                    p.set16(icmp_sum, s);
                }
            }
        }
    }
    // outer header
    let old_s = p.u32_at(ETH + 12);
    if old_s != n_saddr {
        let s = replace4(p.u16_at(ETH + 10), old_s, n_saddr);
        p.set16(ETH + 10, s);
        p.set32(ETH + 12, n_saddr);
    }
    let old_d = p.u32_at(ETH + 16);
    if old_d != n_daddr {
        let s = replace4(p.u16_at(ETH + 10), old_d, n_daddr);
        p.set16(ETH + 10, s);
        p.set32(ETH + 16, n_daddr);
    }
    match fib {
        FibResult::Success { smac, dmac } => fwd_commit(p, smac, dmac),
        _ => pass(kw_stat::KW_STAT_PASS_NO_NEIGH),
    }
}

// kw_icmp_field2()
fn icmp_field2(p: &mut Pkt, icmp_sum: usize, inner_sum: Option<usize>, field: usize, nv: u16) {
    let old = p.u16_at(field);
    if old == nv {
        return;
    }
    if let Some(is) = inner_sum {
        let before = p.u16_at(is);
        let after = replace2(before, old, nv);
        p.set16(is, after);
        let s = replace2(p.u16_at(icmp_sum), before, after);
        p.set16(icmp_sum, s);
    }
    p.set16(field, nv);
    let s = replace2(p.u16_at(icmp_sum), old, nv);
    p.set16(icmp_sum, s);
}

// kw_icmp_addr()
fn icmp_addr(
    p: &mut Pkt,
    icmp_sum: usize,
    ip_sum: usize,
    l4_sum: Option<usize>,
    field: usize,
    nv: u32,
) {
    let old = p.u32_at(field);
    if old == nv {
        return;
    }
    for sum in std::iter::once(ip_sum).chain(l4_sum) {
        let before = p.u16_at(sum);
        let after = replace4(before, old, nv);
        p.set16(sum, after);
        let s = replace2(p.u16_at(icmp_sum), before, after);
        p.set16(icmp_sum, s);
    }
    p.set32(field, nv);
    let s = replace4(p.u16_at(icmp_sum), old, nv);
    p.set16(icmp_sum, s);
}
