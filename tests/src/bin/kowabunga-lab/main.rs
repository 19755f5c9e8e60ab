//! `kowabunga-lab`: the Kawaii and Konvey namespace lab demo (`cargo xtask lab`).
//!
//! Kawaii: builds three namespaces (private host, Kawaii gateway, Internet host),
//! runs `kowabungad` in the gateway and shows, section by section, SNAT of TCP, UDP
//! and ping to the VIP, DNAT of VIP:8080 to the private host, the default drop of
//! other VIP ports, and the dataplane counters.
//!
//! Konvey: then builds the Konvey lab (client, balancer, three backends on a
//! bridge), runs `kowabungad` in the balancer and shows round-robin across the
//! three backends (which backend answered each TCP connection and UDP flow), a
//! backend leaving the rotation when it stops and coming back, the counters,
//! and the operator's view: `kowabunga status`, `kowabunga flows --limit 10`,
//! `kowabunga backends` and a `curl` of the metrics endpoint.
//!
//! IPsec (module `ipsec`): site A (the gateway, `kowabungad` driving charon)
//! and a remote office (strongSwan); a ping and a TCP exchange through the
//! tunnel, a capture summary of the Internet side, and the tunnel's peer
//! stopping (nothing crosses, drops counted).
//!
//! Kiwi: last, the library's inventory renders the Kiwi section, `kowabungad`
//! serves it, and a Kompute's name resolves through it
//! ([`kowabunga_tests::lab::kiwi_demo`]).
//!
//! Exits non-zero if any expectation fails.
//!
//! Options: `--kowabungad PATH` (default: next to this binary, or `$KOWABUNGAD`),
//! `--hold SECONDS` (keep the lab up that long at the end for poking around),
//! `--cleanup` (delete namespaces and pins left by a killed lab, then exit).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kowabunga_tests::lab::agent::EXIT_TIMEOUT;
use kowabunga_tests::lab::konvey::{
    answered_by, KonveyLab, BACKENDS, CLIENT_ADDR, HEALTH_FALL, HEALTH_INTERVAL_MS, LB_ADDR,
    TCP_BACKEND_PORT, TCP_ENDPOINT, TCP_PORT, UDP_BACKEND_PORT, UDP_ENDPOINT, UDP_PORT,
    VIP as KONVEY_VIP,
};
use kowabunga_tests::lab::topology::{
    KawaiiLab, BPFFS, DNAT_PORT, GW_PRIV_ADDR, GW_PUB_ADDR, INET_ADDR, PRIVATE_SUBNET, PRIV_ADDR,
    VIP,
};
use kowabunga_tests::lab::traffic::{ping, Agent, Finished};
use kowabunga_tests::lab::{find_agent, find_kowabungad};

mod ipsec;

/// Set by SIGINT/SIGTERM: stop between sections and clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

struct Options {
    kowabungad: Option<PathBuf>,
    hold: u64,
    cleanup: bool,
}

fn parse_args() -> Result<Options> {
    let mut opts = Options {
        kowabungad: None,
        hold: 0,
        cleanup: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kowabungad" => {
                opts.kowabungad = Some(args.next().context("--kowabungad needs a path")?.into())
            }
            "--hold" => {
                opts.hold = args
                    .next()
                    .context("--hold needs seconds")?
                    .parse()
                    .context("--hold")?
            }
            "--cleanup" => opts.cleanup = true,
            "-h" | "--help" => {
                println!("usage: kowabunga-lab [--kowabungad PATH] [--hold SECONDS] [--cleanup]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(opts)
}

/// Counts expectations met and failed.
#[derive(Default)]
pub(crate) struct Report {
    passed: usize,
    failed: Vec<String>,
}

impl Report {
    pub(crate) fn check(&mut self, what: &str, ok: bool, detail: &str) {
        if ok {
            self.passed += 1;
            println!("  ok    {what}");
        } else {
            println!("  FAIL  {what}");
            for line in detail.lines() {
                println!("        {line}");
            }
            self.failed.push(what.to_owned());
        }
    }
}

pub(crate) fn section(title: &str) -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    println!("\n== {title}");
    Ok(())
}

pub(crate) fn show(out: &Finished) {
    println!("  client: {out}");
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|opts| {
        if let Some(why) = kowabunga_testkit::why_not_privileged() {
            bail!("the lab creates network namespaces and attaches XDP programs: it {why}");
        }
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        for signal in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { sigaction(signal, &action) }.context("installing the signal handler")?;
        }
        if opts.cleanup {
            return cleanup_stale().map(|()| true);
        }
        run(&opts)
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kowabunga-lab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> Result<bool> {
    let bin = match &opts.kowabungad {
        Some(path) => path.clone(),
        None => find_kowabungad()?,
    };
    let agent = Agent::new(find_agent()?);
    let mut report = Report::default();

    section("Topology")?;
    let mut lab = KawaiiLab::new()?;
    let (p, g, i) = (
        lab.private.name().to_owned(),
        lab.gw.name().to_owned(),
        lab.inet.name().to_owned(),
    );
    println!("  {p:<12} eth0 {PRIV_ADDR}/25, default via {GW_PRIV_ADDR}   (private host, TCP server :{DNAT_PORT})");
    println!("  {g:<12} kw-gw-priv {GW_PRIV_ADDR}/25, kw-gw-pub {GW_PUB_ADDR}/24 + VIP {VIP}/32   (Kawaii node)");
    println!("  {i:<12} eth0 {INET_ADDR}/24, no route to {PRIVATE_SUBNET}   (Internet host)");
    println!(
        "  config {}  pins {}",
        lab.config_path().display(),
        lab.pin_dir().display()
    );

    section("Starting kowabungad in the gateway namespace")?;
    let started = Instant::now();
    let daemon = lab.start_daemon(&bin)?;
    println!(
        "  ready after {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        bin.display()
    );
    for line in daemon.log().lines() {
        println!("  | {line}");
    }

    let tcp = agent.tcp_echo_server(&lab.inet, 7000, 60)?;
    let udp = agent.udp_echo_server(&lab.inet, 7001, 60)?;
    let private = agent.tcp_echo_server(&lab.private, DNAT_PORT, 60)?;

    section(&format!(
        "TCP {PRIV_ADDR} -> {INET_ADDR}:7000 (SNAT: inet must see {VIP})"
    ))?;
    let out = agent.tcp_client(&lab.private, &format!("{INET_ADDR}:7000"))?;
    show(&out);
    let seen = out.field("peer=").unwrap_or("-").to_owned();
    println!("  inet saw the connection from {seen}");
    report.check(
        &format!("TCP egress is SNATed to {VIP}"),
        out.success() && seen.starts_with(&format!("{VIP}:")),
        &tcp.output(),
    );

    section(&format!("UDP {PRIV_ADDR} -> {INET_ADDR}:7001 (SNAT)"))?;
    let out = agent.udp_client(&lab.private, &format!("{INET_ADDR}:7001"))?;
    show(&out);
    let seen = out.field("peer=").unwrap_or("-").to_owned();
    println!("  inet saw the datagram from {seen}");
    report.check(
        &format!("UDP egress is SNATed to {VIP}"),
        out.success() && seen.starts_with(&format!("{VIP}:")),
        &udp.output(),
    );

    section(&format!(
        "ping {PRIV_ADDR} -> {INET_ADDR} (ICMP echo, identifier as port)"
    ))?;
    let out = ping(&lab.private, INET_ADDR)?;
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        println!("  | {line}");
    }
    report.check("ICMP echo through the NAT", out.success(), &out.to_string());

    section(&format!(
        "TCP {INET_ADDR} -> VIP {VIP}:{DNAT_PORT} (DNAT to {PRIV_ADDR})"
    ))?;
    let out = agent.tcp_client(&lab.inet, &format!("{VIP}:{DNAT_PORT}"))?;
    show(&out);
    let seen = out.field("peer=").unwrap_or("-").to_owned();
    println!("  the private host saw the connection from {seen}");
    report.check(
        &format!("DNAT {VIP}:{DNAT_PORT} -> {PRIV_ADDR}:{DNAT_PORT}"),
        out.success() && seen.starts_with(&format!("{INET_ADDR}:")),
        &private.output(),
    );

    section(&format!(
        "TCP SYN {INET_ADDR} -> VIP {VIP}:9999 (no rule: dropped, no answer)"
    ))?;
    let before = lab.counters().ok();
    let out = agent.tcp_client_timeout(
        &lab.inet,
        &format!("{VIP}:9999"),
        Duration::from_millis(1500),
    )?;
    show(&out);
    report.check(
        "VIP:9999 gets no answer (timeout, not RST)",
        out.code == Some(EXIT_TIMEOUT),
        "",
    );
    if let (Some(before), Ok(after)) = (before, lab.counters()) {
        let dropped = after.since(&before).packets("drop_ingress_denied");
        report.check(
            &format!("drop_ingress_denied counted it (+{dropped})"),
            dropped >= 1,
            "",
        );
    }

    section(&format!(
        "Dataplane counters ({}/kw_stats, summed over CPUs)",
        lab.pin_dir().display()
    ))?;
    match lab.counters() {
        Ok(counters) => {
            print!("{counters}");
            report.check(
                "packets were redirected by XDP",
                counters.packets("fwd_redirect") > 0,
                "",
            );
        }
        Err(e) => report.check("reading the counters", false, &format!("  {e:#}")),
    }

    if opts.hold > 0 {
        section(&format!(
            "Holding the lab for {} s (ip netns exec {p} bash ...)",
            opts.hold
        ))?;
        let until = Instant::now() + Duration::from_secs(opts.hold);
        while Instant::now() < until && !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    section("kowabungad log")?;
    if let Some(daemon) = lab.daemon() {
        for line in daemon
            .log()
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("  | {line}");
        }
    }
    drop((tcp, udp, private));
    println!(
        "\n== Cleanup: stopping kowabungad, deleting {p} {g} {i}, removing {}",
        lab.pin_dir().display()
    );
    drop(lab);

    if let Err(e) = konvey_demo(&bin, &agent, &mut report) {
        report.check("the Konvey lab ran to the end", false, &format!("{e:#}"));
    }
    if let Err(e) = ipsec::demo(&bin, &agent, &mut report) {
        report.check("the IPsec lab ran to the end", false, &format!("{e:#}"));
    }
    let mut check = |what: &str, ok: bool, detail: &str| report.check(what, ok, detail);
    let kiwi = kowabunga_tests::lab::kiwi_demo::demo(&bin, &agent, &section, &mut check);
    if let Err(e) = kiwi {
        report.check("the Kiwi lab ran to the end", false, &format!("{e:#}"));
    }

    println!(
        "\n{} checks passed, {} failed",
        report.passed,
        report.failed.len()
    );
    for f in &report.failed {
        println!("  failed: {f}");
    }
    Ok(report.failed.is_empty())
}

/// The Konvey part: round-robin across three backends, failover and recovery.
fn konvey_demo(bin: &std::path::Path, agent: &Agent, report: &mut Report) -> Result<()> {
    section("Konvey topology")?;
    let mut lab = KonveyLab::new()?;
    println!("  {:<14} bridge br0 joining everyone", lab.sw.name());
    println!(
        "  {:<14} eth0 {CLIENT_ADDR}/24   (client)",
        lab.client.name()
    );
    println!(
        "  {:<14} eth0 {LB_ADDR}/24 + VIP {KONVEY_VIP}/32   (Konvey node, XDP on eth0)",
        lab.lb.name()
    );
    for b in &lab.backends {
        println!(
            "  {:<14} eth0 {}/24   (backend {}: tcp :{TCP_BACKEND_PORT} and udp :{UDP_BACKEND_PORT} answer \"name={}\")",
            b.ns.name(),
            b.addr,
            b.name,
            b.name
        );
    }
    println!(
        "  services: {TCP_ENDPOINT} tcp {KONVEY_VIP}:{TCP_PORT} -> :{TCP_BACKEND_PORT}, {UDP_ENDPOINT} udp {KONVEY_VIP}:{UDP_PORT} -> :{UDP_BACKEND_PORT}; health every {HEALTH_INTERVAL_MS} ms, fall {HEALTH_FALL}"
    );
    println!(
        "  config {}  pins {}",
        lab.config_path().display(),
        lab.pin_dir().display()
    );
    lab.start_backends(agent)?;

    section("Starting kowabungad in the Konvey node")?;
    let started = Instant::now();
    let daemon = lab.start_daemon(bin)?;
    println!("  ready after {:.1} s", started.elapsed().as_secs_f64());
    for line in daemon.log().lines() {
        println!("  | {line}");
    }
    lab.warm_up()?;

    let round = |lab: &KonveyLab, udp: bool, n: usize| -> Result<Vec<String>> {
        let mut who = Vec::with_capacity(n);
        for i in 1..=n {
            let out = if udp {
                agent.udp_client(&lab.client, &format!("{KONVEY_VIP}:{UDP_PORT}"))?
            } else {
                agent.tcp_client(&lab.client, &format!("{KONVEY_VIP}:{TCP_PORT}"))?
            };
            let name = answered_by(&out).unwrap_or_else(|| "FAILED".to_owned());
            println!(
                "  {} #{i:<2} answered by {name}",
                if udp { "flow" } else { "connection" }
            );
            who.push(name);
        }
        Ok(who)
    };
    let tally = |who: &[String]| -> String {
        BACKENDS
            .iter()
            .map(|(n, _)| format!("{n}={}", who.iter().filter(|w| w == n).count()))
            .collect::<Vec<_>>()
            .join(" ")
    };

    section(&format!(
        "9 new TCP connections {CLIENT_ADDR} -> {KONVEY_VIP}:{TCP_PORT} (strict round-robin)"
    ))?;
    let who = round(&lab, false, 9)?;
    println!("  distribution: {}", tally(&who));
    report.check(
        "TCP connections rotate across b1, b2, b3 (3 each)",
        BACKENDS
            .iter()
            .all(|(n, _)| who.iter().filter(|w| w == n).count() == 3),
        &who.join(" "),
    );

    section(&format!(
        "6 new UDP flows {CLIENT_ADDR} -> {KONVEY_VIP}:{UDP_PORT}"
    ))?;
    let who = round(&lab, true, 6)?;
    println!("  distribution: {}", tally(&who));
    report.check(
        "UDP flows rotate across b1, b2, b3 (2 each)",
        BACKENDS
            .iter()
            .all(|(n, _)| who.iter().filter(|w| w == n).count() == 2),
        &who.join(" "),
    );

    section("Stopping b2's servers (health checks take it out of the rotation)")?;
    let stopped = Instant::now();
    lab.stop_backend(1);
    let took = lab.wait_backend_states(
        &[(TCP_ENDPOINT, "b2", "down")],
        1,
        stopped,
        Duration::from_secs(10),
    )?;
    println!(
        "  b2 out of the rotation after {} ms (interval {HEALTH_INTERVAL_MS} ms x fall {HEALTH_FALL})",
        took[0].as_millis()
    );
    let who = round(&lab, false, 6)?;
    println!("  distribution: {}", tally(&who));
    report.check(
        "with b2 stopped, every connection succeeds on b1 and b3",
        who.iter().all(|w| w == "b1" || w == "b3"),
        &who.join(" "),
    );

    section("Restarting b2")?;
    let restarted = Instant::now();
    lab.start_backend(agent, 1)?;
    let took = lab.wait_backend_states(
        &[(TCP_ENDPOINT, "b2", "up")],
        1,
        restarted,
        Duration::from_secs(10),
    )?;
    println!("  b2 back after {} ms", took[0].as_millis());
    let who = round(&lab, false, 6)?;
    println!("  distribution: {}", tally(&who));
    report.check(
        "b2 is back in the rotation (2 each)",
        BACKENDS
            .iter()
            .all(|(n, _)| who.iter().filter(|w| w == n).count() == 2),
        &who.join(" "),
    );

    section(&format!(
        "Konvey counters ({}/konvey/kw_stats)",
        lab.pin_dir().display()
    ))?;
    match lab.counters() {
        Ok(counters) => {
            print!("{counters}");
            report.check(
                "packets were redirected by the Konvey program",
                counters.packets("fwd_redirect") > 0,
                "",
            );
        }
        Err(e) => report.check("reading the Konvey counters", false, &format!("  {e:#}")),
    }

    operator_view(&lab, report)?;

    section("kowabungad log (Konvey)")?;
    if let Some(daemon) = lab.daemon() {
        let log = daemon.log();
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(12)..] {
            println!("  | {line}");
        }
    }
    println!(
        "\n== Cleanup: stopping kowabungad and the backends, deleting the Konvey namespaces, removing {}",
        lab.pin_dir().display()
    );
    drop(lab);
    Ok(())
}

/// The operator's view of the Konvey node: the real `kowabunga` CLI
/// (`status`, `flows --limit 10`, `backends`) and a `curl` of the metrics.
fn operator_view(lab: &KonveyLab, report: &mut Report) -> Result<()> {
    let cli = match kowabunga_tests::lab::find_kowabunga() {
        Ok(cli) => cli,
        Err(e) => {
            report.check("the kowabunga CLI is built", false, &format!("  {e:#}"));
            return Ok(());
        }
    };
    for args in [&["status"][..], &["flows", "--limit", "10"], &["backends"]] {
        section(&format!("kowabunga {}", args.join(" ")))?;
        let mut cmd = std::process::Command::new(&cli);
        cmd.arg("--socket")
            .arg(lab.api_socket())
            .arg("--bpffs")
            .arg(lab.pin_dir())
            .args(args);
        let out = kowabunga_tests::lab::traffic::run_bounded(cmd, Duration::from_secs(20))?;
        print!("{}{}", out.stdout, out.stderr);
        report.check(
            &format!("kowabunga {} answered", args.join(" ")),
            out.success(),
            "",
        );
    }
    let url = format!(
        "http://127.0.0.1:{}/metrics",
        kowabunga_tests::lab::konvey::METRICS_PORT
    );
    section(&format!(
        "curl {url} (in the Konvey node; kowabunga_ lines, no buckets, no zeros)"
    ))?;
    let out = lab.lb.run("curl", &["-sS", "--max-time", "5", &url])?;
    let body = String::from_utf8_lossy(&out.stdout);
    for line in body
        .lines()
        .filter(|l| l.starts_with("kowabunga_") && !l.contains("_bucket{") && !l.ends_with(" 0"))
        .take(40)
    {
        println!("  {line}");
    }
    report.check(
        "the metrics endpoint counts redirected packets",
        out.status.success() && body.contains("reason=\"fwd_redirect\""),
        &String::from_utf8_lossy(&out.stderr),
    );
    Ok(())
}

/// Deletes lab namespaces (Kawaii `kwl*-{priv,gw,inet}`, Konvey
/// `kwl*-{sw,client,lb,b1,b2,b3}`) and pin directories `/sys/fs/bpf/kwl*` left
/// behind by labs that were killed before they could clean up.
fn cleanup_stale() -> Result<()> {
    let is_lab = |name: &str| {
        name.starts_with("kwl")
            && [
                "-priv", "-gw", "-inet", "-sw", "-client", "-lb", "-b1", "-b2", "-b3", "-b", "-bh",
                "-kiwi", "-cli", "-rec", "-dsrv", "-dload",
            ]
            .iter()
            .any(|s| name.ends_with(s))
    };
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for name in entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
        {
            if is_lab(&name) {
                println!("deleting netns {name}");
                kowabunga_tests::lab::netns::ip(&["netns", "del", &name])?;
            }
        }
    }
    // BPFFS: pins; /etc/netns: the Kiwi lab client's resolv.conf.
    for dir in [BPFFS, "/etc/netns"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("kwl") {
                println!("removing {}", entry.path().display());
                std::fs::remove_dir_all(entry.path())?;
            }
        }
    }
    Ok(())
}
