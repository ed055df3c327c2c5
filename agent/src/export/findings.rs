//! Findings in the log: one warning when a finding opens, one line when it closes.

use tracing::{info, warn};

use crate::detect::WindowReport;

pub fn log_report(report: &WindowReport) {
    for finding in &report.opened {
        warn!(
            target: "herd::finding",
            entity = %finding.subject.entity,
            domain = %finding.subject.domain,
            severity = %finding.severity,
            "{finding}"
        );
    }
    for finding in &report.closed {
        info!(
            target: "herd::finding",
            entity = %finding.subject.entity,
            domain = %finding.subject.domain,
            "finding closed: {finding}"
        );
    }
}
