//! Where the API listens: a unix socket whose file mode is the access control (0600, root
//! only), and TCP when asked for, with mutual TLS (plain text only with `--insecure`). Health (`grpc.health.v1`) and server reflection are served
//! beside `herd.v1.NodeService`, with limits on message sizes and concurrent streams.

use std::{io, net::SocketAddr, path::PathBuf, time::Duration};

use herd_aggregator::service::ClusterApi;
use herd_proto::{
    herd::v1::{
        FILE_DESCRIPTOR_SET, cluster_service_server::ClusterServiceServer,
        node_service_server::NodeServiceServer,
    },
    rate::QueryLimit,
    tls::TcpListen,
    uds::BindError,
};
use thiserror::Error;
use tokio::{sync::watch, task::JoinHandle};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::{service::interceptor::InterceptedService, transport::Server};
use tracing::{info, warn};

use crate::api::{service::NodeApi, state::SharedState};

/// Largest request the API decodes: its requests are a few filters.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest response it sends: an `Explain` of a full history is well under this.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Concurrent streams per connection (each watch is one).
pub const MAX_STREAMS: u32 = 32;

#[derive(Clone)]
pub struct ApiConfig {
    /// The unix socket; `None` serves no socket.
    pub socket: Option<PathBuf>,
    /// A TCP address to serve on as well, and how.
    pub listen: Option<TcpListen>,
    /// The cluster view of an aggregator running in this process (standalone mode).
    pub cluster: Option<ClusterApi>,
    /// The query rate limit, one bucket for every listener and both views.
    pub queries: QueryLimit,
}

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("another process serves the API socket {0}; is herd-agent running already?")]
    SocketInUse(PathBuf),
    #[error("{0} exists and is not a socket; remove it or pass another --socket")]
    NotASocket(PathBuf),
    #[error("cannot create the API socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
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

/// The running API; dropping it does not stop it, [`ApiServer::stop`] does.
pub struct ApiServer {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

impl ApiServer {
    /// Binds every listener now, so that a bad address fails start-up, and serves in the
    /// background.
    pub async fn start(config: &ApiConfig, state: SharedState) -> Result<Self, ApiError> {
        let (shutdown, stopped) = watch::channel(false);
        let mut server = Self {
            shutdown,
            tasks: Vec::new(),
            socket: None,
        };
        if let Some(path) = &config.socket {
            let listener = herd_proto::uds::bind(path).await.map_err(|err| match err {
                BindError::InUse(path) => ApiError::SocketInUse(path),
                BindError::NotASocket(path) => ApiError::NotASocket(path),
                BindError::Io(source) => ApiError::Socket {
                    path: path.clone(),
                    source,
                },
            })?;
            server.socket = Some(path.clone());
            info!(socket = %path.display(), "serving herd.v1.NodeService on the unix socket (root only)");
            let router = router(Server::builder(), &state, config)?;
            let stopped = stopped.clone();
            server.tasks.push(tokio::spawn(async move {
                let incoming = UnixListenerStream::new(listener);
                if let Err(err) = router
                    .serve_with_incoming_shutdown(incoming, wait(stopped))
                    .await
                {
                    warn!(%err, "the API on the unix socket stopped");
                }
            }));
        }
        if let Some(TcpListen { addr, transport }) = &config.listen {
            let addr = *addr;
            let tls = transport.is_tls();
            let builder = transport
                .clone()
                .server()
                .map_err(|source| ApiError::Tls { addr, source })?;
            let router = router(builder, &state, config)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ApiError::Tcp { addr, source })?;
            let bound = listener.local_addr().unwrap_or(addr);
            if tls {
                info!(
                    %bound,
                    "serving herd.v1.NodeService on TCP with mutual TLS: clients need a \
                     certificate from the CA"
                );
            } else {
                warn!(
                    %bound,
                    "serving herd.v1.NodeService on TCP in plain text, as --insecure asks: \
                     anyone who reaches this address can read the findings"
                );
            }
            server.tasks.push(tokio::spawn(async move {
                let incoming = TcpListenerStream::new(listener);
                if let Err(err) = router
                    .serve_with_incoming_shutdown(incoming, wait(stopped))
                    .await
                {
                    warn!(%err, "the API on TCP stopped");
                }
            }));
        }
        Ok(server)
    }

    /// Ends every stream, waits a moment for the listeners, removes the socket.
    pub async fn stop(self, state: &SharedState) {
        state.lock().findings.close_watches();
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                warn!("the API did not stop within 2 s; leaving it");
            }
        }
        if let Some(path) = self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn router(
    server: Server,
    state: &SharedState,
    config: &ApiConfig,
) -> Result<tonic::transport::server::Router, ApiError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // Queries go through the rate limit; health checks do not, so that a flood of queries
    // never fails the DaemonSet's probes.
    let node = InterceptedService::new(
        NodeServiceServer::new(NodeApi::new(state.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES),
        config.queries.clone(),
    );
    // Serving from the moment the agent listens: its answers are right (if empty) before the
    // first window.
    tokio::spawn(async move {
        health.set_serving::<NodeServiceServer<NodeApi>>().await;
    });
    // grpcurl speaks v1; Python's grpcio-reflection and older tools v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
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
        .add_service(node)
        .add_optional_service(config.cluster.as_ref().map(|api| {
            InterceptedService::new(
                ClusterServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
                config.queries.clone(),
            )
        })))
}
