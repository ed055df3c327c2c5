//! `herd-agent health`: asks the agent's `grpc.health.v1.Health` over its unix socket and
//! exits 0 only when the service answers SERVING. It is the DaemonSet's readiness and
//! liveness probe: kubelet's own gRPC probe speaks plain text to a pod port, and the agent's
//! API has no plain-text TCP port (TCP is TLS only); through the root-only socket the probe
//! checks the very endpoint `herd` uses, and opens nothing new.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Args;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[derive(Args, Clone, Debug)]
pub struct HealthArgs {
    /// The agent's API socket (as `run --socket`).
    #[arg(long, default_value = "/run/herd/agent.sock")]
    socket: PathBuf,
    /// The service asked about; "" asks about the server as a whole.
    #[arg(long, default_value = "herd.v1.NodeService")]
    service: String,
    /// How long the answer may take.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Prints the status; fails unless it is SERVING.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let socket = args.socket.display().to_string();
    let status = tokio::time::timeout(args.timeout, async {
        let channel = herd_proto::uds::connect(&args.socket)
            .await
            .with_context(|| format!("no agent answers at {socket}"))?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await
            .with_context(|| format!("grpc.health.v1 Check at {socket}"))?;
        anyhow::Ok(response.into_inner().status())
    })
    .await
    .with_context(|| format!("no health answer from {socket} within {:?}", args.timeout))??;
    println!("{}: {}", display(&args.service), status.as_str_name());
    anyhow::ensure!(
        status == ServingStatus::Serving,
        "{} at {socket} is {}",
        display(&args.service),
        status.as_str_name()
    );
    Ok(())
}

fn display(service: &str) -> &str {
    if service.is_empty() {
        "the server"
    } else {
        service
    }
}
