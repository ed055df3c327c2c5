//! Builds the eBPF programs of `herd-agent-ebpf` for the bpf target and leaves the object in
//! `OUT_DIR`, where `src/collect/ebpf` embeds it.
//!
//! With `AYA_BUILD_SKIP=1` an empty object is written instead, so that `cargo check`, clippy
//! and unit tests work on a machine without bpf-linker; such an agent says so when it starts.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, bail};

const EBPF_PACKAGE: &str = "herd-agent-ebpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join(EBPF_PACKAGE);

    let skip = env::var("AYA_BUILD_SKIP")
        .is_ok_and(|value| value == "1" || value.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(&object, b"").with_context(|| format!("writing {}", object.display()))?;
        return Ok(());
    }
    if !on_path("bpf-linker") {
        bail!(
            "bpf-linker is not on PATH, so the eBPF programs cannot be built. \
             Run `cargo xtask setup` to install it, or set AYA_BUILD_SKIP=1 to build an agent \
             without eBPF programs (for checks and unit tests only)."
        );
    }
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root_dir = PathBuf::from(manifest_dir).join("..").join("agent-ebpf");
    let root_dir = root_dir.to_str().context("workspace path is not UTF-8")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
