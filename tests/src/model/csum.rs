//! Incremental checksum updates, bit for bit as `ebpf/include/kw_csum.h`.
//!
//! One's complement sums do not depend on byte order, so the model works on
//! big-endian 16-bit words where the C code works on little-endian loads.

/// Fold a 32-bit sum to 16 bits and complement it.
pub fn fold(mut c: u32) -> u16 {
    c = (c & 0xffff) + (c >> 16);
    c = (c & 0xffff) + (c >> 16);
    !(c as u16)
}

/// RFC 1624 eqn. 3 for a 16-bit field: `HC' = ~(~HC + ~m + m')`.
pub fn replace2(sum: u16, from: u16, to: u16) -> u16 {
    let mut c = u32::from(!sum);
    c += u32::from(!from);
    c += u32::from(to);
    fold(c)
}

/// RFC 1624 eqn. 3 for a 32-bit field.
pub fn replace4(sum: u16, from: u32, to: u32) -> u16 {
    let nf = !from;
    let mut c = u32::from(!sum);
    c += (nf & 0xffff) + (nf >> 16);
    c += (to & 0xffff) + (to >> 16);
    fold(c)
}

/// Full Internet checksum of `data` (for building and verifying packets).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let w = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(w);
    }
    fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_update_matches_full_recompute() {
        // An IPv4 header; change the source address and compare.
        let mut h: [u8; 20] = [
            0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 10, 198, 51, 100, 1,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let new = u32::from_be_bytes([203, 0, 113, 10]);
        let inc = replace4(c, old, new);
        h[12..16].copy_from_slice(&new.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc, checksum(&h));
        let inc2 = replace2(inc, 0x4006, 0x3f06);
        h[8] = 0x3f;
        assert_eq!(inc2, checksum(&h));
    }
}
