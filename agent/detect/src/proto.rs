//! Findings in the words of `herd.v1`, for the agent's API and the aggregator alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_proto::herd::v1 as pb;

use crate::{Basis, Comparison, Driver, Finding, Kind, Severity};

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

/// A driver as it travels, back in the detector's terms: its `Display` is how a person
/// reads it wherever the finding goes (alerts, the journal).
pub fn driver(s: &pb::FeatureScore) -> Driver {
    Driver {
        feature: s.feature.clone(),
        value: s.value,
        reference: s.reference,
        scale: s.mad,
        z: s.z,
        basis: match s.basis() {
            pb::Basis::OwnHistory => Basis::OwnHistory,
            pb::Basis::Peers | pb::Basis::Unspecified => Basis::Peers,
        },
    }
}

/// What the detector's finding does not know of itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct FindingContext<'a> {
    /// Container name within the pod.
    pub container: Option<&'a str>,
    pub image: Option<&'a str>,
    pub kind: pb::FindingKind,
    /// Who found it: "node <name>" or "aggregator".
    pub source: &'a str,
}

pub fn finding(f: &Finding, context: FindingContext<'_>) -> pb::Finding {
    let s = &f.subject;
    pb::Finding {
        id: f.id.clone(),
        node: s.node.clone(),
        namespace: s.namespace.clone().unwrap_or_default(),
        pod: s.pod.clone().unwrap_or_default(),
        container: context.container.unwrap_or_default().to_owned(),
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
        image: context.image.unwrap_or_default().to_owned(),
        kind: match f.kind {
            Kind::DomainShift { .. } => pb::FindingKind::DomainShift,
            Kind::Member => context.kind,
        }
        .into(),
        source: context.source.to_owned(),
    }
}
