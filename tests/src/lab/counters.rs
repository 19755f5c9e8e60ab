//! The dataplane's outcome counters, read from the pinned per-CPU `kw_stats` map.
//!
//! Reads the pin with two `bpf(2)` commands (`BPF_OBJ_GET`, `BPF_MAP_LOOKUP_ELEM`)
//! and sums the per-CPU slots, so it works from any process that sees the bpffs.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};

use kowabunga_dataplane::stats::STAT_NAMES;

/// One counter summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Name from `kowabunga_dataplane::stats::STAT_NAMES`.
    pub name: &'static str,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// A snapshot of every counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters(pub Vec<Counter>);

impl Counters {
    /// Reads `<pin_dir>/kw_stats`.
    pub fn read(pin_dir: &Path) -> Result<Self> {
        let path = pin_dir.join("kw_stats");
        let fd =
            obj_get(&path).with_context(|| format!("opening pinned map {}", path.display()))?;
        let cpus = possible_cpus()?;
        let mut out = Vec::with_capacity(STAT_NAMES.len());
        for (key, name) in STAT_NAMES.iter().map(|(k, n)| (*k, *n)) {
            // struct kw_counter { u64 packets; u64 bytes; } per possible CPU.
            let mut values = vec![0u64; cpus * 2];
            lookup(&fd, &key, &mut values).with_context(|| format!("reading kw_stats[{key}]"))?;
            let packets = values.iter().step_by(2).sum();
            let bytes = values.iter().skip(1).step_by(2).sum();
            out.push(Counter {
                name,
                packets,
                bytes,
            });
        }
        Ok(Counters(out))
    }

    /// Packets counted under `name` (0 for an unknown name).
    pub fn packets(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.packets)
    }

    /// Packet deltas since `before`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|c| Counter {
                    name: c.name,
                    packets: c.packets.saturating_sub(before.packets(c.name)),
                    bytes: c.bytes.saturating_sub(
                        before
                            .0
                            .iter()
                            .find(|b| b.name == c.name)
                            .map_or(0, |b| b.bytes),
                    ),
                })
                .collect(),
        )
    }
}

impl std::fmt::Display for Counters {
    /// The non-zero counters, one per line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut any = false;
        for c in self.0.iter().filter(|c| c.packets > 0) {
            writeln!(
                f,
                "  {:<22} {:>8} packets {:>10} bytes",
                c.name, c.packets, c.bytes
            )?;
            any = true;
        }
        if !any {
            writeln!(f, "  (all zero)")?;
        }
        Ok(())
    }
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_F_RDONLY: u32 = 1 << 3;

#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
struct LookupAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn obj_get(path: &Path) -> Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())?;
    let attr = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: BPF_F_RDONLY,
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for BPF_OBJ_GET, and `c_path`
    // outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGetAttr,
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let fd = i32::try_from(fd).context("fd out of range")?;
    // SAFETY: the kernel just returned this descriptor to us; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lookup(fd: &OwnedFd, key: &u32, values: &mut [u64]) -> Result<()> {
    let attr = LookupAttr {
        map_fd: u32::try_from(fd.as_raw_fd())?,
        _pad: 0,
        key: key as *const u32 as u64,
        value: values.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for BPF_MAP_LOOKUP_ELEM; `values`
    // holds one 16-byte `kw_counter` per possible CPU, as the kernel writes for a
    // per-CPU map.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_ELEM,
            &attr as *const LookupAttr,
            std::mem::size_of::<LookupAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-1`).
fn possible_cpus() -> Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut max = None;
    for part in text.trim().split(',') {
        let last = part.rsplit('-').next().unwrap_or(part);
        let n: usize = last
            .parse()
            .with_context(|| format!("parsing possible cpus {text:?}"))?;
        max = max.max(Some(n));
    }
    match max {
        Some(n) => Ok(n + 1),
        None => bail!("no possible cpus in {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kowabunga_bindings::kw_stat;
    use kowabunga_dataplane::stats::stat_name;

    #[test]
    fn names_follow_the_abi_enum() {
        assert_eq!(stat_name(kw_stat::KW_STAT_FWD_REDIRECT), "fwd_redirect");
        assert_eq!(stat_name(kw_stat::KW_STAT_PASS_TO_HOST), "pass_to_host");
        assert_eq!(stat_name(kw_stat::KW_STAT_DROP_MALFORMED), "drop_malformed");
        assert_eq!(
            stat_name(kw_stat::KW_STAT_DROP_INGRESS_DENIED),
            "drop_ingress_denied"
        );
        assert_eq!(stat_name(kw_stat::KW_STAT_DROP_CT_FULL), "drop_ct_full");
    }

    #[test]
    fn possible_cpus_is_positive() {
        assert!(possible_cpus().expect("read possible cpus") >= 1);
    }
}
