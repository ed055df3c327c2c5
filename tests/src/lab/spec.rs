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
    /// A load that varies as real traffic does; when set, it replaces `command`.
    #[serde(default)]
    pub load: Option<Load>,
}

/// A CPU load shaped like a service's: each replica's share of the workload's traffic, a
/// daily ramp compressed into minutes, batch bursts, a canary on another build, and a pod
/// whose error counter is zero but for a rare short run. Times follow the wall clock, so
/// every replica of a workload ramps and bursts together, as behind one Service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Percent of a CPU a replica of weight 100 uses at the ramp's mean.
    pub cpu_percent: u32,
    /// Each replica's weight in percent, replica i taking `weights[i]` (100 when absent):
    /// a leader at 250 beside followers at 100, or 140, 140, 60, 60 for a 70/30 skew.
    #[serde(default)]
    pub weights: Vec<u32>,
    /// The ramp's period in seconds (a day, compressed); 0 keeps the load flat.
    #[serde(default)]
    pub ramp_period_secs: u64,
    /// How far the ramp swings around the mean, in percent of it.
    #[serde(default)]
    pub ramp_depth_percent: u32,
    /// A burst every this many seconds (0: none), `burst_secs` long, at `burst_cpu_percent`.
    #[serde(default)]
    pub burst_every_secs: u64,
    #[serde(default)]
    pub burst_secs: u64,
    #[serde(default)]
    pub burst_cpu_percent: u32,
    /// The replica that runs another build: stress-ng's CPU work by another method, with a
    /// few syscalls of its own each round.
    #[serde(default)]
    pub canary: Option<u32>,
    /// The replica with a sparse error counter: a short run of failing `open` calls about
    /// every `sparse_errors_every_secs` (randomised), nothing in between.
    #[serde(default)]
    pub sparse_errors: Option<u32>,
    #[serde(default = "default_sparse_every")]
    pub sparse_errors_every_secs: u64,
}

/// How long one stress-ng round of the ramp lasts before the load is set again.
const RAMP_STEP_SECS: u64 = 10;

impl Load {
    pub fn new(cpu_percent: u32) -> Self {
        Self {
            cpu_percent,
            weights: Vec::new(),
            ramp_period_secs: 0,
            ramp_depth_percent: 0,
            burst_every_secs: 0,
            burst_secs: 0,
            burst_cpu_percent: 0,
            canary: None,
            sparse_errors: None,
            sparse_errors_every_secs: default_sparse_every(),
        }
    }

    pub fn weights(mut self, weights: &[u32]) -> Self {
        self.weights = weights.to_vec();
        self
    }

    pub fn ramp(mut self, period_secs: u64, depth_percent: u32) -> Self {
        self.ramp_period_secs = period_secs;
        self.ramp_depth_percent = depth_percent;
        self
    }

    pub fn bursts(mut self, every_secs: u64, secs: u64, cpu_percent: u32) -> Self {
        self.burst_every_secs = every_secs;
        self.burst_secs = secs;
        self.burst_cpu_percent = cpu_percent;
        self
    }

    pub fn canary(mut self, replica: u32) -> Self {
        self.canary = Some(replica);
        self
    }

    pub fn sparse_errors(mut self, replica: u32, every_secs: u64) -> Self {
        self.sparse_errors = Some(replica);
        self.sparse_errors_every_secs = every_secs;
        self
    }

    pub fn weight_of(&self, replica: u32) -> u32 {
        self.weights.get(replica as usize).copied().unwrap_or(100)
    }

    /// The busybox shell script replica `replica` runs: the ramp in the foreground, bursts
    /// and sparse errors beside it.
    pub fn script(&self, replica: u32) -> String {
        let mut script = String::new();
        if self.sparse_errors == Some(replica) {
            let every = self.sparse_errors_every_secs.max(2);
            script.push_str(&format!(
                "(while :; do sleep $(({} + RANDOM % {every})); \
                 for i in 1 2 3 4 5 6 7 8; do cat /missing-$i 2>/dev/null; done; done) & ",
                every / 2
            ));
        }
        if self.burst_every_secs > 0 && self.burst_secs > 0 {
            let every = self.burst_every_secs;
            script.push_str(&format!(
                "(while :; do sleep $(({every} - $(date +%s) % {every})); \
                 stress-ng --cpu 1 --cpu-load {} --cpu-load-slice 5 --timeout {}s --quiet; \
                 done) & ",
                self.burst_cpu_percent.clamp(1, 100),
                self.burst_secs
            ));
        }
        let mean = u64::from(self.cpu_percent) * u64::from(self.weight_of(replica));
        let (method, extra) = if self.canary == Some(replica) {
            // Another build: other CPU work, and a syscall-heavy helper beside it.
            (" --cpu-method fft", " --get 1 --get-ops 200")
        } else {
            ("", "")
        };
        // l is in hundredths of a percent until the last step, so that small loads ramp
        // smoothly; a triangle wave over the period.
        let period = self.ramp_period_secs.max(2);
        script.push_str(&format!(
            "while :; do t=$(($(date +%s) % {period})); h={half}; \
             if [ $t -lt $h ]; then x=$t; else x=$(({period} - t)); fi; \
             l=$(({mean} * (100 - {depth} + 2 * {depth} * x / h) / 10000)); \
             [ $l -lt 1 ] && l=1; [ $l -gt 100 ] && l=100; \
             stress-ng --cpu 1 --cpu-load $l --cpu-load-slice 5{method}{extra} \
             --timeout {RAMP_STEP_SECS}s --quiet; done",
            half = period / 2,
            depth = if self.ramp_period_secs == 0 {
                0
            } else {
                self.ramp_depth_percent.min(100)
            },
        ));
        script
    }
}

fn default_sparse_every() -> u64 {
    120
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
            load: None,
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

    pub fn load(mut self, load: Load) -> Self {
        self.load = Some(load);
        self
    }

    /// What replica `replica` runs, before its faults: the load's script when there is one.
    pub fn command_of(&self, replica: u32) -> Vec<String> {
        match &self.load {
            Some(load) => vec!["/bin/sh".to_owned(), "-c".to_owned(), load.script(replica)],
            None => self.command.clone(),
        }
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
        if let Some(load) = &self.load {
            if load.cpu_percent == 0 {
                return bad("a load needs cpu_percent".to_owned());
            }
            if load.weights.len() > self.replicas as usize {
                return bad(format!(
                    "{} load weights for {} replicas",
                    load.weights.len(),
                    self.replicas
                ));
            }
            for (what, replica) in [
                ("canary", load.canary),
                ("sparse errors", load.sparse_errors),
            ] {
                if replica.is_some_and(|r| r >= self.replicas) {
                    return bad(format!("the {what} replica is past the replicas"));
                }
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
    fn a_load_gives_each_replica_its_share_and_role() {
        let text = r#"
            [[workload]]
            name = "web"
            kind = "Deployment"
            replicas = 4
            [workload.load]
            cpu_percent = 4
            weights = [140, 140, 60, 60]
            ramp_period_secs = 360
            ramp_depth_percent = 50
            burst_every_secs = 120
            burst_secs = 15
            burst_cpu_percent = 30
            canary = 3
            sparse_errors = 2
            sparse_errors_every_secs = 60
        "#;
        let spec = LabSpec::from_toml(text, Path::new("inline")).unwrap();
        let load = Load::new(4)
            .weights(&[140, 140, 60, 60])
            .ramp(360, 50)
            .bursts(120, 15, 30)
            .canary(3)
            .sparse_errors(2, 60);
        let built = Workload::deployment("web").replicas(4).load(load.clone());
        assert_eq!(spec.workloads[0], built);

        let argv = built.command_of(0);
        assert_eq!(&argv[..2], ["/bin/sh", "-c"]);
        // Replica 0 weighs 140: a mean of 4·140 hundredths of a percent, swinging ±50 %.
        assert!(argv[2].contains("l=$((560 * (100 - 50 + 2 * 50 * x / h) / 10000))"));
        assert!(argv[2].contains("sleep $((120 - $(date +%s) % 120))"));
        assert!(!argv[2].contains("cat /missing") && !argv[2].contains("--cpu-method"));
        assert!(built.command_of(2)[2].contains("cat /missing"));
        assert!(built.command_of(3)[2].contains("l=$((240 *"));
        assert!(built.command_of(3)[2].contains("--cpu-method fft"));
        // Weights past the replicas, or a canary that is not one of them, cannot run.
        let too_many = Workload::deployment("a")
            .replicas(2)
            .load(Load::new(4).weights(&[1, 2, 3]));
        assert!(LabSpec::new().workload(too_many).validate().is_err());
        let no_canary = Workload::deployment("a")
            .replicas(2)
            .load(Load::new(4).canary(2));
        assert!(LabSpec::new().workload(no_canary).validate().is_err());
    }

    /// The scripts run as the lab's busybox runs them: a ramp step picks a load in range.
    #[test]
    fn the_load_script_is_valid_shell() {
        let load = Load::new(4)
            .weights(&[250])
            .ramp(60, 50)
            .bursts(30, 5, 30)
            .canary(0);
        let script = load.script(0);
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
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
