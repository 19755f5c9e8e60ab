//! veth interfaces: what their peers need, said once at start.
//!
//! A frame an XDP program `bpf_redirect`s (or `XDP_TX`es) into a veth
//! reaches the other end only when that peer runs NAPI: GRO enabled or an
//! XDP program of its own; otherwise the kernel drops it. And packets a
//! host builds with transmit checksum offload lose their "checksum to be
//! completed" state once XDP rewrites and redirects them, so the hosts
//! sending through a veth need `tx` offload off. Physical and virtio NICs
//! need neither, so a container deployment on veths would be a silent black
//! hole: [`warn_veths`] logs one `warn` line per veth the roles attach to.
//!
//! The driver name comes from the ethtool ioctl (`SIOCETHTOOL` +
//! `ETHTOOL_GDRVINFO`) on a socket, which answers for the daemon's own
//! network namespace (`/sys/class/net` follows the sysfs mount instead).
//!
//! ```
//! use kowabunga_control::daemon::veth::{driver_name, is_veth};
//!
//! let mut raw = [0u8; 32];
//! raw[..4].copy_from_slice(b"veth");
//! assert_eq!(driver_name(&raw).as_deref(), Some("veth"));
//! assert!(is_veth("veth"));
//! ```

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use tracing::{debug, warn};

/// `ETHTOOL_GDRVINFO` (`linux/ethtool.h`): get driver information.
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// `struct ethtool_drvinfo` (`linux/ethtool.h`).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The driver name in an `ethtool_drvinfo.driver` field: the bytes before
/// the first NUL (all of them without one), `None` when empty or not UTF-8.
pub fn driver_name(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let name = std::str::from_utf8(&raw[..end]).ok()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Whether `driver` is the veth driver.
pub fn is_veth(driver: &str) -> bool {
    driver == "veth"
}

/// The driver of `ifname` in this thread's network namespace, from
/// `SIOCETHTOOL` / `ETHTOOL_GDRVINFO`.
///
/// # Errors
/// The name is too long, the interface does not exist (`ENODEV`), or it
/// has no ethtool driver information (`EOPNOTSUPP`, as `lo`).
pub fn driver(ifname: &str) -> io::Result<String> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {ifname:?}"),
        ));
    }
    // SAFETY: plain socket(2); the descriptor is owned (closed on drop) at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };

    // SAFETY: both structs are plain data for which all zeroes is valid.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    // SAFETY: as above.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&raw mut info).cast();
    // SAFETY: SIOCETHTOOL reads the name and the command from `req` and
    // writes at most one `ethtool_drvinfo` through `ifru_data`, which points
    // at `info`, alive and exclusively borrowed for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &raw mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    driver_name(&info.driver).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{ifname}: empty or invalid driver name"),
        )
    })
}

/// The warning for veth `ifname`, configured at `fields` (one or more
/// field paths, e.g. `node.interfaces.public`).
pub fn advice(fields: &[&str], ifname: &str) -> String {
    format!(
        "{}: {ifname} is a veth: frames XDP redirects into it reach its peer only if the \
         peer runs NAPI (GRO on: `ethtool -K <peer> gro on` on the peer's side, or an XDP \
         program there), and the hosts sending through it need transmit checksum offload \
         off (`ethtool -K eth0 tx off` on each sending host); otherwise their traffic is \
         dropped without a trace",
        fields.join(", ")
    )
}

/// One warning per veth among `interfaces` (field path, name), in the order
/// of their first field; `driver` says an interface's driver (errors are
/// logged at `debug` and skipped: the interface was checked to exist).
pub fn warnings(
    interfaces: &[(String, String)],
    driver: impl Fn(&str) -> io::Result<String>,
) -> Vec<String> {
    // Interface -> its fields, kept in first-seen order.
    let mut order: Vec<&str> = Vec::new();
    let mut fields: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (field, name) in interfaces {
        let seen = fields.entry(name.as_str()).or_default();
        if seen.is_empty() {
            order.push(name);
        }
        seen.push(field);
    }
    order
        .into_iter()
        .filter(|name| match driver(name) {
            Ok(d) => is_veth(&d),
            Err(e) => {
                debug!(interface = %name, "no ethtool driver information: {e}");
                false
            }
        })
        .map(|name| advice(&fields[name], name))
        .collect()
}

/// Logs one `warn` line per veth among `interfaces` (field path, name), in
/// this thread's network namespace.
pub fn warn_veths(interfaces: &[(String, String)]) {
    for line in warnings(interfaces, driver) {
        warn!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_are_read_up_to_the_nul() {
        let mut raw = [0u8; 32];
        assert_eq!(driver_name(&raw), None);
        raw[..4].copy_from_slice(b"veth");
        assert_eq!(driver_name(&raw).as_deref(), Some("veth"));
        raw[5..9].copy_from_slice(b"junk");
        assert_eq!(driver_name(&raw).as_deref(), Some("veth"), "after the NUL");
        let full = [b'x'; 32];
        assert_eq!(driver_name(&full).as_deref(), Some("x".repeat(32).as_str()));
        assert_eq!(driver_name(&[0xff, 0xfe, 0]), None, "not UTF-8");
        assert!(is_veth("veth"));
        for other in ["virtio_net", "e1000e", "dummy", "bridge", "vethx", ""] {
            assert!(!is_veth(other), "{other}");
        }
    }

    #[test]
    fn one_warning_per_veth_naming_its_fields() {
        let ifaces: Vec<(String, String)> = [
            ("node.interfaces.public", "eth0"),
            ("node.interfaces.private", "veth-priv"),
            ("node.interfaces.peerings[0]", "gone"),
            ("node.interfaces.konvey[0]", "veth-priv"),
        ]
        .iter()
        .map(|(f, n)| ((*f).to_owned(), (*n).to_owned()))
        .collect();
        let lookup = |name: &str| match name {
            "eth0" => Ok("virtio_net".to_owned()),
            "veth-priv" => Ok("veth".to_owned()),
            _ => Err(io::Error::from_raw_os_error(libc::ENODEV)),
        };
        let lines = warnings(&ifaces, lookup);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            lines[0],
            advice(
                &["node.interfaces.private", "node.interfaces.konvey[0]"],
                "veth-priv"
            )
        );
        let line = &lines[0];
        assert!(
            line.starts_with(
                "node.interfaces.private, node.interfaces.konvey[0]: veth-priv is a veth: "
            ),
            "{line}"
        );
        for needle in ["ethtool -K <peer> gro on", "ethtool -K eth0 tx off", "XDP"] {
            assert!(line.contains(needle), "{needle:?} in {line}");
        }
        assert!(!line.contains('\n'));
    }

    #[test]
    fn bad_names_are_refused_before_the_ioctl() {
        for name in ["", "a-name-far-too-long", "nul\0"] {
            let e = driver(name).expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
    }
}
