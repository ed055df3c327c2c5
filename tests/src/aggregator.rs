//! A `herd-aggregator` process for the end-to-end tests, and the polling they wait with.
//!
//! Every test that runs the aggregator starts it the same way: its store and log in the
//! test's directory, a unix socket there that the test asks through, the flags that make
//! the scenario (window, expiry, listener, TLS), and killed when the test is done, pass or
//! fail.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use herd_proto::herd::v1::cluster_service_client::ClusterServiceClient;
use tonic::transport::Channel;

use crate::built_binary;

/// How long the aggregator may take to answer on its socket after it starts.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `herd-aggregator`, killed (SIGKILL) when dropped.
pub struct AggregatorProcess {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl AggregatorProcess {
    /// Starts `program` (the workspace's `herd-aggregator` when `None`) with its socket
    /// (`dir/aggregator.sock`), store (`dir/data`) and log (`dir/aggregator.log`, appended
    /// to, so a restart keeps the first life's lines) in `dir`, plus `args`; returns once it
    /// answers on its socket.
    pub async fn start(
        program: Option<PathBuf>,
        dir: &Path,
        args: &[impl AsRef<std::ffi::OsStr>],
    ) -> anyhow::Result<Self> {
        let socket = dir.join("aggregator.sock");
        let log = dir.join("aggregator.log");
        let program = match program {
            Some(program) => program,
            None => built_binary("herd-aggregator")?,
        };
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new(&program)
            .arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut aggregator = Self { child, socket, log };
        let deadline = Instant::now() + READY_WITHIN;
        while aggregator.client().await.is_err() {
            if let Some(status) = aggregator.child.try_wait()? {
                bail!(
                    "herd-aggregator exited ({status}) before it answered:\n{}",
                    aggregator.log_text()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "the aggregator did not answer on {} within {READY_WITHIN:?}",
                aggregator.socket.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(aggregator)
    }

    /// The program a test runs as the aggregator: the one named by the environment variable
    /// `var` where it is set (a changed aggregator may stand in, to see a test fail when it
    /// is broken), the workspace's otherwise.
    pub fn program_from_env(var: &str) -> Option<PathBuf> {
        std::env::var_os(var).map(PathBuf::from)
    }

    /// A `ClusterService` client over the aggregator's unix socket.
    pub async fn client(&self) -> anyhow::Result<ClusterServiceClient<Channel>> {
        Ok(ClusterServiceClient::new(
            herd_proto::uds::connect(&self.socket).await?,
        ))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the aggregator logged so far, in every life that shared its directory.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for AggregatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every second until it gives a value or `within` runs out.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
