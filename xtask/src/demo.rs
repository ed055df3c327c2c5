//! `cargo xtask demo`: the agent on this host, for real, in two short acts.
//!
//! 1. Syscalls per cgroup: a workload in a cgroup the demo makes stands out in the agent's
//!    table, beside its own count of what it did.
//! 2. The herd: five replicas of one Deployment run in the lab (containerd over CRI); after
//!    the detector's warm-up one replica starts hogging its CPU, and the agent names it.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use herd_tests::{
    cgroup::OwnedCgroup,
    lab::{Fault, FaultKind, Lab, LabSpec, Workload},
};

use crate::{
    cmd::{self, step},
    setup,
};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long the agent watches the syscall workload, in seconds.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Only the first act (no lab).
    #[arg(long)]
    skip_herd: bool,
}

const DEMO_CGROUP: &str = "herd-demo";
/// The herd act: 3 s windows; the detector judges a container after 6 windows.
const WINDOW_SECS: u64 = 3;
const FAULT_AFTER_SECS: u64 = 30;
const HERD_SECS: u64 = 60;
const FAULTY_REPLICA: u32 = 2;

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the demo loads eBPF programs, makes cgroups and runs containers: run it as root");
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
    syscalls_act(args, &release)?;
    if !args.skip_herd {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(herd_act(&release))?;
    }
    Ok(())
}

fn syscalls_act(args: &DemoArgs, release: &Path) -> anyhow::Result<()> {
    let mount = cgroup2_mount()?;
    let cgroup = OwnedCgroup::at(&mount, DEMO_CGROUP)?;
    step(&format!(
        "act 1: a workload in cgroup {} makes syscalls, ~1 in 10 failing",
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
            .args(["--interval", "2s", "--top", "5"])
            .args(["--duration", &format!("{}s", args.seconds)])
            .env("HERD_LOG", "warn,herd::table=info"),
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

async fn herd_act(release: &Path) -> anyhow::Result<()> {
    step(&format!(
        "act 2: five replicas of shop/web in the lab; replica {FAULTY_REPLICA} starts a CPU \
         hog after {FAULT_AFTER_SECS} s"
    ));
    // Every replica runs a light, steady load; the hog is one busy stress-ng worker.
    let spec = LabSpec::new().workload(
        Workload::deployment("web")
            .namespace("shop")
            .replicas(5)
            .cpu_millis(500)
            .memory_mib(64)
            .command([
                "stress-ng",
                "--cpu",
                "1",
                "--cpu-load",
                "5",
                "--timeout",
                "0",
                "--quiet",
            ])
            .fault(
                Fault::new(FAULTY_REPLICA, FaultKind::CpuHog)
                    .after_secs(FAULT_AFTER_SECS)
                    .for_secs(HERD_SECS),
            ),
    );
    let lab = Lab::up(&spec).await?;
    let faulty = lab
        .pods()
        .await?
        .into_iter()
        .find(|pod| {
            pod.annotations.get("herd.lab/replica").map(String::as_str)
                == Some(&FAULTY_REPLICA.to_string())
        })
        .context("the faulty replica's pod")?;
    step(&format!(
        "running herd-agent for {HERD_SECS} s with {WINDOW_SECS} s windows; it should name \
         pod {}",
        faulty.name
    ));
    let mut agent = Command::new(release.join("herd-agent"))
        .args(["--interval", &format!("{WINDOW_SECS}s")])
        .args(["--discovery-interval", "2s", "--min-age", "0s"])
        .args(["--duration", &format!("{HERD_SECS}s")])
        .arg("--runtime-socket")
        .arg(lab.socket())
        .env(
            "HERD_LOG",
            "warn,herd::finding=info,herd_agent::cmd::run=info",
        )
        .stderr(Stdio::piped())
        .spawn()
        .context("starting herd-agent")?;
    let stderr = agent.stderr.take().context("agent stderr")?;
    let faulty_name = faulty.name.clone();
    // The agent's log is shown as it comes; findings are kept for the verdict.
    let findings = tokio::task::spawn_blocking(move || {
        let mut named = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("    {line}");
            if line.contains("herd::finding") && !line.contains("finding closed") {
                named.push(line);
            }
        }
        named
    })
    .await?;
    let status = tokio::task::spawn_blocking(move || agent.wait()).await??;
    lab.down().await?;
    anyhow::ensure!(status.success(), "herd-agent failed: {status}");
    let right = findings.iter().any(|line| line.contains(&faulty_name));
    let wrong = findings
        .iter()
        .filter(|line| !line.contains(&faulty_name))
        .count();
    match (right, wrong) {
        (true, 0) => step(&format!("the agent named {faulty_name}, and nothing else")),
        (true, n) => step(&format!(
            "the agent named {faulty_name}, and {n} other finding(s)"
        )),
        (false, _) => step(&format!(
            "the agent did not name {faulty_name} in {HERD_SECS} s"
        )),
    }
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
