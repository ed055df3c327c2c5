//! A running `herd-agent` for a test or the demo, with its API socket in a directory of its
//! own, ended when dropped.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use herd_proto::herd::v1::node_service_client::NodeServiceClient;
use tonic::transport::Channel;

pub struct AgentProcess {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts `agent` with `args`, its API on `<dir>/agent.sock` and its log in
    /// `<dir>/agent.log`, and waits until the API answers.
    pub async fn start(agent: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_logging(agent, dir, args, "info").await
    }

    /// As [`AgentProcess::start`], with `log_filter` as `HERD_LOG`.
    pub async fn start_logging(
        agent: &Path,
        dir: &Path,
        args: &[&str],
        log_filter: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(agent, dir, args, log_filter, &[]).await
    }

    /// As [`AgentProcess::start_logging`], with `env` added to the agent's environment.
    pub async fn start_with_env(
        agent: &Path,
        dir: &Path,
        args: &[&str],
        log_filter: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("agent.sock");
        let log = dir.join("agent.log");
        let child = Command::new(agent)
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .envs(env.iter().copied())
            .env("HERD_LOG", log_filter)
            // The log goes to the file, even on a host where journald listens.
            .env("HERD_LOG_TARGET", "stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", agent.display()))?;
        let mut agent = Self { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "herd-agent exited at start ({status}):\n{}",
                    agent.log_text()
                );
            }
            if agent.socket.exists() && agent.client().await.is_ok() {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!(
                    "herd-agent's API did not come up in 30 s:\n{}",
                    agent.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = i32::try_from(self.pid()).ok()?;
        procfs::process::Process::new(pid)
            .ok()?
            .status()
            .ok()?
            .vmrss
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn client(&self) -> anyhow::Result<NodeServiceClient<Channel>> {
        let channel = herd_proto::uds::connect(&self.socket)
            .await
            .with_context(|| format!("connecting to {}", self.socket.display()))?;
        Ok(NodeServiceClient::new(channel))
    }

    /// Whether the agent is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status; SIGKILL if it does not stop within 10 s.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}
