//! Request limits, against the real daemons over their unix sockets: a flood of queries to
//! the aggregator or to the agent gets `RESOURCE_EXHAUSTED` past the rate, the next query
//! after the bucket refills is answered, and meanwhile the agent's summaries keep arriving
//! and its health check keeps answering; a summary over the aggregator's 8 MiB limit is
//! refused with a status naming its size, and the aggregator goes on with that node's last
//! good summary. Root only (the agent's preflight); no lab (the agent runs from cgroups
//! without a runtime).

use std::{
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, ensure};
use herd_proto::herd::v1::{self as pb, aggregator_service_client::AggregatorServiceClient};
use herd_tests::{
    agent::AgentProcess,
    aggregator::{AggregatorProcess, eventually},
    built_binary, require_root,
};
use tonic::Code;

const NODE: &str = "limits-node";
/// The limit both daemons run with here: small, so that a flood of a few seconds passes it.
const RATE: u32 = 5;
const BURST: u32 = 10;
const FLOOD: Duration = Duration::from_secs(3);
/// The aggregator's limit on one summary.
const MAX_SUMMARY_BYTES: usize = 8 * 1024 * 1024;

#[test]
fn floods_of_queries_are_refused_past_the_rate_and_summaries_go_on() -> anyhow::Result<()> {
    require_root();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(scenario())
}

/// What a flood got back.
#[derive(Debug, Default)]
struct Flooded {
    answered: u32,
    refused: u32,
    /// The first refusal's message.
    message: String,
}

/// Calls `ask` from 8 concurrent tasks for [`FLOOD`], counting answers and refusals; any
/// other status fails the test.
async fn flood<F, Fut>(ask: F) -> anyhow::Result<Flooded>
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future<Output = Result<(), tonic::Status>>,
{
    let until = Instant::now() + FLOOD;
    let tasks = (0..8).map(|_| {
        let ask = ask.clone();
        async move {
            let mut got = Flooded::default();
            while Instant::now() < until {
                match ask().await {
                    Ok(()) => got.answered += 1,
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        got.refused += 1;
                        if got.message.is_empty() {
                            got.message = status.message().to_owned();
                        }
                    }
                    Err(status) => anyhow::bail!("a query in the flood: {status:?}"),
                }
            }
            Ok(got)
        }
    });
    let mut total = Flooded::default();
    for got in futures_util::future::join_all(tasks).await {
        let got = got?;
        total.answered += got.answered;
        total.refused += got.refused;
        if total.message.is_empty() {
            total.message = got.message;
        }
    }
    Ok(total)
}

/// The flood was cut at the rate: some refused, no more answered than the bucket allows.
fn held_to_the_rate(what: &str, got: &Flooded) -> anyhow::Result<()> {
    let allowed = BURST + RATE * FLOOD.as_secs() as u32 + RATE;
    ensure!(
        got.refused > 0 && got.answered <= allowed,
        "{what}: {} answered, {} refused; at most {allowed} should be answered",
        got.answered,
        got.refused
    );
    ensure!(
        got.message.contains(&format!(
            "at most {RATE} queries a second (bursts of {BURST})"
        )) && got.message.contains("try again in"),
        "{what}: the refusal names the limit: {:?}",
        got.message
    );
    Ok(())
}

async fn node_status(aggregator: &AggregatorProcess) -> anyhow::Result<Option<pb::NodeStatus>> {
    let nodes = aggregator
        .client()
        .await?
        .list_nodes(pb::ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    Ok(nodes.into_iter().find(|n| n.node == NODE))
}

/// Until the bucket holds a full burst again.
async fn refill() {
    tokio::time::sleep(Duration::from_secs_f64(
        f64::from(BURST) / f64::from(RATE) + 0.5,
    ))
    .await;
}

async fn scenario() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("herd-limits-")
        .tempdir_in("/tmp")?;
    let limits = [
        "--query-rate".to_owned(),
        RATE.to_string(),
        "--query-burst".to_owned(),
        BURST.to_string(),
    ];
    let mut aggregator_args = vec!["--window", "1s", "--duration", "5m"];
    aggregator_args.extend(limits.iter().map(String::as_str));
    let aggregator = AggregatorProcess::start(None, dir.path(), &aggregator_args).await?;
    let upstream = format!("unix://{}", aggregator.socket().display());
    let no_runtime = dir.path().join("no-runtime.sock").display().to_string();
    let mut agent_args = vec![
        "--interval",
        "1s",
        "--node-name",
        NODE,
        "--runtime-socket",
        &no_runtime,
        "--aggregator",
        &upstream,
        "--duration",
        "5m",
    ];
    agent_args.extend(limits.iter().map(String::as_str));
    let mut agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir.path().join("agent"),
        &agent_args,
    )
    .await?;
    eventually(
        Duration::from_secs(30),
        "the aggregator has the agent's summaries",
        async || Ok(node_status(&aggregator).await?.filter(|n| n.summaries >= 2)),
    )
    .await?;
    refill().await;

    // The aggregator, flooded with queries: refused past the rate, summaries go on.
    let before = node_status(&aggregator).await?.context("the node")?;
    let cluster = aggregator.client().await?;
    let got = flood(move || {
        let mut cluster = cluster.clone();
        async move {
            cluster.list_nodes(pb::ListNodesRequest {}).await?;
            Ok(())
        }
    })
    .await?;
    eprintln!("the aggregator, flooded: {got:?}");
    held_to_the_rate("the aggregator", &got)?;
    refill().await;
    let after = node_status(&aggregator)
        .await
        .context("the first query after the bucket refilled")?
        .context("the node")?;
    ensure!(
        after.summaries >= before.summaries + 3 && after.summaries_lost == 0,
        "summaries arrive through the flood: {} before, {} after ({} lost)",
        before.summaries,
        after.summaries,
        after.summaries_lost
    );

    // The agent, flooded: refused past the rate; its health check still answers.
    let node = agent.client().await?;
    let health = Command::new(built_binary("herd-agent")?)
        .args(["health", "--socket"])
        .arg(agent.socket())
        .spawn()
        .context("starting herd-agent health")?;
    let got = flood(move || {
        let mut node = node.clone();
        async move {
            node.get_info(pb::GetInfoRequest {}).await?;
            Ok(())
        }
    })
    .await?;
    eprintln!("the agent, flooded: {got:?}");
    held_to_the_rate("the agent", &got)?;
    let health = health.wait_with_output()?;
    ensure!(
        health.status.success(),
        "the agent's health check during the flood: {:?}",
        health
    );
    refill().await;
    agent
        .client()
        .await?
        .get_info(pb::GetInfoRequest {})
        .await
        .context("the first query to the agent after the bucket refilled")?;

    // A summary past 8 MiB under the agent's node name: refused whole, naming the size.
    let before = node_status(&aggregator).await?.context("the node")?;
    let values = MAX_SUMMARY_BYTES / 4 + 1024;
    let oversize = pb::NodeSummary {
        node: NODE.into(),
        agent_version: "0.1.0".into(),
        at: Some(SystemTime::now().into()),
        sequence: u64::MAX / 2,
        features: vec!["cpu_usage_cores".into()],
        values: vec![1.0; values],
        ..Default::default()
    };
    let mut push =
        AggregatorServiceClient::new(herd_proto::uds::connect(aggregator.socket()).await?);
    let refused = push
        .push_summaries(futures_util::stream::iter([oversize]))
        .await
        .expect_err("a summary over 8 MiB is refused");
    eprintln!("the over-size summary: {refused:?}");
    ensure!(
        matches!(refused.code(), Code::OutOfRange | Code::ResourceExhausted)
            && refused.message().contains("too large")
            && refused.message().contains(&MAX_SUMMARY_BYTES.to_string()),
        "the refusal names the size and the limit: {refused:?}"
    );
    ensure!(agent.running(), "the agent goes on:\n{}", agent.log_text());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = node_status(&aggregator)
        .await
        .context("the aggregator answers after the over-size summary")?
        .context("the node is still known")?;
    ensure!(
        after.summaries >= before.summaries + 2
            && after.summaries_lost == 0
            && !after.silent
            && after.agent_version == before.agent_version
            && after.health.is_some(),
        "the node's summaries go on from its last good one: {before:?} then {after:?}"
    );
    Ok(())
}
