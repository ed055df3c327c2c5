//! The aggregator with a real agent in the lab, over TCP on loopback: the node's finding of
//! a stray replica passes through marked by its source, and the aggregator's own
//! cluster-wide comparison finds the replica too. Then the aggregator is killed with
//! SIGKILL and restarted on the same store: the open findings are still there, the agent
//! reconnects, the drop counters say what was lost, and the agent's memory did not grow
//! while the aggregator was away. Last, the agent stops and its node goes silent. Root only;
//! it takes the lab.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use herd_proto::herd::v1::{self as pb, cluster_service_client::ClusterServiceClient};
use herd_tests::{
    agent::AgentProcess,
    aggregator::{AggregatorProcess, eventually},
    built_binary,
    export::{self, free_port},
    lab::{self, Lab, LabSpec},
    require_root, stray,
};
use tonic::transport::Channel;

const FAULTY_REPLICA: u32 = 2;
const FAULT_AFTER_SECS: u64 = 30;
const FAULT_SECS: u64 = 150;
const EXPIRY_SECS: u64 = 8;

#[test]
fn the_aggregator_finds_the_stray_and_keeps_it_through_a_crash() -> anyhow::Result<()> {
    require_root();
    // promtool checks the aggregator's /metrics: install it here rather than count on a test
    // that ran before.
    lab::install::ensure(export::PACKAGES)?;
    lab::run_test(scenario())
}

/// The aggregator of this test: on TCP loopback in plain text, with its metrics.
struct Aggregator {
    process: AggregatorProcess,
    metrics_port: u16,
}

impl Aggregator {
    async fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let metrics_port = free_port()?;
        let process = AggregatorProcess::start(
            None,
            dir,
            &[
                "--window".to_owned(),
                "2s".to_owned(),
                "--node-expiry".to_owned(),
                format!("{EXPIRY_SECS}s"),
                "--listen".to_owned(),
                format!("127.0.0.1:{port}"),
                "--insecure".to_owned(),
                "--metrics-listen".to_owned(),
                format!("127.0.0.1:{metrics_port}"),
                "--duration".to_owned(),
                "10m".to_owned(),
            ],
        )
        .await?;
        Ok(Self {
            process,
            metrics_port,
        })
    }
}

/// The aggregator's /metrics passes `promtool check metrics` and shows the node, what it
/// sent, and the open findings by kind, the cluster's own among them.
async fn scraped(aggregator: &Aggregator, dir: &Path) -> anyhow::Result<()> {
    // The findings are counted after the round that follows them.
    eventually(
        Duration::from_secs(10),
        "the stray replica finding in /metrics",
        async || {
            let text = export::promtool_check(aggregator.metrics_port, dir, "metrics.txt")?;
            let open = |severity: &str| {
                export::sample(
                    &text,
                    &format!(
                        "herd_findings_open{{severity=\"{severity}\",kind=\"stray_replica\"}}"
                    ),
                )
                .unwrap_or(0.0)
            };
            Ok((open("warning") + open("critical") >= 1.0).then_some(text))
        },
    )
    .await
    .and_then(|text| {
        ensure!(
            export::sample(&text, "herd_nodes{state=\"live\"}") == Some(1.0),
            "herd_nodes: {text}"
        );
        ensure!(
            export::sample(&text, "herd_summaries_received_total").is_some_and(|n| n >= 1.0),
            "herd_summaries_received_total: {text}"
        );
        ensure!(
            export::sample(&text, "process_resident_memory_bytes").is_some_and(|n| n > 0.0),
            "process_resident_memory_bytes: {text}"
        );
        Ok(())
    })
}

async fn open_findings(
    client: &mut ClusterServiceClient<Channel>,
) -> anyhow::Result<Vec<pb::Finding>> {
    Ok(client
        .list_findings(pb::ListFindingsRequest {
            state: pb::FindingState::Open as i32,
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .findings)
}

async fn scenario() -> anyhow::Result<()> {
    let spec = LabSpec::new().workload(stray::web_with_cpu_hog(
        FAULTY_REPLICA,
        FAULT_AFTER_SECS,
        FAULT_SECS,
    ));
    let lab = Lab::up(&spec).await?;
    let faulty = stray::pod_of_replica(&lab, stray::NAMESPACE, FAULTY_REPLICA).await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-aggregator-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let mut aggregator = Aggregator::start(&dir, port).await?;
    let socket = lab.socket();
    let agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir.join("agent"),
        &[
            "--interval",
            "2s",
            "--discovery-interval",
            "1s",
            "--min-age",
            "0s",
            "--aggregator",
            &format!("http://127.0.0.1:{port}"),
            "--insecure",
            "--summary-queue",
            "3",
            "--duration",
            "10m",
            "--runtime-socket",
            socket.to_str().context("lab socket")?,
        ],
    )
    .await?;
    let outcome = checks(&mut aggregator, agent, &dir, port, &faulty).await;
    if outcome.is_err() {
        eprintln!(
            "the aggregator's log:\n{}",
            std::fs::read_to_string(dir.join("aggregator.log")).unwrap_or_default()
        );
    }
    drop(aggregator);
    lab.down().await?;
    outcome
}

async fn checks(
    aggregator: &mut Aggregator,
    agent: AgentProcess,
    dir: &Path,
    port: u16,
    faulty: &str,
) -> anyhow::Result<()> {
    let mut client = aggregator.process.client().await?;
    // Both the node's finding (passed through) and the aggregator's own.
    let (node_finding, replica) = eventually(
        Duration::from_secs(FAULT_AFTER_SECS + 60),
        "both findings of the stray",
        async || {
            let open = open_findings(&mut client).await?;
            let of_kind = |kind: pb::FindingKind| {
                open.iter()
                    .find(|f| f.kind == kind as i32 && f.pod == faulty)
                    .cloned()
            };
            Ok(of_kind(pb::FindingKind::NodePeers).zip(of_kind(pb::FindingKind::ClusterReplica)))
        },
    )
    .await
    .map_err(|err| anyhow::anyhow!("{err}; agent log:\n{}", agent.log_text()))?;
    ensure!(node_finding.source.starts_with("node "), "{node_finding:?}");
    ensure!(replica.source == "aggregator", "{replica:?}");
    let wrong: Vec<String> = open_findings(&mut client)
        .await?
        .into_iter()
        .filter(|f| !f.pod.is_empty() && f.pod != faulty)
        .map(|f| f.summary)
        .collect();
    ensure!(wrong.is_empty(), "findings on healthy pods: {wrong:?}");
    scraped(aggregator, dir).await?;

    // The aggregator dies; the agent keeps its last few summaries and no more.
    let rss_before = agent.rss_kib().context("the agent's RSS")?;
    aggregator.process.kill()?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let rss_away = agent.rss_kib().context("the agent's RSS")?;
    *aggregator = Aggregator::start(dir, port).await?;
    let mut client = aggregator.process.client().await?;
    let restored = open_findings(&mut client).await?;
    ensure!(
        restored.iter().any(|f| f.id == replica.id)
            && restored.iter().any(|f| f.id == node_finding.id),
        "after the restart the open findings are gone: {restored:#?}"
    );
    let node = eventually(
        Duration::from_secs(30),
        "the agent reconnects",
        async || {
            let nodes = client
                .list_nodes(pb::ListNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            Ok(nodes.into_iter().find(|n| {
                n.summaries > 1 && n.health.as_ref().is_some_and(|h| h.summaries_dropped > 0)
            }))
        },
    )
    .await?;
    // Away 20 s, two windows a summary queue of three: most summaries of that time were
    // dropped, and the agent says how many. (The restarted aggregator cannot know.)
    let dropped = node.health.as_ref().map_or(0, |h| h.summaries_dropped);
    ensure!(
        dropped >= 5,
        "the agent reports {dropped} dropped summaries for 20 s away: {node:?}"
    );
    let rss_after = agent.rss_kib().context("the agent's RSS")?;
    // The agent said once that the aggregator was gone and once that it was back.
    let log = agent.log_text();
    let said = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    ensure!(
        said("lost the aggregator") + said("cannot reach the aggregator") == 1
            && said("the aggregator is reachable again") == 1,
        "the agent should say once that the aggregator is lost and once that it is back:\n{log}"
    );
    // Flat: within a tenth (and 2 MiB of allocator noise) of before the crash.
    let limit = rss_before + (rss_before / 10).max(2048);
    ensure!(
        rss_away <= limit && rss_after <= limit,
        "the agent grew while the aggregator was away: {rss_before} KiB → {rss_away} KiB → {rss_after} KiB"
    );
    // The stray is still found, under the id it had.
    eventually(
        Duration::from_secs(60),
        "the replica finding confirmed after the restart",
        async || {
            let open = open_findings(&mut client).await?;
            Ok(open
                .iter()
                .find(|f| {
                    let at = |f: &pb::Finding| f.updated.as_ref().map(|t| (t.seconds, t.nanos));
                    f.id == replica.id && at(f) > at(&replica)
                })
                .cloned())
        },
    )
    .await?;

    // The agent stops: its node goes silent.
    let node_name = node.node.clone();
    let status = agent.stop()?;
    ensure!(status.success(), "the agent exited with {status}");
    let silent = eventually(
        Duration::from_secs(EXPIRY_SECS + 20),
        "a node-silent finding",
        async || {
            let open = open_findings(&mut client).await?;
            Ok(open
                .into_iter()
                .find(|f| f.kind == pb::FindingKind::NodeSilent as i32 && f.node == node_name))
        },
    )
    .await?;
    ensure!(silent.source == "aggregator");
    let nodes = client
        .list_nodes(pb::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    ensure!(
        nodes.iter().any(|n| n.node == node_name && n.silent),
        "ListNodes does not show the node silent: {nodes:?}"
    );
    Ok(())
}
