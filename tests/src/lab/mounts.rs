//! Mount points, from /proc/self/mountinfo, and detaching them. The one mountinfo reader of
//! the lab: the cgroup hierarchies come from here too.

use std::{fs, path::PathBuf};

use super::LabError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo: what the lab needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Unescaped.
    pub point: String,
    pub fstype: String,
    /// The filesystem's own options (for a v1 cgroup hierarchy, its controllers).
    pub super_options: String,
}

/// Every mount of this process's mount namespace. Unreadable mountinfo is an error: an
/// empty list would read as "nothing mounted".
pub fn table() -> Result<Vec<Mount>, LabError> {
    let text = fs::read_to_string(MOUNTINFO).map_err(LabError::io(MOUNTINFO))?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <point> <options> [optional…] - <fstype> <source> <super options>"
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let super_options = right.nth(1)?;
            Some(Mount {
                point: unescape(point),
                fstype: fstype.to_owned(),
                super_options: super_options.to_owned(),
            })
        })
        .collect()
}

/// All mount points, unescaped.
pub fn points() -> Result<Vec<String>, LabError> {
    Ok(table()?.into_iter().map(|m| m.point).collect())
}

pub fn is_mount_point(path: &str) -> Result<bool, LabError> {
    Ok(points()?.iter().any(|p| p == path))
}

impl Mount {
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.point)
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\` and three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0')));
        match octal.and_then(|n| u8::try_from(n).ok()) {
            Some(byte) => {
                out.push(byte);
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
    fn mountinfo_lines_are_split_and_unescaped() {
        let text = "\
35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:9 master:2 - cgroup2 cgroup2 rw,nsdelegate
90 1 0:52 / /run/a\\040b\\134c rw - tmpfs tmpfs rw
";
        let mounts = parse(text);
        assert_eq!(
            mounts[0],
            Mount {
                point: "/sys/fs/cgroup/memory".into(),
                fstype: "cgroup".into(),
                super_options: "rw,memory".into(),
            }
        );
        assert_eq!(mounts[1].fstype, "cgroup2");
        assert_eq!(mounts[2].point, "/run/a b\\c");
    }
}
