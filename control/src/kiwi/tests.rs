//! Kiwi's unit tests: the section's validation, the zones' answers, the
//! query path on hostile bytes (a seeded property test), the atomic swap
//! under concurrent queries, and a live server on the loopback (UDP, TCP,
//! forwarding to a recursor that answers, one that is gone, one that hangs).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::compile::Zones;
use super::config::ValidKiwi;
use super::engine::{Handler, Reply, Server, Snapshot};
use crate::config::testing::{invalid, ok};

const NODE: &str = "node: {zone: eu-west-a, interfaces: {}}\n";

fn section(extra: &str) -> String {
    format!(
        "{NODE}kiwi:\n  listen: [127.0.0.1]\n  recursors: [192.0.2.53]\n  zones:\n    - domain: Acme.Local\n      records:\n        - {{name: acme-server, addresses: [10.0.0.10]}}\n        - {{name: ad, addresses: [10.0.0.10, 10.0.0.11, 10.0.0.12, 'fd00::1']}}\n        - {{name: www.app, addresses: [10.0.0.20]}}\n{extra}"
    )
}

fn kiwi(yaml: &str) -> ValidKiwi {
    ok(yaml).kiwi.expect("kiwi section")
}

fn handler(kiwi: &ValidKiwi) -> Handler {
    Handler::new(
        Snapshot {
            zones: Zones::compile(kiwi, 7),
            forwarder: None,
        },
        1,
    )
}

/// A query for `name`/`rtype`, with EDNS when `payload` is set.
fn query(id: u16, name: &str, rtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
    if let Some(p) = payload {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.set_edns(e);
    }
    m.to_vec().expect("encode")
}

fn client() -> SocketAddr {
    "10.0.0.99:5353".parse().expect("addr")
}

fn answer_of(h: &Handler, bytes: &[u8], from: SocketAddr) -> Message {
    match h.on_datagram(bytes, from) {
        Reply::Send(out) => Message::from_vec(&out).expect("answer decodes"),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_section_is_validated_field_by_field() {
    let k = kiwi(&section(""));
    assert_eq!(k.listen, ["127.0.0.1:53".parse::<SocketAddr>().expect("a")]);
    assert_eq!(k.zones[0].domain, "acme.local");
    assert_eq!(k.zones[0].records["ad"].len(), 4);
    assert_eq!(k.forward_timeout, Duration::from_millis(2000));
    // A kiwi section alone is a node's service.
    let roles: Vec<&str> = crate::daemon::registry::wanted(&ok(&section("")))
        .map(|s| s.name)
        .collect();
    assert_eq!(roles, ["kiwi"]);

    let bad = |from: &str, to: &str| invalid(&section("").replace(from, to));
    assert_eq!(
        bad("listen: [127.0.0.1]", "listen: []"),
        "kiwi.listen: empty: at least one entry is required"
    );
    assert_eq!(
        bad("listen: [127.0.0.1]", "listen: [nowhere]"),
        r#"kiwi.listen[0]: "nowhere" is not an address (a.b.c.d, a.b.c.d:port, v6 or [v6]:port)"#
    );
    assert_eq!(
        bad("recursors: [192.0.2.53]", "recursors: ['0.0.0.0:53']"),
        r#"kiwi.recursors[0]: "0.0.0.0:53" is the unspecified address"#
    );
    assert_eq!(
        bad("domain: Acme.Local", "domain: -acme.local"),
        r#"kiwi.zones[0].domain: "-acme.local" is not a DNS name (label "-acme": 1-63 letters, digits, '-' or '_', no '-' at either end)"#
    );
    assert_eq!(
        bad("name: ad,", "name: acme-server,"),
        r#"kiwi.zones[0].records[1].name: "acme-server" is listed twice in the zone"#
    );
    assert_eq!(
        bad("'fd00::1'", "10.0.0.300"),
        r#"kiwi.zones[0].records[1].addresses[3]: "10.0.0.300" is not an IP address"#
    );
    assert_eq!(
        invalid(&section("  forward_timeout_ms: 0\n")),
        "kiwi.forward_timeout_ms: 0 is out of range (100-60000)"
    );
    assert_eq!(
        invalid(&section("    - domain: acme.local.\n      records: []\n")),
        r#"kiwi.zones[1].domain: "acme.local." is the domain of another zone"#
    );
    assert_eq!(
        invalid(&section("      allow_from: [10.0.0.1/24]\n")),
        r#"kiwi.zones[0].allow_from[0]: "10.0.0.1/24" has host bits set (did you mean 10.0.0.0/24?)"#
    );
}

#[test]
fn zones_answer_instances_records_and_negatives() {
    let h = handler(&kiwi(&section("")));
    let m = answer_of(
        &h,
        &query(1, "ACME-server.acme.local.", RecordType::A, None),
        client(),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative && m.metadata.recursion_available);
    assert_eq!(m.metadata.id, 1);
    assert_eq!(addresses(&m), ["10.0.0.10".parse::<IpAddr>().expect("ip")]);
    assert_eq!(m.answers[0].ttl, 60);

    // Every address, rotated by one per answer.
    let mut firsts = Vec::new();
    for id in 0..6 {
        let m = answer_of(
            &h,
            &query(id, "ad.acme.local.", RecordType::A, None),
            client(),
        );
        let got = addresses(&m);
        let set: BTreeSet<_> = got.iter().copied().collect();
        assert_eq!(set.len(), 3, "{got:?}");
        firsts.push(got[0]);
    }
    assert_eq!(&firsts[..3], &firsts[3..]);
    assert_eq!(firsts[..3].iter().collect::<BTreeSet<_>>().len(), 3);
    let m = answer_of(
        &h,
        &query(9, "ad.acme.local.", RecordType::AAAA, None),
        client(),
    );
    assert_eq!(addresses(&m), ["fd00::1".parse::<IpAddr>().expect("ip")]);
    let m = answer_of(
        &h,
        &query(9, "ad.acme.local.", RecordType::ANY, None),
        client(),
    );
    assert_eq!(addresses(&m).len(), 4);

    // NXDOMAIN inside the zone, with the SOA; NODATA for other types and
    // names that only have names below them.
    for (name, rtype, code) in [
        ("nope.acme.local.", RecordType::A, ResponseCode::NXDomain),
        ("x.nope.acme.local.", RecordType::A, ResponseCode::NXDomain),
        (
            "acme-server.acme.local.",
            RecordType::MX,
            ResponseCode::NoError,
        ),
        (
            "acme-server.acme.local.",
            RecordType::Unknown(65280),
            ResponseCode::NoError,
        ),
        ("app.acme.local.", RecordType::A, ResponseCode::NoError),
        ("acme.local.", RecordType::A, ResponseCode::NoError),
    ] {
        let m = answer_of(&h, &query(2, name, rtype, None), client());
        assert_eq!(m.metadata.response_code, code, "{name} {rtype}");
        assert!(m.answers.is_empty(), "{name}");
        assert!(m.metadata.authoritative);
        assert!(
            matches!(m.authorities.first().map(|r| &r.data), Some(RData::SOA(_))),
            "{name}: {m:?}"
        );
    }
    let m = answer_of(
        &h,
        &query(3, "www.app.acme.local.", RecordType::A, None),
        client(),
    );
    assert_eq!(addresses(&m).len(), 1);

    // SOA and NS at the apex; the NS host answers the listen address.
    let m = answer_of(
        &h,
        &query(4, "acme.local.", RecordType::SOA, None),
        client(),
    );
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(soa.serial, 7);
    assert_eq!(soa.mname.to_string(), "ns.acme.local.");
    let m = answer_of(&h, &query(5, "acme.local.", RecordType::NS, None), client());
    assert!(matches!(&m.answers[0].data, RData::NS(ns) if ns.0.to_string() == "ns.acme.local."));
    let mut glue = m.clone();
    glue.answers = m.additionals.clone();
    assert_eq!(addresses(&glue).len(), 1);
    let m = answer_of(
        &h,
        &query(6, "ns.acme.local.", RecordType::A, None),
        client(),
    );
    assert_eq!(addresses(&m), ["127.0.0.1".parse::<IpAddr>().expect("ip")]);

    // Without recursors, other names are refused.
    let m = answer_of(&h, &query(7, "example.com.", RecordType::A, None), client());
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
}

#[test]
fn isolation_answers_the_project_subnets_only() {
    let k = kiwi(&section("      allow_from: [10.0.0.0/25, 10.1.0.0/24]\n"));
    let h = handler(&k);
    for (from, code) in [
        ("10.0.0.99:1000", ResponseCode::NoError),
        ("10.1.0.7:1000", ResponseCode::NoError),
        ("[::ffff:10.1.0.7]:1000", ResponseCode::NoError),
        ("10.0.0.200:1000", ResponseCode::Refused),
        ("192.0.2.1:1000", ResponseCode::Refused),
    ] {
        let m = answer_of(
            &h,
            &query(1, "acme-server.acme.local.", RecordType::A, None),
            from.parse().expect("addr"),
        );
        assert_eq!(m.metadata.response_code, code, "{from}");
    }
}

#[test]
fn large_sets_are_cut_for_udp_with_tc() {
    let many: Vec<String> = (1..=200)
        .map(|i| format!("10.1.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let yaml = section(&format!(
        "    - domain: big.test\n      records:\n        - {{name: many, addresses: [{}]}}\n",
        many.join(", ")
    ));
    let h = handler(&kiwi(&yaml));
    for (payload, max) in [(None, 512), (Some(4096), 1232), (Some(100), 512)] {
        let bytes = match h.on_datagram(
            &query(1, "many.big.test.", RecordType::A, payload),
            client(),
        ) {
            Reply::Send(b) => b,
            other => panic!("{other:?}"),
        };
        assert!(bytes.len() <= max, "{} > {max}", bytes.len());
        let m = Message::from_vec(&bytes).expect("decodes");
        assert!(m.metadata.truncation, "{payload:?}");
        assert!(
            m.answers.is_empty(),
            "a cut answer says TC and nothing else"
        );
        assert_eq!(m.edns.is_some(), payload.is_some());
    }
    assert_eq!(h.stats().truncated, 3);
}

/// The query path on hostile input: every byte string either gets an
/// answer that decodes, with the request's id, or is dropped and counted;
/// nothing panics. Seeded, so a failure replays.
#[test]
fn hostile_bytes_get_an_rcode_or_are_dropped_and_counted() {
    let h = handler(&kiwi(&section("")));
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b69_7769);
    let seeds: Vec<Vec<u8>> = vec![
        query(1, "ad.acme.local.", RecordType::A, Some(1232)),
        query(2, "nope.acme.local.", RecordType::AAAA, None),
        query(3, "example.com.", RecordType::TXT, Some(4096)),
        query(4, "acme.local.", RecordType::ANY, None),
    ];
    let mut answered = 0u64;
    for i in 0..40_000u32 {
        let bytes: Vec<u8> = match i % 4 {
            // Random bytes of random length.
            0 => {
                let len = rng.random_range(0..600);
                (0..len).map(|_| rng.random()).collect()
            }
            // A valid query with a few bytes flipped.
            1 | 2 => {
                let mut b = seeds[rng.random_range(0..seeds.len())].clone();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
                b
            }
            // Truncated or extended.
            _ => {
                let mut b = seeds[rng.random_range(0..seeds.len())].clone();
                if rng.random_bool(0.5) {
                    b.truncate(rng.random_range(0..b.len()));
                } else {
                    let extra = rng.random_range(1..5000);
                    b.extend((0..extra).map(|_| rng.random::<u8>()));
                }
                b
            }
        };
        match h.on_datagram(&bytes, client()) {
            Reply::Send(out) => {
                answered += 1;
                let m = Message::from_vec(&out)
                    .unwrap_or_else(|e| panic!("answer to {bytes:02x?} does not decode: {e}"));
                assert_eq!(m.metadata.message_type, MessageType::Response);
                assert_eq!(m.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
                assert!(out.len() <= 1232);
            }
            Reply::Drop => {
                assert!(
                    bytes.len() < 12
                        || bytes.len() > super::engine::MAX_UDP_QUERY
                        || bytes[2] & 0x80 != 0,
                    "dropped a query: {bytes:02x?}"
                );
            }
            Reply::Forward(..) => panic!("no forwarder configured"),
        }
    }
    let s = h.stats();
    assert_eq!(s.udp, 40_000);
    assert_eq!(answered + s.dropped(), 40_000);
    let codes = s.noerror + s.nxdomain + s.servfail + s.refused + s.formerr + s.notimp + s.other;
    assert_eq!(codes, answered);
    assert!(
        s.formerr > 0 && s.dropped_short > 0 && s.dropped_responses > 0 && s.dropped_oversized > 0,
        "{s}"
    );
}

#[test]
fn specific_bad_input_gets_the_right_rcode() {
    let h = handler(&kiwi(&section("")));
    let code = |bytes: &[u8]| answer_of(&h, bytes, client()).metadata.response_code;
    let base = query(0x1234, "acme-server.acme.local.", RecordType::A, None);
    // Header then garbage.
    let mut garbage = base[..12].to_vec();
    garbage.extend_from_slice(&[0xff; 9]);
    assert_eq!(code(&garbage), ResponseCode::FormErr);
    // Other opcodes.
    let mut m = Message::from_vec(&base).expect("m");
    m.metadata.op_code = OpCode::Status;
    assert_eq!(code(&m.to_vec().expect("v")), ResponseCode::NotImp);
    // Two questions.
    let mut m = Message::from_vec(&base).expect("m");
    m.add_query(Query::query(
        Name::from_str("ad.acme.local.").expect("n"),
        RecordType::A,
    ));
    assert_eq!(code(&m.to_vec().expect("v")), ResponseCode::FormErr);
    // No question.
    let mut m = Message::from_vec(&base).expect("m");
    m.queries.clear();
    assert_eq!(code(&m.to_vec().expect("v")), ResponseCode::FormErr);
    // Chaos class, zone transfers, meta types.
    let mut m = Message::from_vec(&base).expect("m");
    m.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(code(&m.to_vec().expect("v")), ResponseCode::Refused);
    assert_eq!(
        code(&query(1, "acme.local.", RecordType::AXFR, None)),
        ResponseCode::Refused
    );
    assert_eq!(
        code(&query(1, "acme.local.", RecordType::OPT, None)),
        ResponseCode::FormErr
    );
    // EDNS version 1.
    let mut m =
        Message::from_vec(&query(1, "ad.acme.local.", RecordType::A, Some(1232))).expect("m");
    if let Some(e) = m.edns.as_mut() {
        e.set_version(1);
    }
    // 16 on the wire (BADVERS; BADSIG shares the number).
    assert_eq!(
        u16::from(code(&m.to_vec().expect("v"))),
        u16::from(ResponseCode::BADVERS)
    );
    // Responses and runts are dropped and counted.
    let mut m = Message::from_vec(&base).expect("m");
    m.metadata.message_type = MessageType::Response;
    assert!(matches!(
        h.on_datagram(&m.to_vec().expect("v"), client()),
        Reply::Drop
    ));
    assert!(matches!(h.on_datagram(&base[..11], client()), Reply::Drop));
    let s = h.stats();
    assert_eq!((s.dropped_responses, s.dropped_short), (1, 1));
}

/// A reload swaps every record at once: while threads query, the records
/// flip between two sets; every answer is NOERROR and holds one set whole.
#[test]
fn a_swap_under_load_never_mixes_or_fails() {
    let old = kiwi(&section(""));
    let new = kiwi(&section("").replace(
        "10.0.0.10, 10.0.0.11, 10.0.0.12",
        "10.0.9.1, 10.0.9.2, 10.0.9.3",
    ));
    let h = Arc::new(handler(&old));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (h, stop) = (h.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let m = answer_of(
                        &h,
                        &query(t, "ad.acme.local.", RecordType::A, None),
                        client(),
                    );
                    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                    let got: BTreeSet<String> =
                        addresses(&m).iter().map(|a| a.to_string()).collect();
                    let olds: BTreeSet<String> = ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
                        .map(String::from)
                        .into();
                    let news: BTreeSet<String> = ["10.0.9.1", "10.0.9.2", "10.0.9.3"]
                        .map(String::from)
                        .into();
                    assert!(got == olds || got == news, "mixed answer {got:?}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..2000 {
        let k = if i % 2 == 0 { &new } else { &old };
        h.swap(Snapshot {
            zones: Zones::compile(k, i),
            forwarder: None,
        });
    }
    stop.store(true, Ordering::Relaxed);
    let total: u32 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert!(total > 0);
}

/// A tiny recursor on the loopback: `*.example.test` A 198.51.100.7,
/// NXDOMAIN otherwise; with `silent`, it reads and never answers.
fn stub_recursor(silent: bool) -> (SocketAddr, Arc<AtomicBool>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let addr = socket.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let done = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !done.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if silent {
                continue;
            }
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.recursion_available = true;
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.add_queries(q.queries.clone());
            let name = q.queries[0].name().clone();
            if name.to_string().ends_with(".example.test.") {
                r.add_answer(hickory_proto::rr::Record::from_rdata(
                    name,
                    30,
                    RData::A(hickory_proto::rr::rdata::A::new(198, 51, 100, 7)),
                ));
            } else {
                r.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = socket.send_to(&r.to_vec().expect("encode"), from);
        }
    });
    (addr, stop)
}

fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let t = std::net::TcpListener::bind(("127.0.0.1", s.local_addr().expect("a").port()));
    match t {
        Ok(_) => s.local_addr().expect("a").port(),
        Err(_) => free_port(),
    }
}

fn ask_udp(server: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Message> {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.send_to(bytes, server).expect("send");
    let mut buf = [0u8; 65535];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(Message::from_vec(&buf[..n]).expect("decode"))
}

fn ask_tcp(server: SocketAddr, bytes: &[u8]) -> Message {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).expect("write");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("length");
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("body");
    Message::from_vec(&body).expect("decode")
}

/// The whole server on the loopback: UDP and TCP, truncation and the TCP
/// retry, forwarding, a recursor that is gone and one that hangs (both
/// SERVFAIL within the bound), a reload by swap.
#[test]
fn a_live_server_on_the_loopback() {
    let (good, stop_good) = stub_recursor(false);
    let (silent, stop_silent) = stub_recursor(true);
    let port = free_port();
    let many: Vec<String> = (1..=100).map(|i| format!("10.2.0.{i}")).collect();
    let yaml = |recursor: SocketAddr| {
        format!(
            "{NODE}kiwi:\n  listen: ['127.0.0.1:{port}']\n  recursors: ['{recursor}']\n  forward_timeout_ms: 800\n  udp_workers: 2\n  zones:\n    - domain: acme.local\n      records:\n        - {{name: ad, addresses: [10.0.0.10, 10.0.0.11]}}\n        - {{name: many, addresses: [{}]}}\n",
            many.join(", ")
        )
    };
    let k = kiwi(&yaml(good));
    let mut server = Server::new(&k).expect("server");
    server.listen(&k).expect("listen");
    let at: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let t = Duration::from_secs(3);

    let m = ask_udp(at, &query(1, "ad.acme.local.", RecordType::A, None), t).expect("udp answer");
    assert_eq!(addresses(&m).len(), 2);
    let m = ask_tcp(at, &query(2, "ad.acme.local.", RecordType::A, None));
    assert_eq!(addresses(&m).len(), 2);
    assert!(m.metadata.authoritative);
    // 100 addresses: cut over UDP, whole over TCP.
    let m = ask_udp(at, &query(3, "many.acme.local.", RecordType::A, None), t).expect("udp");
    assert!(m.metadata.truncation);
    let m = ask_tcp(at, &query(3, "many.acme.local.", RecordType::A, None));
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m).len(), 100);
    // Forwarded, over UDP and TCP; NXDOMAIN passes through.
    let m = ask_udp(at, &query(4, "www.example.test.", RecordType::A, None), t).expect("fwd");
    assert_eq!(
        addresses(&m),
        ["198.51.100.7".parse::<IpAddr>().expect("ip")]
    );
    assert!(!m.metadata.authoritative);
    let m = ask_tcp(
        at,
        &query(5, "tcp.example.test.", RecordType::A, Some(1232)),
    );
    assert_eq!(addresses(&m).len(), 1);
    let m = ask_udp(at, &query(6, "nowhere.invalid.", RecordType::A, None), t).expect("nx");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // A recursor that hangs, then one that is gone: SERVFAIL within the
    // bound (800 ms), never silence.
    stop_good.store(true, Ordering::Relaxed);
    for (recursor, name) in [(silent, "hang.example.test."), (good, "gone.example.test.")] {
        server.reload(&kiwi(&yaml(recursor))).expect("reload");
        std::thread::sleep(Duration::from_millis(150));
        let start = Instant::now();
        let m =
            ask_udp(at, &query(7, name, RecordType::A, None), t).expect("servfail, not silence");
        let took = start.elapsed();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{name}");
        assert!(took < Duration::from_millis(1500), "{name}: {took:?}");
    }
    // A datagram longer than any query, and a runt: dropped and counted
    // by the receive loops, which go on answering.
    let junk = UdpSocket::bind("127.0.0.1:0").expect("bind");
    junk.send_to(&vec![0x55u8; 5000], at).expect("send");
    junk.send_to(&[1, 2, 3], at).expect("send");
    // Garbage over TCP: hickory's framing answers FORMERR or closes; the
    // server keeps serving.
    {
        use std::io::{Read, Write};
        let mut rng = ChaCha8Rng::seed_from_u64(53);
        for _ in 0..20 {
            let len: usize = rng.random_range(0..300);
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let mut s = TcpStream::connect_timeout(&at, Duration::from_secs(2)).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            let mut framed = (len as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            let _ = s.write_all(&framed);
            let mut back = [0u8; 512];
            let _ = s.read(&mut back);
        }
    }
    let m = ask_tcp(at, &query(10, "ad.acme.local.", RecordType::A, None));
    assert_eq!(addresses(&m).len(), 2);
    // Zone names keep answering whatever the recursors do.
    let m = ask_udp(at, &query(8, "ad.acme.local.", RecordType::A, None), t).expect("zone");
    assert_eq!(addresses(&m).len(), 2);
    stop_silent.store(true, Ordering::Relaxed);
    let s = server.handler().stats();
    assert!(s.servfail >= 2 && s.forwarded >= 5 && s.tcp >= 4, "{s}");
    assert_eq!((s.dropped_oversized, s.dropped_short), (1, 1), "{s}");
    server.stop();
    assert!(ask_udp(
        at,
        &query(9, "ad.acme.local.", RecordType::A, None),
        Duration::from_millis(300)
    )
    .is_none());
}
