//! The aggregator's state and its round: take in node summaries, and every window expire
//! silent nodes, pass the nodes' own findings through, run the three comparisons, and keep
//! the findings they lead to.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use herd_detect::{
    DetectConfig, DetectError, Finding, WindowReport, finding_id,
    proto::{self as convert, FindingContext},
};
use herd_proto::herd::v1 as pb;

use crate::{
    compare::{Comparisons, NODE_FEATURES, comparable, workload_entity},
    findings::{BookLimits, FindingBook},
    identities::{Identities, StreamIdentities},
    matrix,
    nodes::{IngestError, NodeBook},
    store::Store,
};

/// Where the aggregator's own findings come from.
pub const SOURCE: &str = "aggregator";

#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// A node unheard of this long is silent: its containers leave the comparisons.
    pub expiry: Duration,
    pub detect: DetectConfig,
    pub limits: BookLimits,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            expiry: Duration::from_secs(60),
            // A shorter own history per entity than the agent's: 150,000 containers × every
            // feature × the ring must fit in memory. The agent's floors per feature, so that
            // a replica is judged as its node judges it.
            //
            // No seasonal past: the agents keep it for the containers that have no peers on
            // their node, and judge them on it; here it would repeat that at about 19 KB an
            // entity (7,000 of them at 150,000 containers).
            detect: DetectConfig {
                history: 12,
                season_period: 0,
                absolute_floors: herd_detect::floors::feature_floors(),
                ..DetectConfig::default()
            },
            limits: BookLimits::default(),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub nodes: usize,
    pub containers: usize,
    pub opened: usize,
    pub closed: usize,
}

pub struct Aggregator {
    config: AggregatorConfig,
    nodes: NodeBook,
    comparisons: Comparisons,
    findings: FindingBook,
    rounds: u64,
    /// Cluster finding ids (see [`cluster_id`]) → the id a finding kept from before a restart.
    continued: HashMap<String, String>,
    /// Open findings of this aggregator from its store, by subject, not yet found again by
    /// a detector. The detectors start afresh after a restart, and a stray that was already
    /// there has no move from a baseline to show; so a restored finding is kept while its
    /// subject still strays from its peers on its drivers, and closes as a finding does.
    restored: HashMap<String, Restored>,
    /// Summaries refused as invalid.
    refused: u64,
}

struct Restored {
    id: String,
    kind: i32,
    /// The detector's entity for its subject.
    entity: String,
    drivers: Vec<String>,
    calm: usize,
    absent: usize,
}

/// The id of the aggregator's finding of `kind` from its detector's finding `detector_id`.
/// The detector derives ids from the node, the entity and the opening, so a node's own
/// finding and the cluster's finding of the same replica (one node in standalone mode opens
/// both in the same window) would share one; the kind keeps them apart in the book.
fn cluster_id(kind: pb::FindingKind, detector_id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind
        .as_str_name()
        .bytes()
        .chain([0])
        .chain(detector_id.bytes())
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// What a finding is about, whatever its id: the same key means the same finding.
fn subject_key(kind: i32, node: &str, domain: &str, container_id: &str) -> String {
    format!("{kind}|{node}|{domain}|{container_id}")
}

impl Aggregator {
    pub fn new(
        config: AggregatorConfig,
        store: Option<(Store, Vec<pb::Finding>)>,
    ) -> Result<Self, DetectError> {
        let findings = FindingBook::new(config.limits, store);
        let restored = findings
            .open()
            .filter(|f| f.source == SOURCE)
            .filter_map(|f| {
                let entity = match pb::FindingKind::try_from(f.kind).ok()? {
                    pb::FindingKind::ClusterReplica => f.container_id.clone(),
                    pb::FindingKind::WorkloadNode => workload_entity(&f.node, &f.domain),
                    pb::FindingKind::SickNode => f.node.clone(),
                    _ => return None,
                };
                Some((
                    subject_key(f.kind, &f.node, &f.domain, &f.container_id),
                    Restored {
                        id: f.id.clone(),
                        kind: f.kind,
                        entity,
                        drivers: f.drivers.iter().map(|d| d.feature.clone()).collect(),
                        calm: 0,
                        absent: 0,
                    },
                ))
            })
            .collect();
        Ok(Self {
            comparisons: Comparisons::new(config.detect.clone())?,
            findings,
            nodes: NodeBook::default(),
            config,
            rounds: 0,
            continued: HashMap::new(),
            restored,
            refused: 0,
        })
    }

    pub fn ingest(&mut self, summary: pb::NodeSummary, now: SystemTime) -> Result<(), IngestError> {
        self.nodes
            .ingest(summary, now)
            .inspect_err(|_| self.refused += 1)
    }

    /// Summaries refused as invalid since the start.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    pub fn findings(&self) -> &FindingBook {
        &self.findings
    }

    /// Summaries taken since the start, from every node.
    pub fn received(&self) -> u64 {
        self.nodes.received()
    }

    /// What each detector of the replica comparison (one per shard) and of the workload
    /// comparison keeps (see [`herd_detect::Footprint`]); none before the first round.
    pub fn footprints(&self) -> Vec<(&'static str, herd_detect::Footprint)> {
        self.comparisons.footprints()
    }

    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// One round at `now`.
    pub fn round(&mut self, now: SystemTime) -> Result<RoundReport, DetectError> {
        self.rounds += 1;
        let mut report = RoundReport::default();
        let before: HashSet<String> = self.findings.open().map(|f| f.id.clone()).collect();

        let silence = self.nodes.expire(now, self.config.expiry);
        for node in &silence.went {
            self.close_node_findings(node, now);
            self.findings
                .upsert(silent_finding(node, now, self.config.expiry));
        }
        for node in &silence.back {
            let open: Vec<String> = self
                .findings
                .open()
                .filter(|f| f.kind == pb::FindingKind::NodeSilent as i32 && f.node == *node)
                .map(|f| f.id.clone())
                .collect();
            for id in open {
                self.findings.close(&id, now);
            }
        }
        self.pass_node_findings();

        let open_domains = self.open_domains();
        // Only a finding restored from the store needs its subject's every comparison.
        let explain: HashSet<String> = self.restored.values().map(|r| r.entity.clone()).collect();
        let rounds = self
            .comparisons
            .run(now, &self.nodes, &open_domains, &explain)?;
        let named: HashSet<(&str, &str)> = rounds
            .iter()
            .flat_map(|r| r.report.opened.iter().chain(&r.report.updated))
            .map(|f| (f.subject.node.as_str(), f.subject.entity.as_str()))
            .collect();
        let identities = self.identities(&named);
        for round in &rounds {
            self.take(round.kind, &round.report, &identities, now);
        }
        self.findings.commit(now);

        let after: HashSet<String> = self.findings.open().map(|f| f.id.clone()).collect();
        report.nodes = self.nodes.live().count();
        report.containers = self
            .nodes
            .live()
            .map(|(_, e)| e.summary.containers.len())
            .sum();
        report.opened = after.difference(&before).count();
        report.closed = before.difference(&after).count();
        Ok(report)
    }

    /// The nodes' own findings, marked by source; those a node no longer reports are closed.
    fn pass_node_findings(&mut self) {
        let mut reported: HashMap<String, (HashSet<String>, SystemTime)> = HashMap::new();
        let mut incoming = Vec::new();
        for (node, entry) in self.nodes.live() {
            let at = entry
                .summary
                .at
                .as_ref()
                .and_then(convert::from_timestamp)
                .unwrap_or(entry.last_seen);
            let ids = entry
                .summary
                .findings
                .iter()
                .map(|f| f.id.clone())
                .collect();
            reported.insert(node.clone(), (ids, at));
            for finding in &entry.summary.findings {
                let mut finding = finding.clone();
                finding.node = node.clone();
                finding.source = format!("node {node}");
                if finding.kind == pb::FindingKind::Unspecified as i32 {
                    finding.kind = pb::FindingKind::NodePeers.into();
                }
                incoming.push(finding);
            }
        }
        for finding in incoming {
            self.findings.upsert(finding);
        }
        let gone: Vec<(String, SystemTime)> = self
            .findings
            .open()
            .filter(|f| f.source != SOURCE)
            .filter_map(|f| {
                let (ids, at) = reported.get(&f.node)?;
                (!ids.contains(&f.id)).then(|| (f.id.clone(), *at))
            })
            .collect();
        for (id, at) in gone {
            self.findings.close(&id, at);
        }
    }

    fn close_node_findings(&mut self, node: &str, now: SystemTime) {
        let ids: Vec<String> = self
            .findings
            .open()
            .filter(|f| f.node == node && f.kind != pb::FindingKind::NodeSilent as i32)
            .map(|f| f.id.clone())
            .collect();
        for id in ids {
            self.findings.close(&id, now);
        }
    }

    /// Per node, the domains with an open finding of any kind there.
    fn open_domains(&self) -> HashMap<String, HashSet<String>> {
        let mut open: HashMap<String, HashSet<String>> = HashMap::new();
        for f in self.findings.open() {
            if comparable(&f.domain) {
                open.entry(f.node.clone())
                    .or_default()
                    .insert(f.domain.clone());
            }
        }
        open
    }

    /// Container id → (name, image) of the containers in `ids`, from the live summaries.
    /// The name and image of each container named by its node and id, where its node's
    /// stream carried its identity.
    fn identities(&self, named: &HashSet<(&str, &str)>) -> HashMap<String, (String, String)> {
        named
            .iter()
            .filter_map(|&(node, id)| self.nodes.get(node)?.identities.get(id))
            .map(|c| (c.id.clone(), (c.name.clone(), c.image.clone())))
            .collect()
    }

    fn take(
        &mut self,
        kind: pb::FindingKind,
        report: &WindowReport,
        identities: &HashMap<String, (String, String)>,
        now: SystemTime,
    ) {
        for finding in report.opened.iter().chain(&report.updated) {
            let identity = identities.get(&finding.subject.entity);
            let mut message = convert::finding(
                finding,
                FindingContext {
                    container: identity.map(|(name, _)| name.as_str()),
                    image: identity.map(|(_, image)| image.as_str()),
                    kind,
                    source: SOURCE,
                },
            );
            if kind != pb::FindingKind::ClusterReplica {
                // Its subject is a node or a node's share of a workload, not a container.
                message.container_id.clear();
                message.summary = summary(kind, finding);
            }
            // The same finding as one open before a restart: it goes on under its old id.
            let key = subject_key(
                message.kind,
                &message.node,
                &message.domain,
                &message.container_id,
            );
            message.id = cluster_id(kind, &finding.id);
            if let Some(old) = self.restored.remove(&key) {
                self.continued.insert(message.id.clone(), old.id);
            }
            if let Some(old) = self.continued.get(&message.id) {
                if let Some(known) = self.findings.get_open(old) {
                    message.opened = known.opened;
                    message.peak_score = message.peak_score.max(known.peak_score);
                }
                message.id.clone_from(old);
            }
            self.findings.upsert(message);
        }
        for finding in &report.closed {
            let id = cluster_id(kind, &finding.id);
            let id = self.continued.remove(&id).unwrap_or(id);
            self.findings.close(&id, finding.closed.unwrap_or(now));
        }
        self.follow_restored(kind, report, now);
    }

    /// Keeps a restored finding of `kind` while its subject's level still strays from its
    /// peers on its drivers (robust z at or over the close threshold), and closes it after
    /// the calm windows a finding closes after, or when its subject is gone.
    fn follow_restored(&mut self, kind: pb::FindingKind, report: &WindowReport, now: SystemTime) {
        let names: Vec<String> = match kind {
            pb::FindingKind::SickNode => NODE_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            _ => self.comparisons.features().to_vec(),
        };
        if self.restored.is_empty() {
            return;
        }
        let detect = &self.config.detect;
        let mut closed = Vec::new();
        let mut straying = Vec::new();
        let scores: HashMap<&str, &herd_detect::EntityScore> = report
            .scores
            .iter()
            .map(|s| (s.entity.as_str(), s))
            .collect();
        for (key, restored) in self
            .restored
            .iter_mut()
            .filter(|(_, r)| r.kind == kind as i32)
        {
            let Some(score) = scores.get(restored.entity.as_str()) else {
                restored.absent += 1;
                if restored.absent >= detect.forget_after {
                    closed.push(key.clone());
                }
                continue;
            };
            restored.absent = 0;
            let level = score
                .features
                .iter()
                .zip(&names)
                .filter(|(_, name)| restored.drivers.is_empty() || restored.drivers.contains(name))
                .filter_map(|(c, _)| c.filter(|c| c.basis == herd_detect::Basis::Peers))
                .map(|c| (0.6745 * (c.value - c.reference) / c.scale).abs())
                .fold(0.0, f64::max);
            if level >= detect.close_threshold {
                restored.calm = 0;
                straying.push(restored.id.clone());
            } else {
                restored.calm += 1;
                if restored.calm >= detect.close_after {
                    closed.push(key.clone());
                }
            }
        }
        for id in straying {
            if let Some(mut finding) = self.findings.get_open(&id).cloned() {
                finding.updated = Some(convert::timestamp(now));
                self.findings.upsert(finding);
            }
        }
        for key in closed {
            if let Some(restored) = self.restored.remove(&key) {
                self.findings.close(&restored.id, now);
            }
        }
    }

    /// Every node the aggregator heard from.
    pub fn nodes(&self) -> Vec<pb::NodeStatus> {
        let open: Vec<&pb::Finding> = self.findings.open().collect();
        self.nodes
            .all()
            .map(|(node, e)| pb::NodeStatus {
                node: node.clone(),
                last_seen: Some(convert::timestamp(e.last_seen)),
                agent_version: e.summary.agent_version.clone(),
                health: e.summary.health,
                open_findings: u32::try_from(open.iter().filter(|f| f.node == *node).count())
                    .unwrap_or(u32::MAX),
                silent: e.silent,
                summaries: e.received,
                summaries_lost: e.lost,
            })
            .collect()
    }

    /// A domain across the cluster, or `None` where no live node has it.
    pub fn domain(&self, name: &str) -> Option<pb::GetClusterDomainResponse> {
        let features = self.comparisons.features();
        let mut members = Vec::new();
        let mut rows = Vec::new();
        let mut nodes = Vec::new();
        let mut at = None;
        for (node, entry) in self.nodes.live() {
            let summary = &entry.summary;
            for (identity, c, values) in entry.containers() {
                if identity.domain == name {
                    members.push(crate::identities::container(identity, c));
                    rows.push(
                        crate::compare::by_name(&summary.features, features, values)
                            .into_iter()
                            .map(|v| v.unwrap_or(f64::NAN))
                            .collect(),
                    );
                }
            }
            if let Some((i, d)) = summary
                .domains
                .iter()
                .enumerate()
                .find(|(_, d)| d.domain == name)
            {
                let (medians, mads) = crate::nodes::domain_stats(summary, i);
                let this = summary.at.as_ref().and_then(convert::from_timestamp);
                at = at.max(this);
                nodes.push(pb::NodeDomainStats {
                    node: node.clone(),
                    members: d.members,
                    features: summary
                        .features
                        .iter()
                        .zip(medians.iter().zip(mads))
                        .filter(|(_, (m, _))| m.is_finite())
                        .map(|(feature, (median, mad))| pb::FeatureStats {
                            feature: feature.clone(),
                            median: f64::from(*median),
                            mad: f64::from(*mad),
                            members: d.members,
                            basis: pb::Basis::Peers.into(),
                        })
                        .collect(),
                });
            }
        }
        if members.is_empty() && nodes.is_empty() {
            return None;
        }
        let matrix = matrix::from_rows(&rows, features.len());
        let cluster = matrix::column_stats(&matrix)
            .into_iter()
            .zip(features)
            .filter_map(|(stats, feature)| {
                let (median, mad, count) = stats?;
                Some(pb::FeatureStats {
                    feature: feature.clone(),
                    median,
                    mad,
                    members: u32::try_from(count).unwrap_or(u32::MAX),
                    basis: pb::Basis::Peers.into(),
                })
            })
            .collect();
        Some(pb::GetClusterDomainResponse {
            domain: name.to_owned(),
            members,
            features: cluster,
            nodes,
            findings: self
                .findings
                .open()
                .filter(|f| f.domain == name)
                .cloned()
                .collect(),
            at: at.map(convert::timestamp),
        })
    }
}

fn summary(kind: pb::FindingKind, finding: &Finding) -> String {
    let drivers: Vec<String> = finding.drivers.iter().map(ToString::to_string).collect();
    let s = &finding.subject;
    match kind {
        pb::FindingKind::SickNode => format!(
            "{} node {} strays from the other nodes: {}",
            finding.severity,
            s.node,
            drivers.join("; ")
        ),
        _ => format!(
            "{} {} on node {} runs unlike on the other nodes: {}",
            finding.severity,
            s.domain,
            s.node,
            drivers.join("; ")
        ),
    }
}

fn silent_finding(node: &str, now: SystemTime, expiry: Duration) -> pb::Finding {
    let subject = herd_detect::Subject {
        entity: format!("silent {node}"),
        pod: None,
        namespace: None,
        domain: String::new(),
        node: node.to_owned(),
    };
    pb::Finding {
        id: finding_id(&subject, now),
        node: node.to_owned(),
        severity: pb::Severity::Warning.into(),
        state: pb::FindingState::Open.into(),
        opened: Some(convert::timestamp(now)),
        updated: Some(convert::timestamp(now)),
        summary: format!(
            "warning node {node} is silent: no summary for over {}",
            humantime::format_duration(expiry)
        ),
        kind: pb::FindingKind::NodeSilent.into(),
        source: SOURCE.to_owned(),
        ..Default::default()
    }
}

/// The aggregator shared by its services and its round loop. Summaries come in through
/// [`SharedAggregator::ingest`], which never waits for a round: a round of a large cluster
/// takes seconds, and the agents' streams would stall behind it.
#[derive(Clone)]
pub struct SharedAggregator {
    state: Arc<Mutex<Aggregator>>,
    inbox: Arc<Mutex<Inbox>>,
}

/// Summaries checked and waiting for the aggregator's next lock, and those refused.
#[derive(Default)]
struct Inbox {
    summaries: Vec<(pb::NodeSummary, Arc<Identities>, SystemTime)>,
    refused: u64,
}

impl SharedAggregator {
    pub fn new(aggregator: Aggregator) -> Self {
        Self {
            state: Arc::new(Mutex::new(aggregator)),
            inbox: Arc::default(),
        }
    }

    /// Takes a node's summary with every container's identity in it, refusing it at once
    /// when it is not whole; the aggregator has it from its next [`lock`](Self::lock) on,
    /// in the order summaries came.
    pub fn ingest(&self, summary: pb::NodeSummary, now: SystemTime) -> Result<(), IngestError> {
        self.ingest_from(&mut StreamIdentities::default(), summary, now)
    }

    /// Takes the next summary of a node's `stream`, whose containers' identities may have
    /// come in the stream's earlier summaries.
    pub fn ingest_from(
        &self,
        stream: &mut StreamIdentities,
        mut summary: pb::NodeSummary,
        now: SystemTime,
    ) -> Result<(), IngestError> {
        let checked = crate::nodes::prepare(&mut summary, stream);
        let mut inbox = self
            .inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match checked {
            Ok(identities) => {
                inbox.summaries.push((summary, identities, now));
                Ok(())
            }
            Err(err) => {
                inbox.refused += 1;
                Err(err)
            }
        }
    }

    /// The aggregator, with every summary taken so far.
    pub fn lock(&self) -> MutexGuard<'_, Aggregator> {
        let mut aggregator = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inbox = std::mem::take(
            &mut *self
                .inbox
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        aggregator.refused += inbox.refused;
        for (summary, identities, at) in inbox.summaries {
            // Checked on the way in.
            aggregator.nodes.take(summary, identities, at);
        }
        aggregator
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::store::Store;

    const FEATURES: [&str; 2] = ["cpu_usage_cores", "memory_working_set"];
    const WEB: &str = "shop/Deployment/web/app";

    fn at(round: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 10 * round)
    }

    /// A node's window: one replica of web per node (`cpu` its load), and its domain stats.
    fn summary(node: usize, round: u64, cpu: f64) -> pb::NodeSummary {
        let jitter = ((round * 7 + node as u64 * 3) % 5) as f64 * 0.002;
        let cpu = cpu + jitter;
        let memory = 100e6 + jitter * 1e6;
        pb::NodeSummary {
            node: format!("node-{node}"),
            at: Some(convert::timestamp(at(round))),
            features: FEATURES.map(str::to_owned).to_vec(),
            sequence: round,
            containers: vec![pb::ContainerSummary {
                container: Some(pb::Container {
                    id: format!("c{node}"),
                    pod: format!("web-{node}"),
                    namespace: "shop".into(),
                    name: "app".into(),
                    image: "registry.example/shop/app:1.2".into(),
                    domain: WEB.into(),
                    node: format!("node-{node}"),
                    ..Default::default()
                }),
                values: vec![cpu, memory],
                ..Default::default()
            }],
            domains: vec![pb::DomainSummary {
                domain: WEB.into(),
                members: 1,
                medians: vec![cpu, memory],
                mads: vec![0.01, 1e6],
            }],
            ..Default::default()
        }
    }

    fn aggregator() -> Aggregator {
        Aggregator::new(
            AggregatorConfig {
                detect: DetectConfig {
                    warmup: 3,
                    ..AggregatorConfig::default().detect
                },
                ..AggregatorConfig::default()
            },
            None,
        )
        .unwrap()
    }

    fn open(aggregator: &Aggregator, kind: pb::FindingKind) -> Vec<pb::Finding> {
        aggregator
            .findings()
            .open()
            .filter(|f| f.kind == kind as i32)
            .cloned()
            .collect()
    }

    #[test]
    fn a_stray_replica_alone_on_its_node_is_found_across_the_cluster() {
        let mut aggregator = aggregator();
        for round in 0..10 {
            for node in 0..5 {
                let cpu = if node == 3 && round >= 5 { 0.9 } else { 0.1 };
                aggregator
                    .ingest(summary(node, round, cpu), at(round))
                    .unwrap();
            }
            aggregator.round(at(round)).unwrap();
        }
        let replicas = open(&aggregator, pb::FindingKind::ClusterReplica);
        assert_eq!(replicas.len(), 1, "{replicas:#?}");
        let finding = &replicas[0];
        assert_eq!(
            (finding.pod.as_str(), finding.node.as_str()),
            ("web-3", "node-3")
        );
        assert_eq!(finding.source, SOURCE);
        assert_eq!(
            (finding.container.as_str(), finding.image.as_str()),
            ("app", "registry.example/shop/app:1.2")
        );
        assert_eq!(finding.drivers[0].feature, "cpu_usage_cores");
        // With one replica per node, its median there is the replica: the replica
        // comparison has said it, and the workload comparison does not say it again.
        let workloads = open(&aggregator, pb::FindingKind::WorkloadNode);
        assert!(workloads.is_empty(), "{workloads:#?}");
    }

    #[test]
    fn a_workload_that_runs_worse_on_one_node_is_found_there() {
        let mut aggregator = aggregator();
        for round in 0..10 {
            for node in 0..5 {
                let cpu = if node == 2 && round >= 5 { 0.9 } else { 0.1 };
                // Two replicas of web on every node, both alike.
                let mut window = summary(node, round, cpu);
                let mut second = window.containers[0].clone();
                if let Some(c) = second.container.as_mut() {
                    c.id = format!("d{node}");
                    c.pod = format!("web-{node}-b");
                }
                window.containers.push(second);
                window.domains[0].members = 2;
                aggregator.ingest(window, at(round)).unwrap();
            }
            aggregator.round(at(round)).unwrap();
        }
        let workloads = open(&aggregator, pb::FindingKind::WorkloadNode);
        assert_eq!(workloads.len(), 1, "{workloads:#?}");
        assert_eq!(
            (workloads[0].node.as_str(), workloads[0].domain.as_str()),
            ("node-2", WEB)
        );
        assert_eq!(workloads[0].drivers[0].feature, "cpu_usage_cores");
    }

    #[test]
    fn a_node_that_stops_reporting_is_silent_and_leaves_the_comparisons() {
        let mut aggregator = aggregator();
        for round in 0..3 {
            for node in 0..3 {
                aggregator
                    .ingest(summary(node, round, 0.1), at(round))
                    .unwrap();
            }
            aggregator.round(at(round)).unwrap();
        }
        // node-2 stops; 60 s later it is silent.
        for round in 3..11 {
            for node in 0..2 {
                aggregator
                    .ingest(summary(node, round, 0.1), at(round))
                    .unwrap();
            }
            aggregator.round(at(round)).unwrap();
        }
        let silent = open(&aggregator, pb::FindingKind::NodeSilent);
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].node, "node-2");
        let nodes = aggregator.nodes();
        assert!(nodes.iter().any(|n| n.node == "node-2" && n.silent));
        // It comes back: the finding closes.
        aggregator.ingest(summary(2, 11, 0.1), at(11)).unwrap();
        aggregator.round(at(11)).unwrap();
        assert!(open(&aggregator, pb::FindingKind::NodeSilent).is_empty());
    }

    #[test]
    fn a_cluster_finding_never_takes_the_id_of_a_nodes_finding() {
        let detector = "8f8970718ce1c53e";
        let ids: HashSet<String> = [
            pb::FindingKind::ClusterReplica,
            pb::FindingKind::WorkloadNode,
            pb::FindingKind::SickNode,
        ]
        .map(|kind| cluster_id(kind, detector))
        .into();
        assert_eq!(ids.len(), 3, "one id per kind: {ids:?}");
        assert!(
            !ids.contains(detector),
            "the node's finding keeps its own id"
        );
        assert_eq!(
            cluster_id(pb::FindingKind::ClusterReplica, detector),
            cluster_id(pb::FindingKind::ClusterReplica, detector),
            "stable across rounds"
        );
    }

    #[test]
    fn node_findings_pass_through_and_close_when_the_node_stops_reporting_them() {
        let mut aggregator = aggregator();
        let mut with_finding = summary(0, 1, 0.1);
        with_finding.findings.push(pb::Finding {
            id: "f1".into(),
            pod: "web-0".into(),
            domain: WEB.into(),
            ..Default::default()
        });
        aggregator.ingest(with_finding, at(1)).unwrap();
        aggregator.round(at(1)).unwrap();
        let passed = open(&aggregator, pb::FindingKind::NodePeers);
        assert_eq!(passed.len(), 1);
        assert_eq!(passed[0].source, "node node-0");
        aggregator.ingest(summary(0, 2, 0.1), at(2)).unwrap();
        aggregator.round(at(2)).unwrap();
        assert!(open(&aggregator, pb::FindingKind::NodePeers).is_empty());
        let closed = aggregator.findings().all();
        assert_eq!(closed[0].closed, Some(convert::timestamp(at(2))));
    }

    #[test]
    fn a_finding_open_before_a_restart_goes_on_under_its_id_or_closes() {
        let dir = tempfile::tempdir().unwrap();
        let run = |aggregator: &mut Aggregator, rounds: std::ops::Range<u64>, stray: bool| {
            for round in rounds {
                for node in 0..5 {
                    let cpu = if stray && node == 3 && round >= 5 {
                        0.9
                    } else {
                        0.1
                    };
                    aggregator
                        .ingest(summary(node, round, cpu), at(round))
                        .unwrap();
                }
                aggregator.round(at(round)).unwrap();
            }
        };
        let store = || Some(Store::open(dir.path()).unwrap());
        let config = AggregatorConfig {
            detect: DetectConfig {
                warmup: 3,
                ..AggregatorConfig::default().detect
            },
            ..AggregatorConfig::default()
        };
        let first = {
            let mut aggregator = Aggregator::new(config.clone(), store()).unwrap();
            run(&mut aggregator, 0..10, true);
            open(&aggregator, pb::FindingKind::ClusterReplica)
        };
        assert_eq!(first.len(), 1);
        // Restarted: the stray is found again, under the id it had.
        let mut aggregator = Aggregator::new(config.clone(), store()).unwrap();
        assert_eq!(open(&aggregator, pb::FindingKind::ClusterReplica), first);
        run(&mut aggregator, 10..20, true);
        let again = open(&aggregator, pb::FindingKind::ClusterReplica);
        assert_eq!(again.len(), 1, "{again:#?}");
        assert_eq!(
            (&again[0].id, again[0].opened),
            (&first[0].id, first[0].opened)
        );
        // Restarted while the stray is still there: a fresh detector sees no move from a
        // baseline, but the restored finding stays open while the stray lasts.
        drop(aggregator);
        let mut aggregator = Aggregator::new(config.clone(), store()).unwrap();
        run(&mut aggregator, 20..30, true);
        let kept = open(&aggregator, pb::FindingKind::ClusterReplica);
        assert_eq!(kept.len(), 1, "{kept:#?}");
        assert_eq!(kept[0].id, first[0].id);
        // The stray ends: it closes after the calm windows a finding closes after.
        run(&mut aggregator, 30..40, false);
        assert!(open(&aggregator, pb::FindingKind::ClusterReplica).is_empty());
    }

    #[test]
    fn summaries_are_taken_while_a_round_holds_the_aggregator() {
        let shared = SharedAggregator::new(aggregator());
        let busy = shared.lock();
        let (done, taken) = std::sync::mpsc::channel();
        let ingesting = shared.clone();
        std::thread::spawn(move || {
            let ok = ingesting.ingest(summary(0, 1, 0.1), at(1)).is_ok();
            let refused = ingesting.ingest(pb::NodeSummary::default(), at(1)).is_err();
            let _ = done.send((ok, refused));
        });
        let (ok, refused) = taken
            .recv_timeout(Duration::from_secs(5))
            .expect("ingest waited for the aggregator's lock");
        assert!(ok && refused);
        drop(busy);
        let aggregator = shared.lock();
        assert_eq!(aggregator.received(), 1);
        assert_eq!(aggregator.refused(), 1);
        assert_eq!(aggregator.nodes()[0].node, "node-0");
    }

    #[test]
    fn a_domain_is_described_across_nodes() {
        let mut aggregator = aggregator();
        for node in 0..3 {
            aggregator
                .ingest(summary(node, 0, 0.1 * (node + 1) as f64), at(0))
                .unwrap();
        }
        aggregator.round(at(0)).unwrap();
        let domain = aggregator.domain(WEB).unwrap();
        assert_eq!(domain.members.len(), 3);
        assert_eq!(domain.nodes.len(), 3);
        let cpu = &domain.features[0];
        assert_eq!(cpu.feature, "cpu_usage_cores");
        assert_eq!(cpu.members, 3);
        assert!((cpu.median - 0.2).abs() < 0.01, "{cpu:?}");
        assert!(aggregator.domain("shop/Deployment/none/app").is_none());
    }
}
