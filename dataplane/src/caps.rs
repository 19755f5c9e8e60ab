//! The capabilities the dataplane needs: CAP_BPF (or CAP_SYS_ADMIN) and
//! CAP_NET_ADMIN.

use std::{fmt, fs, io};

/// `CAP_NET_ADMIN` bit.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN` bit (also grants BPF on every kernel).
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF` bit (Linux 5.8+).
pub const CAP_BPF: u32 = 39;

/// Capabilities that are missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    /// Neither CAP_BPF nor CAP_SYS_ADMIN.
    pub bpf: bool,
    /// No CAP_NET_ADMIN.
    pub net_admin: bool,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.bpf, self.net_admin) {
            (true, true) => f.write_str("CAP_BPF, CAP_NET_ADMIN"),
            (true, false) => f.write_str("CAP_BPF"),
            (false, true) => f.write_str("CAP_NET_ADMIN"),
            (false, false) => f.write_str("nothing"),
        }
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Capabilities are missing.
    #[error("kowabungad needs CAP_BPF and CAP_NET_ADMIN (run as root); missing {0}")]
    Missing(Missing),
    /// `/proc/self/status` could not be read or parsed.
    #[error("cannot read the capabilities of this process from /proc/self/status: {0}")]
    Status(io::Error),
}

/// Checks an effective capability mask (`CapEff`).
///
/// ```
/// use kowabunga_dataplane::caps::{check_mask, CAP_BPF, CAP_NET_ADMIN};
/// assert!(check_mask((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)).is_ok());
/// assert!(check_mask(1 << CAP_NET_ADMIN).is_err());
/// ```
pub fn check_mask(cap_eff: u64) -> Result<(), Error> {
    let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
    let missing = Missing {
        bpf: !(has(CAP_BPF) || has(CAP_SYS_ADMIN)),
        net_admin: !has(CAP_NET_ADMIN),
    };
    if missing.bpf || missing.net_admin {
        Err(Error::Missing(missing))
    } else {
        Ok(())
    }
}

/// The `CapEff` mask of a `/proc/<pid>/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Checks that this process may load and attach XDP programs.
///
/// ```no_run
/// if let Err(e) = kowabunga_dataplane::caps::check() {
///     eprintln!("{e}");
///     std::process::exit(1);
/// }
/// ```
pub fn check() -> Result<(), Error> {
    let status = fs::read_to_string("/proc/self/status").map_err(Error::Status)?;
    let mask = parse_cap_eff(&status).ok_or_else(|| {
        Error::Status(io::Error::new(io::ErrorKind::InvalidData, "no CapEff line"))
    })?;
    check_mask(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert!(check_mask(u64::MAX).is_ok());
        assert!(check_mask((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)).is_ok());
        let e = check_mask(0).expect_err("nothing granted");
        assert_eq!(
            e.to_string(),
            "kowabungad needs CAP_BPF and CAP_NET_ADMIN (run as root); missing CAP_BPF, CAP_NET_ADMIN"
        );
        assert!(!e.to_string().contains('\n'));
        let e = check_mask(1 << CAP_BPF).expect_err("no net admin");
        assert!(e.to_string().ends_with("missing CAP_NET_ADMIN"));
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
        assert!(parse_cap_eff(&fs::read_to_string("/proc/self/status").expect("procfs")).is_some());
    }
}
