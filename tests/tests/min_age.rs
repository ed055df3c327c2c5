//! `--min-age` at its default, against the lab: a replica that replaces one of a herd is
//! listed but not judged while young, is judged once it is old enough, and neither it nor
//! its peers get a finding at the transition. Root only; it takes the lab.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use herd_proto::herd::v1::{self as pb, node_service_client::NodeServiceClient};
use herd_tests::{
    agent::AgentProcess,
    built_binary, eval,
    lab::{self, Lab, LabSpec, Workload},
    require_root,
};
use tonic::transport::Channel;

const NAMESPACE: &str = "young";
const WINDOW: Duration = Duration::from_secs(2);
/// The replica that is replaced by a young one.
const REPLACED: u32 = 3;

#[test]
fn a_young_replica_is_judged_once_old_enough_without_a_finding() -> anyhow::Result<()> {
    require_root();
    lab::run_test(scenario())
}

fn workload() -> Workload {
    Workload::deployment("web")
        .namespace(NAMESPACE)
        .replicas(4)
        .cpu_millis(500)
        .memory_mib(64)
        .command(eval::STEADY_LOAD.iter().copied())
}

async fn scenario() -> anyhow::Result<()> {
    let workload = workload();
    let mut lab = Lab::up(&LabSpec::new().workload(workload.clone())).await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-min-age-test");
    let _ = std::fs::remove_dir_all(&dir);
    let window = format!("{}ms", WINDOW.as_millis());
    // No --min-age: the default is what is under test.
    let agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir,
        &[
            "--interval",
            &window,
            "--discovery-interval",
            "1s",
            "--runtime-socket",
            &lab.socket().display().to_string(),
            "--duration",
            "15m",
        ],
    )
    .await?;
    let mut client = agent.client().await?;
    let info = client.get_info(pb::GetInfoRequest {}).await?.into_inner();
    let min_age = duration(info.min_age).context("GetInfo without min_age")?;
    ensure!(
        min_age >= WINDOW * 5,
        "the default --min-age is {min_age:?}: too short for this test to see a young replica"
    );
    // A container is judged from the first window that ends after it is old enough.
    let slack = WINDOW * 2 + Duration::from_secs(2);

    // The first replicas are young too: wait until they are judged, so that the replaced
    // one is young among judged peers.
    let first = watch(&mut client, min_age, slack, 4, |_| true).await?;
    ensure!(
        first.saw_young,
        "no replica was ever seen young and unjudged: {first:?}"
    );

    let pods = lab.pods().await?;
    let old = pods
        .iter()
        .find(|p| {
            p.namespace == NAMESPACE
                && p.annotations.get("herd.lab/replica") == Some(&REPLACED.to_string())
        })
        .context("the replica to replace")?
        .clone();
    lab.remove_pod(&old).await?;
    let new = lab.add_pod(&workload, REPLACED).await?;
    let new_id = new
        .containers
        .first()
        .context("the new replica's container")?
        .id
        .clone();
    let replaced = watch(&mut client, min_age, slack, 1, |c| c.id == new_id).await?;
    ensure!(
        replaced.saw_young,
        "the new replica was never seen young and unjudged: {replaced:?}"
    );

    // A few windows past the transition: a finding opened by the newcomer joining its
    // peers would show up here.
    tokio::time::sleep(WINDOW * 5).await;
    let findings = client
        .list_findings(pb::ListFindingsRequest {
            namespace: NAMESPACE.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .findings;
    ensure!(
        findings.is_empty(),
        "findings on a healthy herd: {:?}",
        findings.iter().map(|f| &f.summary).collect::<Vec<_>>()
    );
    agent.stop()?;
    lab.down().await?;
    Ok(())
}

/// What [`watch`] saw.
#[derive(Debug, Default)]
struct Watched {
    /// A watched container was listed younger than the minimum age and not judged.
    saw_young: bool,
    /// Every (container, age, judged) read, for the failure message.
    last: Vec<(String, Duration, bool)>,
}

/// Lists the lab's containers every second until `count` of them, all matching `pick`, are
/// judged; fails if one is judged while younger than `min_age`, or is still not judged well
/// after it.
async fn watch(
    client: &mut NodeServiceClient<Channel>,
    min_age: Duration,
    slack: Duration,
    count: usize,
    pick: impl Fn(&pb::Container) -> bool,
) -> anyhow::Result<Watched> {
    let deadline = Instant::now() + min_age + slack * 4 + Duration::from_secs(30);
    let mut watched = Watched::default();
    loop {
        let containers: Vec<pb::Container> = client
            .list_containers(pb::ListContainersRequest {
                namespace: NAMESPACE.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .containers
            .into_iter()
            .filter(|c| pick(c))
            .collect();
        watched.last = containers
            .iter()
            .map(|c| (c.id.clone(), duration(c.age).unwrap_or_default(), c.judged))
            .collect();
        for (id, age, judged) in &watched.last {
            ensure!(
                !judged || *age >= min_age,
                "{id} is judged at age {age:?}, under the minimum {min_age:?}"
            );
            ensure!(
                *judged || *age < min_age + slack,
                "{id} is not judged at age {age:?}, past the minimum {min_age:?}"
            );
            watched.saw_young |= !judged;
        }
        if watched.last.len() == count && watched.last.iter().all(|(_, _, judged)| *judged) {
            return Ok(watched);
        }
        ensure!(
            Instant::now() < deadline,
            "not all judged in time: {watched:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn duration(d: Option<prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
}
