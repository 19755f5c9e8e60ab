//! Tests of the parent module: the messages byte for byte (as the former
//! hand-written encoder built them), reply parsing, and add / remove /
//! present against a real kernel in a network namespace of their own.

use netlink_packet_core::Emitable as _;

use super::*;

fn vip(text: &str) -> VirtualIp {
    text.parse().expect("vip")
}

fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(payload);
    b
}

fn emitted(msg: &AddressMessage) -> Vec<u8> {
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.emit(&mut buf);
    buf
}

#[test]
fn messages_are_what_ip_addr_sends() {
    // IPv4: family, prefix, no flags, scope universe, ifindex; IFA_LOCAL, IFA_ADDRESS.
    let v4 = address_message(7, &vip("203.0.113.10/24"));
    let mut want = vec![libc::AF_INET as u8, 24, 0, 0];
    want.extend_from_slice(&7u32.to_ne_bytes());
    want.extend(attr(2, &[203, 0, 113, 10]));
    want.extend(attr(1, &[203, 0, 113, 10]));
    assert_eq!(emitted(&v4), want);
    // IPv6: IFA_F_NODAD, IFA_ADDRESS only.
    let v6 = address_message(3, &vip("2001:db8::10/64"));
    let mut want = vec![libc::AF_INET6 as u8, 64, 0x02, 0];
    want.extend_from_slice(&3u32.to_ne_bytes());
    let a: std::net::Ipv6Addr = "2001:db8::10".parse().expect("v6");
    want.extend(attr(1, &a.octets()));
    assert_eq!(emitted(&v6), want);
}

#[test]
fn dumps_read_the_local_address_of_ipv4() {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
    m.attributes = vec![
        AddressAttribute::Address("10.0.0.2".parse().expect("ip")),
        AddressAttribute::Local("10.0.0.1".parse().expect("ip")),
    ];
    assert_eq!(dumped_address(&m), Some("10.0.0.1".parse().expect("ip")));
    m.header.family = AddressFamily::Inet6;
    m.attributes = vec![AddressAttribute::Address(
        "2001:db8::1".parse().expect("ip"),
    )];
    assert_eq!(dumped_address(&m), Some("2001:db8::1".parse().expect("ip")));
    m.attributes.clear();
    assert_eq!(dumped_address(&m), None);
}

#[test]
fn malformed_replies_are_errors() {
    assert!(messages(&[]).expect("empty").is_empty());
    for bad in [&[1u8, 2, 3][..], &[0u8; 16][..], &[255u8; 40][..]] {
        assert!(matches!(messages(bad), Err(VipError::Malformed)), "{bad:?}");
    }
}

/// Runs `f` on a thread in a new, empty network namespace (just `lo`).
fn in_new_netns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        f();
    })
    .join()
    .expect("netns thread");
}

#[test]
fn add_and_remove_are_idempotent_on_a_real_interface() {
    if !kowabunga_testkit::privileged(
        "vrrp::vip::add_and_remove_are_idempotent_on_a_real_interface",
    ) {
        return;
    }
    in_new_netns(|| {
        let lo = 1; // the loopback of a fresh namespace
        let mut vips = VipOwner::new().expect("socket");
        let v4 = vip("192.0.2.10/32");
        let v6 = vip("2001:db8::10/128");
        assert!(!vips.present(lo).expect("dump").contains(&v4.addr));
        for _ in 0..2 {
            vips.add(lo, &v4).expect("add v4");
            vips.add(lo, &v6).expect("add v6");
        }
        let present = vips.present(lo).expect("dump");
        assert!(
            present.contains(&v4.addr) && present.contains(&v6.addr),
            "{present:?}"
        );
        for _ in 0..2 {
            vips.remove(lo, &v4).expect("remove v4");
        }
        let present = vips.present(lo).expect("dump");
        assert!(
            !present.contains(&v4.addr) && present.contains(&v6.addr),
            "{present:?}"
        );
        // remove_all takes what this owner added and did not remove.
        vips.remove_all().expect("remove_all");
        assert!(!vips.present(lo).expect("dump").contains(&v6.addr));
        // An interface that does not exist: a clear refusal for add, fine for remove.
        let err = vips.add(4242, &v4).expect_err("no such interface");
        let text = err.to_string();
        assert!(
            text.starts_with("add 192.0.2.10/32 on ifindex 4242: "),
            "{text}"
        );
        assert!(matches!(
            err,
            VipError::Refused {
                op: "add",
                ifindex: 4242,
                ..
            }
        ));
        vips.remove(4242, &v4)
            .expect("absent from a missing interface");
        assert!(vips.present(4242).expect("dump").is_empty());
    });
}
