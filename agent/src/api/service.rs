//! `herd.v1.NodeService` over the shared node state. Requests are checked before anything is
//! looked up, and every refusal says what was wrong in its status message.

use std::{pin::Pin, sync::Arc, time::SystemTime};

use futures_util::{Stream, StreamExt as _, stream};
use herd_proto::herd::v1::{self as pb, node_service_server::NodeService};
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use crate::{
    api::{
        convert,
        findings_log::{FindingChange, FindingRecord},
        state::{ContainerView, SharedState},
    },
    detect::Severity,
};

/// Most findings in one page of `ListFindings`.
pub const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;
const DEFAULT_EXPLAIN_WINDOWS: u32 = 10;

pub struct NodeApi {
    state: SharedState,
}

impl NodeApi {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

/// What `ListFindings` and `WatchFindings` let through.
struct FindingFilter {
    namespace: String,
    domain: String,
    pod: String,
    min_severity: Option<Severity>,
    node: String,
    /// A kind other than the node's own (`NODE_PEERS`) matches nothing here.
    other_kind: bool,
}

impl FindingFilter {
    fn new(
        namespace: String,
        domain: String,
        pod: String,
        severity: i32,
        node: String,
        kind: i32,
    ) -> Result<Self, Status> {
        let other_kind = match pb::FindingKind::try_from(kind) {
            Ok(pb::FindingKind::Unspecified | pb::FindingKind::NodePeers) => false,
            Ok(_) => true,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "kind {kind} is not a herd.v1.FindingKind"
                )));
            }
        };
        let min_severity = match pb::Severity::try_from(severity) {
            Ok(pb::Severity::Unspecified) => None,
            Ok(pb::Severity::Warning) => Some(Severity::Warning),
            Ok(pb::Severity::Critical) => Some(Severity::Critical),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "min_severity {severity} is not a herd.v1.Severity"
                )));
            }
        };
        Ok(Self {
            namespace,
            domain,
            pod,
            min_severity,
            node,
            other_kind,
        })
    }

    fn admits(&self, record: &FindingRecord) -> bool {
        let s = &record.finding.subject;
        let matches = |want: &str, have: Option<&str>| want.is_empty() || have == Some(want);
        !self.other_kind
            && matches(&self.node, Some(&s.node))
            && matches(&self.namespace, s.namespace.as_deref())
            && matches(&self.domain, Some(&s.domain))
            && matches(&self.pod, s.pod.as_deref())
            && self
                .min_severity
                .is_none_or(|min| record.finding.severity >= min)
    }
}

/// Where the next page starts: after the finding opened at `opened_nanos` with `id`, in the
/// order newest first.
fn page_token(record: &FindingRecord) -> String {
    let nanos = record
        .finding
        .opened
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos}.{}", record.finding.id)
}

fn parse_page_token(token: &str) -> Result<Option<(u128, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad =
        || Status::invalid_argument(format!("page_token `{token}` is not one this agent gave"));
    let (nanos, id) = token.split_once('.').ok_or_else(bad)?;
    Ok(Some((nanos.parse().map_err(|_| bad())?, id.to_owned())))
}

fn opened_nanos(record: &FindingRecord) -> u128 {
    record
        .finding
        .opened
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::FindingEvent, Status>> + Send>>;

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn get_info(
        &self,
        _: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::GetInfoResponse>, Status> {
        let state = self.state.lock();
        Ok(Response::new(convert::info(
            &state.facts,
            &state.runtime,
            state.containers.len(),
            state.findings.open().count(),
            state.windows,
            state.history.capacity(),
        )))
    }

    async fn list_containers(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let r = request.into_inner();
        let state = self.state.lock();
        let now = SystemTime::now();
        let matches = |want: &str, have: Option<&str>| want.is_empty() || have == Some(want);
        let containers = state
            .containers
            .iter()
            .filter(|c| {
                matches(&r.namespace, c.namespace.as_deref())
                    && matches(&r.domain, Some(&c.domain))
                    && matches(&r.pod, c.pod.as_deref())
            })
            .map(|c| convert::container(c, &state.facts, now))
            .collect();
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn list_findings(
        &self,
        request: Request<pb::ListFindingsRequest>,
    ) -> Result<Response<pb::ListFindingsResponse>, Status> {
        let r = request.into_inner();
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(Status::invalid_argument(format!(
                    "page_size {n} is over the limit of {MAX_PAGE}; follow next_page_token \
                     for more"
                )));
            }
            n => n,
        } as usize;
        let filter =
            FindingFilter::new(r.namespace, r.domain, r.pod, r.min_severity, r.node, r.kind)?;
        let state_filter = pb::FindingState::try_from(r.state).map_err(|_| {
            Status::invalid_argument(format!("state {} is not a herd.v1.FindingState", r.state))
        })?;
        let since = r
            .since
            .as_ref()
            .map(|t| {
                convert::from_timestamp(t)
                    .ok_or_else(|| Status::invalid_argument("since is not a valid time after 1970"))
            })
            .transpose()?;
        let after = parse_page_token(&r.page_token)?;

        let state = self.state.lock();
        let mut selected = state.findings.all().into_iter().filter(|record| {
            let f = &record.finding;
            let state_ok = match state_filter {
                pb::FindingState::Unspecified => true,
                pb::FindingState::Open => f.closed.is_none(),
                pb::FindingState::Closed => f.closed.is_some(),
            };
            let since_ok = since.is_none_or(|since| {
                f.opened >= since || f.closed.is_some_and(|closed| closed >= since)
            });
            let after_ok = after.as_ref().is_none_or(|(nanos, id)| {
                (opened_nanos(record), &record.finding.id) < (*nanos, id)
            });
            state_ok && since_ok && after_ok && filter.admits(record)
        });
        let page: Vec<&FindingRecord> = selected.by_ref().take(page_size).collect();
        let next_page_token = match (page.last(), selected.next()) {
            (Some(last), Some(_)) => page_token(last),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListFindingsResponse {
            findings: page.into_iter().map(convert::finding).collect(),
            next_page_token,
        }))
    }

    type WatchFindingsStream = WatchStream;

    async fn watch_findings(
        &self,
        request: Request<pb::WatchFindingsRequest>,
    ) -> Result<Response<Self::WatchFindingsStream>, Status> {
        let peer = request.remote_addr();
        let r = request.into_inner();
        let filter =
            FindingFilter::new(r.namespace, r.domain, r.pod, r.min_severity, r.node, r.kind)?;
        let (open, changes) = self.state.lock().findings.watch();
        debug!(?peer, open = open.len(), "a watch began");
        let existing: Vec<Result<pb::FindingEvent, Status>> = open
            .into_iter()
            .filter(|record| filter.admits(record))
            .map(|record| {
                Ok(pb::FindingEvent {
                    kind: pb::FindingEventKind::Existing.into(),
                    finding: Some(convert::finding(&record)),
                })
            })
            .collect();
        let live = stream::unfold(Some((changes, filter)), |watch| async move {
            let (mut changes, filter) = watch?;
            loop {
                match changes.recv().await {
                    Ok(change) if filter.admits(&change.record) => {
                        return Some((Ok(event(&change)), Some((changes, filter))));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        info!(missed, "dropped a finding watcher that fell behind");
                        let status = Status::resource_exhausted(format!(
                            "this watch fell {missed} changes behind and was dropped, so that \
                             the agent does not wait for it; watch again for the open findings \
                             and what follows"
                        ));
                        return Some((Err(status), None));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Some((Err(Status::unavailable("the agent is stopping")), None));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream::iter(existing).chain(live))))
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let r = request.into_inner();
        let state = self.state.lock();
        let capacity = state.history.capacity();
        let windows = match r.windows {
            0 => DEFAULT_EXPLAIN_WINDOWS.min(u32::try_from(capacity).unwrap_or(u32::MAX)),
            n if n as usize > capacity => {
                return Err(Status::invalid_argument(format!(
                    "windows {n} is more than the {capacity} this agent keeps"
                )));
            }
            n => n,
        } as usize;
        let container = find_container(&state.containers, &r, &state.facts.node)?;
        let features = &state.facts.features;
        let history = state.history.explain(&container.id, windows);
        let findings = state
            .findings
            .all()
            .into_iter()
            .filter(|record| record.finding.subject.entity == container.id)
            .map(convert::finding)
            .collect();
        Ok(Response::new(pb::ExplainResponse {
            container: Some(convert::container(
                container,
                &state.facts,
                SystemTime::now(),
            )),
            windows: history
                .iter()
                .map(|w| convert::explained_window(w, features))
                .collect(),
            findings,
            threshold: state.facts.threshold,
        }))
    }

    async fn get_domain(
        &self,
        request: Request<pb::GetDomainRequest>,
    ) -> Result<Response<pb::GetDomainResponse>, Status> {
        let r = request.into_inner();
        if r.domain.is_empty() {
            return Err(Status::invalid_argument(
                "name a domain; `herd containers` shows each container's",
            ));
        }
        let state = self.state.lock();
        let now = SystemTime::now();
        let members: Vec<pb::Container> = state
            .containers
            .iter()
            .filter(|c| c.domain == r.domain)
            .map(|c| convert::container(c, &state.facts, now))
            .collect();
        let latest = state.domains.get(&r.domain);
        if members.is_empty() && latest.is_none() {
            return Err(Status::not_found(format!(
                "no domain `{}` on node {}; `herd containers` shows each container's",
                r.domain, state.facts.node
            )));
        }
        let features = latest
            .map(|(_, stats)| {
                stats
                    .features
                    .iter()
                    .zip(&state.facts.features)
                    .filter_map(|(s, name)| s.as_ref().map(|s| convert::feature_stats(name, s)))
                    .collect()
            })
            .unwrap_or_default();
        let findings = state
            .findings
            .open()
            .filter(|record| record.finding.subject.domain == r.domain)
            .map(convert::finding)
            .collect();
        Ok(Response::new(pb::GetDomainResponse {
            domain: r.domain.clone(),
            members,
            at: latest.map(|(at, _)| convert::timestamp(*at)),
            features,
            findings,
        }))
    }
}

fn event(change: &Arc<FindingChange>) -> pb::FindingEvent {
    pb::FindingEvent {
        kind: convert::change_kind(change.kind).into(),
        finding: Some(convert::finding(&change.record)),
    }
}

/// The one container an `Explain` request names.
fn find_container<'a>(
    containers: &'a [ContainerView],
    r: &pb::ExplainRequest,
    node: &str,
) -> Result<&'a ContainerView, Status> {
    let candidates: Vec<&ContainerView> = if !r.container_id.is_empty() {
        containers
            .iter()
            .filter(|c| c.id.starts_with(&r.container_id))
            .collect()
    } else if !r.pod.is_empty() {
        containers
            .iter()
            .filter(|c| c.pod.as_deref() == Some(r.pod.as_str()))
            .filter(|c| r.namespace.is_empty() || c.namespace.as_deref() == Some(&r.namespace))
            .filter(|c| r.container.is_empty() || c.name.as_deref() == Some(&r.container))
            .collect()
    } else {
        return Err(Status::invalid_argument(
            "name a pod or a container id to explain",
        ));
    };
    let what = if r.container_id.is_empty() {
        format!("pod {}", r.pod)
    } else {
        format!("container id {}", r.container_id)
    };
    match candidates.as_slice() {
        [] => Err(Status::not_found(format!(
            "no container of {what} on node {node}; `herd containers` lists them"
        ))),
        [one] => Ok(one),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|c| {
                    format!(
                        "{}/{}/{} ({})",
                        c.namespace.as_deref().unwrap_or("-"),
                        c.pod.as_deref().unwrap_or("-"),
                        c.name.as_deref().unwrap_or("-"),
                        &c.id[..c.id.len().min(12)]
                    )
                })
                .collect();
            Err(Status::failed_precondition(format!(
                "{what} names {} containers: {}; pick one with namespace, container or a \
                 longer id",
                many.len(),
                names.join(", ")
            )))
        }
    }
}
