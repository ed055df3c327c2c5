//! The subcommands: where library errors become `anyhow` reports.

pub mod config;
pub mod containers;
pub mod detection;
pub mod detector;
pub mod health;
pub mod probe;
pub mod run;

use std::{
    path::{Component, Path, PathBuf},
    time::Duration,
};

use clap::Args;
use herd_agent::discovery::poller::{Discovery, DiscoveryConfig};

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
    /// The node's cgroup root, as given to its kubelet (`--cgroup-root`): pods are found
    /// below `<root>/kubepods` only, and the network programs attach there. Several nodes on
    /// one host (kind, nested nodes) each have their own.
    #[arg(long, env = "HERD_CGROUP_ROOT", default_value = "/", value_parser = cgroup_root)]
    pub cgroup_root: PathBuf,
}

impl DiscoveryArgs {
    /// Discovery as these arguments ask, on the cgroup2 hierarchy mounted at `cgroup2`;
    /// fails when the cgroup root is not a cgroup there.
    pub fn discovery(&self, cgroup2: &Path, proc: &Path) -> anyhow::Result<Discovery> {
        let dir = cgroup2.join(
            self.cgroup_root
                .strip_prefix("/")
                .unwrap_or(&self.cgroup_root),
        );
        anyhow::ensure!(
            dir.is_dir(),
            "--cgroup-root {}: no such cgroup ({} is not a directory); give the node's \
             kubelet --cgroup-root, or / for the host's",
            self.cgroup_root.display(),
            dir.display()
        );
        Ok(Discovery::new(DiscoveryConfig {
            runtime_socket: self.runtime_socket.clone(),
            min_age: self.min_age,
            cgroup2: cgroup2.to_owned(),
            proc: proc.to_owned(),
        })
        .with_cgroup_root(&self.cgroup_root))
    }
}

/// An absolute cgroup path without `..`: it is joined to each hierarchy's mount.
fn cgroup_root(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if path.is_absolute() && plain {
        Ok(path)
    } else {
        Err(format!(
            "{value:?} is not an absolute cgroup path without `..` (e.g. / or /kubelet)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_roots_are_absolute_plain_paths() {
        assert_eq!(cgroup_root("/"), Ok(PathBuf::from("/")));
        assert_eq!(cgroup_root("/nodes/a"), Ok(PathBuf::from("/nodes/a")));
        for bad in ["nodes/a", "/nodes/../a", ""] {
            let err = cgroup_root(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
