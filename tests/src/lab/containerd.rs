//! Debian's containerd, run privately for the lab: its own root, state directory, socket
//! and configuration, so that it never meets a system containerd.

use std::{
    fs,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::json;

use super::{
    LabError,
    cmd::{self, step},
    mounts,
    paths::{LabPaths, NETNS_DIR, PAUSE_IMAGE},
    process,
};

/// Writes the containerd configuration and the CNI network configuration.
pub fn write_config(paths: &LabPaths) -> Result<(), LabError> {
    for dir in [
        paths.run_dir().to_path_buf(),
        paths.data_dir().to_path_buf(),
        paths.cni_conf_dir(),
        paths.cni_ipam_dir(),
        paths.pod_logs(),
    ] {
        fs::create_dir_all(&dir).map_err(LabError::io(&dir))?;
    }
    let config = paths.containerd_config();
    step(format!("writing {}", config.display()));
    fs::write(&config, containerd_toml(paths)).map_err(LabError::io(&config))?;

    let cni = paths
        .cni_conf_dir()
        .join(format!("10-{}.conflist", paths.network()));
    step(format!("writing {}", cni.display()));
    let network = json!({
        "cniVersion": "0.4.0",
        "name": paths.network(),
        "plugins": [{
            "type": "bridge",
            "bridge": paths.bridge(),
            // No gateway, no masquerading, no routes: pods reach only their own loopback
            // and the lab's bridge, and the plugins add no iptables rules.
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": paths.subnet()}]],
                "dataDir": paths.cni_ipam_dir(),
            },
        }],
    });
    fs::write(
        &cni,
        serde_json::to_vec_pretty(&network).expect("JSON of plain values"),
    )
    .map_err(LabError::io(&cni))
}

fn containerd_toml(paths: &LabPaths) -> String {
    let socket = paths.socket();
    format!(
        r#"# Written by the Herd lab; removed by `cargo xtask lab down`.
version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{data}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # As on a kubelet node whose runtime may not lower oom_score_adj: this host lacks
  # CAP_SYS_RESOURCE for that.
  restrict_oom_score_adj = true
  # Pod network namespaces live under the state directory, so `down` finds them all.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The cgroupfs driver: cgroup parents are plain paths like /kubepods/burstable/pod<uid>.
        SystemdCgroup = false
        # runc's state stays in the lab too (its default is /run/containerd/runc).
        Root = "{runc_root}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
    max_conf_num = 1
"#,
        root = paths.containerd_root().display(),
        state = paths.containerd_state().display(),
        socket = socket.display(),
        data = paths.data_dir().display(),
        pause = PAUSE_IMAGE,
        cni = paths.cni_conf_dir().display(),
        runc_root = paths.run_dir().join("runc").display(),
    )
}

/// Starts containerd in its own session, detached from the caller, so that it outlives
/// `cargo xtask lab up`.
pub fn start(paths: &LabPaths) -> Result<u32, LabError> {
    // containerd bind-mounts pod network namespaces; this makes sure the kernel's netns
    // support and the mount propagation that needs are in place first (DESIGN.md).
    step("priming network namespaces");
    let mounted_before = mounts::is_mount_point(NETNS_DIR)?;
    cmd::run(Command::new("ip").args(["netns", "add", paths.probe_netns()]))?;
    cmd::run(Command::new("ip").args(["netns", "del", paths.probe_netns()]))?;
    if !mounted_before && mounts::is_mount_point(NETNS_DIR)? {
        let marker = paths.netns_mount_marker();
        fs::write(&marker, "").map_err(LabError::io(&marker))?;
    }

    let log_path = paths.containerd_log();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(LabError::io(&log_path))?;
    let log_err = log.try_clone().map_err(LabError::io(&log_path))?;
    // A node of a multi-node lab runs containerd, and so the pods' bridge, in its own
    // network namespace.
    let netns = match paths.netns() {
        Some(name) => {
            let path = std::path::Path::new(NETNS_DIR).join(name);
            Some(fs::File::open(&path).map_err(LabError::io(&path))?)
        }
        None => None,
    };
    let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let mut command = Command::new("containerd");
    command
        .arg("--config")
        .arg(paths.containerd_config())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: setsid and setns are async-signal-safe and touch no memory of the parent; the
    // namespace's file stays open in the parent until the child has started.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = netns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    step(format!(
        "starting containerd (log: {})",
        paths.containerd_log().display()
    ));
    eprintln!("    $ {}", cmd::show(&command));
    let child = command.spawn().map_err(|source| LabError::Spawn {
        command: cmd::show(&command),
        source,
    })?;
    let pid = child.id();
    let pid_file = paths.containerd_pid();
    fs::write(&pid_file, pid.to_string()).map_err(LabError::io(&pid_file))?;
    Ok(pid)
}

/// The pid of the lab's containerd, if it runs.
pub fn running_pid(paths: &LabPaths) -> Option<u32> {
    let pid: u32 = fs::read_to_string(paths.containerd_pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let config = paths.containerd_config();
    // The pid may have been reused: it is ours only if it runs our configuration.
    (process::alive(pid) && process::cmdline(pid)?.contains(config.to_string_lossy().as_ref()))
        .then_some(pid)
}

/// Stops the lab's containerd: SIGTERM, then SIGKILL if it lingers.
pub fn stop(paths: &LabPaths) {
    let Some(pid) = running_pid(paths) else {
        return;
    };
    step(format!("stopping containerd (pid {pid})"));
    process::terminate(pid, Duration::from_secs(10));
}
