//! `cargo xtask bench`: the benchmarks (most need the real kernel); results in target/herd-bench/.

use anyhow::bail;

use crate::{
    cmd::{self, step},
    setup,
};

pub fn run() -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the benchmarks load eBPF programs and make cgroups: run them as root");
    }
    if let Some(pid) = running("herd-agent") {
        bail!(
            "herd-agent is running (pid {pid}): its probes would be in every measurement; \
             stop it first"
        );
    }
    // bpftrace is the general-purpose tool the probe cost is compared with.
    herd_tests::lab::ensure_packages(&["bpftrace"])?;
    let root = cmd::workspace_root();
    let results = root.join("target/herd-bench");
    step("building the agent (release)");
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "herd-agent"]))?;
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "herd-tests",
        "--bin",
        "herd-syscall-load",
    ]))?;

    step("syscall cost with and without the probes");
    cmd::run(
        cmd::cargo()
            .args(["bench", "-p", "herd-agent", "--bench", "syscall_cost", "--"])
            .arg("--output")
            .arg(results.join("syscall-cost.md")),
    )?;
    step("collection cost and agent memory with 200 containers");
    cmd::run(
        cmd::cargo()
            .args(["bench", "-p", "herd-agent", "--bench", "collect_cost", "--"])
            .arg("--output")
            .arg(results.join("collect-cost.md"))
            .arg("--agent")
            .arg(root.join("target/release/herd-agent")),
    )?;
    step("API latency and state memory with 200 containers and an hour of history");
    cmd::run(
        cmd::cargo()
            .args(["bench", "-p", "herd-agent", "--bench", "api_cost", "--"])
            .arg("--output")
            .arg(results.join("api-cost.md")),
    )?;
    step("the detector's window and memory per container with 200 containers");
    cmd::run(
        cmd::cargo()
            .args(["bench", "-p", "herd-agent", "--bench", "detect_cost", "--"])
            .arg("--output")
            .arg(results.join("detect-cost.md")),
    )?;
    step("the agent's own CPU under a syscall storm");
    cmd::run(
        cmd::cargo()
            .args(["bench", "-p", "herd-agent", "--bench", "storm_cost", "--"])
            .arg("--output")
            .arg(results.join("storm-cost.md"))
            .arg("--agent")
            .arg(root.join("target/release/herd-agent"))
            .arg("--load")
            .arg(root.join("target/release/herd-syscall-load")),
    )?;
    step("the cluster aggregator with 50, 500 and 5,000 nodes of 30 pods");
    cmd::run(
        cmd::cargo()
            .args([
                "bench",
                "-p",
                "herd-aggregator",
                "--bench",
                "cluster_cost",
                "--",
            ])
            .arg("--output")
            .arg(results.join("cluster-cost.md")),
    )?;
    step(&format!("results in {}", results.display()));
    Ok(())
}

/// The pid of a running process named `name`, if any.
fn running(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == name).then_some(pid)
        })
}
