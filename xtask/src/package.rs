//! `cargo xtask package`: the Debian package `kowabunga` (a `.deb` built
//! with `dpkg-deb --build --root-owner-group`, no cargo-deb needed).
//!
//! | installed as | from |
//! |---|---|
//! | `/usr/sbin/kowabungad`, `/usr/bin/kowabunga` | [`BINARIES`], each when its source exists |
//! | `/lib/systemd/system/kowabungad.service` | `packaging/kowabungad.service` |
//! | `/etc/kowabunga/kowabungad.yaml` (conffile) | `packaging/kowabungad.yaml` |
//! | `/usr/share/doc/kowabunga/examples/*.yaml` | [`EXAMPLES`] |
//! | `/usr/share/doc/kowabunga/<bin>.help.txt` | each binary's `--help` (the man page substitute) |
//! | `/usr/share/doc/kowabunga/README.md`, `copyright` | the workspace README, the license |
//!
//! `Depends:` lists the packages of the shared libraries the binaries link
//! (`ldd`, then `dpkg -S`), each at least the build host's upstream
//! version; `Recommends: nftables` (Kawaii's kernel backstop);
//! `Suggests:` strongSwan's charon (the IPsec role). The version is the
//! workspace's. The result is `target/debian/kowabunga_<version>_<arch>.deb`.
//!
//! The package does not start the daemon: the configuration must be edited
//! first (`systemctl enable --now kowabungad`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// The Debian package name.
pub const PACKAGE: &str = "kowabunga";

/// The variable through which `cargo xtask test` hands the `.deb` it built
/// to the package test.
pub const DEB_ENV: &str = "KOWABUNGA_DEB";

/// One binary of the package.
#[derive(Debug)]
pub struct Binary {
    /// Cargo binary name (in `kowabunga-control`).
    pub name: &'static str,
    /// Its source, relative to the workspace root: the binary is packaged
    /// only when this file exists.
    pub source: &'static str,
    /// Directory it is installed in, without the leading `/`.
    pub dir: &'static str,
}

/// The binaries, in install order. Adding one is one line.
pub const BINARIES: &[Binary] = &[
    Binary {
        name: "kowabungad",
        source: "control/src/bin/kowabungad.rs",
        dir: "usr/sbin",
    },
    Binary {
        name: "kowabunga",
        source: "control/src/bin/kowabunga.rs",
        dir: "usr/bin",
    },
];

/// Example configurations shipped under `/usr/share/doc/kowabunga/examples/`.
pub const EXAMPLES: &[&str] = &[
    "control/examples/kawaii-lab.yaml",
    "control/examples/konvey-lab.yaml",
];

/// Packages the daemon can use but does not need on every node.
pub const RECOMMENDS: &str = "nftables";
/// Packages of optional roles.
pub const SUGGESTS: &str = "strongswan-charon, strongswan-swanctl";

/// The Cargo profile the binaries are built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// `--release` (what ships).
    Release,
    /// The debug profile: no extra build after `cargo build` (tests).
    Dev,
}

impl Profile {
    /// The directory under `target/`.
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "debug",
        }
    }

    /// The `cargo build --profile` value.
    pub fn cargo_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "dev",
        }
    }
}

/// The binaries whose source exists under `root`.
pub fn present(root: &Path) -> Vec<&'static Binary> {
    BINARIES
        .iter()
        .filter(|b| root.join(b.source).is_file())
        .collect()
}

/// The `DEBIAN/control` text.
pub fn control_file(version: &str, arch: &str, installed_kib: u64, depends: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Package: {PACKAGE}");
    let _ = writeln!(out, "Version: {version}");
    let _ = writeln!(out, "Architecture: {arch}");
    let _ = writeln!(
        out,
        "Maintainer: Kowabunga-rs developers <kowabunga@example.invalid>"
    );
    let _ = writeln!(out, "Installed-Size: {installed_kib}");
    if !depends.is_empty() {
        let _ = writeln!(out, "Depends: {}", depends.join(", "));
    }
    let _ = writeln!(out, "Recommends: {RECOMMENDS}");
    let _ = writeln!(out, "Suggests: {SUGGESTS}");
    let _ = writeln!(out, "Section: net");
    let _ = writeln!(out, "Priority: optional");
    let _ = writeln!(
        out,
        "Description: Kowabunga node daemon: XDP gateway, load balancer, DNS"
    );
    let _ = writeln!(
        out,
        " kowabungad runs a Kowabunga network node: Kawaii (NAT gateway and firewall\n in XDP), Konvey (XDP load balancer), Kiwi (DNS), VRRP failover and IPsec\n peering through strongSwan's charon. It runs under systemd (Type=notify,\n watchdog) and reloads its YAML configuration on SIGHUP."
    );
    out
}

/// The library paths of an `ldd` output (`name => /path (0x...)` and
/// `/path (0x...)` lines; the vDSO has no path).
pub fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => l,
            };
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The package of a `dpkg -S` line (`libelf1:amd64: /usr/lib/...`).
pub fn dpkg_s_package(line: &str) -> Option<String> {
    let (pkg, _) = line.split_once(": ")?;
    let pkg = pkg.split(',').next()?.trim();
    let name = pkg.split(':').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The upstream part of a Debian version (`2.36-9+deb12u13` -> `2.36`,
/// epoch kept).
pub fn upstream_version(version: &str) -> &str {
    version.rsplit_once('-').map_or(version, |(up, _)| up)
}

fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `Depends:` entries for the shared libraries `binaries` link.
fn depends(binaries: &[PathBuf]) -> Result<Vec<String>> {
    let mut libs = BTreeSet::new();
    for bin in binaries {
        let text = output(
            Command::new("ldd").arg(bin),
            &format!("ldd {}", bin.display()),
        )?;
        libs.extend(ldd_paths(&text));
    }
    let mut packages = BTreeSet::new();
    for lib in &libs {
        // Merged /usr: dpkg knows the path it shipped, /lib or /usr/lib.
        let real = fs::canonicalize(lib).unwrap_or_else(|_| lib.clone());
        let found = [lib.clone(), real]
            .iter()
            .find_map(|p| output(Command::new("dpkg").arg("-S").arg(p), "dpkg -S").ok());
        let alt = lib
            .strip_prefix("/usr")
            .ok()
            .map(|p| Path::new("/").join(p));
        let found = found.or_else(|| {
            alt.and_then(|p| output(Command::new("dpkg").arg("-S").arg(p), "dpkg -S").ok())
        });
        let Some(line) = found else {
            bail!("no Debian package ships {} (dpkg -S)", lib.display());
        };
        let pkg = dpkg_s_package(line.lines().next().unwrap_or(""))
            .with_context(|| format!("dpkg -S {}: {line}", lib.display()))?;
        packages.insert(pkg);
    }
    let mut out = Vec::new();
    for pkg in packages {
        let version = output(
            Command::new("dpkg-query").args(["-W", "-f=${Version}", &pkg]),
            "dpkg-query",
        )?;
        out.push(format!("{pkg} (>= {})", upstream_version(version.trim())));
    }
    Ok(out)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn du_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += du_kib(&entry.path())?;
        } else {
            total += meta.len().div_ceil(1024);
        }
    }
    Ok(total)
}

/// Stages the package tree under `target/debian/` from binaries already
/// built in `target/<profile>/` and builds the `.deb`; returns its path.
///
/// # Errors
/// A missing file, `ldd`/`dpkg` failures, or `dpkg-deb` failing.
pub fn build_deb(root: &Path, target: &Path, profile: Profile) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(
        Command::new("dpkg").arg("--print-architecture"),
        "dpkg --print-architecture",
    )?;
    let arch = arch.trim();
    let out_dir = target.join("debian");
    let stage = out_dir.join(format!("{PACKAGE}_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let doc = stage.join("usr/share/doc").join(PACKAGE);

    let mut built = Vec::new();
    for bin in present(root) {
        let from = target.join(profile.dir()).join(bin.name);
        ensure!(from.is_file(), "{} was not built", from.display());
        copy(&from, &stage.join(bin.dir).join(bin.name), 0o755)?;
        let help = output(
            Command::new(&from).arg("--help"),
            &format!("{} --help", bin.name),
        )?;
        write(&doc.join(format!("{}.help.txt", bin.name)), &help, 0o644)?;
        println!("xtask: package: /{}/{}", bin.dir, bin.name);
        built.push(from);
    }
    let packaging = root.join("packaging");
    copy(
        &packaging.join("kowabungad.service"),
        &stage.join("lib/systemd/system/kowabungad.service"),
        0o644,
    )?;
    copy(
        &packaging.join("kowabungad.yaml"),
        &stage.join("etc/kowabunga/kowabungad.yaml"),
        0o640,
    )?;
    for example in EXAMPLES {
        let from = root.join(example);
        let name = from.file_name().context("example name")?;
        copy(&from, &doc.join("examples").join(name), 0o644)?;
    }
    copy(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    write(
        &doc.join("copyright"),
        &format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: kowabunga-rs\n\nFiles: *\nCopyright: Kowabunga-rs developers\nLicense: {}\n",
            env!("CARGO_PKG_LICENSE")
        ),
        0o644,
    )?;

    let debian = stage.join("DEBIAN");
    let installed = du_kib(&stage)?;
    let deps = depends(&built)?;
    write(
        &debian.join("control"),
        &control_file(version, arch, installed, &deps),
        0o644,
    )?;
    write(
        &debian.join("conffiles"),
        "/etc/kowabunga/kowabungad.yaml\n",
        0o644,
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        copy(
            &packaging.join("debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }

    let deb = out_dir.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&stage)
        .arg(&deb)
        .status()
        .context("running dpkg-deb")?;
    ensure!(status.success(), "dpkg-deb --build failed: {status}");
    Ok(deb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibelf.so.1 => /lib/x86_64-linux-gnu/libelf.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\tlibmissing.so => not found\n";
        assert_eq!(
            ldd_paths(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libelf.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn dpkg_lines_and_versions() {
        assert_eq!(
            dpkg_s_package("libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6").as_deref(),
            Some("libc6")
        );
        assert_eq!(
            dpkg_s_package("libgcc-s1:amd64, libx: /lib/libgcc_s.so.1").as_deref(),
            Some("libgcc-s1")
        );
        assert_eq!(dpkg_s_package("garbage"), None);
        assert_eq!(upstream_version("2.36-9+deb12u13"), "2.36");
        assert_eq!(upstream_version("1:2.3-1-2"), "1:2.3-1");
        assert_eq!(upstream_version("12.2.0"), "12.2.0");
    }

    #[test]
    fn the_daemon_is_always_packaged() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("root");
        let names: Vec<&str> = present(root).iter().map(|b| b.name).collect();
        assert_eq!(names.first(), Some(&"kowabungad"));
        assert_eq!(
            names.contains(&"kowabunga"),
            root.join("control/src/bin/kowabunga.rs").is_file()
        );
        for example in EXAMPLES {
            assert!(root.join(example).is_file(), "{example}");
        }
        for file in [
            "packaging/kowabungad.service",
            "packaging/kowabungad.yaml",
            "packaging/debian/postinst",
            "packaging/debian/prerm",
            "packaging/debian/postrm",
        ] {
            assert!(root.join(file).is_file(), "{file}");
        }
    }

    #[test]
    fn control_text() {
        let text = control_file("0.1.0", "amd64", 12, &["libc6 (>= 2.36)".into()]);
        assert!(text.starts_with("Package: kowabunga\nVersion: 0.1.0\nArchitecture: amd64\n"));
        assert!(text.contains("\nDepends: libc6 (>= 2.36)\n"));
        assert!(text.contains("\nRecommends: nftables\n"));
        assert!(text.ends_with('\n'));
        // Every continuation line of the description starts with a space.
        let desc = text.split("Description:").nth(1).expect("description");
        assert!(desc.lines().skip(1).all(|l| l.starts_with(' ')));
    }
}
