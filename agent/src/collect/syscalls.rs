//! Syscalls per cgroup per tick: totals from the kernel's counters turned into deltas, each
//! labelled with its cgroup2 path. Entries of cgroups that are gone are removed from the
//! kernel map and from here, so memory follows the live cgroups and nothing else.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use herd_agent_common::SyscallCounts;
use thiserror::Error;
use tracing::{debug, warn};

use crate::discovery::cgroup2::CgroupIndex;

#[derive(Debug, Error)]
#[error("reading the syscall counters: {0}")]
pub struct CounterError(#[from] aya::maps::MapError);

/// Where per-cgroup syscall totals come from: the kernel map in the agent, a fake in tests.
pub trait SyscallCounters {
    /// Totals per cgroup id since the entry was created, summed over CPUs.
    fn totals(&self) -> Result<Vec<(u64, SyscallCounts)>, CounterError>;
    /// Drops the entry of a cgroup that no longer exists.
    fn forget(&mut self, cgroup_id: u64) -> Result<(), CounterError>;
}

/// Adds up the per-CPU slots of one map value.
pub fn sum_cpus(per_cpu: &[SyscallCounts]) -> SyscallCounts {
    per_cpu
        .iter()
        .fold(SyscallCounts::default(), |sum, cpu| SyscallCounts {
            calls: sum.calls.wrapping_add(cpu.calls),
            failed: sum.failed.wrapping_add(cpu.failed),
        })
}

/// Syscalls that returned in one cgroup during one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupSyscalls {
    /// The cgroup id (inode of the cgroup2 directory).
    pub cgroup_id: u64,
    /// Path below the cgroup2 mount; `/` is the root cgroup.
    pub path: PathBuf,
    pub calls: u64,
    pub failed: u64,
}

impl CgroupSyscalls {
    pub fn calls_per_second(&self, interval: Duration) -> f64 {
        per_second(self.calls, interval)
    }

    pub fn failed_per_second(&self, interval: Duration) -> f64 {
        per_second(self.failed, interval)
    }
}

fn per_second(count: u64, interval: Duration) -> f64 {
    let secs = interval.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// One reading of every cgroup that made syscalls.
#[derive(Clone, Debug)]
pub struct SyscallSample {
    /// Time since the previous reading (or since the sampler was made).
    pub interval: Duration,
    pub cgroups: Vec<CgroupSyscalls>,
}

impl SyscallSample {
    /// The reading of one cgroup, if it made syscalls.
    pub fn cgroup(&self, cgroup_id: u64) -> Option<&CgroupSyscalls> {
        self.cgroups.iter().find(|row| row.cgroup_id == cgroup_id)
    }
}

/// Reads the counters each tick and turns them into per-interval deltas.
pub struct SyscallSampler<C> {
    counters: C,
    index: CgroupIndex,
    last: HashMap<u64, SyscallCounts>,
    last_at: Instant,
}

impl<C: SyscallCounters> SyscallSampler<C> {
    pub fn new(counters: C, index: CgroupIndex) -> Self {
        Self {
            counters,
            index,
            last: HashMap::new(),
            last_at: Instant::now(),
        }
    }

    /// Whether the sampler keeps state for this cgroup.
    pub fn tracks(&self, cgroup_id: u64) -> bool {
        self.last.contains_key(&cgroup_id)
    }

    /// Reads the counters and returns what changed since the previous call.
    pub fn sample(&mut self) -> Result<SyscallSample, CounterError> {
        let totals = self.counters.totals()?;
        let now = Instant::now();
        let interval = now.duration_since(self.last_at);
        self.last_at = now;

        self.index.refresh(totals.iter().map(|(id, _)| *id));
        let mut cgroups = Vec::with_capacity(totals.len());
        let mut live = HashMap::with_capacity(totals.len());
        for (cgroup_id, total) in totals {
            let Some(path) = self.index.get(cgroup_id) else {
                // A cgroup can only be removed once it is empty, so its counts are final.
                debug!(cgroup_id, "cgroup is gone; dropping its counters");
                if let Err(err) = self.counters.forget(cgroup_id) {
                    warn!(cgroup_id, %err, "cannot drop the counters of a removed cgroup");
                }
                continue;
            };
            let before = self.last.get(&cgroup_id).copied().unwrap_or_default();
            let (calls, failed) = (
                delta(before.calls, total.calls),
                delta(before.failed, total.failed),
            );
            live.insert(cgroup_id, total);
            if calls > 0 || failed > 0 {
                cgroups.push(CgroupSyscalls {
                    cgroup_id,
                    path: path.to_path_buf(),
                    calls,
                    failed,
                });
            }
        }
        self.last = live;
        Ok(SyscallSample { interval, cgroups })
    }
}

/// The increase of a counter; a counter that went down was reset (its entry was removed and
/// made again), so all of its current value is new.
fn delta(before: u64, now: u64) -> u64 {
    if now >= before { now - before } else { now }
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::MetadataExt as _, path::Path};

    use super::*;

    #[derive(Default)]
    struct FakeCounters {
        totals: HashMap<u64, SyscallCounts>,
        forgotten: Vec<u64>,
    }

    impl SyscallCounters for &mut FakeCounters {
        fn totals(&self) -> Result<Vec<(u64, SyscallCounts)>, CounterError> {
            Ok(self.totals.iter().map(|(id, c)| (*id, *c)).collect())
        }

        fn forget(&mut self, cgroup_id: u64) -> Result<(), CounterError> {
            self.totals.remove(&cgroup_id);
            self.forgotten.push(cgroup_id);
            Ok(())
        }
    }

    fn counts(calls: u64, failed: u64) -> SyscallCounts {
        SyscallCounts { calls, failed }
    }

    fn cgroup(root: &Path, name: &str) -> u64 {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::metadata(dir).unwrap().ino()
    }

    #[test]
    fn per_cpu_slots_are_added_up() {
        assert_eq!(
            sum_cpus(&[counts(3, 1), counts(0, 0), counts(7, 2)]),
            counts(10, 3)
        );
        assert_eq!(sum_cpus(&[]), counts(0, 0));
    }

    #[test]
    fn each_sample_reports_what_changed_since_the_previous_one() {
        let root = tempfile::tempdir().unwrap();
        let web = cgroup(root.path(), "web");
        let mut fake = FakeCounters::default();
        fake.totals.insert(web, counts(100, 4));
        let mut sampler = SyscallSampler::new(&mut fake, CgroupIndex::new(root.path()));

        let first = sampler.sample().unwrap();
        let row = first.cgroup(web).unwrap();
        assert_eq!((row.calls, row.failed), (100, 4));
        assert_eq!(row.path, Path::new("/web"));

        sampler.counters.totals.insert(web, counts(250, 5));
        let second = sampler.sample().unwrap();
        let row = second.cgroup(web).unwrap();
        assert_eq!((row.calls, row.failed), (150, 1));

        let idle = sampler.sample().unwrap();
        assert!(idle.cgroup(web).is_none(), "no syscalls, no row");
    }

    #[test]
    fn a_reset_counter_counts_from_zero() {
        let root = tempfile::tempdir().unwrap();
        let web = cgroup(root.path(), "web");
        let mut fake = FakeCounters::default();
        fake.totals.insert(web, counts(1000, 10));
        let mut sampler = SyscallSampler::new(&mut fake, CgroupIndex::new(root.path()));
        sampler.sample().unwrap();

        sampler.counters.totals.insert(web, counts(30, 1));
        let row = sampler.sample().unwrap().cgroup(web).cloned().unwrap();
        assert_eq!((row.calls, row.failed), (30, 1));
    }

    #[test]
    fn removed_cgroups_are_forgotten_in_the_map_and_in_the_sampler() {
        let root = tempfile::tempdir().unwrap();
        let keep = cgroup(root.path(), "keep");
        let gone = cgroup(root.path(), "gone");
        let mut fake = FakeCounters::default();
        fake.totals.insert(keep, counts(10, 0));
        fake.totals.insert(gone, counts(20, 0));
        let mut sampler = SyscallSampler::new(&mut fake, CgroupIndex::new(root.path()));
        sampler.sample().unwrap();
        assert!(sampler.tracks(keep) && sampler.tracks(gone));

        fs::remove_dir(root.path().join("gone")).unwrap();
        let sample = sampler.sample().unwrap();
        assert!(sample.cgroup(gone).is_none());
        assert!(sampler.tracks(keep) && !sampler.tracks(gone));
        assert_eq!(fake.forgotten, vec![gone]);
        assert!(!fake.totals.contains_key(&gone));
    }

    #[test]
    fn rates_are_per_second_of_the_interval() {
        let row = CgroupSyscalls {
            cgroup_id: 1,
            path: PathBuf::from("/"),
            calls: 500,
            failed: 50,
        };
        let interval = Duration::from_millis(2500);
        assert_eq!(row.calls_per_second(interval), 200.0);
        assert_eq!(row.failed_per_second(interval), 20.0);
        assert_eq!(row.calls_per_second(Duration::ZERO), 0.0);
    }
}
