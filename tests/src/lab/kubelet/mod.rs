//! The kubelet's part for one pod, so that the lab runs what `deploy/` describes: the
//! manifests built with `kubectl kustomize` and parsed into the Kubernetes API types
//! (k8s-openapi), a pod template turned into CRI requests as a kubelet turns it. The sandbox
//! gets the pod's host namespaces (hostPID, hostNetwork, hostIPC) and cgroup parent by QoS
//! class; each container its image, command and args, environment (values and the downward
//! API), volume mounts (hostPath, ConfigMap, Secret, emptyDir; read-only where the manifest
//! says), security context (privileged or not, capabilities added and dropped, user,
//! read-only root, no_new_privs, seccomp and AppArmor) and resources. Init containers run to
//! completion, one after another, before the containers start; a failed one stops the pod,
//! its log kept as `kubectl logs -c` shows it. Exec readiness probes run over CRI `ExecSync`.
//!
//! What a kubelet takes from the API server (ConfigMaps, Secrets) comes from the manifests
//! and from [`Node::secret`].

mod container;
mod manifests;
mod volumes;

use std::{
    collections::BTreeMap,
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use herd_proto::cri::v1::{
    self as cri, CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest,
    StartContainerRequest, image_service_client::ImageServiceClient,
    runtime_service_client::RuntimeServiceClient,
};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec, Probe};
use tonic::transport::Channel;

use super::{
    LabError,
    paths::LabPaths,
    pod::{CONTROLLER_REVISION_HASH, POD_NAME, POD_NAMESPACE, POD_UID},
};
use container::{
    ContainerContext, all_containers, container_config, namespace_options, profile, qos,
};
pub use manifests::Manifests;
use volumes::prepare_volumes;

/// What can go wrong translating or running a pod.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("`kubectl kustomize {dir}`: {reason}")]
    Kustomize { dir: PathBuf, reason: String },
    #[error("the manifests have no {kind} named {name:?}")]
    Missing { kind: &'static str, name: String },
    #[error("{kind} {name:?} does not parse: {source}")]
    Parse {
        kind: &'static str,
        name: String,
        source: serde_json::Error,
    },
    #[error("the pod cannot run here: {0}")]
    Unsupported(String),
    #[error("volume {volume:?}: hostPath {path} (type {kind}): {reason}")]
    HostPath {
        volume: String,
        path: PathBuf,
        kind: String,
        reason: String,
    },
    #[error("image {image:?} is not in the node's containerd (stored as {stored}?)")]
    NoImage { image: String, stored: String },
    #[error("init container {container:?} exited with {exit_code}; its log:\n{log}")]
    InitFailed {
        container: String,
        exit_code: i32,
        log: String,
    },
    #[error("container {container:?} exited with {exit_code} while starting; its log:\n{log}")]
    Exited {
        container: String,
        exit_code: i32,
        log: String,
    },
    #[error("container {container:?} did not get ready within {after:?}: {last}")]
    NotReady {
        container: String,
        after: Duration,
        last: String,
    },
}

impl KubeletError {
    fn cri(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| LabError::cri(call)(status).into()
    }
}

/// The node the pod runs on, as its kubelet knows it.
pub struct Node<'a> {
    /// `spec.nodeName`.
    pub name: String,
    pub paths: LabPaths,
    /// Where ConfigMaps and Secrets come from.
    pub manifests: &'a Manifests,
    /// Secrets by name, key → content: what the API server would hand the kubelet.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Node<'_> {
    /// Adds a Secret (key → content), as `kubectl create secret generic` would.
    pub fn secret(mut self, name: &str, data: BTreeMap<String, Vec<u8>>) -> Self {
        self.secrets.insert(name.to_owned(), data);
        self
    }
}

/// A pod the lab's kubelet runs.
pub struct KubeletPod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub sandbox_id: String,
    /// Container name → id, init containers included.
    pub containers: BTreeMap<String, String>,
    log_dir: PathBuf,
    volumes_dir: PathBuf,
    /// Host directories that a `DirectoryOrCreate` hostPath made, removed again with the pod
    /// when empty (a kubelet leaves them; a test must not).
    made_dirs: Vec<PathBuf>,
    spec: PodSpec,
    grace: Duration,
}

/// Runs a pod from `template` as a kubelet on `node` would: init containers to completion,
/// then the containers started. A failed init container stops there, the pod left for the
/// caller to read its logs and remove.
pub async fn run_pod(
    runtime: &mut RuntimeServiceClient<Channel>,
    images: &mut ImageServiceClient<Channel>,
    node: &Node<'_>,
    namespace: &str,
    name: &str,
    template: &PodTemplateSpec,
) -> Result<KubeletPod, (Option<KubeletPod>, KubeletError)> {
    let spec = template.spec.clone().unwrap_or_default();
    let uid = fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|err| {
            (
                None,
                LabError::io("/proc/sys/kernel/random/uuid")(err).into(),
            )
        })?
        .trim()
        .to_owned();
    let log_dir = node
        .paths
        .pod_logs()
        .join(format!("{namespace}_{name}_{uid}"));
    let volumes_dir = node.paths.data_dir().join(format!("kubelet/pods/{uid}"));
    let mut pod = KubeletPod {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        uid,
        sandbox_id: String::new(),
        containers: BTreeMap::new(),
        log_dir,
        volumes_dir,
        made_dirs: Vec::new(),
        grace: Duration::from_secs(
            spec.termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(30),
        ),
        spec,
    };
    match start(&mut pod, runtime, images, node, template).await {
        Ok(()) => Ok(pod),
        Err(err) => Err((Some(pod), err)),
    }
}

async fn start(
    pod: &mut KubeletPod,
    runtime: &mut RuntimeServiceClient<Channel>,
    images: &mut ImageServiceClient<Channel>,
    node: &Node<'_>,
    template: &PodTemplateSpec,
) -> Result<(), KubeletError> {
    let spec = pod.spec.clone();
    fs::create_dir_all(&pod.log_dir).map_err(LabError::io(&pod.log_dir))?;
    let mounts_by_volume = prepare_volumes(pod, node, spec.volumes.as_deref().unwrap_or(&[]))?;
    let qos = qos(&spec);
    let template_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut labels: BTreeMap<String, String> = template_labels;
    labels.insert(POD_NAME.to_owned(), pod.name.clone());
    labels.insert(POD_NAMESPACE.to_owned(), pod.namespace.clone());
    labels.insert(POD_UID.to_owned(), pod.uid.clone());
    labels.insert(
        CONTROLLER_REVISION_HASH.to_owned(),
        format!("{:x}", fnv(&format!("{spec:?}"))),
    );
    let mut annotations: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.insert("kubernetes.io/config.source".to_owned(), "api".to_owned());

    let namespaces = namespace_options(&spec);
    let privileged = all_containers(&spec).any(|c| {
        c.security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false)
    });
    let pod_security = spec.security_context.clone().unwrap_or_default();
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            namespace: pod.namespace.clone(),
            attempt: 0,
        }),
        hostname: if spec.host_network.unwrap_or(false) {
            String::new()
        } else {
            pod.name.clone()
        },
        log_directory: pod.log_dir.to_string_lossy().into_owned(),
        labels: labels.clone().into_iter().collect(),
        annotations: annotations.into_iter().collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!(
                "{}{}",
                node.paths.cgroup_root(),
                qos.cgroup_parent(&pod.uid)
            ),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                privileged,
                run_as_user: pod_security
                    .run_as_user
                    .map(|value| cri::Int64Value { value }),
                seccomp: Some(profile(
                    pod_security.seccomp_profile.as_ref().map(|p| &p.type_),
                )?),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.sandbox_id = runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(KubeletError::cri("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;

    let ctx = ContainerContext {
        pod,
        node,
        qos,
        namespaces,
        mounts_by_volume: &mounts_by_volume,
        sandbox_config: &sandbox_config,
    };
    let mut created = Vec::new();
    let outcome = run_containers(&ctx, runtime, images, &spec, &mut created).await;
    pod.containers.extend(created);
    outcome
}

/// The init containers one after another, each to completion, then the containers started.
async fn run_containers(
    ctx: &ContainerContext<'_>,
    runtime: &mut RuntimeServiceClient<Channel>,
    images: &mut ImageServiceClient<Channel>,
    spec: &PodSpec,
    created: &mut Vec<(String, String)>,
) -> Result<(), KubeletError> {
    for init in spec.init_containers.as_deref().unwrap_or(&[]) {
        let id = create(ctx, runtime, images, init).await?;
        created.push((init.name.clone(), id.clone()));
        start_container(runtime, &id).await?;
        let status = wait_exited(runtime, &id, Duration::from_secs(120)).await?;
        if status.exit_code != 0 {
            return Err(KubeletError::InitFailed {
                container: init.name.clone(),
                exit_code: status.exit_code,
                log: ctx.pod.log(&init.name),
            });
        }
    }
    for container in &spec.containers {
        let id = create(ctx, runtime, images, container).await?;
        created.push((container.name.clone(), id.clone()));
        start_container(runtime, &id).await?;
    }
    Ok(())
}

async fn create(
    ctx: &ContainerContext<'_>,
    runtime: &mut RuntimeServiceClient<Channel>,
    images: &mut ImageServiceClient<Channel>,
    container: &Container,
) -> Result<String, KubeletError> {
    let image = container
        .image
        .clone()
        .ok_or_else(|| KubeletError::Unsupported(format!("{} has no image", container.name)))?;
    let present = images
        .image_status(cri::ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .map_err(KubeletError::cri("ImageStatus"))?
        .into_inner()
        .image
        .is_some();
    if !present {
        return Err(KubeletError::NoImage {
            stored: super::herd_images::normalized(&image),
            image,
        });
    }
    let config = container_config(ctx, container, image)?;
    Ok(runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: ctx.pod.sandbox_id.clone(),
            config: Some(config),
            sandbox_config: Some(ctx.sandbox_config.clone()),
        })
        .await
        .map_err(KubeletError::cri("CreateContainer"))?
        .into_inner()
        .container_id)
}

async fn start_container(
    runtime: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> Result<(), KubeletError> {
    runtime
        .start_container(StartContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .map_err(KubeletError::cri("StartContainer"))?;
    Ok(())
}

async fn status(
    runtime: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> Result<cri::ContainerStatus, KubeletError> {
    runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
        .map_err(KubeletError::cri("ContainerStatus"))?
        .into_inner()
        .status
        .ok_or_else(|| KubeletError::Unsupported(format!("container {id} has no status")))
}

async fn wait_exited(
    runtime: &mut RuntimeServiceClient<Channel>,
    id: &str,
    within: Duration,
) -> Result<cri::ContainerStatus, KubeletError> {
    let deadline = Instant::now() + within;
    loop {
        let status = status(runtime, id).await?;
        if status.state == cri::ContainerState::ContainerExited as i32 {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: format!("container {id} exiting"),
                after: within,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl KubeletPod {
    /// A container's log as `kubectl logs -c <container>` shows it: the lines, without the
    /// CRI log format's timestamp, stream and partial-line tag.
    pub fn log(&self, container: &str) -> String {
        let path = self.log_dir.join(container).join("0.log");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let mut out = String::new();
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            let (_time, _stream, tag, content) =
                (parts.next(), parts.next(), parts.next(), parts.next());
            out.push_str(content.unwrap_or_default());
            if tag != Some("P") {
                out.push('\n');
            }
        }
        out
    }

    /// The container's id, by name.
    pub fn container_id(&self, name: &str) -> Option<&str> {
        self.containers.get(name).map(String::as_str)
    }

    /// The container's CRI status.
    pub async fn status(
        &self,
        runtime: &mut RuntimeServiceClient<Channel>,
        container: &str,
    ) -> Result<cri::ContainerStatus, KubeletError> {
        let id = self
            .container_id(container)
            .ok_or_else(|| KubeletError::Missing {
                kind: "container",
                name: container.to_owned(),
            })?;
        status(runtime, id).await
    }

    /// Runs the container's exec readiness probe after its `initialDelaySeconds` until it
    /// passes (every second rather than every `periodSeconds`, so that tests do not wait);
    /// fails early when the container exits.
    pub async fn wait_ready(
        &self,
        runtime: &mut RuntimeServiceClient<Channel>,
        container: &str,
        within: Duration,
    ) -> Result<(), KubeletError> {
        let spec = self
            .spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .ok_or_else(|| KubeletError::Missing {
                kind: "container",
                name: container.to_owned(),
            })?;
        let probe: Probe = spec.readiness_probe.clone().unwrap_or_default();
        let command = probe.exec.and_then(|e| e.command).ok_or_else(|| {
            KubeletError::Unsupported(format!("{container} has no exec readiness probe"))
        })?;
        let id = self.container_id(container).unwrap_or_default().to_owned();
        let period =
            Duration::from_secs(u64::try_from(probe.period_seconds.unwrap_or(10)).unwrap_or(10))
                .min(Duration::from_secs(1));
        let timeout = i64::from(probe.timeout_seconds.unwrap_or(1));
        let deadline = Instant::now() + within;
        tokio::time::sleep(Duration::from_secs(
            u64::try_from(probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0),
        ))
        .await;
        loop {
            let st = status(runtime, &id).await?;
            if st.state == cri::ContainerState::ContainerExited as i32 {
                return Err(KubeletError::Exited {
                    container: container.to_owned(),
                    exit_code: st.exit_code,
                    log: self.log(container),
                });
            }
            let last = match runtime
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: command.clone(),
                    timeout,
                })
                .await
            {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    if reply.exit_code == 0 {
                        return Ok(());
                    }
                    format!(
                        "{command:?} exited with {}: {}{}",
                        reply.exit_code,
                        String::from_utf8_lossy(&reply.stdout),
                        String::from_utf8_lossy(&reply.stderr)
                    )
                }
                Err(status) => format!("ExecSync: {status}"),
            };
            if Instant::now() > deadline {
                return Err(KubeletError::NotReady {
                    container: container.to_owned(),
                    after: within,
                    last,
                });
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Stops the containers with the pod's grace period (SIGTERM, then SIGKILL), as a kubelet
    /// does on deletion, then removes the sandbox, the pod's cgroups, its volumes and the
    /// host directories its hostPath volumes made.
    pub async fn remove(
        mut self,
        runtime: &mut RuntimeServiceClient<Channel>,
        paths: &LabPaths,
    ) -> Result<(), KubeletError> {
        let grace = i64::try_from(self.grace.as_secs()).unwrap_or(30);
        for id in self.containers.values() {
            // An exited or never started container answers as well; errors here are the
            // sandbox removal's to report.
            let _ = runtime
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: grace,
                })
                .await;
        }
        let removed = if self.sandbox_id.is_empty() {
            Ok(())
        } else {
            super::pod::remove(runtime, paths, &self.sandbox_id, &self.uid)
                .await
                .map_err(KubeletError::from)
        };
        self.clean_host();
        removed
    }

    fn clean_host(&mut self) {
        let _ = fs::remove_dir_all(&self.volumes_dir);
        for dir in self.made_dirs.drain(..) {
            // Only while empty: whatever else put something there keeps it.
            let _ = fs::remove_dir(&dir);
        }
    }
}

impl Drop for KubeletPod {
    /// A pod dropped without [`KubeletPod::remove`] (a failed test) still leaves no host
    /// directory behind; the lab's teardown removes its containers.
    fn drop(&mut self) {
        self.clean_host();
    }
}

/// A stable, short hash (FNV-1a) for labels.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An image client of the lab's containerd.
pub async fn image_client(paths: &LabPaths) -> Result<ImageServiceClient<Channel>, LabError> {
    let socket = paths.socket();
    let channel = herd_proto::uds::connect(&socket)
        .await
        .map_err(|source| LabError::Connect { socket, source })?;
    Ok(ImageServiceClient::new(channel))
}

/// Environment variables set on every container of `spec`, replacing any of the same name:
/// what a user's overlay does with a patch.
pub fn set_env(spec: &mut PodSpec, vars: &[(&str, &str)]) {
    for container in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        let env = container.env.get_or_insert_with(Vec::new);
        for (name, value) in vars {
            env.retain(|v| v.name != *name);
            env.push(EnvVar {
                name: (*name).to_owned(),
                value: Some((*value).to_owned()),
                value_from: None,
            });
        }
    }
}
