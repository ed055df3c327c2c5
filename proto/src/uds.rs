//! gRPC channels over unix sockets: how container runtimes serve CRI.

use std::{
    io,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
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

/// Why a server socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another process serves {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A fresh server socket at `path`, mode 0600 from the start: the umask is narrowed around
/// the bind so that the socket is never open to others, even for an instant; the file mode
/// is the access control. A socket left by a server that did not stop cleanly is replaced; a
/// live one is not.
pub async fn bind(path: &Path) -> Result<UnixListener, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(BindError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => return Err(BindError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // SAFETY: umask only swaps the process's file-creation mask; restored right after.
    let previous = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
