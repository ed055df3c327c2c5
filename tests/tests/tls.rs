//! TLS on the TCP endpoints, with certificates made by the openssl command line as the README
//! shows: an agent with a certificate from the cluster's CA sends its summaries to the
//! aggregator over mutual TLS and its node shows in `herd nodes`; `herd` without a
//! certificate, with one from another CA, or in plain text is refused, and the aggregator goes
//! on serving; the agent's own `--listen` answers `herd` with a certificate and refuses it
//! without. Daemons asked to listen on TCP without TLS or `--insecure` do not start. Root
//! only: the agent loads eBPF.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use herd_tests::{
    agent::AgentProcess,
    aggregator::AggregatorProcess,
    built_binary,
    certs::{Ca, Issued},
    export::free_port,
    require_root,
};

const NODE: &str = "tls-node";

#[test]
fn mutual_tls_lets_the_cluster_in_and_keeps_strangers_out() -> anyhow::Result<()> {
    require_root();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(scenario())
}

/// `herd --server <server> <tls args> <command…>`, with nothing from the environment.
fn herd(server: &str, tls: &[String], command: &[&str]) -> anyhow::Result<Output> {
    Command::new(built_binary("herd")?)
        .args(["--server", server])
        .args(tls)
        .args(command)
        .env_remove("HERD_SERVER")
        .env_remove("HERD_CA")
        .env_remove("HERD_CERT")
        .env_remove("HERD_KEY")
        .stdin(Stdio::null())
        .output()
        .context("running herd")
}

fn text(out: &Output) -> String {
    format!(
        "exit {}; stdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `herd` is refused with exit 1 and a message that says `why`.
fn assert_refused(out: &Output, why: &str) -> anyhow::Result<()> {
    ensure!(
        out.status.code() == Some(1) && String::from_utf8_lossy(&out.stderr).contains(why),
        "herd should be refused with {why:?}: {}",
        text(out)
    );
    Ok(())
}

/// `herd … nodes` lists this test's node, within `within`.
async fn node_listed(server: &str, tls: &[String], within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let out = herd(server, tls, &["nodes"])?;
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(NODE) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{NODE} not in `herd nodes` within {within:?}: {}",
                text(&out)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A daemon that must refuse to start: it exits non-zero at once, saying `why`.
fn refuses_to_start(binary: &str, args: &[&str], why: &str) -> anyhow::Result<()> {
    let out = Command::new(built_binary(binary)?)
        .args(args)
        .env("HERD_LOG_TARGET", "stderr")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {binary}"))?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(why),
        "{binary} {args:?} should refuse to start saying {why:?}: {}",
        text(&out)
    );
    Ok(())
}

async fn scenario() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::new(dir.path(), "herd-ca")?;
    let other_ca = Ca::new(dir.path(), "other-ca")?;
    let aggregator_cert = ca.server("aggregator", &["DNS:localhost", "IP:127.0.0.1"])?;
    // The agent serves its own API and is the aggregator's client with one certificate.
    let agent_cert = ca.server(NODE, &["IP:127.0.0.1"])?;
    let operator = ca.client("operator")?;
    let stranger = other_ca.client("stranger")?;

    start_up_is_refused_without_tls(dir.path(), &ca, &aggregator_cert)?;

    let aggregator_port = free_port()?;
    let aggregator_url = format!("https://127.0.0.1:{aggregator_port}");
    let mut aggregator_args = vec![
        "--window".to_owned(),
        "1s".to_owned(),
        "--duration".to_owned(),
        "5m".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{aggregator_port}"),
    ];
    aggregator_args.extend(aggregator_cert.daemon_args());
    let aggregator = AggregatorProcess::start(None, dir.path(), &aggregator_args).await?;

    let agent_port = free_port()?;
    let mut agent_args = vec![
        "--interval",
        "1s",
        "--discovery-interval",
        "1s",
        "--node-name",
        NODE,
        "--duration",
        "5m",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    agent_args.extend(["--aggregator".to_owned(), aggregator_url.clone()]);
    agent_args.extend(["--listen".to_owned(), format!("127.0.0.1:{agent_port}")]);
    agent_args.extend(agent_cert.daemon_args());
    let agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir.path().join("agent"),
        &agent_args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await?;

    let outcome = checks(&aggregator_url, agent_port, &operator, &stranger, &other_ca).await;
    if outcome.is_err() {
        eprintln!(
            "the aggregator's log:\n{}\nthe agent's log:\n{}",
            aggregator.log_text(),
            agent.log_text()
        );
    }
    agent.stop()?;
    outcome
}

fn start_up_is_refused_without_tls(dir: &Path, ca: &Ca, cert: &Issued) -> anyhow::Result<()> {
    let data = dir.join("refused");
    let data = data.to_str().context("temp dir")?;
    let aggregator = [
        "--socket",
        "",
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
    ];
    refuses_to_start(
        "herd-aggregator",
        &aggregator,
        "--listen serves TCP, which needs TLS: pass --tls-cert, --tls-key and --tls-ca",
    )?;
    let cert_path = cert.cert.to_str().context("cert path")?;
    refuses_to_start(
        "herd-aggregator",
        &[&aggregator[..], &["--tls-cert", cert_path]].concat(),
        "--tls-cert given without --tls-key and --tls-ca",
    )?;
    // The CA's key beside the aggregator's certificate: caught at start, not at the first
    // handshake.
    let wrong_key = [
        "--tls-cert",
        cert_path,
        "--tls-key",
        ca.key.to_str().context("key path")?,
        "--tls-ca",
        ca.cert.to_str().context("CA path")?,
    ];
    refuses_to_start(
        "herd-aggregator",
        &[&aggregator[..], &wrong_key].concat(),
        "does not match the certificate",
    )?;
    refuses_to_start(
        "herd-agent",
        &["--socket", "", "--listen", "127.0.0.1:0"],
        "--listen serves TCP, which needs TLS",
    )
}

async fn checks(
    aggregator: &str,
    agent_port: u16,
    operator: &Issued,
    stranger: &Issued,
    other_ca: &Ca,
) -> anyhow::Result<()> {
    let with_cert = operator.client_args();
    // The agent's summaries came in over mutual TLS: its node is listed.
    node_listed(aggregator, &with_cert, Duration::from_secs(30)).await?;

    let ca_only = ["--ca".to_owned(), operator.ca.display().to_string()];
    assert_refused(
        &herd(aggregator, &ca_only, &["nodes"])?,
        "asks for a client certificate signed by its CA",
    )?;
    node_listed(aggregator, &with_cert, Duration::ZERO).await?;

    // A certificate from another CA, whose client trusts the right CA for the server.
    let foreign = Issued {
        ca: operator.ca.clone(),
        ..stranger.clone()
    }
    .client_args();
    assert_refused(
        &herd(aggregator, &foreign, &["nodes"])?,
        "takes only client certificates signed by its CA",
    )?;
    node_listed(aggregator, &with_cert, Duration::ZERO).await?;

    let plain = aggregator.replace("https://", "http://");
    assert_refused(&herd(&plain, &[], &["nodes"])?, "closed the connection")?;
    node_listed(aggregator, &with_cert, Duration::ZERO).await?;

    // The client checks the server too: the aggregator's certificate is not from other_ca.
    let wrong_trust = Issued {
        ca: other_ca.cert.clone(),
        ..operator.clone()
    }
    .client_args();
    assert_refused(
        &herd(aggregator, &wrong_trust, &["nodes"])?,
        "refused the TLS handshake",
    )?;

    // The agent's own TCP API: mutual TLS as well.
    let agent = format!("https://127.0.0.1:{agent_port}");
    let info = herd(&agent, &with_cert, &["info"])?;
    ensure!(
        info.status.success() && String::from_utf8_lossy(&info.stdout).contains(NODE),
        "herd info over TLS should name {NODE}: {}",
        text(&info)
    );
    let findings = herd(&agent, &with_cert, &["findings"])?;
    ensure!(
        findings.status.success(),
        "herd findings: {}",
        text(&findings)
    );
    assert_refused(
        &herd(&agent, &ca_only, &["findings"])?,
        "asks for a client certificate signed by its CA",
    )?;
    assert_refused(
        &herd(&agent.replace("https://", "http://"), &[], &["findings"])?,
        "closed the connection",
    )?;
    Ok(())
}
