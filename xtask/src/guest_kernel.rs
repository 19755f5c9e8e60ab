//! The test guests' kernel, from Debian's package without installing it.
//!
//! `linux-image-amd64` is a metapackage; its `Depends` names the current
//! image (`linux-image-6.1.0-57-amd64`). That package is fetched with
//! `apt-get download` and unpacked with `dpkg-deb -x` into
//! `target/kowabunga-guest-kernel/<version>/`, so the host's `/boot`,
//! initramfs and bootloader are never touched. dpkg's postinst (depmod) does
//! not run, so `modules.dep` is written here from each module's `.modinfo`
//! `depends=` field (direct dependencies; the tests resolve them
//! recursively). kowabunga-lib's tests find the tree through
//! [`ENV`] (set by `cargo xtask test`) or by looking for [`CACHE`] above
//! their own executable.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::deps::{apt_get, apt_get_in, is_root};

/// The cache directory's name under the target directory.
pub const CACHE: &str = "kowabunga-guest-kernel";

/// Environment variable naming an unpacked kernel tree (a directory with
/// `boot/vmlinuz-VER` and `lib/modules/VER`) for kowabunga-lib's tests.
pub const ENV: &str = "KOWABUNGA_GUEST_KERNEL";

/// The metapackage whose dependency is the current kernel image.
const META: &str = "linux-image-amd64";

/// The image package named by `apt-cache depends linux-image-amd64`
/// output: the first `Depends:` (or `|Depends:` alternative) on a
/// `linux-image-*` package.
pub fn parse_depends(out: &str) -> Option<String> {
    out.lines()
        .map(|l| l.trim().trim_start_matches('|'))
        .filter_map(|l| l.strip_prefix("Depends:"))
        .map(|d| d.trim().trim_matches(|c| c == '<' || c == '>'))
        .find(|d| d.starts_with("linux-image-") && *d != META)
        .map(str::to_owned)
}

/// The kernel version (`uname -r`) a `linux-image-VER` package ships.
pub fn version_of(package: &str) -> Option<&str> {
    let v = package.strip_prefix("linux-image-")?;
    let v = v.strip_suffix("-unsigned").unwrap_or(v);
    v.starts_with(|c: char| c.is_ascii_digit()).then_some(v)
}

/// Asks apt which image package `linux-image-amd64` depends on.
pub fn resolve_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", META])
        .stderr(Stdio::null())
        .output()
        .context("running apt-cache")?;
    if !out.status.success() {
        bail!("`apt-cache depends {META}` failed (no apt lists yet? run `apt-get update`)");
    }
    parse_depends(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("no linux-image-* dependency in `apt-cache depends {META}`"))
}

/// The modules directory of an unpacked tree: `lib/modules/VER`, or
/// `usr/lib/modules/VER` for merged-/usr packages.
fn moddir(root: &Path, ver: &str) -> PathBuf {
    let lib = root.join("lib/modules").join(ver);
    if lib.is_dir() {
        lib
    } else {
        root.join("usr/lib/modules").join(ver)
    }
}

/// Whether `root` holds a usable kernel `ver`: the image and a
/// `modules.dep`.
fn ready(root: &Path, ver: &str) -> bool {
    root.join("boot").join(format!("vmlinuz-{ver}")).is_file()
        && moddir(root, ver).join("modules.dep").is_file()
}

/// Whether the host has a kernel image in /boot with its modules.
pub fn installed_in_boot() -> bool {
    fs::read_dir("/boot").is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .is_some_and(|v| ready(Path::new("/"), v))
        })
    })
}

/// Makes sure `<target>/kowabunga-guest-kernel/<version>/` holds the
/// current Debian kernel, unpacked; returns that directory. `updated` says
/// whether `apt-get update` already ran in this xtask run.
pub fn ensure(target: &Path, updated: &mut bool) -> Result<PathBuf> {
    let cache = target.join(CACHE);
    let package = match resolve_package() {
        Ok(p) => p,
        Err(_) if !*updated && is_root() => {
            apt_get(&["update", "-q"])?;
            *updated = true;
            resolve_package()?
        }
        Err(e) => return Err(e),
    };
    let ver = version_of(&package)
        .with_context(|| format!("no kernel version in package name {package}"))?
        .to_owned();
    let dir = cache.join(&ver);
    if ready(&dir, &ver) {
        println!(
            "xtask: guest kernel: {package} unpacked in {} (not installed)",
            dir.display()
        );
        return Ok(dir);
    }
    println!(
        "xtask: guest kernel: downloading {package} (the Depends of {META}) and unpacking it \
         into {} for the test guests; it is not installed, /boot is not touched",
        dir.display()
    );
    let work = cache.join(format!(".unpack-{ver}"));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| work.display().to_string())?;
    }
    fs::create_dir_all(&work).with_context(|| work.display().to_string())?;
    // As root, apt drops to user _apt for downloads, which cannot write
    // into target/; it would fall back to root with a warning anyway.
    let mut args = vec!["download", "-q", package.as_str()];
    if is_root() {
        args.splice(0..0, ["-o", "APT::Sandbox::User=root"]);
    }
    apt_get_in(&args, Some(&work))?;
    let deb = fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", work.display()))?;
    let root = work.join("root");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed with {status}", deb.display());
    }
    write_modules_dep(&moddir(&root, &ver))?;
    if !ready(&root, &ver) {
        bail!(
            "{} holds no boot/vmlinuz-{ver} with its modules",
            deb.display()
        );
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| dir.display().to_string())?;
    }
    fs::rename(&root, &dir).with_context(|| format!("moving the kernel to {}", dir.display()))?;
    fs::remove_dir_all(&work).with_context(|| work.display().to_string())?;
    // Older versions are of no use any more.
    for e in fs::read_dir(&cache)?.flatten() {
        if e.path() != dir && e.path().is_dir() {
            fs::remove_dir_all(e.path()).with_context(|| e.path().display().to_string())?;
        }
    }
    println!("xtask: guest kernel ready: {}", dir.display());
    Ok(dir)
}

/// A module's name as modules.dep and `depends=` spell it.
fn module_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.split(".ko")
        .next()
        .unwrap_or_default()
        .replace('-', "_")
}

/// Writes `modules.dep` in `moddir` from the modules' `.modinfo`, unless
/// it exists. Compressed modules (`.ko.xz`, `.ko.zst`) cannot be read
/// here: then `depmod` does it, if kmod is installed.
fn write_modules_dep(moddir: &Path) -> Result<()> {
    let dep = moddir.join("modules.dep");
    if dep.exists() {
        return Ok(());
    }
    let mut files = Vec::new();
    walk(&moddir.join("kernel"), &mut files)?;
    if files.iter().any(|p| !p.to_string_lossy().ends_with(".ko")) {
        return depmod(moddir);
    }
    let by_name: BTreeMap<String, &PathBuf> = files.iter().map(|p| (module_name(p), p)).collect();
    let rel = |p: &Path| {
        p.strip_prefix(moddir)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut text = String::new();
    for (name, path) in &by_name {
        let elf = fs::read(path).with_context(|| path.display().to_string())?;
        let depends = modinfo_depends(&elf)
            .with_context(|| format!("{name}: no .modinfo section in {}", path.display()))?;
        text.push_str(&rel(path));
        text.push(':');
        for d in depends {
            let d = d.replace('-', "_");
            let target = by_name
                .get(&d)
                .with_context(|| format!("{name} depends on {d}, which is not in the package"))?;
            text.push(' ');
            text.push_str(&rel(target));
        }
        text.push('\n');
    }
    fs::write(&dep, text).with_context(|| dep.display().to_string())
}

fn depmod(moddir: &Path) -> Result<()> {
    let ver = moddir
        .file_name()
        .context("module directory without a name")?
        .to_string_lossy()
        .into_owned();
    let base = moddir
        .ancestors()
        .nth(3)
        .context("module directory not under lib/modules")?;
    let status = Command::new("depmod")
        .arg("-b")
        .arg(base)
        .arg(&ver)
        .status()
        .context("compressed kernel modules need depmod (Debian package kmod)")?;
    if !status.success() {
        bail!("depmod -b {} {ver} failed with {status}", base.display());
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = e?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.to_string_lossy().contains(".ko") {
            out.push(path);
        }
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?).into())
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?)).ok()
}

fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// The `depends=` list of a kernel module (64-bit little-endian ELF), from
/// its `.modinfo` section of NUL-separated `key=value` strings. `None`
/// when the file is no such ELF or has no `.modinfo`.
pub fn modinfo_depends(elf: &[u8]) -> Option<Vec<String>> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = u64_at(elf, 0x28)?;
    let shentsize = u16_at(elf, 0x3a)?;
    let shnum = u16_at(elf, 0x3c)?;
    let shstrndx = u16_at(elf, 0x3e)?;
    let section = |i: usize| -> Option<(usize, &[u8])> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(elf, h)?;
        let off = u64_at(elf, h + 0x18)?;
        let size = u64_at(elf, h + 0x20)?;
        Some((name, elf.get(off..off.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx)?;
    let modinfo = (0..shnum).find_map(|i| {
        let (name, data) = section(i)?;
        let rest = names.get(name..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        (&rest[..end] == b".modinfo").then_some(data)
    })?;
    let depends = modinfo
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"depends="))
        .unwrap_or_default();
    Some(
        String::from_utf8_lossy(depends)
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_package_is_read_from_apt_cache_depends() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            parse_depends(out).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        let alt = "linux-image-amd64\n |Depends: linux-image-6.12.9-amd64\n  Depends: <linux-image-6.12.9-amd64-unsigned>\n  Recommends: firmware-linux-free\n";
        assert_eq!(
            parse_depends(alt).as_deref(),
            Some("linux-image-6.12.9-amd64")
        );
        assert_eq!(
            parse_depends("linux-image-amd64\n  Recommends: apparmor\n"),
            None
        );
        assert_eq!(parse_depends("foo\n  Depends: linux-image-amd64\n"), None);
    }

    #[test]
    fn the_version_is_the_package_name_without_prefix() {
        assert_eq!(
            version_of("linux-image-6.1.0-57-amd64"),
            Some("6.1.0-57-amd64")
        );
        assert_eq!(
            version_of("linux-image-6.1.0-57-amd64-unsigned"),
            Some("6.1.0-57-amd64")
        );
        assert_eq!(version_of("linux-image-amd64"), None);
        assert_eq!(version_of("linux-headers-6.1.0-57-amd64"), None);
    }

    #[test]
    fn module_names_use_underscores() {
        assert_eq!(
            module_name(Path::new("kernel/drivers/ata/pata-acpi.ko")),
            "pata_acpi"
        );
        assert_eq!(module_name(Path::new("a/virtio_blk.ko.xz")), "virtio_blk");
    }

    /// A minimal ELF64 LE file: null section, `.modinfo`, `.shstrtab`.
    fn elf(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let modinfo_off = f.len();
        f.extend_from_slice(modinfo);
        let strtab_off = f.len();
        f.extend_from_slice(shstrtab);
        while !f.len().is_multiple_of(8) {
            f.push(0);
        }
        let shoff = f.len();
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        for (name, off, size) in [
            (0u32, 0usize, 0usize),
            (1, modinfo_off, modinfo.len()),
            (10, strtab_off, shstrtab.len()),
        ] {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        }
        f
    }

    #[test]
    fn depends_are_read_from_modinfo() {
        let m = elf(b"license=GPL\0depends=libahci,libata\0retpoline=Y\0name=ahci\0");
        assert_eq!(
            modinfo_depends(&m),
            Some(vec!["libahci".to_owned(), "libata".to_owned()])
        );
        let none = elf(b"license=GPL\0depends=\0name=libata\0");
        assert_eq!(modinfo_depends(&none), Some(vec![]));
        assert_eq!(modinfo_depends(b"not an elf at all"), None);
        assert_eq!(modinfo_depends(&m[..80]), None);
    }

    #[test]
    fn modules_dep_is_written_from_the_modules() {
        let dir = std::env::temp_dir().join(format!("xtask-moddep-{}", std::process::id()));
        let ata = dir.join("kernel/drivers/ata");
        fs::create_dir_all(&ata).expect("mkdir");
        fs::write(ata.join("ahci.ko"), elf(b"depends=libahci,libata\0")).expect("ahci");
        fs::write(ata.join("libahci.ko"), elf(b"depends=libata\0")).expect("libahci");
        fs::write(ata.join("libata.ko"), elf(b"depends=\0")).expect("libata");
        write_modules_dep(&dir).expect("modules.dep");
        let dep = fs::read_to_string(dir.join("modules.dep")).expect("read");
        assert_eq!(
            dep,
            "kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko\n\
             kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko\n\
             kernel/drivers/ata/libata.ko:\n"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
