//! What the API reads: a view of the node the run loop refreshes after every discovery poll
//! and every window. Handlers take the lock only to copy out what they answer with.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use crate::{
    api::{
        findings_log::{FindingLog, LogLimits},
        history::History,
    },
    detect::{DomainStats, WindowReport},
    discovery::containers::ContainerTable,
};

/// Whether one signal is collected on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalState {
    pub name: String,
    pub active: bool,
    pub source: String,
    /// Why it is not active.
    pub reason: Option<String>,
}

/// What does not change while the agent runs.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    pub version: String,
    pub node: String,
    pub window: Duration,
    pub min_age: Duration,
    pub started: SystemTime,
    pub signals: Vec<SignalState>,
    /// `None` when eBPF is loaded; else why not.
    pub ebpf_missing: Option<String>,
    /// The score from which a window counts as anomalous.
    pub threshold: f64,
    pub features: Vec<String>,
}

/// The container runtime as the last discovery poll found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeState {
    pub connected: bool,
    pub socket: Option<PathBuf>,
    pub reason: Option<String>,
}

/// One container as the API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub id: String,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub pod_uid: Option<String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub domain: String,
    pub cgroup: PathBuf,
    pub started: SystemTime,
    /// The latest score, once the container was scored.
    pub score: Option<f64>,
    pub flagged: bool,
}

impl ContainerView {
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.started).unwrap_or_default()
    }
}

pub struct NodeState {
    pub facts: AgentFacts,
    pub runtime: RuntimeState,
    pub windows: u64,
    pub containers: Vec<ContainerView>,
    pub findings: FindingLog,
    pub history: History,
    /// Each domain's statistics in its latest window.
    pub domains: HashMap<String, (SystemTime, DomainStats)>,
}

/// The state shared by the run loop and the API.
#[derive(Clone)]
pub struct SharedState(Arc<Mutex<NodeState>>);

impl SharedState {
    pub fn new(facts: AgentFacts, history_windows: usize, limits: LogLimits) -> Self {
        let history = History::new(facts.features.len(), history_windows);
        Self(Arc::new(Mutex::new(NodeState {
            facts,
            runtime: RuntimeState::default(),
            windows: 0,
            containers: Vec::new(),
            findings: FindingLog::new(limits),
            history,
            domains: HashMap::new(),
        })))
    }

    /// The state; a handler that panicked while holding it left nothing half-written that
    /// matters, so a poisoned lock is taken as it is.
    pub fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Alerts from the node's own findings, where the agent sends them itself.
impl herd_aggregator::export::alerts::FindingFeed for SharedState {
    fn subscribe(
        &self,
    ) -> (
        Vec<herd_proto::herd::v1::Finding>,
        tokio::sync::broadcast::Receiver<Arc<herd_proto::herd::v1::FindingEvent>>,
    ) {
        self.lock().findings.watch()
    }
}

impl NodeState {
    /// After a discovery poll: the containers as they are now.
    pub fn after_poll(&mut self, table: &ContainerTable, runtime: RuntimeState) {
        self.runtime = runtime;
        let scores: HashMap<String, (Option<f64>, bool)> = self
            .containers
            .drain(..)
            .map(|c| (c.id, (c.score, c.flagged)))
            .collect();
        self.containers = table
            .containers()
            .into_iter()
            .map(|c| {
                let (score, flagged) = scores.get(&c.id).copied().unwrap_or((None, false));
                ContainerView {
                    id: c.id.clone(),
                    pod: c.pod.as_ref().map(|p| p.name.clone()),
                    namespace: c.pod.as_ref().map(|p| p.namespace.clone()),
                    pod_uid: c.pod_uid.clone(),
                    name: c.name.clone(),
                    image: c.image.clone(),
                    domain: c.domain_name(),
                    cgroup: c.cgroup.clone(),
                    started: c.started,
                    score,
                    flagged,
                }
            })
            .collect();
        self.containers.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.name, &a.id).cmp(&(&b.namespace, &b.pod, &b.name, &b.id))
        });
        self.history.retain(|id| table.get(id).is_some());
        let live: std::collections::HashSet<&str> =
            self.containers.iter().map(|c| c.domain.as_str()).collect();
        self.domains.retain(|name, _| live.contains(name.as_str()));
    }

    /// After a window: scores, findings, history and domain statistics.
    pub fn after_window(&mut self, at: SystemTime, table: &ContainerTable, report: &WindowReport) {
        self.windows += 1;
        let scores: HashMap<&str, (f64, bool)> = report
            .scores
            .iter()
            .map(|s| (s.entity.as_str(), (s.score, s.flagged)))
            .collect();
        for container in &mut self.containers {
            if let Some(&(score, flagged)) = scores.get(container.id.as_str()) {
                container.score = Some(score);
                container.flagged = flagged;
            }
        }
        self.findings.apply(report, at, |entity| {
            table
                .get(entity)
                .map_or((None, None), |c| (c.name.clone(), c.image.clone()))
        });
        let domains: HashMap<&str, String> = report
            .scores
            .iter()
            .filter_map(|s| Some((s.entity.as_str(), table.get(&s.entity)?.domain_name())))
            .collect();
        self.history
            .record(at, report, |entity| domains.get(entity).map(String::as_str));
        for stats in &report.domains {
            self.domains
                .insert(stats.domain.clone(), (at, stats.clone()));
        }
    }
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedState")
    }
}
