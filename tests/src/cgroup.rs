//! Cgroups made for a test, the bench or the lab, with limits, and removed when they end,
//! pass or fail: the one place where they are made.
//!
//! cgroups-rs is not used: its 0.5 release pulls zbus (D-Bus) in, and it takes
//! /sys/fs/cgroup as the cgroup2 root, while the hosts here are hybrid (v1 controllers, and
//! cgroup2 at /sys/fs/cgroup/unified with no controllers). The hierarchies come from the
//! mount table instead, and a limit is written in whichever hierarchy has its file.

use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use procfs::process::Process;
use thiserror::Error;

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The CFS period the CPU limit is given in (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// How long a cgroup whose last process just exited may stay busy before removal fails.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: no hierarchy it is in takes a {limit} limit")]
    NoController { path: String, limit: &'static str },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A mounted cgroup hierarchy: a v1 controller (or named hierarchy) or cgroup2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// `cpu`, `memory`, `name=systemd`, … or empty for cgroup2.
    pub controllers: String,
    pub mount: PathBuf,
}

impl Hierarchy {
    pub fn is_cgroup2(&self) -> bool {
        self.controllers.is_empty()
    }

    /// Whether this is the v1 hierarchy of `controller` (alone or with others).
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.split(',').any(|c| c == controller)
    }
}

/// Every cgroup hierarchy mounted below /sys/fs/cgroup, from this process's mount table
/// (parsed by procfs). An unreadable table is an error: an empty list would read as "no
/// cgroups".
pub fn hierarchies() -> Result<Vec<Hierarchy>, CgroupError> {
    let table = Process::myself()
        .and_then(|me| me.mountinfo())
        .map_err(|err| CgroupError::Io {
            path: MOUNTINFO.into(),
            source: io::Error::other(err),
        })?;
    Ok(table
        .into_iter()
        .filter(|m| m.mount_point.starts_with(CGROUP_ROOT))
        .filter_map(|m| {
            let controllers = match m.fs_type.as_str() {
                "cgroup2" => String::new(),
                "cgroup" => {
                    let mut options: Vec<String> = m
                        .super_options
                        .into_iter()
                        .filter(|(key, _)| !matches!(key.as_str(), "rw" | "ro"))
                        .filter(|(key, _)| !key.contains("xattr"))
                        .map(|(key, value)| match value {
                            Some(value) => format!("{key}={value}"),
                            None => key,
                        })
                        .collect();
                    options.sort();
                    options.join(",")
                }
                _ => return None,
            };
            Some(Hierarchy {
                controllers,
                mount: m.mount_point,
            })
        })
        .collect())
}

/// The hierarchies that hold any of `controllers`; `""` names cgroup2.
pub fn hierarchies_of(controllers: &[&str]) -> Result<Vec<Hierarchy>, CgroupError> {
    let mut chosen: Vec<Hierarchy> = Vec::new();
    for hierarchy in hierarchies()? {
        let wanted = controllers.iter().any(|c| match *c {
            "" => hierarchy.is_cgroup2(),
            c => hierarchy.has(c),
        });
        if wanted && !chosen.contains(&hierarchy) {
            chosen.push(hierarchy);
        }
    }
    Ok(chosen)
}

/// Limits as the kubelet gives them; each is written where its file is (v1 or cgroup2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU in thousandths of a core, as a CFS quota per 100 ms period.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub pids_max: Option<u64>,
}

impl Limits {
    /// (limit, file as cgroup2 names it, file as v1 names it, value), for the limits set.
    fn files(&self) -> Vec<(&'static str, &'static str, &'static str, String)> {
        let mut files = Vec::new();
        if let Some(millis) = self.cpu_millis {
            let quota = millis * CPU_PERIOD_US / 1000;
            files.push(("cpu", "cpu.max", "cpu.cfs_quota_us", quota.to_string()));
        }
        if let Some(bytes) = self.memory_bytes {
            files.push((
                "memory",
                "memory.max",
                "memory.limit_in_bytes",
                bytes.to_string(),
            ));
        }
        if let Some(max) = self.pids_max {
            files.push(("pids", "pids.max", "pids.max", max.to_string()));
        }
        files
    }
}

/// A cgroup directory this process made (or took over from a killed run); removed on drop,
/// after any process left in it is moved out, unless it is kept.
pub struct OwnedCgroup {
    path: PathBuf,
    /// Where leftover processes go before removal.
    evacuate_to: PathBuf,
    kept: bool,
}

impl OwnedCgroup {
    /// Makes `<parent>/herd-test-<name>-<pid>`.
    pub fn new(parent: &Path, name: &str) -> Result<Self, CgroupError> {
        Self::at(parent, &format!("herd-test-{name}-{}", std::process::id()))
    }

    /// Makes `<parent>/<name>` (and any missing directory on the way), or takes over one
    /// that a killed run left behind. Only the last directory is removed on drop.
    pub fn at(parent: &Path, name: &str) -> Result<Self, CgroupError> {
        let path = parent.join(name.trim_start_matches('/'));
        fs::create_dir_all(&path).map_err(io_error(&path))?;
        Ok(Self {
            path,
            evacuate_to: parent.join("cgroup.procs"),
            kept: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path below the cgroup2 mount, as the agent reports it (for one made directly
    /// below the mount).
    pub fn relative(&self) -> PathBuf {
        Path::new("/").join(self.path.file_name().expect("a named directory"))
    }

    /// The cgroup id: what `bpf_get_current_cgroup_id()` returns inside it.
    pub fn id(&self) -> Result<u64, CgroupError> {
        Ok(fs::metadata(&self.path)
            .map_err(io_error(&self.path))?
            .ino())
    }

    /// Moves a process into this cgroup.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        let procs = self.path.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(io_error(&procs))
    }

    /// Writes each limit whose file this cgroup has (cgroup2's name first, then v1's);
    /// returns the limits that were written.
    pub fn limit(&self, limits: &Limits) -> Result<Vec<&'static str>, CgroupError> {
        let mut written = Vec::new();
        for (limit, v2, v1, value) in limits.files() {
            let (file, value) = if self.path.join(v2).exists() {
                // cgroup2 takes the CPU quota and its period in one file.
                let value = match limit {
                    "cpu" => format!("{value} {CPU_PERIOD_US}"),
                    _ => value,
                };
                (self.path.join(v2), value)
            } else if self.path.join(v1).exists() {
                (self.path.join(v1), value)
            } else {
                continue;
            };
            fs::write(&file, value).map_err(io_error(&file))?;
            written.push(limit);
        }
        Ok(written)
    }

    /// Leaves the cgroup in place when this is dropped: someone else removes it.
    pub fn keep(mut self) {
        self.kept = true;
    }

    fn evacuate(&self) -> io::Result<()> {
        for pid in fs::read_to_string(self.path.join("cgroup.procs"))?.lines() {
            // A process may exit between the read and the move; that is as good as moved.
            let _ = fs::write(&self.evacuate_to, pid);
        }
        Ok(())
    }
}

impl Drop for OwnedCgroup {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // A cgroup can only be removed once empty: anything a failed test left running in
        // it goes up first. A process that has just exited can keep it busy a moment.
        let _ = self.evacuate();
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        loop {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return,
                Err(err)
                    if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(err) => {
                    eprintln!("cannot remove cgroup {}: {err}", self.path.display());
                    return;
                }
            }
        }
    }
}

/// One cgroup path made in several hierarchies (a container's cgroup on a hybrid host),
/// with limits; each directory is removed on drop unless kept.
pub struct OwnedCgroups {
    relative: String,
    cgroups: Vec<(Hierarchy, OwnedCgroup)>,
}

impl OwnedCgroups {
    /// Makes `relative` (a path below each mount, e.g. `/kubepods/pod1`) in each of
    /// `hierarchies` and writes `limits`. A limit that no hierarchy takes is an error: the
    /// cgroup would run unlimited where the caller asked for a limit.
    pub fn create(
        hierarchies: &[Hierarchy],
        relative: &str,
        limits: &Limits,
    ) -> Result<Self, CgroupError> {
        let mut cgroups = Vec::with_capacity(hierarchies.len());
        for hierarchy in hierarchies {
            let cgroup = OwnedCgroup::at(&hierarchy.mount, relative)?;
            cgroups.push((hierarchy.clone(), cgroup));
        }
        let made = Self {
            relative: relative.to_owned(),
            cgroups,
        };
        made.limit(limits)?;
        Ok(made)
    }

    /// The directory in each hierarchy.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.cgroups.iter().map(|(_, cgroup)| cgroup.path())
    }

    /// The directory in the cgroup2 hierarchy, if it was made there.
    pub fn cgroup2(&self) -> Option<&OwnedCgroup> {
        self.cgroups
            .iter()
            .find(|(h, _)| h.is_cgroup2())
            .map(|(_, cgroup)| cgroup)
    }

    /// Moves a process into the cgroup in every hierarchy.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        self.cgroups.iter().try_for_each(|(_, c)| c.add(pid))
    }

    /// Writes `limits`; each must be taken by one of the hierarchies.
    pub fn limit(&self, limits: &Limits) -> Result<(), CgroupError> {
        let mut written = Vec::new();
        for (_, cgroup) in &self.cgroups {
            written.extend(cgroup.limit(limits)?);
        }
        match limits.files().into_iter().find(|f| !written.contains(&f.0)) {
            Some((limit, ..)) => Err(CgroupError::NoController {
                path: self.relative.clone(),
                limit,
            }),
            None => Ok(()),
        }
    }

    /// Leaves every directory in place: someone else removes them.
    pub fn keep(self) {
        self.cgroups.into_iter().for_each(|(_, c)| c.keep());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake cgroup directory with the given limit files, as the kernel shows them.
    fn fake(files: &[&str]) -> (tempfile::TempDir, OwnedCgroup) {
        let root = tempfile::tempdir().unwrap();
        let cgroup = OwnedCgroup::at(root.path(), "c").unwrap();
        for file in files {
            fs::write(cgroup.path().join(file), "").unwrap();
        }
        (root, cgroup)
    }

    fn read(cgroup: &OwnedCgroup, file: &str) -> String {
        fs::read_to_string(cgroup.path().join(file)).unwrap()
    }

    #[test]
    fn limits_go_to_the_v1_files_in_a_v1_hierarchy() {
        let (_root, cgroup) = fake(&["cpu.cfs_quota_us", "memory.limit_in_bytes", "pids.max"]);
        let limits = Limits {
            cpu_millis: Some(500),
            memory_bytes: Some(64 << 20),
            pids_max: Some(100),
        };
        assert_eq!(cgroup.limit(&limits).unwrap(), ["cpu", "memory", "pids"]);
        assert_eq!(read(&cgroup, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cgroup, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&cgroup, "pids.max"), "100");
        cgroup.keep();
    }

    #[test]
    fn limits_go_to_the_cgroup2_files_where_the_controller_is_enabled() {
        let (_root, cgroup) = fake(&["cpu.max", "memory.max"]);
        let limits = Limits {
            cpu_millis: Some(1500),
            memory_bytes: Some(1 << 30),
            pids_max: Some(10),
        };
        assert_eq!(cgroup.limit(&limits).unwrap(), ["cpu", "memory"]);
        assert_eq!(read(&cgroup, "cpu.max"), "150000 100000");
        assert_eq!(read(&cgroup, "memory.max"), "1073741824");
        cgroup.keep();
    }

    #[test]
    fn a_limit_no_hierarchy_takes_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let memory = Hierarchy {
            controllers: "memory".into(),
            mount: root.path().to_path_buf(),
        };
        let limits = Limits {
            pids_max: Some(10),
            ..Limits::default()
        };
        let err = OwnedCgroups::create(&[memory], "/pod", &limits)
            .err()
            .expect("no pids hierarchy");
        assert!(
            matches!(err, CgroupError::NoController { limit: "pids", .. }),
            "{err}"
        );
        assert!(
            !root.path().join("pod").exists(),
            "the directory is removed again"
        );
    }

    #[test]
    fn a_kept_cgroup_stays_and_a_dropped_one_goes() {
        let root = tempfile::tempdir().unwrap();
        OwnedCgroup::at(root.path(), "kept/below").unwrap().keep();
        assert!(root.path().join("kept/below").is_dir());
        drop(OwnedCgroup::at(root.path(), "dropped").unwrap());
        assert!(!root.path().join("dropped").exists());
    }
}
