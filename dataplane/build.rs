//! Compiles every `ebpf/*.c` into one BPF object per file in `OUT_DIR`
//! (`kawaii.o`, `xdp_pass.o`, ...), which the crate embeds with
//! `include_bytes!`.
//!
//! `kawaii.c` and `konvey.c` are compiled a second time with `-mcpu=v2`
//! (`kawaii-v2.o`, `konvey-v2.o`): the same sources, maps and behaviour in
//! different instructions (another program tag), which the upgrade tests
//! load through `KOWABUNGA_BPF_VARIANT=v2` to prove that a daemon whose
//! program differs takes over the pinned links and maps without a gap (see
//! `src/variant.rs`). They are compiled a third time with `-DKW_NO_FCACHE`
//! (`kawaii-nofcache.o`, `konvey-nofcache.o`, `KOWABUNGA_BPF_VARIANT=nofcache`):
//! without the established path's flow cache, the benches' baseline for it.
//!
//! The compiler is `$KOWABUNGA_CLANG`, default `clang-19` (Debian's package
//! of the same name); the BPF headers come from Debian's `libbpf-dev`.

use std::{
    env, fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    process::{exit, Command},
};

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ebpf = manifest.parent().unwrap_or(&manifest).join("ebpf");
    let include = ebpf.join("include");

    // Printed at the end, on success only, so that a failure shows nothing
    // but its own message (cargo echoes a failed script's stdout).
    let mut rerun = vec![
        "cargo:rerun-if-env-changed=KOWABUNGA_CLANG".to_owned(),
        format!("cargo:rerun-if-changed={}", ebpf.display()),
        format!("cargo:rerun-if-changed={}", include.display()),
    ];

    let clang = env::var("KOWABUNGA_CLANG").unwrap_or_else(|_| "clang-19".to_owned());
    let multiarch = multiarch(&env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default());
    let sys_include = format!("/usr/include/{multiarch}");

    for header in sorted_entries(&include, "h") {
        rerun.push(format!("cargo:rerun-if-changed={}", header.display()));
    }
    let sources = sorted_entries(&ebpf, "c");
    if sources.is_empty() {
        fail(&format!("no eBPF sources found in {}", ebpf.display()));
    }
    for source in sources {
        rerun.push(format!("cargo:rerun-if-changed={}", source.display()));
        let stem = source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_else(|| {
                fail(&format!(
                    "eBPF source with a non UTF-8 name: {}",
                    source.display()
                ))
            });
        let object = out_dir.join(format!("{stem}.o"));
        compile(&clang, &source, &object, &include, &sys_include, None);
        if VARIANT_SOURCES.contains(&stem) {
            // -mcpu=v2: upgrade tests; -DKW_NO_FCACHE: the benches' baseline
            for (suffix, flag) in [("v2", "-mcpu=v2"), ("nofcache", "-DKW_NO_FCACHE")] {
                let object = out_dir.join(format!("{stem}-{suffix}.o"));
                compile(&clang, &source, &object, &include, &sys_include, Some(flag));
            }
        }
        if stem == "konvey" {
            // the per-backend counters compiled out: the bench's baseline
            let object = out_dir.join("konvey-nostats.o");
            compile(
                &clang,
                &source,
                &object,
                &include,
                &sys_include,
                Some("-DKV_NO_BACKEND_STATS"),
            );
        }
    }
    for line in rerun {
        println!("{line}");
    }
}

/// Sources also built as the `-v2` variant (see the crate docs above).
const VARIANT_SOURCES: [&str; 2] = ["kawaii", "konvey"];

/// Debian multiarch triplet of a Rust target architecture.
fn multiarch(arch: &str) -> String {
    match arch {
        "x86_64" => "x86_64-linux-gnu".to_owned(),
        "aarch64" => "aarch64-linux-gnu".to_owned(),
        "x86" => "i386-linux-gnu".to_owned(),
        "arm" => "arm-linux-gnueabihf".to_owned(),
        "riscv64" => "riscv64-linux-gnu".to_owned(),
        "powerpc64" => "powerpc64le-linux-gnu".to_owned(),
        "s390x" => "s390x-linux-gnu".to_owned(),
        "loongarch64" => "loongarch64-linux-gnu".to_owned(),
        other => format!("{other}-linux-gnu"),
    }
}

/// Files of `dir` ending in `.{ext}`, sorted for a stable build order.
fn sorted_entries(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => fail(&format!("cannot read {}: {e}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn compile(
    clang: &str,
    source: &Path,
    object: &Path,
    include: &Path,
    sys_include: &str,
    extra: Option<&str>,
) {
    let output = Command::new(clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .args(extra)
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(sys_include)
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object)
        .output();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Cargo shows a failing build script's stderr verbatim.
            eprintln!("{stderr}");
            fail(&format!(
                "{clang} failed to compile {} ({}); its diagnostics are above",
                source.display(),
                out.status
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => fail(&format!(
            "{clang} not found: install Debian's clang-19 and libbpf-dev (cargo xtask deps)"
        )),
        Err(e) => fail(&format!("cannot run {clang}: {e}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}
