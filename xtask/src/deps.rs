//! `cargo xtask deps`: the Debian packages the project needs, installed with apt-get.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// One Debian package and why the project needs it.
struct Package {
    name: &'static str,
    why: &'static str,
    required: bool,
}

const PACKAGES: &[Package] = &[
    Package {
        name: "clang-19",
        why: "compiles ebpf/*.c (dataplane/build.rs)",
        required: true,
    },
    Package {
        name: "libclang1-19",
        why: "bindgen (kowabunga-bindings)",
        required: true,
    },
    Package {
        name: "libbpf-dev",
        why: "BPF helper headers for ebpf/",
        required: true,
    },
    Package {
        name: "linux-libc-dev",
        why: "kernel UAPI headers for ebpf/",
        required: true,
    },
    Package {
        name: "iproute2",
        why: "ip netns / veth in the lab and tests",
        required: true,
    },
    Package {
        name: "iputils-ping",
        why: "ping through the lab gateway",
        required: true,
    },
    Package {
        name: "ethtool",
        why: "turns off veth checksum offload in the lab",
        required: true,
    },
    Package {
        name: "keepalived",
        why: "VRRP interop and failover comparison tests (control/src/vrrp)",
        required: true,
    },
    Package {
        name: "arping",
        why: "checks the VIP answers ARP after a VRRP takeover",
        required: true,
    },
    Package {
        name: "pkg-config",
        why: "finds libvirt, librados and librbd for kowabunga-lib",
        required: true,
    },
    Package {
        name: "libvirt-dev",
        why: "kowabunga-lib Hypervisor backend (virt crate)",
        required: true,
    },
    Package {
        name: "libvirt-daemon",
        why: "libvirtd started by hand in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "libvirt-daemon-driver-qemu",
        why: "qemu:///system guests in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "libvirt-clients",
        why: "virsh, for inspecting test domains",
        required: true,
    },
    Package {
        name: "qemu-system-x86",
        why: "boots the test guests (TCG where KVM does not work)",
        required: true,
    },
    Package {
        name: "qemu-utils",
        why: "qemu-img: the local qcow2 storage backend",
        required: true,
    },
    Package {
        name: "librados-dev",
        why: "kowabunga-lib Ceph backend (ceph crate)",
        required: true,
    },
    Package {
        name: "librbd-dev",
        why: "kowabunga-lib RBD binding",
        required: true,
    },
    Package {
        name: "ceph-mon",
        why: "throwaway Ceph cluster in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "ceph-mgr",
        why: "throwaway Ceph cluster in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "ceph-osd",
        why: "throwaway Ceph cluster in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "ceph-mds",
        why: "CephFS for Kylo in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "ceph-common",
        why: "ceph/rbd command-line tools used by the test cluster",
        required: true,
    },
    Package {
        name: "nfs-ganesha",
        why: "Kylo NFS export in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "nfs-ganesha-ceph",
        why: "nfs-ganesha's CephFS backend (Kylo)",
        required: true,
    },
    Package {
        name: "libnfs-utils",
        why: "nfs-cat reads Kylo files back over NFS in tests",
        required: true,
    },
    Package {
        name: "qemu-block-extra",
        why: "qemu's RBD driver for the guest on an RBD clone in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "ceph-fuse",
        why: "writes Kylo files through CephFS in kowabunga-lib's tests",
        required: true,
    },
    Package {
        name: "linux-image-amd64",
        why: "kernel booted by the test guests",
        required: true,
    },
    Package {
        name: "busybox-static",
        why: "initramfs of the test guests",
        required: true,
    },
    Package {
        name: "genisoimage",
        why: "cloud-init NoCloud seed ISO (label cidata)",
        required: true,
    },
    Package {
        name: "bpftool",
        why: "inspecting pinned maps",
        required: false,
    },
    Package {
        name: "netcat-openbsd",
        why: "manual poking at the lab",
        required: false,
    },
    Package {
        name: "iperf3",
        why: "throughput comparisons",
        required: false,
    },
    Package {
        name: "tcpdump",
        why: "debugging the lab",
        required: false,
    },
];

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

fn apt_get(args: &[&str]) -> Result<()> {
    println!("xtask: apt-get {}", args.join(" "));
    // Wait for another apt/dpkg run (unattended upgrades, a parallel job)
    // instead of failing at once on its lock.
    let status = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=900"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get (is this Debian?)")?;
    if !status.success() {
        bail!("apt-get {} failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Packages that `apt-get -s` (simulate) output says it would remove: its
/// `Remv NAME [VERSION]` lines.
fn simulated_removals(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// What `apt-get install` of `names` would remove, by a simulation (`-s`).
/// Empty when the simulation itself fails (the real run reports that).
fn would_remove(names: &[&str]) -> Vec<String> {
    let out = Command::new("apt-get")
        .args(["-s", "-q", "install", "--no-install-recommends"])
        .args(names)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => simulated_removals(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}

/// Checks the Debian packages and installs the missing ones.
///
/// `apt-get update` runs once, only when something is missing. Missing optional
/// packages that fail to install are reported, not fatal.
///
/// apt may remove an installed package to resolve a version conflict (a
/// newer backport of `qemu-utils` conflicts with bookworm's
/// `qemu-system-x86`): the removals are announced from a simulation first,
/// and every required package is checked again afterwards; those the
/// resolver removed are installed again from the apt sources.
pub fn ensure() -> Result<()> {
    if Command::new("dpkg-query")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        bail!("dpkg-query not found: `cargo xtask deps` supports Debian 12 (bookworm) and derivatives");
    }
    let missing: Vec<&Package> = PACKAGES.iter().filter(|p| !installed(p.name)).collect();
    if missing.is_empty() {
        println!("xtask: Debian packages present: {}", names(PACKAGES.iter()));
        return Ok(());
    }
    let (required, optional): (Vec<&Package>, Vec<&Package>) =
        missing.iter().partition(|p| p.required);
    if !is_root() {
        if required.is_empty() {
            println!(
                "xtask: optional packages missing (install as root to get them): {}",
                names(optional.iter().copied())
            );
            return Ok(());
        }
        bail!(
            "missing Debian packages {}: run `cargo xtask deps` as root (or `sudo apt-get install {}`)",
            names(required.iter().copied()),
            names(missing.iter().copied())
        );
    }
    for p in &missing {
        println!(
            "xtask: will install {} ({}){}",
            p.name,
            p.why,
            if p.required { "" } else { ", optional" }
        );
    }
    apt_get(&["update", "-q"])?;
    if !required.is_empty() {
        let list: Vec<&str> = required.iter().map(|p| p.name).collect();
        let removed = would_remove(&list);
        if !removed.is_empty() {
            println!(
                "xtask: note: apt will remove {} to resolve version conflicts \
                 (an installed package newer than the apt sources, e.g. a backport); \
                 the ones this project needs are installed again afterwards",
                removed.join(" ")
            );
        }
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(list);
        apt_get(&args)?;
    }
    if !optional.is_empty() {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(optional.iter().map(|p| p.name));
        if let Err(e) = apt_get(&args) {
            println!("xtask: warning: optional packages not installed: {e:#}");
        }
    }
    // Every required package, not only the ones just installed: the resolver
    // may have removed one that was present before.
    let lost: Vec<&Package> = PACKAGES
        .iter()
        .filter(|p| p.required && !installed(p.name))
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
        apt_get(&args)?;
    }
    let still: Vec<&Package> = PACKAGES
        .iter()
        .filter(|p| p.required && !installed(p.name))
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", names(still.into_iter()));
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a Package>) -> String {
    it.map(|p| p.name).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_are_read_from_the_simulation() {
        let out = "NOTE: This is only a simulation!\n\
                   Remv qemu-utils [1:10.0.2+ds-1~bpo12+1]\n\
                   Inst qemu-utils (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n\
                   Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n\
                   Remv libfoo1 [2.0]\n\
                   Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n";
        assert_eq!(simulated_removals(out), ["qemu-utils", "libfoo1"]);
        assert!(simulated_removals("Inst a (1 x)\nConf a (1 x)\n").is_empty());
    }
}
