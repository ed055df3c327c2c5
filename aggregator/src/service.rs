//! The aggregator's two services: `AggregatorService` takes the agents' summaries,
//! `ClusterService` answers for the whole cluster.

use std::time::SystemTime;

use herd_proto::{
    herd::v1::{
        self as pb, aggregator_service_server::AggregatorService,
        cluster_service_server::ClusterService,
    },
    query::{self, FindingFilter},
};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::{cluster::SharedAggregator, identities::StreamIdentities};

/// Largest summary taken: a node of 2,000 containers with every feature fits well inside.
pub const MAX_SUMMARY_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct ClusterApi {
    aggregator: SharedAggregator,
}

impl ClusterApi {
    pub fn new(aggregator: SharedAggregator) -> Self {
        Self { aggregator }
    }
}

#[tonic::async_trait]
impl AggregatorService for ClusterApi {
    async fn push_summaries(
        &self,
        request: Request<Streaming<pb::NodeSummary>>,
    ) -> Result<Response<pb::PushSummariesResponse>, Status> {
        let peer = request.remote_addr();
        let mut summaries = request.into_inner();
        let mut received = 0u64;
        let mut node = String::new();
        // The identities this stream carried: a new stream starts with none.
        let mut identities = StreamIdentities::default();
        while let Some(summary) = summaries.message().await? {
            if node != summary.node {
                node.clone_from(&summary.node);
                info!(%node, ?peer, "a node reports");
            }
            if let Err(err) =
                self.aggregator
                    .ingest_from(&mut identities, summary, SystemTime::now())
            {
                warn!(%err, ?peer, "refused a summary");
                return Err(Status::invalid_argument(err.to_string()));
            }
            received += 1;
        }
        debug!(%node, received, "a node's stream ended");
        Ok(Response::new(pb::PushSummariesResponse { received }))
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn list_findings(
        &self,
        request: Request<pb::ListFindingsRequest>,
    ) -> Result<Response<pb::ListFindingsResponse>, Status> {
        let r = request.into_inner();
        let findings: Vec<pb::Finding> = (self.aggregator.lock().findings().all())
            .into_iter()
            .cloned()
            .collect();
        Ok(Response::new(query::list(findings, &r)?))
    }

    type WatchFindingsStream = query::WatchStream;

    async fn watch_findings(
        &self,
        request: Request<pb::WatchFindingsRequest>,
    ) -> Result<Response<Self::WatchFindingsStream>, Status> {
        let filter = FindingFilter::watch(request.get_ref())?;
        let (open, changes) = self.aggregator.lock().findings().watch();
        Ok(Response::new(query::watch(open, changes, filter)))
    }

    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        Ok(Response::new(pb::ListNodesResponse {
            nodes: self.aggregator.lock().nodes(),
        }))
    }

    async fn get_domain(
        &self,
        request: Request<pb::GetDomainRequest>,
    ) -> Result<Response<pb::GetClusterDomainResponse>, Status> {
        let name = request.into_inner().domain;
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "name a domain; `herd containers` shows each container's",
            ));
        }
        self.aggregator
            .lock()
            .domain(&name)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no node reports domain `{name}`")))
    }
}
