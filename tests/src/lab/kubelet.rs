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

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use herd_proto::cri::v1::{
    self as cri, ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest, SecurityProfile,
    StartContainerRequest, image_service_client::ImageServiceClient,
    runtime_service_client::RuntimeServiceClient, security_profile::ProfileType,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PodSpec, PodTemplateSpec, Probe, Volume,
};
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::{
    LabError,
    cgroups::Qos,
    cmd,
    paths::LabPaths,
    pod::{CONTAINER_NAME, CONTROLLER_REVISION_HASH, POD_NAME, POD_NAMESPACE, POD_UID},
};

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

/// `kubectl kustomize` of a directory, each object as JSON.
pub struct Manifests {
    objects: Vec<serde_json::Value>,
}

impl Manifests {
    /// Builds `dir` (e.g. `deploy/`) with `kubectl kustomize`.
    pub fn build(dir: &Path) -> Result<Self, KubeletError> {
        let text =
            cmd::output(Command::new("kubectl").arg("kustomize").arg(dir)).map_err(|err| {
                KubeletError::Kustomize {
                    dir: dir.to_owned(),
                    reason: err.to_string(),
                }
            })?;
        let mut objects = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                <serde_json::Value as serde::Deserialize>::deserialize(doc).map_err(|err| {
                    KubeletError::Kustomize {
                        dir: dir.to_owned(),
                        reason: format!("its output is not YAML: {err}"),
                    }
                })?;
            if !value.is_null() {
                objects.push(value);
            }
        }
        Ok(Self { objects })
    }

    /// The object of `kind` named `name`, parsed into its API type.
    pub fn get<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        name: &str,
    ) -> Result<T, KubeletError> {
        let object = self
            .objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .ok_or_else(|| KubeletError::Missing {
                kind,
                name: name.to_owned(),
            })?;
        serde_json::from_value(object.clone()).map_err(|source| KubeletError::Parse {
            kind,
            name: name.to_owned(),
            source,
        })
    }

    /// The namespace the manifests put `kind`/`name` in (`default` when none).
    pub fn namespace_of(&self, kind: &str, name: &str) -> String {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .and_then(|o| o["metadata"]["namespace"].as_str())
            .unwrap_or("default")
            .to_owned()
    }

    /// A DaemonSet's pod template.
    pub fn daemon_set_template(&self, name: &str) -> Result<PodTemplateSpec, KubeletError> {
        let ds: k8s_openapi::api::apps::v1::DaemonSet = self.get("DaemonSet", name)?;
        Ok(ds.spec.unwrap_or_default().template)
    }

    fn config_map(&self, name: &str) -> Result<ConfigMap, KubeletError> {
        self.get("ConfigMap", name)
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

struct ContainerContext<'a> {
    pod: &'a KubeletPod,
    node: &'a Node<'a>,
    qos: Qos,
    namespaces: NamespaceOption,
    mounts_by_volume: &'a BTreeMap<String, PathBuf>,
    sandbox_config: &'a PodSandboxConfig,
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

/// One container's CRI configuration from its manifest.
fn container_config(
    ctx: &ContainerContext<'_>,
    container: &Container,
    image: String,
) -> Result<ContainerConfig, KubeletError> {
    let pod = ctx.pod;
    let labels = BTreeMap::from([
        (CONTAINER_NAME.to_owned(), container.name.clone()),
        (POD_NAME.to_owned(), pod.name.clone()),
        (POD_NAMESPACE.to_owned(), pod.namespace.clone()),
        (POD_UID.to_owned(), pod.uid.clone()),
    ]);
    let annotations = BTreeMap::from([
        (
            "io.kubernetes.container.restartCount".to_owned(),
            "0".to_owned(),
        ),
        (
            "io.kubernetes.pod.terminationGracePeriod".to_owned(),
            pod.grace.as_secs().to_string(),
        ),
    ]);
    let mut envs = Vec::new();
    for var in container.env.as_deref().unwrap_or(&[]) {
        envs.push(KeyValue {
            key: var.name.clone(),
            value: env_value(var, pod, ctx.node)?,
        });
    }
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.as_deref().unwrap_or(&[]) {
        if mount.sub_path.is_some() || mount.sub_path_expr.is_some() {
            return Err(KubeletError::Unsupported(format!(
                "{}: subPath on volume {}",
                container.name, mount.name
            )));
        }
        let host = ctx.mounts_by_volume.get(&mount.name).ok_or_else(|| {
            KubeletError::Unsupported(format!(
                "{} mounts volume {:?}, which the pod does not have",
                container.name, mount.name
            ))
        })?;
        mounts.push(cri::Mount {
            container_path: mount.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: mount.read_only.unwrap_or(false),
            propagation: match mount.mount_propagation.as_deref() {
                None | Some("None") => cri::MountPropagation::PropagationPrivate,
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
                Some(other) => {
                    return Err(KubeletError::Unsupported(format!(
                        "mountPropagation {other:?}"
                    )));
                }
            } as i32,
            ..Default::default()
        });
    }
    let security = container.security_context.clone().unwrap_or_default();
    let pod_security = pod.spec.security_context.clone().unwrap_or_default();
    let capabilities = security.capabilities.clone().unwrap_or_default();
    let seccomp = security
        .seccomp_profile
        .as_ref()
        .or(pod_security.seccomp_profile.as_ref())
        .map(|p| &p.type_);
    let apparmor = security
        .app_armor_profile
        .as_ref()
        .or(pod_security.app_armor_profile.as_ref())
        .map(|p| &p.type_);
    #[allow(deprecated)] // the kubelet fills the old string fields too, for older runtimes
    let security_context = LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: capabilities.add.unwrap_or_default(),
            drop_capabilities: capabilities.drop.unwrap_or_default(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged: security.privileged.unwrap_or(false),
        namespace_options: Some(ctx.namespaces.clone()),
        run_as_user: security
            .run_as_user
            .or(pod_security.run_as_user)
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: security.read_only_root_filesystem.unwrap_or(false),
        no_new_privs: security.allow_privilege_escalation == Some(false),
        seccomp: Some(profile(seccomp)?),
        seccomp_profile_path: legacy_profile(seccomp),
        apparmor: Some(profile(apparmor)?),
        apparmor_profile: legacy_profile(apparmor),
        ..Default::default()
    };
    Ok(ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: container.name.clone(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image,
            ..Default::default()
        }),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs,
        mounts,
        labels: labels.into_iter().collect(),
        annotations: annotations.into_iter().collect(),
        log_path: format!("{}/0.log", container.name),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources(container, ctx.qos)?),
            security_context: Some(security_context),
        }),
        ..Default::default()
    })
}

/// A variable's value: literal, or from the downward API.
fn env_value(var: &EnvVar, pod: &KubeletPod, node: &Node<'_>) -> Result<String, KubeletError> {
    if let Some(value) = &var.value {
        return Ok(value.clone());
    }
    let Some(field) = var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()) else {
        return match &var.value_from {
            None => Ok(String::new()),
            Some(_) => Err(KubeletError::Unsupported(format!(
                "env {}: only fieldRef sources",
                var.name
            ))),
        };
    };
    Ok(match field.field_path.as_str() {
        "spec.nodeName" => node.name.clone(),
        "metadata.name" => pod.name.clone(),
        "metadata.namespace" => pod.namespace.clone(),
        "metadata.uid" => pod.uid.clone(),
        other => {
            return Err(KubeletError::Unsupported(format!(
                "env {}: fieldRef {other}",
                var.name
            )));
        }
    })
}

/// Makes each volume ready on the host; its host path by volume name.
fn prepare_volumes(
    pod: &mut KubeletPod,
    node: &Node<'_>,
    volumes: &[Volume],
) -> Result<BTreeMap<String, PathBuf>, KubeletError> {
    let mut out = BTreeMap::new();
    for volume in volumes {
        let path = if let Some(host) = &volume.host_path {
            host_path(
                pod,
                &volume.name,
                Path::new(&host.path),
                host.type_.as_deref(),
            )?
        } else if let Some(source) = &volume.config_map {
            let map = node.manifests.config_map(&source.name)?;
            let mut files: BTreeMap<String, Vec<u8>> = map
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            files.extend(
                map.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            write_volume(pod, &volume.name, &files, source.default_mode)?
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let files = node
                .secrets
                .get(&name)
                .ok_or_else(|| KubeletError::Missing {
                    kind: "Secret",
                    name: name.clone(),
                })?;
            write_volume(pod, &volume.name, files, source.default_mode)?
        } else if volume.empty_dir.is_some() {
            write_volume(pod, &volume.name, &BTreeMap::new(), None)?
        } else {
            return Err(KubeletError::Unsupported(format!(
                "volume {:?} is of a kind the lab does not mount",
                volume.name
            )));
        };
        out.insert(volume.name.clone(), path);
    }
    Ok(out)
}

/// A hostPath volume, checked (or made) as its type says.
fn host_path(
    pod: &mut KubeletPod,
    volume: &str,
    path: &Path,
    kind: Option<&str>,
) -> Result<PathBuf, KubeletError> {
    let kind = kind.unwrap_or("");
    let fail = |reason: &str| KubeletError::HostPath {
        volume: volume.to_owned(),
        path: path.to_owned(),
        kind: kind.to_owned(),
        reason: reason.to_owned(),
    };
    let meta = fs::metadata(path);
    match kind {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                let mut missing: Vec<PathBuf> = path
                    .ancestors()
                    .take_while(|a| !a.exists())
                    .map(Path::to_path_buf)
                    .collect();
                fs::create_dir_all(path).map_err(LabError::io(path))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(LabError::io(path))?;
                // Deepest first, so that removing them in order works.
                pod.made_dirs.append(&mut missing);
            } else if !meta.as_ref().is_ok_and(fs::Metadata::is_dir) {
                return Err(fail("exists and is not a directory"));
            }
        }
        "Directory" if !meta.as_ref().is_ok_and(fs::Metadata::is_dir) => {
            return Err(fail("is not a directory"));
        }
        "File" if !meta.as_ref().is_ok_and(fs::Metadata::is_file) => {
            return Err(fail("is not a file"));
        }
        "Socket" if !meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) => {
            return Err(fail("is not a socket"));
        }
        "Directory" | "File" | "Socket" => {}
        other => {
            return Err(fail(&format!(
                "the lab's kubelet does not check type {other}"
            )));
        }
    }
    Ok(path.to_owned())
}

/// A volume of files the kubelet writes (ConfigMap, Secret, emptyDir).
fn write_volume(
    pod: &KubeletPod,
    volume: &str,
    files: &BTreeMap<String, Vec<u8>>,
    mode: Option<i32>,
) -> Result<PathBuf, KubeletError> {
    let dir = pod.volumes_dir.join(volume);
    fs::create_dir_all(&dir).map_err(LabError::io(&dir))?;
    let mode = mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(0o644);
    for (key, data) in files {
        let path = dir.join(key);
        fs::write(&path, data).map_err(LabError::io(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(LabError::io(&path))?;
    }
    Ok(dir)
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

/// hostPID, hostNetwork and hostIPC; otherwise the kubelet's defaults (network and IPC per
/// pod, PID per container).
fn namespace_options(spec: &PodSpec) -> NamespaceOption {
    let node_or = |host: Option<bool>, otherwise: NamespaceMode| {
        if host.unwrap_or(false) {
            NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    NamespaceOption {
        network: node_or(spec.host_network, NamespaceMode::Pod),
        pid: node_or(spec.host_pid, NamespaceMode::Container),
        ipc: node_or(spec.host_ipc, NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The QoS class of a pod from its containers' requests and limits.
fn qos(spec: &PodSpec) -> Qos {
    let mut any = false;
    let mut guaranteed = true;
    for container in all_containers(spec) {
        let resources = container.resources.clone().unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        any |= !limits.is_empty() || !requests.is_empty();
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            let request = requests.get(resource).or(limit);
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => Qos::BestEffort,
        (true, true) => Qos::Guaranteed,
        (true, false) => Qos::Burstable,
    }
}

/// CPU shares and quota, the memory limit and oom_score_adj, as the kubelet sets them.
fn resources(container: &Container, qos: Qos) -> Result<LinuxContainerResources, KubeletError> {
    let resources = container.resources.clone().unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let cpu_request = requests
        .get("cpu")
        .or(limits.get("cpu"))
        .map(|q| millicores(&q.0))
        .transpose()?;
    let mut out = LinuxContainerResources {
        cpu_shares: cpu_request.map_or(2, |m| (m * 1024 / 1000).max(2)),
        oom_score_adj: match qos {
            Qos::Guaranteed => -997,
            Qos::Burstable => 500,
            Qos::BestEffort => 1000,
        },
        ..Default::default()
    };
    if let Some(cpu) = limits.get("cpu") {
        out.cpu_period = 100_000;
        out.cpu_quota = millicores(&cpu.0)? * 100;
    }
    if let Some(memory) = limits.get("memory") {
        out.memory_limit_in_bytes = bytes(&memory.0)?;
    }
    Ok(out)
}

/// `20m`, `1`, `0.5` CPUs in millicores.
fn millicores(quantity: &str) -> Result<i64, KubeletError> {
    let bad = || KubeletError::Unsupported(format!("CPU quantity {quantity:?}"));
    if let Some(m) = quantity.strip_suffix('m') {
        return m.parse().map_err(|_| bad());
    }
    let cpus: f64 = quantity.parse().map_err(|_| bad())?;
    Ok((cpus * 1000.0).round() as i64)
}

/// `48Mi`, `1G`, `1024` in bytes.
fn bytes(quantity: &str) -> Result<i64, KubeletError> {
    let bad = || KubeletError::Unsupported(format!("memory quantity {quantity:?}"));
    const UNITS: &[(&str, i64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<i64>().map(|n| n * factor).map_err(|_| bad());
        }
    }
    quantity.parse().map_err(|_| bad())
}

/// A seccomp or AppArmor profile type as CRI takes it.
fn profile(kind: Option<&String>) -> Result<SecurityProfile, KubeletError> {
    let profile_type = match kind.map(String::as_str) {
        None | Some("RuntimeDefault") => ProfileType::RuntimeDefault,
        Some("Unconfined") => ProfileType::Unconfined,
        Some(other) => {
            return Err(KubeletError::Unsupported(format!(
                "security profile type {other}"
            )));
        }
    };
    Ok(SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: String::new(),
    })
}

/// The same profile in the deprecated string fields (containerd 1.6 reads these).
fn legacy_profile(kind: Option<&String>) -> String {
    match kind.map(String::as_str) {
        Some("Unconfined") => "unconfined".to_owned(),
        _ => "runtime/default".to_owned(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(millicores("20m").unwrap(), 20);
        assert_eq!(millicores("1").unwrap(), 1000);
        assert_eq!(millicores("0.5").unwrap(), 500);
        assert_eq!(bytes("48Mi").unwrap(), 48 << 20);
        assert_eq!(bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(bytes("4096").unwrap(), 4096);
        assert!(bytes("lots").is_err());
    }
}
