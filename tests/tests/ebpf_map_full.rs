//! A per-cgroup eBPF map filled on purpose: the agent runs with room for two cgroups in each
//! counter map (`HERD_EBPF_MAP_ENTRIES=2`) beside four pods that send on their loopback, so
//! the network map is full. What is lost is counted per map in `/metrics` and keeps rising,
//! each full map is warned about once (by the agent, and by the programs through aya-log),
//! windows go on, and the pods that found room have their socket counters while the others
//! have none. Root only; it takes the lab: run it under `flock /run/herd-lab.flock`.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, ensure};
use herd_agent::collect::ebpf::MAP_ENTRIES_VAR;
use herd_agent_common::{CGROUP_MAPS, NET_COUNTS_MAP};
use herd_proto::herd::v1 as pb;
use herd_tests::{
    agent::AgentProcess,
    aggregator::eventually,
    built_binary,
    export::{free_port, sample},
    lab::{self, Lab, LabSpec, Workload},
    require_root,
};

const NAMESPACE: &str = "mapfull";
const CAPACITY: usize = 2;
const REPLICAS: u32 = 4;
const SOCKET_FEATURE: &str = "socket_tx_bytes_per_s";

#[test]
fn a_full_map_is_counted_warned_once_and_costs_only_the_cgroups_without_room() -> anyhow::Result<()>
{
    require_root();
    lab::run_test(scenario())
}

/// The agent's warning for `map`, as it logs it the first time the map is full.
fn agent_warning(map: &str) -> String {
    format!("the eBPF map {map} is full")
}

/// The programs' own line for `map`, through aya-log.
fn program_warning(map: &str) -> String {
    format!("eBPF map {map} is full: a new cgroup's events are not counted")
}

fn lost(metrics: &str, map: &str) -> f64 {
    sample(
        metrics,
        &format!("herd_ebpf_map_full_total{{map=\"{map}\"}}"),
    )
    .unwrap_or(0.0)
}

async fn scrape(port: u16) -> anyhow::Result<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .context("running curl")?;
    ensure!(out.status.success(), "curl /metrics: {}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn scenario() -> anyhow::Result<()> {
    // Each pod sends to itself over its own loopback, which only the socket counters see; a
    // tenth of a CPU each keeps the four of them light.
    let workload = Workload::deployment("chatty")
        .namespace(NAMESPACE)
        .replicas(REPLICAS)
        .cpu_millis(100)
        .memory_mib(64)
        .command([
            "stress-ng",
            "--sock",
            "1",
            "--sock-port",
            "22000",
            "--timeout",
            "0",
            "--quiet",
        ]);
    let lab = Lab::up(&LabSpec::new().workload(workload)).await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-map-full-test");
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port()?;
    let capacity = CAPACITY.to_string();
    let mut agent = AgentProcess::start_with_env(
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
            "map-full-node",
            "--runtime-socket",
            &lab.socket().display().to_string(),
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "--duration",
            "10m",
        ],
        "info",
        &[(MAP_ENTRIES_VAR, &capacity)],
    )
    .await?;

    let first = eventually(
        Duration::from_secs(60),
        "the network map's losses show in /metrics",
        async || {
            let metrics = scrape(port).await?;
            Ok((lost(&metrics, NET_COUNTS_MAP) > 0.0).then_some(metrics))
        },
    )
    .await
    .with_context(|| agent.log_text())?;
    let mut client = agent.client().await?;
    let windows = |info: pb::GetInfoResponse| info.windows;
    let windows_then = windows(client.get_info(pb::GetInfoRequest {}).await?.into_inner());
    tokio::time::sleep(Duration::from_secs(5)).await;

    let log = agent.log_text();
    let later = scrape(port).await?;
    ensure!(agent.running(), "the agent stopped:\n{log}");
    let windows_now = windows(client.get_info(pb::GetInfoRequest {}).await?.into_inner());
    ensure!(
        windows_now >= windows_then + 3,
        "windows go on with a full map: {windows_then}, then {windows_now} five seconds later"
    );
    ensure!(
        lost(&later, NET_COUNTS_MAP) > lost(&first, NET_COUNTS_MAP),
        "the pods without room keep losing, and it is counted: {} then {}",
        lost(&first, NET_COUNTS_MAP),
        lost(&later, NET_COUNTS_MAP)
    );
    // Read between two scrapes: a map full by the first has its warning, and a warning is
    // for a map full by the second.
    for map in CGROUP_MAPS {
        let warnings = log.matches(&agent_warning(map)).count();
        let expected = if lost(&first, map) > 0.0 {
            1..=1
        } else {
            0..=1
        };
        ensure!(
            expected.contains(&warnings),
            "{map} ({} lost) is warned about {warnings} times, not once:\n{log}",
            lost(&first, map)
        );
        ensure!(
            warnings == 0 || lost(&later, map) > 0.0,
            "{map} is warned about but counts no loss:\n{log}"
        );
    }
    ensure!(
        log.contains(&program_warning(NET_COUNTS_MAP)),
        "the programs say through aya-log that {NET_COUNTS_MAP} is full:\n{log}"
    );

    // The pods that found room in the network map have socket counters; the others none.
    let containers = client
        .list_containers(pb::ListContainersRequest {
            namespace: NAMESPACE.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .containers;
    ensure!(
        containers.len() == REPLICAS as usize,
        "the agent watches the {REPLICAS} pods: {containers:?}"
    );
    let mut sending = Vec::new();
    for container in &containers {
        let explained = client
            .explain(pb::ExplainRequest {
                container_id: container.id.clone(),
                windows: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        let window = explained
            .windows
            .last()
            .with_context(|| format!("{} has a scored window", container.pod))?;
        let sent = window
            .features
            .iter()
            .find(|feature| feature.feature == SOCKET_FEATURE)
            .with_context(|| {
                format!(
                    "{} has {SOCKET_FEATURE} while the network signal is loaded: {window:?}",
                    container.pod
                )
            })?
            .value;
        sending.push((container.pod.clone(), sent));
    }
    let counted = sending.iter().filter(|(_, sent)| *sent > 0.0).count();
    ensure!(
        (1..=CAPACITY).contains(&counted),
        "the pods that found room (at most {CAPACITY}) have socket counters, the others none: \
         {sending:?}"
    );
    agent.stop()?;
    Ok(())
}
