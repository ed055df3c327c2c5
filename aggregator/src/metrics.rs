//! The aggregator's `/metrics`: the cluster's open findings by severity and kind, the nodes
//! live and silent, what the agents sent and what was lost or refused, each comparison
//! round's duration, and the aggregator's own memory and CPU.

use std::time::Duration;

use herd_proto::herd::v1 as pb;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::{Aggregator, export::metrics_http::Scrape, export::process::ProcessMetrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    severity: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    state: String,
}

/// The label of each finding kind in `herd_findings_open`; the agent's node findings are
/// `stray_container` there too.
pub fn kind_label(kind: pb::FindingKind) -> &'static str {
    match kind {
        pb::FindingKind::Unspecified | pb::FindingKind::NodePeers => "stray_container",
        pb::FindingKind::ClusterReplica => "stray_replica",
        pb::FindingKind::WorkloadNode => "workload_node",
        pb::FindingKind::SickNode => "sick_node",
        pb::FindingKind::NodeSilent => "node_silent",
        pb::FindingKind::DomainShift => "domain_shift",
    }
}

const KINDS: [pb::FindingKind; 6] = [
    pb::FindingKind::NodePeers,
    pb::FindingKind::ClusterReplica,
    pb::FindingKind::WorkloadNode,
    pb::FindingKind::SickNode,
    pb::FindingKind::NodeSilent,
    pb::FindingKind::DomainShift,
];

pub struct ClusterMetrics {
    registry: Registry,
    open_findings: Family<FindingLabels, Gauge>,
    nodes: Family<NodeLabels, Gauge>,
    containers: Gauge,
    summaries: Counter,
    summaries_lost: Counter,
    summaries_refused: Counter,
    rounds: Counter,
    round_seconds: Histogram,
    alerts_dropped: Counter,
    process: ProcessMetrics,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let open_findings = Family::<FindingLabels, Gauge>::default();
        let nodes = Family::<NodeLabels, Gauge>::default();
        let containers = Gauge::default();
        let summaries = Counter::default();
        let summaries_lost = Counter::default();
        let summaries_refused = Counter::default();
        let rounds = Counter::default();
        let round_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let alerts_dropped = Counter::default();
        let herd = registry.sub_registry_with_prefix("herd");
        herd.register(
            "findings_open",
            "Findings open now in the cluster, by severity and kind (the nodes' own included)",
            open_findings.clone(),
        );
        herd.register(
            "nodes",
            "Nodes the aggregator has heard from, live or silent",
            nodes.clone(),
        );
        herd.register(
            "cluster_containers",
            "Containers compared across the cluster in the last round",
            containers.clone(),
        );
        herd.register(
            "summaries_received",
            "Node summaries received from the agents",
            summaries.clone(),
        );
        herd.register(
            "summaries_lost",
            "Node summaries the agents dropped before they could send them",
            summaries_lost.clone(),
        );
        herd.register(
            "summaries_refused",
            "Node summaries refused as invalid",
            summaries_refused.clone(),
        );
        herd.register(
            "rounds",
            "Comparison rounds run since the aggregator started",
            rounds.clone(),
        );
        herd.register_with_unit(
            "round_duration",
            "Time to compare every workload across the cluster and update the findings",
            Unit::Seconds,
            round_seconds.clone(),
        );
        herd.register(
            "alerts_dropped",
            "Alert resolutions dropped from the queue while Alertmanager was away",
            alerts_dropped.clone(),
        );
        let process = ProcessMetrics::register(&mut registry, "aggregator");
        Self {
            registry,
            open_findings,
            nodes,
            containers,
            summaries,
            summaries_lost,
            summaries_refused,
            rounds,
            round_seconds,
            alerts_dropped,
            process,
        }
    }

    /// After a comparison round that took `took` and compared `containers`.
    pub fn after_round(
        &self,
        aggregator: &Aggregator,
        containers: usize,
        took: Duration,
        alerts_dropped: u64,
    ) {
        self.rounds.inc();
        self.round_seconds.observe(took.as_secs_f64());
        self.containers
            .set(i64::try_from(containers).unwrap_or(i64::MAX));

        self.open_findings.clear();
        for severity in ["warning", "critical"] {
            for kind in KINDS {
                // Present at 0, so that a rule sees the all-clear.
                let _ = self.open_findings.get_or_create(&FindingLabels {
                    severity: severity.to_owned(),
                    kind: kind_label(kind).to_owned(),
                });
            }
        }
        for finding in aggregator.findings().open() {
            let severity = match finding.severity() {
                pb::Severity::Critical => "critical",
                _ => "warning",
            };
            self.open_findings
                .get_or_create(&FindingLabels {
                    severity: severity.to_owned(),
                    kind: kind_label(finding.kind()).to_owned(),
                })
                .inc();
        }

        let nodes = aggregator.nodes();
        let silent = nodes.iter().filter(|n| n.silent).count();
        for (state, count) in [("live", nodes.len() - silent), ("silent", silent)] {
            self.nodes
                .get_or_create(&NodeLabels {
                    state: state.to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        // Counters follow the totals the aggregator keeps; a node that is forgotten takes its
        // share with it, which the counters never give back.
        let received: u64 = nodes.iter().map(|n| n.summaries).sum();
        let lost: u64 = nodes.iter().map(|n| n.summaries_lost).sum();
        for (counter, total) in [
            (&self.summaries, received),
            (&self.summaries_lost, lost),
            (&self.summaries_refused, aggregator.refused()),
            (&self.alerts_dropped, alerts_dropped),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.process.refresh();
    }
}

impl Scrape for ClusterMetrics {
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
