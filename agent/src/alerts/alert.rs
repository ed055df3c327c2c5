//! One finding as an Alertmanager alert: labels identify it, annotations explain it.

use std::{collections::BTreeMap, time::SystemTime};

use serde_json::{Value, json};

use crate::api::findings_log::FindingRecord;

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

/// The alert of a node finding: `HerdStrayContainer`, firing until `ends_at` (or resolved
/// at the finding's close).
pub fn alert_of(record: &FindingRecord, ends_at: SystemTime) -> Alert {
    let f = &record.finding;
    let s = &f.subject;
    let mut labels = BTreeMap::new();
    let mut label = |name: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            labels.insert(name.to_owned(), value.to_owned());
        }
    };
    label("alertname", Some("HerdStrayContainer"));
    label("severity", Some(&f.severity.to_string()));
    label("namespace", s.namespace.as_deref());
    label("pod", s.pod.as_deref());
    label("container", record.container.as_deref());
    label("domain", Some(&s.domain));
    label("node", Some(&s.node));
    label("finding_id", Some(&f.id));
    let explain = match (&s.pod, &s.namespace) {
        (Some(pod), Some(namespace)) => format!("herd explain {pod} --namespace {namespace}"),
        _ => format!("herd explain --id {}", s.entity),
    };
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".to_owned(),
        format!(
            "{} strays from its peers in {} on {}",
            s.pod.as_deref().unwrap_or(&s.entity),
            s.domain,
            s.node
        ),
    );
    annotations.insert("description".to_owned(), f.to_string());
    annotations.insert(
        "top_feature".to_owned(),
        f.drivers
            .first()
            .map_or_else(String::new, |d| d.to_string()),
    );
    annotations.insert("explain".to_owned(), format!("run `{explain}` on the node"));
    Alert {
        labels,
        annotations,
        starts_at: f.opened,
        ends_at: f.closed.unwrap_or(ends_at),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::detect::{Basis, Driver, Finding, Severity, Subject};

    #[test]
    fn labels_identify_and_annotations_explain() {
        let record = FindingRecord {
            finding: Finding {
                id: "0123456789abcdef".into(),
                subject: Subject {
                    entity: "c0ffee".into(),
                    pod: Some("web-1".into()),
                    namespace: Some("shop".into()),
                    domain: "shop/Deployment/web/app".into(),
                    node: "node-1".into(),
                },
                severity: Severity::Critical,
                opened: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                updated: UNIX_EPOCH + Duration::from_secs(1_700_000_010),
                closed: None,
                peak_score: 9.0,
                drivers: vec![Driver {
                    feature: "cpu_usage_cores".into(),
                    value: 1.0,
                    reference: 0.1,
                    scale: 0.01,
                    z: 9.0,
                    basis: Basis::Peers,
                }],
            },
            container: Some("app".into()),
            image: None,
        };
        let lapses = UNIX_EPOCH + Duration::from_secs(1_700_000_300);
        let json = alert_of(&record, lapses).to_json();
        assert_eq!(json["labels"]["alertname"], "HerdStrayContainer");
        assert_eq!(json["labels"]["severity"], "critical");
        assert_eq!(json["labels"]["pod"], "web-1");
        assert_eq!(json["labels"]["container"], "app");
        assert_eq!(json["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["endsAt"], "2023-11-14T22:18:20.000Z");
        assert_eq!(
            json["annotations"]["explain"],
            "run `herd explain web-1 --namespace shop` on the node"
        );
        let mut closed = record;
        closed.finding.closed = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_100));
        assert_eq!(
            alert_of(&closed, lapses).to_json()["endsAt"],
            "2023-11-14T22:15:00.000Z",
            "resolved at the close"
        );
    }
}
