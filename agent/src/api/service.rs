//! `herd.v1.NodeService` over the shared node state. Requests are checked before anything is
//! looked up, and every refusal says what was wrong in its status message.

use std::time::SystemTime;

use herd_proto::{
    herd::v1::{self as pb, node_service_server::NodeService},
    query::{self, FindingFilter},
};
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::api::{
    convert,
    state::{ContainerView, SharedState},
};

pub use herd_proto::query::MAX_PAGE;
const DEFAULT_EXPLAIN_WINDOWS: u32 = 10;

pub struct NodeApi {
    state: SharedState,
}

impl NodeApi {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

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
        let findings: Vec<pb::Finding> = (self.state.lock().findings.all())
            .into_iter()
            .map(convert::finding)
            .collect();
        Ok(Response::new(query::list(findings, &r)?))
    }

    type WatchFindingsStream = query::WatchStream;

    async fn watch_findings(
        &self,
        request: Request<pb::WatchFindingsRequest>,
    ) -> Result<Response<Self::WatchFindingsStream>, Status> {
        let filter = FindingFilter::watch(request.get_ref())?;
        let (open, changes) = self.state.lock().findings.watch();
        debug!(open = open.len(), "a watch began");
        Ok(Response::new(query::watch(open, changes, filter)))
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
                        c.id.get(..12).unwrap_or(&c.id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::SystemTime;

    fn view(id: &str) -> ContainerView {
        ContainerView {
            id: id.to_owned(),
            pod: Some("web-1".into()),
            namespace: Some("shop".into()),
            pod_uid: None,
            name: Some("app".into()),
            image: None,
            domain: "shop/Deployment/web/app".into(),
            cgroup: PathBuf::from("/"),
            started: SystemTime::UNIX_EPOCH,
            score: None,
            flagged: false,
        }
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates_even_when_ids_are_not_ascii() {
        // A runtime's ids are hex, but nothing forces it: a multibyte character across the
        // twelfth byte must not panic the API.
        let containers = [view("abcdefghijkéxyz"), view("abcdefghijkéuvw")];
        let request = pb::ExplainRequest {
            container_id: "abc".into(),
            ..Default::default()
        };
        let err = find_container(&containers, &request, "node-a").unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message().contains("names 2 containers"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("abcdefghijkéxyz"),
            "{}",
            err.message()
        );
    }
}
