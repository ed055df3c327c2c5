//! The aggregator's three comparisons, each a [`Detector`] over the whole cluster:
//! 1. replicas: each container against every replica of its domain, on every node;
//! 2. workloads: each domain's median on one node against its medians on the other nodes;
//! 3. nodes: each node's share of anomalous domains against the other nodes'.
//!
//! The detection math is the agent's (`herd-detect`), with domains compared across nodes.

mod nodes;
mod replicas;
mod workloads;

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError},
    time::SystemTime,
};

use herd_detect::{Detail, DetectConfig, DetectError, Detector, Observation, WindowReport};
use herd_proto::herd::v1 as pb;

use crate::nodes::NodeBook;

pub use nodes::NODE_FEATURES;
pub use workloads::entity as workload_entity;

/// Domains without the runtime's names are one container each: nothing to compare across
/// nodes.
pub fn comparable(domain: &str) -> bool {
    !domain.is_empty() && !domain.starts_with("unnamed:")
}

/// One comparison's result in one round.
pub struct Round {
    pub kind: pb::FindingKind,
    /// Scores and findings; each feature's comparison only for the entities the round was
    /// asked to explain.
    pub report: WindowReport,
}

pub struct Comparisons {
    config: DetectConfig,
    /// The feature names of the replica and workload comparisons; set by the first summary.
    features: Vec<String>,
    /// The replica comparison in shards, [`SHARDS_PER_THREAD`] for each core's thread, a
    /// domain always in the same one (see [`replicas::shard`]), so that a round compares
    /// them on every core at once; empty until the first summary.
    replicas: Vec<Detector>,
    workloads: Option<Detector>,
    nodes: Detector,
    /// The last round's observations of each comparison, rewritten in place by the next
    /// round: the same containers come every window, so their strings and vectors are
    /// reused rather than allocated again.
    replica_observations: Vec<Vec<Observation>>,
    workload_observations: Vec<Observation>,
}

impl Comparisons {
    /// `config` is the agent's detector configuration; the aggregator compares across
    /// nodes and keeps a shorter own history per entity, so that 150,000 containers fit.
    pub fn new(config: DetectConfig) -> Result<Self, DetectError> {
        let config = DetectConfig {
            per_node: false,
            ..config
        };
        let node_config = DetectConfig {
            absolute_floors: nodes::floors(),
            ..config.clone()
        };
        let nodes = Detector::new(
            node_config,
            NODE_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        )?;
        Ok(Self {
            config,
            features: Vec::new(),
            replicas: Vec::new(),
            workloads: None,
            nodes,
            replica_observations: Vec::new(),
            workload_observations: Vec::new(),
        })
    }

    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// What the replica comparison's shards and the workload comparison keep, for benchmarks
    /// and capacity planning.
    pub fn footprints(&self) -> Vec<(&'static str, herd_detect::Footprint)> {
        self.replicas
            .iter()
            .map(|d| ("replicas", d.footprint()))
            .chain(self.workloads.iter().map(|d| ("workloads", d.footprint())))
            .collect()
    }

    /// One round over the live nodes' latest summaries. `open_domains` names, per node, the
    /// domains with an open finding of any kind there; `explain` the entities whose every
    /// comparison the reports should carry (a cluster's worth of them would be most of a
    /// round's cost).
    pub fn run(
        &mut self,
        at: SystemTime,
        book: &NodeBook,
        open_domains: &HashMap<String, HashSet<String>>,
        explain: &HashSet<String>,
    ) -> Result<Vec<Round>, DetectError> {
        let mut rounds = Vec::new();
        if self.replicas.is_empty()
            && let Some((_, first)) = book.live().next()
        {
            self.features = first.summary.features.clone();
            let names = self.features.clone();
            let config = DetectConfig {
                absolute_floors: self
                    .config
                    .absolute_floors
                    .iter()
                    .filter(|(name, _)| names.contains(name))
                    .map(|(name, floor)| (name.clone(), *floor))
                    .collect(),
                ..self.config.clone()
            };
            let shards = threads() * SHARDS_PER_THREAD;
            self.replicas = (0..shards)
                .map(|_| Detector::new(config.clone(), names.clone()))
                .collect::<Result<_, _>>()?;
            self.replica_observations = (0..shards).map(|_| Vec::new()).collect();
            self.workloads = Some(Detector::new(config, names)?);
        }
        // Nodes are compared with each other, never with their own past: with fewer nodes
        // than peers a comparison needs, there is nothing to compare them with.
        let enough_nodes = book.live().count() >= self.config.min_peers;
        let detail = Detail::Only(explain);
        // The replica shards, the workloads and the nodes are independent, and the replicas
        // the largest part of a round (150,000 containers at the top): a thread each for the
        // workloads and the nodes, started first so that they run while the containers are
        // put in shards, and one a core taking the replica shards in turn, the largest first,
        // so that the cores finish together however the domains fell.
        let features = &self.features;
        let workload_observations = &mut self.workload_observations;
        let (workload_detector, node_detector) = (&mut self.workloads, &mut self.nodes);
        let (replica_detectors, replica_observations) =
            (&mut self.replicas, &mut self.replica_observations);
        let (replicas, workloads, nodes) = std::thread::scope(|scope| {
            let workloads = workload_detector
                .as_mut()
                .filter(|_| enough_nodes)
                .map(|detector| {
                    scope.spawn(move || {
                        workloads::observations(book, features, workload_observations);
                        detector.observe_with(at, workload_observations, detail)
                    })
                });
            let nodes = enough_nodes.then(|| {
                scope.spawn(move || {
                    node_detector.observe(at, &nodes::observations(book, open_domains))
                })
            });

            let replicas::Assigned { maps, shards } =
                replicas::assign(book, features, replica_detectors.len());
            let maps = &maps;
            let mut shards: Vec<_> = (replica_detectors.iter_mut())
                .zip(replica_observations.iter_mut())
                .zip(shards)
                .enumerate()
                .collect();
            shards.sort_by_key(|(_, (_, placed))| std::cmp::Reverse(placed.len()));
            let queue = Mutex::new(shards.into_iter());
            let compare = || {
                let mut reports = Vec::new();
                loop {
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
                    let Some((shard, ((detector, window), mut placed))) = next else {
                        return reports;
                    };
                    replicas::observations(maps, &mut placed, window);
                    reports.push((shard, detector.observe_with(at, window, detail)));
                }
            };
            // A scope of their own: they borrow the shards, made after the first threads.
            let mut reports = std::thread::scope(|shards| {
                let others: Vec<_> = (1..threads()).map(|_| shards.spawn(compare)).collect();
                let mut reports = compare();
                for thread in others {
                    reports.extend(join(thread));
                }
                reports
            });
            // In the order of the shards, whichever thread compared them.
            reports.sort_by_key(|(shard, _)| *shard);
            let replicas = (!reports.is_empty()).then(|| {
                let reports: Vec<WindowReport> = reports
                    .into_iter()
                    .map(|(_, report)| report)
                    .collect::<Result<_, _>>()?;
                Ok(merge(reports))
            });
            (replicas, workloads.map(join), nodes.map(join))
        });
        if let Some(report) = replicas {
            rounds.push(Round {
                kind: pb::FindingKind::ClusterReplica,
                report: report?,
            });
        }
        if !enough_nodes {
            return Ok(rounds);
        }
        if let Some(report) = workloads {
            rounds.push(Round {
                kind: pb::FindingKind::WorkloadNode,
                report: report?,
            });
        }
        if let Some(report) = nodes {
            rounds.push(Round {
                kind: pb::FindingKind::SickNode,
                report: report?,
            });
        }
        Ok(rounds)
    }
}

/// Threads that compare replica shards: one a core, at most 8.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Replica shards per thread: with several each, the threads share out the large and the
/// small ones and finish close together.
const SHARDS_PER_THREAD: usize = 4;

/// A scoped thread's result; its panic goes on in the caller.
fn join<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The shards' reports as one, in the order given: their findings in the order of their
/// entities, as one detector gives them. Made in place, each list grown once.
fn merge(reports: Vec<WindowReport>) -> WindowReport {
    let total = |list: fn(&WindowReport) -> usize| reports.iter().map(list).sum::<usize>();
    let mut all = WindowReport {
        scores: Vec::with_capacity(total(|r| r.scores.len())),
        domains: Vec::with_capacity(total(|r| r.domains.len())),
        ..WindowReport::default()
    };
    for shard in reports {
        all.scores.extend(shard.scores);
        all.domains.extend(shard.domains);
        all.opened.extend(shard.opened);
        all.updated.extend(shard.updated);
        all.closed.extend(shard.closed);
    }
    for findings in [&mut all.opened, &mut all.updated, &mut all.closed] {
        findings.sort_by(|a, b| a.subject.entity.cmp(&b.subject.entity));
    }
    all
}

/// Where a node's values are in the comparison's feature order: its summaries name their
/// features, and another release of the agent may have other ones or another order.
pub enum FeatureMap {
    /// The comparison's own order.
    Same,
    /// Per feature of the comparison, its place in the node's values, if it has one.
    Places(Vec<Option<usize>>),
}

impl FeatureMap {
    pub fn new(names: &[String], order: &[String]) -> Self {
        if names == order {
            return Self::Same;
        }
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        Self::Places(
            order
                .iter()
                .map(|name| index.get(name.as_str()).copied())
                .collect(),
        )
    }

    /// A node's values in the comparison's order, into `out`; NaN is missing.
    pub fn fill(&self, values: &[f32], out: &mut Vec<Option<f64>>) {
        let finite = |v: f32| v.is_finite().then_some(f64::from(v));
        out.clear();
        match self {
            Self::Same => out.extend(values.iter().map(|v| finite(*v))),
            Self::Places(places) => out.extend(
                places
                    .iter()
                    .map(|p| p.and_then(|p| values.get(p)).and_then(|v| finite(*v))),
            ),
        }
    }
}

/// A summary's values in the comparison's feature order, by name; NaN is missing.
pub fn by_name(names: &[String], order: &[String], values: &[f32]) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(order.len());
    FeatureMap::new(names, order).fill(values, &mut out);
    out
}

/// Rewrites `slot` as `value`, reusing its allocation.
fn set(slot: &mut String, value: &str) {
    if slot != value {
        slot.clear();
        slot.push_str(value);
    }
}

/// Rewrites `slot` as `value`, `None` when it is empty, reusing its allocation.
fn set_nonempty(slot: &mut Option<String>, value: &str) {
    match slot {
        _ if value.is_empty() => *slot = None,
        Some(s) => set(s, value),
        None => *slot = Some(value.to_owned()),
    }
}

/// The `n`th observation of `out`, added empty when `out` is shorter.
fn slot(out: &mut Vec<Observation>, n: usize) -> &mut Observation {
    if n == out.len() {
        out.push(Observation {
            subject: herd_detect::Subject {
                entity: String::new(),
                pod: None,
                namespace: None,
                domain: String::new(),
                node: String::new(),
            },
            values: Vec::new(),
        });
    }
    &mut out[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_another_release_are_matched_by_name() {
        let order = vec!["cpu".to_owned(), "memory".to_owned()];
        let theirs = vec!["memory".to_owned(), "disk".to_owned(), "cpu".to_owned()];
        assert_eq!(
            by_name(&theirs, &order, &[5.0, 1.0, f32::NAN]),
            [None, Some(5.0)]
        );
        assert_eq!(by_name(&order, &order, &[1.0, 2.0]), [Some(1.0), Some(2.0)]);
    }
}
