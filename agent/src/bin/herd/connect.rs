//! Where the agent or the aggregator listens (`--server`) and the channel to it: a unix
//! socket, TCP with TLS (`https://`, mutual TLS with `--cert` and `--key`), or plain TCP.

use std::{error::Error as _, fmt, io, path::PathBuf, str::FromStr, time::Duration};

use herd_agent::error_chain::{caused_by, error_chain};
use herd_proto::tls::{CLIENT_FLAGS, TlsError, TlsFiles};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The agent's own socket, where `herd-agent` serves unless told otherwise.
pub const DEFAULT_SERVER: &str = "unix:///run/herd/agent.sock";

/// A server address as `--server` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    /// `unix:///path`, `unix:path` or a bare path.
    Unix(PathBuf),
    /// `http://host:port`: plain text.
    Http(String),
    /// `https://host:port`, with the CA that signed the server's certificate and this
    /// client's own certificate (`--ca`, `--cert`, `--key`).
    Https { uri: String, tls: Box<TlsFiles> },
}

impl Server {
    /// The server with the TLS files that `https://` uses; other addresses need none.
    pub fn with_tls(self, files: TlsFiles) -> Self {
        match self {
            Self::Https { uri, .. } => Self::Https {
                uri,
                tls: Box::new(files),
            },
            other => other,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the server address is empty")]
    Empty,
    #[error(
        "unsupported scheme {0}://: use unix:///PATH, a path, https://HOST:PORT or http://HOST:PORT"
    )]
    Scheme(String),
    #[error("{0} has no host: use https://HOST:PORT or http://HOST:PORT")]
    NoHost(String),
}

impl FromStr for Server {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        // gRPC's own naming: `unix:///absolute` and `unix:relative` are both unix sockets.
        if let Some(path) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            return if path.is_empty() {
                Err(ParseError::Empty)
            } else {
                Ok(Self::Unix(PathBuf::from(path)))
            };
        }
        match s.split_once("://") {
            None => Ok(Self::Unix(PathBuf::from(s))),
            Some(("http" | "https", "")) => Err(ParseError::NoHost(s.to_owned())),
            Some(("http", _)) => Ok(Self::Http(s.trim_end_matches('/').to_owned())),
            Some(("https", _)) => Ok(Self::Https {
                uri: s.trim_end_matches('/').to_owned(),
                tls: Box::default(),
            }),
            Some((scheme, _)) => Err(ParseError::Scheme(scheme.to_owned())),
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Http(uri) | Self::Https { uri, .. } => f.write_str(uri),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no agent at {0}: is herd-agent running?")]
    NoAgent(Server),
    #[error("cannot open {0}: permission denied (the socket is root only)")]
    PermissionDenied(Server),
    #[error("cannot connect to {server}: {cause}")]
    Socket { server: Server, cause: String },
    #[error("no server at {server}: {cause}")]
    NoServer { server: Server, cause: String },
    #[error(
        "{0} is https: pass --ca (HERD_CA) with the CA certificate that signed the server's, \
         and --cert and --key (HERD_CERT, HERD_KEY) where the server asks for a client \
         certificate"
    )]
    NoCa(Server),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{server} refused the TLS handshake: {cause}")]
    Handshake { server: Server, cause: String },
    #[error("{server} closed the connection ({cause}): {hint}")]
    Refused {
        server: Server,
        cause: String,
        hint: &'static str,
    },
}

/// Long enough for a loaded node, short enough that a wrong address is not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Dials `server` once, so that a missing agent is reported before any request is made.
/// The channel carries either service: the server says which it has by answering.
pub async fn connect(server: &Server) -> Result<Channel, ConnectError> {
    Ok(match server {
        Server::Unix(path) => herd_proto::uds::connect(path).await.map_err(|err| {
            if caused_by(&err, io::ErrorKind::NotFound)
                || caused_by(&err, io::ErrorKind::ConnectionRefused)
            {
                ConnectError::NoAgent(server.clone())
            } else if caused_by(&err, io::ErrorKind::PermissionDenied) {
                ConnectError::PermissionDenied(server.clone())
            } else {
                ConnectError::Socket {
                    server: server.clone(),
                    cause: root_cause(&err),
                }
            }
        })?,
        Server::Http(uri) => {
            let no_server = |err: tonic::transport::Error| ConnectError::NoServer {
                server: server.clone(),
                cause: root_cause(&err),
            };
            let channel = Endpoint::from_shared(uri.clone())
                .map_err(no_server)?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect()
                .await
                .map_err(no_server)?;
            refused_or(server, channel).await?
        }
        Server::Https { uri, tls } => {
            let config = tls
                .client(CLIENT_FLAGS)?
                .ok_or_else(|| ConnectError::NoCa(server.clone()))?;
            let failed = |err: tonic::transport::Error| {
                let cause = root_cause(&err);
                if herd_proto::tls::is_handshake_failure(&err) {
                    ConnectError::Handshake {
                        server: server.clone(),
                        cause,
                    }
                } else {
                    ConnectError::NoServer {
                        server: server.clone(),
                        cause,
                    }
                }
            };
            let channel = Endpoint::from_shared(uri.clone())
                .map_err(failed)?
                .tls_config(config)
                .map_err(failed)?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect()
                .await
                .map_err(failed)?;
            refused_or(server, channel).await?
        }
    })
}

/// The channel, once the server has answered over it. With TLS 1.3 the client's side of the
/// handshake ends before the server has judged the client's certificate: a server that
/// refuses it closes the connection on the first call. So does a TLS server spoken to in
/// plain text. One health check finds that out here, where it can be said plainly, instead
/// of as a cancelled command.
async fn refused_or(server: &Server, channel: Channel) -> Result<Channel, ConnectError> {
    let answer = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await;
    match answer {
        // A status the server sent itself, even an error, means it took this client.
        Err(status) => match status.source() {
            Some(cause) => Err(ConnectError::Refused {
                server: server.clone(),
                cause: error_chain(cause),
                hint: match server {
                    Server::Https { tls, .. } if tls.cert.is_some() => {
                        "it takes only client certificates signed by its CA, and --cert is not"
                    }
                    Server::Https { .. } => {
                        "it asks for a client certificate signed by its CA: pass --cert and --key"
                    }
                    _ => "if it serves TLS, use https:// with --ca, --cert and --key",
                },
            }),
            None => Ok(channel),
        },
        Ok(_) => Ok(channel),
    }
}

/// The innermost cause: tonic's own text ("transport error") tells a person nothing.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Server, ParseError> {
        s.parse()
    }

    #[test]
    fn unix_addresses_and_bare_paths_are_sockets() {
        let agent = Server::Unix(PathBuf::from("/run/herd/agent.sock"));
        assert_eq!(parse(DEFAULT_SERVER), Ok(agent.clone()));
        assert_eq!(parse("/run/herd/agent.sock"), Ok(agent.clone()));
        assert_eq!(parse("unix:/run/herd/agent.sock"), Ok(agent));
        assert_eq!(
            parse("unix:agent.sock"),
            Ok(Server::Unix(PathBuf::from("agent.sock")))
        );
        assert_eq!(
            parse("./agent.sock"),
            Ok(Server::Unix(PathBuf::from("./agent.sock")))
        );
    }

    #[test]
    fn http_and_https_addresses_are_tcp() {
        assert_eq!(
            parse("http://10.0.0.7:9443/"),
            Ok(Server::Http("http://10.0.0.7:9443".to_owned()))
        );
        assert_eq!(
            parse("https://aggregator:7700/"),
            Ok(Server::Https {
                uri: "https://aggregator:7700".to_owned(),
                tls: Box::default(),
            })
        );
    }

    #[test]
    fn what_cannot_be_dialled_is_refused_with_a_reason() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("unix://"), Err(ParseError::Empty));
        assert_eq!(
            parse("http://"),
            Err(ParseError::NoHost("http://".to_owned()))
        );
        assert_eq!(
            parse("https://"),
            Err(ParseError::NoHost("https://".to_owned()))
        );
        assert_eq!(
            parse("grpc://node-1:9443"),
            Err(ParseError::Scheme("grpc".to_owned()))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn https_without_a_ca_says_which_flags_to_pass() {
        let server = parse("https://127.0.0.1:9").unwrap();
        let err = connect(&server).await.unwrap_err().to_string();
        assert!(
            err.starts_with("https://127.0.0.1:9 is https: pass --ca (HERD_CA)"),
            "{err}"
        );
        let half = server.with_tls(TlsFiles {
            cert: Some("me.crt".into()),
            ca: Some("ca.crt".into()),
            ..TlsFiles::default()
        });
        let err = connect(&half).await.unwrap_err().to_string();
        assert_eq!(
            err,
            "--cert and --ca given without --key: TLS needs --cert, --key"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_socket_nobody_listens_on_means_no_agent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let missing = Server::Unix(path.clone());
        let err = connect(&missing).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no agent at {}: is herd-agent running?", path.display())
        );

        // A socket file left behind by an agent that died refuses connections.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = connect(&missing).await.unwrap_err();
        assert!(matches!(err, ConnectError::NoAgent(_)), "{err}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_tcp_port_names_the_server_and_the_cause() {
        // Bound then dropped: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Server::Http(format!("http://127.0.0.1:{port}"));
        let err = connect(&server).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("no server at http://127.0.0.1:{port}: ")),
            "{err}"
        );
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }
}
