//! `cargo xtask bench dns`: Kiwi (`kowabungad`) against `unbound` serving
//! the same records as local data, measured by `dnsperf`, side by side from
//! one run.
//!
//! ```text
//!  [load] eth0 10.53.0.2/24 ── kw-dns 10.53.0.1/24 + 10.53.0.3/24 [srv]   Kiwi on 10.53.0.1:53, unbound on 10.53.0.3:53
//!         dnsperf                                                          stub recursor on 127.0.0.1:5300
//! ```
//!
//! Both servers get the same zone (`acme.local`: 1,000 instance names, 20
//! names of 4 addresses each, isolation to 10.53.0.0/24 for Kiwi and an
//! `access-control` for unbound), the same upstream (the stub recursor of
//! [`super::dns`], answering `*.example.test`) and 2 threads each. The
//! query mix, one file for both: 40 % instance names, 20 % multi-address
//! names, 20 % NXDOMAIN in the zone, 20 % forwarded names (200 of them,
//! cached after the warm-up). Both servers run side by side (an idle one
//! costs nothing) and are measured in alternation, so that the load of
//! the machine hits both alike: each round is one throughput pass of each
//! (`dnsperf -c 8 -q 256`, as fast as it answers), the first one swapping
//! every round; then three latency passes of each at a fixed rate (`-Q`,
//! per-query latencies from `-v`), alternating. The table shows the round
//! of median throughput ratio and the median of each latency percentile.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kowabunga_control::config::model::{Kiwi, KiwiRecord, KiwiZone};

use super::daemon::Daemon;
use super::netns::{unique_prefix, Netns};
use super::topology::{ensure_bpffs, BPFFS};
use super::traffic::{run_bounded, Agent, Background};

/// Kiwi's address.
pub const SERVER: &str = "10.53.0.1";
/// unbound's address.
pub const UNBOUND: &str = "10.53.0.3";
/// dnsperf's address.
pub const LOAD: &str = "10.53.0.2";
/// The stub recursor, on the server's loopback.
pub const UPSTREAM: &str = "127.0.0.1:5300";
/// Instance names in the zone.
pub const INSTANCES: usize = 1000;
/// Names with several addresses.
pub const MULTI: usize = 20;
/// Forwarded names in the mix.
pub const FORWARDED: usize = 200;

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds of each dnsperf pass.
    pub seconds: u64,
    /// Rounds (each measures both servers).
    pub rounds: usize,
    /// Rate of the latency pass, queries per second.
    pub latency_qps: u64,
    /// `kowabungad`.
    pub kowabungad: PathBuf,
    /// `kowabunga-lab-agent` (the stub recursor).
    pub agent: PathBuf,
}

/// One server's figures in one round.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Throughput pass: queries per second.
    pub qps: f64,
    /// Throughput pass: lost queries.
    pub lost: u64,
    /// Throughput pass: response codes as dnsperf printed them.
    pub codes: String,
    /// Latency pass: percentiles 50, 90, 99, 99.9, in ms.
    pub latency_ms: [f64; 4],
    /// Latency pass: queries answered.
    pub answered: usize,
}

fn zone() -> KiwiZone {
    let mut records: Vec<KiwiRecord> = (0..INSTANCES)
        .map(|i| KiwiRecord {
            name: format!("host-{i:04}"),
            addresses: vec![format!("10.1.{}.{}", i / 250, i % 250 + 1)],
        })
        .collect();
    records.extend((0..MULTI).map(|i| KiwiRecord {
        name: format!("svc-{i:02}"),
        addresses: (1..=4).map(|k| format!("10.2.{i}.{k}")).collect(),
    }));
    KiwiZone {
        domain: "acme.local".into(),
        allow_from: vec!["10.53.0.0/24".into()],
        records,
    }
}

/// The query file: one `name type` a line, the mix of the module docs.
pub fn query_mix() -> String {
    let mut out = String::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for line in 0..20_000u64 {
        let r = next();
        let _ = match line % 10 {
            0..=3 => writeln!(out, "host-{:04}.acme.local A", r % INSTANCES as u64),
            4 | 5 => writeln!(out, "svc-{:02}.acme.local A", r % MULTI as u64),
            6 | 7 => writeln!(out, "nope-{:05}.acme.local A", r % 100_000),
            _ => writeln!(out, "fwd-{:03}.example.test A", r % FORWARDED as u64),
        };
    }
    out
}

fn kiwi_config(pin_dir: &Path) -> String {
    let mut kiwi = Kiwi::new(vec![SERVER.into()], vec![UPSTREAM.into()]);
    kiwi.udp_workers = Some(2);
    kiwi.zones.push(zone());
    let section: String = kiwi.to_yaml().lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "node:\n  zone: bench\n  interfaces: {{}}\n  bpffs: {}\nkiwi:\n{section}",
        pin_dir.display()
    )
}

fn unbound_config(dir: &Path) -> String {
    let mut c = format!(
        "server:\n  interface: {UNBOUND}\n  port: 53\n  num-threads: 2\n  so-reuseport: yes\n  \
         username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n  \
         logfile: \"\"\n  use-syslog: no\n  verbosity: 0\n  do-daemonize: no\n  \
         module-config: \"iterator\"\n  do-not-query-localhost: no\n  qname-minimisation: no\n  \
         access-control: 10.53.0.0/24 allow\n  local-zone: \"test.\" nodefault\n  \
         msg-cache-size: 16m\n  rrset-cache-size: 32m\n  outgoing-range: 1024\n  \
         local-zone: \"acme.local.\" static\n",
        dir = dir.display()
    );
    let z = zone();
    for r in &z.records {
        for a in &r.addresses {
            let _ = writeln!(c, "  local-data: \"{}.acme.local. 60 IN A {a}\"", r.name);
        }
    }
    let (host, port) = UPSTREAM.split_once(':').unwrap_or((UPSTREAM, "53"));
    let _ = write!(
        c,
        "forward-zone:\n  name: \".\"\n  forward-addr: {host}@{port}\n"
    );
    c
}

/// The two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// `kowabungad` with a `kiwi` section.
    Kiwi,
    /// `unbound` with local data.
    Unbound,
}

impl Subject {
    /// Where it listens.
    pub fn addr(self) -> &'static str {
        match self {
            Subject::Kiwi => SERVER,
            Subject::Unbound => UNBOUND,
        }
    }

    /// Column title.
    pub fn title(self) -> &'static str {
        match self {
            Subject::Kiwi => "Kiwi (kowabungad)",
            Subject::Unbound => "unbound",
        }
    }
}

/// A server under test; stopped on drop.
enum Running {
    Kiwi(#[allow(dead_code)] Daemon),
    Unbound(#[allow(dead_code)] Background),
}

/// The bench's namespaces and files.
pub struct Bench {
    srv: Netns,
    load: Netns,
    dir: PathBuf,
    pin_dir: PathBuf,
    _recursor: Background,
    opts: Options,
}

impl Bench {
    /// Builds the namespaces, writes the files, starts the stub recursor.
    pub fn new(opts: Options) -> Result<Self> {
        let prefix = unique_prefix();
        ensure_bpffs()?;
        let dir = std::env::temp_dir().join(format!("{prefix}-dnsbench"));
        std::fs::create_dir_all(&dir)?;
        let srv = Netns::new(&format!("{prefix}-dsrv"))?;
        let load = Netns::new(&format!("{prefix}-dload"))?;
        srv.veth("kw-dns", &load, "eth0")?;
        srv.addr("kw-dns", &format!("{SERVER}/24"))?;
        srv.ip(&["addr", "add", &format!("{UNBOUND}/24"), "dev", "kw-dns"])?;
        load.addr("eth0", &format!("{LOAD}/24"))?;
        let pin_dir = Path::new(BPFFS).join(&prefix);
        std::fs::write(dir.join("kiwi.yaml"), kiwi_config(&pin_dir))?;
        std::fs::write(dir.join("unbound.conf"), unbound_config(&dir))?;
        std::fs::write(dir.join("queries.txt"), query_mix())?;
        let agent = Agent::new(&opts.agent);
        let mut recursor = Background::spawn(
            "dns-recursor",
            agent.command(
                &srv,
                &["dns-recursor", "--listen", UPSTREAM, "--seconds", "600"],
            ),
        )?;
        recursor.wait_for("ready dns", Duration::from_secs(5))?;
        Ok(Bench {
            srv,
            load,
            dir,
            pin_dir,
            _recursor: recursor,
            opts,
        })
    }

    fn start(&self, subject: Subject) -> Result<Running> {
        let running = match subject {
            Subject::Kiwi => Running::Kiwi(Daemon::start(
                &self.srv,
                &self.opts.kowabungad,
                &self.dir.join("kiwi.yaml"),
            )?),
            Subject::Unbound => {
                let mut cmd = self.srv.command("unbound");
                cmd.arg("-d").arg("-c").arg(self.dir.join("unbound.conf"));
                Running::Unbound(Background::spawn("unbound", cmd)?)
            }
        };
        // Ready when it answers an instance name.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.dig(subject, "host-0001.acme.local")?;
            if out.contains("10.1.0.2") {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{} does not answer: {out}",
                subject.title()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(running)
    }

    fn dig(&self, subject: Subject, name: &str) -> Result<String> {
        let mut cmd = self.load.command("dig");
        let at = format!("@{}", subject.addr());
        cmd.args([&at, "+short", "+time=1", "+tries=1", name]);
        Ok(run_bounded(cmd, Duration::from_secs(5))?.stdout)
    }

    fn dnsperf(&self, subject: Subject, args: &[&str], seconds: u64) -> Result<String> {
        let mut cmd: Command = self.load.command("dnsperf");
        let secs = seconds.to_string();
        let data = self.dir.join("queries.txt");
        cmd.args(["-s", subject.addr(), "-d"])
            .arg(&data)
            .args(["-l", &secs, "-t", "2"])
            .args(args);
        let out = run_bounded(cmd, Duration::from_secs(seconds + 30))?;
        ensure!(
            out.stdout.contains("Queries per second"),
            "dnsperf failed: {out}"
        );
        Ok(out.stdout)
    }

    /// Throughput of `subject`: queries per second, lost, codes.
    fn throughput(&self, subject: Subject) -> Result<Figures> {
        let out = self.dnsperf(subject, &["-c", "8", "-q", "256"], self.opts.seconds)?;
        parse_summary(&out)
    }

    /// Latency percentiles of `subject` at the fixed rate.
    fn latency(&self, subject: Subject) -> Result<([f64; 4], usize)> {
        let rate = self.opts.latency_qps.to_string();
        let out = self.dnsperf(subject, &["-c", "8", "-Q", &rate, "-v"], self.opts.seconds)?;
        latencies(&out)
    }

    /// Runs the rounds and returns the table.
    pub fn run(&self) -> Result<String> {
        let _kiwi = self.start(Subject::Kiwi)?;
        let _unbound = self.start(Subject::Unbound)?;
        for subject in [Subject::Kiwi, Subject::Unbound] {
            // Warm-up: fills the forwarders' caches.
            self.dnsperf(subject, &["-c", "8", "-q", "64"], 2)?;
        }
        let mut rounds: Vec<(Figures, Figures)> = Vec::new();
        for round in 0..self.opts.rounds {
            let order = if round % 2 == 0 {
                [Subject::Kiwi, Subject::Unbound]
            } else {
                [Subject::Unbound, Subject::Kiwi]
            };
            let mut pair = (Figures::default(), Figures::default());
            for subject in order {
                let f = self.throughput(subject)?;
                match subject {
                    Subject::Kiwi => pair.0 = f,
                    Subject::Unbound => pair.1 = f,
                }
            }
            println!(
                "round {}: Kiwi {:>9.0} q/s, unbound {:>9.0} q/s, ratio {:.2}",
                round + 1,
                pair.0.qps,
                pair.1.qps,
                pair.0.qps / pair.1.qps.max(1.0)
            );
            rounds.push(pair);
        }
        rounds
            .sort_by(|a, b| (a.0.qps / a.1.qps.max(1.0)).total_cmp(&(b.0.qps / b.1.qps.max(1.0))));
        let (mut kiwi, mut unbound) = rounds.swap_remove(rounds.len() / 2);
        // Latency: three passes each, alternating; the median of each
        // percentile.
        let mut runs: [Vec<[f64; 4]>; 2] = [Vec::new(), Vec::new()];
        for round in 0..3 {
            let order = if round % 2 == 0 {
                [Subject::Kiwi, Subject::Unbound]
            } else {
                [Subject::Unbound, Subject::Kiwi]
            };
            for subject in order {
                let (pct, answered) = self.latency(subject)?;
                let (slot, figures) = match subject {
                    Subject::Kiwi => (0, &mut kiwi),
                    Subject::Unbound => (1, &mut unbound),
                };
                runs[slot].push(pct);
                figures.answered += answered;
            }
        }
        kiwi.latency_ms = median_each(&runs[0]);
        unbound.latency_ms = median_each(&runs[1]);
        Ok(table(&kiwi, &unbound, &self.opts))
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The median of each percentile over several passes.
fn median_each(runs: &[[f64; 4]]) -> [f64; 4] {
    let mut out = [0.0; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        *slot = v.get(v.len() / 2).copied().unwrap_or_default();
    }
    out
}

fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
}

/// Queries per second, lost queries and response codes of a dnsperf
/// summary.
///
/// # Errors
/// A line is missing.
pub fn parse_summary(out: &str) -> Result<Figures> {
    let qps: f64 = field(out, "Queries per second:")
        .context("no 'Queries per second'")?
        .parse()?;
    let lost: u64 = field(out, "Queries lost:")
        .and_then(|v| v.split_whitespace().next())
        .context("no 'Queries lost'")?
        .parse()?;
    let codes = field(out, "Response codes:").unwrap_or("").to_owned();
    Ok(Figures {
        qps,
        lost,
        codes,
        ..Figures::default()
    })
}

/// Percentiles 50/90/99/99.9 (ms) of dnsperf's `-v` lines (`> NOERROR
/// name A 0.000123`) and how many there were.
///
/// # Errors
/// No such line.
pub fn latencies(out: &str) -> Result<([f64; 4], usize)> {
    let mut ms: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|s| s * 1000.0)
        .collect();
    if ms.is_empty() {
        bail!("no per-query lines in dnsperf -v output");
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    Ok(([at(0.50), at(0.90), at(0.99), at(0.999)], ms.len()))
}

fn table(kiwi: &Figures, unbound: &Figures, opts: &Options) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nDNS: Kiwi vs unbound, same zone and query mix ({} rounds of {} s passes, the round of median ratio; 2 cores shared with dnsperf)\n",
        opts.rounds, opts.seconds
    );
    let _ = writeln!(
        t,
        "| {:<44} | {:>18} | {:>18} | {:>7} |",
        "",
        Subject::Kiwi.title(),
        Subject::Unbound.title(),
        "ratio"
    );
    let _ = writeln!(t, "|{:-<46}|{:->20}|{:->20}|{:->9}|", "", "", "", "");
    let _ = writeln!(
        t,
        "| {:<44} | {:>18.0} | {:>18.0} | {:>7.2} |",
        "queries/s (dnsperf -c 8 -q 256)",
        kiwi.qps,
        unbound.qps,
        kiwi.qps / unbound.qps.max(1.0)
    );
    for (i, p) in ["p50", "p90", "p99", "p99.9"].iter().enumerate() {
        let _ = writeln!(
            t,
            "| {:<44} | {:>18.3} | {:>18.3} | {:>7.2} |",
            format!("latency {p} at {} q/s (ms, median of 3)", opts.latency_qps),
            kiwi.latency_ms[i],
            unbound.latency_ms[i],
            kiwi.latency_ms[i] / unbound.latency_ms[i].max(1e-9)
        );
    }
    let _ = writeln!(
        t,
        "| {:<44} | {:>18} | {:>18} | {:>7} |",
        "lost queries (throughput pass)", kiwi.lost, unbound.lost, ""
    );
    let _ = writeln!(
        t,
        "\nload average at the end (other work on the machine skews both): {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let _ = writeln!(t, "response codes, Kiwi:    {}", kiwi.codes);
    let _ = writeln!(t, "response codes, unbound: {}", unbound.codes);
    t
}

/// Checks the tools the bench runs.
///
/// # Errors
/// One line naming the missing package.
pub fn check_tools() -> Result<()> {
    for (tool, package) in [
        ("dnsperf", "dnsperf"),
        ("unbound", "unbound"),
        ("dig", "dnsutils"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()));
        ensure!(
            found,
            "{tool} not found: apt-get install {package} (cargo xtask deps bench-dns)"
        );
    }
    Ok(())
}
