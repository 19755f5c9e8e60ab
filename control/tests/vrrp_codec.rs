//! VRRPv3 codec: fixed wire vectors captured byte for byte from keepalived 2.2.7
//! (Debian 12) in the namespace lab (`tests/tests/vrrp_interop.rs` re-checks them
//! live), round trips, and random input that must be refused without panicking.

use std::net::{IpAddr, Ipv4Addr};

use kowabunga_control::vrrp::packet::{checksum, Advert, ChecksumMode, PacketError, MCAST_V4};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, d))
}

const MCAST: IpAddr = IpAddr::V4(MCAST_V4);

/// (what, bytes from keepalived, source, destination used in the pseudo-header, advert).
fn keepalived_vectors() -> Vec<(&'static str, &'static str, IpAddr, IpAddr, Advert)> {
    let adv = |priority, cs, addrs: &[u8]| Advert {
        vrid: 51,
        priority,
        max_advert_cs: cs,
        addresses: addrs.iter().map(|d| v4(*d)).collect(),
    };
    vec![
        (
            "prio 150, 100 ms, 2 VIPs",
            "31339602000a39380a4d00010a4d0002",
            v4(11),
            MCAST,
            adv(150, 10, &[1, 2]),
        ),
        (
            "graceful stop, priority 0",
            "31330002000acf380a4d00010a4d0002",
            v4(11),
            MCAST,
            adv(0, 10, &[1, 2]),
        ),
        (
            "prio 100, 1 s, 1 VIP",
            "31336401006475320a4d0001",
            v4(11),
            MCAST,
            adv(100, 100, &[1]),
        ),
        (
            "prio 255, 20 ms, 3 VIPs",
            "3133ff030002c5ea0a4d00010a4d00020a4d0003",
            v4(11),
            MCAST,
            adv(255, 2, &[1, 2, 3]),
        ),
        (
            "prio 254, 100 ms",
            "3133fe01000adb8b0a4d0001",
            v4(11),
            MCAST,
            adv(254, 10, &[1]),
        ),
        // Unicast to 10.77.0.12: the pseudo-header carries the unicast destination.
        (
            "unicast",
            "31339601006418ec0a4d0001",
            v4(11),
            v4(12),
            adv(150, 100, &[1]),
        ),
        // Unicast with `old_unicast_checksum`: sent to 10.77.0.12, but the checksum
        // was computed with the multicast group in the pseudo-header.
        (
            "unicast, old_unicast_checksum",
            "31339601006443320a4d0001",
            v4(11),
            MCAST,
            adv(150, 100, &[1]),
        ),
    ]
}

#[test]
fn keepalived_vectors_decode_and_reencode_byte_for_byte() {
    for (what, hex, src, dst, want) in keepalived_vectors() {
        let wire = unhex(hex);
        let got = Advert::decode(&wire, src, dst, ChecksumMode::PseudoHeader)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, want, "{what}");
        assert_eq!(
            want.encode(src, dst, ChecksumMode::PseudoHeader)
                .expect("encode"),
            wire,
            "{what}"
        );
        // keepalived's default always includes the pseudo-header.
        assert!(matches!(
            Advert::decode(&wire, src, dst, ChecksumMode::NoPseudoHeader),
            Err(PacketError::BadChecksum { .. })
        ));
    }
}

/// The two keepalived unicast variants differ only by the pseudo-header destination.
#[test]
fn old_unicast_checksum_is_the_multicast_pseudo_header() {
    let v = keepalived_vectors();
    let new = unhex(v[5].1);
    let old = unhex(v[6].1);
    assert_eq!(new[..6], old[..6]);
    assert_ne!(new[6..8], old[6..8]);
    assert!(Advert::decode(&old, v4(11), v4(12), ChecksumMode::PseudoHeader).is_err());
    assert!(Advert::decode(&new, v4(11), MCAST, ChecksumMode::PseudoHeader).is_err());
}

/// The variant without pseudo-header (VRRPv2-style sum over the message only):
/// keepalived 2.2.7 has no switch for it (later releases added
/// `v3_checksum_as_v2`), so its vectors are keepalived's messages with the checksum
/// recomputed here independently of the codec.
#[test]
fn no_pseudo_header_vectors() {
    fn plain_sum(msg: &[u8]) -> u16 {
        let mut s: u64 = 0;
        for (i, b) in msg.iter().enumerate() {
            s += if i % 2 == 0 {
                u64::from(*b) << 8
            } else {
                u64::from(*b)
            };
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
    let fixed = [
        (
            "31339602000a39380a4d00010a4d0002",
            "31339602000a24230a4d00010a4d0002",
        ),
        ("31336401006475320a4d0001", "31336401006460190a4d0001"),
    ];
    for (keepalived, want_hex) in fixed {
        let mut msg = unhex(keepalived);
        msg[6] = 0;
        msg[7] = 0;
        let sum = plain_sum(&msg);
        msg[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(msg, unhex(want_hex), "independent computation");
        let a = Advert::decode(&msg, v4(11), MCAST, ChecksumMode::NoPseudoHeader).expect("decode");
        assert_eq!(
            a.encode(v4(11), MCAST, ChecksumMode::NoPseudoHeader)
                .expect("encode"),
            msg
        );
        // Without pseudo-header the source does not matter.
        assert!(Advert::decode(&msg, v4(99), MCAST, ChecksumMode::NoPseudoHeader).is_ok());
        assert!(Advert::decode(&msg, v4(11), MCAST, ChecksumMode::PseudoHeader).is_err());
    }
}

/// A small deterministic generator (no extra dependency for the control crate).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn byte(&mut self) -> u8 {
        (self.next() & 0xff) as u8
    }
}

#[test]
fn random_round_trips_both_modes_and_families() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..2000 {
        let v6 = i % 3 == 0;
        let n = 1 + (r.next() % 20) as usize;
        let addresses: Vec<IpAddr> = (0..n)
            .map(|_| {
                if v6 {
                    IpAddr::from(std::array::from_fn::<u8, 16, _>(|_| r.byte()))
                } else {
                    IpAddr::from(std::array::from_fn::<u8, 4, _>(|_| r.byte()))
                }
            })
            .collect();
        let a = Advert {
            vrid: r.byte().max(1),
            priority: r.byte(),
            max_advert_cs: (r.next() % 4096) as u16,
            addresses,
        };
        let (src, dst) = if v6 {
            (
                IpAddr::from(std::array::from_fn::<u8, 16, _>(|_| r.byte())),
                IpAddr::V6(kowabunga_control::vrrp::packet::MCAST_V6),
            )
        } else {
            (
                IpAddr::from(std::array::from_fn::<u8, 4, _>(|_| r.byte())),
                MCAST,
            )
        };
        let mode = if !v6 && i % 2 == 1 {
            ChecksumMode::NoPseudoHeader
        } else {
            ChecksumMode::PseudoHeader
        };
        let wire = a.encode(src, dst, mode).expect("encode");
        assert_eq!(wire.len(), 8 + n * if v6 { 16 } else { 4 });
        assert_eq!(Advert::decode(&wire, src, dst, mode).expect("decode"), a);
        // Any single flipped bit is caught (by the checksum or a field check).
        let bit = (r.next() % (wire.len() as u64 * 8)) as usize;
        let mut bad = wire.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        if let Ok(d) = Advert::decode(&bad, src, dst, mode) {
            // Only the 4 reserved bits of byte 4 are outside the checksum's view of fields.
            assert_eq!(d, a, "flip at bit {bit} accepted with other content");
        }
    }
}

#[test]
fn random_garbage_is_refused_without_panic() {
    let mut r = Rng(42);
    let mut refused = 0;
    for _ in 0..20_000 {
        let len = (r.next() % 64) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| r.byte()).collect();
        if len > 0 && r.next().is_multiple_of(2) {
            buf[0] = 0x31;
        }
        if Advert::decode(&buf, v4(1), MCAST, ChecksumMode::PseudoHeader).is_err() {
            refused += 1;
        }
    }
    assert!(refused > 19_900, "{refused}");
}

#[test]
fn checksum_of_a_valid_message_folds_to_zero() {
    let wire = unhex("31339602000a39380a4d00010a4d0002");
    assert_eq!(
        checksum(&wire, v4(11), MCAST, ChecksumMode::PseudoHeader).expect("sum"),
        0
    );
}
