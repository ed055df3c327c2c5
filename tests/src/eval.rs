//! The detector judged in the lab: one scenario at a time, a Deployment whose replicas all
//! carry the same light, steady load, one replica given a fault after the detector's
//! warm-up, and the agent beside it. What the agent logged is then set against what was
//! injected: found or not, how many windows it took, which container it named and why, and
//! what it flagged that was healthy. `cargo xtask eval` runs every scenario; a root test
//! runs a short subset.

use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use herd_proto::cri::v1::ContainerStatusRequest;

use crate::lab::{Container, Fault, FaultKind, Lab, LabError, LabSpec, Pod, Workload};

/// Windows after the warm-up before the fault starts: the first window has no rates, and a
/// container's own baseline needs `warmup` values of every rate.
const SETTLE_WINDOWS: u32 = 2;
/// Time from the faulty container's start to the agent's first window: the pods started
/// after it, and the agent loading its eBPF programs.
const STARTUP_SLACK: Duration = Duration::from_secs(10);
/// How long to wait for a lab someone else is running before giving up.
const LAB_WAIT: Duration = Duration::from_secs(300);
/// How long the agent may take to stop after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);

const NAMESPACE: &str = "eval";
/// The replica that gets the fault: one in the middle of the start order.
pub const FAULTY_REPLICA: u32 = 1;
/// The annotation on every lab pod that says which replica it is.
const REPLICA_ANNOTATION: &str = "herd.lab/replica";
/// What every replica runs: a few percent of a CPU in 5 ms slices, so that even a 100m
/// limit does not throttle it. The lab tests that need a herd with a light load use it too.
pub const STEADY_LOAD: &[&str] = &[
    "stress-ng",
    "--cpu",
    "1",
    "--cpu-load",
    "5",
    "--cpu-load-slice",
    "5",
    "--timeout",
    "0",
    "--quiet",
];

/// One fault scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// Name on the command line and in the table.
    pub name: &'static str,
    pub kind: FaultKind,
    /// CPU limit of every replica; a low one turns a CPU hog into throttling.
    pub cpu_millis: u32,
    /// Memory limit of every replica; the leak grows until it reaches it.
    pub memory_mib: u64,
    /// pids.max of every replica's pod; the fork storm runs into it.
    pub pids_max: u32,
    /// Features that explain the fault to a person; the top feature should be one of them.
    pub expected: &'static [&'static str],
}

/// Every fault scenario, in the order the evaluation runs them.
pub const CASES: &[Case] = &[
    Case {
        name: "cpu-hog",
        kind: FaultKind::CpuHog,
        cpu_millis: 1000,
        memory_mib: 128,
        pids_max: 64,
        // One spinning core plus the steady load is over a 1000m limit: throttled too. With a
        // one-core limit, usage in cores and utilization are the same number.
        expected: &["cpu_usage_cores", "cpu_utilization", "cpu_throttled_share"],
    },
    Case {
        name: "memory-leak",
        kind: FaultKind::MemoryLeak,
        cpu_millis: 1000,
        memory_mib: 64,
        pids_max: 64,
        expected: &[
            "oom_kills_per_window",
            "memory_limit_hits_per_s",
            "memory_working_set",
            "memory_utilization",
            "memory_pressure",
        ],
    },
    Case {
        name: "io-storm",
        kind: FaultKind::IoStorm,
        cpu_millis: 1000,
        memory_mib: 128,
        pids_max: 64,
        expected: &[
            "disk_write_bytes_per_s",
            "disk_read_bytes_per_s",
            "disk_ops_per_s",
            "disk_latency_ms",
            "io_pressure",
        ],
    },
    Case {
        name: "fork-storm",
        kind: FaultKind::ForkStorm,
        cpu_millis: 1000,
        memory_mib: 128,
        pids_max: 64,
        expected: &["pids_current", "pids_utilization", "fork_failures_per_s"],
    },
    Case {
        name: "syscall-errors",
        kind: FaultKind::SyscallErrors,
        cpu_millis: 1000,
        memory_mib: 128,
        pids_max: 64,
        // stress-ng's bad-address stressor fails 2.4 % of its calls, which is under the
        // failure ratio's floor: only the rate can name it.
        expected: &["syscall_failures_per_s"],
    },
    Case {
        name: "socket-flood",
        kind: FaultKind::SocketFlood,
        cpu_millis: 1000,
        memory_mib: 128,
        pids_max: 64,
        // The flood is on the pod's own loopback, which only the socket counters see.
        expected: &["socket_rx_bytes_per_s", "socket_tx_bytes_per_s"],
    },
    Case {
        name: "cpu-throttle",
        kind: FaultKind::CpuHog,
        cpu_millis: 100,
        memory_mib: 128,
        pids_max: 64,
        expected: &[
            "cpu_throttled_share",
            "cpu_pressure",
            "cpu_runqueue_wait_ms",
            "cpu_long_wait_share",
        ],
    },
];

/// The scenario of that name.
pub fn case(name: &str) -> Option<Case> {
    CASES.iter().copied().find(|c| c.name == name)
}

/// The detector's settings that time a scenario and describe it, as the agent under test
/// prints them (`herd-agent detector`): this library does not link the agent, and a copy
/// would drift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorSettings {
    /// Windows the agent watches a new container before it judges it.
    pub warmup: u32,
    /// A finding opens on `open_m` of the last `open_n` windows over `threshold`.
    pub open_m: u32,
    pub open_n: u32,
    pub threshold: f64,
}

impl DetectorSettings {
    /// Asks the agent binary.
    pub fn of_agent(agent: &Path) -> anyhow::Result<Self> {
        let out = Command::new(agent)
            .arg("detector")
            .env("HERD_LOG_TARGET", "stderr")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} detector", agent.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "{} detector: {}\n{}",
            agent.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Self::parse(&String::from_utf8_lossy(&out.stdout))
    }

    fn parse(json: &str) -> anyhow::Result<Self> {
        let json: serde_json::Value =
            serde_json::from_str(json).context("`herd-agent detector` printed no JSON")?;
        let count = |key: &str| {
            json.get(key)
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .with_context(|| format!("`herd-agent detector` gave no {key}"))
        };
        Ok(Self {
            warmup: count("warmup")?,
            open_m: count("open_m")?,
            open_n: count("open_n")?,
            threshold: json
                .get("threshold")
                .and_then(serde_json::Value::as_f64)
                .context("`herd-agent detector` gave no threshold")?,
        })
    }
}

/// How the scenarios run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The agent binary.
    pub agent: PathBuf,
    /// Its detector's settings.
    pub detector: DetectorSettings,
    /// Detection window (the agent's `--interval`).
    pub window: Duration,
    /// The agent's `--discovery-interval`.
    pub discovery_interval: Duration,
    /// Replicas of the workload under test.
    pub replicas: u32,
    /// How long the fault lasts, in windows.
    pub fault_windows: u32,
    /// Where each scenario leaves its frames and the agent's log.
    pub out: PathBuf,
}

impl Settings {
    /// Settings for `agent`, whose detector settings are asked of it.
    pub fn new(agent: PathBuf, window: Duration, out: PathBuf) -> anyhow::Result<Self> {
        Ok(Self {
            detector: DetectorSettings::of_agent(&agent)?,
            agent,
            window,
            discovery_interval: Duration::from_secs(2),
            replicas: 5,
            fault_windows: 6,
            out,
        })
    }

    /// Seconds from the faulty container's start to the fault's.
    pub fn fault_after(&self) -> Duration {
        STARTUP_SLACK + self.window * (self.detector.warmup + SETTLE_WINDOWS)
    }

    pub fn fault_duration(&self) -> Duration {
        self.window * self.fault_windows
    }

    /// The load every replica runs.
    pub fn steady_load(&self) -> String {
        STEADY_LOAD.join(" ")
    }
}

/// One finding the agent logged.
#[derive(Clone, Debug)]
pub struct FindingEvent {
    /// When the agent logged it.
    pub at: SystemTime,
    /// Opened, or closed.
    pub opened: bool,
    /// Container id.
    pub entity: String,
    pub domain: String,
    /// The finding in words, drivers strongest first.
    pub message: String,
}

impl FindingEvent {
    /// The feature that drove the finding most, out of `features` (the frame columns).
    pub fn top_feature(&self, features: &[String]) -> Option<String> {
        // "<severity> <id> (pod …) in <domain> on <node>: <driver>; <driver>…"
        let (_, drivers) = self.message.split_once(": ")?;
        let first = drivers.split("; ").next()?;
        features
            .iter()
            .filter(|f| first.starts_with(&format!("{} ", f.replace('_', " "))))
            .max_by_key(|f| f.len())
            .cloned()
    }
}

/// The recorded feature frames of a run: their timestamps and feature names.
#[derive(Clone, Debug, Default)]
pub struct RecordedFrames {
    pub features: Vec<String>,
    /// Window timestamps, ascending.
    pub windows: Vec<SystemTime>,
}

impl RecordedFrames {
    /// Reads a frame file with the reader `herd-agent replay` uses, so that a recording the
    /// evaluation accepts is one replay accepts.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut frames = herd_detect::frames::FrameReader::new(
            path.display().to_string(),
            BufReader::new(file),
        )?;
        let mut windows = Vec::new();
        while let Some(window) = frames.next_window()? {
            windows.push(window.at);
        }
        Ok(Self {
            features: frames.features,
            windows,
        })
    }

    /// Windows that ended after `from` and no later than `to`.
    pub fn windows_between(&self, from: SystemTime, to: SystemTime) -> usize {
        self.windows
            .iter()
            .filter(|&&ts| ts > from && ts <= to)
            .count()
    }
}

/// What one fault scenario gave.
#[derive(Clone, Debug)]
pub struct FaultOutcome {
    pub case: Case,
    /// The faulty replica's container id.
    pub target: String,
    pub fault_start: SystemTime,
    pub fault_end: SystemTime,
    /// Windows the agent had scored before the fault started.
    pub windows_before_fault: usize,
    /// Every finding the agent logged, in order.
    pub findings: Vec<FindingEvent>,
    pub frames: RecordedFrames,
    /// Where the frames and the agent's log are.
    pub dir: PathBuf,
}

impl FaultOutcome {
    /// The first finding opened on the faulty container once the fault had started.
    pub fn hit(&self) -> Option<&FindingEvent> {
        self.findings
            .iter()
            .find(|f| f.opened && f.entity == self.target && f.at >= self.fault_start)
    }

    /// Findings opened on healthy containers, or on the faulty one before its fault.
    pub fn false_findings(&self) -> Vec<&FindingEvent> {
        self.findings
            .iter()
            .filter(|f| f.opened && (f.entity != self.target || f.at < self.fault_start))
            .collect()
    }

    /// Whether any finding opened while the fault ran (or in the window after).
    pub fn detected(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.opened && f.at >= self.fault_start)
    }

    /// Whether the first finding of the fault named the faulty container.
    pub fn named_right_container(&self) -> bool {
        self.findings
            .iter()
            .find(|f| f.opened && f.at >= self.fault_start)
            .is_some_and(|f| f.entity == self.target)
    }

    /// Windows from the fault's start to the finding on the faulty container, counting
    /// the window the fault started in.
    pub fn windows_to_finding(&self) -> Option<usize> {
        self.hit()
            .map(|hit| self.frames.windows_between(self.fault_start, hit.at))
    }

    pub fn top_feature(&self) -> Option<String> {
        self.hit()?.top_feature(&self.frames.features)
    }

    pub fn top_feature_expected(&self) -> bool {
        self.top_feature()
            .is_some_and(|f| self.case.expected.contains(&f.as_str()))
    }

    /// Found within `windows`, on the right container, and nothing healthy flagged.
    pub fn meets(&self, windows: usize) -> bool {
        self.windows_to_finding().is_some_and(|w| w <= windows)
            && self.named_right_container()
            && self.false_findings().is_empty()
    }
}

/// Runs one fault scenario in a lab of its own, which is down again when this returns.
pub async fn run_fault(case: Case, settings: &Settings) -> anyhow::Result<FaultOutcome> {
    let dir = settings.out.join(case.name);
    fresh_dir(&dir)?;
    let fault = Fault::new(FAULTY_REPLICA, case.kind)
        .after_secs(settings.fault_after().as_secs())
        .for_secs(settings.fault_duration().as_secs());
    let workload = Workload::deployment("svc")
        .namespace(NAMESPACE)
        .replicas(settings.replicas)
        .cpu_millis(case.cpu_millis)
        .memory_mib(case.memory_mib)
        .pids_max(case.pids_max)
        .command(STEADY_LOAD.iter().copied())
        .fault(fault);
    let lab = lab_up(&LabSpec::new().workload(workload.clone())).await?;
    let agent = Agent::start(settings, &lab, &dir, settings.fault_after() * 2)?;

    let pods = lab.pods().await?;
    let target = container_of(&pods, &workload, FAULTY_REPLICA)
        .context("the faulty replica has no container")?
        .id
        .clone();
    let fault_start = started_at(&lab, &target).await? + settings.fault_after();
    let fault_end = fault_start + settings.fault_duration();
    let unix = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    // What the frames need beside them to be read again later.
    fs::write(
        dir.join(SCENARIO),
        format!(
            "fault={}\ntarget={target}\nfault_start={:.3}\nfault_end={:.3}\n",
            case.name,
            unix(fault_start),
            unix(fault_end)
        ),
    )?;
    // One window more, so that a finding in the window the fault ended in is seen.
    sleep_until(fault_end + settings.window).await;

    let findings = agent.stop()?;
    lab.down().await?;
    let frames = RecordedFrames::read(&dir.join(FRAMES))?;
    let windows_before_fault = frames.windows_between(UNIX_EPOCH, fault_start);
    Ok(FaultOutcome {
        case,
        target,
        fault_start,
        fault_end,
        windows_before_fault,
        findings,
        frames,
        dir,
    })
}

/// What the healthy run gave.
#[derive(Clone, Debug)]
pub struct HealthyOutcome {
    pub duration: Duration,
    /// The workloads, as "name: replicas × load".
    pub workloads: Vec<String>,
    /// The workload whose replicas were replaced one by one, half-way through.
    pub restarted: String,
    /// Every finding the agent logged; each opened one is false.
    pub findings: Vec<FindingEvent>,
    pub frames: RecordedFrames,
    pub dir: PathBuf,
}

impl HealthyOutcome {
    pub fn false_findings(&self) -> Vec<&FindingEvent> {
        self.findings.iter().filter(|f| f.opened).collect()
    }
}

/// Three healthy workloads at different load levels, each replica a little off its peers,
/// watched for `duration` with a rolling restart of one workload half-way.
pub async fn run_healthy(
    settings: &Settings,
    duration: Duration,
) -> anyhow::Result<HealthyOutcome> {
    let dir = settings.out.join("healthy");
    fresh_dir(&dir)?;
    // (name, replicas, lowest load %, spread of load %): busybox's $RANDOM gives each
    // replica its own steady level.
    let shapes = [("front", 5, 2, 3), ("api", 5, 6, 5), ("worker", 4, 12, 7)];
    let workloads: Vec<Workload> = shapes
        .iter()
        .map(|&(name, replicas, low, spread)| {
            let script = format!(
                "exec stress-ng --cpu 1 --cpu-load $(({low} + RANDOM % {spread})) \
                 --cpu-load-slice 5 --timeout 0 --quiet"
            );
            Workload::deployment(name)
                .namespace(NAMESPACE)
                .replicas(replicas)
                .cpu_millis(1000)
                .memory_mib(128)
                .pids_max(64)
                .command(["/bin/sh", "-c", &script])
        })
        .collect();
    let spec = workloads
        .iter()
        .cloned()
        .fold(LabSpec::new(), LabSpec::workload);
    let mut lab = lab_up(&spec).await?;
    let agent = Agent::start(settings, &lab, &dir, duration * 2)?;
    let started = Instant::now();

    let restarted = &workloads[1];
    tokio::time::sleep(duration / 2).await;
    for replica in 0..restarted.replicas {
        let pods = lab.pods().await?;
        let pod = pod_of(&pods, restarted, replica)
            .context("a replica to restart is missing")?
            .clone();
        lab.remove_pod(&pod).await?;
        lab.add_pod(restarted, replica).await?;
        // The way a rollout waits for the new pod before the next one.
        tokio::time::sleep(settings.window * 2).await;
    }
    tokio::time::sleep(duration.saturating_sub(started.elapsed())).await;

    let findings = agent.stop()?;
    lab.down().await?;
    let frames = RecordedFrames::read(&dir.join(FRAMES))?;
    Ok(HealthyOutcome {
        duration,
        workloads: shapes
            .iter()
            .map(|(name, replicas, low, spread)| {
                format!("{name}: {replicas} × {low}–{}% of a CPU", low + spread - 1)
            })
            .collect(),
        restarted: restarted.name.clone(),
        findings,
        frames,
        dir,
    })
}

pub(crate) const FRAMES: &str = "frames.csv";
pub(crate) const AGENT_LOG: &str = "agent.log";
const SCENARIO: &str = "scenario.txt";

/// The agent, watching the lab; ended (SIGTERM, then SIGKILL) on drop.
pub(crate) struct Agent {
    child: Child,
    findings: Arc<Mutex<Vec<FindingEvent>>>,
    reader: Option<JoinHandle<()>>,
}

impl Agent {
    /// Starts the agent with its frames and log in `dir`. `bound` is its own `--duration`,
    /// a backstop in case this process dies without ending it.
    pub(crate) fn start(
        settings: &Settings,
        lab: &Lab,
        dir: &Path,
        bound: Duration,
    ) -> anyhow::Result<Self> {
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        let mut child = Command::new(&settings.agent)
            .arg("--interval")
            .arg(secs(settings.window))
            .arg("--discovery-interval")
            .arg(secs(settings.discovery_interval))
            // The lab's pods start just before the agent; the detector's own warm-up is
            // what the evaluation counts windows from.
            .args(["--min-age", "0s"])
            .arg("--runtime-socket")
            .arg(lab.socket())
            .arg("--record")
            .arg(dir.join(FRAMES))
            .arg("--socket")
            .arg(dir.join("agent.sock"))
            .arg("--duration")
            .arg(secs(bound + Duration::from_secs(120)))
            .env("HERD_LOG_FORMAT", "json")
            .env("HERD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", settings.agent.display()))?;
        let stderr = child.stderr.take().context("the agent's stderr")?;
        let mut log = File::create(dir.join(AGENT_LOG))?;
        let findings = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&findings);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let at = SystemTime::now();
                // The log is evidence only: a full disk must not stop the evaluation.
                let _ = writeln!(log, "{line}");
                if let Some(finding) = parse_finding(&line, at) {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(finding);
                }
            }
        });
        Ok(Self {
            child,
            findings,
            reader: Some(reader),
        })
    }

    /// Stops the agent; its findings, in order. Fails if it had already died.
    pub(crate) fn stop(mut self) -> anyhow::Result<Vec<FindingEvent>> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the agent exited early ({status}); see its log");
        }
        self.end();
        let findings = self.findings.lock().unwrap_or_else(|e| e.into_inner());
        Ok(findings.clone())
    }

    fn end(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(libc::pid_t::MAX);
            // SAFETY: kill has no memory preconditions; the pid is our own unreaped child,
            // so it cannot name another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_WITHIN;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.end();
    }
}

/// A finding from one JSON log line of the agent.
fn parse_finding(line: &str, at: SystemTime) -> Option<FindingEvent> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    if json.get("target")?.as_str()? != "herd::finding" {
        return None;
    }
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let state = field("herd_state")?;
    // An escalation is the same finding again: only openings and closings count here.
    if state == "escalated" {
        return None;
    }
    Some(FindingEvent {
        at,
        opened: state == "opened",
        entity: field("herd_container_id")?,
        domain: field("herd_domain")?,
        message: field("message")?,
    })
}

/// `Lab::up`, waiting a while for a lab that someone else is running.
pub(crate) async fn lab_up(spec: &LabSpec) -> anyhow::Result<Lab> {
    let deadline = Instant::now() + LAB_WAIT;
    loop {
        match Lab::up(spec).await {
            Err(LabError::AlreadyUp(socket)) if Instant::now() < deadline => {
                eprintln!(
                    "another lab is up at {}; waiting for it to go",
                    socket.display()
                );
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
            up => return Ok(up?),
        }
    }
}

pub(crate) fn pod_of<'a>(pods: &'a [Pod], workload: &Workload, replica: u32) -> Option<&'a Pod> {
    let replica = replica.to_string();
    pods.iter().find(|pod| {
        pod.namespace == workload.namespace
            && pod.name.starts_with(&format!("{}-", workload.name))
            && pod.annotations.get(REPLICA_ANNOTATION) == Some(&replica)
    })
}

pub(crate) fn container_of<'a>(
    pods: &'a [Pod],
    workload: &Workload,
    replica: u32,
) -> Option<&'a Container> {
    pod_of(pods, workload, replica)?.containers.first()
}

/// When the runtime started a container.
pub(crate) async fn started_at(lab: &Lab, container_id: &str) -> anyhow::Result<SystemTime> {
    let status = lab
        .runtime()
        .container_status(ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose: false,
        })
        .await
        .context("CRI ContainerStatus")?
        .into_inner()
        .status
        .context("ContainerStatus without a status")?;
    let nanos = u64::try_from(status.started_at).context("a container started before 1970")?;
    Ok(UNIX_EPOCH + Duration::from_nanos(nanos))
}

pub(crate) async fn sleep_until(at: SystemTime) {
    if let Ok(left) = at.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

pub(crate) fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> Vec<String> {
        [
            "cpu_usage_cores",
            "cpu_utilization",
            "pids_current",
            "pids_utilization",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    #[test]
    fn findings_are_read_from_the_agent_json_log() {
        let line = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"WARN","message":"critical 4f2a (pod eval/svc-x-y) in eval/Deployment/svc/app on vm: pids utilization 5.2× peer median (1.00 vs 0.190, z 40.1); pids current 5.2× peer median (64 vs 12, z 20.0)","target":"herd::finding","herd_finding_id":"0123456789abcdef","herd_state":"opened","herd_container_id":"4f2a","herd_domain":"eval/Deployment/svc/app","herd_severity":"critical"}"#;
        let finding = parse_finding(line, UNIX_EPOCH).unwrap();
        assert!(finding.opened);
        assert_eq!(finding.entity, "4f2a");
        assert_eq!(finding.domain, "eval/Deployment/svc/app");
        // "pids utilization" must not be read as the shorter "pids current" or vice versa.
        assert_eq!(
            finding.top_feature(&features()).as_deref(),
            Some("pids_utilization")
        );

        let closed = line.replace("\"opened\"", "\"closed\"");
        assert!(!parse_finding(&closed, UNIX_EPOCH).unwrap().opened);
        let escalated = line.replace("\"opened\"", "\"escalated\"");
        assert!(
            parse_finding(&escalated, UNIX_EPOCH).is_none(),
            "an escalation is not another finding"
        );
        let other = r#"{"level":"INFO","message":"watching","target":"herd_agent::cmd::run"}"#;
        assert!(parse_finding(other, UNIX_EPOCH).is_none());
        assert!(parse_finding("not json", UNIX_EPOCH).is_none());
    }

    #[test]
    fn a_feature_name_must_match_whole_words() {
        let finding = FindingEvent {
            at: UNIX_EPOCH,
            opened: true,
            entity: "a".into(),
            domain: "d".into(),
            message: "warning a in d on n: cpu utilization 3.0× peer median (0.9 vs 0.3, z 9.0)"
                .into(),
        };
        assert_eq!(
            finding.top_feature(&features()).as_deref(),
            Some("cpu_utilization")
        );
    }

    #[test]
    fn windows_are_counted_from_the_fault_start() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let frames = RecordedFrames {
            features: features(),
            windows: (1..=10).map(|i| at(i * 10)).collect(),
        };
        // The fault starts at 42 s: the windows ending at 50 and 60 s see it, and a
        // finding logged just after the 60 s window took two windows.
        assert_eq!(
            frames.windows_between(at(42), at(60) + Duration::from_millis(5)),
            2
        );
        assert_eq!(frames.windows_between(UNIX_EPOCH, at(42)), 4);
    }

    #[test]
    fn frames_are_read_as_replay_reads_them() {
        let dir = std::env::temp_dir().join(format!("herd-eval-frames-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("frames.csv");
        fs::write(
            &path,
            "ts,node,domain,entity,cpu\n10,n,d,a,1\n10,n,d,b,\n13,n,d,a,2\n",
        )
        .unwrap();
        let frames = RecordedFrames::read(&path).unwrap();
        assert_eq!(frames.features, ["cpu"]);
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(frames.windows, [at(10), at(13)]);
        // What replay refuses, the evaluation refuses too, with the line.
        fs::write(&path, "ts,node,domain,entity,cpu\n13,n,d,a,1\n10,n,d,a,1\n").unwrap();
        let err = RecordedFrames::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 3: ts 10 comes after 13"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn detector_settings_are_read_from_the_agent_json() {
        let json = r#"{"adapt_after":60,"open_m":2,"open_n":3,"threshold":3.5,"warmup":6}"#;
        assert_eq!(
            DetectorSettings::parse(json).unwrap(),
            DetectorSettings {
                warmup: 6,
                open_m: 2,
                open_n: 3,
                threshold: 3.5
            }
        );
        assert!(DetectorSettings::parse(r#"{"open_m":2}"#).is_err());
        assert!(DetectorSettings::parse("").is_err());
    }

    #[test]
    fn every_case_has_a_unique_name_and_an_expected_feature() {
        for (i, case) in CASES.iter().enumerate() {
            assert!(!case.expected.is_empty(), "{}", case.name);
            assert_eq!(super::case(case.name), Some(*case));
            assert!(CASES[..i].iter().all(|c| c.name != case.name));
        }
    }
}
