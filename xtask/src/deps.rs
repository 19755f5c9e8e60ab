//! `cargo xtask deps`: the Debian packages each command needs, installed with apt-get.
//!
//! Packages come in [`Group`]s; each command ([`For`]) needs some groups, so
//! `cargo xtask lab` installs the lab's packages and nothing of libvirt, QEMU
//! or Ceph. `cargo xtask test` also needs a kernel for the test guests: it is
//! downloaded and unpacked under `target/` ([`crate::guest_kernel`]), never
//! installed. What xtask installs is recorded in [`STATE`] so that
//! `cargo xtask deps --purge` removes exactly that.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::guest_kernel;

/// A command whose needs `deps` knows (`cargo xtask deps [COMMAND]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum For {
    /// `cargo xtask lab`: the Kawaii and Konvey namespace lab.
    Lab,
    /// `cargo xtask bench`: the `BPF_PROG_TEST_RUN` benchmarks.
    Bench,
    /// `cargo xtask bench --live`: real traffic through namespaces, against
    /// kernel forwarding and nftables.
    LiveBench,
    /// `cargo xtask vrrp-report`: our VRRP engine against keepalived.
    VrrpReport,
    /// `cargo xtask bench dns`: Kiwi against unbound with dnsperf.
    BenchDns,
    /// `cargo xtask test` and `ci`: the whole suite, kowabunga-lib's real
    /// libvirt/QEMU/Ceph tests included, and the test guests' kernel.
    Test,
    /// `cargo xtask deps` alone: everything `test` needs plus optional
    /// debugging tools.
    All,
}

impl For {
    /// The command line this stands for.
    pub fn command(self) -> &'static str {
        match self {
            For::Lab => "cargo xtask lab",
            For::Bench => "cargo xtask bench",
            For::LiveBench => "cargo xtask bench --live",
            For::VrrpReport => "cargo xtask vrrp-report",
            For::BenchDns => "cargo xtask bench dns",
            For::Test => "cargo xtask test",
            For::All => "cargo xtask deps",
        }
    }

    /// The package groups this command needs, in install order.
    pub fn groups(self) -> &'static [Group] {
        use Group::*;
        match self {
            For::Lab => &[Build, Netns, Probes, Lab, Nft, Ipsec, Dns],
            For::Bench => &[Build, Netns],
            For::LiveBench => &[Build, Netns, Probes, Nft],
            For::VrrpReport => &[Build, Netns, Probes, Vrrp],
            For::BenchDns => &[Build, Netns, Probes, Dns, DnsBench],
            For::Test => &[
                Build, Netns, Probes, Lab, Nft, Ipsec, Dns, DnsBench, Vrrp, LibBuild, Guests, Ceph,
                Packaging,
            ],
            For::All => &[
                Build, Netns, Probes, Lab, Nft, Ipsec, Dns, DnsBench, Vrrp, LibBuild, Guests, Ceph,
                Packaging, Tools,
            ],
        }
    }

    /// Whether this command boots test guests, so needs their kernel.
    pub fn needs_guest_kernel(self) -> bool {
        self.groups().contains(&Group::Guests)
    }

    /// The packages this command needs, optional ones included, in table order.
    fn packages(self) -> Vec<&'static Package> {
        PACKAGES
            .iter()
            .filter(|p| self.groups().contains(&p.group))
            .collect()
    }
}

/// A set of packages needed for one purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Compiling the XDP programs and their Rust bindings.
    Build,
    /// Network namespaces and veth links.
    Netns,
    /// Traffic and sysctls inside namespaces.
    Probes,
    /// The namespace lab's extra tools.
    Lab,
    /// nftables: kowabungad's backstop, the live bench's baselines.
    Nft,
    /// strongSwan's charon, driven by kowabungad over VICI.
    Ipsec,
    /// Kiwi's lab and tests: a DNS client, the lab Kompute's seed.
    Dns,
    /// Kiwi's benchmark against unbound.
    DnsBench,
    /// VRRP interop with keepalived.
    Vrrp,
    /// Building kowabunga-lib's libvirt and Ceph backends.
    LibBuild,
    /// libvirtd and QEMU guests of kowabunga-lib's tests.
    Guests,
    /// The throwaway Ceph cluster and Kylo NFS of kowabunga-lib's tests.
    Ceph,
    /// `cargo xtask package` and its tests: the unit checked, the .deb built.
    Packaging,
    /// Optional debugging tools.
    Tools,
}

impl Group {
    /// Short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Group::Build => "build",
            Group::Netns => "netns",
            Group::Probes => "probes",
            Group::Lab => "lab",
            Group::Nft => "nft",
            Group::Ipsec => "ipsec",
            Group::Dns => "dns",
            Group::DnsBench => "dns-bench",
            Group::Vrrp => "vrrp",
            Group::LibBuild => "lib-build",
            Group::Guests => "guests",
            Group::Ceph => "ceph",
            Group::Packaging => "packaging",
            Group::Tools => "tools",
        }
    }

    /// Why the group is needed.
    pub fn why(self) -> &'static str {
        match self {
            Group::Build => "compiles the XDP programs (ebpf/*.c) and their bindings",
            Group::Netns => "network namespaces and veth links (labs, BPF_PROG_TEST_RUN fixtures)",
            Group::Probes => "ping and sysctl inside the namespaces",
            Group::Lab => {
                "the namespace lab: veth offloads, kowabungad's nftables backstop, captures"
            }
            Group::Nft => "nftables: kowabungad's kernel backstop, the live bench's NAT baselines",
            Group::Ipsec => "IPsec tunnels: charon driven over VICI, ESP in userspace here",
            Group::Dns => "Kiwi: dig in its lab and tests, the seed ISO of the lab's Kompute",
            Group::DnsBench => "Kiwi's benchmark: dnsperf against Kiwi and unbound",
            Group::Vrrp => "VRRP interop and takeover comparison with keepalived",
            Group::LibBuild => "builds kowabunga-lib's libvirt and Ceph backends (its tests)",
            Group::Guests => "libvirtd and QEMU guests started by kowabunga-lib's tests",
            Group::Ceph => "throwaway Ceph cluster and Kylo NFS of kowabunga-lib's tests",
            Group::Packaging => {
                "the Debian package: systemd-analyze verify of the unit, dpkg-deb, ldd"
            }
            Group::Tools => "optional: inspecting and poking at labs",
        }
    }

    /// Optional groups: a failure to install them is a warning.
    pub fn optional(self) -> bool {
        self == Group::Tools
    }
}

/// One Debian package and why the project needs it.
#[derive(Debug)]
struct Package {
    name: &'static str,
    why: &'static str,
    group: Group,
}

const PACKAGES: &[Package] = &[
    Package {
        name: "clang-19",
        why: "compiles ebpf/*.c (dataplane/build.rs)",
        group: Group::Build,
    },
    Package {
        name: "libclang1-19",
        why: "bindgen (kowabunga-bindings)",
        group: Group::Build,
    },
    Package {
        name: "libbpf-dev",
        why: "BPF helper headers for ebpf/",
        group: Group::Build,
    },
    Package {
        name: "linux-libc-dev",
        why: "kernel UAPI headers for ebpf/",
        group: Group::Build,
    },
    Package {
        name: "iproute2",
        why: "ip netns / veth in the lab and tests",
        group: Group::Netns,
    },
    Package {
        name: "iputils-ping",
        why: "ping through the lab gateway",
        group: Group::Probes,
    },
    Package {
        name: "procps",
        why: "sysctl inside the lab namespaces",
        group: Group::Probes,
    },
    Package {
        name: "ethtool",
        why: "turns off veth checksum offload in the lab",
        group: Group::Lab,
    },
    Package {
        name: "nftables",
        why: "nft: kowabungad's kernel backstop (control/src/kawaii/backstop.rs), live bench modes nft-masq/nft-dnat",
        group: Group::Nft,
    },
    Package {
        name: "curl",
        why: "the lab scrapes kowabungad's metrics endpoint (node.metrics.listen)",
        group: Group::Lab,
    },
    Package {
        name: "tcpdump",
        why: "captures on the lab's Internet side (no private source ever leaves)",
        group: Group::Lab,
    },
    Package {
        name: "strongswan-charon",
        why: "charon, the IKE daemon kowabungad drives over VICI (control/src/ipsec)",
        group: Group::Ipsec,
    },
    Package {
        name: "strongswan-swanctl",
        why: "swanctl: the labs' remote office loads its own swanctl.conf",
        group: Group::Ipsec,
    },
    Package {
        name: "libcharon-extra-plugins",
        why: "kernel-libipsec: ESP in userspace over UDP (this kernel has no ESP)",
        group: Group::Ipsec,
    },
    Package {
        name: "libstrongswan-standard-plugins",
        why: "openssl plugin: ECP and brainpool DH groups (19-21, 25-30), curve448 (32)",
        group: Group::Ipsec,
    },
    Package {
        name: "libstrongswan-extra-plugins",
        why: "curve25519 DH group (31) and extra ciphers",
        group: Group::Ipsec,
    },
    Package {
        name: "dnsutils",
        why: "dig: queries Kiwi in its lab and tests (TCP retry of truncated answers)",
        group: Group::Dns,
    },
    Package {
        name: "genisoimage",
        why: "cloud-init NoCloud seed ISO (label cidata), also of the Kiwi lab's Kompute",
        group: Group::Dns,
    },
    Package {
        name: "dnsperf",
        why: "load and latency of `cargo xtask bench dns`",
        group: Group::DnsBench,
    },
    Package {
        name: "unbound",
        why: "what Kiwi is measured against in `cargo xtask bench dns`",
        group: Group::DnsBench,
    },
    Package {
        name: "keepalived",
        why: "VRRP interop and failover comparison tests (control/src/vrrp)",
        group: Group::Vrrp,
    },
    Package {
        name: "arping",
        why: "checks the VIP answers ARP after a VRRP takeover",
        group: Group::Vrrp,
    },
    Package {
        name: "pkg-config",
        why: "finds libvirt, librados and librbd for kowabunga-lib",
        group: Group::LibBuild,
    },
    Package {
        name: "libvirt-dev",
        why: "kowabunga-lib Hypervisor backend (virt crate)",
        group: Group::LibBuild,
    },
    Package {
        name: "librados-dev",
        why: "kowabunga-lib Ceph backend (ceph crate)",
        group: Group::LibBuild,
    },
    Package {
        name: "librbd-dev",
        why: "kowabunga-lib RBD binding",
        group: Group::LibBuild,
    },
    Package {
        name: "libvirt-daemon",
        why: "libvirtd started by hand in kowabunga-lib's tests",
        group: Group::Guests,
    },
    Package {
        name: "libvirt-daemon-driver-qemu",
        why: "qemu:///system guests in kowabunga-lib's tests",
        group: Group::Guests,
    },
    Package {
        name: "libvirt-clients",
        why: "virsh, for inspecting test domains",
        group: Group::Guests,
    },
    Package {
        name: "qemu-system-x86",
        why: "boots the test guests (TCG where KVM does not work)",
        group: Group::Guests,
    },
    Package {
        name: "qemu-utils",
        why: "qemu-img: the local qcow2 storage backend",
        group: Group::Guests,
    },
    Package {
        name: "qemu-block-extra",
        why: "qemu's RBD driver for the guest on an RBD clone in kowabunga-lib's tests",
        group: Group::Guests,
    },
    Package {
        name: "busybox-static",
        why: "initramfs of the test guests",
        group: Group::Guests,
    },
    Package {
        name: "ceph-mon",
        why: "throwaway Ceph cluster in kowabunga-lib's tests",
        group: Group::Ceph,
    },
    Package {
        name: "ceph-mgr",
        why: "throwaway Ceph cluster in kowabunga-lib's tests",
        group: Group::Ceph,
    },
    Package {
        name: "ceph-osd",
        why: "throwaway Ceph cluster in kowabunga-lib's tests",
        group: Group::Ceph,
    },
    Package {
        name: "ceph-mds",
        why: "CephFS for Kylo in kowabunga-lib's tests",
        group: Group::Ceph,
    },
    Package {
        name: "ceph-common",
        why: "ceph/rbd command-line tools used by the test cluster",
        group: Group::Ceph,
    },
    Package {
        name: "nfs-ganesha",
        why: "Kylo NFS export in kowabunga-lib's tests",
        group: Group::Ceph,
    },
    Package {
        name: "nfs-ganesha-ceph",
        why: "nfs-ganesha's CephFS backend (Kylo)",
        group: Group::Ceph,
    },
    Package {
        name: "libnfs-utils",
        why: "nfs-cat reads Kylo files back over NFS in tests",
        group: Group::Ceph,
    },
    Package {
        name: "ceph-fuse",
        why: "writes Kylo files through CephFS in kowabunga-lib's tests",
        group: Group::Ceph,
    },
    Package {
        name: "systemd",
        why: "systemd-analyze verify of packaging/kowabungad.service",
        group: Group::Packaging,
    },
    Package {
        name: "dpkg",
        why: "dpkg-deb --build (cargo xtask package), dpkg -i in the package test",
        group: Group::Packaging,
    },
    Package {
        name: "libc-bin",
        why: "ldd: the shared libraries behind the package's Depends",
        group: Group::Packaging,
    },
    Package {
        name: "bpftool",
        why: "the restart tests read the program inside each pinned XDP link",
        group: Group::Lab,
    },
    Package {
        name: "netcat-openbsd",
        why: "manual poking at the lab",
        group: Group::Tools,
    },
    Package {
        name: "iperf3",
        why: "throughput comparisons",
        group: Group::Tools,
    },
];

/// Where xtask records the packages it installed (one name a line), for
/// `deps --purge`. System-wide like dpkg's own state, so it survives
/// `cargo clean` and is shared by every checkout.
pub const STATE: &str = "/var/lib/kowabunga-xtask/installed";

/// True when dpkg says the package is installed.
fn installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).trim() == "install ok installed"
        })
        .unwrap_or(false)
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs `apt-get ARGS` non-interactively, echoing it.
pub fn apt_get(args: &[&str]) -> Result<()> {
    apt_get_in(args, None)
}

/// [`apt_get`] in directory `dir` (`apt-get download` writes there).
pub fn apt_get_in(args: &[&str], dir: Option<&Path>) -> Result<()> {
    println!("xtask: apt-get {}", args.join(" "));
    // Wait for another apt/dpkg run (unattended upgrades, a parallel job)
    // instead of failing at once on its lock.
    let mut cmd = Command::new("apt-get");
    cmd.args(["-o", "DPkg::Lock::Timeout=900"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let status = cmd.status().context("running apt-get (is this Debian?)")?;
    if !status.success() {
        bail!("apt-get {} failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Packages that `apt-get -s` (simulate) output says it would remove: its
/// `Remv NAME [VERSION]` lines (`Purg NAME` for a purge).
fn simulated_removals(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Remv ").or_else(|| l.strip_prefix("Purg ")))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// What `apt-get ARGS` would remove, by a simulation (`-s`). Empty when the
/// simulation itself fails (the real run reports that).
fn would_remove(args: &[&str]) -> Vec<String> {
    let out = Command::new("apt-get")
        .args(["-s", "-q"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => simulated_removals(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}

fn check_dpkg() -> Result<()> {
    if Command::new("dpkg-query")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        bail!("dpkg-query not found: `cargo xtask deps` supports Debian 12 (bookworm) and derivatives");
    }
    Ok(())
}

/// What [`ensure`] prepared beyond packages.
#[derive(Debug, Default)]
pub struct Ready {
    /// The unpacked guest kernel tree (`boot/vmlinuz-*`, `lib/modules/*`),
    /// when the command boots test guests and it could be prepared.
    pub guest_kernel: Option<PathBuf>,
}

/// Checks the Debian packages `cmd` needs and installs the missing ones;
/// for commands that boot test guests, also downloads and unpacks their
/// kernel under `target` (never installs it).
///
/// `apt-get update` runs once, only when something is missing. Missing
/// optional packages that fail to install are reported, not fatal.
///
/// apt may remove an installed package to resolve a version conflict (a
/// newer backport of `qemu-utils` conflicts with bookworm's
/// `qemu-system-x86`): the removals are announced from a simulation first,
/// and every package `cmd` needs is checked again afterwards; those the
/// resolver removed are installed again from the apt sources.
pub fn ensure(cmd: For, target: &Path) -> Result<Ready> {
    check_dpkg()?;
    println!(
        "xtask: `{}` needs the package groups {}",
        cmd.command(),
        cmd.groups()
            .iter()
            .map(|g| format!("{} ({})", g.name(), g.why()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut updated = false;
    install(cmd, &mut updated)?;
    let mut ready = Ready::default();
    if cmd.needs_guest_kernel() {
        match guest_kernel::ensure(target, &mut updated) {
            Ok(dir) => ready.guest_kernel = Some(dir),
            Err(e) if guest_kernel::installed_in_boot() => println!(
                "xtask: warning: guest kernel not unpacked ({e:#}); the tests use the kernel in /boot"
            ),
            Err(e) => return Err(e.context("preparing the test guests' kernel")),
        }
    }
    Ok(ready)
}

/// The package part of [`ensure`].
fn install(cmd: For, updated: &mut bool) -> Result<()> {
    let wanted = cmd.packages();
    let before: BTreeSet<&str> = wanted
        .iter()
        .filter(|p| installed(p.name))
        .map(|p| p.name)
        .collect();
    let missing: Vec<&Package> = wanted
        .iter()
        .copied()
        .filter(|p| !before.contains(p.name))
        .collect();
    if missing.is_empty() {
        println!(
            "xtask: Debian packages present: {}",
            names(wanted.iter().copied())
        );
        return Ok(());
    }
    let (optional, required): (Vec<&Package>, Vec<&Package>) =
        missing.iter().partition(|p| p.group.optional());
    if !is_root() {
        if required.is_empty() {
            println!(
                "xtask: optional packages missing (install as root to get them): {}",
                names(optional.iter().copied())
            );
            return Ok(());
        }
        bail!(
            "missing Debian packages {}: run `cargo xtask deps{}` as root (or `sudo apt-get install --no-install-recommends {}`)",
            names(required.iter().copied()),
            deps_arg(cmd),
            names(missing.iter().copied())
        );
    }
    for p in &missing {
        println!(
            "xtask: will install {} [{}] ({}){}",
            p.name,
            p.group.name(),
            p.why,
            if p.group.optional() { ", optional" } else { "" }
        );
    }
    apt_get(&["update", "-q"])?;
    *updated = true;
    if !required.is_empty() {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(required.iter().map(|p| p.name));
        let removed = would_remove(&args);
        if !removed.is_empty() {
            println!(
                "xtask: note: apt will remove {} to resolve version conflicts \
                 (an installed package newer than the apt sources, e.g. a backport); \
                 the ones this command needs are installed again afterwards",
                removed.join(" ")
            );
        }
        let result = apt_get(&args);
        record(&wanted, &before);
        result?;
    }
    if !optional.is_empty() {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(optional.iter().map(|p| p.name));
        if let Err(e) = apt_get(&args) {
            println!("xtask: warning: optional packages not installed: {e:#}");
        }
        record(&wanted, &before);
    }
    // Every required package, not only the ones just installed: the resolver
    // may have removed one that was present before.
    let lost: Vec<&Package> = wanted
        .iter()
        .copied()
        .filter(|p| !p.group.optional() && !installed(p.name))
        .collect();
    if !lost.is_empty() {
        for p in &lost {
            println!(
                "xtask: {} ({}) is not installed after apt-get: the resolver removed it \
                 (version conflict) or could not install it with the rest; installing it again",
                p.name, p.why
            );
        }
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(lost.iter().map(|p| p.name));
        let result = apt_get(&args);
        record(&wanted, &before);
        result?;
    }
    let still: Vec<&Package> = wanted
        .iter()
        .copied()
        .filter(|p| !p.group.optional() && !installed(p.name))
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", names(still.into_iter()));
    }
    Ok(())
}

/// `" COMMAND"` for messages, empty for `All`.
fn deps_arg(cmd: For) -> String {
    match cmd {
        For::All => String::new(),
        For::Lab => " lab".into(),
        For::Bench => " bench".into(),
        For::LiveBench => " live-bench".into(),
        For::VrrpReport => " vrrp-report".into(),
        For::BenchDns => " bench-dns".into(),
        For::Test => " test".into(),
    }
}

/// Adds to [`STATE`] the packages of `wanted` installed now that were not
/// before this run. A package present before (even if apt removed and
/// xtask reinstalled it) is the user's and is never recorded.
fn record(wanted: &[&Package], before: &BTreeSet<&str>) {
    let new: Vec<&str> = wanted
        .iter()
        .map(|p| p.name)
        .filter(|n| !before.contains(n) && installed(n))
        .collect();
    if let Err(e) = add_to_state(Path::new(STATE), &new) {
        println!("xtask: warning: cannot record installed packages in {STATE}: {e:#}");
    }
}

/// The package names in a state file's text, deduplicated and sorted.
fn parse_state(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn add_to_state(path: &Path, new: &[&str]) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let mut set = match fs::read_to_string(path) {
        Ok(t) => parse_state(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    set.extend(new.iter().map(|n| (*n).to_owned()));
    write_state(path, &set)
}

fn write_state(path: &Path, set: &BTreeSet<String>) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let mut text = String::from(
        "# Debian packages installed by `cargo xtask deps` (kowabunga-rs); `cargo xtask deps --purge` removes them\n",
    );
    for n in set {
        text.push_str(n);
        text.push('\n');
    }
    fs::write(path, text).with_context(|| path.display().to_string())
}

/// `cargo xtask deps --list [COMMAND]`: what the command needs, by group,
/// without installing anything.
pub fn list(cmd: For, target: &Path) -> Result<()> {
    check_dpkg()?;
    print!("{}", listing(cmd, installed));
    if cmd.needs_guest_kernel() {
        let pkg = guest_kernel::resolve_package()
            .unwrap_or_else(|e| format!("linux-image-<ABI>-amd64 (not resolved: {e:#})"));
        println!(
            "  guest kernel (not installed: downloaded with `apt-get download` and unpacked with `dpkg-deb -x`):\n    {:<28} into {}",
            pkg,
            target.join(guest_kernel::CACHE).display()
        );
    }
    Ok(())
}

/// The text of [`list`] for the packages, `present` telling which are installed.
fn listing(cmd: For, present: impl Fn(&str) -> bool) -> String {
    let mut out = format!(
        "`{}` installs (apt-get install --no-install-recommends, with their dependencies):\n",
        cmd.command()
    );
    for g in cmd.groups() {
        let _ = writeln!(out, "  {}: {}", g.name(), g.why());
        for p in PACKAGES.iter().filter(|p| p.group == *g) {
            let _ = writeln!(
                out,
                "    {:<28} {}{}",
                p.name,
                p.why,
                if present(p.name) { " [installed]" } else { "" }
            );
        }
    }
    out
}

/// `cargo xtask deps --purge [--yes]`: removes the packages [`STATE`] says
/// xtask installed (and, with `--yes`, the guest kernel cache).
///
/// Without `yes` it only prints the `apt-get purge` command and what apt
/// would remove (a simulation, any user). Packages that were installed
/// before xtask ran are not in the state file and are never purged.
pub fn purge(yes: bool, target: &Path) -> Result<()> {
    check_dpkg()?;
    let state = Path::new(STATE);
    let recorded = match fs::read_to_string(state) {
        Ok(t) => parse_state(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(e).with_context(|| state.display().to_string()),
    };
    let present: Vec<&str> = recorded
        .iter()
        .map(String::as_str)
        .filter(|n| installed(n))
        .collect();
    let cache = target.join(guest_kernel::CACHE);
    if present.is_empty() {
        println!("xtask: no package installed by xtask is left ({STATE})");
    } else {
        let mut args = vec!["purge", "--autoremove"];
        args.extend(&present);
        println!(
            "xtask: installed by xtask (recorded in {STATE}): {}",
            present.join(" ")
        );
        if yes {
            if !is_root() {
                bail!("`cargo xtask deps --purge --yes` removes packages: run it as root");
            }
            let mut run = args.clone();
            run.insert(1, "-y");
            apt_get(&run)?;
            let left: BTreeSet<String> = recorded.into_iter().filter(|n| installed(n)).collect();
            write_state(state, &left)?;
        } else {
            let removed = would_remove(&args);
            println!(
                "xtask: `apt-get {}` would remove {} package(s) (their no longer needed \
                 dependencies included, and any other package apt already considers \
                 unneeded): {}",
                args.join(" "),
                removed.len(),
                removed.join(" ")
            );
        }
    }
    if cache.exists() {
        if yes {
            fs::remove_dir_all(&cache).with_context(|| cache.display().to_string())?;
            println!("xtask: removed {}", cache.display());
        } else {
            println!(
                "xtask: the guest kernel cache {} would be removed",
                cache.display()
            );
        }
    }
    if !yes {
        println!("xtask: run `cargo xtask deps --purge --yes` (root) to do it");
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a Package>) -> String {
    it.map(|p| p.name).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_for(cmd: For) -> Vec<&'static str> {
        cmd.packages().iter().map(|p| p.name).collect()
    }

    #[test]
    fn removals_are_read_from_the_simulation() {
        let out = "NOTE: This is only a simulation!\n\
                   Remv qemu-utils [1:10.0.2+ds-1~bpo12+1]\n\
                   Inst qemu-utils (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n\
                   Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n\
                   Remv libfoo1 [2.0]\n\
                   Purg ceph-mon [16.2.15+ds-0+deb12u1]\n\
                   Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n";
        assert_eq!(
            simulated_removals(out),
            ["qemu-utils", "libfoo1", "ceph-mon"]
        );
        assert!(simulated_removals("Inst a (1 x)\nConf a (1 x)\n").is_empty());
    }

    #[test]
    fn the_lab_installs_no_libvirt_qemu_ceph_ganesha_or_kernel() {
        let lab = names_for(For::Lab);
        assert_eq!(
            lab,
            [
                "clang-19",
                "libclang1-19",
                "libbpf-dev",
                "linux-libc-dev",
                "iproute2",
                "iputils-ping",
                "procps",
                "ethtool",
                "nftables",
                "curl",
                "tcpdump",
                // the lab's IPsec part: charon, swanctl, userspace ESP, DH groups
                "strongswan-charon",
                "strongswan-swanctl",
                "libcharon-extra-plugins",
                "libstrongswan-standard-plugins",
                "libstrongswan-extra-plugins",
                "dnsutils",
                "genisoimage",
                // the restart tests read the programs in the pinned links
                "bpftool",
            ]
        );
        for cmd in [
            For::Lab,
            For::Bench,
            For::LiveBench,
            For::VrrpReport,
            For::BenchDns,
        ] {
            assert!(!cmd.needs_guest_kernel(), "{cmd:?}");
            for n in names_for(cmd) {
                for bad in [
                    "ceph",
                    "virt",
                    "qemu",
                    "ganesha",
                    "linux-image",
                    "rados",
                    "rbd",
                ] {
                    assert!(!n.contains(bad), "{cmd:?} installs {n}");
                }
            }
        }
    }

    #[test]
    fn bench_and_vrrp_report_get_their_own_groups() {
        assert_eq!(
            names_for(For::Bench),
            [
                "clang-19",
                "libclang1-19",
                "libbpf-dev",
                "linux-libc-dev",
                "iproute2"
            ]
        );
        let vrrp = names_for(For::VrrpReport);
        assert!(vrrp.contains(&"keepalived") && vrrp.contains(&"arping"));
        assert!(!vrrp.contains(&"ethtool"));
        assert!(!names_for(For::Lab).contains(&"keepalived"));
        let dns = names_for(For::BenchDns);
        assert!(dns.contains(&"dnsperf") && dns.contains(&"unbound") && dns.contains(&"dnsutils"));
        assert!(!names_for(For::Lab).contains(&"unbound"));
    }

    #[test]
    fn the_live_bench_gets_nftables_and_no_lab_tools() {
        assert_eq!(
            names_for(For::LiveBench),
            [
                "clang-19",
                "libclang1-19",
                "libbpf-dev",
                "linux-libc-dev",
                "iproute2",
                "iputils-ping",
                "procps",
                "nftables"
            ]
        );
        assert!(!For::LiveBench.needs_guest_kernel());
        assert_eq!(For::LiveBench.command(), "cargo xtask bench --live");
    }

    #[test]
    fn test_needs_everything_but_the_tools_and_never_a_kernel_package() {
        let test = names_for(For::Test);
        let all = names_for(For::All);
        for p in PACKAGES {
            assert!(all.contains(&p.name), "{}", p.name);
            assert_eq!(test.contains(&p.name), !p.group.optional(), "{}", p.name);
            assert!(!p.name.starts_with("linux-image"), "{}", p.name);
        }
        for n in [
            "qemu-utils",
            "qemu-system-x86",
            "libvirt-dev",
            "ceph-osd",
            "busybox-static",
        ] {
            assert!(test.contains(&n), "{n}");
        }
        assert!(For::Test.needs_guest_kernel());
        // Every smaller command's packages are part of the suite's.
        for cmd in [
            For::Lab,
            For::Bench,
            For::LiveBench,
            For::VrrpReport,
            For::BenchDns,
        ] {
            for n in names_for(cmd) {
                assert!(test.contains(&n), "{cmd:?}: {n}");
            }
        }
    }

    #[test]
    fn every_package_appears_once() {
        let mut seen = BTreeSet::new();
        for p in PACKAGES {
            assert!(seen.insert(p.name), "{} twice", p.name);
        }
    }

    #[test]
    fn the_listing_names_groups_packages_and_what_is_installed() {
        let text = listing(For::Bench, |n| n == "iproute2");
        assert!(text.starts_with("`cargo xtask bench` installs"), "{text}");
        assert!(
            text.contains("  build: compiles the XDP programs"),
            "{text}"
        );
        assert!(text.contains("    iproute2 "), "{text}");
        assert!(text.contains("[installed]"), "{text}");
        assert_eq!(text.matches("[installed]").count(), 1, "{text}");
        assert!(!text.contains("keepalived"), "{text}");
    }

    #[test]
    fn the_state_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("xtask-state-{}", std::process::id()));
        let path = dir.join("installed");
        add_to_state(&path, &["ceph-mon", "clang-19"]).expect("add");
        add_to_state(&path, &["clang-19", "arping"]).expect("add again");
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with('#'));
        assert_eq!(
            parse_state(&text).into_iter().collect::<Vec<_>>(),
            ["arping", "ceph-mon", "clang-19"]
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
