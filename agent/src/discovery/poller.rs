//! One discovery poll: walk the cgroup2 hierarchy, ask the runtime, update the table. When
//! the runtime is unreachable the table goes on from cgroups alone; the outage is logged once
//! when it starts and once when it ends.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tracing::{info, warn};

use crate::discovery::{
    cgroup2::CgroupIndex,
    containers::{Changes, ContainerTable},
    domain::{LabelOwners, OwnerLookup},
    runtime::{CriClient, RuntimeSnapshot},
};

/// What discovery needs to know about the host.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// The CRI socket; `None` probes the common paths.
    pub runtime_socket: Option<PathBuf>,
    /// Containers younger than this are read and listed, but neither judged nor peers.
    pub min_age: Duration,
    /// Mount point of the cgroup2 hierarchy.
    pub cgroup2: PathBuf,
    /// Mount point of procfs.
    pub proc: PathBuf,
}

enum Link {
    Up(CriClient),
    /// The runtime did not answer the last poll (or has not been asked yet).
    Down,
}

/// The node's containers, kept up to date by [`Discovery::poll`].
pub struct Discovery {
    config: DiscoveryConfig,
    index: CgroupIndex,
    table: ContainerTable,
    link: Link,
    owners: Box<dyn OwnerLookup + Send + Sync>,
    first_poll: bool,
    /// Why the runtime did not answer the last poll.
    last_error: Option<String>,
}

impl Discovery {
    pub fn new(config: DiscoveryConfig) -> Self {
        Self {
            index: CgroupIndex::new(&config.cgroup2),
            table: ContainerTable::new(&config.proc, &config.cgroup2, config.min_age),
            config,
            link: Link::Down,
            owners: Box::new(LabelOwners),
            first_poll: true,
            last_error: None,
        }
    }

    /// Discovery of a node whose pods live below `root` (the kubelet's `--cgroup-root`,
    /// relative to the cgroup mounts): only cgroups there are walked and read.
    pub fn with_cgroup_root(mut self, root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        self.index = CgroupIndex::scoped(&self.config.cgroup2, &root);
        self.table =
            ContainerTable::new(&self.config.proc, &self.config.cgroup2, self.config.min_age)
                .scoped(root);
        self
    }

    pub fn table(&self) -> &ContainerTable {
        &self.table
    }

    /// The cgroup2 index each poll walks, for the eBPF signals' cgroup ids: one walk serves
    /// both.
    pub fn cgroup_index(&mut self) -> &mut CgroupIndex {
        &mut self.index
    }

    /// Whether the last poll had an answer from the runtime.
    pub fn runtime_up(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// The runtime's socket while it answers, and why it does not otherwise.
    pub fn runtime_status(&self) -> (Option<PathBuf>, Option<String>) {
        match &self.link {
            Link::Up(client) => (Some(client.path().to_owned()), None),
            Link::Down => (
                self.config.runtime_socket.clone(),
                Some(
                    self.last_error
                        .clone()
                        .unwrap_or_else(|| "not asked yet".to_owned()),
                ),
            ),
        }
    }

    /// Walks the cgroups, asks the runtime, and returns what came and went.
    pub async fn poll(&mut self) -> Changes {
        self.index.rescan();
        let snapshot = self.runtime_snapshot().await;
        self.first_poll = false;
        self.table.update(
            self.index.iter(),
            snapshot.as_ref(),
            self.owners.as_ref(),
            SystemTime::now(),
        )
    }

    async fn runtime_snapshot(&mut self) -> Option<RuntimeSnapshot> {
        let was_up = self.runtime_up();
        let result = match &mut self.link {
            Link::Up(client) => client.snapshot().await,
            Link::Down => match CriClient::connect(self.config.runtime_socket.as_deref()).await {
                Ok(mut client) => {
                    let snapshot = client.snapshot().await;
                    if snapshot.is_ok() {
                        self.link = Link::Up(client);
                    }
                    snapshot
                }
                Err(err) => Err(err),
            },
        };
        match result {
            Ok(snapshot) => {
                if !was_up && let Link::Up(client) = &self.link {
                    info!(
                        socket = %client.path().display(),
                        pods = snapshot.pods.len(),
                        containers = snapshot.containers.len(),
                        "container runtime answering; containers are named over CRI"
                    );
                }
                self.last_error = None;
                Some(snapshot)
            }
            Err(err) => {
                self.last_error = Some(err.to_string());
                if was_up || self.first_poll {
                    warn!(
                        "{err}; discovery goes on from cgroups alone (no pod names or \
                         domains) and tries the runtime again on every poll"
                    );
                }
                self.link = Link::Down;
                None
            }
        }
    }
}
