//! Numbers, times and enum values as a person reads them in a terminal.

use std::time::{Duration, SystemTime};

use herd_proto::herd::v1::{
    Basis, FeatureScore, Finding, FindingEventKind, FindingKind, FindingState, Severity,
};

/// A duration in its two largest units, as kubectl shows them: `45s`, `5m3s`, `2h`, `3d4h`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return if d.is_zero() {
            "0s".to_owned()
        } else {
            format!("{}ms", d.as_millis())
        };
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|&(n, _)| n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(2)
        .filter(|&&(n, _)| n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// How long before `now` a moment was: `3m ago`; `-` when unknown.
pub fn ago(at: Option<SystemTime>, now: SystemTime) -> String {
    match at {
        // A clock a little ahead of ours still reads as just now.
        Some(at) => format!(
            "{} ago",
            duration(now.duration_since(at).unwrap_or_default())
        ),
        None => "-".to_owned(),
    }
}

/// A float in at most three or four significant digits, `k`/`M`/`G`/`T` from ten thousand:
/// `8.2`, `18.2`, `512`, `0.0123`, `12.3k`, `1.5G`.
pub fn float(x: f64) -> String {
    // Unknown, such as an own reference older than the agent keeps.
    if x.is_nan() {
        return "-".to_owned();
    }
    if !x.is_finite() {
        return x.to_string();
    }
    let magnitude = x.abs();
    if magnitude == 0.0 {
        return "0".to_owned();
    }
    if magnitude >= 1e4 {
        let (size, suffix) = [(1e12, "T"), (1e9, "G"), (1e6, "M")]
            .into_iter()
            .find(|&(size, _)| magnitude >= size)
            .unwrap_or((1e3, "k"));
        return format!("{}{suffix}", significant(x / size, 3));
    }
    if magnitude < 1e-3 {
        return format!("{x:.1e}");
    }
    significant(x, 3)
}

/// `x` to `digits` significant digits (at least its whole part), trailing zeros dropped.
fn significant(x: f64, digits: i32) -> String {
    let whole_digits = x.abs().log10().floor() as i32 + 1;
    let decimals = (digits - whole_digits).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A z or a score: one decimal, so that columns of them line up.
pub fn score(z: f64) -> String {
    format!("{z:.1}")
}

/// The strongest driver in a few words: `cpu_usage_cores 8.2× peers (z 18.2)`.
pub fn driver(feature: &FeatureScore) -> String {
    let basis = basis(feature.basis);
    let ratio = feature.value / feature.reference;
    if feature.reference != 0.0 && ratio.is_finite() {
        format!(
            "{} {}× {basis} (z {})",
            feature.feature,
            float(ratio),
            score(feature.z)
        )
    } else {
        format!(
            "{} {} vs {basis} {} (z {})",
            feature.feature,
            float(feature.value),
            float(feature.reference),
            score(feature.z)
        )
    }
}

/// What a value was compared with, in words: `peers` or `own history`.
pub fn basis(basis: i32) -> &'static str {
    match Basis::try_from(basis) {
        Ok(Basis::Peers) => "peers",
        Ok(Basis::OwnHistory) => "own history",
        Ok(Basis::Unspecified) => "unspecified",
        // A newer agent may know more; say so rather than guess.
        Err(_) => "unknown",
    }
}

/// The enum values as lowercase words, for tables and JSON alike.
pub fn severity(severity: i32) -> &'static str {
    match Severity::try_from(severity) {
        Ok(Severity::Warning) => "warning",
        Ok(Severity::Critical) => "critical",
        Ok(Severity::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}

pub fn state(state: i32) -> &'static str {
    match FindingState::try_from(state) {
        Ok(FindingState::Open) => "open",
        Ok(FindingState::Closed) => "closed",
        Ok(FindingState::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}

pub fn event_kind(kind: i32) -> &'static str {
    match FindingEventKind::try_from(kind) {
        Ok(FindingEventKind::Existing) => "existing",
        Ok(FindingEventKind::Opened) => "opened",
        Ok(FindingEventKind::Updated) => "updated",
        Ok(FindingEventKind::Closed) => "closed",
        Ok(FindingEventKind::Unspecified) => "unspecified",
        Err(_) => "unknown",
    }
}

/// What a finding compares, in one word: `peers`, `replica`, `workload`, `node`, `silent`,
/// `shift`.
pub fn kind(kind: i32) -> &'static str {
    match FindingKind::try_from(kind) {
        // Before kinds, every finding was a node's comparison of peers.
        Ok(FindingKind::Unspecified | FindingKind::NodePeers) => "peers",
        Ok(FindingKind::ClusterReplica) => "replica",
        Ok(FindingKind::WorkloadNode) => "workload",
        Ok(FindingKind::SickNode) => "node",
        Ok(FindingKind::NodeSilent) => "silent",
        Ok(FindingKind::DomainShift) => "shift",
        Err(_) => "unknown",
    }
}

/// The node a finding is on or about: its `node`, or the one its source names; empty for
/// a finding of the whole cluster.
pub fn node(finding: &Finding) -> &str {
    if finding.node.is_empty() {
        finding.source.strip_prefix("node ").unwrap_or_default()
    } else {
        &finding.node
    }
}

/// A protobuf timestamp as a `SystemTime`; `None` when unset or out of range.
pub fn time(at: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    at.and_then(|at| SystemTime::try_from(*at).ok())
}

/// A protobuf duration as a `Duration`; `None` when unset or negative.
pub fn span(d: Option<&prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(*d).ok())
}

/// The first `n` characters of an id: enough to tell findings or containers apart.
pub fn short_id(id: &str, n: usize) -> &str {
    id.char_indices().nth(n).map_or(id, |(end, _)| &id[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_their_two_largest_units() {
        let secs = Duration::from_secs;
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(secs(45)), "45s");
        assert_eq!(duration(secs(5 * 60 + 3)), "5m3s");
        assert_eq!(duration(secs(2 * 3600)), "2h");
        assert_eq!(duration(secs(2 * 3600 + 59)), "2h");
        assert_eq!(duration(secs(3 * 86_400 + 4 * 3600 + 5)), "3d4h");
    }

    #[test]
    fn ages_are_relative_to_now_and_never_negative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(ago(Some(now - Duration::from_secs(180)), now), "3m ago");
        assert_eq!(ago(Some(now + Duration::from_secs(2)), now), "0s ago");
        assert_eq!(ago(None, now), "-");
    }

    #[test]
    fn floats_are_short() {
        assert_eq!(float(0.0), "0");
        assert_eq!(float(8.2), "8.2");
        assert_eq!(float(8.234), "8.23");
        assert_eq!(float(18.24), "18.2");
        assert_eq!(float(512.4), "512");
        assert_eq!(float(1234.0), "1234");
        assert_eq!(float(-3.5), "-3.5");
        assert_eq!(float(0.012345), "0.0123");
        assert_eq!(float(12_345.0), "12.3k");
        assert_eq!(float(1.5e9), "1.5G");
        assert_eq!(float(0.00001), "1.0e-5");
    }

    #[test]
    fn the_top_driver_reads_as_a_ratio_to_its_reference() {
        let mut top = FeatureScore {
            feature: "cpu_usage_cores".to_owned(),
            value: 8.2,
            reference: 1.0,
            mad: 0.1,
            z: 18.24,
            basis: Basis::Peers as i32,
        };
        assert_eq!(driver(&top), "cpu_usage_cores 8.2× peers (z 18.2)");
        top.reference = 0.0;
        top.basis = Basis::OwnHistory as i32;
        assert_eq!(
            driver(&top),
            "cpu_usage_cores 8.2 vs own history 0 (z 18.2)"
        );
    }

    #[test]
    fn kinds_are_short_words_and_the_old_kind_is_peers() {
        let words: Vec<&str> = [
            FindingKind::Unspecified,
            FindingKind::NodePeers,
            FindingKind::ClusterReplica,
            FindingKind::WorkloadNode,
            FindingKind::SickNode,
            FindingKind::NodeSilent,
            FindingKind::DomainShift,
        ]
        .into_iter()
        .map(|k| kind(k as i32))
        .collect();
        assert_eq!(
            words,
            [
                "peers", "peers", "replica", "workload", "node", "silent", "shift"
            ]
        );
        assert_eq!(kind(99), "unknown");
    }

    #[test]
    fn a_finding_is_on_its_node_or_the_node_that_found_it() {
        let mut finding = Finding {
            source: "node node-2".to_owned(),
            ..Finding::default()
        };
        assert_eq!(node(&finding), "node-2");
        finding.node = "node-1".to_owned();
        assert_eq!(node(&finding), "node-1");
        let cluster = Finding {
            source: "aggregator".to_owned(),
            ..Finding::default()
        };
        assert_eq!(node(&cluster), "");
    }

    #[test]
    fn short_ids_cut_on_characters() {
        assert_eq!(short_id("0123456789abcdef", 8), "01234567");
        assert_eq!(short_id("abc", 8), "abc");
    }
}
