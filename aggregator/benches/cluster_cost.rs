//! What the cluster aggregator costs with 50, 500 and 5,000 nodes of 30 pods each (150,000
//! pods at the top, Kubernetes' largest supported cluster): per window, the time until every
//! node's summary is received, compared and its findings updated; the aggregator's resident
//! memory; and the bytes a node sends a window.
//!
//! The aggregator runs in a child process (this bench, run with `--serve`), as the
//! `herd-aggregator` binary runs it: the default configuration, a findings store in a
//! temporary directory, its gRPC router on a TCP listener on 127.0.0.1 without TLS, two
//! tokio workers. Its memory is the child's alone. The parent is the cluster's agents: HTTP/2
//! connections carrying the long-lived `PushSummaries` streams of the nodes, one stream per
//! node as an agent keeps it, as many to a connection as the aggregator allows
//! ([`serve::MAX_STREAMS`]). Each window it builds and encodes every node's
//! `herd.v1.NodeSummary` (untimed: each agent encodes its own on its node), tells the child
//! how many summaries to expect, and sends them; the child waits until it has taken them all,
//! runs one comparison round, and answers with the two times. Both processes share the
//! machine's cores (the sending, HTTP/2 and TCP of 5,000 agents on the aggregator's two), as
//! a real cluster would not: the times are an upper bound.
//!
//! The summaries carry every feature of the agent (`herd_detect::floors`, which the agent's
//! catalog checks names each of its features, in its order), identities as the agent sends
//! them (64-digit ids, systemd cgroup paths, images; each once per stream, in its first
//! summary, and the container's id alone after that), three drivers per container and each
//! domain's statistics on the node, the values as the agent sends them (one matrix of floats
//! for the containers and two for the domains). Workloads: three DaemonSets on every node and
//! Deployments of 1 to 50 replicas spread across nodes (one in four two to a node), with
//! levels per workload and feature and noise per replica and window. From window [`ANOMALY_FROM`] on, one Deployment in 50
//! has a replica that burns five times its peers' CPU, and one node is sick: every container
//! on it waits on the run queue, on IO and on disk, and its agent collects slowly. At the end
//! the findings are asked over `ClusterService.ListFindings` on the same listener; the bench
//! fails unless every stray replica and the sick node are found (a bench of a broken path
//! measures nothing). Times and memory are never pass or fail: a value over its goal is
//! marked `MISSED`.
//!
//! `cargo bench -p herd-aggregator --bench cluster_cost -- [--output FILE] [--nodes 50,500,5000]`

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use bytes::BufMut as _;
use herd_aggregator::{
    Aggregator, AggregatorConfig, SharedAggregator, serve, service::ClusterApi, store::Store,
};
use herd_detect::{
    floors::FEATURE_FLOORS,
    mad, median,
    proto::{duration, timestamp},
};
use herd_proto::herd::v1::{self as pb, cluster_service_client::ClusterServiceClient};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint},
};

/// The `herd-aggregator` binary's allocator, for the child that plays it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PODS_PER_NODE: usize = 30;
const DAEMONSETS: [&str; 3] = ["kube-proxy", "node-exporter", "log-shipper"];
/// Replicas of the Deployments, in turn (at most the number of nodes).
const REPLICAS: [usize; 12] = [3, 5, 2, 10, 4, 1, 20, 6, 3, 50, 8, 2];
/// Deployments per namespace.
const PER_NAMESPACE: usize = 20;
/// One Deployment in this many runs two replicas on each of its nodes (the others one).
const PAIRED_EVERY: usize = 4;
/// One Deployment in this many (of those with at least five replicas) has a stray replica.
const STRAY_EVERY: usize = 50;
const WINDOWS: usize = 16;
/// The first window with the anomalies: after the detectors' warm-up of 6.
const ANOMALY_FROM: usize = 8;
const GOAL_WINDOW: Duration = Duration::from_secs(1);
const GOAL_RSS_GIB: f64 = 2.0;

/// splitmix64: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal, mean 0 and deviation 1 (a sum of uniforms).
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.next()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }

    fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits + 16);
        while s.len() < digits {
            let _ = write!(s, "{:016x}", self.next_u64());
        }
        s.truncate(digits);
        s
    }
}

/// How a feature's values look across workloads.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Errors and faults: zero for most workloads.
    Rare,
    /// A share of a limit or of time, in [0, 1].
    Share,
    /// Shares of a limit, missing for workloads without that limit.
    Limit,
    /// A rate or size, around ten floors with a wide spread across workloads.
    Level,
}

fn shape(name: &str) -> Shape {
    let rare = [
        "fail",
        "oom",
        "drops",
        "overflows",
        "resets",
        "retransmits",
        "limit_hits",
        "major_faults",
    ];
    if rare.iter().any(|r| name.contains(r)) {
        Shape::Rare
    } else if name.ends_with("_utilization") || name == "cpu_throttled_share" {
        Shape::Limit
    } else if name.ends_with("_share") || name.ends_with("_pressure") {
        Shape::Share
    } else {
        Shape::Level
    }
}

struct Workload {
    namespace: String,
    container: String,
    domain: String,
    image: String,
    pod_prefix: String,
    /// Per feature: the level its replicas run at; NaN where it has no value (no limit).
    levels: Vec<f64>,
}

struct Pod {
    workload: usize,
    id: String,
    pod: String,
    uid: String,
    cgroup: String,
    /// A lasting factor of this replica against its workload's level.
    factor: f64,
    stray: bool,
}

struct Node {
    name: String,
    pods: Vec<usize>,
}

/// The synthetic cluster: its workloads, pods and nodes, and where the anomalies are.
struct Cluster {
    features: Vec<String>,
    floors: Vec<f64>,
    shapes: Vec<Shape>,
    workloads: Vec<Workload>,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    sick: usize,
    started: SystemTime,
}

/// A workload with its levels per feature.
fn workload(
    namespace: String,
    kind: &str,
    name: String,
    shapes: &[Shape],
    floors: &[f64],
    noise: &mut Noise,
) -> Workload {
    let levels = shapes
        .iter()
        .zip(floors)
        .map(|(shape, floor)| match shape {
            Shape::Rare if noise.next() < 0.8 => 0.0,
            Shape::Rare => floor * (0.5 + 2.5 * noise.next()),
            Shape::Limit if noise.next() < 0.3 => f64::NAN,
            Shape::Limit => 0.05 + 0.5 * noise.next(),
            Shape::Share => 0.1 * noise.next(),
            Shape::Level => floor * 10.0 * (0.8 * noise.normal()).exp(),
        })
        .collect();
    let container = if kind == "DaemonSet" {
        name.clone()
    } else {
        "app".to_owned()
    };
    Workload {
        domain: format!("{namespace}/{kind}/{name}/{container}"),
        image: format!(
            "registry.example.com/{namespace}/{name}:v1.{}.{}",
            noise.next_u64() % 40,
            noise.next_u64() % 10
        ),
        pod_prefix: if kind == "DaemonSet" {
            format!("{name}-")
        } else {
            format!("{name}-{}-", noise.hex(10))
        },
        namespace,
        container,
        levels,
    }
}

/// A replica of `workload`.
fn new_pod(workload: usize, workloads: &[Workload], noise: &mut Noise) -> Pod {
    let uid = format!(
        "{}-{}-{}-{}-{}",
        noise.hex(8),
        noise.hex(4),
        noise.hex(4),
        noise.hex(4),
        noise.hex(12)
    );
    let id = noise.hex(64);
    Pod {
        workload,
        pod: format!("{}{}", workloads[workload].pod_prefix, noise.hex(5)),
        cgroup: format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{id}.scope",
            uid.replace('-', "_")
        ),
        id,
        uid,
        factor: 1.0 + 0.05 * noise.normal(),
        stray: false,
    }
}

impl Cluster {
    fn new(nodes: usize) -> Self {
        let mut noise = Noise(0x5eed ^ nodes as u64);
        let features: Vec<String> = FEATURE_FLOORS
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
        let floors: Vec<f64> = FEATURE_FLOORS.iter().map(|(_, f)| *f).collect();
        let shapes: Vec<Shape> = features.iter().map(|f| shape(f)).collect();
        let mut workloads = Vec::new();
        for name in DAEMONSETS {
            workloads.push(workload(
                "kube-system".to_owned(),
                "DaemonSet",
                name.to_owned(),
                &shapes,
                &floors,
                &mut noise,
            ));
        }
        let mut pods = Vec::new();
        let mut nodes: Vec<Node> = (0..nodes)
            .map(|i| Node {
                name: format!(
                    "ip-10-{}-{}-{}.eu-west-1.compute.internal",
                    i / 65536,
                    (i / 256) % 256,
                    i % 256
                ),
                pods: Vec::with_capacity(PODS_PER_NODE),
            })
            .collect();
        for node in &mut nodes {
            for workload in 0..DAEMONSETS.len() {
                node.pods.push(pods.len());
                pods.push(new_pod(workload, &workloads, &mut noise));
            }
        }
        // Deployments, their replicas spread over consecutive nodes in turn (one or two to a
        // node), until the nodes have 30 pods each on average.
        let spread = nodes.len() * (PODS_PER_NODE - DAEMONSETS.len());
        let (mut placed, mut deployments, mut strays) = (0, 0usize, 0usize);
        while placed < spread {
            let replicas = REPLICAS[deployments % REPLICAS.len()]
                .min(nodes.len())
                .min(spread - placed);
            let namespace = format!("team-{:03}", deployments / PER_NAMESPACE);
            workloads.push(workload(
                namespace,
                "Deployment",
                format!("svc-{deployments:05}"),
                &shapes,
                &floors,
                &mut noise,
            ));
            let workload = workloads.len() - 1;
            let stray = replicas >= 5 && {
                strays += 1;
                strays % STRAY_EVERY == 1
            };
            // One Deployment in four runs its replicas two to a node.
            let paired = deployments % PAIRED_EVERY == PAIRED_EVERY - 1;
            for replica in 0..replicas {
                let node = (placed + replica - usize::from(paired) * (replica % 2)) % nodes.len();
                let mut pod = new_pod(workload, &workloads, &mut noise);
                pod.stray = stray && replica == replicas / 2;
                nodes[node].pods.push(pods.len());
                pods.push(pod);
            }
            placed += replicas;
            deployments += 1;
        }
        let sick = nodes.len() / 2 + 1;
        Self {
            features,
            floors,
            shapes,
            workloads,
            pods,
            nodes,
            sick,
            started: SystemTime::now() - Duration::from_secs(86_400),
        }
    }

    /// Every node's summary of window `w`, at `at`.
    fn window(&self, w: usize, at: SystemTime) -> Vec<pb::NodeSummary> {
        let mut noise = Noise(0xfeed ^ (w as u64) << 32);
        let index = |name: &str| self.features.iter().position(|f| f == name);
        let cpu = index("cpu_usage_cores");
        let cpu_share = index("cpu_utilization");
        let syscalls = index("syscalls_per_s");
        let sick_waits = [
            (index("cpu_runqueue_wait_ms"), 20.0),
            (index("cpu_pressure"), 0.4),
            (index("io_pressure"), 0.3),
            (index("disk_latency_ms"), 25.0),
        ];
        let anomalous = w >= ANOMALY_FROM;
        self.nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let sick = anomalous && n == self.sick;
                let mut by_domain: HashMap<usize, Vec<usize>> = HashMap::new();
                let mut containers: Vec<pb::ContainerSummary> = node
                    .pods
                    .iter()
                    .enumerate()
                    .map(|(slot, &p)| {
                        let pod = &self.pods[p];
                        let workload = &self.workloads[pod.workload];
                        by_domain.entry(pod.workload).or_default().push(slot);
                        let mut values: Vec<f64> = workload
                            .levels
                            .iter()
                            .zip(&self.floors)
                            .zip(&self.shapes)
                            .map(|((level, floor), shape)| {
                                let v = match shape {
                                    Shape::Rare if *level == 0.0 => {
                                        if noise.next() < 0.01 {
                                            0.5 * floor
                                        } else {
                                            0.0
                                        }
                                    }
                                    _ => {
                                        level * pod.factor * (1.0 + 0.05 * noise.normal())
                                            + 0.1 * floor * noise.normal().abs()
                                    }
                                };
                                match shape {
                                    Shape::Share | Shape::Limit => v.clamp(0.0, 1.0),
                                    _ => v.max(0.0),
                                }
                            })
                            .collect();
                        if anomalous && pod.stray {
                            for (feature, times) in [(cpu, 5.0), (cpu_share, 5.0), (syscalls, 4.0)]
                            {
                                if let Some(v) = feature.and_then(|f| values.get_mut(f)) {
                                    *v *= times;
                                    if feature == cpu_share {
                                        *v = v.min(1.0);
                                    }
                                }
                            }
                        }
                        if sick {
                            for (feature, add) in sick_waits {
                                if let Some(v) = feature.and_then(|f| values.get_mut(f)) {
                                    *v += add;
                                }
                            }
                        }
                        let score = 0.5 + noise.next() * 1.5;
                        let drivers = (0..3)
                            .map(|k| {
                                let f = (slot * 3 + k + w) % self.features.len();
                                pb::FeatureScore {
                                    feature: self.features[f].clone(),
                                    value: values[f],
                                    reference: workload.levels[f],
                                    mad: self.floors[f],
                                    z: score - k as f64 * 0.3,
                                    basis: pb::Basis::Peers.into(),
                                }
                            })
                            .collect();
                        let age = Some(duration(
                            at.duration_since(self.started).unwrap_or_default(),
                        ));
                        pb::ContainerSummary {
                            // Its identity once per stream, as the agent sends it: every
                            // node's stream opens before the first window and its pods
                            // never change.
                            container: (w == 0).then(|| pb::Container {
                                id: pod.id.clone(),
                                pod: pod.pod.clone(),
                                namespace: workload.namespace.clone(),
                                name: workload.container.clone(),
                                image: workload.image.clone(),
                                domain: workload.domain.clone(),
                                cgroup: pod.cgroup.clone(),
                                age,
                                judged: true,
                                score,
                                flagged: false,
                                node: node.name.clone(),
                                pod_uid: pod.uid.clone(),
                                scored: true,
                            }),
                            values,
                            score,
                            drivers,
                            id: pod.id.clone(),
                            age,
                            scored: true,
                            flagged: false,
                        }
                    })
                    .collect();
                let mut domains: Vec<pb::DomainSummary> = by_domain
                    .into_iter()
                    .map(|(workload, slots)| self.domain(workload, &slots, &containers))
                    .collect();
                domains.sort_by(|a, b| a.domain.cmp(&b.domain));
                // The values in the summary's matrices, as the agent sends them.
                let values: Vec<f32> = containers
                    .iter_mut()
                    .flat_map(|c| std::mem::take(&mut c.values))
                    .map(|v| v as f32)
                    .collect();
                let (mut domain_medians, mut domain_mads) = (Vec::new(), Vec::new());
                for d in &mut domains {
                    domain_medians.extend(std::mem::take(&mut d.medians).iter().map(|v| *v as f32));
                    domain_mads.extend(std::mem::take(&mut d.mads).iter().map(|v| *v as f32));
                }
                let collection_ms = if sick { 80.0 } else { 5.0 + noise.next() * 2.0 };
                pb::NodeSummary {
                    node: node.name.clone(),
                    agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                    at: Some(timestamp(at)),
                    window: Some(duration(Duration::from_secs(10))),
                    features: self.features.clone(),
                    containers,
                    findings: Vec::new(),
                    domains,
                    health: Some(pb::NodeHealth {
                        collection: Some(duration(Duration::from_secs_f64(collection_ms / 1e3))),
                        ebpf_loaded: true,
                        runtime_connected: true,
                        discovery_errors: 0,
                        summaries_dropped: 0,
                        containers: PODS_PER_NODE as u32,
                    }),
                    sequence: w as u64 + 1,
                    values,
                    domain_medians,
                    domain_mads,
                }
            })
            .collect()
    }

    /// A domain's statistics on a node, as the agent sends them: the median of its members
    /// there, and the MAD raised to the feature's floor.
    fn domain(
        &self,
        workload: usize,
        slots: &[usize],
        containers: &[pb::ContainerSummary],
    ) -> pb::DomainSummary {
        let (mut medians, mut mads) = (Vec::new(), Vec::new());
        for (f, floor) in self.floors.iter().enumerate() {
            let values: Vec<f64> = slots
                .iter()
                .map(|s| containers[*s].values[f])
                .filter(|v| v.is_finite())
                .collect();
            match median(&values) {
                Some(m) => {
                    medians.push(m);
                    mads.push(
                        mad(&values, m)
                            .unwrap_or(0.0)
                            .max(*floor)
                            .max(0.05 * m.abs()),
                    );
                }
                None => {
                    medians.push(f64::NAN);
                    mads.push(f64::NAN);
                }
            }
        }
        pb::DomainSummary {
            domain: self.workloads[workload].domain.clone(),
            members: slots.len() as u32,
            medians,
            mads,
        }
    }

    fn strays(&self) -> Vec<&Pod> {
        self.pods.iter().filter(|p| p.stray).collect()
    }
}

/// The aggregator in this process, for the parent: serves on 127.0.0.1, says its port on
/// stdout, and then takes commands on stdin, one a line:
/// `expect N`: wait until N summaries were taken in all, run a round, and answer
/// `done <receive µs> <round µs> <opened> <closed>`; `quit`.
fn serve_child() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let aggregator =
        SharedAggregator::new(Aggregator::new(AggregatorConfig::default(), Some(store))?);
    let api = ClusterApi::new(aggregator.clone());
    let port = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        // No rate limit: the bench asks as fast as it can.
        let router = serve::router(
            &api,
            &herd_proto::rate::QueryLimit::new(0, 1, "the aggregator"),
        )?;
        tokio::spawn(async move {
            if let Err(err) = router
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
            {
                eprintln!("the aggregator's listener stopped: {err}");
            }
        });
        anyhow::Ok(port)
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {port}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("expect"), Some(n)) => {
                let expected: u64 = n.parse().context("expect N")?;
                let start = Instant::now();
                while aggregator.lock().received() < expected {
                    if start.elapsed() > Duration::from_secs(300) {
                        bail!(
                            "only {} of {expected} summaries arrived in 300 s",
                            aggregator.lock().received()
                        );
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                let received = start.elapsed();
                let round_start = Instant::now();
                let report = aggregator.lock().round(SystemTime::now())?;
                let round = round_start.elapsed();
                for (name, f) in aggregator.lock().footprints() {
                    eprintln!(
                        "    {name}: {} entities, {:.0} MB of history, {:.0} MB of spreads \
                         ({} domains)",
                        f.entities,
                        (f.entities * f.history_bytes_per_entity) as f64 / 1e6,
                        f.spread_bytes as f64 / 1e6,
                        f.domains
                    );
                }
                writeln!(
                    out,
                    "done {} {} {} {}",
                    received.as_micros(),
                    round.as_micros(),
                    report.opened,
                    report.closed
                )?;
                out.flush()?;
            }
            (Some("quit"), _) => break,
            _ => bail!("unknown command {line:?}"),
        }
    }
    drop(runtime);
    Ok(())
}

/// The child aggregator, killed when dropped.
struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Server {
    fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the aggregator process")?;
        let stdin = child.stdin.take().context("the child's stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("the child's stdout")?);
        let mut server = Self {
            child,
            stdin,
            stdout,
            port: 0,
        };
        let line = server.line()?;
        server.port = line
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the aggregator said {line:?}"))?;
        Ok(server)
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the aggregator process ended: {:?}", self.child.try_wait()?);
        }
        Ok(line.trim().to_owned())
    }

    fn command(&mut self, command: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// (resident, peak resident) of the aggregator, in KiB.
    fn memory(&self) -> (u64, u64) {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.command("quit");
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct WindowCost {
    total: Duration,
    received: Duration,
    round: Duration,
    opened: usize,
    rss_kib: u64,
}

struct ScaleResult {
    nodes: usize,
    pods: usize,
    domains: usize,
    windows: Vec<WindowCost>,
    peak_kib: u64,
    bytes_per_node: f64,
    strays: usize,
    strays_found: usize,
    sick_found: bool,
    workload_node_on_sick: usize,
    other_replica_findings: usize,
    open_by_kind: Vec<(String, usize)>,
}

async fn open_findings(
    client: &mut ClusterServiceClient<Channel>,
    kind: pb::FindingKind,
) -> anyhow::Result<Vec<pb::Finding>> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_findings(pb::ListFindingsRequest {
                state: pb::FindingState::Open.into(),
                kind: kind.into(),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        all.extend(page.findings);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
}

async fn run_scale(nodes: usize) -> anyhow::Result<ScaleResult> {
    let cluster = Cluster::new(nodes);
    let mut server = Server::start()?;
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{}", server.port))?;
    // As many connections as the aggregator's limit of streams per connection asks for.
    let mut channels = Vec::new();
    for _ in 0..connections(nodes) {
        channels.push(endpoint.connect().await?);
    }
    // One long-lived stream per node, as its agent keeps it.
    let mut senders = Vec::new();
    let mut streams = Vec::new();
    for n in 0..nodes {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(2);
        let mut client = tonic::client::Grpc::new(channels[n % channels.len()].clone());
        streams.push(tokio::spawn(async move {
            client
                .ready()
                .await
                .map_err(|err| Status::unavailable(err.to_string()))?;
            client
                .client_streaming(
                    tonic::Request::new(ReceiverStream::new(rx)),
                    PathAndQuery::from_static("/herd.v1.AggregatorService/PushSummaries"),
                    Encoded,
                )
                .await
        }));
        senders.push(tx);
    }
    let mut windows = Vec::new();
    let mut bytes = 0usize;
    for w in 0..WINDOWS {
        // Each agent encodes its summary on its own node: here, before the window's time.
        let summaries: Vec<Vec<u8>> = cluster
            .window(w, SystemTime::now())
            .iter()
            .map(Message::encode_to_vec)
            .collect();
        bytes += summaries.iter().map(Vec::len).sum::<usize>();
        let start = Instant::now();
        server.command(&format!("expect {}", (w + 1) * nodes))?;
        for (tx, summary) in senders.iter().zip(summaries) {
            tx.send(summary)
                .await
                .context("a node's stream to the aggregator ended")?;
        }
        let answer = tokio::task::block_in_place(|| server.line())?;
        let total = start.elapsed();
        let words: Vec<u64> = answer
            .strip_prefix("done ")
            .with_context(|| format!("the aggregator said {answer:?}"))?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [received, round, opened, _closed] = words[..] else {
            bail!("the aggregator said {answer:?}");
        };
        let cost = WindowCost {
            total,
            received: Duration::from_micros(received),
            round: Duration::from_micros(round),
            opened: opened as usize,
            rss_kib: server.memory().0,
        };
        eprintln!(
            "  {nodes} nodes, window {w:>2}: {:>7.1} ms (received {:.1} ms, round {:.1} ms), \
             {opened} opened, {:.0} MiB resident",
            cost.total.as_secs_f64() * 1e3,
            cost.received.as_secs_f64() * 1e3,
            cost.round.as_secs_f64() * 1e3,
            cost.rss_kib as f64 / 1024.0
        );
        windows.push(cost);
    }

    // A connection of its own: the others carry as many streams as the aggregator allows.
    let mut client = ClusterServiceClient::new(endpoint.connect().await?);
    let replicas = open_findings(&mut client, pb::FindingKind::ClusterReplica).await?;
    let found: HashSet<&str> = replicas.iter().map(|f| f.container_id.as_str()).collect();
    let strays = cluster.strays();
    let strays_found = strays
        .iter()
        .filter(|p| found.contains(p.id.as_str()))
        .count();
    let sick_name = &cluster.nodes[cluster.sick].name;
    let on_sick: HashSet<&str> = cluster.nodes[cluster.sick]
        .pods
        .iter()
        .map(|p| cluster.pods[*p].id.as_str())
        .collect();
    let stray_ids: HashSet<&str> = strays.iter().map(|p| p.id.as_str()).collect();
    let other_replica_findings = replicas
        .iter()
        .filter(|f| {
            !stray_ids.contains(f.container_id.as_str())
                && !on_sick.contains(f.container_id.as_str())
        })
        .count();
    let sick = open_findings(&mut client, pb::FindingKind::SickNode).await?;
    let sick_found = sick.iter().any(|f| f.node == *sick_name);
    let workloads = open_findings(&mut client, pb::FindingKind::WorkloadNode).await?;
    let workload_node_on_sick = workloads.iter().filter(|f| f.node == *sick_name).count();
    let mut open_by_kind = Vec::new();
    for kind in [
        pb::FindingKind::ClusterReplica,
        pb::FindingKind::WorkloadNode,
        pb::FindingKind::SickNode,
        pb::FindingKind::NodeSilent,
    ] {
        let n = match kind {
            pb::FindingKind::ClusterReplica => replicas.len(),
            pb::FindingKind::WorkloadNode => workloads.len(),
            pb::FindingKind::SickNode => sick.len(),
            _ => open_findings(&mut client, kind).await?.len(),
        };
        open_by_kind.push((
            kind.as_str_name()
                .trim_start_matches("FINDING_KIND_")
                .to_owned(),
            n,
        ));
    }
    let peak_kib = server.memory().1;
    drop(senders);
    for stream in streams {
        let _ = stream.await;
    }
    drop(server);
    Ok(ScaleResult {
        nodes,
        pods: cluster.pods.len(),
        domains: cluster.workloads.len(),
        windows,
        peak_kib,
        bytes_per_node: bytes as f64 / (WINDOWS * nodes) as f64,
        strays: strays.len(),
        strays_found,
        sick_found,
        workload_node_on_sick,
        other_replica_findings,
        open_by_kind,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn median_of(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `PushSummaries` with summaries the agents' side encoded before the window (each agent
/// encodes its own, on its own node): what goes on the wire is the same, but the time
/// measured is no longer the agents' encoding on the aggregator's cores.
#[derive(Debug, Clone, Copy)]
struct Encoded;

/// Writes an encoded summary as it is.
struct AsEncoded;

/// Decodes the aggregator's answer.
struct Answer;

impl Codec for Encoded {
    type Encode = Vec<u8>;
    type Decode = pb::PushSummariesResponse;
    type Encoder = AsEncoded;
    type Decoder = Answer;

    fn encoder(&mut self) -> AsEncoded {
        AsEncoded
    }

    fn decoder(&mut self) -> Answer {
        Answer
    }
}

impl Encoder for AsEncoded {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Answer {
    type Item = pb::PushSummariesResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        Message::decode(src)
            .map(Some)
            .map_err(|err| Status::internal(err.to_string()))
    }
}

/// Connections for `nodes` streams: no more streams on one than the aggregator takes.
fn connections(nodes: usize) -> usize {
    nodes.div_ceil(serve::MAX_STREAMS as usize).max(1)
}

fn report(results: &[ScaleResult]) -> anyhow::Result<String> {
    let mut r = String::new();
    writeln!(
        r,
        "# Cluster aggregator: one window of 50 to 5,000 nodes\n\n\
         {} windows of each cluster, {} features, connections of at most {} streams carrying one \
         stream per node over TCP on 127.0.0.1, the aggregator in its own process (2 tokio \
         workers), the agents' side in this one, on the same cores. A window's time runs \
         from the first summary sent to the end of the round that compared it; the median is \
         over the windows from the {ANOMALY_FROM}th on (anomalies in, findings changing), \
         the worst over all but the first. The first is the aggregator's start: every \
         stream opens, every container's identity comes in full and every container is new \
         to the comparisons; the goal is for the windows after it.\n",
        WINDOWS,
        FEATURE_FLOORS.len(),
        serve::MAX_STREAMS
    )?;
    writeln!(
        r,
        "| nodes | pods | workloads | window, median | worst | received, median | round, \
         median | first window | aggregator resident, end / peak | bytes a node a window |"
    )?;
    writeln!(r, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for s in results {
        let steady = &s.windows[ANOMALY_FROM..];
        let window = median_of(steady.iter().map(|c| c.total).collect());
        let worst = s.windows[1..]
            .iter()
            .map(|c| c.total)
            .max()
            .unwrap_or_default();
        let first = s.windows[0].total;
        let received = median_of(steady.iter().map(|c| c.received).collect());
        let round = median_of(steady.iter().map(|c| c.round).collect());
        let end_mib = s.windows.last().map_or(0, |c| c.rss_kib) as f64 / 1024.0;
        let peak_mib = s.peak_kib as f64 / 1024.0;
        let missed = |over: bool| if over { " **MISSED**" } else { "" };
        writeln!(
            r,
            "| {} | {} | {} | {}{} | {}{} | {} | {} | {} | {:.0} / {:.0} MiB{} | {:.1} KB |",
            s.nodes,
            s.pods,
            s.domains,
            ms(window),
            missed(window > GOAL_WINDOW),
            ms(worst),
            missed(worst > GOAL_WINDOW),
            ms(received),
            ms(round),
            ms(first),
            end_mib,
            peak_mib,
            missed(peak_mib > GOAL_RSS_GIB * 1024.0),
            s.bytes_per_node / 1e3,
        )?;
    }
    writeln!(
        r,
        "\nGoals: a window under {} s, the aggregator under {GOAL_RSS_GIB} GiB resident. \
         Load average (1, 5, 15 min) at the end: {}; other work on the machine slows every \
         line.\n",
        GOAL_WINDOW.as_secs(),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        r,
        "| nodes | stray replicas found | sick node found | its workloads found on it | \
         other replicas flagged | open at the end | opened per window |"
    )?;
    writeln!(r, "|---:|---:|---|---:|---:|---|---|")?;
    for s in results {
        writeln!(
            r,
            "| {} | {} of {} | {} | {} | {} | {} | {} |",
            s.nodes,
            s.strays_found,
            s.strays,
            if s.sick_found { "yes" } else { "no" },
            s.workload_node_on_sick,
            s.other_replica_findings,
            s.open_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            s.windows
                .iter()
                .map(|c| c.opened.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        )?;
    }
    Ok(r)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut output = None;
    let mut scales = vec![50, 500, 5000];
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--serve" => return serve_child(),
            "--output" => {
                output = Some(PathBuf::from(args.next().context("--output needs a file")?))
            }
            "--nodes" => {
                let list = args.next().context("--nodes needs a list, e.g. 50,500")?;
                scales = list
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--nodes {list}: give node counts, e.g. 50,500"))?;
            }
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for nodes in scales {
        eprintln!("{nodes} nodes × {PODS_PER_NODE} pods");
        results.push(runtime.block_on(run_scale(nodes))?);
    }
    let text = report(&results)?;
    print!("{text}");
    if let Some(path) = output {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("written to {}", path.display());
    }
    let broken: Vec<String> = results
        .iter()
        .filter(|s| s.strays_found == 0 || !s.sick_found)
        .map(|s| {
            format!(
                "{} nodes: {} of {} stray replicas found, sick node {}",
                s.nodes,
                s.strays_found,
                s.strays,
                if s.sick_found { "found" } else { "not found" }
            )
        })
        .collect();
    if !broken.is_empty() {
        bail!(
            "the aggregator missed the bench's anomalies, so its times measure a broken \
             path: {}",
            broken.join("; ")
        );
    }
    Ok(())
}
