//! Compiles the live bench's own XDP programs (`benches/bpf/*.c`: generator,
//! sink, gateway baselines) into `OUT_DIR`, embedded by `src/live/progs.rs`.
//!
//! The compiler is `$KOWABUNGA_CLANG`, default `clang-19`, as for `ebpf/`.

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
    let bpf = manifest.join("bpf");
    let clang = env::var("KOWABUNGA_CLANG").unwrap_or_else(|_| "clang-19".to_owned());
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let sys_include = format!(
        "/usr/include/{}",
        match arch.as_str() {
            "aarch64" => "aarch64-linux-gnu".to_owned(),
            other => format!("{other}-linux-gnu"),
        }
    );
    let mut sources: Vec<PathBuf> = match fs::read_dir(&bpf) {
        Ok(e) => e
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "c"))
            .collect(),
        Err(e) => fail(&format!("cannot read {}: {e}", bpf.display())),
    };
    sources.sort();
    let mut rerun = vec![
        "cargo:rerun-if-env-changed=KOWABUNGA_CLANG".to_owned(),
        format!("cargo:rerun-if-changed={}", bpf.display()),
    ];
    for source in sources {
        rerun.push(format!("cargo:rerun-if-changed={}", source.display()));
        let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("x");
        compile(
            &clang,
            &source,
            &out_dir.join(format!("{stem}.o")),
            &sys_include,
        );
    }
    for line in rerun {
        println!("{line}");
    }
}

fn compile(clang: &str, source: &Path, object: &Path, sys_include: &str) {
    let output = Command::new(clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
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
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            fail(&format!(
                "{clang} failed to compile {} ({})",
                source.display(),
                out.status
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => fail(&format!(
            "{clang} not found: install Debian's clang-19 and libbpf-dev (cargo xtask deps bench)"
        )),
        Err(e) => fail(&format!("cannot run {clang}: {e}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}
