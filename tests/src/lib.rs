//! Fixtures for Herd's end-to-end tests: real cgroups and workloads that make a known number
//! of syscalls. These tests need root; `cargo xtask test` runs them one at a time.

use std::path::PathBuf;

use anyhow::Context as _;

pub mod agent;
pub mod aggregator;
pub mod certs;
pub mod cgroup;
pub mod dataset;
pub mod eval;
pub mod export;
pub mod kernel_fixtures;
pub mod lab;
pub mod resource_load;
pub mod stray;
pub mod syscall_load;

/// A binary of the workspace built in the same profile as the running test: test binaries
/// live in `target/<profile>/deps`, binaries in `target/<profile>`.
pub fn built_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("unexpected test binary location")?
        .join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: build it first (`cargo build --bins`, as `cargo xtask test` does)",
        binary.display()
    );
    Ok(binary)
}

/// Fails the calling test with a plain reason when it does not run as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and makes cgroups, so it needs root; \
         run it through `cargo xtask test` as root"
    );
}
