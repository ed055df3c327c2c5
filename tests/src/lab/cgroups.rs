//! The kubelet's side of pod cgroups with the cgroupfs driver: where a pod's cgroup lives
//! per QoS class, its pids limit, and removing it when the pod goes (containerd removes
//! only the containers' own cgroups).

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use procfs::process::Process;

use super::{LabError, paths::KUBEPODS};
use crate::cgroup::{Limits, OwnedCgroups, hierarchies, hierarchies_of};

/// The pod's QoS class, as the kubelet derives it from requests and limits. The lab sets
/// limits only, and the kubelet then takes requests equal to the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn of(cpu_limited: bool, memory_limited: bool) -> Self {
        match (cpu_limited, memory_limited) {
            (true, true) => Self::Guaranteed,
            (false, false) => Self::BestEffort,
            _ => Self::Burstable,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "guaranteed",
            Self::Burstable => "burstable",
            Self::BestEffort => "besteffort",
        }
    }

    /// The pod's cgroup parent. Like the kubelet, Guaranteed pods sit directly under
    /// `/kubepods`; the other classes have a level of their own.
    pub fn cgroup_parent(self, uid: &str) -> String {
        match self {
            Self::Guaranteed => format!("/{KUBEPODS}/pod{uid}"),
            Self::Burstable | Self::BestEffort => {
                format!("/{KUBEPODS}/{}/pod{uid}", self.as_str())
            }
        }
    }
}

/// Makes the pod's cgroup in the pids controller with `pids.max`, before the sandbox
/// starts, as the kubelet's pod PIDs limit does. The lab runs on hybrid hosts, where the
/// pids controller is a v1 hierarchy; without one the limit cannot be set, and a workload
/// that asked for it would run unlimited, so that is an error.
/// The cgroup stays for the pod's removal ([`remove_everywhere`]).
pub fn limit_pod_pids(cgroup_parent: &str, pids_max: u32) -> Result<(), LabError> {
    let pids = hierarchies_of(&["pids"])?;
    if pids.is_empty() {
        return Err(LabError::NoPidsHierarchy(pids_max));
    }
    let limits = Limits {
        pids_max: Some(pids_max.into()),
        ..Limits::default()
    };
    OwnedCgroups::create(&pids, cgroup_parent, &limits)?.keep();
    Ok(())
}

/// Removes the cgroup at `path` (relative to each mount) and everything below it, in
/// every hierarchy. Empty cgroups can be removed a moment after their last task exits,
/// so busy ones are retried briefly.
pub fn remove_everywhere(path: &str) -> Result<(), LabError> {
    for hierarchy in hierarchies()? {
        let dir = hierarchy.mount.join(path.trim_start_matches('/'));
        remove_tree(&dir)?;
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> Result<(), LabError> {
    let children = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(LabError::Io {
                path: dir.into(),
                source,
            });
        }
    };
    for child in children {
        remove_tree(&child)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(source) => {
                return Err(LabError::Io {
                    path: dir.into(),
                    source,
                });
            }
        }
    }
}

/// The pids in `path` or below it, in any hierarchy.
pub fn procs_below(path: &str) -> Result<Vec<u32>, LabError> {
    let mut pids = Vec::new();
    for hierarchy in hierarchies()? {
        collect_procs(
            &hierarchy.mount.join(path.trim_start_matches('/')),
            &mut pids,
        );
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn collect_procs(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&entry.path(), pids);
            }
        }
    }
}

/// `/sys/fs/cgroup/<hierarchy>/<path>` directories that exist, e.g. of `/kubepods`.
pub fn dirs(path: &str) -> Result<Vec<PathBuf>, LabError> {
    Ok(hierarchies()?
        .into_iter()
        .map(|h| h.mount.join(path.trim_start_matches('/')))
        .filter(|dir| dir.exists())
        .collect())
}

/// A process's cgroup path per hierarchy, from /proc/<pid>/cgroup (read by procfs):
/// (controllers, path), controllers empty for cgroup2; empty when the process is gone.
pub fn of_process(pid: u32) -> Vec<(String, String)> {
    let Ok(pid) = i32::try_from(pid) else {
        return Vec::new();
    };
    Process::new(pid)
        .and_then(|process| process.cgroups())
        .map(|groups| {
            groups
                .into_iter()
                .map(|group| (group.controllers.join(","), group.pathname))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parents_follow_the_kubelet() {
        assert_eq!(Qos::of(true, true), Qos::Guaranteed);
        assert_eq!(Qos::of(true, false), Qos::Burstable);
        assert_eq!(Qos::of(false, false), Qos::BestEffort);
        assert_eq!(Qos::Guaranteed.cgroup_parent("u1"), "/kubepods/podu1");
        assert_eq!(
            Qos::Burstable.cgroup_parent("u1"),
            "/kubepods/burstable/podu1"
        );
        assert_eq!(
            Qos::BestEffort.cgroup_parent("u1"),
            "/kubepods/besteffort/podu1"
        );
    }
}
