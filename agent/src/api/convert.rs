//! The agent's own types in the words of `herd.v1`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_proto::herd::v1 as pb;

use crate::{
    api::{
        findings_log::{ChangeKind, FindingRecord},
        history::ExplainedWindow,
        state::{AgentFacts, ContainerView, RuntimeState},
    },
    detect::{Basis, Comparison, FeatureStats, Severity},
};

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// A timestamp from a client, `None` when it is before 1970 or malformed.
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub fn severity(s: Severity) -> pb::Severity {
    match s {
        Severity::Warning => pb::Severity::Warning,
        Severity::Critical => pb::Severity::Critical,
    }
}

pub fn basis(b: Basis) -> pb::Basis {
    match b {
        Basis::Peers => pb::Basis::Peers,
        Basis::OwnHistory => pb::Basis::OwnHistory,
    }
}

pub fn change_kind(kind: ChangeKind) -> pb::FindingEventKind {
    match kind {
        ChangeKind::Opened => pb::FindingEventKind::Opened,
        ChangeKind::Updated => pb::FindingEventKind::Updated,
        ChangeKind::Closed => pb::FindingEventKind::Closed,
    }
}

pub fn feature_score(feature: &str, c: &Comparison) -> pb::FeatureScore {
    pb::FeatureScore {
        feature: feature.to_owned(),
        value: c.value,
        reference: c.reference,
        mad: c.scale,
        z: c.z,
        basis: basis(c.basis).into(),
    }
}

pub fn finding(record: &FindingRecord) -> pb::Finding {
    let f = &record.finding;
    let s = &f.subject;
    pb::Finding {
        id: f.id.clone(),
        node: s.node.clone(),
        namespace: s.namespace.clone().unwrap_or_default(),
        pod: s.pod.clone().unwrap_or_default(),
        container: record.container.clone().unwrap_or_default(),
        container_id: s.entity.clone(),
        domain: s.domain.clone(),
        severity: severity(f.severity).into(),
        state: if f.closed.is_some() {
            pb::FindingState::Closed
        } else {
            pb::FindingState::Open
        }
        .into(),
        opened: Some(timestamp(f.opened)),
        updated: Some(timestamp(f.updated)),
        closed: f.closed.map(timestamp),
        peak_score: f.peak_score,
        drivers: f
            .drivers
            .iter()
            .map(|d| {
                feature_score(
                    &d.feature,
                    &Comparison {
                        value: d.value,
                        reference: d.reference,
                        scale: d.scale,
                        z: d.z,
                        basis: d.basis,
                    },
                )
            })
            .collect(),
        summary: f.to_string(),
        image: record.image.clone().unwrap_or_default(),
        kind: pb::FindingKind::NodePeers.into(),
        source: format!("node {}", s.node),
    }
}

pub fn container(c: &ContainerView, facts: &AgentFacts, now: SystemTime) -> pb::Container {
    let age = c.age(now);
    pb::Container {
        id: c.id.clone(),
        pod: c.pod.clone().unwrap_or_default(),
        namespace: c.namespace.clone().unwrap_or_default(),
        name: c.name.clone().unwrap_or_default(),
        image: c.image.clone().unwrap_or_default(),
        domain: c.domain.clone(),
        cgroup: c.cgroup.display().to_string(),
        age: Some(duration(age)),
        judged: age >= facts.min_age,
        score: c.score.unwrap_or_default(),
        flagged: c.flagged,
        node: facts.node.clone(),
        pod_uid: c.pod_uid.clone().unwrap_or_default(),
        scored: c.score.is_some(),
    }
}

pub fn info(
    facts: &AgentFacts,
    runtime: &RuntimeState,
    containers: usize,
    open_findings: usize,
    windows: u64,
    history_windows: usize,
) -> pb::GetInfoResponse {
    pb::GetInfoResponse {
        version: facts.version.clone(),
        node: facts.node.clone(),
        window: Some(duration(facts.window)),
        min_age: Some(duration(facts.min_age)),
        signals: facts
            .signals
            .iter()
            .map(|s| pb::SignalStatus {
                name: s.name.clone(),
                active: s.active,
                source: s.source.clone(),
                reason: s.reason.clone().unwrap_or_default(),
            })
            .collect(),
        ebpf: Some(pb::EbpfStatus {
            loaded: facts.ebpf_missing.is_none(),
            reason: facts.ebpf_missing.clone().unwrap_or_default(),
        }),
        runtime: Some(pb::RuntimeStatus {
            connected: runtime.connected,
            socket: runtime
                .socket
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            reason: runtime.reason.clone().unwrap_or_default(),
        }),
        started: Some(timestamp(facts.started)),
        containers: u32::try_from(containers).unwrap_or(u32::MAX),
        open_findings: u32::try_from(open_findings).unwrap_or(u32::MAX),
        windows,
        history_windows: u32::try_from(history_windows).unwrap_or(u32::MAX),
    }
}

pub fn explained_window(w: &ExplainedWindow, features: &[String]) -> pb::ExplainWindow {
    pb::ExplainWindow {
        at: Some(timestamp(w.at)),
        score: w.score,
        features: w
            .features
            .iter()
            .map(|(f, c)| feature_score(&features[*f], c))
            .collect(),
        peers: u32::try_from(w.peers).unwrap_or(u32::MAX),
    }
}

pub fn feature_stats(feature: &str, s: &FeatureStats) -> pb::FeatureStats {
    pb::FeatureStats {
        feature: feature.to_owned(),
        median: s.median,
        mad: s.scale,
        members: u32::try_from(s.members).unwrap_or(u32::MAX),
        basis: basis(s.basis).into(),
    }
}
