//! What every eBPF counter map has in common: per-CPU totals per cgroup id, summed over CPUs,
//! turned into per-interval deltas, with the entries of vanished cgroups removed from the
//! kernel map and from here so that memory follows the live cgroups and nothing else.

use std::collections::HashMap;

use thiserror::Error;
use tracing::{debug, warn};

use crate::discovery::cgroup2::CgroupIndex;

#[derive(Debug, Error)]
#[error("reading eBPF map {map}: {source}")]
pub struct MapReadError {
    pub map: &'static str,
    pub source: aya::maps::MapError,
}

/// A value made of monotonic counters.
pub trait Counters: Copy + Default + PartialEq {
    /// Field-wise sum, wrapping (used to add up the per-CPU slots of one value).
    fn sum(self, other: Self) -> Self;
    /// Field-wise `self - before`, or `None` when any field went down: the entry was removed
    /// and made again since `before` was read.
    fn checked_since(self, before: Self) -> Option<Self>;

    /// Whether nothing was counted.
    fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// What was counted between `before` and `self`; after a reset, all of `self` is new.
    fn since(self, before: Self) -> Self {
        self.checked_since(before).unwrap_or(self)
    }
}

impl Counters for u64 {
    fn sum(self, other: Self) -> Self {
        self.wrapping_add(other)
    }

    fn checked_since(self, before: Self) -> Option<Self> {
        self.checked_sub(before)
    }
}

/// Implements [`Counters`] for a struct whose fields all implement it.
macro_rules! impl_counters {
    ($ty:ty { $($field:ident),+ $(,)? }) => {
        impl $crate::collect::counters::Counters for $ty {
            fn sum(self, other: Self) -> Self {
                Self { $($field: $crate::collect::counters::Counters::sum(self.$field, other.$field)),+ }
            }

            fn checked_since(self, before: Self) -> Option<Self> {
                Some(Self {
                    $($field: $crate::collect::counters::Counters::checked_since(
                        self.$field,
                        before.$field,
                    )?),+
                })
            }
        }
    };
}
pub(crate) use impl_counters;

/// Adds up the per-CPU slots of one map value.
pub fn sum_cpus<V: Counters>(per_cpu: &[V]) -> V {
    per_cpu.iter().fold(V::default(), |sum, cpu| sum.sum(*cpu))
}

/// Where per-cgroup totals come from: a kernel map in the agent, a fake in tests.
pub trait CounterMap {
    type Value: Counters;

    /// Totals per cgroup id since the entry was created, summed over CPUs.
    fn totals(&self) -> Result<Vec<(u64, Self::Value)>, MapReadError>;
    /// Drops the entry of a cgroup that no longer exists.
    fn forget(&mut self, cgroup_id: u64) -> Result<(), MapReadError>;
}

impl<M: CounterMap + ?Sized> CounterMap for Box<M> {
    type Value = M::Value;

    fn totals(&self) -> Result<Vec<(u64, Self::Value)>, MapReadError> {
        (**self).totals()
    }

    fn forget(&mut self, cgroup_id: u64) -> Result<(), MapReadError> {
        (**self).forget(cgroup_id)
    }
}

/// Turns one map's totals into per-interval deltas.
pub struct DeltaSampler<M: CounterMap> {
    map: M,
    last: HashMap<u64, M::Value>,
    /// Whether a failed removal was warned about: a mass removal says so once, not per cgroup.
    forget_warned: bool,
    /// Entries the kernel map held at the last read, less those removed then.
    entries: usize,
}

impl<M: CounterMap> DeltaSampler<M> {
    pub fn new(map: M) -> Self {
        Self {
            map,
            last: HashMap::new(),
            forget_warned: false,
            entries: 0,
        }
    }

    /// Entries the map holds as of the last [`Self::deltas`]: what was read, less the
    /// entries of gone cgroups removed then.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Whether the sampler keeps state for this cgroup.
    pub fn tracks(&self, cgroup_id: u64) -> bool {
        self.last.contains_key(&cgroup_id)
    }

    /// Reads the map's totals, for [`Self::deltas`].
    pub fn read(&self) -> Result<Vec<(u64, M::Value)>, MapReadError> {
        self.map.totals()
    }

    /// What changed since the previous call, per live cgroup with anything counted. Entries of
    /// cgroups the index no longer knows are removed: a cgroup can only be removed once it is
    /// empty, so their counts are final. `index` must have been refreshed with these ids.
    pub fn deltas(
        &mut self,
        totals: Vec<(u64, M::Value)>,
        index: &CgroupIndex,
    ) -> Vec<(u64, M::Value)> {
        let mut changed = Vec::new();
        let mut live = HashMap::with_capacity(totals.len());
        self.entries = totals.len();
        for (cgroup_id, total) in totals {
            if index.get(cgroup_id).is_none() {
                debug!(cgroup_id, "cgroup is gone; dropping its counters");
                let forgotten = self.map.forget(cgroup_id);
                if forgotten.is_ok() {
                    self.entries -= 1;
                }
                if let Err(err) = forgotten {
                    if self.forget_warned {
                        debug!(cgroup_id, %err, "cannot drop the counters of a removed cgroup");
                    } else {
                        warn!(
                            cgroup_id,
                            %err,
                            "cannot drop the counters of a removed cgroup; further failures \
                             are logged at debug"
                        );
                        self.forget_warned = true;
                    }
                }
                continue;
            }
            let before = self.last.get(&cgroup_id).copied().unwrap_or_default();
            let delta = total.since(before);
            live.insert(cgroup_id, total);
            if !delta.is_zero() {
                changed.push((cgroup_id, delta));
            }
        }
        self.last = live;
        changed
    }

    /// Reads, refreshes the index with what was read, and returns the deltas.
    pub fn sample(
        &mut self,
        index: &mut CgroupIndex,
    ) -> Result<Vec<(u64, M::Value)>, MapReadError> {
        let totals = self.read()?;
        index.refresh(totals.iter().map(|(id, _)| *id));
        Ok(self.deltas(totals, index))
    }
}

/// A map in memory, for unit tests of the samplers.
#[cfg(test)]
pub(crate) mod fake {
    use std::{collections::HashMap, fs, os::unix::fs::MetadataExt as _, path::Path};

    use super::{CounterMap, Counters, MapReadError};

    #[derive(Default)]
    pub struct FakeMap<V> {
        pub totals: HashMap<u64, V>,
        pub forgotten: Vec<u64>,
    }

    impl<V: Counters> CounterMap for FakeMap<V> {
        type Value = V;

        fn totals(&self) -> Result<Vec<(u64, V)>, MapReadError> {
            Ok(self.totals.iter().map(|(id, v)| (*id, *v)).collect())
        }

        fn forget(&mut self, cgroup_id: u64) -> Result<(), MapReadError> {
            self.totals.remove(&cgroup_id);
            self.forgotten.push(cgroup_id);
            Ok(())
        }
    }

    /// Makes a directory standing for a cgroup and returns its id (inode).
    pub fn cgroup(root: &Path, name: &str) -> u64 {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::metadata(dir).unwrap().ino()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::{fake::*, *};

    #[derive(Clone, Copy, Debug, Default, PartialEq)]
    struct Pair {
        a: u64,
        b: u64,
    }
    impl_counters!(Pair { a, b });

    #[test]
    fn per_cpu_slots_are_added_up() {
        let slots = [Pair { a: 1, b: 2 }, Pair::default(), Pair { a: 3, b: 4 }];
        assert_eq!(sum_cpus(&slots), Pair { a: 4, b: 6 });
        assert_eq!(sum_cpus::<Pair>(&[]), Pair::default());
    }

    #[test]
    fn a_field_that_went_down_means_the_whole_entry_is_new() {
        let before = Pair { a: 100, b: 5 };
        assert_eq!(Pair { a: 150, b: 5 }.since(before), Pair { a: 50, b: 0 });
        // `a` grew, but `b` went down: the entry was made again, so all of it is new.
        assert_eq!(Pair { a: 120, b: 1 }.since(before), Pair { a: 120, b: 1 });
    }

    #[test]
    fn deltas_between_samples_and_no_row_without_change() {
        let root = tempfile::tempdir().unwrap();
        let web = cgroup(root.path(), "web");
        let mut index = CgroupIndex::new(root.path());
        let mut map = FakeMap::default();
        map.totals.insert(web, Pair { a: 10, b: 1 });
        let mut sampler = DeltaSampler::new(map);

        assert_eq!(
            sampler.sample(&mut index).unwrap(),
            vec![(web, Pair { a: 10, b: 1 })]
        );
        sampler.map.totals.insert(web, Pair { a: 15, b: 1 });
        assert_eq!(
            sampler.sample(&mut index).unwrap(),
            vec![(web, Pair { a: 5, b: 0 })]
        );
        assert!(sampler.sample(&mut index).unwrap().is_empty());
        assert!(sampler.tracks(web));
    }

    #[test]
    fn vanished_cgroups_are_forgotten_in_the_map_and_here() {
        let root = tempfile::tempdir().unwrap();
        let keep = cgroup(root.path(), "keep");
        let gone = cgroup(root.path(), "gone");
        let mut index = CgroupIndex::new(root.path());
        let mut map = FakeMap::default();
        map.totals.insert(keep, Pair { a: 1, b: 0 });
        map.totals.insert(gone, Pair { a: 2, b: 0 });
        let mut sampler = DeltaSampler::new(map);
        sampler.sample(&mut index).unwrap();
        assert!(sampler.tracks(gone));

        fs::remove_dir(root.path().join("gone")).unwrap();
        let rows = sampler.sample(&mut index).unwrap();
        assert!(rows.is_empty());
        assert!(sampler.tracks(keep) && !sampler.tracks(gone));
        assert_eq!(sampler.map.forgotten, vec![gone]);
        assert!(!sampler.map.totals.contains_key(&gone));
    }
}
