//! Mount points, from /proc/self/mountinfo, and detaching them (`crate::cgroup` finds the
//! cgroup hierarchies in the same table, through procfs). procfs parses the table; it leaves
//! mountinfo's `\ooo` escapes in mount points, which the lab's own paths (no spaces, tabs,
//! newlines or backslashes) never hold, so they are compared as the kernel writes them.

use procfs::process::Process;

use super::LabError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One mount of this process's mount namespace: what the lab needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub point: String,
    pub fstype: String,
    /// The filesystem's own options, sorted (for a v1 cgroup hierarchy, its controllers
    /// among them).
    pub super_options: Vec<String>,
}

/// Every mount of this process's mount namespace. Unreadable mountinfo is an error: an
/// empty list would read as "nothing mounted".
pub fn table() -> Result<Vec<Mount>, LabError> {
    let mounts = Process::myself()
        .and_then(|me| me.mountinfo())
        .map_err(|err| LabError::io(MOUNTINFO)(std::io::Error::other(err)))?;
    Ok(mounts
        .into_iter()
        .map(|mount| {
            let mut super_options: Vec<String> = mount
                .super_options
                .into_iter()
                .map(|(key, value)| match value {
                    Some(value) => format!("{key}={value}"),
                    None => key,
                })
                .collect();
            super_options.sort();
            Mount {
                point: mount.mount_point.to_string_lossy().into_owned(),
                fstype: mount.fs_type,
                super_options,
            }
        })
        .collect())
}

/// All mount points.
pub fn points() -> Result<Vec<String>, LabError> {
    Ok(table()?.into_iter().map(|m| m.point).collect())
}

pub fn is_mount_point(path: &str) -> Result<bool, LabError> {
    Ok(points()?.iter().any(|p| p == path))
}

/// Detaches the mount at `path`; a mount still in use goes once its last user does.
pub fn unmount(path: &str) {
    let Ok(c_path) = std::ffi::CString::new(path) else {
        return;
    };
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        eprintln!("    umount {path}: {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_a_root_mount_and_proc() {
        let mounts = table().unwrap();
        assert!(mounts.iter().any(|m| m.point == "/"), "{mounts:#?}");
        let proc = mounts
            .iter()
            .find(|m| m.point == "/proc")
            .expect("/proc mounted");
        assert_eq!(proc.fstype, "proc");
    }
}
