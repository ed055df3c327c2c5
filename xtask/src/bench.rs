//! `cargo xtask bench`: benchmarks that need the real kernel; results in target/herd-bench/.

use anyhow::bail;

use crate::{
    cmd::{self, step},
    setup,
};

pub fn run() -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the benchmarks load eBPF programs: run them as root");
    }
    let output = cmd::workspace_root().join("target/herd-bench/syscall-cost.md");
    step("syscall cost with and without the probes");
    cmd::run(
        cmd::cargo()
            .args(["bench", "-p", "herd-agent", "--bench", "syscall_cost", "--"])
            .arg("--output")
            .arg(&output),
    )?;
    step(&format!("results in {}", output.display()));
    Ok(())
}
