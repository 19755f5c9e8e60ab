//! What the daemon remembers between runs outside bpffs (which only holds
//! pins): the sysctl values it found before changing them, so `--detach`
//! can put them back. Kept under [`RUN_DIR`] (a tmpfs: gone at reboot,
//! like the sysctls themselves), one directory per pin directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::sysctl::Previous;

/// Root of the daemon's run-time state.
pub const RUN_DIR: &str = "/run/kowabunga";

/// The file of the sysctl values found.
pub const SYSCTL_FILE: &str = "sysctl.before";

/// The state directory of the daemon whose pins live in `pin_dir`:
/// `/run/kowabunga/sys_fs_bpf_kowabunga` for `/sys/fs/bpf/kowabunga`.
pub fn dir_for(pin_dir: &Path) -> PathBuf {
    dir_below(Path::new(RUN_DIR), pin_dir)
}

fn dir_below(root: &Path, pin_dir: &Path) -> PathBuf {
    let name: Vec<String> = pin_dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    root.join(name.join("_"))
}

/// Adds `changed` to the values found, keeping those already recorded (a
/// restarted daemon finds its own values, not the original ones).
///
/// # Errors
/// The state directory or file cannot be written.
pub fn record_sysctls(dir: &Path, changed: &[Previous]) -> io::Result<()> {
    let mut all = read(dir)?;
    for p in changed {
        if !all.iter().any(|q| q.components == p.components) {
            all.push(p.clone());
        }
    }
    fs::create_dir_all(dir)?;
    let text: String = all.iter().map(|p| p.to_line() + "\n").collect();
    let tmp = dir.join(format!("{SYSCTL_FILE}.tmp"));
    fs::write(&tmp, text)?;
    fs::rename(tmp, dir.join(SYSCTL_FILE))
}

/// The values found, removing the record (and the directory when empty).
///
/// # Errors
/// The file exists but cannot be read or removed.
pub fn take_sysctls(dir: &Path) -> io::Result<Vec<Previous>> {
    let all = read(dir)?;
    match fs::remove_file(dir.join(SYSCTL_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let _ = fs::remove_dir(dir);
    Ok(all)
}

fn read(dir: &Path) -> io::Result<Vec<Previous>> {
    match fs::read_to_string(dir.join(SYSCTL_FILE)) {
        Ok(text) => Ok(text.lines().filter_map(Previous::from_line).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prev(line: &str) -> Previous {
        Previous::from_line(line).expect("line")
    }

    #[test]
    fn the_first_values_found_are_kept() {
        let root = std::env::temp_dir().join(format!("kowabunga-state-{}", std::process::id()));
        let dir = dir_below(&root, Path::new("/sys/fs/bpf/kowabunga-gw"));
        assert!(dir.ends_with("sys_fs_bpf_kowabunga-gw"));
        record_sysctls(&dir, &[prev("net/ipv4/ip_forward=0")]).expect("record");
        // A restart finds the daemon's own value: the original stays.
        record_sysctls(
            &dir,
            &[
                prev("net/ipv4/ip_forward=1"),
                prev("net/ipv4/conf/all/rp_filter=2"),
            ],
        )
        .expect("record");
        let taken = take_sysctls(&dir).expect("take");
        assert_eq!(
            taken,
            [
                prev("net/ipv4/ip_forward=0"),
                prev("net/ipv4/conf/all/rp_filter=2")
            ]
        );
        assert!(!dir.exists());
        assert!(take_sysctls(&dir).expect("nothing").is_empty());
        let _ = fs::remove_dir_all(root);
    }
}
