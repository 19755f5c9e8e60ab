//! Bad input, counted (issue 12 item 6): a table of malformed configurations,
//! every one refused by [`config::parse_str`] with the field path and the
//! value, and by the real `kowabungad --check` with exit code 2 and the same
//! line on stderr.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use kowabunga_control::config::{self, MAX_CONFIG_BYTES, MAX_ERROR_LINE};

use common::BASE;

#[test]
fn the_base_is_valid() {
    let v = config::parse_str(BASE).unwrap_or_else(|e| panic!("{e}"));
    assert!(v.kawaii.is_some() && v.konvey.is_some() && v.kiwi.is_some());
    assert_eq!(v.node.vrrp.len(), 1);
}

/// `BASE` with `old` (which must occur exactly once) replaced by `new`.
fn edit(old: &str, new: &str) -> String {
    assert_eq!(
        BASE.matches(old).count(),
        1,
        "{old:?} must occur once in BASE"
    );
    BASE.replacen(old, new, 1)
}

/// The `node` section of `BASE` alone.
fn only_node() -> String {
    let end = BASE.find("\nkawaii:").expect("kawaii section");
    BASE[..=end].to_owned()
}

/// One malformed configuration: its name, its text, where the error must
/// point (a field path, or a line for a YAML syntax error) and what it must
/// say (the offending value or the rule broken).
struct Case {
    name: &'static str,
    yaml: String,
    path: &'static str,
    says: &'static str,
}

fn case(name: &'static str, yaml: String, path: &'static str, says: &'static str) -> Case {
    Case {
        name,
        yaml,
        path,
        says,
    }
}

/// `n` ingress rules, one per source /32.
fn many_rules(n: usize) -> String {
    let mut rules = String::from("    ingress:\n");
    for i in 0..n {
        let (a, b) = (i / 256 % 256, i % 256);
        rules.push_str(&format!(
            "      - {{source: 100.{}.{a}.{b}/32, protocol: tcp, ports: \"22\"}}\n",
            64 + i / 65536
        ));
    }
    edit(
        "    ingress: [{source: 0.0.0.0/0, protocol: tcp, ports: \"22\"}]\n",
        &rules,
    )
}

/// YAML aliases that would expand to 9^9 strings (the "billion laughs").
fn billion_laughs() -> String {
    let mut laughs = String::from("[&a0 [lol]");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        let list = [prev.as_str(); 9].join(", ");
        laughs.push_str(&format!(", &a{i} [{list}]"));
    }
    laughs.push_str(", *a9]");
    edit("  zone: eu-west-a\n", &format!("  zone: {laughs}\n"))
}

/// A list nested `depth` deep.
fn deep_nesting(depth: usize) -> String {
    edit(
        "  zone: eu-west-a\n",
        &format!("  zone: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    )
}

fn cases() -> Vec<Case> {
    let huge = "x".repeat(4 << 20);
    vec![
        // --- YAML syntax ---
        case("tab indentation", edit("  zone: eu-west-a", "\tzone: eu-west-a"), "line 2", "cannot start any token"),
        case("unclosed flow list", edit("public_ips: [203.0.113.10]", "public_ips: [203.0.113.10"), "line", "flow"),
        case("unclosed quote", edit("ports: \"53\"}]", "ports: \"53}]"), "line 22", "did not find expected"),
        case("duplicate key", edit("  zone: eu-west-a\n", "  zone: eu-west-a\n  zone: eu-west-b\n"), "node", "duplicate"),
        case("empty file", String::new(), "", "missing field `node`"),
        case("a list, not a mapping", "- node\n- kawaii\n".into(), "", "invalid type: sequence"),
        case("two documents", format!("{BASE}---\n{BASE}"), "", "more than one document"),
        case("bad indentation", edit("  private_subnet: 10.0.0.0/25\n", "   private_subnet: 10.0.0.0/25\n"), "line", "mapping"),
        // --- types ---
        case("zone is a list", edit("  zone: eu-west-a\n", "  zone: [a, b]\n"), "node.zone", "invalid type: sequence"),
        case("conntrack_entries a word", edit("conntrack_entries: 4096", "conntrack_entries: many"), "node.conntrack_entries", "\"many\""),
        case("conntrack_entries negative", edit("conntrack_entries: 4096", "conntrack_entries: -1"), "node.conntrack_entries", "-1"),
        case("conntrack_entries over u32", edit("conntrack_entries: 4096", "conntrack_entries: 99999999999"), "node.conntrack_entries", "99999999999"),
        case("vrid a word", edit("vrid: 51", "vrid: fifty"), "node.vrrp.instances[0].vrid", "fifty"),
        case("public_ips a scalar", edit("public_ips: [203.0.113.10]", "public_ips: 203.0.113.10"), "kawaii.public_ips", "203.0.113.10"),
        case("endpoint port over 65535", edit("port: 80,", "port: 70000,"), "konvey.endpoints[0].port", "70000"),
        case("interval_ms a float", edit("interval_ms: 200", "interval_ms: 1.5"), "node.konvey.health.interval_ms", "1.5"),
        case("userspace_esp a word", edit("{vici_socket: /run/charon.vici}", "{vici_socket: /run/charon.vici, userspace_esp: maybe}"), "node.ipsec.userspace_esp", "maybe"),
        case("kiwi ttl negative", edit("  listen: [127.0.0.1]\n", "  listen: [127.0.0.1]\n  ttl: -5\n"), "kiwi.ttl", "-5"),
        case("egress_policy unknown word", edit("egress_policy: accept", "egress_policy: maybe"), "kawaii.firewall.egress_policy", "maybe"),
        case("section is a string", edit("  ipsec: {vici_socket: /run/charon.vici}\n", "  ipsec: charon\n"), "node.ipsec", "\"charon\""),
        // --- ranges ---
        case("conntrack_entries 0", edit("conntrack_entries: 4096", "conntrack_entries: 0"), "node.conntrack_entries", "0 is out of range"),
        case("nat port 0", edit("nat_port_range: \"1024-65535\"", "nat_port_range: \"0-1000\""), "node.nat_port_range", "\"0-1000\""),
        case("nat ports reversed", edit("nat_port_range: \"1024-65535\"", "nat_port_range: \"2000-1000\""), "node.nat_port_range", "reversed"),
        case("konvey nat ports reversed", edit("nat_port_range: \"1024-32767\"", "nat_port_range: \"32767-1024\""), "node.konvey.nat_port_range", "\"32767-1024\""),
        case("health timeout over interval", edit("timeout_ms: 100", "timeout_ms: 300"), "node.konvey.health.timeout_ms", "300"),
        case("health rise 0", edit("rise: 2", "rise: 0"), "node.konvey.health.rise", "0"),
        case("vrid 0", edit("vrid: 51", "vrid: 0"), "node.vrrp.instances[0].vrid", "0"),
        case("advert interval too short", edit("advert_interval_ms: 100", "advert_interval_ms: 5"), "node.vrrp.instances[0].advert_interval_ms", "5"),
        case("vrrp priority 0", edit("advert_interval_ms: 100}", "advert_interval_ms: 100, priority: 0}"), "node.vrrp.instances[0].priority", "0"),
        case("kiwi forward timeout 0", edit("  listen: [127.0.0.1]\n", "  listen: [127.0.0.1]\n  forward_timeout_ms: 0\n"), "kiwi.forward_timeout_ms", "0 is out of range"),
        case("dh group 3", edit("phase1_dh_group_number: 14", "phase1_dh_group_number: 3"), "kawaii.ipsec_connections[0].phase1_dh_group_number", "3 is not a supported DH group"),
        case("dnat port 70000", edit("ports: \"80,443\"", "ports: \"80,70000\""), "kawaii.dnat[0].ports", "\"80,70000\""),
        case("ingress port 0", edit("ports: \"22\"", "ports: \"0\""), "kawaii.firewall.ingress[0].ports", "\"0\""),
        case("prefix /33", edit("source: 0.0.0.0/0", "source: 10.0.0.0/33"), "kawaii.firewall.ingress[0].source", "\"10.0.0.0/33\""),
        case("subnet with host bits", edit("private_subnet: 10.0.0.0/25", "private_subnet: 10.0.0.1/25"), "kawaii.private_subnet", "host bits"),
        case("public ip 300.1.1.1", edit("public_ips: [203.0.113.10]", "public_ips: [300.1.1.1]"), "kawaii.public_ips[0]", "\"300.1.1.1\""),
        case("kiwi listen not an address", edit("listen: [127.0.0.1]", "listen: [localhost]"), "kiwi.listen[0]", "localhost"),
        case("ipsec remote 0.0.0.0", edit("remote_ip: 5.6.7.8", "remote_ip: 0.0.0.0"), "kawaii.ipsec_connections[0].remote_ip", "\"0.0.0.0\""),
        case("integrity MD5", edit("phase1_integrity_algorithm: SHA512", "phase1_integrity_algorithm: MD5"), "kawaii.ipsec_connections[0].phase1_integrity_algorithm", "\"MD5\""),
        case("encryption DES", edit("phase2_encryption_algorithm: AES256", "phase2_encryption_algorithm: DES"), "kawaii.ipsec_connections[0].phase2_encryption_algorithm", "\"DES\""),
        case("rekey time forever", edit("      phase2_encryption_algorithm: AES256\n", "      phase2_encryption_algorithm: AES256\n      rekey_time: forever\n"), "kawaii.ipsec_connections[0].rekey_time", "\"forever\""),
        case("vip 203.0.113.300", edit("virtual_ips: [203.0.113.10/32]", "virtual_ips: [203.0.113.300/32]"), "node.vrrp.instances[0].virtual_ips", "\"203.0.113.300/32\": not an IP address"),
        case("protocol sctp", edit("protocol: udp, ports: \"53\"", "protocol: sctp, ports: \"53\""), "kawaii.firewall.egress[0].protocol", "\"sctp\""),
        case("konvey protocol icmp", edit("{name: web, protocol: tcp", "{name: web, protocol: icmp"), "konvey.endpoints[0].protocol", "icmp"),
        case("kiwi record bad address", edit("addresses: [10.0.0.10]", "addresses: [10.0.0.999]"), "kiwi.zones[0].records[0].addresses[0]", "10.0.0.999"),
        // --- cross-field rules ---
        case("public is private", edit("{public: pub0, private: priv0,", "{public: pub0, private: pub0,"), "node.interfaces.private", "\"pub0\" is already used by node.interfaces.public"),
        case("konvey on the kawaii interface", edit("konvey: [lb0]", "konvey: [pub0]"), "node.interfaces.konvey[0]", "\"pub0\""),
        case("dnat outside the private subnet", edit("destination: 10.0.0.10", "destination: 10.0.1.10"), "kawaii.dnat[0].destination", "\"10.0.1.10\" is not inside kawaii.private_subnet"),
        case("peering overlaps the private subnet", edit("subnet: 10.1.0.0/24", "subnet: 10.0.0.0/24"), "kawaii.vpc_peerings[0].subnet", "\"10.0.0.0/24\" overlaps"),
        case("vrid twice on one interface", edit("advert_interval_ms: 100}\n", "advert_interval_ms: 100}\n      - {name: public-b, vrid: 51, interface: pub0, zone: eu-west-b, virtual_ips: [203.0.113.11/32]}\n"), "node.vrrp.instances[1]", "vrid 51"),
        case("health of an unknown endpoint", edit("udp_probe: {send: health, expect: \"name=\"}}", "udp_probe: {send: health, expect: \"name=\"}, endpoints: {nope: {udp_probe: {send: x}}}}"), "node.konvey.health.endpoints", "\"nope\""),
        case("dnat ports overlap", edit("dnat: [{destination: 10.0.0.10, protocol: tcp, ports: \"80,443\"}]", "dnat: [{destination: 10.0.0.10, protocol: tcp, ports: \"80,443\"}, {destination: 10.0.0.11, protocol: tcp, ports: \"400-500\"}]"), "kawaii.dnat[1].ports", "\"400-500\" overlaps the tcp ports of kawaii.dnat[0]"),
        case("one peer, two keys", edit("  ipsec_connections:\n", "  ipsec_connections:\n    - {name: other, remote_ip: 5.6.7.8, remote_subnet: 172.16.2.0/24, pre_shared_key: another-key-entirely, phase1_dh_group_number: 14, phase1_integrity_algorithm: SHA512, phase1_encryption_algorithm: AES256, phase2_dh_group_number: 14, phase2_integrity_algorithm: SHA512, phase2_encryption_algorithm: AES256}\n"), "kawaii.ipsec_connections[1]", "pre_shared_key"),
        case("zone ip not a public ip", edit("  public_ips: [203.0.113.10]\n", "  public_ips: [203.0.113.10]\n  zone_public_ips: {eu-west-a: 203.0.113.99}\n"), "kawaii.zone_public_ips", "\"203.0.113.99\" is not one of kawaii.public_ips"),
        case("no role section", only_node(), "", "missing: a node runs kawaii, konvey, kiwi or several"),
        case("kawaii without a public interface", edit("{public: pub0, private: priv0,", "{private: priv0,"), "node.interfaces.public", "missing"),
        case("peering interface twice", edit("peerings: [peer0]", "peerings: [peer0, peer0]"), "node.interfaces.peerings[1]", "\"peer0\" is already used"),
        case("konvey backend not an address", edit("backend_ips: [192.168.50.11]}", "backend_ips: [192.168.50.311]}"), "konvey.endpoints[1].backend_ips[0]", "\"192.168.50.311\" is not an IPv4 address"),
        case("konvey endpoint name twice", edit("{name: echo,", "{name: web,"), "konvey.endpoints[1].name", "\"web\""),
        case("vrrp interface name with a slash", edit("interface: pub0, zone", "interface: pub/0, zone"), "node.vrrp.instances[0].interface", "pub/0"),
        case("kiwi listen twice", edit("listen: [127.0.0.1]", "listen: [127.0.0.1, 127.0.0.1]"), "kiwi.listen[1]", "127.0.0.1"),
        case("bpffs relative", edit("bpffs: /sys/fs/bpf/kw-bad-configs", "bpffs: relative/dir"), "node.bpffs", "\"relative/dir\" is not an absolute path"),
        case("vici socket relative", edit("vici_socket: /run/charon.vici", "vici_socket: charon.vici"), "node.ipsec.vici_socket", "\"charon.vici\""),
        case("ipsec name twice", edit("  ipsec_connections:\n", "  ipsec_connections:\n    - {name: acme-office, remote_ip: 5.6.7.9, remote_subnet: 172.16.2.0/24, pre_shared_key: k, phase1_dh_group_number: 14, phase1_integrity_algorithm: SHA512, phase1_encryption_algorithm: AES256, phase2_dh_group_number: 14, phase2_integrity_algorithm: SHA512, phase2_encryption_algorithm: AES256}\n"), "kawaii.ipsec_connections[1].name", "\"acme-office\""),
        // --- unknown keys ---
        case("unknown section", format!("{BASE}kawai: {{}}\n"), "", "unknown field `kawai`"),
        case("unknown node key", edit("  zone: eu-west-a\n", "  zone: eu-west-a\n  zonee: b\n"), "node", "unknown field `zonee`"),
        case("unknown vrrp key", edit("vrid: 51,", "vrid: 51, priorty: 200,"), "node.vrrp.instances[0]", "unknown field `priorty`"),
        case("unknown endpoint key", edit("backend_ips: [192.168.50.11]}", "backend_ip: [192.168.50.11]}"), "konvey.endpoints[1]", "unknown field `backend_ip`"),
        case("unknown kiwi zone key", edit("      records:\n", "      recods:\n"), "kiwi.zones[0]", "unknown field `recods`"),
        case("unknown node.ipsec key", edit("{vici_socket: /run/charon.vici}", "{socket: /run/charon.vici}"), "node.ipsec", "unknown field `socket`"),
        case("unknown health key", edit("interval_ms: 200", "intervall_ms: 200"), "node.konvey.health", "unknown field `intervall_ms`"),
        case("unknown ipsec key", edit("      remote_ip: 5.6.7.8\n", "      remote_ip: 5.6.7.8\n      phase3_lifetime: 1h\n"), "kawaii.ipsec_connections[0]", "unknown field `phase3_lifetime`"),
        // --- huge inputs ---
        case("100k ingress rules", many_rules(100_000), "kawaii.firewall.ingress", "at most"),
        case("a 4 MiB subnet", edit("private_subnet: 10.0.0.0/25", &format!("private_subnet: \"{huge}\"")), "kawaii.private_subnet", "4194184 more bytes"),
        case("a 4 MiB zone", edit("  zone: eu-west-a\n", &format!("  zone: \"{huge}\"\n")), "node.zone", "more bytes) is 4194304 bytes long, at most 255 are allowed"),
        case("billion laughs", billion_laughs(), "node.zone", "invalid type: sequence"),
        case("nesting 100k deep", deep_nesting(100_000), "line 2", "nested deeper than 64 levels"),
        case("nesting 100 deep", deep_nesting(100), "line 2", "nested deeper than 64 levels"),
        case("block nesting 200 deep", edit("  zone: eu-west-a\n", &format!("  zone:\n{}", (0..200).map(|i| format!("{}- \n", " ".repeat(4 + i))).collect::<String>())), "node.zone", "invalid type"),
        case("larger than the file limit", format!("{BASE}#{}\n", "x".repeat(MAX_CONFIG_BYTES)), "", "at most 16777216 bytes"),
    ]
}

/// The error line of `case`, checked: refused, one line, path and value in it.
fn refusal(case: &Case) -> Result<String, String> {
    let started = std::time::Instant::now();
    let result = config::parse_str(&case.yaml);
    let took = started.elapsed();
    let text = match result {
        Ok(_) => return Err(format!("{}: accepted", case.name)),
        Err(e) => e.to_string(),
    };
    if took.as_millis() > 100 {
        println!(
            "{}: refused in {took:?} ({} bytes)",
            case.name,
            case.yaml.len()
        );
    }
    let fail = |why: &str| Err(format!("{}: {why}: {text:.300}", case.name));
    if text.contains('\n') {
        return fail("more than one line");
    }
    if text.len() > MAX_ERROR_LINE + 100 {
        return fail("too long");
    }
    // A field path comes first; a syntax error names its line.
    let located = if case.path.contains('.') || case.path.starts_with("node") {
        text.starts_with(case.path)
    } else {
        text.contains(case.path)
    };
    if !located {
        return fail(&format!("not at {:?}", case.path));
    }
    if !text.contains(case.says) {
        return fail(&format!("does not say {:?}", case.says));
    }
    Ok(text)
}

#[test]
fn every_malformed_config_is_refused_with_its_path_and_value() {
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut names = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "{} twice", case.name);
    }
    let failures: Vec<String> = cases.iter().filter_map(|c| refusal(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Every section of every role is covered.
    for section in [
        "node.vrrp",
        "node.konvey",
        "node.ipsec",
        "node.interfaces",
        "kawaii.firewall",
        "kawaii.dnat",
        "kawaii.vpc_peerings",
        "kawaii.ipsec_connections",
        "konvey.endpoints",
        "kiwi.",
    ] {
        assert!(
            cases.iter().any(|c| c.path.starts_with(section)),
            "no case for {section}"
        );
    }
    println!("{} malformed configurations refused", cases.len());
}

fn scratch_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-configs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn check_file(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kowabungad"))
        .arg("--config")
        .arg(path)
        .arg("--check")
        .env("RUST_LOG", "off")
        .output()
        .expect("run kowabungad")
}

#[test]
fn kowabungad_check_exits_2_with_the_same_line() {
    let dir = scratch_dir();
    let good = dir.join("good.yaml");
    std::fs::write(&good, BASE).expect("write");
    let out = check_file(&good);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "config OK");
    let mut refused = 0;
    for (i, case) in cases().iter().enumerate() {
        let expected = refusal(case).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join(format!("case-{i}.yaml"));
        std::fs::write(&file, &case.yaml).expect("write");
        let out = check_file(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr:.300}", case.name);
        assert!(
            out.stdout.is_empty(),
            "{}: printed {:?}",
            case.name,
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(stderr.lines().count(), 1, "{}: {stderr:.300}", case.name);
        if case.name == "larger than the file limit" {
            // The file's name comes first, then the same words.
            assert!(
                stderr.starts_with(&format!("kowabungad: {}: ", file.display())),
                "{stderr:.300}"
            );
            assert!(stderr.contains(case.says), "{stderr:.300}");
        } else {
            assert_eq!(
                stderr.trim_end(),
                format!("kowabungad: {expected}"),
                "{}",
                case.name
            );
        }
        refused += 1;
        std::fs::remove_file(&file).expect("remove");
    }
    println!("kowabungad --check refused {refused} files with exit code 2");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn unreadable_files_exit_2() {
    let dir = scratch_dir().join("unreadable");
    std::fs::create_dir_all(&dir).expect("dir");
    let missing = dir.join("missing.yaml");
    let out = check_file(&missing);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("No such file"),
        "{stderr}"
    );
    // Not UTF-8.
    let latin1 = dir.join("latin1.yaml");
    let mut f = std::fs::File::create(&latin1).expect("create");
    f.write_all(b"node:\n  zone: caf\xe9\n").expect("write");
    drop(f);
    let out = check_file(&latin1);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("latin1.yaml") && stderr.contains("UTF-8"),
        "{stderr}"
    );
    // A directory, and an endless file: read up to the limit, then refused.
    let out = check_file(&dir);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check_file(Path::new("/dev/zero"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/dev/zero: more than 16777216 bytes"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Command-line misuse: an error and a usage line, exit code 2, never a panic.
#[test]
fn cli_misuse_prints_usage_and_exits_2() {
    for args in [
        &[][..],
        &["--config"][..],
        &["--bogus"][..],
        &["--config", "x.yaml", "--check", "--detach"][..],
        &["--config", "x.yaml", "extra"][..],
        &["-c"][..],
        &["--check"][..],
        &["--config", "a", "--config", "b"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kowabungad"))
            .args(args)
            .output()
            .expect("run kowabungad");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        // clap: "error: ..." then the usage line (or, for a missing
        // value, the hint to --help).
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains("Usage: kowabungad") || stderr.contains("try '--help'"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
