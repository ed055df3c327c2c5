//! Run-queue latency per cgroup (the eBPF scheduler map): how long the cgroup's tasks waited
//! for a CPU after they became runnable, as CPU saturation.

use std::time::Duration;

use herd_agent_common::SchedCounts;

use crate::collect::counters::impl_counters;

impl_counters!(SchedCounts {
    waits,
    wait_ns,
    long_waits,
});

/// Mean wait for a CPU in the interval.
pub fn mean_wait(counts: &SchedCounts) -> Option<Duration> {
    (counts.waits > 0).then(|| Duration::from_nanos(counts.wait_ns / counts.waits))
}

/// Share of waits longer than `herd_agent_common::SCHED_LONG_WAIT_NS`.
pub fn long_wait_share(counts: &SchedCounts) -> Option<f64> {
    (counts.waits > 0).then(|| counts.long_waits as f64 / counts.waits as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::counters::Counters as _;

    #[test]
    fn mean_and_tail_come_from_the_interval_only() {
        let before = SchedCounts {
            waits: 100,
            wait_ns: 1_000_000,
            long_waits: 0,
        };
        let now = SchedCounts {
            waits: 300,
            wait_ns: 401_000_000,
            long_waits: 50,
        };
        let delta = now.since(before);
        assert_eq!(mean_wait(&delta), Some(Duration::from_millis(2)));
        assert_eq!(long_wait_share(&delta), Some(0.25));
        assert_eq!(mean_wait(&SchedCounts::default()), None);
    }
}
