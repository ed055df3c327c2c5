//! The findings the API serves: those open now and the most recent closed ones, and a
//! broadcast of every change for `WatchFindings`. Bounded on both sides: a fixed number of
//! closed findings for a fixed time, and a fixed queue per watcher, past which the watcher is
//! dropped rather than the agent slowed.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use herd_proto::herd::v1 as pb;
use tokio::sync::broadcast;

use crate::{
    api::convert,
    detect::{Finding, WindowReport},
};

/// A finding with what the API shows of its container, kept after the container is gone.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingRecord {
    pub finding: Finding,
    /// Container name within the pod.
    pub container: Option<String>,
    pub image: Option<String>,
}

/// Limits of the log.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Closed findings kept, newest first.
    pub closed: usize,
    /// How long a closed finding is kept.
    pub closed_for: Duration,
    /// Changes a watcher may fall behind before it is dropped.
    pub watch_queue: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            closed: 1000,
            closed_for: Duration::from_secs(24 * 3600),
            watch_queue: 256,
        }
    }
}

pub struct FindingLog {
    limits: LogLimits,
    open: BTreeMap<String, FindingRecord>,
    /// Newest last.
    closed: VecDeque<FindingRecord>,
    changes: broadcast::Sender<Arc<pb::FindingEvent>>,
}

impl FindingLog {
    pub fn new(limits: LogLimits) -> Self {
        let (changes, _) = broadcast::channel(limits.watch_queue.max(1));
        Self {
            limits,
            open: BTreeMap::new(),
            closed: VecDeque::new(),
            changes,
        }
    }

    /// Takes in one window's openings, updates and closings; `describe` gives the container
    /// name and image of an entity that is still there.
    pub fn apply(
        &mut self,
        report: &WindowReport,
        now: SystemTime,
        describe: impl Fn(&str) -> (Option<String>, Option<String>),
    ) {
        let record = |finding: &Finding| {
            let (container, image) = describe(&finding.subject.entity);
            FindingRecord {
                finding: finding.clone(),
                container,
                image,
            }
        };
        for finding in &report.opened {
            let record = record(finding);
            self.open.insert(finding.id.clone(), record.clone());
            self.publish(pb::FindingEventKind::Opened, &record);
        }
        for finding in &report.updated {
            if let Some(known) = self.open.get_mut(&finding.id) {
                known.finding = finding.clone();
                let record = known.clone();
                self.publish(pb::FindingEventKind::Updated, &record);
            }
        }
        for finding in &report.closed {
            // The container may be gone already: keep what was known of it.
            let mut record = self
                .open
                .remove(&finding.id)
                .unwrap_or_else(|| record(finding));
            record.finding = finding.clone();
            self.closed.push_back(record.clone());
            self.publish(pb::FindingEventKind::Closed, &record);
        }
        let oldest = now.checked_sub(self.limits.closed_for);
        while self.closed.len() > self.limits.closed
            || self.closed.front().is_some_and(|r| {
                oldest.is_some_and(|oldest| r.finding.closed.is_some_and(|c| c < oldest))
            })
        {
            self.closed.pop_front();
        }
    }

    fn publish(&self, kind: pb::FindingEventKind, record: &FindingRecord) {
        if self.changes.receiver_count() == 0 {
            return;
        }
        // No watcher is not an error: the change is simply not sent.
        let _ = self.changes.send(Arc::new(pb::FindingEvent {
            kind: kind.into(),
            finding: Some(convert::finding(record)),
        }));
    }

    pub fn open(&self) -> impl Iterator<Item = &FindingRecord> {
        self.open.values()
    }

    /// Open and kept closed findings, newest opening first.
    pub fn all(&self) -> Vec<&FindingRecord> {
        let mut all: Vec<&FindingRecord> = self.open.values().chain(&self.closed).collect();
        all.sort_by(|a, b| {
            b.finding
                .opened
                .cmp(&a.finding.opened)
                .then_with(|| b.finding.id.cmp(&a.finding.id))
        });
        all
    }

    /// The findings open now and a receiver of every change after them: taken together, so
    /// that nothing falls between the two.
    pub fn watch(&self) -> (Vec<pb::Finding>, broadcast::Receiver<Arc<pb::FindingEvent>>) {
        (
            self.open.values().map(convert::finding).collect(),
            self.changes.subscribe(),
        )
    }

    /// Drops every watcher: they see the end of the stream.
    pub fn close_watches(&mut self) {
        let (changes, _) = broadcast::channel(self.limits.watch_queue.max(1));
        self.changes = changes;
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::detect::{Severity, Subject};

    fn finding(id: &str, opened: u64, closed: Option<u64>) -> Finding {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        Finding {
            kind: crate::detect::Kind::Member,
            id: id.into(),
            subject: Subject {
                entity: format!("entity-{id}"),
                pod: Some("web-1".into()),
                namespace: Some("shop".into()),
                domain: "shop/Deployment/web/app".into(),
                node: "n".into(),
            },
            severity: Severity::Warning,
            opened: at(opened),
            updated: at(opened),
            closed: closed.map(at),
            peak_score: 5.0,
            drivers: Vec::new(),
        }
    }

    fn describe(_: &str) -> (Option<String>, Option<String>) {
        (Some("app".into()), Some("img".into()))
    }

    #[test]
    fn a_watcher_sees_what_was_open_then_every_change() {
        let mut log = FindingLog::new(LogLimits::default());
        let now = UNIX_EPOCH + Duration::from_secs(100);
        log.apply(
            &WindowReport {
                opened: vec![finding("a", 10, None)],
                ..WindowReport::default()
            },
            now,
            describe,
        );
        let (open, mut changes) = log.watch();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].container, "app");
        log.apply(
            &WindowReport {
                opened: vec![finding("b", 20, None)],
                closed: vec![finding("a", 10, Some(30))],
                ..WindowReport::default()
            },
            now,
            |_| (None, None),
        );
        let first = changes.try_recv().unwrap();
        let id = |e: &pb::FindingEvent| e.finding.as_ref().unwrap().id.clone();
        assert_eq!(
            (first.kind, id(&first)),
            (pb::FindingEventKind::Opened as i32, "b".to_owned())
        );
        let second = changes.try_recv().unwrap();
        assert_eq!(second.kind, pb::FindingEventKind::Closed as i32);
        assert_eq!(
            second.finding.as_ref().unwrap().container,
            "app",
            "a closed finding keeps what was known of its container"
        );
        assert_eq!(log.open().count(), 1);
        let ids: Vec<&str> = log.all().iter().map(|r| r.finding.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "newest opening first");
    }

    #[test]
    fn closed_findings_are_bounded_in_number_and_age() {
        let mut log = FindingLog::new(LogLimits {
            closed: 3,
            closed_for: Duration::from_secs(1000),
            watch_queue: 4,
        });
        let closed: Vec<Finding> = (0..5)
            .map(|i| finding(&i.to_string(), i, Some(i + 1)))
            .collect();
        let now = UNIX_EPOCH + Duration::from_secs(10);
        log.apply(
            &WindowReport {
                closed,
                ..WindowReport::default()
            },
            now,
            describe,
        );
        assert_eq!(log.all().len(), 3);
        // Closed at 3, 4 and 5 s; at 1004 s the one closed at 3 s is over 1000 s old.
        log.apply(
            &WindowReport::default(),
            now + Duration::from_secs(994),
            describe,
        );
        let ids: Vec<&str> = log.all().iter().map(|r| r.finding.id.as_str()).collect();
        assert_eq!(ids, ["4", "3"], "closed more than 1000 s ago: gone");
    }

    #[test]
    fn a_watcher_that_falls_behind_learns_it() {
        let mut log = FindingLog::new(LogLimits {
            watch_queue: 2,
            ..LogLimits::default()
        });
        let (_, mut changes) = log.watch();
        let opened: Vec<Finding> = (0..5).map(|i| finding(&i.to_string(), i, None)).collect();
        log.apply(
            &WindowReport {
                opened,
                ..WindowReport::default()
            },
            UNIX_EPOCH,
            describe,
        );
        assert!(matches!(
            changes.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        ));
    }
}
