//! Strangers on the node: a user other than root who runs `herd` against the agent's or the
//! aggregator's unix socket is refused (the socket's mode, 0600, is the access control),
//! while root is answered; and what the agent writes (the socket, `--record`) and the
//! aggregator's store are root's alone. Another CA's certificate is refused on TCP in
//! tests/tls.rs. A request past the size limit gets a status and both servers go on. Root only; no lab (the agent runs from cgroups without a runtime).

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output},
};

use anyhow::{Context as _, ensure};
use herd_proto::herd::v1 as pb;
use herd_tests::{agent::AgentProcess, aggregator::AggregatorProcess, built_binary, require_root};
use tonic::Code;

#[test]
fn a_user_other_than_root_is_refused_and_the_files_are_roots() -> anyhow::Result<()> {
    require_root();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(scenario())
}

async fn scenario() -> anyhow::Result<()> {
    // In /tmp, open to all up to the sockets themselves: the sockets' own mode is what
    // refuses.
    let dir = tempfile::Builder::new()
        .prefix("herd-strangers-")
        .tempdir_in("/tmp")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let herd = dir.path().join("herd");
    std::fs::copy(built_binary("herd")?, &herd)?;

    let aggregator = AggregatorProcess::start(None, dir.path(), &["--duration", "5m"]).await?;
    let agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir.path().join("agent"),
        &[
            "--interval",
            "1s",
            "--runtime-socket",
            &dir.path().join("no-runtime.sock").display().to_string(),
            "--record",
            &dir.path().join("agent/frames.csv").display().to_string(),
            "--aggregator",
            &format!("unix://{}", aggregator.socket().display()),
            "--duration",
            "5m",
        ],
    )
    .await?;
    std::fs::set_permissions(
        dir.path().join("agent"),
        std::fs::Permissions::from_mode(0o755),
    )?;

    for (what, socket, command) in [
        ("the agent", agent.socket(), "info"),
        ("the aggregator", aggregator.socket(), "nodes"),
    ] {
        let root = run(&herd, socket, command, false)?;
        ensure!(
            root.status.success(),
            "root asks {what}: {}",
            String::from_utf8_lossy(&root.stderr)
        );
        let nobody = run(&herd, socket, command, true)?;
        let said = String::from_utf8_lossy(&nobody.stderr);
        ensure!(
            !nobody.status.success() && said.contains("permission denied"),
            "nobody asks {what}: {} {said}",
            nobody.status
        );
    }

    // A query past the size limit is refused with a status, and the server goes on.
    let huge = pb::ListFindingsRequest {
        namespace: "x".repeat(100 * 1024),
        ..Default::default()
    };
    let mut node = agent.client().await?;
    let refused = node
        .list_findings(huge.clone())
        .await
        .expect_err("an over-size request to the agent");
    oversize(&refused, "the agent")?;
    node.get_info(pb::GetInfoRequest {}).await?;
    let mut cluster = aggregator.client().await?;
    let refused = cluster
        .list_findings(huge)
        .await
        .expect_err("an over-size query to the aggregator");
    oversize(&refused, "the aggregator")?;
    cluster.list_nodes(pb::ListNodesRequest {}).await?;

    let mode = |path: &Path| -> anyhow::Result<u32> {
        Ok(std::fs::metadata(path)
            .with_context(|| path.display().to_string())?
            .permissions()
            .mode()
            & 0o777)
    };
    for (path, want) in [
        (agent.socket().to_owned(), 0o600),
        (aggregator.socket().to_owned(), 0o600),
        (dir.path().join("agent/frames.csv"), 0o600),
        (dir.path().join("data"), 0o700),
        (dir.path().join("data/findings.redb"), 0o600),
    ] {
        ensure!(
            mode(&path)? == want,
            "{} is {:o}, not {want:o}",
            path.display(),
            mode(&path)?
        );
    }
    Ok(())
}

/// The status of a request past the decoding limit: tonic's, naming the size.
fn oversize(status: &tonic::Status, what: &str) -> anyhow::Result<()> {
    ensure!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted)
            && status.message().contains("too large"),
        "{what}, an over-size request: {status:?}"
    );
    Ok(())
}

/// `herd --server <socket> <command>`, as root or as nobody.
fn run(herd: &Path, socket: &Path, command: &str, as_nobody: bool) -> anyhow::Result<Output> {
    let mut cmd = if as_nobody {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(herd);
        cmd
    } else {
        Command::new(herd)
    };
    cmd.arg("--server")
        .arg(socket)
        .arg(command)
        .output()
        .context("running herd")
}
