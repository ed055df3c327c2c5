//! Turns cgroup ids, as eBPF sees them, into cgroup2 paths.
//!
//! `bpf_get_current_cgroup_id()` returns the inode number of the task's cgroup2 directory, so
//! a walk of the cgroup2 mount that records each directory's inode is the whole index. The
//! walk runs only when an id is unknown; a known id is confirmed with one `stat` of its path,
//! which also tells when the cgroup is gone. An index scoped to a node's cgroup root walks
//! only below it: cgroups elsewhere stay unknown, as those of another node.

use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use tracing::{debug, warn};

/// An index from cgroup id to the cgroup's path relative to the cgroup2 mount (`/` is the
/// root cgroup).
#[derive(Debug)]
pub struct CgroupIndex {
    mount: PathBuf,
    /// Where the walk starts, relative to the mount.
    root: PathBuf,
    by_id: HashMap<u64, PathBuf>,
}

impl CgroupIndex {
    pub fn new(mount: impl Into<PathBuf>) -> Self {
        Self::scoped(mount, "/")
    }

    /// An index of the cgroups at `root` (relative to the mount, e.g. a node's
    /// `--cgroup-root`) and below it; paths stay relative to the mount.
    pub fn scoped(mount: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Self {
            mount: mount.into(),
            root: root.into(),
            by_id: HashMap::new(),
        }
    }

    /// The mount point this index walks.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Brings the index up to date for these ids: each known one is confirmed with a `stat`,
    /// and the hierarchy is walked once if any is unknown or gone.
    pub fn refresh(&mut self, ids: impl IntoIterator<Item = u64>) {
        let mut stale = false;
        for id in ids {
            stale |= !self.confirm(id);
        }
        if stale {
            self.rescan();
        }
    }

    /// The path of an indexed cgroup, as of the last refresh.
    pub fn get(&self, id: u64) -> Option<&Path> {
        self.by_id.get(&id).map(PathBuf::as_path)
    }

    /// Whether `id` is indexed and its directory still carries that id.
    pub fn confirm(&mut self, id: u64) -> bool {
        let Some(relative) = self.by_id.get(&id) else {
            return false;
        };
        let alive = fs::metadata(self.absolute(relative)).is_ok_and(|meta| meta.ino() == id);
        if !alive {
            self.by_id.remove(&id);
        }
        alive
    }

    /// Every indexed cgroup, as of the last walk.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Path)> {
        self.by_id.iter().map(|(id, path)| (*id, path.as_path()))
    }

    /// Walks the whole hierarchy and rebuilds the index.
    pub fn rescan(&mut self) {
        let mut by_id = HashMap::with_capacity(self.by_id.len());
        let mut pending = vec![Path::new("/").join(&self.root)];
        while let Some(relative) = pending.pop() {
            let dir = self.absolute(&relative);
            match fs::metadata(&dir) {
                Ok(meta) => {
                    by_id.insert(meta.ino(), relative.clone());
                }
                // Cgroups come and go during the walk: a vanished one is simply not indexed.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => {
                    warn!(dir = %dir.display(), %err, "cannot stat cgroup directory");
                    continue;
                }
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    pending.push(relative.join(entry.file_name()));
                }
            }
        }
        debug!(cgroups = by_id.len(), mount = %self.mount.display(), "indexed cgroup2 hierarchy");
        self.by_id = by_id;
    }

    fn absolute(&self, relative: &Path) -> PathBuf {
        self.mount
            .join(relative.strip_prefix("/").unwrap_or(relative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(path: &Path) -> u64 {
        fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn resolves_nested_directories_to_paths_relative_to_the_mount() {
        let root = tempfile::tempdir().unwrap();
        let pod = root.path().join("kubepods/burstable/pod1234");
        fs::create_dir_all(pod.join("cri-containerd-abc")).unwrap();
        let mut index = CgroupIndex::new(root.path());
        let container = ino(&pod.join("cri-containerd-abc"));
        index.refresh([container, ino(root.path())]);

        assert_eq!(
            index.get(container),
            Some(Path::new("/kubepods/burstable/pod1234/cri-containerd-abc"))
        );
        assert_eq!(index.get(ino(root.path())), Some(Path::new("/")));
    }

    #[test]
    fn a_removed_cgroup_no_longer_resolves() {
        let root = tempfile::tempdir().unwrap();
        let gone = root.path().join("gone");
        fs::create_dir(&gone).unwrap();
        let mut index = CgroupIndex::new(root.path());
        let id = ino(&gone);
        index.refresh([id]);
        assert!(index.get(id).is_some());

        fs::remove_dir(&gone).unwrap();
        index.refresh([id]);
        assert_eq!(index.get(id), None);
    }

    #[test]
    fn a_new_cgroup_is_found_by_a_lookup_after_the_first_walk() {
        let root = tempfile::tempdir().unwrap();
        let mut index = CgroupIndex::new(root.path());
        index.rescan();
        let late = root.path().join("late");
        fs::create_dir(&late).unwrap();
        index.refresh([ino(&late)]);
        assert_eq!(index.get(ino(&late)), Some(Path::new("/late")));
    }

    #[test]
    fn a_scoped_index_sees_only_its_root() {
        let root = tempfile::tempdir().unwrap();
        let ours = root.path().join("nodes/a/kubepods/pod1");
        let theirs = root.path().join("nodes/b/kubepods/pod2");
        fs::create_dir_all(&ours).unwrap();
        fs::create_dir_all(&theirs).unwrap();
        let mut index = CgroupIndex::scoped(root.path(), "/nodes/a");
        index.refresh([ino(&ours), ino(&theirs)]);
        assert_eq!(
            index.get(ino(&ours)),
            Some(Path::new("/nodes/a/kubepods/pod1"))
        );
        assert_eq!(index.get(ino(&theirs)), None);
        assert_eq!(index.get(ino(root.path())), None);
    }

    #[test]
    fn unknown_ids_resolve_to_nothing() {
        let root = tempfile::tempdir().unwrap();
        let mut index = CgroupIndex::new(root.path());
        index.refresh([u64::MAX]);
        assert_eq!(index.get(u64::MAX), None);
    }
}
