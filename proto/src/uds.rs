//! gRPC channels over unix sockets: how container runtimes serve CRI.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects a channel to the gRPC server listening on the unix socket at `path`.
///
/// The socket is dialled once here, so a missing or dead socket fails now instead of on the
/// first call.
pub async fn connect(path: impl AsRef<Path>) -> Result<Channel, tonic::transport::Error> {
    // The URI is required by the API and ignored by the connector.
    connect_endpoint(Endpoint::from_static("http://localhost"), path).await
}

/// [`connect`] with the caller's endpoint settings (windows, timeouts, …).
pub async fn connect_endpoint(
    endpoint: Endpoint,
    path: impl AsRef<Path>,
) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.as_ref().to_owned();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
}
