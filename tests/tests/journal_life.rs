//! The agent's life in a real journal: a real `systemd-journald`, private to the test, gets
//! one entry each when the agent starts, when it finds no container runtime and goes on from
//! cgroups, when its aggregator dies (killed with SIGKILL), and when the aggregator is back;
//! however many windows and polls fail in between. Root only; no lab.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, ensure};
use herd_tests::{
    aggregator::AggregatorProcess,
    built_binary,
    export::{self, field, journal_entries},
    lab, require_root,
};
use serde_json::Value;

const AGENT_SECS: u64 = 36;

#[test]
fn the_agents_life_is_in_the_journal_once_each() -> anyhow::Result<()> {
    require_root();
    lab::install::ensure(export::PACKAGES)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(scenario())
}

async fn scenario() -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-journal-life-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let aggregator_args = ["--window", "1s", "--duration", "2m"];

    let mut aggregator = AggregatorProcess::start(None, &dir, &aggregator_args).await?;
    let mut agent = export::under_private_journal(&dir, built_binary("herd-agent")?)
        .args(["--log-target", "journald", "--interval", "1s"])
        .args(["--discovery-interval", "1s"])
        .args(["--duration", &format!("{AGENT_SECS}s")])
        .arg("--aggregator")
        .arg(format!("unix://{}", aggregator.socket().display()))
        .arg("--socket")
        .arg(dir.join("agent.sock"))
        // No runtime answers here: discovery goes on from cgroups.
        .arg("--runtime-socket")
        .arg(dir.join("no-runtime.sock"))
        .spawn()
        .context("starting the agent under a private journald")?;

    // Summaries flow for a while, the aggregator dies for a while, then it is back.
    tokio::time::sleep(Duration::from_secs(10)).await;
    aggregator.kill()?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let aggregator = AggregatorProcess::start(None, &dir, &aggregator_args).await?;
    let status = tokio::task::spawn_blocking(move || agent.wait()).await??;
    drop(aggregator);
    let stderr = std::fs::read_to_string(dir.join("agent.stderr")).unwrap_or_default();
    ensure!(
        status.success(),
        "the agent or journald failed ({status}); stderr: {stderr}"
    );
    check(&journal_entries(&dir.join("journal.json"))?)
}

fn check(journal: &[Value]) -> anyhow::Result<()> {
    ensure!(!journal.is_empty(), "journald holds no herd-agent entry");
    // tracing-journald: info is notice (5), warn is warning (4).
    let once = |what: &str, priority: &str| -> anyhow::Result<()> {
        let entries: Vec<&Value> = journal
            .iter()
            .filter(|e| field(e, "MESSAGE").contains(what))
            .collect();
        ensure!(
            entries.len() == 1,
            "one entry saying `{what}`, not {}: {entries:#?}",
            entries.len()
        );
        ensure!(
            field(entries[0], "PRIORITY") == priority
                && field(entries[0], "SYSLOG_IDENTIFIER") == "herd-agent",
            "`{what}` at priority {priority} from herd-agent: {}",
            entries[0]
        );
        Ok(())
    };
    once("started, watching with", "5")?;
    once("discovery goes on from cgroups alone", "4")?;
    once("lost the aggregator", "4")?;
    once("the aggregator is reachable again", "5")?;
    let messages: Vec<&str> = journal.iter().map(|e| field(e, "MESSAGE")).collect();
    let lost = messages
        .iter()
        .position(|m| m.contains("lost the aggregator"));
    let back = messages
        .iter()
        .position(|m| m.contains("the aggregator is reachable again"));
    ensure!(lost < back, "lost, then back: {messages:#?}");
    Ok(())
}
