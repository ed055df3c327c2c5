//! A multi-node lab: several simulated nodes on this machine, each a real node of its own.
//! Every node has its own containerd (socket, state, root), its own cgroup root (pods live
//! below `/herd-nodes/<node>/kubepods`, as under a kubelet with `--cgroup-root`) and its own
//! network namespace with an address on a private bridge, where an aggregator can listen.
//! containerd runs inside the node's namespace, so the pods' bridge is the node's too.
//!
//! Nothing here touches the single-node lab (`/run/herd-lab`, `herdlab0`, `/kubepods`): both
//! can run at once. [`Cluster::down`], a drop or [`down`] after a crash leave nothing behind.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use herd_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use super::{
    LabError, LabSpec, Pod, Workload, cgroups, cleanup,
    cmd::{self, step},
    containerd, cri, images, install, mounts,
    paths::{LabPaths, NETNS_DIR, NodeLayout},
    pod, require_root,
};

/// Runtime state of every node, one directory each.
pub const NODES_RUN: &str = "/run/herd-nodes";
/// Data of every node, one directory each.
pub const NODES_DATA: &str = "/var/lib/herd-nodes";
/// The cgroup every node's cgroup root sits in.
pub const NODES_CGROUP: &str = "/herd-nodes";
/// The bridge between the nodes (and the host, where the aggregator listens).
pub const CLUSTER_BRIDGE: &str = "herdnodes0";
/// The host's address on [`CLUSTER_BRIDGE`]; nodes get `.10`, `.11`, … of its /24.
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 214, 88, 1);
/// Prefix of the nodes' network namespaces.
const NETNS_PREFIX: &str = "herd-node-";
/// Prefix of the host ends of the nodes' veth pairs.
const VETH_PREFIX: &str = "hnode-";
/// Present when the cluster made /run/netns a mount point, so that `down` undoes it.
const NETNS_MOUNT_MARKER: &str = "made-run-netns-mount";

/// The nodes of a cluster, each with what runs on it.
#[derive(Clone, Debug, Default)]
pub struct ClusterSpec {
    pub nodes: Vec<(String, LabSpec)>,
}

impl ClusterSpec {
    pub fn new() -> Self {
        Self::default()
    }

    /// A node named `name` (a short DNS label) running `spec`'s workloads: the replica
    /// counts and faults are this node's.
    pub fn node(mut self, name: &str, spec: LabSpec) -> Self {
        self.nodes.push((name.to_owned(), spec));
        self
    }

    fn validate(&self) -> Result<(), LabError> {
        if self.nodes.is_empty() || self.nodes.len() > 50 {
            return Err(LabError::Spec(format!(
                "a cluster has 1 to 50 nodes, not {}",
                self.nodes.len()
            )));
        }
        for (name, spec) in &self.nodes {
            // The name ends up in an interface name of at most 15 characters.
            let short = !name.is_empty() && name.len() <= 8;
            if !short
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(LabError::Spec(format!(
                    "node name {name:?}: 1 to 8 lowercase letters or digits"
                )));
            }
            spec.validate()?;
        }
        Ok(())
    }
}

/// One node of a running cluster.
pub struct Node {
    pub name: String,
    paths: LabPaths,
    runtime: RuntimeServiceClient<Channel>,
    address: Ipv4Addr,
}

impl Node {
    /// containerd's CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.paths.socket()
    }

    /// The node's cgroup root, as its kubelet's `--cgroup-root`.
    pub fn cgroup_root(&self) -> &str {
        self.paths.cgroup_root()
    }

    /// The node's network namespace, as `ip netns` names it.
    pub fn netns(&self) -> &str {
        self.paths
            .netns()
            .expect("a cluster node has a network namespace")
    }

    /// The namespace's file, for `nsenter --net=` or setns.
    pub fn netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(self.netns())
    }

    /// The node's address on the cluster bridge.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The node's pods and containers, as its runtime lists them.
    pub async fn pods(&self) -> Result<Vec<Pod>, LabError> {
        pod::list(&mut self.runtime.clone()).await
    }

    async fn add_pod(&mut self, workload: &Workload, replica: u32) -> Result<(), LabError> {
        step(format!(
            "node {}: running {}/{} replica {replica}",
            self.name, workload.namespace, workload.name
        ));
        pod::run(&mut self.runtime, &self.paths, workload, replica).await?;
        Ok(())
    }
}

/// A running multi-node lab, taken down when dropped.
pub struct Cluster {
    nodes: Vec<Node>,
    guard: Guard,
}

impl Cluster {
    /// Makes the bridge, then every node: its network namespace, its containerd, the images
    /// and its pods. Whatever fails on the way is taken down again.
    pub async fn up(spec: &ClusterSpec) -> Result<Self, LabError> {
        require_root()?;
        spec.validate()?;
        if !leftovers().is_empty() {
            step("an earlier cluster left things behind; cleaning up first");
            teardown().await?;
        }
        install::ensure_packages()?;
        let guard = Guard { armed: true };
        for dir in [NODES_RUN, NODES_DATA] {
            fs::create_dir_all(dir).map_err(LabError::io(dir))?;
        }
        let mounted_before = mounts::is_mount_point(NETNS_DIR)?;
        make_bridge()?;
        let mut nodes = Vec::new();
        for (index, (name, _)) in spec.nodes.iter().enumerate() {
            let address = Ipv4Addr::new(10, 214, 88, 10 + u8::try_from(index).unwrap_or(0));
            let paths = LabPaths::node(layout(name, index));
            make_node_network(name, &paths, address)?;
            if index == 0 && !mounted_before && mounts::is_mount_point(NETNS_DIR)? {
                let marker = Path::new(NODES_RUN).join(NETNS_MOUNT_MARKER);
                fs::write(&marker, "").map_err(LabError::io(&marker))?;
            }
            make_cgroup_root(&paths)?;
            step(format!(
                "node {name}: containerd in {}",
                paths.run_dir().display()
            ));
            containerd::write_config(&paths)?;
            containerd::start(&paths)?;
            let runtime = cri::wait_ready(&paths, Duration::from_secs(30)).await?;
            images::build_and_import(&paths)?;
            nodes.push(Node {
                name: name.clone(),
                paths,
                runtime,
                address,
            });
        }
        for (node, (_, lab)) in nodes.iter_mut().zip(&spec.nodes) {
            for workload in &lab.workloads {
                for replica in 0..workload.replicas {
                    node.add_pod(workload, replica).await?;
                }
            }
        }
        step(format!(
            "cluster is up: {} nodes on {CLUSTER_BRIDGE} ({HOST_ADDRESS}/24)",
            nodes.len()
        ));
        Ok(Self { nodes, guard })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this cluster"))
    }

    /// Takes the cluster down and checks that nothing is left.
    pub async fn down(mut self) -> Result<(), LabError> {
        self.guard.armed = false;
        drop(self.nodes);
        teardown().await
    }
}

/// Takes down the cluster, running or not, or whatever a crashed `up` left.
pub async fn down() -> Result<(), LabError> {
    require_root()?;
    teardown().await
}

/// What a cluster left on this machine; empty when clean.
pub fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    for paths in node_paths() {
        let left = cleanup::leftovers(&paths);
        found.extend(left.0);
    }
    for netns in node_netns() {
        found.push(format!("network namespace {netns}"));
    }
    if Path::new("/sys/class/net").join(CLUSTER_BRIDGE).exists() {
        found.push(format!("bridge {CLUSTER_BRIDGE}"));
    }
    match cgroups::dirs(NODES_CGROUP) {
        Ok(dirs) => found.extend(dirs.iter().map(|d| format!("cgroup {}", d.display()))),
        Err(err) => found.push(format!("unknown, could not look: {err}")),
    }
    for dir in [NODES_RUN, NODES_DATA] {
        if Path::new(dir).exists() {
            found.push(format!("directory {dir}"));
        }
    }
    found
}

fn layout(name: &str, index: usize) -> NodeLayout {
    NodeLayout {
        run: Path::new(NODES_RUN).join(name),
        data: Path::new(NODES_DATA).join(name),
        network: format!("herd-node-{name}"),
        bridge: "herdpods0".to_owned(),
        subnet: format!("10.214.{}.0/24", 100 + index),
        cgroup_root: format!("{NODES_CGROUP}/{name}"),
        netns: format!("{NETNS_PREFIX}{name}"),
    }
}

/// The paths of every node that has left a trace: a directory or a network namespace.
fn node_paths() -> Vec<LabPaths> {
    let mut names: Vec<String> = node_netns()
        .iter()
        .map(|n| n[NETNS_PREFIX.len()..].to_owned())
        .collect();
    for dir in [NODES_RUN, NODES_DATA] {
        if let Ok(entries) = fs::read_dir(dir) {
            names.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok()),
            );
        }
    }
    names.sort();
    names.dedup();
    // The subnet only matters to a running node; any index does for taking one down.
    names
        .iter()
        .map(|name| LabPaths::node(layout(name, 0)))
        .collect()
}

fn node_netns() -> Vec<String> {
    fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.starts_with(NETNS_PREFIX) && !name.ends_with("-probe"))
                .collect()
        })
        .unwrap_or_default()
}

fn ip(args: &[&str]) -> Result<(), LabError> {
    cmd::run(Command::new("ip").args(args)).map(drop)
}

fn make_bridge() -> Result<(), LabError> {
    step(format!(
        "making bridge {CLUSTER_BRIDGE} ({HOST_ADDRESS}/24)"
    ));
    ip(&["link", "add", CLUSTER_BRIDGE, "type", "bridge"])?;
    ip(&[
        "addr",
        "add",
        &format!("{HOST_ADDRESS}/24"),
        "dev",
        CLUSTER_BRIDGE,
    ])?;
    ip(&["link", "set", CLUSTER_BRIDGE, "up"])
}

/// The node's network namespace, with loopback up and `eth0` on the cluster bridge.
fn make_node_network(name: &str, paths: &LabPaths, address: Ipv4Addr) -> Result<(), LabError> {
    let netns = paths
        .netns()
        .expect("a cluster node has a network namespace");
    let veth = format!("{VETH_PREFIX}{name}");
    step(format!(
        "node {name}: network namespace {netns}, {address} on {CLUSTER_BRIDGE}"
    ));
    ip(&["netns", "add", netns])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", netns,
    ])?;
    ip(&["link", "set", &veth, "master", CLUSTER_BRIDGE])?;
    ip(&["link", "set", &veth, "up"])?;
    ip(&[
        "-n",
        netns,
        "addr",
        "add",
        &format!("{address}/24"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", netns, "link", "set", "eth0", "up"])
}

/// The node's cgroup root in the cgroup2 hierarchy, which an agent scoped to the node
/// needs before the first pod (a kubelet makes it at start); it stays for the teardown.
fn make_cgroup_root(paths: &LabPaths) -> Result<(), LabError> {
    let cgroup2 = crate::cgroup::hierarchies_of(&[""])?;
    crate::cgroup::OwnedCgroups::create(&cgroup2, paths.cgroup_root(), &Default::default())?.keep();
    Ok(())
}

async fn teardown() -> Result<(), LabError> {
    step("taking the cluster down");
    let mut failures = Vec::new();
    // Each node as the single-node lab is taken down: pods over CRI, containerd, mounts,
    // its kubepods cgroups, its directories.
    for paths in node_paths() {
        if let Err(err) = cleanup::teardown(&paths).await {
            failures.push(err.to_string());
        }
    }
    for netns in node_netns() {
        step(format!("removing network namespace {netns}"));
        // The node's end of its veth goes with it, and the host's end with that.
        if let Err(err) = ip(&["netns", "del", &netns]) {
            failures.push(err.to_string());
        }
    }
    if Path::new("/sys/class/net").join(CLUSTER_BRIDGE).exists() {
        step(format!("removing bridge {CLUSTER_BRIDGE}"));
        if let Err(err) = ip(&["link", "del", CLUSTER_BRIDGE]) {
            failures.push(err.to_string());
        }
    }
    if !cgroups::dirs(NODES_CGROUP)?.is_empty() {
        step(format!("removing {NODES_CGROUP} cgroups"));
        cgroups::remove_everywhere(NODES_CGROUP)?;
    }
    let marker = Path::new(NODES_RUN).join(NETNS_MOUNT_MARKER);
    if marker.exists()
        && mounts::is_mount_point(NETNS_DIR)?
        && fs::read_dir(NETNS_DIR).is_ok_and(|mut entries| entries.next().is_none())
    {
        step(format!("unmounting {NETNS_DIR}, which the cluster mounted"));
        mounts::unmount(NETNS_DIR);
    }
    for dir in [NODES_RUN, NODES_DATA] {
        if Path::new(dir).exists() {
            step(format!("removing {dir}"));
            fs::remove_dir_all(dir).map_err(LabError::io(dir))?;
        }
    }
    let left = leftovers();
    if failures.is_empty() && left.is_empty() {
        step("the cluster is down; nothing is left");
        Ok(())
    } else {
        failures.extend(left);
        Err(LabError::Leftovers(failures.join("\n  ")))
    }
}

/// Takes the cluster down when dropped, even while a test panics.
struct Guard {
    armed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let done = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread tokio runtime")
                .block_on(teardown())
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("cluster teardown: {err}"),
            Err(_) => eprintln!("cluster teardown panicked"),
        }
    }
}
