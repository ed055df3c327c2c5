//! The container runtime goes away under a running agent, against the lab: containerd is
//! killed (SIGKILL) and restarted, and then stopped with its socket gone for a minute. Each
//! time the agent goes on from cgroups (windows keep coming, the containers stay listed),
//! says so in one warning, says once when the runtime is back, and names new pods again.
//! Root only; it takes the lab.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use herd_proto::herd::v1::{self as pb, node_service_client::NodeServiceClient};
use herd_tests::{
    agent::AgentProcess,
    aggregator::eventually,
    built_binary,
    lab::{self, Lab, LabSpec, Workload},
    require_root,
};
use tonic::transport::Channel;

const NAMESPACE: &str = "runtime-loss";
const WINDOW: Duration = Duration::from_secs(2);
const SOCKET_GONE: Duration = Duration::from_secs(60);
const LOST: &str = "discovery goes on from cgroups alone";
const BACK: &str = "container runtime answering";

#[test]
fn the_agent_goes_on_from_cgroups_while_the_runtime_is_away() -> anyhow::Result<()> {
    require_root();
    lab::run_test(scenario())
}

/// The runtime's socket moved aside, put back when dropped, pass or fail (unless something
/// has made a new one there meanwhile).
struct SocketAway {
    socket: PathBuf,
    away: PathBuf,
}

impl SocketAway {
    fn take(socket: &Path) -> anyhow::Result<Self> {
        let away = socket.with_extension("sock.away");
        std::fs::rename(socket, &away)
            .with_context(|| format!("moving {} aside", socket.display()))?;
        Ok(Self {
            socket: socket.to_owned(),
            away,
        })
    }
}

impl Drop for SocketAway {
    fn drop(&mut self) {
        if !self.socket.exists() {
            let _ = std::fs::rename(&self.away, &self.socket);
        } else {
            let _ = std::fs::remove_file(&self.away);
        }
    }
}

async fn info(client: &mut NodeServiceClient<Channel>) -> anyhow::Result<pb::GetInfoResponse> {
    Ok(client.get_info(pb::GetInfoRequest {}).await?.into_inner())
}

async fn containers(client: &mut NodeServiceClient<Channel>) -> anyhow::Result<Vec<pb::Container>> {
    Ok(client
        .list_containers(pb::ListContainersRequest {
            namespace: String::new(),
            domain: String::new(),
            pod: String::new(),
        })
        .await?
        .into_inner()
        .containers)
}

/// Waits until the agent lists a container of the pod `name` under its namespace, pod and
/// container name.
async fn named(client: &mut NodeServiceClient<Channel>, pod: &str) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(20),
        &format!("the agent names pod {pod}"),
        async || {
            Ok(containers(client)
                .await?
                .iter()
                .any(|c| c.pod == pod && c.namespace == NAMESPACE && c.name == "app")
                .then_some(()))
        },
    )
    .await
}

/// Checks that windows go on and the containers stay listed for `during`, with the runtime
/// away; returns how many windows came.
async fn goes_on(
    client: &mut NodeServiceClient<Channel>,
    during: Duration,
    listed: usize,
) -> anyhow::Result<u64> {
    let first = info(client).await?.windows;
    let step = Duration::from_secs(5).min(during);
    let mut waited = Duration::ZERO;
    while waited < during {
        tokio::time::sleep(step).await;
        waited += step;
        let now = info(client).await?;
        ensure!(
            !now.runtime.as_ref().is_some_and(|r| r.connected),
            "the agent says the runtime answers: {:?}",
            now.runtime
        );
        let count = containers(client).await?.len();
        ensure!(
            count == listed,
            "{count} containers listed without the runtime, {listed} before"
        );
    }
    let windows = info(client).await?.windows - first;
    let expected = during.as_secs() / WINDOW.as_secs();
    ensure!(
        windows + 2 >= expected,
        "{windows} windows in {during:?} without the runtime (a window is {WINDOW:?})"
    );
    Ok(windows)
}

async fn scenario() -> anyhow::Result<()> {
    let workload = Workload::deployment("web").namespace(NAMESPACE).replicas(3);
    let mut lab = Lab::up(&LabSpec::new().workload(workload.clone())).await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-runtime-loss-test");
    let _ = std::fs::remove_dir_all(&dir);
    let socket = lab.socket();
    let agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir,
        &[
            "--interval",
            &format!("{}s", WINDOW.as_secs()),
            "--discovery-interval",
            "1s",
            "--min-age",
            "0s",
            "--runtime-socket",
            &socket.display().to_string(),
            "--duration",
            "15m",
        ],
    )
    .await?;
    let mut client = agent.client().await?;
    let pods = lab.pods().await?;
    for pod in &pods {
        named(&mut client, &pod.name).await?;
    }
    let listed = containers(&mut client).await?.len();
    let lines = |what: &str| agent.log_text().matches(what).count();
    ensure!(
        lines(LOST) == 0 && lines(BACK) == 1,
        "the runtime answered from the start:\n{}",
        agent.log_text()
    );

    // Killed, and started again a few windows later.
    lab.kill_runtime()?;
    let windows = goes_on(&mut client, 3 * WINDOW, listed).await?;
    eprintln!("containerd killed: {windows} windows without it");
    lab.restart_runtime().await?;
    eventually(
        Duration::from_secs(15),
        "the agent says the runtime is back",
        async || Ok((lines(BACK) == 2).then_some(())),
    )
    .await
    .with_context(|| agent.log_text())?;
    ensure!(
        lines(LOST) == 1,
        "one warning for the outage:\n{}",
        agent.log_text()
    );
    let late = lab.add_pod(&workload, 3).await?;
    named(&mut client, &late.name).await?;
    let listed = listed + 1;

    // Stopped, with its socket gone for a minute.
    lab.kill_runtime()?;
    let away = SocketAway::take(&socket)?;
    let windows = goes_on(&mut client, SOCKET_GONE, listed).await?;
    eprintln!("socket gone: {windows} windows without it");
    ensure!(
        lines(LOST) == 2,
        "one warning for the second outage:\n{}",
        agent.log_text()
    );
    let reason = info(&mut client).await?.runtime.unwrap_or_default().reason;
    ensure!(
        reason.contains("no container runtime socket at"),
        "GetInfo says why the runtime is away: {reason:?}"
    );
    drop(away);
    lab.restart_runtime().await?;
    eventually(
        Duration::from_secs(15),
        "the agent says the runtime is back again",
        async || Ok((lines(BACK) == 3).then_some(())),
    )
    .await
    .with_context(|| agent.log_text())?;
    let later = lab.add_pod(&workload, 4).await?;
    named(&mut client, &later.name).await?;
    ensure!(
        lines(LOST) == 2 && lines(BACK) == 3,
        "one line each way per outage:\n{}",
        agent.log_text()
    );
    // The API waits for its clients to go before it stops.
    drop(client);
    drop(agent);
    lab.down().await?;
    Ok(())
}
