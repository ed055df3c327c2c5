//! The cluster's findings: the aggregator's own and the nodes', open and recently closed, a
//! broadcast of every change for `WatchFindings`, and the store behind them. Bounded: closed
//! findings for a day and at most a fixed number; a watcher that falls behind is dropped.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use herd_detect::proto::{from_timestamp, timestamp};
use herd_proto::herd::v1 as pb;
use tokio::sync::broadcast;
use tracing::warn;

use crate::store::{Store, StoreOp};

#[derive(Debug, Clone, Copy)]
pub struct BookLimits {
    pub closed: usize,
    pub closed_for: Duration,
    pub watch_queue: usize,
}

impl Default for BookLimits {
    fn default() -> Self {
        Self {
            closed: 10_000,
            closed_for: Duration::from_secs(24 * 3600),
            watch_queue: 1024,
        }
    }
}

pub struct FindingBook {
    limits: BookLimits,
    open: BTreeMap<String, pb::Finding>,
    /// Oldest first.
    closed: VecDeque<pb::Finding>,
    changes: broadcast::Sender<Arc<pb::FindingEvent>>,
    store: Option<Store>,
    pending: Vec<StoreOp>,
}

impl FindingBook {
    /// A book with what `store` held: open findings stay open, closed ones are kept as long
    /// as the limits allow.
    pub fn new(limits: BookLimits, store: Option<(Store, Vec<pb::Finding>)>) -> Self {
        let (changes, _) = broadcast::channel(limits.watch_queue.max(1));
        let mut book = Self {
            limits,
            open: BTreeMap::new(),
            closed: VecDeque::new(),
            changes,
            store: None,
            pending: Vec::new(),
        };
        if let Some((store, findings)) = store {
            let mut closed = Vec::new();
            for finding in findings {
                if finding.closed.is_some() {
                    closed.push(finding);
                } else {
                    book.open.insert(finding.id.clone(), finding);
                }
            }
            closed.sort_by_key(|f| f.closed.as_ref().and_then(from_timestamp));
            book.closed = closed.into();
            book.store = Some(store);
        }
        book
    }

    /// Opens a finding, or updates it if it is open and has changed.
    pub fn upsert(&mut self, finding: pb::Finding) {
        let kind = match self.open.get(&finding.id) {
            Some(known) if *known == finding => return,
            Some(_) => pb::FindingEventKind::Updated,
            None => pb::FindingEventKind::Opened,
        };
        self.open.insert(finding.id.clone(), finding.clone());
        self.publish(kind, finding);
    }

    /// Closes an open finding at `at`.
    pub fn close(&mut self, id: &str, at: SystemTime) {
        let Some(mut finding) = self.open.remove(id) else {
            return;
        };
        finding.state = pb::FindingState::Closed.into();
        finding.closed = Some(timestamp(at));
        self.closed.push_back(finding.clone());
        self.publish(pb::FindingEventKind::Closed, finding);
    }

    fn publish(&mut self, kind: pb::FindingEventKind, finding: pb::Finding) {
        self.pending.push(StoreOp::Put(Box::new(finding.clone())));
        let _ = self.changes.send(Arc::new(pb::FindingEvent {
            kind: kind.into(),
            finding: Some(finding),
        }));
    }

    /// Drops closed findings past the limits, and persists this round's changes.
    pub fn commit(&mut self, now: SystemTime) {
        let oldest = now.checked_sub(self.limits.closed_for);
        while self.closed.len() > self.limits.closed
            || self.closed.front().is_some_and(|f| {
                let closed = f.closed.as_ref().and_then(from_timestamp);
                oldest
                    .zip(closed)
                    .is_some_and(|(oldest, closed)| closed < oldest)
            })
        {
            if let Some(gone) = self.closed.pop_front() {
                self.pending.push(StoreOp::Remove(gone.id));
            }
        }
        if let Some(store) = &self.store
            && !self.pending.is_empty()
            && let Err(err) = store.apply(&self.pending)
        {
            // The findings are still served from memory; the next commit tries again.
            warn!("{err}; the store missed this round's changes");
            return;
        }
        self.pending.clear();
    }

    pub fn open(&self) -> impl Iterator<Item = &pb::Finding> {
        self.open.values()
    }

    pub fn get_open(&self, id: &str) -> Option<&pb::Finding> {
        self.open.get(id)
    }

    /// Open and kept closed findings, newest opening first.
    pub fn all(&self) -> Vec<&pb::Finding> {
        let mut all: Vec<&pb::Finding> = self.open.values().chain(&self.closed).collect();
        all.sort_by(|a, b| {
            let opened = |f: &pb::Finding| f.opened.as_ref().and_then(from_timestamp);
            opened(b).cmp(&opened(a)).then_with(|| b.id.cmp(&a.id))
        });
        all
    }

    /// The open findings and a receiver of every change after them, taken together.
    pub fn watch(&self) -> (Vec<pb::Finding>, broadcast::Receiver<Arc<pb::FindingEvent>>) {
        (
            self.open.values().cloned().collect(),
            self.changes.subscribe(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn finding(id: &str, score: f64) -> pb::Finding {
        pb::Finding {
            id: id.into(),
            peak_score: score,
            opened: Some(timestamp(UNIX_EPOCH + Duration::from_secs(10))),
            state: pb::FindingState::Open.into(),
            ..Default::default()
        }
    }

    #[test]
    fn open_findings_and_recent_closed_ones_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(100);
        {
            let mut book = FindingBook::new(
                BookLimits::default(),
                Some(Store::open(dir.path()).unwrap()),
            );
            book.upsert(finding("open", 5.0));
            book.upsert(finding("closed", 5.0));
            book.close("closed", now);
            book.commit(now);
        }
        let book = FindingBook::new(
            BookLimits::default(),
            Some(Store::open(dir.path()).unwrap()),
        );
        assert_eq!(
            book.open().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            ["open"]
        );
        let all: Vec<&str> = book.all().iter().map(|f| f.id.as_str()).collect();
        assert_eq!(all.len(), 2);
        assert!(all.contains(&"closed"));
    }

    #[test]
    fn an_unchanged_finding_is_no_event_and_a_changed_one_is_an_update() {
        let mut book = FindingBook::new(BookLimits::default(), None);
        let (_, mut changes) = book.watch();
        book.upsert(finding("a", 5.0));
        book.upsert(finding("a", 5.0));
        book.upsert(finding("a", 6.0));
        let kinds: Vec<i32> = std::iter::from_fn(|| changes.try_recv().ok())
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                pb::FindingEventKind::Opened as i32,
                pb::FindingEventKind::Updated as i32
            ]
        );
    }

    #[test]
    fn closed_findings_past_the_limits_leave_memory_and_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BookLimits {
            closed: 2,
            ..BookLimits::default()
        };
        let now = UNIX_EPOCH + Duration::from_secs(100);
        {
            let mut book = FindingBook::new(limits, Some(Store::open(dir.path()).unwrap()));
            for id in ["a", "b", "c"] {
                book.upsert(finding(id, 5.0));
                book.close(id, now);
            }
            book.commit(now);
            assert_eq!(book.all().len(), 2);
        }
        let (_, stored) = Store::open(dir.path()).unwrap();
        assert_eq!(stored.len(), 2, "the store is bounded too");
    }
}
