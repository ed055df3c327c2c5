//! The aggregator's three comparisons, each a [`Detector`] over the whole cluster:
//! 1. replicas: each container against every replica of its domain, on every node;
//! 2. workloads: each domain's median on one node against its medians on the other nodes;
//! 3. nodes: each node's share of anomalous domains against the other nodes'.
//!
//! The detection math is the agent's (`herd-detect`), with domains compared across nodes.

mod nodes;
mod replicas;
mod workloads;

use std::{collections::HashMap, time::SystemTime};

use herd_detect::{DetectConfig, DetectError, Detector, Observation, WindowReport};
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
    pub report: WindowReport,
}

pub struct Comparisons {
    config: DetectConfig,
    /// The feature names of the replica and workload comparisons; set by the first summary.
    features: Vec<String>,
    replicas: Option<Detector>,
    workloads: Option<Detector>,
    nodes: Detector,
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
            replicas: None,
            workloads: None,
            nodes,
        })
    }

    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// One round over the live nodes' latest summaries. `open_domains` names, per node, the
    /// domains with an open finding of any kind there.
    pub fn run(
        &mut self,
        at: SystemTime,
        book: &NodeBook,
        open_domains: &HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<Round>, DetectError> {
        let mut rounds = Vec::new();
        if self.replicas.is_none()
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
            self.replicas = Some(Detector::new(config.clone(), names.clone())?);
            self.workloads = Some(Detector::new(config, names)?);
        }
        // Nodes are compared with each other, never with their own past: with fewer nodes
        // than peers a comparison needs, there is nothing to compare them with.
        let enough_nodes = book.live().count() >= self.config.min_peers;
        // The replicas and the workloads are independent and the largest part of a round
        // (150,000 containers and as many workloads on nodes at the top): one thread each.
        let features = &self.features;
        let (replicas, workloads) = std::thread::scope(|scope| {
            let workloads = self
                .workloads
                .as_mut()
                .filter(|_| enough_nodes)
                .map(|detector| {
                    scope.spawn(move || {
                        let observations = workloads::observations(book, features);
                        detector.observe(at, &observations)
                    })
                });
            let replicas = self.replicas.as_mut().map(|detector| {
                let observations = replicas::observations(book, features);
                detector.observe(at, &observations)
            });
            let workloads = workloads.map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            (replicas, workloads)
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
        let observations: Vec<Observation> = nodes::observations(book, open_domains);
        rounds.push(Round {
            kind: pb::FindingKind::SickNode,
            report: self.nodes.observe(at, &observations)?,
        });
        Ok(rounds)
    }
}

/// A summary's values in the comparison's feature order, by name; NaN is missing.
pub fn by_name(names: &[String], order: &[String], values: &[f64]) -> Vec<Option<f64>> {
    if names == order {
        return values.iter().map(|v| v.is_finite().then_some(*v)).collect();
    }
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    order
        .iter()
        .map(|name| {
            let v = *values.get(*index.get(name.as_str())?)?;
            v.is_finite().then_some(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_another_release_are_matched_by_name() {
        let order = vec!["cpu".to_owned(), "memory".to_owned()];
        let theirs = vec!["memory".to_owned(), "disk".to_owned(), "cpu".to_owned()];
        assert_eq!(
            by_name(&theirs, &order, &[5.0, 1.0, f64::NAN]),
            [None, Some(5.0)]
        );
        assert_eq!(by_name(&order, &order, &[1.0, 2.0]), [Some(1.0), Some(2.0)]);
    }
}
