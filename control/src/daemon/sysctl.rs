//! Kernel settings a Kawaii gateway needs, written through `/proc/sys`.
//!
//! * `net.ipv4.ip_forward = 1`: packets the XDP program passes to the kernel
//!   (unresolved neighbour, TTL, IPsec) must still be routed.
//! * `net.ipv4.conf.{all,<iface>}.accept_local = 1`: a rewritten packet whose
//!   source is the gateway's own VIP is passed to the kernel when the next
//!   hop's neighbour is unresolved; without `accept_local` the kernel drops it
//!   as a martian.
//! * `net.ipv4.conf.{all,<iface>}.rp_filter = 0`: translated packets do not
//!   pass reverse-path checks. The kernel uses the *maximum* of `all` and the
//!   interface value, so `all` is cleared too (on a dedicated gateway node or
//!   inside a network namespace that is the intended setting).
//!
//! Values are only written when they differ, so a daemon restart is quiet.
//!
//! ```
//! use kowabunga_control::daemon::sysctl::gateway_settings;
//!
//! let settings = gateway_settings(&["eth0", "eth1.100"]);
//! assert_eq!(settings[0].key(), "net.ipv4.ip_forward");
//! assert!(settings.iter().any(|s| s.key() == "net.ipv4.conf.eth1.100.accept_local"));
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Where sysctls live.
pub const PROC_SYS: &str = "/proc/sys";

/// One sysctl: path components below `/proc/sys` and the wanted value.
///
/// Components are kept apart (rather than a dotted key) because interface
/// names may contain dots (`eth0.100`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Path components below `/proc/sys`, e.g. `["net", "ipv4", "ip_forward"]`.
    pub components: Vec<String>,
    /// The value to write.
    pub value: &'static str,
}

impl Setting {
    fn new(components: &[&str], value: &'static str) -> Self {
        Setting {
            components: components.iter().map(|c| (*c).to_owned()).collect(),
            value,
        }
    }

    /// The dotted `sysctl` name, for messages.
    pub fn key(&self) -> String {
        self.components.join(".")
    }

    /// The file of this setting below `root` (normally `/proc/sys`).
    pub fn path(&self, root: &Path) -> PathBuf {
        let mut path = root.to_owned();
        path.extend(&self.components);
        path
    }
}

/// A sysctl could not be read or written.
#[derive(Debug, Error)]
#[error("cannot set sysctl {key} = {value} ({path}): {source}")]
pub struct SysctlError {
    /// Dotted name.
    pub key: String,
    /// Wanted value.
    pub value: &'static str,
    /// File.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// The settings of a gateway with these interfaces, in the order written.
pub fn gateway_settings(interfaces: &[&str]) -> Vec<Setting> {
    let mut out = vec![
        Setting::new(&["net", "ipv4", "ip_forward"], "1"),
        Setting::new(&["net", "ipv4", "conf", "all", "accept_local"], "1"),
        Setting::new(&["net", "ipv4", "conf", "all", "rp_filter"], "0"),
    ];
    for iface in interfaces {
        out.push(Setting::new(
            &["net", "ipv4", "conf", iface, "accept_local"],
            "1",
        ));
        out.push(Setting::new(
            &["net", "ipv4", "conf", iface, "rp_filter"],
            "0",
        ));
    }
    out
}

/// A setting the daemon changed, with the value it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// Path components below `/proc/sys`.
    pub components: Vec<String>,
    /// The value before the daemon wrote its own.
    pub value: String,
}

impl Previous {
    /// The dotted `sysctl` name, for messages.
    pub fn key(&self) -> String {
        self.components.join(".")
    }

    /// One line of a state file: `net/ipv4/ip_forward=0`.
    pub fn to_line(&self) -> String {
        format!("{}={}", self.components.join("/"), self.value)
    }

    /// Parses [`Previous::to_line`]; `None` for anything else (a component
    /// may not be empty, `.` or `..`).
    pub fn from_line(line: &str) -> Option<Self> {
        let (path, value) = line.split_once('=')?;
        let components: Vec<String> = path.split('/').map(str::to_owned).collect();
        let ok = components
            .iter()
            .all(|c| !c.is_empty() && c != "." && c != "..");
        ok.then(|| Previous {
            components,
            value: value.to_owned(),
        })
    }
}

/// Writes `settings` below `root` (normally [`PROC_SYS`]); returns those
/// that changed, with the value found.
///
/// # Errors
/// The first setting that cannot be written (a missing interface directory
/// means the interface does not exist).
pub fn apply(root: &Path, settings: &[Setting]) -> Result<Vec<Previous>, SysctlError> {
    let mut changed = Vec::new();
    for setting in settings {
        let path = setting.path(root);
        let current = fs::read_to_string(&path).map_err(|source| SysctlError {
            key: setting.key(),
            value: setting.value,
            path: path.clone(),
            source,
        })?;
        if current.trim() == setting.value {
            continue;
        }
        fs::write(&path, setting.value).map_err(|source| SysctlError {
            key: setting.key(),
            value: setting.value,
            path: path.clone(),
            source,
        })?;
        changed.push(Previous {
            components: setting.components.clone(),
            value: current.trim().to_owned(),
        });
    }
    Ok(changed)
}

/// Writes back the values of `previous` below `root`; returns the dotted
/// names written. A setting whose file is gone (its interface was deleted)
/// is skipped.
///
/// # Errors
/// A file that exists but cannot be written.
pub fn restore(root: &Path, previous: &[Previous]) -> io::Result<Vec<String>> {
    let mut done = Vec::new();
    for p in previous {
        let mut path = root.to_owned();
        path.extend(&p.components);
        if !path.exists() {
            continue;
        }
        fs::write(&path, &p.value)?;
        done.push(p.key());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("kowabunga-sysctl-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn fake_proc(root: &Path, ifaces: &[&str], value: &str) {
        for s in gateway_settings(ifaces) {
            let path = s.path(root);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, format!("{value}\n")).expect("write");
        }
    }

    #[test]
    fn settings_cover_all_and_each_interface() {
        let keys: Vec<String> = gateway_settings(&["pub0", "priv0"])
            .iter()
            .map(|s| format!("{}={}", s.key(), s.value))
            .collect();
        assert_eq!(
            keys,
            [
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.accept_local=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.pub0.accept_local=1",
                "net.ipv4.conf.pub0.rp_filter=0",
                "net.ipv4.conf.priv0.accept_local=1",
                "net.ipv4.conf.priv0.rp_filter=0",
            ]
        );
    }

    #[test]
    fn dotted_interface_names_are_one_component() {
        let s = &gateway_settings(&["eth0.100"])[3];
        assert_eq!(
            s.path(Path::new("/proc/sys")),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/accept_local")
        );
    }

    #[test]
    fn writes_only_what_differs() {
        let tmp = TempDir::new("apply");
        fake_proc(&tmp.0, &["a", "b"], "2");
        let changed = apply(&tmp.0, &gateway_settings(&["a", "b"])).expect("apply");
        assert_eq!(changed.len(), 7);
        assert_eq!(
            fs::read_to_string(tmp.0.join("net/ipv4/ip_forward")).expect("read"),
            "1"
        );
        assert_eq!(
            fs::read_to_string(tmp.0.join("net/ipv4/conf/b/rp_filter")).expect("read"),
            "0"
        );
        // Second run: nothing to do.
        let again = apply(&tmp.0, &gateway_settings(&["a", "b"])).expect("apply");
        assert!(again.is_empty(), "{again:?}");
        // The values found come back, through a state-file line each.
        let lines: Vec<String> = changed.iter().map(Previous::to_line).collect();
        assert_eq!(lines[0], "net/ipv4/ip_forward=2");
        let parsed: Vec<Previous> = lines
            .iter()
            .filter_map(|l| Previous::from_line(l))
            .collect();
        assert_eq!(parsed, changed);
        assert_eq!(Previous::from_line("net/../x=1"), None);
        assert_eq!(Previous::from_line("no value"), None);
        fs::remove_dir_all(tmp.0.join("net/ipv4/conf/b")).expect("interface gone");
        let restored = restore(&tmp.0, &parsed).expect("restore");
        assert_eq!(restored.len(), 5, "{restored:?}");
        assert_eq!(
            fs::read_to_string(tmp.0.join("net/ipv4/ip_forward")).expect("read"),
            "2"
        );
    }

    #[test]
    fn missing_interface_is_an_error_naming_the_key() {
        let tmp = TempDir::new("missing");
        fake_proc(&tmp.0, &["a"], "0");
        let err = apply(&tmp.0, &gateway_settings(&["a", "nope"])).expect_err("missing");
        assert_eq!(err.key, "net.ipv4.conf.nope.accept_local");
        assert!(err
            .to_string()
            .starts_with("cannot set sysctl net.ipv4.conf.nope.accept_local = 1 ("));
    }
}
