//! Block IO per cgroup (the eBPF block maps): bios and bytes counted in the submitter's
//! context, request latency and failures matched at completion and charged back to it.

use std::time::Duration;

use herd_agent_common::{BlockCounts, BlockDirection};

use crate::collect::counters::impl_counters;

impl_counters!(BlockDirection {
    ops,
    bytes,
    completed,
    latency_ns,
    failed,
});
impl_counters!(BlockCounts {
    read,
    write,
    discard,
});

/// Mean submit-to-completion time of the requests completed in the interval.
pub fn mean_latency(direction: &BlockDirection) -> Option<Duration> {
    (direction.completed > 0)
        .then(|| Duration::from_nanos(direction.latency_ns / direction.completed))
}

/// Every direction together.
pub fn total(counts: &BlockCounts) -> BlockDirection {
    crate::collect::counters::sum_cpus(&[counts.read, counts.write, counts.discard])
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::{
        collect::counters::{DeltaSampler, fake::*},
        discovery::cgroup2::CgroupIndex,
    };

    fn written(ops: u64, bytes: u64, completed: u64, latency_ns: u64) -> BlockCounts {
        BlockCounts {
            write: BlockDirection {
                ops,
                bytes,
                completed,
                latency_ns,
                failed: 0,
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_interval_reports_its_own_requests_and_their_mean_latency() {
        let root = tempfile::tempdir().unwrap();
        let db = cgroup(root.path(), "db");
        let mut index = CgroupIndex::new(root.path());
        let mut map = FakeMap::default();
        map.totals.insert(db, written(10, 40_960, 10, 10_000_000));
        let mut sampler = DeltaSampler::new(map);
        sampler.sample(&mut index).unwrap();

        let mut now = written(30, 122_880, 30, 50_000_000);
        now.write.failed = 2;
        let rows = sampler.deltas(vec![(db, now)], &index);
        let (id, delta) = rows[0];
        assert_eq!(id, db);
        assert_eq!((delta.write.ops, delta.write.bytes), (20, 81_920));
        assert_eq!(delta.write.failed, 2);
        assert_eq!(mean_latency(&delta.write), Some(Duration::from_millis(2)));
        assert_eq!(mean_latency(&delta.read), None);
        assert_eq!(total(&delta).ops, 20);

        fs::remove_dir(root.path().join("db")).unwrap();
        index.refresh([db]);
        assert!(sampler.deltas(vec![(db, now)], &index).is_empty());
        assert!(!sampler.tracks(db));
    }
}
