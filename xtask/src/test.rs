//! `cargo xtask test`: the whole suite, as CI runs it: fmt, clippy, unit tests, a short run
//! of each fuzz target, root integration tests.

use anyhow::bail;

use crate::{
    cmd::{self, step},
    fuzz, setup,
};

/// Crates with unit tests that need no root.
const UNIT: &[&str] = &[
    "herd-agent",
    "herd-agent-common",
    "herd-detect",
    "herd-aggregator",
    "herd-proto",
    "xtask",
];

pub fn run() -> anyhow::Result<()> {
    setup::run()?;
    step("format");
    cmd::run(cmd::cargo().args(["fmt", "--all", "--check"]))?;
    step("clippy on the user-space crates");
    cmd::run(cmd::cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    step("unit tests");
    let mut unit = cmd::cargo();
    unit.arg("test");
    for package in UNIT {
        unit.args(["-p", package]);
    }
    cmd::run(&mut unit)?;
    step("fuzz targets, briefly each");
    fuzz::run_targets(fuzz::TARGETS, fuzz::CI_SECONDS, fuzz::Build::Dev)?;
    if !cmd::is_root() {
        bail!("the integration tests load eBPF programs and make cgroups: run them as root");
    }
    step("integration tests (root, one at a time)");
    cmd::run(cmd::cargo().args(["build", "--bins"]))?;
    cmd::run(cmd::cargo().args(["test", "-p", "herd-tests", "--", "--test-threads=1"]))?;
    step("all tests passed");
    Ok(())
}
