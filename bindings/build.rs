//! Generates the Rust view of `ebpf/include/kw_abi.h` with bindgen, so the
//! kernel/user ABI has exactly one source.

use std::{env, path::PathBuf};

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let header = manifest.join("../ebpf/include/kw_abi.h");
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");

    let bindings = match bindgen::Builder::default()
        .header(header.to_string_lossy())
        .use_core()
        .allowlist_type("kw_.*")
        .allowlist_type("kv_.*")
        .allowlist_var("KW_.*")
        .allowlist_var("KV_.*")
        .constified_enum_module("kw_.*")
        .derive_default(true)
        .derive_debug(true)
        .derive_copy(true)
        .derive_eq(true)
        .derive_hash(true)
        .layout_tests(true)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "error: bindgen could not read ebpf/include/kw_abi.h ({e}); \
                 install Debian's clang-19 and libclang1-19 (`cargo xtask deps` does it)"
            );
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kw_abi.rs");
    bindings
        .write_to_file(out)
        .expect("write generated bindings");
}
