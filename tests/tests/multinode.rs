//! Three simulated nodes on this machine, each a real node: its own containerd, its own
//! cgroup root, its own network namespace on a private bridge and its own agent scoped to
//! it, and one `herd-aggregator` on the bridge, with mutual TLS between the agents and the
//! aggregator as it ships. One cluster runs every scenario:
//! 1. two replicas per node, one faulty: its node finds it, and so does the aggregator;
//! 2. one replica per node, one faulty from its start: only the aggregator can find it;
//! 3. a workload throttled on one node only: the aggregator names that node and workload;
//! 4. the aggregator killed with SIGKILL and restarted: the agents reconnect, the findings
//!    are still open, the drop counters say what was lost, no agent grew meanwhile;
//! 5. one node's agent stopped: the node goes silent.
//!
//! Everything is asserted through the aggregator's ClusterService, as an operator sees it.
//! Root only; it does not touch the single-node lab.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use herd_proto::herd::v1::{self as pb, cluster_service_client::ClusterServiceClient};
use herd_tests::{
    agent::AgentProcess,
    aggregator::{AggregatorProcess, eventually},
    built_binary,
    certs::{Ca, Issued},
    eval::STEADY_LOAD,
    lab::{
        APP_NAME, Fault, FaultKind, LabSpec, Workload,
        cluster::{self, Cluster, ClusterSpec, HOST_ADDRESS, Node},
    },
    require_root,
};
use tonic::transport::Channel;

const NAMESPACE: &str = "shop";
const WINDOW: &str = "2s";
const EXPIRY_SECS: u64 = 8;
/// When the faulty replica of `pair` starts to hog its CPU: after every agent's warm-up.
const PAIR_FAULT_AFTER_SECS: u64 = 40;
/// Long enough for the whole test: faults last until the pods go.
const FAULT_SECS: u64 = 900;
/// The node with the faulty `pair` replica, the one with the faulty `solo` replica, and the
/// one where `batch` is throttled.
const PAIR_NODE: &str = "a";
const SOLO_NODE: &str = "b";
const THROTTLED_NODE: &str = "c";
const NODES: [&str; 3] = [PAIR_NODE, SOLO_NODE, THROTTLED_NODE];
const BATCH_DOMAIN: &str = "shop/Deployment/batch/app";
/// The source of the aggregator's own findings.
const AGGREGATOR_SOURCE: &str = "aggregator";

#[test]
fn three_nodes_and_an_aggregator() -> anyhow::Result<()> {
    require_root();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(scenarios());
    // Whatever happened, nothing of the cluster stays.
    let down = runtime.block_on(cluster::down());
    result?;
    Ok(down?)
}

/// Light steady load, the same on every replica: half of a limit that a CPU hog beside it
/// hits at once, so that the hog is throttled even on a busy machine.
fn steady(name: &str, replicas: u32) -> Workload {
    Workload::deployment(name)
        .namespace(NAMESPACE)
        .replicas(replicas)
        .cpu_millis(100)
        .memory_mib(64)
        .command(STEADY_LOAD.iter().copied())
}

/// `batch` wants about 8 % of a CPU; under 20 millicores it is throttled most of the time.
fn batch(cpu_millis: u32) -> Workload {
    Workload::deployment("batch")
        .namespace(NAMESPACE)
        .replicas(2)
        .cpu_millis(cpu_millis)
        .memory_mib(64)
        .command([
            "stress-ng",
            "--cpu",
            "1",
            "--cpu-load",
            "8",
            "--cpu-load-slice",
            "5",
            "--timeout",
            "0",
            "--quiet",
        ])
}

fn spec() -> ClusterSpec {
    let mut spec = ClusterSpec::new();
    for node in NODES {
        let mut pair = steady("pair", 2);
        if node == PAIR_NODE {
            pair = pair.fault(
                Fault::new(1, FaultKind::CpuHog)
                    .after_secs(PAIR_FAULT_AFTER_SECS)
                    .for_secs(FAULT_SECS),
            );
        }
        let mut solo = steady("solo", 1);
        if node == SOLO_NODE {
            // From its start: the node has no earlier self to compare it with, and no peer.
            solo = solo.fault(
                Fault::new(0, FaultKind::CpuHog)
                    .after_secs(0)
                    .for_secs(FAULT_SECS),
            );
        }
        let batch = batch(if node == THROTTLED_NODE { 20 } else { 500 });
        spec = spec.node(
            node,
            LabSpec::new().workload(pair).workload(solo).workload(batch),
        );
    }
    spec
}

/// The aggregator, listening on `listen` with mutual TLS (`tls` is its server
/// certificate). `HERD_MULTINODE_AGGREGATOR` names a changed aggregator to stand in, to see
/// these checks fail when it is broken.
async fn start_aggregator(
    dir: &Path,
    listen: SocketAddr,
    tls: &Issued,
) -> anyhow::Result<AggregatorProcess> {
    let mut args = vec![
        "--window".to_owned(),
        WINDOW.to_owned(),
        "--node-expiry".to_owned(),
        format!("{EXPIRY_SECS}s"),
        "--listen".to_owned(),
        listen.to_string(),
        "--duration".to_owned(),
        "15m".to_owned(),
    ];
    args.extend(tls.daemon_args());
    AggregatorProcess::start(
        AggregatorProcess::program_from_env("HERD_MULTINODE_AGGREGATOR"),
        dir,
        &args,
    )
    .await
}

/// The agent of `node`, in the node's network namespace, scoped to its cgroup root and
/// runtime, sending to the aggregator over the bridge with mutual TLS (`tls` is its client
/// certificate).
async fn start_agent(
    node: &Node,
    dir: &Path,
    aggregator: SocketAddr,
    tls: &Issued,
) -> anyhow::Result<AgentProcess> {
    let agent = built_binary("herd-agent")?;
    let socket = node.socket();
    let netns = format!("--net={}", node.netns_path().display());
    let tls_args: Vec<String> = tls
        .daemon_args()
        .iter()
        .map(|arg| {
            let arg: &std::ffi::OsStr = arg.as_ref();
            arg.to_str()
                .map(str::to_owned)
                .context("a certificate path")
        })
        .collect::<anyhow::Result<_>>()?;
    let url = format!("https://{aggregator}");
    let mut args = vec![
        netns.as_str(),
        "--",
        agent.to_str().context("agent path")?,
        "--interval",
        WINDOW,
        "--discovery-interval",
        "1s",
        "--min-age",
        "0s",
        "--node-name",
        &node.name,
        "--cgroup-root",
        node.cgroup_root(),
        "--runtime-socket",
        socket.to_str().context("runtime socket")?,
        "--aggregator",
        &url,
        "--summary-queue",
        "3",
        "--duration",
        "15m",
    ];
    args.extend(tls_args.iter().map(String::as_str));
    AgentProcess::start(Path::new("/usr/bin/nsenter"), &dir.join(&node.name), &args).await
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

async fn nodes(client: &mut ClusterServiceClient<Channel>) -> anyhow::Result<Vec<pb::NodeStatus>> {
    Ok(client
        .list_nodes(pb::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes)
}

/// The pod of `workload`'s replica `replica` on `node`.
async fn pod_of(node: &Node, workload: &str, replica: u32) -> anyhow::Result<String> {
    Ok(node
        .pods()
        .await?
        .into_iter()
        .find(|p| {
            p.labels.get(APP_NAME).map(String::as_str) == Some(workload)
                && p.annotations.get("herd.lab/replica").map(String::as_str)
                    == Some(&replica.to_string())
        })
        .with_context(|| {
            format!(
                "no pod of {workload} replica {replica} on node {}",
                node.name
            )
        })?
        .name)
}

fn kind(finding: &pb::Finding) -> String {
    pb::FindingKind::try_from(finding.kind)
        .map_or_else(|_| finding.kind.to_string(), |k| k.as_str_name().to_owned())
}

fn show(findings: &[pb::Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "  {} {} node={} pod={} domain={} source={}: {}",
                f.id,
                kind(f),
                f.node,
                f.pod,
                f.domain,
                f.source,
                f.summary
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Agents by node name, started and stopped by the test.
struct Agents(Vec<(String, AgentProcess)>);

impl Agents {
    fn get(&self, node: &str) -> &AgentProcess {
        &self
            .0
            .iter()
            .find(|(n, _)| n == node)
            .expect("an agent per node")
            .1
    }

    fn logs(&self) -> String {
        self.0
            .iter()
            .map(|(node, agent)| {
                let log = agent.log_text();
                // The busiest-cgroups table is most of the log, and says little here.
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .filter(|l| !l.contains("herd::table"))
                    .take(40)
                    .collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- agent of node {node}:\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn scenarios() -> anyhow::Result<()> {
    let started = Instant::now();
    let cluster = Cluster::up(&spec()).await?;
    eprintln!("cluster up in {:?}", started.elapsed());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-multinode-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // A free port on the bridge; the aggregator listens there, as it would on a node's IP.
    let listen = TcpListener::bind((HOST_ADDRESS, 0))?.local_addr()?;
    // Mutual TLS between the agents and the aggregator, as it ships: a CA, a server
    // certificate for the aggregator's address on the bridge, a client certificate a node.
    let ca = Ca::new(&dir.join("certs"), "herd-ca")?;
    let server = ca.server("aggregator", &[&format!("IP:{HOST_ADDRESS}")])?;
    let mut aggregator = start_aggregator(&dir, listen, &server).await?;
    let mut agents = Agents(Vec::new());
    for node in cluster.nodes() {
        let cert = ca.client(&node.name)?;
        agents.0.push((
            node.name.clone(),
            start_agent(node, &dir, listen, &cert).await?,
        ));
    }
    let outcome = checks(
        &cluster,
        &mut aggregator,
        &mut agents,
        &dir,
        listen,
        &server,
    )
    .await;
    if outcome.is_err() {
        eprintln!(
            "the aggregator's log:\n{}\n{}",
            std::fs::read_to_string(dir.join("aggregator.log")).unwrap_or_default(),
            agents.logs()
        );
    }
    drop(agents);
    drop(aggregator);
    let down = cluster.down().await;
    eprintln!("whole run {:?}", started.elapsed());
    outcome?;
    Ok(down?)
}

async fn checks(
    cluster: &Cluster,
    aggregator: &mut AggregatorProcess,
    agents: &mut Agents,
    dir: &Path,
    listen: SocketAddr,
    tls: &Issued,
) -> anyhow::Result<()> {
    let pair_pod = pod_of(cluster.node(PAIR_NODE), "pair", 1).await?;
    let solo_pod = pod_of(cluster.node(SOLO_NODE), "solo", 0).await?;
    let mut throttled_pods = Vec::new();
    for replica in 0..2 {
        throttled_pods.push(pod_of(cluster.node(THROTTLED_NODE), "batch", replica).await?);
    }
    let mut client = aggregator.client().await?;

    // Every node reports, under its own name, only its own containers.
    let reporting = eventually(
        Duration::from_secs(30),
        "all three nodes report",
        async || {
            let nodes = nodes(&mut client).await?;
            Ok((nodes
                .iter()
                .filter(|n| n.summaries > 0 && !n.silent)
                .count()
                == NODES.len())
            .then_some(nodes))
        },
    )
    .await?;
    let names: Vec<&str> = reporting.iter().map(|n| n.node.as_str()).collect();
    ensure!(
        names.len() == 3 && NODES.iter().all(|n| names.contains(n)),
        "nodes: {names:?}"
    );
    // Each agent sees its own node's pods and no other's: every member the cluster knows is
    // on the node whose runtime runs it, under that node's cgroup root.
    for node in cluster.nodes() {
        let pods: Vec<String> = node.pods().await?.into_iter().map(|p| p.name).collect();
        for domain in [
            "shop/Deployment/pair/app",
            "shop/Deployment/solo/app",
            BATCH_DOMAIN,
        ] {
            let members = eventually(
                Duration::from_secs(20),
                &format!("{domain} on node {}", node.name),
                async || {
                    let members: Vec<pb::Container> = client
                        .get_domain(pb::GetDomainRequest {
                            domain: domain.to_owned(),
                        })
                        .await?
                        .into_inner()
                        .members
                        .into_iter()
                        .filter(|m| m.node == node.name)
                        .collect();
                    Ok((!members.is_empty()).then_some(members))
                },
            )
            .await?;
            let wanted = if domain.contains("/solo/") { 1 } else { 2 };
            let strangers: Vec<&pb::Container> = members
                .iter()
                .filter(|m| {
                    !pods.contains(&m.pod)
                        || !m.cgroup.starts_with(&format!("{}/", node.cgroup_root()))
                })
                .collect();
            ensure!(
                members.len() == wanted && strangers.is_empty(),
                "node {} reports {} members of {domain}, {} not its own: {members:#?}",
                node.name,
                members.len(),
                strangers.len()
            );
        }
    }

    // Scenarios 1 to 3 run side by side on the one cluster.
    let started = Instant::now();
    // What the node of the lone faulty replica said of it when the aggregator first named it.
    let mut solo_by_node: Option<Vec<pb::Finding>> = None;
    let (pair_node_finding, pair_replica, solo_replica, batch_node) = eventually(
        Duration::from_secs(PAIR_FAULT_AFTER_SECS + 120),
        "the findings of scenarios 1, 2 and 3",
        async || {
            let open = open_findings(&mut client).await?;
            let find = |pred: &dyn Fn(&pb::Finding) -> bool| open.iter().find(|f| pred(f)).cloned();
            let pair_node = find(&|f| f.pod == pair_pod && f.source == format!("node {PAIR_NODE}"));
            let pair_replica = find(&|f| {
                f.pod == pair_pod
                    && f.kind == pb::FindingKind::ClusterReplica as i32
                    && f.node == PAIR_NODE
            });
            let solo = find(&|f| {
                f.pod == solo_pod
                    && f.kind == pb::FindingKind::ClusterReplica as i32
                    && f.node == SOLO_NODE
            });
            if solo.is_some() && solo_by_node.is_none() {
                solo_by_node = Some(
                    open.iter()
                        .filter(|f| f.pod == solo_pod && f.source.starts_with("node "))
                        .cloned()
                        .collect(),
                );
            }
            let batch = find(&|f| {
                f.kind == pb::FindingKind::WorkloadNode as i32
                    && f.node == THROTTLED_NODE
                    && f.domain == BATCH_DOMAIN
            });
            Ok(match (pair_node, pair_replica, solo, batch) {
                (Some(a), Some(b), Some(c), Some(d)) => Some((a, b, c, d)),
                found => {
                    if started.elapsed().as_secs().is_multiple_of(20) {
                        eprintln!(
                            "waiting ({:?}): pair node {} replica {}, solo {}, batch {}; open:\n{}",
                            started.elapsed(),
                            found.0.is_some(),
                            found.1.is_some(),
                            found.2.is_some(),
                            found.3.is_some(),
                            show(&open)
                        );
                    }
                    None
                }
            })
        },
    )
    .await?;
    eprintln!("scenarios 1-3 found in {:?}", started.elapsed());
    let open = open_findings(&mut client).await?;
    eprintln!("open findings:\n{}", show(&open));
    // 1: the node's finding passes through under its source, the aggregator's is its own.
    ensure!(pair_replica.source == AGGREGATOR_SOURCE, "{pair_replica:?}");
    ensure!(
        pair_node_finding.kind != pb::FindingKind::ClusterReplica as i32,
        "{pair_node_finding:?}"
    );
    // 2: the aggregator's, on the right pod, while the node's agent had nothing on it: it
    // has no peers for it, and no healthy past of it.
    ensure!(solo_replica.source == AGGREGATOR_SOURCE, "{solo_replica:?}");
    let solo_by_node = solo_by_node.unwrap_or_default();
    ensure!(
        solo_by_node.is_empty(),
        "the lone faulty replica was found by its node first:\n{}",
        show(&solo_by_node)
    );
    let other_solos: Vec<_> = open
        .iter()
        .filter(|f| {
            f.kind == pb::FindingKind::ClusterReplica as i32
                && f.domain == "shop/Deployment/solo/app"
                && f.pod != solo_pod
        })
        .cloned()
        .collect();
    ensure!(
        other_solos.is_empty(),
        "healthy solo replicas named:\n{}",
        show(&other_solos)
    );
    // 3: the workload on that node only.
    ensure!(batch_node.source == AGGREGATOR_SOURCE, "{batch_node:?}");
    let elsewhere: Vec<_> = open
        .iter()
        .filter(|f| {
            f.kind == pb::FindingKind::WorkloadNode as i32
                && f.domain == BATCH_DOMAIN
                && f.node != THROTTLED_NODE
        })
        .cloned()
        .collect();
    ensure!(
        elsewhere.is_empty(),
        "batch flagged on other nodes:\n{}",
        show(&elsewhere)
    );

    // 4: the aggregator dies; every agent keeps its last few summaries and no more.
    let rss_before: Vec<u64> = NODES
        .iter()
        .map(|n| agents.get(n).rss_kib().context("an agent's RSS"))
        .collect::<anyhow::Result<_>>()?;
    aggregator.kill()?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let rss_away: Vec<u64> = NODES
        .iter()
        .map(|n| agents.get(n).rss_kib().context("an agent's RSS"))
        .collect::<anyhow::Result<_>>()?;
    *aggregator = start_aggregator(dir, listen, tls).await?;
    let mut client = aggregator.client().await?;
    let restored = open_findings(&mut client).await?;
    for kept in [
        &pair_node_finding,
        &pair_replica,
        &solo_replica,
        &batch_node,
    ] {
        ensure!(
            restored.iter().any(|f| f.id == kept.id),
            "after the restart {} is gone; open:\n{}",
            kept.id,
            show(&restored)
        );
    }
    let back = eventually(
        Duration::from_secs(30),
        "all agents reconnect",
        async || {
            let nodes = nodes(&mut client).await?;
            let back: Vec<_> = nodes
                .into_iter()
                .filter(|n| {
                    n.summaries > 1 && n.health.as_ref().is_some_and(|h| h.summaries_dropped > 0)
                })
                .collect();
            Ok((back.len() == NODES.len()).then_some(back))
        },
    )
    .await?;
    for (i, node) in NODES.iter().enumerate() {
        let status = back
            .iter()
            .find(|n| n.node == *node)
            .context("a node's status")?;
        // Away 20 s, a summary every 2 s, a queue of three: most were dropped, and counted.
        let dropped = status.health.as_ref().map_or(0, |h| h.summaries_dropped);
        ensure!(
            dropped >= 5,
            "node {node} reports {dropped} dropped summaries for 20 s away: {status:?}"
        );
        let rss_after = agents.get(node).rss_kib().context("an agent's RSS")?;
        // Flat: within a tenth (and 2 MiB of allocator noise) of before the crash.
        let limit = rss_before[i] + (rss_before[i] / 10).max(2048);
        ensure!(
            rss_away[i] <= limit && rss_after <= limit,
            "node {node}'s agent grew while the aggregator was away: {} KiB → {} KiB → \
             {rss_after} KiB",
            rss_before[i],
            rss_away[i]
        );
    }

    // 5: one node's agent stops; that node expires and goes silent, the others do not.
    let (_, agent) = agents
        .0
        .iter()
        .position(|(n, _)| n == THROTTLED_NODE)
        .map(|i| agents.0.remove(i))
        .context("the agent of the throttled node")?;
    let status = agent.stop()?;
    ensure!(status.success(), "the agent exited with {status}");
    let silent = eventually(
        Duration::from_secs(EXPIRY_SECS + 20),
        "a node-silent finding",
        async || {
            let open = open_findings(&mut client).await?;
            Ok(open
                .into_iter()
                .find(|f| f.kind == pb::FindingKind::NodeSilent as i32 && f.node == THROTTLED_NODE))
        },
    )
    .await?;
    ensure!(silent.source == AGGREGATOR_SOURCE, "{silent:?}");
    let nodes = nodes(&mut client).await?;
    for node in &nodes {
        ensure!(
            node.silent == (node.node == THROTTLED_NODE),
            "ListNodes after node {THROTTLED_NODE}'s agent stopped: {nodes:?}"
        );
    }
    Ok(())
}
