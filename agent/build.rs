//! Builds the eBPF programs of `herd-agent-ebpf` for the bpf target and leaves the object in
//! `OUT_DIR`, where `src/collect/ebpf` embeds it.
//!
//! With `AYA_BUILD_SKIP=1` an empty object is written instead, so that `cargo check`, clippy
//! and unit tests work on a machine without bpf-linker; such an agent says so when it starts.
//!
//! Every cargo profile and mode (check, dev, test, release) runs this script with an `OUT_DIR`
//! of its own, and aya-build keeps the eBPF crate's target directory inside `OUT_DIR`, so each
//! would build `core` and the programs again: minutes each on a fresh machine, several times
//! in one `cargo xtask test`. `OUT_DIR/aya-build` is made a link to one directory beside the
//! workspace's profiles (`target/ebpf`), so they share one eBPF build; cargo's lock on that
//! directory keeps two builds from running in it at once.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

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
    share_ebpf_target(&out_dir)?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}

/// Links `OUT_DIR/aya-build`, where aya-build puts the eBPF crate's target directory, to
/// `<target>/ebpf`, shared by every profile. The target directory is the nearest ancestor of
/// `OUT_DIR` with cargo's `CACHEDIR.TAG`; without one, or when `OUT_DIR/aya-build` is already
/// there, nothing changes and the build stays private to this profile.
fn share_ebpf_target(out_dir: &Path) -> anyhow::Result<()> {
    let link = out_dir.join("aya-build");
    if link.symlink_metadata().is_ok() {
        return Ok(());
    }
    let Some(target) = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
    else {
        return Ok(());
    };
    let shared = target.join("ebpf");
    fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    std::os::unix::fs::symlink(&shared, &link)
        .with_context(|| format!("linking {} to {}", link.display(), shared.display()))
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
