//! What the agent needs from the host before it loads anything, checked up front so that a
//! missing piece is one plain sentence instead of a failed syscall deep inside a loader.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use procfs::process::MountInfo;
use thiserror::Error;
use tracing::debug;

/// Where the host's kernel interfaces are mounted. Tests point this at a temporary tree.
#[derive(Clone, Debug)]
pub struct HostPaths {
    /// The proc file system, normally `/proc`.
    pub proc: PathBuf,
    /// The kernel's BTF description, normally `/sys/kernel/btf/vmlinux`.
    pub btf: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            proc: PathBuf::from("/proc"),
            btf: PathBuf::from("/sys/kernel/btf/vmlinux"),
        }
    }
}

/// What the preflight found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Mount point of the cgroup2 hierarchy (`/sys/fs/cgroup` on a pure v2 host,
    /// `/sys/fs/cgroup/unified` on a hybrid one).
    pub cgroup2: PathBuf,
    /// Mount point of each v1 controller (`memory` → `/sys/fs/cgroup/memory`); empty on a
    /// pure v2 host.
    pub cgroup_v1: HashMap<String, PathBuf>,
}

#[derive(Debug, Error)]
pub enum PreflightError {
    #[error(
        "herd-agent must run as root to load eBPF programs and read every cgroup \
         (running as uid {0})"
    )]
    NotRoot(u32),
    #[error(
        "this kernel has no BTF description at {0} (CONFIG_DEBUG_INFO_BTF=y is needed for \
         Herd's eBPF programs)"
    )]
    NoBtf(PathBuf),
    #[error("cannot read the mount table at {path}: {source}")]
    Mountinfo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no cgroup2 file system is mounted (looked in {0}); Herd needs the unified \
         hierarchy, alone or beside v1 controllers"
    )]
    NoCgroup2(PathBuf),
}

/// Checks that the agent can run here at all: root and a cgroup2 mount. What eBPF needs
/// beyond that is [`check_btf`]'s: without it the agent runs on cgroup counters alone.
pub fn preflight(paths: &HostPaths, euid: u32) -> Result<Host, PreflightError> {
    if euid != 0 {
        return Err(PreflightError::NotRoot(euid));
    }
    cgroup_mounts(&paths.proc)
}

/// Whether the kernel describes itself in BTF, which Herd's eBPF programs need.
pub fn check_btf(paths: &HostPaths) -> Result<(), PreflightError> {
    if paths.btf.is_file() {
        Ok(())
    } else {
        Err(PreflightError::NoBtf(paths.btf.clone()))
    }
}

/// tracefs at `/sys/kernel/tracing`, which programs on classic tracepoints attach through
/// (block IO, OOM kills): mounted by the agent when nothing had mounted it, and unmounted
/// again when the agent stops, so the host is left as it was.
#[derive(Debug)]
pub struct Tracefs {
    mounted_here: bool,
}

/// Where the agent looks for tracefs, and mounts it when nothing has.
pub const TRACEFS: &str = "/sys/kernel/tracing";

impl Tracefs {
    pub fn ensure() -> std::io::Result<Self> {
        let mounted = [TRACEFS, "/sys/kernel/debug/tracing"]
            .iter()
            .any(|dir| Path::new(dir).join("events").is_dir());
        if mounted {
            return Ok(Self {
                mounted_here: false,
            });
        }
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL in a constant");
        let (source, target, fstype) = (c("nodev"), c(TRACEFS), c("tracefs"));
        // SAFETY: the strings are NUL-terminated and outlive the call; no data argument.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { mounted_here: true })
    }

    /// Whether this value mounted tracefs (and will unmount it).
    pub fn mounted_here(&self) -> bool {
        self.mounted_here
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if self.mounted_here {
            let target = std::ffi::CString::new(TRACEFS).expect("no NUL in a constant");
            // SAFETY: a NUL-terminated path that outlives the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Finds the cgroup2 mount point from `<proc>/self/mountinfo`.
pub fn cgroup2_mount(proc: &Path) -> Result<PathBuf, PreflightError> {
    Ok(cgroup_mounts(proc)?.cgroup2)
}

/// Finds the cgroup2 mount and the v1 controller mounts from `<proc>/self/mountinfo`.
pub fn cgroup_mounts(proc: &Path) -> Result<Host, PreflightError> {
    let path = proc.join("self/mountinfo");
    let text = fs::read_to_string(&path).map_err(|source| PreflightError::Mountinfo {
        path: path.clone(),
        source,
    })?;
    mounts_from(&text).ok_or(PreflightError::NoCgroup2(path))
}

/// The cgroup mounts of a mountinfo table's text; `None` without a cgroup2 mount.
pub fn mounts_from(mountinfo: &str) -> Option<Host> {
    let mounts = mount_table(mountinfo);
    Some(Host {
        cgroup2: find_cgroup2(&mounts)?,
        cgroup_v1: find_cgroup_v1(&mounts),
    })
}

/// The mounts of a mountinfo table, read by procfs, with their mount points unescaped:
/// procfs leaves mountinfo's `\ooo` escapes (space, tab, newline, backslash) in place. A line
/// procfs cannot read is passed over, so that one odd mount does not hide the cgroup ones.
pub fn mount_table(mountinfo: &str) -> Vec<MountInfo> {
    mountinfo
        .lines()
        .filter_map(|line| match MountInfo::from_line(line) {
            Ok(mut mount) => {
                let point = unescape_octal(&mount.mount_point.to_string_lossy());
                mount.mount_point = PathBuf::from(point);
                Some(mount)
            }
            Err(err) => {
                debug!(line, %err, "passing over a mountinfo line procfs cannot read");
                None
            }
        })
        .collect()
}

/// The mount point of the first cgroup2 mount.
fn find_cgroup2(mounts: &[MountInfo]) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|mount| mount.fs_type == "cgroup2")
        .map(|mount| mount.mount_point.clone())
}

/// The v1 controllers; the other options of a cgroup mount (`rw`, `xattr`, `noprefix`, …)
/// are not.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The v1 controllers and where each is mounted; a hierarchy mounted with several
/// controllers (`cpu,cpuacct`) gives one entry per controller, named hierarchies
/// (`name=systemd`) none.
fn find_cgroup_v1(mounts: &[MountInfo]) -> HashMap<String, PathBuf> {
    let mut found = HashMap::new();
    for mount in mounts.iter().filter(|mount| mount.fs_type == "cgroup") {
        for option in mount.super_options.keys() {
            if V1_CONTROLLERS.contains(&option.as_str()) {
                found
                    .entry(option.clone())
                    .or_insert_with(|| mount.mount_point.clone());
            }
        }
    }
    found
}

/// Mount points in mountinfo escape space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match escaped {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
33 31 0:28 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
";

    #[test]
    fn finds_the_unified_mount_on_a_hybrid_host() {
        assert_eq!(
            find_cgroup2(&mount_table(HYBRID)),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_the_mount_with_no_optional_fields_and_escaped_spaces() {
        let line = "40 1 0:30 / /mnt/my\\040cgroups rw - cgroup2 none rw\n";
        assert_eq!(
            find_cgroup2(&mount_table(line)),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
    }

    #[test]
    fn v1_controllers_one_entry_each() {
        let text = format!(
            "{HYBRID}34 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        );
        let mounts = find_cgroup_v1(&mount_table(&text));
        assert_eq!(mounts["cpu"], PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(
            mounts["cpuacct"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert!(!mounts.contains_key("name=systemd") && !mounts.contains_key("xattr"));
        assert_eq!(mounts.len(), 2, "{mounts:?}");
    }

    #[test]
    fn v1_only_hosts_have_no_cgroup2() {
        let v1_only: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(find_cgroup2(&mount_table(&v1_only)), None);
    }

    #[test]
    fn a_line_procfs_cannot_read_hides_no_other() {
        let text = format!("garbage\n40 1 0:30 / /x rw - cgroup2\n{HYBRID}");
        let host = mounts_from(&text).unwrap();
        assert_eq!(host.cgroup2, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(host.cgroup_v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu"));
    }

    fn fake_host(mountinfo: &str, btf: bool) -> (tempfile::TempDir, HostPaths) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        fs::write(dir.path().join("proc/self/mountinfo"), mountinfo).unwrap();
        let btf_path = dir.path().join("vmlinux");
        if btf {
            fs::write(&btf_path, b"BTF").unwrap();
        }
        let paths = HostPaths {
            proc: dir.path().join("proc"),
            btf: btf_path,
        };
        (dir, paths)
    }

    #[test]
    fn preflight_names_each_missing_piece() {
        let (_dir, paths) = fake_host(HYBRID, true);
        let err = preflight(&paths, 1000).unwrap_err();
        assert!(err.to_string().contains("must run as root"), "{err}");

        let (_dir, paths) = fake_host(HYBRID, false);
        let err = check_btf(&paths).unwrap_err();
        assert!(err.to_string().contains("no BTF description"), "{err}");
        assert!(
            preflight(&paths, 0).is_ok(),
            "no BTF is no eBPF, not no agent"
        );

        let (_dir, paths) = fake_host("25 30 0:23 / /sys rw - sysfs sysfs rw\n", true);
        let err = preflight(&paths, 0).unwrap_err();
        assert!(err.to_string().contains("no cgroup2 file system"), "{err}");

        let (_dir, paths) = fake_host(HYBRID, true);
        let host = preflight(&paths, 0).unwrap();
        assert_eq!(host.cgroup2, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(host.cgroup_v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu"));
    }
}
