//! The agent's metrics and how each window updates them. Per-container series are rebuilt
//! every window, so a container that is gone leaves no series behind, and their number is
//! capped: the highest scores are kept, and what the cap leaves out is counted.

use std::{collections::HashMap, sync::Mutex, time::Duration};

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

use herd_aggregator::export::process::ProcessMetrics;

use crate::{
    api::findings_log::FindingRecord,
    detect::{Severity, WindowReport},
    discovery::containers::ContainerTable,
    metrics::bpf_stats,
};

/// Longest label value kept; names in Kubernetes are at most 253 characters.
const MAX_LABEL: usize = 253;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    namespace: String,
    pod: String,
    container: String,
    domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    namespace: String,
    pod: String,
    container: String,
    domain: String,
    feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    severity: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabels {
    program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HolderLabels {
    holder: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: String,
}

/// How many series the per-container families may hold.
#[derive(Debug, Clone, Copy)]
pub struct MetricsLimits {
    pub max_series: usize,
}

impl Default for MetricsLimits {
    fn default() -> Self {
        Self { max_series: 10_000 }
    }
}

/// How long one window took.
#[derive(Debug, Clone, Copy)]
pub struct WindowTimes {
    pub collection: Duration,
    pub window: Duration,
}

/// Totals read from the kernel and /proc, kept to turn them into counter increments.
#[derive(Default)]
struct Last {
    programs: HashMap<String, bpf_stats::ProgramStats>,
    /// The agent's own programs by kernel id, told once they are loaded.
    program_names: HashMap<u32, String>,
}

pub struct NodeMetrics {
    registry: Registry,
    limits: MetricsLimits,
    feature: Family<FeatureLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    score: Family<ContainerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    dropped: Gauge,
    open_findings: Family<FindingLabels, Gauge>,
    containers: Gauge,
    windows: Counter,
    window_seconds: Histogram,
    collection_seconds: Histogram,
    discovery_errors: Counter,
    summaries_sent: Counter,
    summaries_dropped: Counter,
    alerts_dropped: Counter,
    ebpf_read_errors: Counter,
    frame_write_errors: Counter,
    map_full: Family<MapLabels, Counter>,
    program_seconds: Family<ProgramLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    program_runs: Family<ProgramLabels, Counter>,
    state_entries: Family<HolderLabels, Gauge>,
    map_entries: Family<MapLabels, Gauge>,
    process: ProcessMetrics,
    last: Mutex<Last>,
}

impl NodeMetrics {
    pub fn new(limits: MetricsLimits) -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            limits,
            feature: Family::default(),
            score: Family::default(),
            dropped: Gauge::default(),
            open_findings: Family::default(),
            containers: Gauge::default(),
            windows: Counter::default(),
            window_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            collection_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            discovery_errors: Counter::default(),
            summaries_sent: Counter::default(),
            summaries_dropped: Counter::default(),
            alerts_dropped: Counter::default(),
            ebpf_read_errors: Counter::default(),
            frame_write_errors: Counter::default(),
            map_full: Family::default(),
            program_seconds: Family::default(),
            program_runs: Family::default(),
            state_entries: Family::default(),
            map_entries: Family::default(),
            process: ProcessMetrics::default(),
            last: Mutex::new(Last::default()),
            registry: Registry::default(),
        };
        let herd = registry.sub_registry_with_prefix("herd");
        herd.register(
            "container_feature",
            "Each judged container's feature values in the last window, in the feature's unit",
            metrics.feature.clone(),
        );
        herd.register(
            "container_score",
            "Each judged container's score in the last window: its largest |robust z|",
            metrics.score.clone(),
        );
        herd.register(
            "metrics_series_dropped",
            "Per-container series the cardinality cap left out of the last window",
            metrics.dropped.clone(),
        );
        herd.register(
            "findings_open",
            "Findings open now, by severity and kind",
            metrics.open_findings.clone(),
        );
        herd.register(
            "containers",
            "Containers the agent watches",
            metrics.containers.clone(),
        );
        herd.register(
            "windows",
            "Windows scored since the agent started",
            metrics.windows.clone(),
        );
        herd.register_with_unit(
            "window_duration",
            "Time to collect, score and publish one window",
            Unit::Seconds,
            metrics.window_seconds.clone(),
        );
        herd.register_with_unit(
            "collection_duration",
            "Time to read every container's counters in one window",
            Unit::Seconds,
            metrics.collection_seconds.clone(),
        );
        herd.register(
            "discovery_errors",
            "Discovery polls whose runtime call failed",
            metrics.discovery_errors.clone(),
        );
        herd.register(
            "summaries_sent",
            "Node summaries handed to the aggregator's stream",
            metrics.summaries_sent.clone(),
        );
        herd.register(
            "summaries_dropped",
            "Node summaries dropped from the send queue while the aggregator was away",
            metrics.summaries_dropped.clone(),
        );
        herd.register(
            "alerts_dropped",
            "Alert resolutions dropped from the queue while Alertmanager was away",
            metrics.alerts_dropped.clone(),
        );
        herd.register(
            "ebpf_read_errors",
            "Windows whose eBPF counter maps could not be read; they went on without them",
            metrics.ebpf_read_errors.clone(),
        );
        herd.register(
            "frame_write_errors",
            "Windows whose feature frames could not be written to the --record file",
            metrics.frame_write_errors.clone(),
        );
        herd.register(
            "ebpf_map_full",
            "Events the eBPF programs could not count because a per-cgroup map had no room \
             for their cgroup, by map",
            metrics.map_full.clone(),
        );
        herd.register_with_unit(
            "ebpf_program_run",
            "Time the kernel ran each eBPF program (counted while kernel.bpf_stats_enabled is 1)",
            Unit::Seconds,
            metrics.program_seconds.clone(),
        );
        herd.register(
            "ebpf_program_runs",
            "Runs of each eBPF program (counted while kernel.bpf_stats_enabled is 1)",
            metrics.program_runs.clone(),
        );
        herd.register(
            "state_entries",
            "Containers (namespaces, for the network files) each part of the agent keeps state \
             for after the last window",
            metrics.state_entries.clone(),
        );
        herd.register(
            "ebpf_map_entries",
            "Cgroups in each per-cgroup eBPF counter map after the last window removed those \
             of gone cgroups (SYSCALL_COUNTS: with a slot in SYSCALL_SLOTS or an entry)",
            metrics.map_entries.clone(),
        );
        let process = ProcessMetrics::register(&mut registry, "agent");
        Self {
            registry,
            process,
            ..metrics
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The senders' running totals: summaries sent and dropped, alert resolutions dropped.
    pub fn senders(&self, summaries_sent: u64, summaries_dropped: u64, alerts_dropped: u64) {
        for (counter, total) in [
            (&self.summaries_sent, summaries_sent),
            (&self.summaries_dropped, summaries_dropped),
            (&self.alerts_dropped, alerts_dropped),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// The transient faults' running totals: eBPF map reads and `--record` writes that failed.
    pub fn faults(&self, ebpf_read_errors: u64, frame_write_errors: u64) {
        for (counter, total) in [
            (&self.ebpf_read_errors, ebpf_read_errors),
            (&self.frame_write_errors, frame_write_errors),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// How much state each part of the agent holds (`holder`, entries), and how many entries
    /// each eBPF counter map holds (`map`, entries).
    pub fn state(
        &self,
        holders: impl IntoIterator<Item = (&'static str, usize)>,
        maps: impl IntoIterator<Item = (&'static str, usize)>,
    ) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for (holder, n) in holders {
            self.state_entries
                .get_or_create(&HolderLabels {
                    holder: holder.to_owned(),
                })
                .set(gauge(n));
        }
        for (map, n) in maps {
            self.map_entries
                .get_or_create(&MapLabels {
                    map: map.to_owned(),
                })
                .set(gauge(n));
        }
    }

    /// The events lost to each full per-cgroup eBPF map since the programs were loaded.
    pub fn map_full<'a>(&self, totals: impl IntoIterator<Item = (&'a str, u64)>) {
        for (map, total) in totals {
            let counter = self.map_full.get_or_create(&MapLabels {
                map: map.to_owned(),
            });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// After a discovery poll whose runtime call failed.
    pub fn discovery_failed(&self) {
        self.discovery_errors.inc();
    }

    /// After each window: the containers' series, the open findings, the agent's health.
    pub fn after_window<'a>(
        &self,
        report: &WindowReport,
        table: &ContainerTable,
        features: &[String],
        open: impl Iterator<Item = &'a FindingRecord>,
        times: WindowTimes,
    ) {
        self.windows.inc();
        self.containers
            .set(i64::try_from(table.len()).unwrap_or(i64::MAX));
        self.window_seconds.observe(times.window.as_secs_f64());
        self.collection_seconds
            .observe(times.collection.as_secs_f64());
        self.containers_series(report, table, features);

        self.open_findings.clear();
        for severity in [Severity::Warning, Severity::Critical] {
            // Present at 0, so that a rule sees the all-clear.
            self.open_findings
                .get_or_create(&finding_labels(severity))
                .set(0);
        }
        for record in open {
            self.open_findings
                .get_or_create(&finding_labels(record.finding.severity))
                .inc();
        }
        self.health();
    }

    fn containers_series(
        &self,
        report: &WindowReport,
        table: &ContainerTable,
        features: &[String],
    ) {
        self.feature.clear();
        self.score.clear();
        let mut scored: Vec<_> = report.scores.iter().collect();
        // The cap keeps the containers that stand out most.
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut series = 0;
        let mut dropped = 0;
        for entity in scored {
            let Some(container) = table.get(&entity.entity) else {
                continue;
            };
            let values: Vec<(&String, f64)> = entity
                .features
                .iter()
                .zip(features)
                .filter_map(|(c, name)| c.map(|c| (name, c.value)))
                .collect();
            let wanted = 1 + values.len();
            if series + wanted > self.limits.max_series {
                dropped += wanted;
                continue;
            }
            series += wanted;
            let pod = container.pod.as_ref();
            let labels = ContainerLabels {
                namespace: bounded(pod.map_or("", |p| p.namespace.as_str())),
                pod: bounded(pod.map_or("", |p| p.name.as_str())),
                container: bounded(container.name.as_deref().unwrap_or("")),
                domain: bounded(&container.domain_name()),
            };
            self.score.get_or_create(&labels).set(entity.score);
            for (feature, value) in values {
                self.feature
                    .get_or_create(&FeatureLabels {
                        namespace: labels.namespace.clone(),
                        pod: labels.pod.clone(),
                        container: labels.container.clone(),
                        domain: labels.domain.clone(),
                        feature: feature.clone(),
                    })
                    .set(value);
            }
        }
        self.dropped.set(dropped as i64);
    }

    /// The eBPF programs this process loaded, by kernel id (`EbpfPrograms::program_names`):
    /// their run time and runs are reported under these names.
    pub fn programs_loaded(&self, names: HashMap<u32, String>) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .program_names = names;
    }

    fn health(&self) {
        self.process.refresh();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if bpf_stats::enabled() {
            for (program, stats) in bpf_stats::read(&last.program_names) {
                let labels = ProgramLabels {
                    program: program.clone(),
                };
                let before = last.programs.get(&program).copied().unwrap_or_default();
                self.program_seconds
                    .get_or_create(&labels)
                    .inc_by((stats.run_seconds - before.run_seconds).max(0.0));
                self.program_runs
                    .get_or_create(&labels)
                    .inc_by(stats.runs.saturating_sub(before.runs));
                last.programs.insert(program, stats);
            }
        }
    }
}

impl herd_aggregator::export::metrics_http::Scrape for NodeMetrics {
    fn encode(&self) -> Result<String, std::fmt::Error> {
        NodeMetrics::encode(self)
    }
}

fn finding_labels(severity: Severity) -> FindingLabels {
    FindingLabels {
        severity: severity.to_string(),
        kind: "stray_container".to_owned(),
    }
}

fn bounded(value: &str) -> String {
    match value.char_indices().nth(MAX_LABEL) {
        Some((end, _)) => value[..end].to_owned(),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_gauges_follow_what_each_part_holds_now() {
        let metrics = NodeMetrics::new(MetricsLimits::default());
        metrics.state([("table", 40), ("detector", 40)], [("NET_COUNTS", 12)]);
        metrics.state([("table", 3), ("detector", 3)], [("NET_COUNTS", 2)]);
        let text = metrics.encode().unwrap();
        for line in [
            "herd_state_entries{holder=\"table\"} 3\n",
            "herd_state_entries{holder=\"detector\"} 3\n",
            "herd_ebpf_map_entries{map=\"NET_COUNTS\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn each_map_counts_its_losses_from_the_kernel_total() {
        let metrics = NodeMetrics::new(MetricsLimits::default());
        metrics.map_full([("NET_COUNTS", 3), ("SCHED_COUNTS", 0)]);
        metrics.map_full([("NET_COUNTS", 5), ("SCHED_COUNTS", 0)]);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("herd_ebpf_map_full_total{map=\"NET_COUNTS\"} 5\n"),
            "{text}"
        );
        // A map that is not full is there at 0, for a rule to see the all-clear.
        assert!(
            text.contains("herd_ebpf_map_full_total{map=\"SCHED_COUNTS\"} 0\n"),
            "{text}"
        );
    }
}
