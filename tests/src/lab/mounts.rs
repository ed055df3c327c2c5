//! Mount points, from /proc/self/mountinfo, and detaching them.

use std::fs;

/// All mount points, unescaped.
pub fn points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(unescape)
        .collect()
}

pub fn is_mount_point(path: &str) -> bool {
    points().iter().any(|p| p == path)
}

/// mountinfo escapes spaces and a few other bytes as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
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
