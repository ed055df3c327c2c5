//! Syscalls per cgroup with their failures split by errno class (the eBPF `sys_exit` map).

use herd_agent_common::{SyscallCounts, SyscallErrors, SyscallStats};

use crate::collect::counters::impl_counters;

impl_counters!(SyscallCounts { calls, failed });
impl_counters!(SyscallErrors {
    again,
    interrupted,
    not_found,
    bad_call,
    denied,
    other,
});
impl_counters!(SyscallStats { counts, errors });

/// The errno classes in a fixed order, with the names the agent reports them by.
pub fn error_classes(errors: &SyscallErrors) -> [(&'static str, u64); 6] {
    [
        ("again", errors.again),
        ("interrupted", errors.interrupted),
        ("not_found", errors.not_found),
        ("bad_call", errors.bad_call),
        ("denied", errors.denied),
        ("other", errors.other),
    ]
}

/// Failed calls per call, or `None` without calls: load-normalised, so that peers under
/// different load compare.
pub fn failure_ratio(counts: &SyscallCounts) -> Option<f64> {
    (counts.calls > 0).then(|| counts.failed as f64 / counts.calls as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::counters::Counters as _;

    #[test]
    fn classes_are_summed_and_differenced_with_the_counts() {
        let before = SyscallStats {
            counts: SyscallCounts {
                calls: 10,
                failed: 2,
            },
            errors: SyscallErrors {
                again: 1,
                bad_call: 1,
                ..Default::default()
            },
        };
        let now = SyscallStats {
            counts: SyscallCounts {
                calls: 30,
                failed: 5,
            },
            errors: SyscallErrors {
                again: 3,
                bad_call: 1,
                denied: 1,
                ..Default::default()
            },
        };
        let delta = now.since(before);
        assert_eq!(
            delta.counts,
            SyscallCounts {
                calls: 20,
                failed: 3
            }
        );
        let classes = error_classes(&delta.errors);
        assert_eq!(classes[0], ("again", 2));
        assert_eq!(classes[3], ("bad_call", 0));
        assert_eq!(classes[4], ("denied", 1));
        assert_eq!(failure_ratio(&delta.counts), Some(0.15));
        assert_eq!(failure_ratio(&SyscallCounts::default()), None);
    }
}
