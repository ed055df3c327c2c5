//! Findings in the log, and so in the host's journal: one entry when a finding opens, one when
//! it escalates to critical, one when it closes; none while it stays open. Each entry carries
//! fields an operator filters on (`journalctl -t herd-agent HERD_NAMESPACE=shop -p warning`),
//! and a level the journal maps to a priority: critical is `crit`, warning `warning`, closed
//! `notice`.

use std::collections::HashMap;

use tracing::{error, info, warn};

use crate::{
    detect::{Finding, Severity, WindowReport},
    discovery::containers::ContainerTable,
};

/// What the log has said of each open finding, so that it says each change once.
#[derive(Debug, Default)]
pub struct FindingLogger {
    /// The severity last logged, per open finding.
    logged: HashMap<String, Severity>,
}

/// Which entry a finding gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Opened,
    Escalated,
    Closed,
}

impl Entry {
    fn state(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Escalated => "escalated",
            Self::Closed => "closed",
        }
    }
}

impl FindingLogger {
    /// Logs what changed in this window; returns the entries, in order.
    pub fn log(&mut self, report: &WindowReport, table: &ContainerTable) -> Vec<(Entry, String)> {
        let mut entries = Vec::new();
        for finding in &report.opened {
            self.logged.insert(finding.id.clone(), finding.severity);
            entries.push((Entry::Opened, finding));
        }
        for finding in &report.updated {
            if let Some(logged) = self.logged.get_mut(&finding.id)
                && finding.severity > *logged
            {
                *logged = finding.severity;
                entries.push((Entry::Escalated, finding));
            }
        }
        for finding in &report.closed {
            self.logged.remove(&finding.id);
            entries.push((Entry::Closed, finding));
        }
        for (entry, finding) in &entries {
            let container = table
                .get(&finding.subject.entity)
                .and_then(|c| c.name.as_deref());
            emit(*entry, finding, container);
        }
        entries
            .into_iter()
            .map(|(entry, finding)| (entry, finding.id.clone()))
            .collect()
    }
}

fn emit(entry: Entry, finding: &Finding, container: Option<&str>) {
    let s = &finding.subject;
    let top = finding.drivers.first().map(|d| d.feature.as_str());
    macro_rules! entry {
        ($level:ident, $($message:tt)+) => {
            $level!(
                target: crate::telemetry::FINDING_TARGET,
                herd_finding_id = %finding.id,
                herd_kind = finding.kind.name(),
                herd_state = entry.state(),
                herd_severity = %finding.severity,
                herd_score = format!("{:.1}", finding.peak_score),
                herd_top_feature = top,
                herd_namespace = s.namespace.as_deref(),
                herd_pod = s.pod.as_deref(),
                herd_container = container,
                herd_container_id = %s.entity,
                herd_domain = %s.domain,
                herd_node = %s.node,
                $($message)+
            )
        };
    }
    match (entry, finding.severity) {
        (Entry::Closed, _) => entry!(info, "finding closed: {finding}"),
        (Entry::Escalated, _) => entry!(error, "finding escalated: {finding}"),
        (Entry::Opened, Severity::Critical) => entry!(error, "{finding}"),
        (Entry::Opened, Severity::Warning) => entry!(warn, "{finding}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::detect::Subject;

    fn finding(severity: Severity, closed: bool) -> Finding {
        Finding {
            kind: crate::detect::Kind::Member,
            id: "f1".into(),
            subject: Subject {
                entity: "c".into(),
                pod: Some("web-1".into()),
                namespace: Some("shop".into()),
                domain: "shop/Deployment/web/app".into(),
                node: "n".into(),
            },
            severity,
            opened: UNIX_EPOCH,
            updated: UNIX_EPOCH,
            closed: closed.then_some(UNIX_EPOCH + Duration::from_secs(60)),
            peak_score: 5.0,
            drivers: Vec::new(),
        }
    }

    #[test]
    fn a_finding_that_stays_open_is_logged_once_and_once_more_when_it_escalates() {
        let dir = tempfile::tempdir().unwrap();
        let table = ContainerTable::new(dir.path(), dir.path(), Duration::ZERO);
        let mut logger = FindingLogger::default();
        let window = |opened, updated, closed| WindowReport {
            opened,
            updated,
            closed,
            ..WindowReport::default()
        };
        let opened = logger.log(
            &window(vec![finding(Severity::Warning, false)], vec![], vec![]),
            &table,
        );
        assert_eq!(opened, [(Entry::Opened, "f1".to_owned())]);
        for _ in 0..5 {
            let quiet = logger.log(
                &window(vec![], vec![finding(Severity::Warning, false)], vec![]),
                &table,
            );
            assert!(quiet.is_empty(), "no entry while it stays as it was");
        }
        let escalated = logger.log(
            &window(vec![], vec![finding(Severity::Critical, false)], vec![]),
            &table,
        );
        assert_eq!(escalated, [(Entry::Escalated, "f1".to_owned())]);
        let again = logger.log(
            &window(vec![], vec![finding(Severity::Critical, false)], vec![]),
            &table,
        );
        assert!(again.is_empty());
        let closed = logger.log(
            &window(vec![], vec![], vec![finding(Severity::Critical, true)]),
            &table,
        );
        assert_eq!(closed, [(Entry::Closed, "f1".to_owned())]);
        assert!(logger.logged.is_empty(), "nothing kept of closed findings");
    }
}
