//! Full per-cgroup maps: when a counter map has no room for a new cgroup, the programs count
//! each event they could not record, per map, in the kernel (`MAP_FULL`). This reads those
//! counts each window, for `/metrics`, and warns once per map the first time it is full.

use aya::maps::{MapData, PerCpuArray};
use herd_agent_common::CGROUP_MAPS;
use tracing::warn;

use crate::collect::counters::MapReadError;

/// How many per-cgroup maps there are.
const MAPS: usize = CGROUP_MAPS.len();

/// Where the losses come from: the kernel's `MAP_FULL` array in the agent, a fake in tests.
pub trait LossCounts {
    /// Events lost to a full map since the programs were loaded, per map in [`CGROUP_MAPS`]
    /// order, summed over CPUs.
    fn totals(&self) -> Result<[u64; MAPS], MapReadError>;
}

/// The kernel's per-CPU array of losses.
pub struct KernelLosses {
    pub(crate) name: &'static str,
    pub(crate) array: PerCpuArray<MapData, u64>,
}

impl LossCounts for KernelLosses {
    fn totals(&self) -> Result<[u64; MAPS], MapReadError> {
        let mut totals = [0; MAPS];
        for (index, total) in (0u32..).zip(totals.iter_mut()) {
            let per_cpu = self.array.get(&index, 0).map_err(|source| MapReadError {
                map: self.name,
                source,
            })?;
            *total = per_cpu.iter().fold(0u64, |sum, n| sum.wrapping_add(*n));
        }
        Ok(totals)
    }
}

/// The losses of every per-cgroup map, and which maps were already warned about.
pub struct FullMaps {
    counts: Box<dyn LossCounts + Send>,
    /// The capacity of each map, for the warning.
    capacity: u32,
    totals: [u64; MAPS],
    warned: [bool; MAPS],
}

impl FullMaps {
    pub fn new(counts: Box<dyn LossCounts + Send>, capacity: u32) -> Self {
        Self {
            counts,
            capacity,
            totals: [0; MAPS],
            warned: [false; MAPS],
        }
    }

    /// Reads the kernel's counts; warns about each map found full for the first time and
    /// returns their names.
    pub fn read(&mut self) -> Result<Vec<&'static str>, MapReadError> {
        self.totals = self.counts.totals()?;
        let mut newly_full = Vec::new();
        for ((name, total), warned) in CGROUP_MAPS
            .iter()
            .zip(self.totals)
            .zip(self.warned.iter_mut())
        {
            if total > 0 && !*warned {
                *warned = true;
                warn!(
                    map = name,
                    lost = total,
                    "the eBPF map {name} is full ({} cgroups): the events of cgroups it has no \
                     room for are not counted (herd_ebpf_map_full_total); a cgroup that goes \
                     away makes room",
                    self.capacity
                );
                newly_full.push(*name);
            }
        }
        Ok(newly_full)
    }

    /// Events lost per map since the programs were loaded, as of the last [`Self::read`].
    pub fn totals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CGROUP_MAPS.iter().copied().zip(self.totals)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use herd_agent_common::{
        NET_COUNTS_INDEX, NET_COUNTS_MAP, SCHED_COUNTS_INDEX, SCHED_COUNTS_MAP,
    };

    use super::*;

    struct Fake(Arc<Mutex<[u64; MAPS]>>);

    impl LossCounts for Fake {
        fn totals(&self) -> Result<[u64; MAPS], MapReadError> {
            Ok(*self.0.lock().unwrap())
        }
    }

    #[test]
    fn each_full_map_is_named_once_and_its_losses_keep_counting() {
        let kernel = Arc::new(Mutex::new([0; MAPS]));
        let mut maps = FullMaps::new(Box::new(Fake(kernel.clone())), 4);
        assert!(maps.read().unwrap().is_empty());
        assert!(maps.totals().all(|(_, lost)| lost == 0));

        kernel.lock().unwrap()[NET_COUNTS_INDEX as usize] = 3;
        assert_eq!(maps.read().unwrap(), [NET_COUNTS_MAP]);
        kernel.lock().unwrap()[NET_COUNTS_INDEX as usize] = 10;
        kernel.lock().unwrap()[SCHED_COUNTS_INDEX as usize] = 1;
        assert_eq!(maps.read().unwrap(), [SCHED_COUNTS_MAP]);
        assert!(maps.read().unwrap().is_empty(), "each map is named once");

        let totals: Vec<_> = maps.totals().filter(|(_, lost)| *lost > 0).collect();
        assert_eq!(totals, [(NET_COUNTS_MAP, 10), (SCHED_COUNTS_MAP, 1)]);
        assert_eq!(
            maps.totals().count(),
            MAPS,
            "every map is reported, full or not"
        );
    }
}
