//! A cgroup2 directory made for one test (or the demo) and removed when it ends, pass or
//! fail.

use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// A cgroup2 directory this process made; removed on drop.
pub struct OwnedCgroup {
    path: PathBuf,
    parent_procs: PathBuf,
}

impl OwnedCgroup {
    /// Makes `<mount>/herd-test-<name>-<pid>` below a cgroup2 mount.
    pub fn new(mount: &Path, name: &str) -> anyhow::Result<Self> {
        Self::at(mount, &format!("herd-test-{name}-{}", std::process::id()))
    }

    /// Makes `<mount>/<name>`, or takes over one that a killed run left behind.
    pub fn at(mount: &Path, name: &str) -> anyhow::Result<Self> {
        let path = mount.join(name);
        match fs::create_dir(&path) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
                return Err(err).with_context(|| format!("creating {}", path.display()));
            }
            _ => {}
        }
        Ok(Self {
            path,
            parent_procs: mount.join("cgroup.procs"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path below the cgroup2 mount, as the agent reports it.
    pub fn relative(&self) -> PathBuf {
        Path::new("/").join(self.path.file_name().expect("a named directory"))
    }

    /// The cgroup id: what `bpf_get_current_cgroup_id()` returns inside it.
    pub fn id(&self) -> anyhow::Result<u64> {
        Ok(fs::metadata(&self.path)?.ino())
    }

    /// Moves a process into this cgroup.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving pid {pid} into {}", self.path.display()))
    }

    fn evacuate(&self) -> io::Result<()> {
        for pid in fs::read_to_string(self.path.join("cgroup.procs"))?.lines() {
            // A process may exit between the read and the move; that is as good as moved.
            let _ = fs::write(&self.parent_procs, pid);
        }
        Ok(())
    }
}

impl Drop for OwnedCgroup {
    fn drop(&mut self) {
        // A cgroup can only be removed once empty: anything a failed test left running in it
        // goes back to the root cgroup first.
        let _ = self.evacuate();
        if let Err(err) = fs::remove_dir(&self.path)
            && err.kind() != io::ErrorKind::NotFound
        {
            eprintln!("cannot remove test cgroup {}: {err}", self.path.display());
        }
    }
}
