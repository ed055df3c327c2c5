//! The CRI client of the lab, over containerd's unix socket.

use std::time::{Duration, Instant};

use herd_proto::cri::v1::{
    StatusRequest, VersionRequest, runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::Channel;

use super::{LabError, paths::LabPaths};

pub async fn connect(paths: &LabPaths) -> Result<RuntimeServiceClient<Channel>, LabError> {
    let socket = paths.socket();
    let channel = herd_proto::uds::connect(&socket)
        .await
        .map_err(|source| LabError::Connect { socket, source })?;
    Ok(RuntimeServiceClient::new(channel))
}

/// Waits until containerd answers CRI and reports both the runtime and its network ready.
pub async fn wait_ready(
    paths: &LabPaths,
    within: Duration,
) -> Result<RuntimeServiceClient<Channel>, LabError> {
    let deadline = Instant::now() + within;
    loop {
        let last = match try_ready(paths).await {
            Ok(client) => return Ok(client),
            Err(err) => err,
        };
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: format!("containerd ready over CRI (last: {last})"),
                after: within,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn try_ready(paths: &LabPaths) -> Result<RuntimeServiceClient<Channel>, LabError> {
    let mut client = connect(paths).await?;
    client
        .version(VersionRequest {
            version: "v1".to_owned(),
        })
        .await
        .map_err(LabError::cri("Version"))?;
    let status = client
        .status(StatusRequest { verbose: false })
        .await
        .map_err(LabError::cri("Status"))?
        .into_inner();
    let conditions = status.status.unwrap_or_default().conditions;
    let not_ready: Vec<String> = ["RuntimeReady", "NetworkReady"]
        .iter()
        .filter(|kind| !conditions.iter().any(|c| c.r#type == **kind && c.status))
        .map(|kind| kind.to_string())
        .collect();
    if not_ready.is_empty() {
        Ok(client)
    } else {
        Err(LabError::Cri {
            call: "Status",
            status: Box::new(tonic::Status::unavailable(format!(
                "not ready: {}",
                not_ready.join(", ")
            ))),
        })
    }
}
