//! What a lab runs: workloads, their replicas and limits, and which replica gets which
//! fault. Tests build a spec in Rust; the CLI reads the same spec from a TOML file.

use std::path::Path;

use serde::Deserialize;

use super::LabError;

/// Which controller the pods of a workload look like they come from: it decides the pod
/// names and the owner labels that discovery derives domains from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Kind {
    /// Pods `<name>-<template hash>-<suffix>` with a `pod-template-hash` label.
    Deployment,
    /// Pods `<name>-<ordinal>` with a `controller-revision-hash` label.
    StatefulSet,
}

/// A misbehaviour injected into one replica with stress-ng, bounded in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Spins one CPU; throttled by the container's CPU limit.
    CpuHog,
    /// Grows the heap until the memory limit OOM-kills the grower (needs a memory limit).
    MemoryLeak,
    /// Writes and syncs files in the container's filesystem.
    IoStorm,
    /// Forks until the pod's pids.max refuses more.
    ForkStorm,
    /// Calls syscalls with bad addresses, which fail with EFAULT.
    SyscallErrors,
    /// Floods TCP connections over the pod's own loopback.
    SocketFlood,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Replica index, from 0.
    pub replica: u32,
    pub kind: FaultKind,
    /// Seconds after the container starts.
    #[serde(default = "default_start_after")]
    pub start_after_secs: u64,
    #[serde(default = "default_duration")]
    pub duration_secs: u64,
}

impl Fault {
    pub fn new(replica: u32, kind: FaultKind) -> Self {
        Self {
            replica,
            kind,
            start_after_secs: default_start_after(),
            duration_secs: default_duration(),
        }
    }

    pub fn after_secs(mut self, secs: u64) -> Self {
        self.start_after_secs = secs;
        self
    }

    pub fn for_secs(mut self, secs: u64) -> Self {
        self.duration_secs = secs;
        self
    }
}

/// pids.max given to a pod under a fork storm that sets no limit of its own.
pub const FORK_STORM_PIDS_MAX: u32 = 64;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub kind: Kind,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Name of the pod's one container.
    #[serde(default = "default_container")]
    pub container: String,
    /// What the container runs, in the tools image.
    #[serde(default = "default_command")]
    pub command: Vec<String>,
    /// CPU limit in millicores.
    #[serde(default)]
    pub cpu_millis: Option<u32>,
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Memory+swap unlimited, as the kubelet's UnlimitedSwap asks; by default it equals the
    /// memory limit (containerd's default), and v1 then counts no memory limit hits.
    #[serde(default)]
    pub swap_unlimited: bool,
    /// The pod's pids.max, as the kubelet's pod PIDs limit sets it.
    #[serde(default)]
    pub pids_max: Option<u32>,
    #[serde(default, rename = "fault")]
    pub faults: Vec<Fault>,
}

impl Workload {
    pub fn new(kind: Kind, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            namespace: default_namespace(),
            replicas: default_replicas(),
            container: default_container(),
            command: default_command(),
            cpu_millis: None,
            memory_mib: None,
            swap_unlimited: false,
            pids_max: None,
            faults: Vec::new(),
        }
    }

    pub fn deployment(name: &str) -> Self {
        Self::new(Kind::Deployment, name)
    }

    pub fn stateful_set(name: &str) -> Self {
        Self::new(Kind::StatefulSet, name)
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    pub fn container(mut self, name: &str) -> Self {
        self.container = name.to_owned();
        self
    }

    pub fn command<S: Into<String>>(mut self, command: impl IntoIterator<Item = S>) -> Self {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    pub fn cpu_millis(mut self, millis: u32) -> Self {
        self.cpu_millis = Some(millis);
        self
    }

    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = Some(mib);
        self
    }

    pub fn swap_unlimited(mut self) -> Self {
        self.swap_unlimited = true;
        self
    }

    pub fn pids_max(mut self, max: u32) -> Self {
        self.pids_max = Some(max);
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// The faults of one replica.
    pub fn faults_of(&self, replica: u32) -> Vec<&Fault> {
        self.faults
            .iter()
            .filter(|f| f.replica == replica)
            .collect()
    }

    /// pids.max of one replica's pod, if any.
    pub fn pids_max_of(&self, replica: u32) -> Option<u32> {
        self.pids_max.or_else(|| {
            self.faults_of(replica)
                .iter()
                .any(|f| f.kind == FaultKind::ForkStorm)
                .then_some(FORK_STORM_PIDS_MAX)
        })
    }

    fn validate(&self) -> Result<(), LabError> {
        let bad = |why: String| Err(LabError::Spec(format!("workload {:?}: {why}", self.name)));
        for (what, value) in [
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("container", &self.container),
        ] {
            if !is_dns_label(value) {
                return bad(format!("{what} {value:?} is not a DNS label"));
            }
        }
        if self.replicas == 0 {
            return bad("replicas must be at least 1".to_owned());
        }
        if self.command.is_empty() {
            return bad("command is empty".to_owned());
        }
        for fault in &self.faults {
            if fault.replica >= self.replicas {
                return bad(format!(
                    "a fault targets replica {} of {}",
                    fault.replica, self.replicas
                ));
            }
            if fault.duration_secs == 0 {
                return bad("a fault must last at least a second".to_owned());
            }
            if fault.kind == FaultKind::MemoryLeak && self.memory_mib.is_none() {
                // Without a limit the leak would eat the host's memory.
                return bad("a memory-leak fault needs memory_mib".to_owned());
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    #[serde(default, rename = "workload")]
    pub workloads: Vec<Workload>,
}

impl LabSpec {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn workload(mut self, workload: Workload) -> Self {
        self.workloads.push(workload);
        self
    }

    /// The lab `cargo xtask lab up` starts without a spec: two Deployments of 3 replicas
    /// and one StatefulSet of 2, one per QoS class (Guaranteed, Burstable, BestEffort).
    pub fn default_lab() -> Self {
        Self::new()
            .workload(
                Workload::deployment("web")
                    .namespace("shop")
                    .replicas(3)
                    .cpu_millis(200)
                    .memory_mib(64),
            )
            .workload(
                Workload::deployment("api")
                    .namespace("shop")
                    .replicas(3)
                    .memory_mib(96),
            )
            .workload(Workload::stateful_set("db").namespace("data").replicas(2))
    }

    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, LabError> {
        let spec: Self = toml::from_str(text).map_err(|source| LabError::SpecFile {
            path: origin.to_owned(),
            source: Box::new(source),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn from_file(path: &Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(path).map_err(LabError::io(path))?;
        Self::from_toml(&text, path)
    }

    pub fn validate(&self) -> Result<(), LabError> {
        if self.workloads.is_empty() {
            return Err(LabError::Spec("no workloads".to_owned()));
        }
        for (i, workload) in self.workloads.iter().enumerate() {
            workload.validate()?;
            if self.workloads[..i]
                .iter()
                .any(|w| w.name == workload.name && w.namespace == workload.namespace)
            {
                return Err(LabError::Spec(format!(
                    "workload {}/{} appears twice",
                    workload.namespace, workload.name
                )));
            }
        }
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn default_namespace() -> String {
    "default".to_owned()
}

fn default_replicas() -> u32 {
    1
}

fn default_container() -> String {
    "app".to_owned()
}

/// Idle until stopped: the lab's pods are quiet unless a fault or a command says otherwise.
fn default_command() -> Vec<String> {
    vec!["sleep".to_owned(), "2147483647".to_owned()]
}

fn default_start_after() -> u64 {
    5
}

fn default_duration() -> u64 {
    60
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_builder_make_the_same_spec() {
        let text = r#"
            [[workload]]
            name = "web"
            kind = "Deployment"
            namespace = "shop"
            replicas = 3
            cpu_millis = 200
            memory_mib = 64

            [[workload.fault]]
            replica = 1
            kind = "memory-leak"
            start_after_secs = 10
            duration_secs = 30

            [[workload]]
            name = "db"
            kind = "StatefulSet"
            replicas = 2
            pids_max = 100
        "#;
        let parsed = LabSpec::from_toml(text, Path::new("inline")).unwrap();
        let built = LabSpec::new()
            .workload(
                Workload::deployment("web")
                    .namespace("shop")
                    .replicas(3)
                    .cpu_millis(200)
                    .memory_mib(64)
                    .fault(
                        Fault::new(1, FaultKind::MemoryLeak)
                            .after_secs(10)
                            .for_secs(30),
                    ),
            )
            .workload(Workload::stateful_set("db").replicas(2).pids_max(100));
        assert_eq!(parsed, built);
    }

    #[test]
    fn rejects_what_cannot_run() {
        let leak_without_limit = LabSpec::new()
            .workload(Workload::deployment("a").fault(Fault::new(0, FaultKind::MemoryLeak)));
        assert!(leak_without_limit.validate().is_err());
        let fault_past_replicas = LabSpec::new()
            .workload(Workload::deployment("a").fault(Fault::new(1, FaultKind::CpuHog)));
        assert!(fault_past_replicas.validate().is_err());
        let bad_name = LabSpec::new().workload(Workload::deployment("Web"));
        assert!(bad_name.validate().is_err());
        assert!(LabSpec::from_toml("[[workload]]\nname = \"a\"\n", Path::new("x")).is_err());
        assert!(LabSpec::default_lab().validate().is_ok());
    }

    #[test]
    fn shipped_specs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let spec = LabSpec::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!spec.workloads.is_empty());
                seen += 1;
            }
        }
        assert!(seen > 0, "no specs in {}", dir.display());
    }

    #[test]
    fn fork_storm_gets_a_pids_limit() {
        let w = Workload::deployment("a")
            .replicas(2)
            .fault(Fault::new(1, FaultKind::ForkStorm));
        assert_eq!(w.pids_max_of(0), None);
        assert_eq!(w.pids_max_of(1), Some(FORK_STORM_PIDS_MAX));
    }
}
