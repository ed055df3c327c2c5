//! The agent's own types in the words of `herd.v1`.

use std::time::SystemTime;

use herd_proto::herd::v1 as pb;

use crate::{
    api::{
        findings_log::FindingRecord,
        history::ExplainedWindow,
        state::{AgentFacts, ContainerView, RuntimeState},
    },
    detect::{FeatureStats, proto::FindingContext},
};

pub use crate::detect::proto::{basis, duration, feature_score, timestamp};

pub fn finding(record: &FindingRecord) -> pb::Finding {
    crate::detect::proto::finding(
        &record.finding,
        FindingContext {
            container: record.container.as_deref(),
            image: record.image.as_deref(),
            kind: pb::FindingKind::NodePeers,
            source: &format!("node {}", record.finding.subject.node),
        },
    )
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
