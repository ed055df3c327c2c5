//! One finding as an Alertmanager alert: labels identify it, annotations explain it.

use std::{collections::BTreeMap, time::SystemTime};

use herd_detect::proto::{driver, from_timestamp};
use herd_proto::herd::v1 as pb;
use serde_json::{Value, json};

/// An alert as Alertmanager's v2 API takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: SystemTime,
    /// In the past for a resolved alert; for a firing one, when it lapses unless re-sent.
    pub ends_at: SystemTime,
}

impl Alert {
    pub fn to_json(&self) -> Value {
        json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": humantime::format_rfc3339_millis(self.starts_at).to_string(),
            "endsAt": humantime::format_rfc3339_millis(self.ends_at).to_string(),
        })
    }
}

/// The alert name of each finding kind: routes and silences key on it.
pub fn alertname(kind: pb::FindingKind) -> &'static str {
    match kind {
        pb::FindingKind::Unspecified | pb::FindingKind::NodePeers => "HerdStrayContainer",
        pb::FindingKind::ClusterReplica => "HerdStrayReplica",
        pb::FindingKind::WorkloadNode => "HerdWorkloadNode",
        pb::FindingKind::SickNode => "HerdSickNode",
        pb::FindingKind::NodeSilent => "HerdNodeSilent",
        pb::FindingKind::DomainShift => "HerdWorkloadShift",
    }
}

/// The alert of a finding, firing until `ends_at`, or resolved at the finding's close.
pub fn alert_of(f: &pb::Finding, ends_at: SystemTime) -> Alert {
    let kind = f.kind();
    let mut labels = BTreeMap::new();
    let mut label = |name: &str, value: &str| {
        if !value.is_empty() {
            labels.insert(name.to_owned(), value.to_owned());
        }
    };
    label("alertname", alertname(kind));
    label("severity", severity(f.severity()));
    label("namespace", &f.namespace);
    label("pod", &f.pod);
    label("container", &f.container);
    label("domain", &f.domain);
    label("node", &f.node);
    label("finding_id", &f.id);

    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_owned(), headline(f, kind));
    annotations.insert("description".to_owned(), f.summary.clone());
    if let Some(top) = f.drivers.first() {
        annotations.insert("top_feature".to_owned(), driver(top).to_string());
    }
    annotations.insert("explain".to_owned(), explain(f, kind));
    annotations.insert("source".to_owned(), f.source.clone());
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().and_then(from_timestamp);
    Alert {
        labels,
        annotations,
        starts_at: time(&f.opened).unwrap_or(SystemTime::UNIX_EPOCH),
        ends_at: time(&f.closed).unwrap_or(ends_at),
    }
}

fn severity(s: pb::Severity) -> &'static str {
    match s {
        pb::Severity::Critical => "critical",
        pb::Severity::Warning | pb::Severity::Unspecified => "warning",
    }
}

/// One line for the notification's title.
fn headline(f: &pb::Finding, kind: pb::FindingKind) -> String {
    let who = if f.pod.is_empty() {
        f.container_id.as_str()
    } else {
        f.pod.as_str()
    };
    match kind {
        pb::FindingKind::Unspecified | pb::FindingKind::NodePeers => {
            format!("{who} strays from its peers in {} on {}", f.domain, f.node)
        }
        pb::FindingKind::ClusterReplica => format!(
            "{who} strays from every replica of {} in the cluster (on {})",
            f.domain, f.node
        ),
        pb::FindingKind::WorkloadNode => format!(
            "{} runs unlike itself on its other nodes on {}",
            f.domain, f.node
        ),
        pb::FindingKind::SickNode => format!("node {} hurts the workloads on it", f.node),
        pb::FindingKind::NodeSilent => format!("node {}'s agent stopped reporting", f.node),
        pb::FindingKind::DomainShift if f.node.is_empty() => {
            format!("{} moved together, across the cluster", f.domain)
        }
        pb::FindingKind::DomainShift => format!("{} moved together on {}", f.domain, f.node),
    }
}

/// The `herd` command that tells more, and where to run it.
fn explain(f: &pb::Finding, kind: pb::FindingKind) -> String {
    match kind {
        pb::FindingKind::Unspecified | pb::FindingKind::NodePeers if !f.pod.is_empty() => {
            format!(
                "run `herd explain {} --namespace {}` on the node",
                f.pod, f.namespace
            )
        }
        pb::FindingKind::Unspecified | pb::FindingKind::NodePeers => {
            format!("run `herd explain --id {}` on the node", f.container_id)
        }
        _ => format!(
            "run `herd findings --server <aggregator> --node {}` for the cluster's findings on \
             that node",
            f.node
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use herd_detect::proto::timestamp;

    use super::*;

    fn finding(kind: pb::FindingKind) -> pb::Finding {
        pb::Finding {
            id: "0123456789abcdef".into(),
            node: "node-1".into(),
            namespace: "shop".into(),
            pod: "web-1".into(),
            container: "app".into(),
            container_id: "c0ffee".into(),
            domain: "shop/Deployment/web/app".into(),
            severity: pb::Severity::Critical as i32,
            opened: Some(timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000))),
            drivers: vec![pb::FeatureScore {
                feature: "cpu_usage_cores".into(),
                value: 1.0,
                reference: 0.125,
                mad: 0.01,
                z: 9.0,
                basis: pb::Basis::Peers as i32,
            }],
            summary: "web-1 in shop/Deployment/web/app: cpu_usage_cores 1 vs 0.125".into(),
            kind: kind as i32,
            source: "node node-1".into(),
            ..pb::Finding::default()
        }
    }

    #[test]
    fn labels_identify_and_annotations_explain() {
        let lapses = UNIX_EPOCH + Duration::from_secs(1_700_000_300);
        let json = alert_of(&finding(pb::FindingKind::NodePeers), lapses).to_json();
        assert_eq!(json["labels"]["alertname"], "HerdStrayContainer");
        assert_eq!(json["labels"]["severity"], "critical");
        assert_eq!(json["labels"]["pod"], "web-1");
        assert_eq!(json["labels"]["container"], "app");
        assert_eq!(json["labels"]["node"], "node-1");
        assert_eq!(json["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["endsAt"], "2023-11-14T22:18:20.000Z");
        assert_eq!(
            json["annotations"]["explain"],
            "run `herd explain web-1 --namespace shop` on the node"
        );
        assert_eq!(
            json["annotations"]["top_feature"],
            "cpu usage cores 8.0× peer median (1.00 vs 0.125, z 9.0)"
        );
        let mut closed = finding(pb::FindingKind::NodePeers);
        closed.closed = Some(timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_100)));
        assert_eq!(
            alert_of(&closed, lapses).to_json()["endsAt"],
            "2023-11-14T22:15:00.000Z",
            "resolved at the close"
        );
    }

    #[test]
    fn each_cluster_kind_has_its_own_alertname_and_no_empty_labels() {
        let lapses = UNIX_EPOCH + Duration::from_secs(1_700_000_300);
        let mut names = std::collections::HashSet::new();
        for kind in [
            pb::FindingKind::NodePeers,
            pb::FindingKind::ClusterReplica,
            pb::FindingKind::WorkloadNode,
            pb::FindingKind::SickNode,
            pb::FindingKind::NodeSilent,
            pb::FindingKind::DomainShift,
        ] {
            let mut f = finding(kind);
            if matches!(
                kind,
                pb::FindingKind::SickNode | pb::FindingKind::DomainShift
            ) {
                f.pod.clear();
                f.namespace.clear();
                f.container.clear();
            }
            let alert = alert_of(&f, lapses);
            assert!(names.insert(alert.labels["alertname"].clone()), "{kind:?}");
            assert!(alert.labels.values().all(|v| !v.is_empty()));
            if kind == pb::FindingKind::SickNode {
                assert!(!alert.labels.contains_key("pod"));
                assert_eq!(
                    alert.annotations["summary"],
                    "node node-1 hurts the workloads on it"
                );
            }
        }
    }
}
