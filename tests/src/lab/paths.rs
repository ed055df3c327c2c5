//! Where the lab keeps everything: one directory for runtime state and one for data, so that
//! nothing collides with a system containerd and `down` knows exactly what to remove.

use std::path::{Path, PathBuf};

/// containerd namespace the CRI plugin uses; images must be imported into it.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Tag of the locally built pause image, configured as the CRI sandbox image.
pub const PAUSE_IMAGE: &str = "herd.local/pause:lab";
/// Tag of the locally built image with busybox, stress-ng and curl.
pub const TOOLS_IMAGE: &str = "herd.local/tools:lab";
/// Name of the CNI network; the plugins put it in every rule they add.
pub const NETWORK: &str = "herd-lab";
/// The lab's own bridge.
pub const BRIDGE: &str = "herdlab0";
/// Pod addresses. Pods get no gateway and no default route: traffic stays in each pod's
/// own network namespace.
pub const SUBNET: &str = "10.213.77.0/24";
/// Top of the kubelet's cgroup tree for the cgroupfs driver.
pub const KUBEPODS: &str = "kubepods";
/// A network namespace the lab makes and deletes once before containerd starts.
pub const PROBE_NETNS: &str = "herd-lab-probe";
/// Where `ip netns` keeps named network namespaces (a bind mount of itself).
pub const NETNS_DIR: &str = "/run/netns";

/// Where one lab node keeps everything and what of the machine it takes: its directories,
/// pod network, cgroup root and, for a node of a multi-node lab, its network namespace. The
/// default is the single-node lab.
#[derive(Clone, Debug)]
pub struct LabPaths {
    run: PathBuf,
    data: PathBuf,
    network: String,
    bridge: String,
    subnet: String,
    /// The kubelet's `--cgroup-root`: empty for the host's root.
    cgroup_root: String,
    probe_netns: String,
    netns: Option<String>,
}

impl Default for LabPaths {
    fn default() -> Self {
        Self {
            run: PathBuf::from("/run/herd-lab"),
            data: PathBuf::from("/var/lib/herd-lab"),
            network: NETWORK.to_owned(),
            bridge: BRIDGE.to_owned(),
            subnet: SUBNET.to_owned(),
            cgroup_root: String::new(),
            probe_netns: PROBE_NETNS.to_owned(),
            netns: None,
        }
    }
}

/// One node of a multi-node lab: where it lives and what it takes, all its own.
#[derive(Clone, Debug)]
pub struct NodeLayout {
    /// Runtime state directory.
    pub run: PathBuf,
    /// Data directory.
    pub data: PathBuf,
    /// CNI network name; the pods' bridge and subnet, inside the node's network namespace.
    pub network: String,
    pub bridge: String,
    pub subnet: String,
    /// The node's cgroup root (a kubelet's `--cgroup-root`), e.g. `/herd-nodes/a`.
    pub cgroup_root: String,
    /// The named network namespace containerd, and so the pods' bridge, run in.
    pub netns: String,
}

impl LabPaths {
    /// The paths of one node of a multi-node lab.
    pub fn node(layout: NodeLayout) -> Self {
        Self {
            probe_netns: format!("{}-probe", layout.netns),
            run: layout.run,
            data: layout.data,
            network: layout.network,
            bridge: layout.bridge,
            subnet: layout.subnet,
            cgroup_root: layout.cgroup_root.trim_end_matches('/').to_owned(),
            netns: Some(layout.netns),
        }
    }

    /// The CNI network's name; the plugins put it in every rule they add.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The pods' bridge.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Pod addresses.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// The node's cgroup root (empty for the host's root), which pods' cgroup parents start
    /// with.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    /// The kubelet's cgroup tree: `/kubepods` below the node's cgroup root.
    pub fn kubepods(&self) -> String {
        format!("{}/{KUBEPODS}", self.cgroup_root)
    }

    /// A network namespace made and deleted once before containerd starts.
    pub fn probe_netns(&self) -> &str {
        &self.probe_netns
    }

    /// The named network namespace containerd runs in; `None` runs it in the caller's.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Runtime state: socket, pid file, containerd state (including pod network namespaces).
    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    /// Persistent data: containerd root, images, CNI configuration, pod logs.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn socket(&self) -> PathBuf {
        self.run.join("containerd.sock")
    }

    pub fn containerd_config(&self) -> PathBuf {
        self.run.join("containerd.toml")
    }

    pub fn containerd_pid(&self) -> PathBuf {
        self.run.join("containerd.pid")
    }

    pub fn containerd_log(&self) -> PathBuf {
        self.data.join("containerd.log")
    }

    pub fn containerd_state(&self) -> PathBuf {
        self.run.join("containerd")
    }

    pub fn containerd_root(&self) -> PathBuf {
        self.data.join("containerd")
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.data.join("cni/net.d")
    }

    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.data.join("cni/ipam")
    }

    /// Present when the lab made /run/netns a mount point, so that `down` undoes it.
    pub fn netns_mount_marker(&self) -> PathBuf {
        self.run.join("made-run-netns-mount")
    }

    pub fn build_dir(&self) -> PathBuf {
        self.data.join("build")
    }

    pub fn pod_logs(&self) -> PathBuf {
        self.data.join("pods")
    }

    /// Whether `path` belongs to the lab.
    pub fn owns(&self, path: &str) -> bool {
        [&self.run, &self.data]
            .iter()
            .any(|dir| Path::new(path).starts_with(dir))
    }
}
