//! Findings on disk, so that open findings and the last day of closed ones survive a crash
//! and a restart. redb: one file, copy-on-write B-trees, each commit durable.

use std::{
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use herd_proto::herd::v1 as pb;
use prost::Message as _;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use thiserror::Error;

/// Finding id → the finding, protobuf-encoded: the same bytes a client gets.
const FINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("findings");
const FILE: &str = "findings.redb";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the findings store {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
}

/// A change to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    Put(Box<pb::Finding>),
    Remove(String),
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `dir`, and returns what it holds.
    pub fn open(dir: &Path) -> Result<(Self, Vec<pb::Finding>), StoreError> {
        private_dir(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
        private_file(&path).map_err(|source| StoreError::Dir {
            path: path.clone(),
            source,
        })?;
        let err = |source: redb::Error| StoreError::Db {
            path: path.clone(),
            source,
        };
        let db = Database::create(&path).map_err(|e| err(e.into()))?;
        let store = Self {
            db,
            path: path.clone(),
        };
        // The table exists from the first open on, so that reads need no special case.
        store.apply(&[])?;
        let read = store.db.begin_read().map_err(|e| err(e.into()))?;
        let table = read.open_table(FINDINGS).map_err(|e| err(e.into()))?;
        let mut findings = Vec::new();
        for row in table.iter().map_err(|e| err(e.into()))? {
            let (_, value) = row.map_err(|e| err(e.into()))?;
            // A row that does not decode is skipped: the rest of the store is still good.
            if let Ok(finding) = pb::Finding::decode(value.value()) {
                findings.push(finding);
            }
        }
        Ok((store, findings))
    }

    /// Applies `ops` in one durable transaction.
    pub fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let err = |source: redb::Error| StoreError::Db {
            path: self.path.clone(),
            source,
        };
        let write = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = write.open_table(FINDINGS).map_err(|e| err(e.into()))?;
            for op in ops {
                match op {
                    StoreOp::Put(finding) => {
                        table
                            .insert(finding.id.as_str(), finding.encode_to_vec().as_slice())
                            .map_err(|e| err(e.into()))?;
                    }
                    StoreOp::Remove(id) => {
                        table.remove(id.as_str()).map_err(|e| err(e.into()))?;
                    }
                }
            }
        }
        write.commit().map_err(|e| err(e.into()))
    }
}

/// The data directory, made or kept mode 0700: the findings name every pod of the cluster.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // One made before becomes private too. A volume's mount point that is not ours (a
    // Kubernetes fsGroup volume: root's, group-writable) stays as it is; the store file in it
    // is private all the same.
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// The store's file, made mode 0600 before redb opens it (redb takes an empty file as a new
/// store), so that it is never readable by others, not even for an instant.
fn private_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str) -> pb::Finding {
        pb::Finding {
            id: id.into(),
            pod: "web-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn what_was_committed_is_there_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, found) = Store::open(dir.path()).unwrap();
            assert!(found.is_empty());
            store
                .apply(&[
                    StoreOp::Put(Box::new(finding("a"))),
                    StoreOp::Put(Box::new(finding("b"))),
                ])
                .unwrap();
            store.apply(&[StoreOp::Remove("a".into())]).unwrap();
        }
        let (_, found) = Store::open(dir.path()).unwrap();
        assert_eq!(found, [finding("b")]);
    }

    #[test]
    fn the_data_dir_and_the_store_are_the_owners_alone() {
        let parent = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let made = parent.path().join("new/data");
        Store::open(&made).unwrap();
        assert_eq!(mode(&made), 0o700);
        assert_eq!(mode(&made.join(FILE)), 0o600);

        // Left open to all by an older version or by hand: closed at the next start.
        let old = parent.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join(FILE), "").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(old.join(FILE), std::fs::Permissions::from_mode(0o666)).unwrap();
        Store::open(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join(FILE)), 0o600);
    }
}
