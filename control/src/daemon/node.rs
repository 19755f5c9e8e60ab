//! What the daemon reads from the node it runs on: addresses of
//! interfaces, `/proc/sys`, and where the bpffs pins go.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kowabunga_dataplane::LoadOptions;
use tracing::info;

use super::netns::{in_init_mount_ns, pin_check, refusal, PinCheck};

use super::sysctl;
use crate::config::ValidConfig;

/// Mount point of the bpffs that holds the default pin directory.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// The sysctl listing the ports of the node's own outgoing connections.
pub const IP_LOCAL_PORT_RANGE: &str = "net/ipv4/ip_local_port_range";

/// What the daemon reads from the node it runs on; replaceable in tests.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    /// `/proc/sys`, or a test directory.
    pub proc_sys: PathBuf,
    /// The IPv4 addresses of an interface, in the kernel's order.
    pub interface_ipv4: fn(&str) -> Vec<Ipv4Addr>,
}

impl NodeEnv {
    /// The running system.
    pub fn system() -> Self {
        NodeEnv {
            proc_sys: PathBuf::from(sysctl::PROC_SYS),
            interface_ipv4: ipv4_addresses,
        }
    }
}

/// The IPv4 addresses of `ifname` in this network namespace (empty when it
/// has none or does not exist).
pub fn ipv4_addresses(ifname: &str) -> Vec<Ipv4Addr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| a.interface_name == ifname)
        .filter_map(|a| a.address?.as_sockaddr_in().map(|sin| sin.ip()))
        .collect()
}

/// Parses `ip_local_port_range` ("32768\t60999").
pub fn parse_port_range_sysctl(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => Some((lo, hi)),
        _ => None,
    }
}

/// Where a role's maps are pinned: `node.bpffs`, or `node.bpffs/<subdir>`.
pub fn load_options(config: &ValidConfig, subdir: Option<&str>) -> LoadOptions {
    let pin_dir = match subdir {
        Some(sub) => config.node.bpffs.join(sub),
        None => config.node.bpffs.clone(),
    };
    LoadOptions {
        pin_dir: Some(pin_dir),
        ct_entries: config.node.conntrack_entries,
    }
}

/// The directory whose filesystem decides where pins go: [`BPFFS_ROOT`] for
/// a pin directory below it, else the pin directory's nearest existing
/// ancestor.
pub fn pin_root(pin_dir: &Path) -> PathBuf {
    if pin_dir.starts_with(BPFFS_ROOT) {
        return PathBuf::from(BPFFS_ROOT);
    }
    pin_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned()
}

/// Makes sure the pins of `config` outlive the daemon, before anything is
/// loaded: on a bpffs already, or mounts one on [`BPFFS_ROOT`] when the
/// daemon shares the init mount namespace; refuses (one line) in a private
/// mount namespace, as under `ip netns exec` (see [`super::netns`]).
///
/// # Errors
/// The refusal, or a bpffs that cannot be mounted.
pub fn prepare_pins(config: &ValidConfig) -> anyhow::Result<()> {
    let root = pin_root(&config.node.bpffs);
    let on_bpffs = kowabunga_dataplane::bpffs::is_bpffs(&root).unwrap_or(false);
    match pin_check(on_bpffs, in_init_mount_ns()) {
        PinCheck::Mounted => Ok(()),
        PinCheck::Refuse => anyhow::bail!(refusal(&config.node.bpffs)),
        PinCheck::Mount if root == Path::new(BPFFS_ROOT) && root.is_dir() => {
            kowabunga_dataplane::bpffs::mount(&root)
                .with_context(|| format!("cannot mount bpffs on {BPFFS_ROOT}"))?;
            info!("mounted bpffs on {BPFFS_ROOT}");
            Ok(())
        }
        PinCheck::Mount => anyhow::bail!(
            "node.bpffs: {} is not on a bpffs (mount one: `mount -t bpf bpf {}`)",
            config.node.bpffs.display(),
            root.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_helpers() {
        assert_eq!(
            parse_port_range_sysctl("32768\t60999\n"),
            Some((32768, 60999))
        );
        assert_eq!(parse_port_range_sysctl("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_port_range_sysctl("x"), None);
        assert_eq!(ipv4_addresses("lo"), [Ipv4Addr::LOCALHOST]);
        assert!(ipv4_addresses("no-such-if0").is_empty());
        assert_eq!(
            pin_root(Path::new("/sys/fs/bpf/kowabunga-gw")),
            Path::new(BPFFS_ROOT)
        );
        assert_eq!(pin_root(Path::new("/proc/no/such/dir")), Path::new("/proc"));
    }
}
