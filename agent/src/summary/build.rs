//! One window of the node as a `herd.v1.NodeSummary`: each judged container's identity
//! (which the sender leaves out where its stream already carried it, see `identities`),
//! named features, score and drivers; the node's open findings; each domain's statistics;
//! the agent's health.

use std::{collections::HashMap, time::Duration, time::SystemTime};

use herd_proto::herd::v1 as pb;

use crate::{
    detect::{
        FeatureStats,
        proto::{duration, feature_score, timestamp},
    },
    discovery::containers::ContainerTable,
    pipeline::Window,
};

/// Drivers sent per container: enough to explain, small on the wire.
const DRIVERS: usize = 3;

/// How the agent is doing, for the summary's health.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    pub collection: Duration,
    pub ebpf_loaded: bool,
    pub runtime_connected: bool,
    pub discovery_errors: u64,
    pub summaries_dropped: u64,
}

/// One row of `width` values onto a summary's matrix, as floats; NaN for any it lacks.
fn push_row(matrix: &mut Vec<f32>, width: usize, row: impl Iterator<Item = f64>) {
    let end = matrix.len() + width;
    matrix.extend(row.take(width).map(|v| v as f32));
    matrix.resize(end, f32::NAN);
}

pub struct SummaryBuilder {
    node: String,
    window: Duration,
    features: Vec<String>,
    sequence: u64,
}

impl SummaryBuilder {
    pub fn new(node: String, window: Duration, features: Vec<String>) -> Self {
        Self {
            node,
            window,
            features,
            sequence: 0,
        }
    }

    pub fn build(
        &mut self,
        at: SystemTime,
        table: &ContainerTable,
        window: &Window,
        findings: Vec<pb::Finding>,
        health: Health,
    ) -> pb::NodeSummary {
        self.sequence += 1;
        let scores: HashMap<&str, &crate::detect::EntityScore> = window
            .report
            .scores
            .iter()
            .map(|s| (s.entity.as_str(), s))
            .collect();
        // Every container's and domain's values in one matrix each, as floats: one packed
        // field a summary rather than a vector a container.
        let mut values = Vec::with_capacity(window.observations.len() * self.features.len());
        let containers = window
            .observations
            .iter()
            .filter_map(|obs| {
                let id = obs.subject.entity.as_str();
                let c = table.get(id)?;
                let scored = scores.get(id);
                let mut drivers: Vec<pb::FeatureScore> = scored
                    .map(|s| {
                        s.features
                            .iter()
                            .zip(&self.features)
                            .filter_map(|(c, name)| c.map(|c| feature_score(name, &c)))
                            .collect()
                    })
                    .unwrap_or_default();
                drivers.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
                drivers.truncate(DRIVERS);
                let width = self.features.len();
                push_row(
                    &mut values,
                    width,
                    obs.values.iter().map(|v| v.unwrap_or(f64::NAN)),
                );
                let pod = c.pod.as_ref();
                let age = Some(duration(c.age(at)));
                Some(pb::ContainerSummary {
                    container: Some(pb::Container {
                        id: c.id.clone(),
                        pod: pod.map(|p| p.name.clone()).unwrap_or_default(),
                        namespace: pod.map(|p| p.namespace.clone()).unwrap_or_default(),
                        name: c.name.clone().unwrap_or_default(),
                        image: c.image.clone().unwrap_or_default(),
                        domain: obs.subject.domain.clone(),
                        cgroup: c.cgroup.display().to_string(),
                        age,
                        judged: true,
                        score: scored.map_or(0.0, |s| s.score),
                        flagged: scored.is_some_and(|s| s.flagged),
                        node: self.node.clone(),
                        pod_uid: c.pod_uid.clone().unwrap_or_default(),
                        scored: scored.is_some(),
                    }),
                    values: Vec::new(),
                    score: scored.map_or(0.0, |s| s.score),
                    drivers,
                    id: c.id.clone(),
                    age,
                    scored: scored.is_some(),
                    flagged: scored.is_some_and(|s| s.flagged),
                })
            })
            .collect();
        let stats = window.report.domains.len() * self.features.len();
        let (mut domain_medians, mut domain_mads) =
            (Vec::with_capacity(stats), Vec::with_capacity(stats));
        let domains = window
            .report
            .domains
            .iter()
            .map(|d| {
                let width = self.features.len();
                let stats = |f: fn(&FeatureStats) -> f64| {
                    d.features
                        .iter()
                        .map(move |s| s.as_ref().map_or(f64::NAN, f))
                };
                push_row(&mut domain_medians, width, stats(|s| s.median));
                push_row(&mut domain_mads, width, stats(|s| s.scale));
                pb::DomainSummary {
                    domain: d.domain.clone(),
                    members: u32::try_from(d.members).unwrap_or(u32::MAX),
                    medians: Vec::new(),
                    mads: Vec::new(),
                }
            })
            .collect();
        pb::NodeSummary {
            node: self.node.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            at: Some(timestamp(at)),
            window: Some(duration(self.window)),
            features: self.features.clone(),
            containers,
            findings,
            domains,
            health: Some(pb::NodeHealth {
                collection: Some(duration(health.collection)),
                ebpf_loaded: health.ebpf_loaded,
                runtime_connected: health.runtime_connected,
                discovery_errors: health.discovery_errors,
                summaries_dropped: health.summaries_dropped,
                containers: u32::try_from(table.len()).unwrap_or(u32::MAX),
            }),
            sequence: self.sequence,
            values,
            domain_medians,
            domain_mads,
        }
    }
}
