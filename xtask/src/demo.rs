//! `cargo xtask demo`: the agent on this host for a bounded time, beside a workload in a
//! cgroup the demo makes, so that one cgroup stands out in the agent's table.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use herd_tests::cgroup::OwnedCgroup;

use crate::{
    cmd::{self, step},
    setup,
};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long the agent watches, in seconds.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
}

const DEMO_CGROUP: &str = "herd-demo";

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the demo loads eBPF programs and makes a cgroup: run it as root");
    }
    step("building the agent and the demo workload (release)");
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "herd-agent",
        "-p",
        "herd-tests",
        "--bins",
    ]))?;
    let release = cmd::workspace_root().join("target/release");

    let mount = cgroup2_mount()?;
    let cgroup = OwnedCgroup::at(&mount, DEMO_CGROUP)?;
    step(&format!(
        "starting a workload in cgroup {} (~1 in 10 of its syscalls fails)",
        cgroup.path().display()
    ));
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} timed --seconds {} --fail-every 10",
        cgroup.path().display(),
        release.join("herd-load").display(),
        args.seconds + 2
    );
    let load = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the demo workload")?;

    step(&format!(
        "running herd-agent for {} s; /{DEMO_CGROUP} should lead the table",
        args.seconds
    ));
    let agent = cmd::run(
        Command::new(release.join("herd-agent"))
            .args(["--interval", "2s", "--top", "8"])
            .args(["--duration", &format!("{}s", args.seconds)]),
    );
    let load = load
        .wait_with_output()
        .context("waiting for the demo workload")?;
    agent?;
    step("what the workload counted itself, to compare with the agent's figures:");
    eprint!("    {}", String::from_utf8_lossy(&load.stdout));
    drop(cgroup);
    step("demo cgroup removed");
    Ok(())
}

fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let out = Command::new("findmnt")
        .args([
            "--types",
            "cgroup2",
            "--noheadings",
            "--first-only",
            "--output",
            "TARGET",
        ])
        .output()
        .context("running findmnt")?;
    let target = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if target.is_empty() {
        bail!("no cgroup2 file system is mounted; Herd needs the unified hierarchy");
    }
    Ok(PathBuf::from(target))
}
