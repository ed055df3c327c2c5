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
use tracing::debug;

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
        .filter_map(|mut sandbox| {
            let meta = sandbox.metadata?;
            if [&sandbox.id, &meta.name, &meta.namespace, &meta.uid]
                .iter()
                .any(|name| name.len() > MAX_NAME)
            {
                debug!(
                    len = meta.name.len(),
                    "leaving out a pod with a name no cluster allows"
                );
                return None;
            }
            bound_labels(&mut sandbox.labels);
            bound_labels(&mut sandbox.annotations);
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
        .filter(|container| {
            let name = container.metadata.as_ref().map_or(0, |m| m.name.len());
            let image = container.image.as_ref().map_or(0, |i| i.image.len());
            let fits = name <= MAX_NAME
                && container.id.len() <= MAX_NAME
                && container.pod_sandbox_id.len() <= MAX_NAME
                && image <= MAX_LABEL;
            if !fits {
                debug!("leaving out a container with a name or image no cluster allows");
            }
            fits
        })
        .map(|mut container| {
            bound_labels(&mut container.labels);
            bound_labels(&mut container.annotations);
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

/// The longest name, namespace, uid or id taken from the runtime: Kubernetes allows 253.
pub const MAX_NAME: usize = 253;
/// The longest label or annotation key or value, and image reference, kept: the domain is
/// found from short labels and annotations, and a pod's large ones (a last-applied
/// configuration of 100 KiB, say) would otherwise be kept for every pod of the node.
pub const MAX_LABEL: usize = 1024;

/// Drops the labels or annotations whose key or value is over [`MAX_LABEL`].
fn bound_labels(labels: &mut HashMap<String, String>) {
    labels.retain(|key, value| key.len() <= MAX_LABEL && value.len() <= MAX_LABEL);
}

fn from_unix_nanos(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use herd_proto::cri::v1::{ContainerMetadata, ImageSpec, PodSandboxMetadata};

    use super::*;

    fn sandbox(id: &str, name: &str, annotation: &str) -> PodSandbox {
        PodSandbox {
            id: id.into(),
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: "shop".into(),
                uid: format!("uid-{id}"),
                attempt: 0,
            }),
            labels: HashMap::from([("app".into(), "web".into())]),
            annotations: HashMap::from([("big".into(), annotation.into())]),
            ..Default::default()
        }
    }

    #[test]
    fn names_no_cluster_allows_and_large_labels_are_not_kept() {
        let huge = "x".repeat(100 * 1024);
        let pods = vec![
            sandbox("p1", "web-1", &huge),
            sandbox("p2", &"w".repeat(MAX_NAME + 1), "small"),
        ];
        let container = |id: &str, image: &str| Container {
            id: id.into(),
            pod_sandbox_id: "p1".into(),
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            labels: HashMap::from([("l".into(), huge.clone())]),
            ..Default::default()
        };
        let snapshot = snapshot_from(
            pods,
            vec![container("c1", "nginx:1"), container("c2", &huge)],
        );
        assert_eq!(
            snapshot.pods.len(),
            1,
            "the pod with a 254-byte name is left out"
        );
        let pod = &snapshot.pods["p1"];
        assert_eq!(pod.labels["app"], "web");
        assert!(
            pod.annotations.is_empty(),
            "a 100 KiB annotation is not kept"
        );
        assert_eq!(
            snapshot.containers.len(),
            1,
            "a 100 KiB image reference is left out"
        );
        assert!(snapshot.containers["c1"].labels.is_empty());
    }
}
