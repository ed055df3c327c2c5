//! Responses as JSON for programs: prost messages do not derive `Serialize`, and the
//! wire names would not suit a script anyway (enums are words, times RFC 3339 strings,
//! durations seconds).

use herd_proto::herd::v1::{
    Container, ExplainResponse, ExplainWindow, FeatureScore, FeatureStats, Finding, FindingEvent,
    FindingKind, GetClusterDomainResponse, GetDomainResponse, GetInfoResponse, NodeDomainStats,
    NodeStatus, SignalStatus,
};
use serde_json::{Value, json};

use crate::human;

fn time(at: Option<&prost_types::Timestamp>) -> Value {
    human::time(at).map_or(Value::Null, |at| {
        Value::String(humantime::format_rfc3339(at).to_string())
    })
}

fn seconds(d: Option<&prost_types::Duration>) -> Value {
    human::span(d).map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

/// `own history` in a table, `own_history` in a document.
fn basis(basis: i32) -> String {
    human::basis(basis).replace(' ', "_")
}

/// The kind as `--kind` takes it, in snake case: `node_peers`, `cluster_replica`, …
fn kind(kind: i32) -> &'static str {
    match FindingKind::try_from(kind) {
        // Before kinds, every finding was a node's comparison of peers.
        Ok(FindingKind::Unspecified | FindingKind::NodePeers) => "node_peers",
        Ok(FindingKind::ClusterReplica) => "cluster_replica",
        Ok(FindingKind::WorkloadNode) => "workload_node",
        Ok(FindingKind::SickNode) => "sick_node",
        Ok(FindingKind::NodeSilent) => "node_silent",
        Ok(FindingKind::DomainShift) => "domain_shift",
        Err(_) => "unknown",
    }
}

pub fn info(info: &GetInfoResponse) -> Value {
    let signal = |signal: &SignalStatus| {
        json!({
            "name": signal.name,
            "active": signal.active,
            "source": signal.source,
            "reason": signal.reason,
        })
    };
    json!({
        "version": info.version,
        "node": info.node,
        "window_seconds": seconds(info.window.as_ref()),
        "min_age_seconds": seconds(info.min_age.as_ref()),
        "signals": info.signals.iter().map(signal).collect::<Vec<_>>(),
        "ebpf": info.ebpf.as_ref().map(|ebpf| json!({
            "loaded": ebpf.loaded,
            "reason": ebpf.reason,
        })),
        "runtime": info.runtime.as_ref().map(|runtime| json!({
            "connected": runtime.connected,
            "socket": runtime.socket,
            "reason": runtime.reason,
        })),
        "started": time(info.started.as_ref()),
        "containers": info.containers,
        "open_findings": info.open_findings,
        "windows": info.windows,
        "history_windows": info.history_windows,
    })
}

pub fn container(container: &Container) -> Value {
    json!({
        "id": container.id,
        "node": container.node,
        "namespace": container.namespace,
        "pod": container.pod,
        "pod_uid": container.pod_uid,
        "name": container.name,
        "image": container.image,
        "domain": container.domain,
        "cgroup": container.cgroup,
        "age_seconds": seconds(container.age.as_ref()),
        "judged": container.judged,
        "scored": container.scored,
        // No score before the first scored window, rather than a misleading 0.
        "score": container.scored.then_some(container.score),
        "flagged": container.flagged,
    })
}

pub fn containers(containers: &[Container]) -> Value {
    json!({ "containers": containers.iter().map(container).collect::<Vec<_>>() })
}

fn feature_score(score: &FeatureScore) -> Value {
    json!({
        "feature": score.feature,
        "value": score.value,
        "reference": score.reference,
        "mad": score.mad,
        "z": score.z,
        "basis": basis(score.basis),
    })
}

pub fn finding(finding: &Finding) -> Value {
    json!({
        "id": finding.id,
        "kind": kind(finding.kind),
        "source": finding.source,
        "node": human::node(finding),
        "namespace": finding.namespace,
        "pod": finding.pod,
        "container": finding.container,
        "container_id": finding.container_id,
        "image": finding.image,
        "domain": finding.domain,
        "severity": human::severity(finding.severity),
        "state": human::state(finding.state),
        "opened": time(finding.opened.as_ref()),
        "updated": time(finding.updated.as_ref()),
        "closed": time(finding.closed.as_ref()),
        "peak_score": finding.peak_score,
        "drivers": finding.drivers.iter().map(feature_score).collect::<Vec<_>>(),
        "summary": finding.summary,
    })
}

pub fn findings(findings: &[Finding]) -> Value {
    json!({ "findings": findings.iter().map(finding).collect::<Vec<_>>() })
}

pub fn event(event: &FindingEvent) -> Value {
    json!({
        "kind": human::event_kind(event.kind),
        "finding": event.finding.as_ref().map(finding),
    })
}

pub fn explain(explain: &ExplainResponse) -> Value {
    let window = |window: &ExplainWindow| {
        json!({
            "at": time(window.at.as_ref()),
            "score": window.score,
            "peers": window.peers,
            "features": window.features.iter().map(feature_score).collect::<Vec<_>>(),
        })
    };
    json!({
        "container": explain.container.as_ref().map(container),
        "threshold": explain.threshold,
        "windows": explain.windows.iter().map(window).collect::<Vec<_>>(),
        "findings": explain.findings.iter().map(finding).collect::<Vec<_>>(),
    })
}

fn feature_stats(stats: &FeatureStats) -> Value {
    json!({
        "feature": stats.feature,
        "median": stats.median,
        "mad": stats.mad,
        "members": stats.members,
        "basis": basis(stats.basis),
    })
}

pub fn domain(domain: &GetDomainResponse) -> Value {
    json!({
        "domain": domain.domain,
        "at": time(domain.at.as_ref()),
        "members": domain.members.iter().map(container).collect::<Vec<_>>(),
        "features": domain.features.iter().map(feature_stats).collect::<Vec<_>>(),
        "findings": domain.findings.iter().map(finding).collect::<Vec<_>>(),
    })
}

/// The domain across the cluster: each node's statistics beside the cluster's.
pub fn cluster_domain(domain: &GetClusterDomainResponse) -> Value {
    let node = |node: &NodeDomainStats| {
        json!({
            "node": node.node,
            "members": node.members,
            "features": node.features.iter().map(feature_stats).collect::<Vec<_>>(),
        })
    };
    json!({
        "domain": domain.domain,
        "at": time(domain.at.as_ref()),
        "members": domain.members.iter().map(container).collect::<Vec<_>>(),
        "features": domain.features.iter().map(feature_stats).collect::<Vec<_>>(),
        "nodes": domain.nodes.iter().map(node).collect::<Vec<_>>(),
        "findings": domain.findings.iter().map(finding).collect::<Vec<_>>(),
    })
}

pub fn nodes(nodes: &[NodeStatus]) -> Value {
    let node = |node: &NodeStatus| {
        json!({
            "node": node.node,
            "status": if node.silent { "silent" } else { "reporting" },
            "last_seen": time(node.last_seen.as_ref()),
            "agent_version": node.agent_version,
            "open_findings": node.open_findings,
            "summaries": node.summaries,
            "summaries_lost": node.summaries_lost,
            "health": node.health.as_ref().map(|health| json!({
                "collection_seconds": seconds(health.collection.as_ref()),
                "ebpf_loaded": health.ebpf_loaded,
                "runtime_connected": health.runtime_connected,
                "discovery_errors": health.discovery_errors,
                "summaries_dropped": health.summaries_dropped,
                "containers": health.containers,
            })),
        })
    };
    json!({ "nodes": nodes.iter().map(node).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use herd_proto::herd::v1::{Basis, ExplainWindow, FindingEventKind, FindingState, Severity};

    use super::*;

    fn at(secs: u64) -> Option<prost_types::Timestamp> {
        Some((SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).into())
    }

    fn cpu() -> FeatureScore {
        FeatureScore {
            feature: "cpu_usage_cores".to_owned(),
            value: 8.2,
            reference: 1.0,
            mad: 0.1,
            z: 18.2,
            basis: Basis::OwnHistory as i32,
        }
    }

    #[test]
    fn a_finding_has_words_for_enums_and_rfc3339_times() {
        let doc = event(&FindingEvent {
            kind: FindingEventKind::Closed as i32,
            finding: Some(Finding {
                id: "9b1c".to_owned(),
                pod: "web-1".to_owned(),
                severity: Severity::Critical as i32,
                state: FindingState::Closed as i32,
                opened: at(1_700_000_000),
                updated: Some(prost_types::Timestamp {
                    seconds: 1_700_000_100,
                    nanos: 500_000_000,
                }),
                peak_score: 18.2,
                drivers: vec![cpu()],
                ..Finding::default()
            }),
        });
        assert_eq!(doc["kind"], "closed");
        let finding = &doc["finding"];
        assert_eq!(finding["id"], "9b1c");
        assert_eq!(finding["pod"], "web-1");
        assert_eq!(finding["severity"], "critical");
        assert_eq!(finding["state"], "closed");
        assert_eq!(finding["opened"], "2023-11-14T22:13:20Z");
        assert_eq!(finding["updated"], "2023-11-14T22:15:00.500000000Z");
        assert_eq!(finding["closed"], Value::Null);
        assert_eq!(finding["peak_score"], 18.2);
        assert_eq!(
            finding["drivers"],
            json!([{
                "feature": "cpu_usage_cores",
                "value": 8.2,
                "reference": 1.0,
                "mad": 0.1,
                "z": 18.2,
                "basis": "own_history",
            }])
        );
    }

    #[test]
    fn a_finding_says_what_it_compares_who_found_it_and_where() {
        let doc = findings(&[
            Finding {
                kind: FindingKind::WorkloadNode as i32,
                source: "aggregator".to_owned(),
                node: "node-2".to_owned(),
                ..Finding::default()
            },
            // From an agent before kinds: a node finding, on the node that found it.
            Finding {
                source: "node node-1".to_owned(),
                ..Finding::default()
            },
        ]);
        let found: Vec<(&str, &str, &str)> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["kind"].as_str().unwrap(),
                    f["source"].as_str().unwrap(),
                    f["node"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("workload_node", "aggregator", "node-2"),
                ("node_peers", "node node-1", "node-1"),
            ]
        );
    }

    #[test]
    fn nodes_say_whether_they_report() {
        use herd_proto::herd::v1::NodeHealth;

        let doc = nodes(&[NodeStatus {
            node: "node-1".to_owned(),
            last_seen: at(1_700_000_000),
            agent_version: "0.2.0".to_owned(),
            health: Some(NodeHealth {
                containers: 12,
                ..NodeHealth::default()
            }),
            open_findings: 2,
            silent: true,
            summaries: 90,
            summaries_lost: 1,
        }]);
        let node = &doc["nodes"][0];
        assert_eq!(node["node"], "node-1");
        assert_eq!(node["status"], "silent");
        assert_eq!(node["last_seen"], "2023-11-14T22:13:20Z");
        assert_eq!(node["health"]["containers"], 12);
        assert_eq!(node["summaries_lost"], 1);
    }

    #[test]
    fn durations_are_seconds_and_an_unscored_container_has_no_score() {
        let doc = containers(&[Container {
            id: "3f2a".to_owned(),
            age: Some(prost_types::Duration {
                seconds: 90,
                nanos: 250_000_000,
            }),
            score: 0.0,
            scored: false,
            ..Container::default()
        }]);
        let container = &doc["containers"][0];
        assert_eq!(container["id"], "3f2a");
        assert_eq!(container["age_seconds"], 90.25);
        assert_eq!(container["score"], Value::Null);
        assert_eq!(container["scored"], false);
    }

    #[test]
    fn explain_keeps_every_window_and_feature() {
        let doc = explain(&ExplainResponse {
            container: Some(Container {
                pod: "web-1".to_owned(),
                ..Container::default()
            }),
            windows: vec![ExplainWindow {
                at: at(1_700_000_000),
                score: 18.2,
                peers: 4,
                features: vec![cpu()],
            }],
            findings: Vec::new(),
            threshold: 4.0,
        });
        assert_eq!(doc["container"]["pod"], "web-1");
        assert_eq!(doc["threshold"], 4.0);
        assert_eq!(doc["windows"][0]["at"], "2023-11-14T22:13:20Z");
        assert_eq!(doc["windows"][0]["peers"], 4);
        assert_eq!(doc["windows"][0]["features"][0]["z"], 18.2);
        assert_eq!(doc["findings"], json!([]));
    }
}
