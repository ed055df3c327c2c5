//! The agent's API against a running agent in the lab: a stray replica's finding is listed,
//! filtered, watched from opening to close, explained with the same numbers, and read by a
//! client that knows only what reflection tells it. Bad requests get clear statuses and a
//! watcher that does not keep up is dropped while the agent goes on. Root only; it takes the
//! lab.

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use herd_proto::herd::v1::{
    self as pb, FindingEventKind, FindingState, node_service_client::NodeServiceClient,
};
use herd_tests::{
    agent::AgentProcess,
    built_binary, eval,
    lab::{self, Lab, LabSpec, Workload},
    require_root, stray,
};
use tokio::sync::mpsc;
use tonic::{Code, Streaming, transport::Channel};

const WINDOW: &str = "2s";
const FAULTY_REPLICA: u32 = 2;
const FAULT_AFTER_SECS: u64 = 30;
const FAULT_SECS: u64 = 30;
/// The slow watcher's queue: it falls behind after this many changes.
const WATCH_QUEUE: &str = "4";

#[test]
fn the_api_shows_a_stray_replica_from_opening_to_close() -> anyhow::Result<()> {
    require_root();
    let python = python_client().context("making the Python gRPC client's venv")?;
    lab::run_test(scenario(&python))
}

fn spec() -> LabSpec {
    LabSpec::new()
        .workload(stray::web_with_cpu_hog(
            FAULTY_REPLICA,
            FAULT_AFTER_SECS,
            FAULT_SECS,
        ))
        .workload(
            Workload::stateful_set("db")
                .namespace("data")
                .replicas(3)
                .memory_mib(64)
                .command(eval::STEADY_LOAD.iter().copied()),
        )
}

async fn scenario(python: &Path) -> anyhow::Result<()> {
    let lab = Lab::up(&spec()).await?;
    let faulty = stray::pod_of_replica(&lab, stray::NAMESPACE, FAULTY_REPLICA).await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-api-test");
    let _ = std::fs::remove_dir_all(&dir);
    let socket_arg = lab.socket();
    let mut agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir,
        &[
            "--interval",
            WINDOW,
            "--discovery-interval",
            "1s",
            "--min-age",
            "0s",
            "--watch-queue",
            WATCH_QUEUE,
            "--duration",
            "10m",
            "--runtime-socket",
            socket_arg.to_str().context("lab socket path")?,
        ],
    )
    .await?;
    let outcome = checks(&mut agent, &faulty, python).await;
    if outcome.is_err() {
        eprintln!("the agent's log:\n{}", agent.log_text());
    }
    let status = agent.stop()?;
    lab.down().await?;
    outcome?;
    ensure!(status.success(), "herd-agent exited with {status}");
    Ok(())
}

async fn checks(agent: &mut AgentProcess, faulty: &str, python: &Path) -> anyhow::Result<()> {
    let socket = agent.socket().to_owned();
    let meta = std::fs::metadata(&socket)?;
    ensure!(
        meta.permissions().mode() & 0o777 == 0o600 && meta.uid() == 0,
        "the API socket must be root's, mode 0600, not {:o} of uid {}",
        meta.permissions().mode() & 0o777,
        meta.uid()
    );
    let mut client = agent.client().await?;

    // Watchers from the start: one that keeps up, one that reads nothing until the end.
    let mut watch = client
        .watch_findings(pb::WatchFindingsRequest::default())
        .await?
        .into_inner();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(event)) = watch.message().await {
            if events_tx.send(event).is_err() {
                break;
            }
        }
    });
    let mut slow = slow_watcher(&socket).await?;

    bad_requests(&mut client, python, &socket).await?;

    let info = client.get_info(pb::GetInfoRequest {}).await?.into_inner();
    let names: Vec<&str> = info.signals.iter().map(|s| s.name.as_str()).collect();
    for signal in [
        "cgroup", "netns", "syscalls", "block", "network", "sched", "oom",
    ] {
        ensure!(
            names.contains(&signal),
            "GetInfo lacks the {signal} signal: {names:?}"
        );
    }
    for inactive in info.signals.iter().filter(|s| !s.active) {
        ensure!(
            !inactive.reason.is_empty(),
            "{} is off without a reason",
            inactive.name
        );
    }
    ensure!(
        info.runtime.as_ref().is_some_and(|r| r.connected),
        "runtime not connected: {info:?}"
    );
    ensure!(
        info.window.as_ref().is_some_and(|w| w.seconds == 2),
        "window: {:?}",
        info.window
    );

    let containers = client
        .list_containers(pb::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    let shop: Vec<&pb::Container> = containers
        .iter()
        .filter(|c| c.namespace == "shop")
        .collect();
    ensure!(shop.len() == 5, "5 web replicas, got {}", shop.len());
    ensure!(
        containers.iter().filter(|c| c.namespace == "data").count() == 3,
        "3 db replicas: {containers:#?}"
    );

    // The stray replica's finding opens and reaches the watcher.
    let opened = next_event(&mut events, Duration::from_secs(90), |e| {
        e.kind == FindingEventKind::Opened as i32
    })
    .await
    .context("no finding opened within 90 s")?;
    let finding = opened.finding.context("event without a finding")?;
    ensure!(
        finding.pod == faulty,
        "the first finding names {} ({}), not the faulty {faulty}",
        finding.pod,
        finding.summary
    );
    ensure!(finding.namespace == "shop" && !finding.drivers.is_empty());

    filters(&mut client, &finding).await?;
    explain_matches(&mut client, faulty).await?;
    domain(&mut client, &finding).await?;
    reflection_client(python, &socket, &finding.id)?;

    // The fault ends; the finding closes and the watcher hears it.
    let closed = next_event(&mut events, Duration::from_secs(FAULT_SECS + 60), |e| {
        e.kind == FindingEventKind::Closed as i32
            && e.finding.as_ref().is_some_and(|f| f.id == finding.id)
    })
    .await
    .context("the finding did not close within a minute of the fault's end")?;
    let closed = closed.finding.context("event without a finding")?;
    ensure!(closed.state == FindingState::Closed as i32 && closed.closed.is_some());
    let listed = client
        .list_findings(pb::ListFindingsRequest {
            state: FindingState::Closed as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(
        listed.findings.iter().any(|f| f.id == finding.id),
        "the closed finding is not listed as closed"
    );

    // The watcher that read nothing fell behind and is told so; the agent went on.
    let dropped = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Err(anyhow::anyhow!("the slow watch ended without a status")),
                Err(status) => return Ok(status),
            }
        }
    })
    .await
    .context("the slow watcher was not dropped")??;
    ensure!(
        dropped.code() == Code::ResourceExhausted && dropped.message().contains("behind"),
        "the slow watcher got {dropped:?}"
    );
    ensure!(agent.running(), "the agent died");
    client.get_info(pb::GetInfoRequest {}).await?;
    Ok(())
}

async fn next_event(
    events: &mut mpsc::UnboundedReceiver<pb::FindingEvent>,
    within: Duration,
    wanted: impl Fn(&pb::FindingEvent) -> bool,
) -> anyhow::Result<pb::FindingEvent> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(event)) if wanted(&event) => return Ok(event),
            Ok(Some(other)) => eprintln!(
                "watch: {:?} {}",
                FindingEventKind::try_from(other.kind),
                other.finding.map(|f| f.summary).unwrap_or_default()
            ),
            Ok(None) => bail!("the watch stream ended"),
            Err(_) => bail!("timed out"),
        }
    }
}

/// A watch on a connection whose stream window is tiny: once a few bytes are in flight the
/// agent cannot send it more until it reads.
async fn slow_watcher(socket: &Path) -> anyhow::Result<Streaming<pb::FindingEvent>> {
    let endpoint = tonic::transport::Endpoint::from_static("http://localhost")
        .initial_stream_window_size(Some(64));
    let channel = herd_proto::uds::connect_endpoint(endpoint, socket).await?;
    Ok(NodeServiceClient::new(channel)
        .watch_findings(pb::WatchFindingsRequest::default())
        .await?
        .into_inner())
}

async fn bad_requests(
    client: &mut NodeServiceClient<Channel>,
    python: &Path,
    socket: &Path,
) -> anyhow::Result<()> {
    let unknown = client
        .explain(pb::ExplainRequest {
            pod: "no-such-pod".into(),
            ..Default::default()
        })
        .await
        .expect_err("an unknown pod is an error");
    ensure!(
        unknown.code() == Code::NotFound && unknown.message().contains("no-such-pod"),
        "unknown pod: {unknown:?}"
    );
    let huge = client
        .list_findings(pb::ListFindingsRequest {
            page_size: 1_000_000,
            ..Default::default()
        })
        .await
        .expect_err("a huge page is an error");
    ensure!(
        huge.code() == Code::InvalidArgument && huge.message().contains("1000"),
        "huge page: {huge:?}"
    );
    // Field 1 (a string) claiming far more bytes than follow. gRPC's status code table
    // gives INTERNAL for a request that does not parse; the message says what failed.
    let garbage = run_python(
        python,
        socket,
        &[
            "raw",
            "herd.v1.NodeService",
            "ListFindings",
            "0affffffff0f41",
        ],
    )?;
    ensure!(
        garbage["code"] == "INTERNAL"
            && garbage["details"]
                .as_str()
                .is_some_and(|d| d.contains("decode")),
        "garbage protobuf: {garbage}"
    );
    Ok(())
}

async fn filters(
    client: &mut NodeServiceClient<Channel>,
    finding: &pb::Finding,
) -> anyhow::Result<()> {
    let ids = |r: pb::ListFindingsResponse| -> Vec<String> {
        r.findings.into_iter().map(|f| f.id).collect()
    };
    let cases = [
        (
            "namespace shop",
            pb::ListFindingsRequest {
                namespace: "shop".into(),
                ..Default::default()
            },
            true,
        ),
        (
            "namespace data",
            pb::ListFindingsRequest {
                namespace: "data".into(),
                ..Default::default()
            },
            false,
        ),
        (
            "its pod",
            pb::ListFindingsRequest {
                pod: finding.pod.clone(),
                ..Default::default()
            },
            true,
        ),
        (
            "another pod",
            pb::ListFindingsRequest {
                pod: "db-0".into(),
                ..Default::default()
            },
            false,
        ),
        (
            "its domain",
            pb::ListFindingsRequest {
                domain: finding.domain.clone(),
                ..Default::default()
            },
            true,
        ),
        (
            "open",
            pb::ListFindingsRequest {
                state: FindingState::Open as i32,
                ..Default::default()
            },
            true,
        ),
        (
            "closed",
            pb::ListFindingsRequest {
                state: FindingState::Closed as i32,
                ..Default::default()
            },
            false,
        ),
        (
            "since after it opened",
            pb::ListFindingsRequest {
                since: Some(prost_time(
                    std::time::SystemTime::now() + Duration::from_secs(3600),
                )),
                ..Default::default()
            },
            false,
        ),
    ];
    for (what, request, expected) in cases {
        let got = ids(client.list_findings(request).await?.into_inner());
        ensure!(
            got.contains(&finding.id) == expected,
            "filter {what}: expected the finding {}, got {got:?}",
            if expected { "in" } else { "out" }
        );
    }
    let severe = client
        .list_findings(pb::ListFindingsRequest {
            min_severity: pb::Severity::Critical as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    let listed = client
        .list_findings(pb::ListFindingsRequest::default())
        .await?
        .into_inner();
    let now = listed
        .findings
        .iter()
        .find(|f| f.id == finding.id)
        .context("the finding is not listed")?;
    ensure!(
        ids(severe).contains(&finding.id) == (now.severity == pb::Severity::Critical as i32),
        "the severity filter disagrees with the finding's severity"
    );
    Ok(())
}

fn prost_time(t: std::time::SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The finding's strongest driver has the same value and z in `Explain`'s window of that
/// time.
async fn explain_matches(client: &mut NodeServiceClient<Channel>, pod: &str) -> anyhow::Result<()> {
    let listed = client
        .list_findings(pb::ListFindingsRequest {
            pod: pod.into(),
            state: FindingState::Open as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    let finding = listed.findings.first().context("the open finding")?;
    let driver = finding.drivers.first().context("a driver")?;
    let explained = client
        .explain(pb::ExplainRequest {
            pod: pod.into(),
            windows: 100,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(
        explained.container.as_ref().is_some_and(|c| c.pod == pod),
        "explain names another container"
    );
    ensure!(explained.findings.iter().any(|f| f.id == finding.id));
    let window = explained
        .windows
        .iter()
        .find(|w| w.at == finding.updated)
        .with_context(|| {
            format!(
                "no explained window at the finding's last update {:?}",
                finding.updated
            )
        })?;
    let feature = window
        .features
        .iter()
        .find(|f| f.feature == driver.feature)
        .with_context(|| format!("the window lacks {}", driver.feature))?;
    // Values are kept as f32, z in half precision (three significant digits).
    let close = |a: f64, b: f64, within: f64| (a - b).abs() <= within * a.abs().max(b.abs());
    ensure!(
        close(feature.z, driver.z, 1e-3)
            && close(feature.value, driver.value, 1e-6)
            && close(feature.reference, driver.reference, 1e-6),
        "explain says {feature:?}, the finding {driver:?}"
    );
    ensure!(
        window.score >= explained.threshold,
        "the window is not over the threshold"
    );
    Ok(())
}

async fn domain(
    client: &mut NodeServiceClient<Channel>,
    finding: &pb::Finding,
) -> anyhow::Result<()> {
    let domain = client
        .get_domain(pb::GetDomainRequest {
            domain: finding.domain.clone(),
        })
        .await?
        .into_inner();
    ensure!(
        domain.members.len() == 5,
        "the domain has {} members",
        domain.members.len()
    );
    ensure!(domain.findings.iter().any(|f| f.id == finding.id));
    let driver = &finding.drivers[0];
    let stats = domain
        .features
        .iter()
        .find(|s| s.feature == driver.feature)
        .context("the domain lacks the driver's feature")?;
    ensure!(
        stats.members == 5 && stats.basis == pb::Basis::Peers as i32,
        "{stats:?}"
    );
    let missing = client
        .get_domain(pb::GetDomainRequest {
            domain: "shop/Deployment/nothing/app".into(),
        })
        .await
        .expect_err("an unknown domain");
    ensure!(missing.code() == Code::NotFound, "{missing:?}");
    Ok(())
}

fn reflection_client(python: &Path, socket: &Path, id: &str) -> anyhow::Result<()> {
    let services = run_python(python, socket, &["services"])?;
    let services: Vec<&str> = services["services"]
        .as_array()
        .context("a list of services")?
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for wanted in ["herd.v1.NodeService", "grpc.health.v1.Health"] {
        ensure!(services.contains(&wanted), "reflection lists {services:?}");
    }
    let health = run_python(
        python,
        socket,
        &["call", "grpc.health.v1.Health", "Check", "{}"],
    )?;
    ensure!(
        health["response"]["status"] == "SERVING",
        "health: {health}"
    );
    let listed = run_python(
        python,
        socket,
        &[
            "call",
            "herd.v1.NodeService",
            "ListFindings",
            r#"{"state": "FINDING_STATE_OPEN", "namespace": "shop"}"#,
        ],
    )?;
    let found = listed["response"]["findings"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["id"] == id));
    ensure!(found, "the reflection client did not list {id}: {listed}");
    Ok(())
}

fn run_python(python: &Path, socket: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/reflect.py");
    let out = Command::new(python)
        .arg(script)
        .arg(socket)
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "reflect.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A venv with grpcio and grpcio-reflection from PyPI, made once under target/.
fn python_client() -> anyhow::Result<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-venv");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import grpc, grpc_reflection, google.protobuf"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    lab::install::ensure(&["python3-venv"])?;
    eprintln!(
        "==> making a Python venv with grpcio and grpcio-reflection in {}",
        venv.display()
    );
    let status = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()?;
    ensure!(status.success(), "python3 -m venv failed");
    let status = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "grpcio",
            "grpcio-reflection",
            "protobuf",
        ])
        .status()?;
    ensure!(
        status.success(),
        "pip install grpcio grpcio-reflection failed"
    );
    ensure!(
        ready(&python),
        "the venv cannot import grpc after installing it"
    );
    Ok(python)
}
