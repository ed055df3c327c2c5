//! One container's CRI configuration from its manifest, and what it shares with its pod's
//! sandbox: host namespaces, QoS class, security profiles.

use std::{collections::BTreeMap, path::PathBuf};

use herd_proto::cri::v1::{
    self as cri, ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, SecurityProfile, security_profile::ProfileType,
};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};

use super::{
    super::{
        cgroups::Qos,
        pod::{CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID},
    },
    KubeletError, KubeletPod, Node,
};

pub(super) struct ContainerContext<'a> {
    pub pod: &'a KubeletPod,
    pub node: &'a Node<'a>,
    pub qos: Qos,
    pub namespaces: NamespaceOption,
    pub mounts_by_volume: &'a BTreeMap<String, PathBuf>,
    pub sandbox_config: &'a PodSandboxConfig,
}

/// One container's CRI configuration from its manifest.
pub(super) fn container_config(
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

pub(super) fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

/// hostPID, hostNetwork and hostIPC; otherwise the kubelet's defaults (network and IPC per
/// pod, PID per container).
pub(super) fn namespace_options(spec: &PodSpec) -> NamespaceOption {
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
pub(super) fn qos(spec: &PodSpec) -> Qos {
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
pub(super) fn profile(kind: Option<&String>) -> Result<SecurityProfile, KubeletError> {
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
