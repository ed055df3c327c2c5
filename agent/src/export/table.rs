//! The periodic "busiest cgroups" table, written to the log.

use std::fmt::Write as _;

use tracing::info;

use crate::collect::syscalls::{CgroupSyscalls, SyscallSample};

/// Lines of the table of the `top` cgroups by syscalls per second, header first; `name`
/// says what to call each cgroup (its container, or its path).
pub fn busiest(
    sample: &SyscallSample,
    top: usize,
    name: impl Fn(&CgroupSyscalls) -> String,
) -> Vec<String> {
    let mut rows: Vec<_> = sample.cgroups.iter().collect();
    rows.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.path.cmp(&b.path)));
    let mut lines = Vec::with_capacity(top.min(rows.len()) + 1);
    lines.push(format!(
        "{:>12} {:>12}  {}",
        "calls/s", "failed/s", "cgroup"
    ));
    for row in rows.into_iter().take(top) {
        let mut line = String::new();
        let _ = write!(
            line,
            "{:>12.0} {:>12.0}  {}",
            row.calls_per_second(sample.interval),
            row.failed_per_second(sample.interval),
            name(row)
        );
        lines.push(line);
    }
    lines
}

/// Logs the table, one event per line so that each stays whole in journald.
pub fn log_busiest(sample: &SyscallSample, top: usize, name: impl Fn(&CgroupSyscalls) -> String) {
    info!(
        target: crate::telemetry::TABLE_TARGET,
        cgroups = sample.cgroups.len(),
        interval_s = sample.interval.as_secs_f64(),
        "busiest cgroups by syscalls"
    );
    for line in busiest(sample, top, name) {
        info!(target: crate::telemetry::TABLE_TARGET, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::*;

    fn row(path: &str, calls: u64, failed: u64) -> CgroupSyscalls {
        CgroupSyscalls {
            cgroup_id: calls,
            path: PathBuf::from(path),
            calls,
            failed,
        }
    }

    #[test]
    fn busiest_cgroups_come_first_and_the_table_is_cut_at_top() {
        let sample = SyscallSample {
            interval: Duration::from_secs(2),
            cgroups: vec![
                row("/system.slice/quiet.service", 10, 0),
                row("/herd-demo", 2_000_000, 400),
                row("/user.slice", 500, 2),
            ],
        };
        let lines = busiest(&sample, 2, |row| row.path.display().to_string());
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("calls/s") && lines[0].contains("cgroup"));
        assert!(lines[1].ends_with("/herd-demo"), "{}", lines[1]);
        assert!(
            lines[1].contains("1000000"),
            "rates are per second: {}",
            lines[1]
        );
        assert!(lines[1].contains(" 200 "), "{}", lines[1]);
        assert!(lines[2].ends_with("/user.slice"));
    }
}
