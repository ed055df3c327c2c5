//! TLS settings for Herd's TCP endpoints, from PEM files (as Kubernetes Secrets mount them).
//!
//! Every file is read and checked here, when a daemon or the CLI starts: a missing file, one
//! that holds no PEM certificate or key, or a key that does not belong to its certificate is
//! an error naming the file and the setting it came from, never a failed handshake later.
//! Servers require a client certificate signed by the CA (mutual TLS); clients verify the
//! server's certificate against the CA and present their own where they have one.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use rustls::{
    RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    sign::CertifiedKey,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

/// A TLS handshake that has not finished by then is dropped: a client that connects and
/// says nothing holds no task for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the settings are spelled where they come from, so that errors name what to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagNames {
    pub cert: &'static str,
    pub key: &'static str,
    pub ca: &'static str,
}

/// The daemons' settings: `herd-agent` and `herd-aggregator`.
pub const DAEMON_FLAGS: FlagNames = FlagNames {
    cert: "--tls-cert",
    key: "--tls-key",
    ca: "--tls-ca",
};

/// The `herd` CLI's settings.
pub const CLIENT_FLAGS: FlagNames = FlagNames {
    cert: "--cert",
    key: "--key",
    ca: "--ca",
};

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {}: no such file", path.display())]
    Missing { flag: &'static str, path: PathBuf },
    #[error("{flag} {}: cannot read it: {source}", path.display())]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{flag} {}: not PEM: no {what} in it ({reason})", path.display())]
    NotPem {
        flag: &'static str,
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{flag} {}: not a usable {what}: {reason}", path.display())]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error(
        "the key {} does not match the certificate {}: it belongs to another certificate",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{given} given without {missing}: TLS needs {needs}")]
    Incomplete {
        given: String,
        missing: String,
        needs: String,
    },
    #[error(
        "{listen} serves TCP, which needs TLS: pass {}, {} and {} (PEM files), or --insecure \
         to serve plain text",
        names.cert, names.key, names.ca
    )]
    NoTls {
        listen: &'static str,
        names: FlagNames,
    },
    #[error(
        "--insecure and {} given together: drop --insecure to serve TLS, or the TLS files to \
         serve plain text",
        names.cert
    )]
    InsecureWithTls { names: FlagNames },
}

/// How a TCP listener serves.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Mutual TLS.
    Tls(Box<ServerTlsConfig>),
    /// Plain text, as `--insecure` asks.
    PlainText,
}

impl Transport {
    /// Whether the listener serves TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// A server builder that serves this way. The TLS settings are taken here, so that a bad
    /// one fails start-up.
    pub fn server(self) -> Result<Server, tonic::transport::Error> {
        match self {
            Self::Tls(tls) => Server::builder().tls_config(*tls),
            Self::PlainText => Ok(Server::builder()),
        }
    }
}

/// A TCP listener: its address and how it serves.
#[derive(Clone, Debug)]
pub struct TcpListen {
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// How the TCP listener set by `listen` serves: TLS from `files`, or plain text when only
/// `insecure` is given. Neither, or both, is an error that says what to pass.
pub fn server_transport(
    listen: &'static str,
    files: &TlsFiles,
    insecure: bool,
    names: FlagNames,
) -> Result<Transport, TlsError> {
    match (files.server(names)?, insecure) {
        (Some(_), true) => Err(TlsError::InsecureWithTls { names }),
        (Some(tls), false) => Ok(Transport::Tls(Box::new(tls))),
        (None, true) => Ok(Transport::PlainText),
        (None, false) => Err(TlsError::NoTls { listen, names }),
    }
}

/// The PEM files behind one endpoint's TLS, as given (any of them may be absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// This side's certificate chain, its own certificate first.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
    /// The CA certificates that sign the peers' certificates.
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is given.
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none() && self.ca.is_none()
    }

    /// A server's TLS: its certificate and key, and client certificates required and
    /// verified against the CA. `None` when no file is given; an error when only some are.
    pub fn server(&self, names: FlagNames) -> Result<Option<ServerTlsConfig>, TlsError> {
        if self.is_empty() {
            return Ok(None);
        }
        let (Some(cert), Some(key), Some(ca)) = (&self.cert, &self.key, &self.ca) else {
            return Err(self.incomplete(names, &[names.cert, names.key, names.ca]));
        };
        install_provider();
        let identity = load_identity(cert, key, names)?;
        let ca = load_ca(ca, names.ca)?;
        Ok(Some(
            ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(ca)
                .client_auth_optional(false)
                .timeout(HANDSHAKE_TIMEOUT),
        ))
    }

    /// A client's TLS: the server's certificate verified against the CA, and this side's
    /// certificate presented when given. `None` when no file is given; an error without the
    /// CA, or with a certificate but no key (or the reverse).
    pub fn client(&self, names: FlagNames) -> Result<Option<ClientTlsConfig>, TlsError> {
        if self.is_empty() {
            return Ok(None);
        }
        let Some(ca) = &self.ca else {
            return Err(self.incomplete(names, &[names.ca]));
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(self.incomplete(names, &[names.cert, names.key])),
        };
        install_provider();
        let mut config = ClientTlsConfig::new()
            .ca_certificate(load_ca(ca, names.ca)?)
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some((cert, key)) = identity {
            config = config.identity(load_identity(cert, key, names)?);
        }
        Ok(Some(config))
    }

    /// A client's TLS that always presents this side's certificate, as a server that
    /// requires one (mutual TLS) needs: all three files, or none (`None`).
    pub fn mutual_client(&self, names: FlagNames) -> Result<Option<ClientTlsConfig>, TlsError> {
        if !self.is_empty() && (self.cert.is_none() || self.key.is_none() || self.ca.is_none()) {
            return Err(self.incomplete(names, &[names.cert, names.key, names.ca]));
        }
        self.client(names)
    }

    /// The error for settings of which `needed` are not all given.
    fn incomplete(&self, names: FlagNames, needed: &[&'static str]) -> TlsError {
        let given: Vec<&str> = [
            (names.cert, self.cert.is_some()),
            (names.key, self.key.is_some()),
            (names.ca, self.ca.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|name| !given.contains(name))
            .collect();
        TlsError::Incomplete {
            given: given.join(" and "),
            missing: missing.join(" and "),
            needs: needed.join(", "),
        }
    }
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            TlsError::Missing {
                flag,
                path: path.to_owned(),
            }
        } else {
            TlsError::Unreadable {
                flag,
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn certificates(
    pem: &[u8],
    path: &Path,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let not_pem = |reason: String| TlsError::NotPem {
        flag,
        path: path.to_owned(),
        what: "certificate",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| not_pem(err.to_string()))?;
    if certs.is_empty() {
        return Err(not_pem("no BEGIN CERTIFICATE section".to_owned()));
    }
    Ok(certs)
}

/// The certificate chain and key, checked to belong together.
fn load_identity(cert: &Path, key: &Path, names: FlagNames) -> Result<Identity, TlsError> {
    let cert_pem = read(cert, names.cert)?;
    let key_pem = read(key, names.key)?;
    let chain = certificates(&cert_pem, cert, names.cert)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::NotPem {
        flag: names.key,
        path: key.to_owned(),
        what: "private key",
        reason: err.to_string(),
    })?;
    let provider = ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(private_key)
        .map_err(|err| TlsError::Invalid {
            flag: names.key,
            path: key.to_owned(),
            what: "private key",
            reason: err.to_string(),
        })?;
    match CertifiedKey::new(chain, signing_key).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            });
        }
        Err(err) => {
            return Err(TlsError::Invalid {
                flag: names.cert,
                path: cert.to_owned(),
                what: "certificate",
                reason: err.to_string(),
            });
        }
    }
    Ok(Identity::from_pem(cert_pem, key_pem))
}

/// The CA bundle, each certificate checked to be one a verifier can anchor on.
fn load_ca(path: &Path, flag: &'static str) -> Result<Certificate, TlsError> {
    let pem = read(path, flag)?;
    let mut roots = RootCertStore::empty();
    for cert in certificates(&pem, path, flag)? {
        roots.add(cert).map_err(|err| TlsError::Invalid {
            flag,
            path: path.to_owned(),
            what: "CA certificate",
            reason: err.to_string(),
        })?;
    }
    Ok(Certificate::from_pem(pem))
}

/// Whether `err` failed in the TLS handshake (a certificate one side does not trust, or
/// none where one is required) rather than in reaching the other side.
pub fn is_handshake_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        // tokio-rustls hands rustls' error on inside an io::Error, whose source() skips it.
        let inner = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if err.is::<rustls::Error>() || inner.is_some_and(|inner| inner.is::<rustls::Error>()) {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Makes ring the process's rustls provider: tonic's server side takes the process default,
/// which rustls cannot choose by itself once another crate enables a second provider.
fn install_provider() {
    // An error only says that a provider is installed already.
    let _ = ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// A CA and a certificate it signs, made with the openssl command line; None where openssl
    /// is not installed (the root tests install it and cover the same ground end to end).
    fn certs(dir: &Path) -> Option<TlsFiles> {
        let run = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .ok()?;
            status.status.success().then_some(())
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        run(&[
            &["req", "-x509", "-new", "-nodes"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=ca"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
        ]
        .concat())?;
        run(&[
            &["req", "-new", "-nodes"][..],
            &ec,
            &[
                "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node",
            ],
        ]
        .concat())?;
        // Without extensions openssl writes a version 1 certificate, which rustls refuses.
        std::fs::write(dir.join("node.ext"), "basicConstraints = CA:FALSE\n").ok()?;
        run(&[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "node.ext",
            "-out",
            "node.crt",
        ])?;
        Some(TlsFiles {
            cert: Some(dir.join("node.crt")),
            key: Some(dir.join("node.key")),
            ca: Some(dir.join("ca.crt")),
        })
    }

    fn server_error(files: &TlsFiles) -> String {
        files.server(DAEMON_FLAGS).unwrap_err().to_string()
    }

    #[test]
    fn nothing_given_is_no_tls_and_a_whole_set_loads() {
        assert!(TlsFiles::default().server(DAEMON_FLAGS).unwrap().is_none());
        assert!(TlsFiles::default().client(CLIENT_FLAGS).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let Some(files) = certs(dir.path()) else {
            eprintln!("skipped: no openssl on this machine");
            return;
        };
        assert!(files.server(DAEMON_FLAGS).unwrap().is_some());
        assert!(files.client(CLIENT_FLAGS).unwrap().is_some());
        let ca_only = TlsFiles {
            ca: files.ca.clone(),
            ..TlsFiles::default()
        };
        assert!(ca_only.client(CLIENT_FLAGS).unwrap().is_some());
    }

    #[test]
    fn partial_settings_name_what_is_missing() {
        let cert_only = TlsFiles {
            cert: Some("node.crt".into()),
            ..TlsFiles::default()
        };
        assert_eq!(
            server_error(&cert_only),
            "--tls-cert given without --tls-key and --tls-ca: TLS needs --tls-cert, --tls-key, \
             --tls-ca"
        );
        assert_eq!(
            cert_only.client(CLIENT_FLAGS).unwrap_err().to_string(),
            "--cert given without --ca: TLS needs --ca"
        );
        let no_key = TlsFiles {
            cert: Some("node.crt".into()),
            ca: Some("ca.crt".into()),
            ..TlsFiles::default()
        };
        assert_eq!(
            no_key.client(CLIENT_FLAGS).unwrap_err().to_string(),
            "--cert and --ca given without --key: TLS needs --cert, --key"
        );
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let Some(good) = certs(dir.path()) else {
            eprintln!("skipped: no openssl on this machine");
            return;
        };
        let missing = TlsFiles {
            ca: Some(dir.path().join("nope.crt")),
            ..good.clone()
        };
        assert_eq!(
            server_error(&missing),
            format!(
                "--tls-ca {}: no such file",
                dir.path().join("nope.crt").display()
            )
        );

        let text = dir.path().join("text.pem");
        std::fs::write(&text, "hello\n").unwrap();
        let not_pem = TlsFiles {
            cert: Some(text.clone()),
            ..good.clone()
        };
        let err = server_error(&not_pem);
        assert!(
            err.starts_with(&format!(
                "--tls-cert {}: not PEM: no certificate",
                text.display()
            )),
            "{err}"
        );
        // A certificate where the key should be.
        let cert_as_key = TlsFiles {
            key: good.cert.clone(),
            ..good.clone()
        };
        let err = server_error(&cert_as_key);
        assert!(
            err.contains("--tls-key") && err.contains("no private key"),
            "{err}"
        );

        // Another key of the same kind: well formed, but not the certificate's.
        let other = dir.path().join("other.key");
        let made = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .arg("-out")
            .arg(&other)
            .status()
            .unwrap();
        assert!(made.success());
        let mismatch = TlsFiles {
            key: Some(other.clone()),
            ..good.clone()
        };
        assert_eq!(
            server_error(&mismatch),
            format!(
                "the key {} does not match the certificate {}: it belongs to another certificate",
                other.display(),
                good.cert.as_ref().unwrap().display()
            )
        );
    }
}
