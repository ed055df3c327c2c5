//! The container runtime's view over CRI: pods and containers with their names, labels and
//! images. Two list calls per poll, whatever the number of containers: containerd 1.6 has no
//! event stream (`GetContainerEvents` is unimplemented), so the agent polls, cheaply.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use herd_proto::cri::v1::{
    Container, ContainerState, ListContainersRequest, ListPodSandboxRequest, PodSandbox,
    runtime_service_client::RuntimeServiceClient,
};
use thiserror::Error;
use tonic::transport::Channel;

use crate::error_chain::error_chain;

/// Where runtimes put their CRI socket, probed in this order when none is configured.
pub const COMMON_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/cri-dockerd.sock",
];

/// How long one CRI call may take before the runtime counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("no container runtime socket found (looked at {})", list(.0))]
    NoSocket(Vec<PathBuf>),
    #[error("no container runtime socket at {0}")]
    Missing(PathBuf),
    #[error("cannot connect to the container runtime at {path}: {}", error_chain(.source))]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("the container runtime at {path} failed {call}: {status}")]
    Call {
        path: PathBuf,
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("the container runtime at {path} did not answer {call} within {CALL_TIMEOUT:?}")]
    Timeout { path: PathBuf, call: &'static str },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// A pod as the runtime knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

/// A container as the runtime knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub image: String,
    pub running: bool,
    pub created_at: SystemTime,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

/// Everything the runtime said in one poll.
#[derive(Clone, Debug, Default)]
pub struct RuntimeSnapshot {
    /// Pods by sandbox id.
    pub pods: HashMap<String, Pod>,
    /// Containers by container id.
    pub containers: HashMap<String, RuntimeContainer>,
}

impl RuntimeSnapshot {
    /// Whether `id` is a pod sandbox (the pause container), not a workload container.
    pub fn is_sandbox(&self, id: &str) -> bool {
        self.pods.contains_key(id)
    }
}

/// A CRI client on one runtime socket.
pub struct CriClient {
    path: PathBuf,
    client: RuntimeServiceClient<Channel>,
}

impl CriClient {
    /// Connects to `socket`, or to the first of [`COMMON_SOCKETS`] that exists.
    pub async fn connect(socket: Option<&Path>) -> Result<Self, RuntimeError> {
        let path = match socket {
            Some(path) if !path.exists() => return Err(RuntimeError::Missing(path.to_owned())),
            Some(path) => path.to_owned(),
            None => COMMON_SOCKETS
                .iter()
                .map(PathBuf::from)
                .find(|path| path.exists())
                .ok_or_else(|| {
                    RuntimeError::NoSocket(COMMON_SOCKETS.iter().map(PathBuf::from).collect())
                })?,
        };
        let channel =
            herd_proto::uds::connect(&path)
                .await
                .map_err(|source| RuntimeError::Connect {
                    path: path.clone(),
                    source,
                })?;
        Ok(Self {
            path,
            client: RuntimeServiceClient::new(channel),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lists the ready pods and the running containers.
    pub async fn snapshot(&mut self) -> Result<RuntimeSnapshot, RuntimeError> {
        let pods = self
            .call("ListPodSandbox", |mut client| async move {
                client
                    .list_pod_sandbox(ListPodSandboxRequest::default())
                    .await
            })
            .await?
            .items;
        let containers = self
            .call("ListContainers", |mut client| async move {
                client
                    .list_containers(ListContainersRequest::default())
                    .await
            })
            .await?
            .containers;
        Ok(snapshot_from(pods, containers))
    }

    async fn call<T, F, Fut>(&self, call: &'static str, f: F) -> Result<T, RuntimeError>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(CALL_TIMEOUT, f(self.client.clone())).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(RuntimeError::Call {
                path: self.path.clone(),
                call,
                status: Box::new(status),
            }),
            Err(_) => Err(RuntimeError::Timeout {
                path: self.path.clone(),
                call,
            }),
        }
    }
}

/// What the runtime's `ListPodSandbox` items and `ListContainers` containers say: sandboxes
/// without metadata are left out, and a missing field of a container is empty.
pub fn snapshot_from(pods: Vec<PodSandbox>, containers: Vec<Container>) -> RuntimeSnapshot {
    let pods = pods
        .into_iter()
        .filter_map(|sandbox| {
            let meta = sandbox.metadata?;
            let pod = Pod {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                labels: sandbox.labels,
                annotations: sandbox.annotations,
            };
            Some((sandbox.id, pod))
        })
        .collect();
    let containers = containers
        .into_iter()
        .map(|container| {
            let runtime_container = RuntimeContainer {
                name: container.metadata.map(|m| m.name).unwrap_or_default(),
                image: container.image.map(|i| i.image).unwrap_or_default(),
                running: container.state == ContainerState::ContainerRunning as i32,
                created_at: from_unix_nanos(container.created_at),
                sandbox_id: container.pod_sandbox_id,
                labels: container.labels,
                annotations: container.annotations,
                id: container.id,
            };
            (runtime_container.id.clone(), runtime_container)
        })
        .collect();
    RuntimeSnapshot { pods, containers }
}

fn from_unix_nanos(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}
