//! Cgroup paths as a walk of the hierarchy finds them: any bytes a cgroup name can hold,
//! below any node cgroup root.
#![no_main]

use std::{ffi::OsStr, os::unix::ffi::OsStrExt as _, path::Path};

use herd_agent::discovery::cgroup_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data)
        && let Some(container) = cgroup_path::parse(path)
    {
        assert_eq!(container.id.len(), 64, "a container id is 64 hex digits");
        assert_eq!(container.pod_uid.is_some(), container.qos.is_some());
    }
    // The first line is the node's cgroup root, the rest the path: neither need be UTF-8.
    let (root, path) = match data.iter().position(|b| *b == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (&b"/"[..], data),
    };
    let _ = cgroup_path::parse_below(
        Path::new(OsStr::from_bytes(root)),
        Path::new(OsStr::from_bytes(path)),
    );
});
