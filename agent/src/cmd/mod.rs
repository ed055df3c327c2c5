//! The subcommands: where library errors become `anyhow` reports.

pub mod containers;
pub mod detector;
pub mod probe;
pub mod run;

use std::{path::PathBuf, time::Duration};

use clap::Args;

/// Runs a subcommand on a single-threaded runtime: the agent's work is a few reads per tick.
pub fn block_on<F: Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// How containers are found, shared by `run` and `containers`.
#[derive(Args, Clone, Debug)]
pub struct DiscoveryArgs {
    /// The container runtime's CRI socket; by default the common paths are probed
    /// (containerd, CRI-O, k3s, cri-dockerd).
    #[arg(long, env = "HERD_RUNTIME_SOCKET")]
    pub runtime_socket: Option<PathBuf>,
    /// Containers younger than this are read and listed, but neither judged nor peers.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub min_age: Duration,
}
