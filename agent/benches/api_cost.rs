//! What `herd.v1.NodeService` costs with 200 containers and an hour of history: the latency
//! of `ListFindings` and `Explain` as a client on the unix socket sees it, and the memory the
//! API's state holds.
//!
//! The state is the agent's own [`SharedState`], filled as the run loop fills it: a real
//! [`ContainerTable`] over cgroup directories in a temporary directory
//! (`/kubepods/burstable/pod<uid>/<id>`), named by a runtime snapshot made here (pods with a
//! `pod-template-hash` label, so that [`LabelOwners`] puts the 200 containers in 40
//! Deployment domains of 5, as the CRI runtime would); then 360 windows (an hour of 10 s
//! windows) of synthetic observations, scored by the real [`Detector`] with the agent's
//! features and configuration, each given to `after_window`. The values are noise around a
//! level per domain and feature; in a quarter of the domains, one container strays for six
//! windows of every twelve, so that findings open and close (some hundreds closed, about ten
//! open at the end). The API is served by [`ApiServer`] on its own thread, as in the agent,
//! and called sequentially by a `herd_proto::uds` client. Needs no root.
//!
//! `cargo bench -p herd-agent --bench api_cost -- [--output FILE]`

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use herd_agent::{
    api::{
        AgentFacts, ApiConfig, ApiServer, RuntimeState, SharedState, findings_log::LogLimits,
        listen::MAX_RESPONSE_BYTES,
    },
    detect::{Detector, Observation, Subject},
    discovery::{
        containers::ContainerTable,
        domain::LabelOwners,
        runtime::{Pod, RuntimeContainer, RuntimeSnapshot},
    },
    features,
};
use herd_proto::herd::v1::{self as pb, node_service_client::NodeServiceClient};
use prost::Message as _;
use tokio::sync::oneshot;

const DOMAINS: usize = 40;
const PER_DOMAIN: usize = 5;
const CONTAINERS: usize = DOMAINS * PER_DOMAIN;
/// An hour of 10 s windows: the agent's default `--history-windows`.
const WINDOWS: usize = 360;
const WINDOW: Duration = Duration::from_secs(10);
const CALLS: usize = 500;
const WARMUP_CALLS: usize = 20;
/// Windows in one stray cycle; the stray container is off in its last `STRAY_WINDOWS`, so
/// that the last window of the run is inside a stray for the domains straying then.
const CYCLE: usize = 12;
const STRAY_WINDOWS: usize = 6;

/// Counts the bytes the process holds on the heap, to tell the API state's share from the
/// allocator's slack that VmRSS also shows.
#[path = "support/heap.rs"]
mod heap;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// splitmix64: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal, mean 0 and deviation 1 (a sum of uniforms).
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.next()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

fn container_id(i: usize) -> String {
    format!("{:064x}", 0xc000 + i)
}

fn sandbox_id(i: usize) -> String {
    format!("{:064x}", 0x5000 + i)
}

/// The bench's node: 200 cgroup directories and the runtime's view of them.
fn fake_node(root: &Path, started: SystemTime) -> anyhow::Result<ContainerTable> {
    let cgroup2 = root.join("cgroup");
    let mut snapshot = RuntimeSnapshot::default();
    let mut paths = Vec::new();
    for i in 0..CONTAINERS {
        let (domain, replica) = (i / PER_DOMAIN, i % PER_DOMAIN);
        let uid = format!("00000000-0000-4000-8000-{i:012x}");
        let path = format!("/kubepods/burstable/pod{uid}/{}", container_id(i));
        let dir = cgroup2.join(path.trim_start_matches('/'));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("cgroup.procs"), "")?;
        paths.push(path);
        snapshot.pods.insert(
            sandbox_id(i),
            Pod {
                name: format!("web-{domain:02}-5f6d-{replica:05}"),
                namespace: format!("shop-{}", domain % 8),
                uid,
                labels: HashMap::from([("pod-template-hash".to_owned(), "5f6d".to_owned())]),
                annotations: HashMap::new(),
            },
        );
        snapshot.containers.insert(
            container_id(i),
            RuntimeContainer {
                id: container_id(i),
                sandbox_id: sandbox_id(i),
                name: "app".to_owned(),
                image: format!("registry.example/web-{domain:02}:1.4.2"),
                running: true,
                created_at: started,
                labels: HashMap::new(),
                annotations: HashMap::new(),
            },
        );
    }
    let mut table = ContainerTable::new(root, &cgroup2, Duration::ZERO);
    table.update(
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64 + 1000, Path::new(p.as_str()))),
        Some(&snapshot),
        &LabelOwners,
        started,
    );
    let domains: std::collections::HashSet<String> =
        table.containers().iter().map(|c| c.domain_name()).collect();
    anyhow::ensure!(
        table.len() == CONTAINERS && domains.len() == DOMAINS,
        "the table has {} containers in {} domains, not {CONTAINERS} in {DOMAINS}",
        table.len(),
        domains.len()
    );
    Ok(table)
}

/// Whether container `i` strays in window `w`: one replica of a quarter of the domains, for
/// the last [`STRAY_WINDOWS`] windows of every [`CYCLE`], a different domain set each cycle.
fn strays(i: usize, w: usize) -> bool {
    let (domain, replica) = (i / PER_DOMAIN, i % PER_DOMAIN);
    let cycle = w / CYCLE;
    (domain * 7 + cycle).is_multiple_of(4)
        && replica == cycle % PER_DOMAIN
        && w % CYCLE >= CYCLE - STRAY_WINDOWS
}

/// One window of observations: each feature at its domain's level with 5 % noise; a stray
/// container has every twelfth feature at four times the level.
fn observations(
    table: &ContainerTable,
    features: usize,
    w: usize,
    noise: &mut Noise,
) -> Vec<Observation> {
    (0..CONTAINERS)
        .filter_map(|i| {
            let container = table.get(&container_id(i))?;
            let domain = i / PER_DOMAIN;
            let values = (0..features)
                .map(|f| {
                    let level = 10.0 * (1 + (domain * 7 + f * 3) % 13) as f64;
                    let stray = if strays(i, w) && f % 12 == 0 {
                        4.0
                    } else {
                        1.0
                    };
                    Some(level * stray * 0.05f64.mul_add(noise.normal(), 1.0))
                })
                .collect();
            let pod = container.pod.as_ref();
            Some(Observation {
                subject: Subject {
                    entity: container.id.clone(),
                    pod: pod.map(|p| p.name.clone()),
                    namespace: pod.map(|p| p.namespace.clone()),
                    domain: container.domain_name(),
                    node: "bench-node".to_owned(),
                },
                values,
            })
        })
        .collect()
}

/// VmRSS of this process, in KiB (procfs reads `/proc/self/status`).
fn rss_kib() -> u64 {
    procfs::process::Process::myself()
        .and_then(|me| me.status())
        .ok()
        .and_then(|status| status.vmrss)
        .unwrap_or(0)
}

/// (median, p99) of the samples.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |p: usize| samples[(samples.len() * p).div_ceil(100).saturating_sub(1)];
    (at(50), at(99))
}

fn human(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Times `CALLS` sequential calls after a few untimed ones.
async fn timed<F, Fut>(mut call: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), tonic::Status>>,
{
    for _ in 0..WARMUP_CALLS {
        call().await?;
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        call().await?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

/// The API on a thread of its own, as the agent serves it beside its run loop; stops when
/// `stop` is sent or dropped.
fn serve(
    socket: PathBuf,
    state: SharedState,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = ApiConfig {
            socket: Some(socket),
            listen: None,
            cluster: None,
            // No rate limit: the bench measures the answers, as fast as they come.
            queries: herd_proto::rate::QueryLimit::new(0, 1, "this agent"),
        };
        let api = match ApiServer::start(&config, state.clone()).await {
            Ok(api) => api,
            Err(err) => {
                let _ = ready.send(Err(err.into()));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let _ = stop.await;
        api.stop(&state).await;
    });
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut output = None;
    while let Some(arg) = args.next() {
        if arg == "--output" {
            output = args.next().map(PathBuf::from);
        }
    }
    let dir = tempfile::tempdir()?;
    let end = SystemTime::now();
    let first = end - WINDOW * WINDOWS as u32;
    let table = fake_node(dir.path(), first - Duration::from_secs(3600))?;

    let names = features::names();
    let feature_count = names.len();
    let config = features::detect_config(&names);
    let (rss_before, heap_before) = (rss_kib(), heap::live_bytes());
    let state = SharedState::new(
        AgentFacts {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            node: "bench-node".to_owned(),
            window: WINDOW,
            min_age: Duration::ZERO,
            started: first,
            signals: Vec::new(),
            ebpf_missing: None,
            threshold: config.threshold,
            features: names.clone(),
        },
        WINDOWS,
        LogLimits::default(),
    );
    state.lock().after_poll(
        &table,
        RuntimeState {
            connected: true,
            socket: None,
            reason: None,
        },
    );
    let mut detector = Detector::new(config, names)?;
    let mut noise = Noise(7);
    let mut filling = Duration::ZERO;
    for w in 0..WINDOWS {
        let at = first + WINDOW * w as u32;
        let report = detector.observe(at, &observations(&table, feature_count, w, &mut noise))?;
        let start = Instant::now();
        state.lock().after_window(at, &table, &report);
        filling += start.elapsed();
    }
    let rss_with_detector = rss_kib();
    drop(detector);
    drop(table);
    let (rss_after, heap_after) = (rss_kib(), heap::live_bytes());

    let (open, closed, explained) = {
        let state = state.lock();
        let open: Vec<String> = state
            .findings
            .open()
            .map(|r| r.finding.subject.entity.clone())
            .collect();
        let all = state.findings.all().len();
        anyhow::ensure!(!open.is_empty(), "no finding is open after the run");
        (open.len(), all - open.len(), open[0].clone())
    };

    let socket = dir.path().join("agent.sock");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let server = {
        let (socket, state) = (socket.clone(), state.clone());
        thread::spawn(move || serve(socket, state, ready_tx, stop_rx))
    };
    ready_rx.recv().context("the API thread ended")??;
    let channel = herd_proto::uds::connect(&socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let mut client = NodeServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);

    let list = client
        .list_findings(pb::ListFindingsRequest::default())
        .await?
        .into_inner();
    let explain_request = pb::ExplainRequest {
        container_id: explained.clone(),
        windows: WINDOWS as u32,
        ..pb::ExplainRequest::default()
    };
    let explain = client.explain(explain_request.clone()).await?.into_inner();
    anyhow::ensure!(
        explain.windows.len() == WINDOWS,
        "Explain gave {} windows, not {WINDOWS}",
        explain.windows.len()
    );

    let list_times = timed(|| {
        let mut client = client.clone();
        async move {
            client
                .list_findings(pb::ListFindingsRequest::default())
                .await
                .map(drop)
        }
    })
    .await?;
    let explain_times = timed(|| {
        let (mut client, request) = (client.clone(), explain_request.clone());
        async move { client.explain(request).await.map(drop) }
    })
    .await?;
    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the API thread panicked"))??;

    let (list_median, list_p99) = percentiles(list_times);
    let (explain_median, explain_p99) = percentiles(explain_times);
    let mb = |kib: u64| kib as f64 / 1024.0;
    let heap = heap_after.saturating_sub(heap_before) as f64 / (1024.0 * 1024.0);
    let explain_features: usize = explain.windows.iter().map(|w| w.features.len()).sum();

    let mut report = String::new();
    writeln!(
        report,
        "# API cost with {CONTAINERS} containers and an hour of history"
    )?;
    writeln!(report)?;
    writeln!(
        report,
        "{CONTAINERS} containers in {DOMAINS} Deployment domains of {PER_DOMAIN} (named by a \
         runtime snapshot made by the bench), {feature_count} features; {WINDOWS} windows of \
         synthetic observations scored by the agent's detector and kept in the API's state \
         (`--history-windows {WINDOWS}`, an hour of 10 s windows): {open} findings open, \
         {closed} closed. The API serves on a unix socket from a thread of its own; a \
         `herd_proto::uds` client on the bench's thread makes {CALLS} calls of each kind one \
         after another (after {WARMUP_CALLS} untimed ones). `ListFindings` asks for the \
         default page ({} findings); `Explain` for all {WINDOWS} windows of a container with \
         an open finding ({} feature comparisons). The bench's own memory is not the agent's: \
         `collect-cost.md` has the agent's resident memory with a full history.",
        list.findings.len(),
        explain_features,
    )?;
    writeln!(report)?;
    writeln!(report, "| measure | value |")?;
    writeln!(report, "|---|---:|")?;
    writeln!(
        report,
        "| `ListFindings` (default page), median | {} |",
        human(list_median)
    )?;
    writeln!(
        report,
        "| `ListFindings` (default page), p99 | {} |",
        human(list_p99)
    )?;
    writeln!(
        report,
        "| `ListFindings` response, default page | {:.1} KB |",
        list.encoded_len() as f64 / 1024.0
    )?;
    writeln!(
        report,
        "| `Explain` ({WINDOWS} windows), median | {} |",
        human(explain_median)
    )?;
    writeln!(
        report,
        "| `Explain` ({WINDOWS} windows), p99 | {} |",
        human(explain_p99)
    )?;
    writeln!(
        report,
        "| `Explain` response, {WINDOWS} windows | {} bytes ({:.0} KB) |",
        explain.encoded_len(),
        explain.encoded_len() as f64 / 1024.0
    )?;
    writeln!(
        report,
        "| `after_window` (findings, history, domains), mean per window | {} |",
        human(filling / WINDOWS as u32)
    )?;
    writeln!(
        report,
        "| heap held by the API state, {CONTAINERS} containers × {WINDOWS} windows | \
         {heap:.1} MB |"
    )?;
    writeln!(
        report,
        "| bench VmRSS before the state | {:.1} MB |",
        mb(rss_before)
    )?;
    writeln!(
        report,
        "| bench VmRSS with the state and the detector | {:.1} MB |",
        mb(rss_with_detector)
    )?;
    writeln!(
        report,
        "| bench VmRSS with the state, detector dropped | {:.1} MB |",
        mb(rss_after)
    )?;
    print!("{report}");
    if let Some(path) = output {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("written to {}", path.display());
    }
    Ok(())
}
