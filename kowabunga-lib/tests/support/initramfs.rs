//! A tiny initramfs built from Debian packages: busybox-static plus the
//! kernel modules needed to read a SATA CD-ROM and virtio disks, and an
//! `/init` that mounts the `cidata` seed, prints it on the serial console
//! between markers, reports the size of `/dev/vda`, and powers off (or, with
//! `kw_hold` on the kernel command line, prints `KOWABUNGA-TICK <n>` every
//! second forever, for live migration).
//!
//! The cpio archive (newc format) is written here, no `cpio` tool needed.

// Shared by several test binaries, each using a part.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Printed before the seed.
pub const BEGIN: &str = "KOWABUNGA-SEED-BEGIN";
/// Printed after the seed.
pub const END: &str = "KOWABUNGA-SEED-END";
/// Printed every second by a held guest, followed by a counter.
pub const TICK: &str = "KOWABUNGA-TICK";

/// Modules to load, in dependency order after resolution.
const WANTED: &[&str] = &[
    "ahci",
    "ata_piix",
    "sr_mod",
    "isofs",
    "virtio_pci",
    "virtio_blk",
];

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
i=0
while [ ! -b /dev/sr0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
mount -t iso9660 -o ro /dev/sr0 /mnt
echo KOWABUNGA-SEED-BEGIN
echo "label=$(dd if=/dev/sr0 bs=1 skip=32808 count=6 2>/dev/null)"
for f in meta-data user-data network-config; do echo "--- $f"; cat /mnt/$f; done
echo "vda-sectors=$(cat /sys/block/vda/size 2>/dev/null)"
echo KOWABUNGA-SEED-END
umount /mnt
sync
if grep -q kw_hold /proc/cmdline; then
  n=0
  while true; do n=$((n+1)); echo "KOWABUNGA-TICK $n"; sleep 1; done
fi
poweroff -f
"#;

/// Environment variable naming an unpacked kernel tree (a directory with
/// `boot/vmlinuz-VER` and `lib/modules/VER/modules.dep`), as `cargo xtask
/// test` sets it. When set, only that tree is used.
pub const KERNEL_ENV: &str = "KOWABUNGA_GUEST_KERNEL";

/// Where `cargo xtask deps test` unpacks Debian's kernel package, under the
/// target directory: `kowabunga-guest-kernel/VER/{boot,lib/modules}`.
pub const KERNEL_CACHE: &str = "kowabunga-guest-kernel";

/// How to get a guest kernel, for skip messages.
pub const KERNEL_HINT: &str = "a guest kernel (run `cargo xtask deps test`: it unpacks Debian's \
     kernel package into target/kowabunga-guest-kernel without installing it; or set \
     KOWABUNGA_GUEST_KERNEL to an unpacked tree; or a kernel in /boot)";

/// The guests' kernel and its module directory: the tree named by
/// [`KERNEL_ENV`]; else the newest in [`KERNEL_CACHE`] under the target
/// directory (`$CARGO_TARGET_DIR`, or found above this test executable);
/// else the newest in /boot.
pub fn kernel() -> Option<(PathBuf, PathBuf)> {
    if let Some(dir) = std::env::var_os(KERNEL_ENV) {
        return kernel_in(Path::new(&dir));
    }
    let mut caches: Vec<PathBuf> = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        caches.push(Path::new(&t).join(KERNEL_CACHE));
    }
    if let Ok(exe) = std::env::current_exe() {
        caches.extend(exe.ancestors().map(|a| a.join(KERNEL_CACHE)));
    }
    for cache in caches.iter().filter(|c| c.is_dir()) {
        let Ok(rd) = fs::read_dir(cache) else {
            continue;
        };
        let mut trees: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        // Newest version first.
        trees.sort();
        if let Some(k) = trees.iter().rev().find_map(|t| kernel_in(t)) {
            return Some(k);
        }
    }
    kernel_in(Path::new("/"))
}

/// The newest kernel of the tree at `root` (`/` for the installed ones):
/// `boot/vmlinuz-VER` with `lib/modules/VER/modules.dep` (or under
/// `usr/lib/modules`).
fn kernel_in(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let moddir = |ver: &str| {
        ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|m| root.join(m).join(ver))
            .find(|d| d.join("modules.dep").is_file())
    };
    let mut best: Option<String> = None;
    for e in fs::read_dir(root.join("boot")).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(ver) = name.strip_prefix("vmlinuz-") {
            if moddir(ver).is_some() && best.as_deref().is_none_or(|b| ver > b) {
                best = Some(ver.to_owned());
            }
        }
    }
    let ver = best?;
    Some((
        root.join("boot").join(format!("vmlinuz-{ver}")),
        moddir(&ver)?,
    ))
}

/// Modules (name -> path) of `WANTED` and their dependencies, dependencies
/// first.
fn modules(moddir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let dep =
        fs::read_to_string(moddir.join("modules.dep")).map_err(|e| format!("modules.dep: {e}"))?;
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let name_of = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_end_matches(".ko")
                    .replace('-', "_")
            })
            .unwrap_or_default()
    };
    for line in dep.lines() {
        let Some((m, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            name_of(m),
            (m.to_owned(), rest.split_whitespace().map(name_of).collect()),
        );
    }
    let mut order: Vec<String> = Vec::new();
    fn visit(m: &str, deps: &BTreeMap<String, (String, Vec<String>)>, order: &mut Vec<String>) {
        if order.iter().any(|o| o == m) {
            return;
        }
        if let Some((_, ds)) = deps.get(m) {
            for d in ds {
                visit(d, deps, order);
            }
            order.push(m.to_owned());
        }
    }
    for m in WANTED {
        visit(m, &deps, &mut order);
    }
    Ok(order
        .into_iter()
        .filter_map(|m| deps.get(&m).map(|(p, _)| (m.clone(), moddir.join(p))))
        .collect())
}

struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

/// Writes the initramfs to `dest`.
pub fn build(dest: &Path, moddir: &Path) -> Result<(), String> {
    let busybox = fs::read("/bin/busybox").map_err(|e| format!("/bin/busybox: {e}"))?;
    let mut c = Cpio {
        out: Vec::new(),
        ino: 0,
    };
    for d in ["bin", "dev", "proc", "sys", "mnt", "lib", "lib/modules"] {
        c.entry(d, 0o040755, (0, 0), &[]);
    }
    c.entry("dev/console", 0o020600, (5, 1), &[]);
    c.entry("bin/busybox", 0o100755, (0, 0), &busybox);
    c.entry("init", 0o100755, (0, 0), INIT.as_bytes());
    let mods = modules(moddir)?;
    if mods.is_empty() {
        return Err("no kernel module found for the CD-ROM".into());
    }
    let mut order = String::new();
    for (name, path) in &mods {
        let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        c.entry(&format!("lib/modules/{name}.ko"), 0o100644, (0, 0), &data);
        order.push_str(name);
        order.push('\n');
    }
    c.entry("lib/modules/order", 0o100644, (0, 0), order.as_bytes());
    c.entry("TRAILER!!!", 0, (0, 0), &[]);
    fs::write(dest, &c.out).map_err(|e| format!("{}: {e}", dest.display()))
}
