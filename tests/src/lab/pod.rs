//! Pods over CRI, made the way a kubelet makes them: sandbox metadata, the
//! `io.kubernetes.*` labels and annotations, the controller's owner labels, a cgroup parent
//! per QoS class, and CPU and memory limits on the container.

use std::{collections::BTreeMap, fs, path::Path};

use herd_proto::cri::v1::{
    self as cri, ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest, StartContainerRequest,
    runtime_service_client::RuntimeServiceClient,
};
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;

use super::{
    LabError,
    cgroups::{self, Qos},
    fault,
    paths::{LabPaths, TOOLS_IMAGE},
    spec::{Kind, Workload},
};

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
pub const APP_NAME: &str = "app.kubernetes.io/name";

/// The alphabet Kubernetes uses for generated names and hashes (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A pod of the lab as CRI and the kernel see it.
#[derive(Clone, Debug)]
pub struct Pod {
    pub sandbox_id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Ready or not ready.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The pod's cgroup, e.g. `/kubepods/burstable/pod<uid>`, from the sandbox process.
    pub cgroup_parent: Option<String>,
    pub containers: Vec<Container>,
}

#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// Created, running, exited or unknown.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub image: String,
    /// The container's init process, while it runs.
    pub pid: Option<u32>,
    /// (controllers, path) per hierarchy, from /proc/<pid>/cgroup; controllers is empty for
    /// cgroup2.
    pub cgroups: Vec<(String, String)>,
}

impl Container {
    /// The container's cgroup2 path, e.g. `/kubepods/pod<uid>/<id>`.
    pub fn unified_cgroup(&self) -> Option<&str> {
        self.cgroups
            .iter()
            .find(|(controllers, _)| controllers.is_empty())
            .map(|(_, path)| path.as_str())
    }

    /// The container's cgroup path in one v1 controller.
    pub fn v1_cgroup(&self, controller: &str) -> Option<&str> {
        self.cgroups
            .iter()
            .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
            .map(|(_, path)| path.as_str())
    }
}

/// Runs replica `replica` of `workload` as a pod with its one container started.
pub async fn run(
    client: &mut RuntimeServiceClient<Channel>,
    paths: &LabPaths,
    workload: &Workload,
    replica: u32,
) -> Result<String, LabError> {
    let uid = new_uid()?;
    let hash = template_hash(workload);
    let (name, owner_label) = match workload.kind {
        Kind::Deployment => (
            format!("{}-{hash}-{}", workload.name, random_suffix(5)?),
            (POD_TEMPLATE_HASH, hash.clone()),
        ),
        Kind::StatefulSet => (
            format!("{}-{replica}", workload.name),
            (
                CONTROLLER_REVISION_HASH,
                format!("{}-{hash}", workload.name),
            ),
        ),
    };
    let mut labels = BTreeMap::from([
        (APP_NAME.to_owned(), workload.name.clone()),
        (owner_label.0.to_owned(), owner_label.1),
        (POD_NAME.to_owned(), name.clone()),
        (POD_NAMESPACE.to_owned(), workload.namespace.clone()),
        (POD_UID.to_owned(), uid.clone()),
    ]);
    if workload.kind == Kind::StatefulSet {
        labels.insert(
            "statefulset.kubernetes.io/pod-name".to_owned(),
            name.clone(),
        );
    }
    let annotations = BTreeMap::from([
        ("kubernetes.io/config.source".to_owned(), "api".to_owned()),
        ("herd.lab/replica".to_owned(), replica.to_string()),
    ]);

    let qos = Qos::of(workload.cpu_millis.is_some(), workload.memory_mib.is_some());
    // Below the node's cgroup root, as a kubelet with `--cgroup-root` puts it.
    let cgroup_parent = format!("{}{}", paths.cgroup_root(), qos.cgroup_parent(&uid));
    if let Some(max) = workload.pids_max_of(replica) {
        cgroups::limit_pod_pids(&cgroup_parent, max)?;
    }
    let log_directory = paths
        .pod_logs()
        .join(format!("{}_{}_{}", workload.namespace, name, uid));
    fs::create_dir_all(&log_directory).map_err(LabError::io(&log_directory))?;

    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: workload.namespace.clone(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        labels: labels.clone().into_iter().collect(),
        annotations: annotations.into_iter().collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.clone(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(pod_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox_id = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(LabError::cri("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;

    let container_config = container_config(workload, replica, &name, &uid, qos);
    let container_id = client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox_id.clone(),
            config: Some(container_config),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .map_err(LabError::cri("CreateContainer"))?
        .into_inner()
        .container_id;
    client
        .start_container(StartContainerRequest { container_id })
        .await
        .map_err(LabError::cri("StartContainer"))?;
    Ok(sandbox_id)
}

fn container_config(
    workload: &Workload,
    replica: u32,
    pod_name: &str,
    uid: &str,
    qos: Qos,
) -> ContainerConfig {
    let labels = BTreeMap::from([
        (CONTAINER_NAME.to_owned(), workload.container.clone()),
        (POD_NAME.to_owned(), pod_name.to_owned()),
        (POD_NAMESPACE.to_owned(), workload.namespace.clone()),
        (POD_UID.to_owned(), uid.to_owned()),
    ]);
    let annotations = BTreeMap::from([
        (
            "io.kubernetes.container.hash".to_owned(),
            template_hash(workload),
        ),
        (
            "io.kubernetes.container.restartCount".to_owned(),
            "0".to_owned(),
        ),
        (
            "io.kubernetes.container.terminationMessagePath".to_owned(),
            "/dev/termination-log".to_owned(),
        ),
        (
            "io.kubernetes.container.terminationMessagePolicy".to_owned(),
            "File".to_owned(),
        ),
        (
            "io.kubernetes.pod.terminationGracePeriod".to_owned(),
            "30".to_owned(),
        ),
    ]);
    let faults = workload.faults_of(replica);
    let mut resources = LinuxContainerResources {
        // The kubelet's oom_score_adj per QoS class; containerd clamps it, since it may
        // not lower the score here (restrict_oom_score_adj).
        oom_score_adj: match qos {
            Qos::Guaranteed => -997,
            Qos::Burstable => 500,
            Qos::BestEffort => 1000,
        },
        cpu_shares: 2,
        ..Default::default()
    };
    if let Some(millis) = workload.cpu_millis {
        resources.cpu_period = 100_000;
        resources.cpu_quota = i64::from(millis) * 100;
        resources.cpu_shares = (i64::from(millis) * 1024 / 1000).max(2);
    }
    if let Some(mib) = workload.memory_mib {
        resources.memory_limit_in_bytes = i64::try_from(mib * 1024 * 1024).unwrap_or(i64::MAX);
        if workload.swap_unlimited {
            resources.memory_swap_limit_in_bytes = -1;
        }
    }
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: workload.container.clone(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: TOOLS_IMAGE.to_owned(),
            ..Default::default()
        }),
        command: fault::container_command(&workload.command_of(replica), &faults),
        labels: labels.into_iter().collect(),
        annotations: annotations.into_iter().collect(),
        log_path: format!("{}/0.log", workload.container),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(pod_namespaces()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Network and IPC shared by the pod, a PID namespace per container: the kubelet's
/// defaults for a v1 pod.
fn pod_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Lists the lab's pods and containers with their processes' cgroups.
pub async fn list(client: &mut RuntimeServiceClient<Channel>) -> Result<Vec<Pod>, LabError> {
    let sandboxes = client
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .map_err(LabError::cri("ListPodSandbox"))?
        .into_inner()
        .items;
    let containers = client
        .list_containers(cri::ListContainersRequest::default())
        .await
        .map_err(LabError::cri("ListContainers"))?
        .into_inner()
        .containers;
    let mut pods = Vec::new();
    for sandbox in sandboxes {
        let status = client
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.id.clone(),
                verbose: true,
            })
            .await
            .map_err(LabError::cri("PodSandboxStatus"))?
            .into_inner();
        let cgroup_parent = info_pid(&status.info)
            .and_then(|pid| {
                cgroups::of_process(pid)
                    .into_iter()
                    .find(|(c, _)| c.is_empty())
            })
            .and_then(|(_, path)| {
                Path::new(&path)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
            });
        let state = sandbox.state().as_str_name().to_owned();
        let metadata = sandbox.metadata.unwrap_or_default();
        let mut pod = Pod {
            state,
            sandbox_id: sandbox.id,
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            labels: sandbox.labels.into_iter().collect(),
            annotations: sandbox.annotations.into_iter().collect(),
            cgroup_parent,
            containers: Vec::new(),
        };
        for container in containers
            .iter()
            .filter(|c| c.pod_sandbox_id == pod.sandbox_id)
        {
            let status = client
                .container_status(cri::ContainerStatusRequest {
                    container_id: container.id.clone(),
                    verbose: true,
                })
                .await
                .map_err(LabError::cri("ContainerStatus"))?
                .into_inner();
            let pid = info_pid(&status.info).filter(|pid| *pid > 0);
            pod.containers.push(Container {
                id: container.id.clone(),
                name: container.metadata.clone().unwrap_or_default().name,
                state: container.state().as_str_name().to_owned(),
                labels: container.labels.clone().into_iter().collect(),
                image: container.image.clone().unwrap_or_default().image,
                pid,
                cgroups: pid.map(cgroups::of_process).unwrap_or_default(),
            });
        }
        pods.push(pod);
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(pods)
}

/// Stops and removes a pod like the kubelet does, then removes its pod cgroup, which is
/// the kubelet's to remove, not the runtime's.
pub async fn remove(
    client: &mut RuntimeServiceClient<Channel>,
    paths: &LabPaths,
    sandbox_id: &str,
    uid: &str,
) -> Result<(), LabError> {
    client
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
        })
        .await
        .map_err(LabError::cri("StopPodSandbox"))?;
    client
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
        })
        .await
        .map_err(LabError::cri("RemovePodSandbox"))?;
    for qos in [Qos::Guaranteed, Qos::Burstable, Qos::BestEffort] {
        cgroups::remove_everywhere(&format!(
            "{}{}",
            paths.cgroup_root(),
            qos.cgroup_parent(uid)
        ))?;
    }
    Ok(())
}

/// The `pid` in containerd's verbose `info` JSON.
fn info_pid(info: &std::collections::HashMap<String, String>) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    value
        .get("pid")?
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
}

/// A hash of what makes replicas of one workload alike, in the form Kubernetes uses for
/// `pod-template-hash`.
fn template_hash(workload: &Workload) -> String {
    let digest = Sha256::digest(format!(
        "{}/{}/{:?}/{:?}/{:?}",
        workload.namespace,
        workload.name,
        workload.command,
        workload.cpu_millis,
        workload.memory_mib
    ));
    encode(&digest[..10])
}

fn random_suffix(len: usize) -> Result<String, LabError> {
    let mut bytes = vec![0u8; len];
    let path = "/dev/urandom";
    let mut file = fs::File::open(path).map_err(LabError::io(path))?;
    std::io::Read::read_exact(&mut file, &mut bytes).map_err(LabError::io(path))?;
    Ok(encode(&bytes))
}

fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| SAFE_ALPHABET[usize::from(*b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn new_uid() -> Result<String, LabError> {
    let path = "/proc/sys/kernel/random/uuid";
    Ok(fs::read_to_string(path)
        .map_err(LabError::io(path))?
        .trim()
        .to_owned())
}
