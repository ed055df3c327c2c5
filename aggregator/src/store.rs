//! Findings on disk, so that open findings and the last day of closed ones survive a crash
//! and a restart. redb: one file, copy-on-write B-trees, each commit durable.

use std::path::{Path, PathBuf};

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
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
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
}
