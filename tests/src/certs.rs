//! Certificates for tests of Herd's TLS, made with the real `openssl` command line: the same
//! commands the README shows for a test cluster. A CA, server certificates with the names a
//! client dials (subjectAltName), client certificates, and as many other CAs as a test needs
//! to show that their certificates are refused.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let ca = herd_tests::certs::Ca::new(dir.path(), "herd-ca")?;
//! let aggregator = ca.server("aggregator", &["DNS:localhost", "IP:127.0.0.1"])?;
//! let agent = ca.client("node-1")?;
//! // herd-aggregator --listen 127.0.0.1:7700 + aggregator.daemon_args()
//! // herd-agent --aggregator https://127.0.0.1:7700 + agent.daemon_args()
//! # Ok(()) }
//! ```

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, ensure};

/// How long the certificates are valid: far longer than any test.
const DAYS: &str = "30";

/// A certificate authority: its certificate, which both sides trust, and its key, which
/// signs the others.
#[derive(Clone, Debug)]
pub struct Ca {
    dir: PathBuf,
    name: String,
    /// The CA's certificate (PEM): `--tls-ca` on the daemons, `--ca` on `herd`.
    pub cert: PathBuf,
    /// The CA's private key (PEM).
    pub key: PathBuf,
}

/// A certificate signed by a [`Ca`], its key, and that CA's certificate.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// The certificate of the CA that signed it, which it trusts in turn.
    pub ca: PathBuf,
}

impl Ca {
    /// A new CA named `name` (its common name and the stem of its files in `dir`). Installs
    /// `openssl` first when it is missing.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        crate::lab::install::ensure(&["openssl"])?;
        std::fs::create_dir_all(dir)?;
        let ca = Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-nodes"])
                .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .arg("-keyout")
                .arg(&ca.key)
                .arg("-out")
                .arg(&ca.cert)
                .args(["-days", DAYS, "-subj", &format!("/CN={name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        )?;
        Ok(ca)
    }

    /// A certificate for a server that clients reach by any of `sans`
    /// (`DNS:aggregator`, `IP:127.0.0.1`). It may act as a client too: an agent serves its
    /// API and connects to the aggregator with the same certificate.
    pub fn server(&self, name: &str, sans: &[&str]) -> anyhow::Result<Issued> {
        ensure!(
            !sans.is_empty(),
            "a server certificate needs at least one name"
        );
        self.issue(
            name,
            &format!(
                "extendedKeyUsage = serverAuth, clientAuth\nsubjectAltName = {}\n",
                sans.join(", ")
            ),
        )
    }

    /// A certificate that only identifies a client: an agent that serves no TCP API, or a
    /// person's `herd`.
    pub fn client(&self, name: &str) -> anyhow::Result<Issued> {
        self.issue(name, "extendedKeyUsage = clientAuth\n")
    }

    /// A key, a signing request for `/CN=name`, and the certificate signed with `extensions`.
    fn issue(&self, name: &str, extensions: &str) -> anyhow::Result<Issued> {
        let stem = format!("{}-{name}", self.name);
        let issued = Issued {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
            ca: self.cert.clone(),
        };
        let csr = self.dir.join(format!("{stem}.csr"));
        let ext = self.dir.join(format!("{stem}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n{extensions}"
            ),
        )?;
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-nodes"])
                .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .arg("-keyout")
                .arg(&issued.key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", &format!("/CN={name}")]),
        )?;
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&self.cert)
                .arg("-CAkey")
                .arg(&self.key)
                .arg("-CAcreateserial")
                .arg("-CAserial")
                .arg(self.dir.join(format!("{}.srl", self.name)))
                .args(["-days", DAYS])
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&issued.cert),
        )?;
        Ok(issued)
    }
}

impl Issued {
    /// `--tls-cert C --tls-key K --tls-ca CA`, as `herd-agent` and `herd-aggregator` take
    /// them. Strings, as [`crate::agent::AgentProcess::start`] takes arguments: the paths are
    /// the test's own.
    pub fn daemon_args(&self) -> Vec<String> {
        self.args(["--tls-cert", "--tls-key", "--tls-ca"])
    }

    /// `--cert C --key K --ca CA`, as `herd` takes them.
    pub fn client_args(&self) -> Vec<String> {
        self.args(["--cert", "--key", "--ca"])
    }

    fn args(&self, [cert, key, ca]: [&str; 3]) -> Vec<String> {
        [(cert, &self.cert), (key, &self.key), (ca, &self.ca)]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
            .collect()
    }
}

fn openssl(command: &mut Command) -> anyhow::Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .context("running openssl")?;
    ensure!(
        out.status.success(),
        "{command:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
