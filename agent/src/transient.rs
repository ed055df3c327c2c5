//! Faults that cost a window, never the agent: an eBPF map that cannot be read this window,
//! a `--record` disk that is full. Each is warned about once when it starts, counted every
//! time (operators see the totals in `/metrics`), and said to be over when it is.

use std::fmt::Display;

use tracing::{info, warn};

use crate::{
    collect::signals::{SignalSample, SignalSampler},
    discovery::cgroup2::CgroupIndex,
};

/// One kind of transient fault: how many times it happened, and whether it is going on.
#[derive(Debug)]
pub struct Transient {
    /// What failed, as the warning names it ("eBPF counters").
    what: &'static str,
    /// What the agent does instead, for the warning.
    instead: &'static str,
    /// Failures in a row; 0 while it works.
    in_a_row: u64,
    total: u64,
}

impl Transient {
    pub const fn new(what: &'static str, instead: &'static str) -> Self {
        Self {
            what,
            instead,
            in_a_row: 0,
            total: 0,
        }
    }

    /// The value of `result`, or `None` after a failure: warned at the first failure of a
    /// run of them, counted at each, and said to be over at the first success after.
    pub fn check<T, E: Display>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.in_a_row > 0 {
                    info!(
                        failures = self.in_a_row,
                        "{}: works again after {} failed windows", self.what, self.in_a_row
                    );
                    self.in_a_row = 0;
                }
                Some(value)
            }
            Err(err) => {
                if self.in_a_row == 0 {
                    warn!("{}: {err}; {}", self.what, self.instead);
                }
                self.in_a_row += 1;
                self.total += 1;
                None
            }
        }
    }

    /// Failures since the agent started.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Failures since the last success.
    pub fn in_a_row(&self) -> u64 {
        self.in_a_row
    }
}

/// This window's eBPF counters, or `None` when they are not loaded or cannot be read this
/// window (the failure goes to `faults`).
pub fn sample_signals(
    sampler: Option<&mut SignalSampler>,
    index: &mut CgroupIndex,
    faults: &mut Transient,
) -> Option<SignalSample> {
    faults.check(sampler?.sample(index))
}

/// The fault of reading the eBPF counter maps.
pub fn ebpf_reads() -> Transient {
    Transient::new(
        "reading the eBPF counters",
        "this window goes on without them",
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use herd_agent_common::{SyscallCounts, SyscallStats};

    use super::*;
    use crate::collect::{
        counters::{CounterMap, MapReadError},
        signals::SignalMaps,
    };

    /// A syscall map whose reads fail while the test says so.
    struct Flaky {
        failing: Arc<AtomicBool>,
        cgroup_id: u64,
        calls: std::sync::atomic::AtomicU64,
    }

    impl CounterMap for Flaky {
        type Value = SyscallStats;

        fn totals(&self) -> Result<Vec<(u64, SyscallStats)>, MapReadError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(MapReadError {
                    map: "SYSCALLS",
                    source: aya::maps::MapError::KeyNotFound,
                });
            }
            let calls = self.calls.fetch_add(10, Ordering::SeqCst) + 10;
            Ok(vec![(
                self.cgroup_id,
                SyscallStats {
                    counts: SyscallCounts { calls, failed: 0 },
                    ..Default::default()
                },
            )])
        }

        fn forget(&mut self, _: u64) -> Result<(), MapReadError> {
            Ok(())
        }
    }

    #[test]
    fn a_map_that_cannot_be_read_costs_its_windows_and_is_counted() {
        let root = tempfile::tempdir().unwrap();
        let cgroup_id = crate::collect::counters::fake::cgroup(root.path(), "web");
        let failing = Arc::new(AtomicBool::new(false));
        let mut sampler = SignalSampler::new(SignalMaps {
            syscalls: Some(Box::new(Flaky {
                failing: failing.clone(),
                cgroup_id,
                calls: 0.into(),
            })),
            ..SignalMaps::default()
        });
        let mut index = CgroupIndex::new(root.path());
        let mut faults = ebpf_reads();
        assert!(sample_signals(Some(&mut sampler), &mut index, &mut faults).is_some());

        failing.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            assert!(sample_signals(Some(&mut sampler), &mut index, &mut faults).is_none());
        }
        assert_eq!((faults.total(), faults.in_a_row()), (3, 3));

        failing.store(false, Ordering::SeqCst);
        let sample =
            sample_signals(Some(&mut sampler), &mut index, &mut faults).expect("readable again");
        assert_eq!(
            sample.cgroup(cgroup_id).map(|c| c.syscalls.counts.calls),
            Some(10),
            "the delta since the last good read"
        );
        assert_eq!((faults.total(), faults.in_a_row()), (3, 0));
    }

    #[test]
    fn no_sampler_is_no_fault() {
        let root = tempfile::tempdir().unwrap();
        let mut faults = ebpf_reads();
        let mut index = CgroupIndex::new(root.path());
        assert!(sample_signals(None, &mut index, &mut faults).is_none());
        assert_eq!(faults.total(), 0);
    }
}
