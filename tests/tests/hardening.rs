//! The agent through faults and its end, against the lab: its `--record` disk (a 64 KiB
//! tmpfs) fills up, and it goes on scoring windows and sending summaries, warned once, with
//! the file it left a valid frame file; then SIGTERM, and it exits cleanly within 5 s, the
//! aggregator has every summary it made, and none of its eBPF programs is left loaded. Root
//! only; it takes the lab.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use herd_agent::replay::{FrameReader, replay};
use herd_proto::herd::v1 as pb;
use herd_tests::{
    agent::AgentProcess,
    aggregator::{AggregatorProcess, eventually},
    built_binary, eval,
    lab::{self, Lab, LabSpec, Workload},
    require_root,
};

const NAMESPACE: &str = "hardening";
const NODE: &str = "hardening-node";
/// What the brief of a clean stop allows: a pod's termination grace is longer, but the
/// DaemonSet's rolling update waits on it.
const STOPS_WITHIN: Duration = Duration::from_secs(5);
const DISK_FULL: &str = "--record: writing feature frames";

#[test]
fn a_full_record_disk_costs_frames_only_and_sigterm_ends_cleanly() -> anyhow::Result<()> {
    require_root();
    lab::run_test(scenario())
}

/// A tmpfs mounted for the test, unmounted when dropped, pass or fail.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("herd-test-record")
            .arg(dir)
            .status()
            .context("running mount")?;
        ensure!(
            status.success(),
            "mount tmpfs on {}: {status}",
            dir.display()
        );
        Ok(Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the agent may still hold the file open when a failing test unwinds.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn scenario() -> anyhow::Result<()> {
    let workload = Workload::deployment("web")
        .namespace(NAMESPACE)
        .replicas(3)
        .cpu_millis(200)
        .memory_mib(32)
        .command(eval::STEADY_LOAD.iter().copied());
    let lab = Lab::up(&LabSpec::new().workload(workload)).await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-hardening-test");
    // A mount an interrupted run left behind.
    let _ = Command::new("umount")
        .arg("-l")
        .arg(dir.join("record"))
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let record = Tmpfs::mount(&dir.join("record"), "64k")?;
    let frames = record.0.join("frames.csv");

    let aggregator =
        AggregatorProcess::start(None, &dir, &["--window", "1s", "--duration", "10m"]).await?;
    let mut agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir,
        &[
            "--interval",
            "1s",
            "--discovery-interval",
            "1s",
            "--min-age",
            "1s",
            "--node-name",
            NODE,
            "--runtime-socket",
            &lab.socket().display().to_string(),
            "--aggregator",
            &format!("unix://{}", aggregator.socket().display()),
            "--record",
            &frames.display().to_string(),
            // One file that fills the disk, rather than rotations that free it.
            "--record-max-size",
            "0",
            "--duration",
            "10m",
        ],
    )
    .await?;

    // A few KiB a window: the 64 KiB are full within a minute.
    eventually(
        Duration::from_secs(120),
        "the --record disk fills up",
        async || Ok(agent.log_text().contains(DISK_FULL).then_some(())),
    )
    .await
    .with_context(|| agent.log_text())?;
    let mut client = agent.client().await?;
    let windows = |info: pb::GetInfoResponse| info.windows;
    let full_at = windows(client.get_info(pb::GetInfoRequest {}).await?.into_inner());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = windows(client.get_info(pb::GetInfoRequest {}).await?.into_inner());
    ensure!(agent.running(), "the agent stopped:\n{}", agent.log_text());
    ensure!(
        later >= full_at + 3,
        "windows go on with the disk full: {full_at} then {later} six seconds later"
    );
    let log = agent.log_text();
    ensure!(
        log.matches(DISK_FULL).count() == 1,
        "the full disk is warned about once:\n{log}"
    );
    // The windows cut off when the disk filled left no partial row behind.
    let read = replay(
        herd_agent::features::detect_config(&herd_agent::features::names()),
        None,
        FrameReader::new(frames.display().to_string(), std::fs::File::open(&frames)?)?,
        std::io::sink(),
        "-",
    )
    .context("replaying the frames left on the full disk")?;
    ensure!(
        read.windows > 0,
        "the full disk holds whole windows: {read:?}"
    );

    // SIGTERM: a clean exit within the limit, every summary delivered, no program left.
    let programs = program_ids(agent.pid())?;
    ensure!(!programs.is_empty(), "the agent holds its eBPF programs");
    let asked = Instant::now();
    let status = agent.stop()?;
    let took = asked.elapsed();
    ensure!(status.success(), "exit status after SIGTERM: {status}");
    ensure!(took < STOPS_WITHIN, "stopped {took:?} after SIGTERM");
    // The kernel frees a program from deferred work after its last reference goes: give it
    // a moment.
    let freed_by = Instant::now() + Duration::from_secs(5);
    let left = loop {
        let left: Vec<u32> = aya::programs::loaded_programs()
            .flatten()
            .map(|info| info.id())
            .filter(|id| programs.contains(id))
            .collect();
        if left.is_empty() || Instant::now() > freed_by {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        left.is_empty(),
        "programs still loaded after exit: {left:?}"
    );

    let log = std::fs::read_to_string(dir.join("agent.log"))?;
    let scored: u64 = log
        .lines()
        .find_map(|line| line.split("stopped after ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("the agent's last line says how many windows:\n{log}"))?;
    let nodes = aggregator
        .client()
        .await?
        .list_nodes(pb::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    let node = nodes
        .iter()
        .find(|n| n.node == NODE)
        .with_context(|| format!("the aggregator knows {NODE}: {nodes:?}"))?;
    ensure!(
        node.summaries == scored && node.summaries_lost == 0,
        "the aggregator has every summary, the last one too: {} of {scored} windows, {} lost",
        node.summaries,
        node.summaries_lost
    );
    drop(record);
    Ok(())
}

/// The kernel ids of the eBPF programs a process holds open.
fn program_ids(pid: u32) -> anyhow::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some(id) = info
            .lines()
            .find_map(|line| line.strip_prefix("prog_id:"))
            .and_then(|id| id.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}
