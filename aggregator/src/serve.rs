//! Where the aggregator listens: a root-only unix socket and, when asked for, TCP with
//! mutual TLS (plain text only with `--insecure`); health and reflection beside its services.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use herd_proto::{
    herd::v1::{
        FILE_DESCRIPTOR_SET, aggregator_service_server::AggregatorServiceServer,
        cluster_service_server::ClusterServiceServer,
    },
    rate::QueryLimit,
    tls::TcpListen,
};
use thiserror::Error;
use tokio::{sync::watch, task::JoinHandle};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Server, server::Router},
};
use tracing::{info, warn};

use crate::service::{ClusterApi, MAX_SUMMARY_BYTES};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot serve on the socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: herd_proto::uds::BindError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the reflection service cannot read herd.v1's descriptor set: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the TLS settings for {addr} cannot be used")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The aggregator's services with health and reflection, as one router; `queries` limits
/// the rate of `ClusterService` calls.
pub fn router(api: &ClusterApi, queries: &QueryLimit) -> Result<Router, ServeError> {
    routed(Server::builder(), api, queries)
}

fn routed(server: Server, api: &ClusterApi, queries: &QueryLimit) -> Result<Router, ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        health
            .set_serving::<ClusterServiceServer<ClusterApi>>()
            .await;
        health
            .set_serving::<AggregatorServiceServer<ClusterApi>>()
            .await;
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcurl speaks v1; Python's grpcio-reflection and older tools v1alpha.
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok(server
        .max_concurrent_streams(MAX_STREAMS)
        .concurrency_limit_per_connection(MAX_STREAMS as usize)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            AggregatorServiceServer::new(api.clone()).max_decoding_message_size(MAX_SUMMARY_BYTES),
        )
        // Queries go through the rate limit; the agents' summaries and health checks do not,
        // so that a flood of queries starves neither.
        .add_service(InterceptedService::new(
            ClusterServiceServer::new(api.clone()).max_decoding_message_size(MAX_QUERY_BYTES),
            queries.clone(),
        )))
}

/// Largest query decoded: the cluster's requests are a few filters, as the agent's are.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Concurrent streams (and calls in progress) per connection: an agent's connection carries
/// one summary stream, a client's a few watches.
pub const MAX_STREAMS: u32 = 64;

pub struct Listeners {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    socket: Option<PathBuf>,
}

impl Listeners {
    pub async fn start(
        api: &ClusterApi,
        socket: Option<PathBuf>,
        listen: Option<TcpListen>,
        queries: &QueryLimit,
    ) -> Result<Self, ServeError> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(path) = &socket {
            let listener =
                herd_proto::uds::bind(path)
                    .await
                    .map_err(|source| ServeError::Socket {
                        path: path.clone(),
                        source,
                    })?;
            info!(socket = %path.display(), "serving herd.v1 ClusterService and AggregatorService (root only)");
            let router = router(api, queries)?;
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let incoming = UnixListenerStream::new(listener);
                if let Err(err) = router
                    .serve_with_incoming_shutdown(incoming, wait(stopped))
                    .await
                {
                    warn!(%err, "the unix socket listener stopped");
                }
            }));
        }
        if let Some(TcpListen { addr, transport }) = listen {
            let tls = transport.is_tls();
            let server = transport
                .server()
                .map_err(|source| ServeError::Tls { addr, source })?;
            let router = routed(server, api, queries)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Tcp { addr, source })?;
            let bound = listener.local_addr().unwrap_or(addr);
            if tls {
                info!(
                    %bound,
                    "serving herd.v1 ClusterService and AggregatorService on TCP with mutual \
                     TLS: clients need a certificate from the CA"
                );
            } else {
                warn!(
                    %bound,
                    "serving on TCP in plain text, as --insecure asks: anyone who reaches this \
                     address can push summaries and read the findings"
                );
            }
            tasks.push(tokio::spawn(async move {
                let incoming = TcpListenerStream::new(listener);
                if let Err(err) = router
                    .serve_with_incoming_shutdown(incoming, wait(stopped))
                    .await
                {
                    warn!(%err, "the TCP listener stopped");
                }
            }));
        }
        Ok(Self {
            tasks,
            stop,
            socket,
        })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        if let Some(path) = self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
