//! Findings as both services serve them: one filter for `ListFindings` and `WatchFindings`,
//! one way to page, one watch stream. The agent and the aggregator hold their findings
//! differently; what a client sees is the same.

use std::{pin::Pin, sync::Arc, time::SystemTime};

use futures_util::{Stream, StreamExt as _, stream};
use tokio::sync::broadcast;
use tonic::Status;

use crate::herd::v1 as pb;

/// Most findings in one page of `ListFindings`.
pub const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

/// What a request lets through.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    namespace: String,
    domain: String,
    pod: String,
    node: String,
    min_severity: i32,
    kind: Option<i32>,
    state: Option<i32>,
    since: Option<SystemTime>,
}

fn enum_value<E: TryFrom<i32>>(value: i32, name: &str) -> Result<i32, Status> {
    E::try_from(value)
        .map(|_| value)
        .map_err(|_| Status::invalid_argument(format!("{value} is not a herd.v1.{name}")))
}

impl FindingFilter {
    pub fn list(r: &pb::ListFindingsRequest) -> Result<Self, Status> {
        let since = r
            .since
            .as_ref()
            .map(|t| {
                let seconds = u64::try_from(t.seconds).ok();
                let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000);
                seconds
                    .zip(nanos)
                    .and_then(|(s, n)| {
                        SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(s, n))
                    })
                    .ok_or_else(|| Status::invalid_argument("since is not a valid time after 1970"))
            })
            .transpose()?;
        Ok(Self {
            state: (r.state != 0)
                .then(|| enum_value::<pb::FindingState>(r.state, "FindingState"))
                .transpose()?,
            since,
            ..Self::watch(&pb::WatchFindingsRequest {
                namespace: r.namespace.clone(),
                domain: r.domain.clone(),
                pod: r.pod.clone(),
                min_severity: r.min_severity,
                node: r.node.clone(),
                kind: r.kind,
            })?
        })
    }

    pub fn watch(r: &pb::WatchFindingsRequest) -> Result<Self, Status> {
        Ok(Self {
            namespace: r.namespace.clone(),
            domain: r.domain.clone(),
            pod: r.pod.clone(),
            node: r.node.clone(),
            min_severity: enum_value::<pb::Severity>(r.min_severity, "Severity")?,
            kind: (r.kind != 0)
                .then(|| enum_value::<pb::FindingKind>(r.kind, "FindingKind"))
                .transpose()?,
            state: None,
            since: None,
        })
    }

    pub fn admits(&self, f: &pb::Finding) -> bool {
        let matches = |want: &str, have: &str| want.is_empty() || want == have;
        let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
        let since = self.since.map(|s| {
            let d = s.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos() as i32,
            )
        });
        matches(&self.namespace, &f.namespace)
            && matches(&self.domain, &f.domain)
            && matches(&self.pod, &f.pod)
            && matches(&self.node, &f.node)
            && f.severity >= self.min_severity
            // A finding from before kinds is a node finding.
            && self.kind.is_none_or(|k| {
                k == f.kind
                    || (k == pb::FindingKind::NodePeers as i32
                        && f.kind == pb::FindingKind::Unspecified as i32)
            })
            && self.state.is_none_or(|s| s == f.state)
            && since.is_none_or(|since| {
                time(&f.opened).is_some_and(|t| t >= since)
                    || time(&f.closed).is_some_and(|t| t >= since)
            })
    }
}

/// Where a page ends: after the finding opened at `seconds.nanos` with `id`, newest first.
fn cursor(f: &pb::Finding) -> (i64, i32, String) {
    let (seconds, nanos) = f.opened.as_ref().map_or((0, 0), |t| (t.seconds, t.nanos));
    (seconds, nanos, f.id.clone())
}

fn page_token(f: &pb::Finding) -> String {
    let (seconds, nanos, id) = cursor(f);
    format!("{seconds}.{nanos}.{id}")
}

fn parse_page_token(token: &str) -> Result<Option<(i64, i32, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad =
        || Status::invalid_argument(format!("page_token `{token}` is not one this server gave"));
    let mut parts = token.splitn(3, '.');
    let seconds = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let nanos = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let id = parts.next().ok_or_else(bad)?.to_owned();
    Ok(Some((seconds, nanos, id)))
}

/// Sorts newest opening first, the order pages follow.
pub fn newest_first(findings: &mut [pb::Finding]) {
    findings.sort_by_key(|f| std::cmp::Reverse(cursor(f)));
}

/// `ListFindings` over every finding a server holds, in any order.
pub fn list(
    mut findings: Vec<pb::Finding>,
    r: &pb::ListFindingsRequest,
) -> Result<pb::ListFindingsResponse, Status> {
    newest_first(&mut findings);
    page(&findings, r)
}

/// One page of `findings` (newest first) for `r`.
pub fn page(
    findings: &[pb::Finding],
    r: &pb::ListFindingsRequest,
) -> Result<pb::ListFindingsResponse, Status> {
    let size = match r.page_size {
        0 => DEFAULT_PAGE,
        n if n > MAX_PAGE => {
            return Err(Status::invalid_argument(format!(
                "page_size {n} is over the limit of {MAX_PAGE}; follow next_page_token for more"
            )));
        }
        n => n,
    } as usize;
    let filter = FindingFilter::list(r)?;
    let after = parse_page_token(&r.page_token)?;
    let mut selected = findings
        .iter()
        .filter(|f| after.as_ref().is_none_or(|after| cursor(f) < *after))
        .filter(|f| filter.admits(f));
    let page: Vec<pb::Finding> = selected.by_ref().take(size).cloned().collect();
    let next_page_token = match (page.last(), selected.next()) {
        (Some(last), Some(_)) => page_token(last),
        _ => String::new(),
    };
    Ok(pb::ListFindingsResponse {
        findings: page,
        next_page_token,
    })
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::FindingEvent, Status>> + Send>>;

/// The open findings as `EXISTING`, then every change from `changes`, filtered. A watcher
/// that falls behind the channel's capacity is ended with `RESOURCE_EXHAUSTED`, and when the
/// sender goes the stream ends with `UNAVAILABLE`.
pub fn watch(
    open: Vec<pb::Finding>,
    changes: broadcast::Receiver<Arc<pb::FindingEvent>>,
    filter: FindingFilter,
) -> WatchStream {
    let existing: Vec<Result<pb::FindingEvent, Status>> = open
        .into_iter()
        .filter(|f| filter.admits(f))
        .map(|f| {
            Ok(pb::FindingEvent {
                kind: pb::FindingEventKind::Existing.into(),
                finding: Some(f),
            })
        })
        .collect();
    let live = stream::unfold(Some((changes, filter)), |watch| async move {
        let (mut changes, filter) = watch?;
        loop {
            match changes.recv().await {
                Ok(event) if event.finding.as_ref().is_some_and(|f| filter.admits(f)) => {
                    return Some((Ok((*event).clone()), Some((changes, filter))));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "dropped a finding watcher that fell behind");
                    let status = Status::resource_exhausted(format!(
                        "this watch fell {missed} changes behind and was dropped, so that the \
                         server does not wait for it; watch again for the open findings and \
                         what follows"
                    ));
                    return Some((Err(status), None));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Some((Err(Status::unavailable("the server is stopping")), None));
                }
            }
        }
    });
    Box::pin(stream::iter(existing).chain(live))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, opened: i64, namespace: &str, kind: pb::FindingKind) -> pb::Finding {
        pb::Finding {
            id: id.into(),
            namespace: namespace.into(),
            opened: Some(prost_types::Timestamp {
                seconds: opened,
                nanos: 0,
            }),
            kind: kind.into(),
            severity: pb::Severity::Warning.into(),
            state: pb::FindingState::Open.into(),
            ..Default::default()
        }
    }

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let mut all: Vec<pb::Finding> = (0..25)
            .map(|i| {
                finding(
                    &format!("f{i:02}"),
                    i / 2,
                    "shop",
                    pb::FindingKind::NodePeers,
                )
            })
            .collect();
        newest_first(&mut all);
        let mut request = pb::ListFindingsRequest {
            page_size: 10,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = page(&all, &request).unwrap();
            seen.extend(page.findings.into_iter().map(|f| f.id));
            if page.next_page_token.is_empty() {
                break;
            }
            request.page_token = page.next_page_token;
        }
        let expected: Vec<String> = all.iter().map(|f| f.id.clone()).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn filters_and_limits() {
        let all = vec![
            finding("a", 1, "shop", pb::FindingKind::NodePeers),
            finding("b", 2, "data", pb::FindingKind::ClusterReplica),
            finding("c", 3, "shop", pb::FindingKind::Unspecified),
        ];
        let ids = |r: pb::ListFindingsRequest| -> Vec<String> {
            page(&all, &r)
                .unwrap()
                .findings
                .into_iter()
                .map(|f| f.id)
                .collect()
        };
        assert_eq!(
            ids(pb::ListFindingsRequest {
                namespace: "shop".into(),
                ..Default::default()
            }),
            ["a", "c"]
        );
        assert_eq!(
            ids(pb::ListFindingsRequest {
                kind: pb::FindingKind::NodePeers.into(),
                ..Default::default()
            }),
            ["a", "c"],
            "a finding from before kinds is a node finding"
        );
        let huge = page(
            &all,
            &pb::ListFindingsRequest {
                page_size: 1_000_000,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(huge.code(), tonic::Code::InvalidArgument);
        let bad = page(
            &all,
            &pb::ListFindingsRequest {
                page_token: "nonsense".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        let bad_kind = page(
            &all,
            &pb::ListFindingsRequest {
                kind: 99,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(bad_kind.message().contains("FindingKind"));
    }
}
