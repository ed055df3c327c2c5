//! `cargo xtask setup`: installs exactly what Herd needs on a fresh machine, idempotently.
//! Each piece is checked first and installed only when missing.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd::{self, step};

/// Debian packages for building bpf-linker against the system LLVM.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// Debian packages the unit tests run: the TLS tests make their certificates with `openssl`.
const TEST_PACKAGES: &[&str] = &["openssl"];
/// The bpf-linker release that matches the aya 0.14 family and LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
pub const NIGHTLY: &str = "nightly";
/// The cargo-fuzz release `cargo xtask fuzz` (and so `cargo xtask test`) runs the fuzz
/// targets with.
const CARGO_FUZZ_VERSION: &str = "0.13.1";

pub fn run() -> anyhow::Result<()> {
    herd_tests::lab::ensure_packages(BUILD_PACKAGES)?;
    herd_tests::lab::ensure_packages(TEST_PACKAGES)?;
    rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    kubectl()?;
    step("setup complete");
    Ok(())
}

/// The eBPF crate builds with nightly and `-Z build-std=core`, which needs rust-src.
fn rust_src() -> anyhow::Result<()> {
    let has_nightly = cmd::succeeds(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-V"]));
    if !has_nightly {
        step("installing the nightly Rust toolchain");
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))
        .context("the eBPF programs need a nightly toolchain and rustup could not install one")?;
    }
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .context("cannot run rustup")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == "rust-src")
    {
        step("rust-src for nightly present");
        return Ok(());
    }
    step("installing rust-src for nightly");
    cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &version {
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains(BPF_LINKER_VERSION) {
            step(&format!("bpf-linker {BPF_LINKER_VERSION} present"));
            return Ok(());
        }
    }
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes, once)"
    ));
    cmd::run(
        cmd::cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )?;
    if !cmd::succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but is not on PATH; add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// cargo-fuzz, for the fuzz targets of `tests/fuzz/` (built with the nightly toolchain).
fn cargo_fuzz() -> anyhow::Result<()> {
    let version = Command::new("cargo").args(["fuzz", "--version"]).output();
    if let Ok(out) = &version
        && out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION)
    {
        step(&format!("cargo-fuzz {CARGO_FUZZ_VERSION} present"));
        return Ok(());
    }
    step(&format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} (a few minutes, once)"
    ));
    cmd::run(cmd::cargo().args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
}

/// `kubectl kustomize` builds `deploy/` in the manifests' tests: any kubectl on PATH will do
/// (its kustomize reads what Debian's older one reads), else Debian's is installed.
fn kubectl() -> anyhow::Result<()> {
    if cmd::succeeds(Command::new("kubectl").args(["kustomize", "--help"])) {
        step("kubectl present");
        return Ok(());
    }
    herd_tests::lab::ensure_packages(&["kubernetes-client"])?;
    Ok(())
}
