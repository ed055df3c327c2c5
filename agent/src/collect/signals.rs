//! Every eBPF signal per cgroup per tick: one reading of all the counter maps that are
//! loaded, resolved to cgroup2 paths with one index refresh, as deltas since the last tick.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use herd_agent_common::{
    BLOCK_COUNTS_MAP, BlockCounts, NET_COUNTS_MAP, NetCounts, OOM_COUNTS_MAP, OomCounts,
    SCHED_COUNTS_MAP, SYSCALL_COUNTS_MAP, SchedCounts, SyscallStats,
};

use crate::{
    collect::{
        counters::{CounterMap, Counters, DeltaSampler, MapReadError},
        syscalls::{CgroupSyscalls, SyscallSample},
    },
    discovery::cgroup2::CgroupIndex,
};

/// A counter map of one signal, boxed so that the agent's kernel maps and tests' fakes fit.
pub type SignalMap<V> = Box<dyn CounterMap<Value = V> + Send>;

/// The counter maps of the signals that are loaded; `None` for one that is not.
#[derive(Default)]
pub struct SignalMaps {
    pub syscalls: Option<SignalMap<SyscallStats>>,
    pub block: Option<SignalMap<BlockCounts>>,
    pub net: Option<SignalMap<NetCounts>>,
    pub sched: Option<SignalMap<SchedCounts>>,
    pub oom: Option<SignalMap<OomCounts>>,
}

/// What one cgroup did during one interval, per signal (zero where nothing was counted or
/// the signal is not loaded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupSignals {
    /// The cgroup id (inode of the cgroup2 directory).
    pub cgroup_id: u64,
    /// Path below the cgroup2 mount; `/` is the root cgroup.
    pub path: PathBuf,
    pub syscalls: SyscallStats,
    pub block: BlockCounts,
    pub net: NetCounts,
    pub sched: SchedCounts,
    pub oom: OomCounts,
}

/// One reading of every cgroup that had anything counted.
#[derive(Clone, Debug)]
pub struct SignalSample {
    /// Time since the previous reading (or since the sampler was made).
    pub interval: Duration,
    /// Sorted by cgroup id.
    pub cgroups: Vec<CgroupSignals>,
}

impl SignalSample {
    /// The reading of one cgroup, if it had anything counted.
    pub fn cgroup(&self, cgroup_id: u64) -> Option<&CgroupSignals> {
        self.cgroups
            .binary_search_by_key(&cgroup_id, |row| row.cgroup_id)
            .ok()
            .map(|at| &self.cgroups[at])
    }

    /// The syscall part alone, in the shape the syscall table takes.
    pub fn syscall_sample(&self) -> SyscallSample {
        SyscallSample {
            interval: self.interval,
            cgroups: self
                .cgroups
                .iter()
                .filter(|row| !row.syscalls.counts.is_zero())
                .map(|row| CgroupSyscalls {
                    cgroup_id: row.cgroup_id,
                    path: row.path.clone(),
                    calls: row.syscalls.counts.calls,
                    failed: row.syscalls.counts.failed,
                })
                .collect(),
        }
    }
}

/// Reads every loaded signal each tick.
pub struct SignalSampler {
    syscalls: Option<DeltaSampler<SignalMap<SyscallStats>>>,
    block: Option<DeltaSampler<SignalMap<BlockCounts>>>,
    net: Option<DeltaSampler<SignalMap<NetCounts>>>,
    sched: Option<DeltaSampler<SignalMap<SchedCounts>>>,
    oom: Option<DeltaSampler<SignalMap<OomCounts>>>,
    last_at: Instant,
}

impl SignalSampler {
    pub fn new(maps: SignalMaps) -> Self {
        Self {
            syscalls: maps.syscalls.map(DeltaSampler::new),
            block: maps.block.map(DeltaSampler::new),
            net: maps.net.map(DeltaSampler::new),
            sched: maps.sched.map(DeltaSampler::new),
            oom: maps.oom.map(DeltaSampler::new),
            last_at: Instant::now(),
        }
    }

    /// Whether any signal keeps state for this cgroup.
    pub fn tracks(&self, cgroup_id: u64) -> bool {
        self.syscalls.as_ref().is_some_and(|s| s.tracks(cgroup_id))
            || self.block.as_ref().is_some_and(|s| s.tracks(cgroup_id))
            || self.net.as_ref().is_some_and(|s| s.tracks(cgroup_id))
            || self.sched.as_ref().is_some_and(|s| s.tracks(cgroup_id))
            || self.oom.as_ref().is_some_and(|s| s.tracks(cgroup_id))
    }

    /// Cgroups in each loaded map, by the kernel map's name, as of the last sample and after
    /// those of gone cgroups were removed: this follows the live cgroups that made syscalls,
    /// IO or traffic. The syscall counter's cgroups are those with a slot in
    /// `SYSCALL_SLOTS` or an entry in `SYSCALL_COUNTS`, under the latter's name.
    pub fn map_entries(&self) -> Vec<(&'static str, usize)> {
        fn entries<V: Counters>(
            name: &'static str,
            sampler: &Option<DeltaSampler<SignalMap<V>>>,
        ) -> Option<(&'static str, usize)> {
            sampler.as_ref().map(|s| (name, s.entries()))
        }
        [
            entries(SYSCALL_COUNTS_MAP, &self.syscalls),
            entries(BLOCK_COUNTS_MAP, &self.block),
            entries(NET_COUNTS_MAP, &self.net),
            entries(SCHED_COUNTS_MAP, &self.sched),
            entries(OOM_COUNTS_MAP, &self.oom),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Reads every map and returns what changed since the previous call, with each cgroup's
    /// path from `index`: discovery's, so that the hierarchy is not walked a second time for
    /// the cgroups its last poll found.
    pub fn sample(&mut self, index: &mut CgroupIndex) -> Result<SignalSample, MapReadError> {
        let syscalls = read(&self.syscalls)?;
        let block = read(&self.block)?;
        let net = read(&self.net)?;
        let sched = read(&self.sched)?;
        let oom = read(&self.oom)?;
        let now = Instant::now();
        let interval = now.duration_since(self.last_at);
        self.last_at = now;

        // One refresh for all maps: a walk of the hierarchy happens at most once per tick.
        index.refresh(
            [&syscalls.ids, &block.ids, &net.ids, &sched.ids, &oom.ids]
                .into_iter()
                .flatten()
                .copied(),
        );
        let mut rows: BTreeMap<u64, CgroupSignals> = BTreeMap::new();
        let index = &*index;
        for (id, delta) in deltas_of(&mut self.syscalls, syscalls, index) {
            row(&mut rows, index, id).syscalls = delta;
        }
        for (id, delta) in deltas_of(&mut self.block, block, index) {
            row(&mut rows, index, id).block = delta;
        }
        for (id, delta) in deltas_of(&mut self.net, net, index) {
            row(&mut rows, index, id).net = delta;
        }
        for (id, delta) in deltas_of(&mut self.sched, sched, index) {
            row(&mut rows, index, id).sched = delta;
        }
        for (id, delta) in deltas_of(&mut self.oom, oom, index) {
            row(&mut rows, index, id).oom = delta;
        }
        Ok(SignalSample {
            interval,
            cgroups: rows.into_values().collect(),
        })
    }
}

/// The row of a cgroup, made on its first signal.
fn row<'a>(
    rows: &'a mut BTreeMap<u64, CgroupSignals>,
    index: &CgroupIndex,
    cgroup_id: u64,
) -> &'a mut CgroupSignals {
    rows.entry(cgroup_id).or_insert_with(|| CgroupSignals {
        cgroup_id,
        path: index.get(cgroup_id).map(PathBuf::from).unwrap_or_default(),
        ..Default::default()
    })
}

/// One map's totals, read before the index refresh.
struct MapTotals<V> {
    ids: Vec<u64>,
    totals: Vec<(u64, V)>,
}

fn read<V: Counters>(
    sampler: &Option<DeltaSampler<SignalMap<V>>>,
) -> Result<MapTotals<V>, MapReadError> {
    let totals = match sampler {
        Some(sampler) => sampler.read()?,
        None => Vec::new(),
    };
    Ok(MapTotals {
        ids: totals.iter().map(|(id, _)| *id).collect(),
        totals,
    })
}

/// What changed in one map since its last read, for the cgroups still there.
fn deltas_of<V: Counters>(
    sampler: &mut Option<DeltaSampler<SignalMap<V>>>,
    totals: MapTotals<V>,
    index: &CgroupIndex,
) -> Vec<(u64, V)> {
    match sampler {
        Some(sampler) => sampler.deltas(totals.totals, index),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        path::Path,
        sync::{Arc, Mutex},
    };

    use herd_agent_common::{BlockDirection, SyscallCounts};

    use super::*;
    use crate::collect::counters::fake::cgroup;

    type SharedTotals<V> = Arc<Mutex<Vec<(u64, V)>>>;

    /// A fake map whose totals the test changes while the sampler owns it.
    struct Shared<V>(SharedTotals<V>);

    impl<V: Counters + Send> CounterMap for Shared<V> {
        type Value = V;

        fn totals(&self) -> Result<Vec<(u64, V)>, MapReadError> {
            Ok(self.0.lock().unwrap().clone())
        }

        fn forget(&mut self, cgroup_id: u64) -> Result<(), MapReadError> {
            self.0.lock().unwrap().retain(|(id, _)| *id != cgroup_id);
            Ok(())
        }
    }

    fn shared<V: Counters + Send + 'static>(
        totals: Vec<(u64, V)>,
    ) -> (SharedTotals<V>, Option<SignalMap<V>>) {
        let totals = Arc::new(Mutex::new(totals));
        (totals.clone(), Some(Box::new(Shared(totals))))
    }

    fn syscalls(calls: u64) -> SyscallStats {
        SyscallStats {
            counts: SyscallCounts { calls, failed: 0 },
            ..Default::default()
        }
    }

    #[test]
    fn one_row_per_cgroup_with_every_signal_that_changed() {
        let root = tempfile::tempdir().unwrap();
        let web = cgroup(root.path(), "web");
        let db = cgroup(root.path(), "db");
        let (syscall_totals, syscall_map) = shared(vec![(web, syscalls(100))]);
        let (_, block_map) = shared(vec![(
            db,
            BlockCounts {
                write: BlockDirection {
                    ops: 3,
                    bytes: 12_288,
                    ..Default::default()
                },
                ..Default::default()
            },
        )]);
        let (_, net_map) = shared(vec![(
            web,
            NetCounts {
                tx_bytes: 64,
                tx_packets: 1,
                ..Default::default()
            },
        )]);
        let maps = SignalMaps {
            syscalls: syscall_map,
            block: block_map,
            net: net_map,
            ..Default::default()
        };
        let mut sampler = SignalSampler::new(maps);
        let mut index = CgroupIndex::new(root.path());

        let first = sampler.sample(&mut index).unwrap();
        assert_eq!(first.cgroups.len(), 2);
        let web_row = first.cgroup(web).unwrap();
        assert_eq!(web_row.path, Path::new("/web"));
        assert_eq!(web_row.syscalls.counts.calls, 100);
        assert_eq!(web_row.net.tx_bytes, 64);
        assert_eq!(web_row.block, BlockCounts::default());
        assert_eq!(first.cgroup(db).unwrap().block.write.bytes, 12_288);
        let table = first.syscall_sample();
        assert_eq!(table.cgroups.len(), 1);
        assert_eq!(
            (table.cgroups[0].cgroup_id, table.cgroups[0].calls),
            (web, 100)
        );

        *syscall_totals.lock().unwrap() = vec![(web, syscalls(150))];
        let second = sampler.sample(&mut index).unwrap();
        assert_eq!(second.cgroups.len(), 1, "only web changed: {second:?}");
        assert_eq!(second.cgroup(web).unwrap().syscalls.counts.calls, 50);
        assert_eq!(second.cgroup(web).unwrap().net, NetCounts::default());
    }

    #[test]
    fn a_removed_cgroup_leaves_every_signal() {
        let root = tempfile::tempdir().unwrap();
        let gone = cgroup(root.path(), "gone");
        let (syscall_totals, syscall_map) = shared(vec![(gone, syscalls(1))]);
        let (sched_totals, sched_map) = shared(vec![(
            gone,
            SchedCounts {
                waits: 1,
                wait_ns: 1_000,
                long_waits: 0,
            },
        )]);
        let maps = SignalMaps {
            syscalls: syscall_map,
            sched: sched_map,
            ..Default::default()
        };
        let mut sampler = SignalSampler::new(maps);
        let mut index = CgroupIndex::new(root.path());
        sampler.sample(&mut index).unwrap();
        assert!(sampler.tracks(gone));

        let entries = |n| [(SYSCALL_COUNTS_MAP, n), (SCHED_COUNTS_MAP, n)];
        assert_eq!(sampler.map_entries(), entries(1));

        fs::remove_dir(root.path().join("gone")).unwrap();
        assert!(sampler.sample(&mut index).unwrap().cgroups.is_empty());
        assert!(!sampler.tracks(gone));
        assert_eq!(sampler.map_entries(), entries(0));
        assert!(syscall_totals.lock().unwrap().is_empty());
        assert!(sched_totals.lock().unwrap().is_empty());
    }
}
