//! Counters from a container's cgroup files, v1 controllers and cgroup2 alike (a hybrid host
//! has both: v1 for cpu, memory, pids and blkio; cgroup2 for pressure). Each file is opened
//! once per container and re-read with `pread`; a counter whose file does not exist on this
//! host stays `None` (missing, never zero).

mod parse;

use std::{
    collections::{BTreeMap, HashMap},
    io,
    path::{Path, PathBuf},
};

use tracing::debug;

use crate::{collect::kept_file::KeptFile, discovery::containers::ContainerTable};

/// Raw cgroup counters of one container at one instant. Totals only grow (until the cgroup
/// is made again); gauges and limits are as read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CgroupCounters {
    /// CPU time used, total ns.
    pub cpu_usage_ns: Option<u64>,
    /// CFS periods elapsed and periods in which the cgroup was throttled, totals.
    pub cpu_periods: Option<u64>,
    pub cpu_throttled_periods: Option<u64>,
    /// Time throttled, total ns.
    pub cpu_throttled_ns: Option<u64>,
    /// CFS quota and period in µs; no quota means no CPU limit.
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    /// Memory charged, bytes (gauge).
    pub memory_usage_bytes: Option<u64>,
    /// Inactive page cache, bytes (gauge): usage minus this is the working set.
    pub memory_inactive_file_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// Times the memory limit was hit (v1 failcnt, v2 `max` events), total.
    pub memory_limit_hits: Option<u64>,
    /// Major page faults, total.
    pub major_faults: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup, total.
    pub oom_kills: Option<u64>,
    pub pids_current: Option<u64>,
    pub pids_max: Option<u64>,
    /// Forks refused because pids.max was reached, total.
    pub fork_failures: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub io_read_ops: Option<u64>,
    pub io_write_ops: Option<u64>,
    /// Pressure stall totals (µs): time some (or all) tasks waited for the resource.
    pub cpu_pressure_some_us: Option<u64>,
    pub memory_pressure_some_us: Option<u64>,
    pub memory_pressure_full_us: Option<u64>,
    pub io_pressure_some_us: Option<u64>,
    pub io_pressure_full_us: Option<u64>,
}

type Fill = fn(&str, &mut CgroupCounters);

/// cgroup2 counter files: on a hybrid host only `cpu.stat` and the pressure files exist
/// there, and the v1 files below fill in the rest.
const V2_FILES: &[(&str, Fill)] = &[
    ("cpu.stat", |t, c| {
        c.cpu_usage_ns = parse::keyed(t, "usage_usec").map(|us| us * 1000);
        c.cpu_periods = parse::keyed(t, "nr_periods");
        c.cpu_throttled_periods = parse::keyed(t, "nr_throttled");
        c.cpu_throttled_ns = parse::keyed(t, "throttled_usec").map(|us| us * 1000);
    }),
    ("memory.current", |t, c| {
        c.memory_usage_bytes = parse::single(t)
    }),
    ("memory.stat", |t, c| {
        c.memory_inactive_file_bytes = parse::keyed(t, "inactive_file");
        c.major_faults = parse::keyed(t, "pgmajfault");
    }),
    ("memory.events", |t, c| {
        c.memory_limit_hits = parse::keyed(t, "max");
        c.oom_kills = parse::keyed(t, "oom_kill");
    }),
    ("pids.current", |t, c| c.pids_current = parse::single(t)),
    ("pids.events", |t, c| {
        c.fork_failures = parse::keyed(t, "max")
    }),
    ("io.stat", |t, c| {
        c.io_read_bytes = Some(parse::io_stat_sum(t, "rbytes"));
        c.io_write_bytes = Some(parse::io_stat_sum(t, "wbytes"));
        c.io_read_ops = Some(parse::io_stat_sum(t, "rios"));
        c.io_write_ops = Some(parse::io_stat_sum(t, "wios"));
    }),
    ("cpu.pressure", |t, c| {
        c.cpu_pressure_some_us = parse::psi_total(t, "some")
    }),
    ("memory.pressure", |t, c| {
        c.memory_pressure_some_us = parse::psi_total(t, "some");
        c.memory_pressure_full_us = parse::psi_total(t, "full");
    }),
    ("io.pressure", |t, c| {
        c.io_pressure_some_us = parse::psi_total(t, "some");
        c.io_pressure_full_us = parse::psi_total(t, "full");
    }),
];

/// cgroup2 limits: they change only when someone resizes the container, so they are read
/// once every [`LIMITS_EVERY`] reads.
const V2_LIMITS: &[(&str, Fill)] = &[
    ("cpu.max", |t, c| {
        (c.cpu_quota_us, c.cpu_period_us) = parse::cpu_max(t);
    }),
    ("memory.max", |t, c| c.memory_limit_bytes = parse::single(t)),
    ("pids.max", |t, c| c.pids_max = parse::single(t)),
    // Kubernetes limits pids per pod, on the pod's cgroup: the container's own is `max`.
    ("../pids.max", |t, c| {
        c.pids_max = c.pids_max.or_else(|| parse::single(t));
    }),
];

/// v1 counter files by controller.
const V1_FILES: &[(&str, &str, Fill)] = &[
    ("cpu", "cpu.stat", |t, c| {
        c.cpu_periods = parse::keyed(t, "nr_periods");
        c.cpu_throttled_periods = parse::keyed(t, "nr_throttled");
        c.cpu_throttled_ns = parse::keyed(t, "throttled_time");
    }),
    ("memory", "memory.usage_in_bytes", |t, c| {
        c.memory_usage_bytes = parse::single(t);
    }),
    ("memory", "memory.stat", |t, c| {
        c.memory_inactive_file_bytes = parse::keyed(t, "total_inactive_file");
        c.major_faults = parse::keyed(t, "total_pgmajfault");
    }),
    ("memory", "memory.failcnt", |t, c| {
        c.memory_limit_hits = parse::single(t);
    }),
    ("memory", "memory.oom_control", |t, c| {
        c.oom_kills = parse::keyed(t, "oom_kill");
    }),
    ("pids", "pids.current", |t, c| {
        c.pids_current = parse::single(t)
    }),
    ("pids", "pids.events", |t, c| {
        c.fork_failures = parse::keyed(t, "max")
    }),
    ("blkio", "blkio.throttle.io_service_bytes", |t, c| {
        (c.io_read_bytes, c.io_write_bytes) = parse::blkio_read_write(t);
    }),
    ("blkio", "blkio.throttle.io_serviced", |t, c| {
        (c.io_read_ops, c.io_write_ops) = parse::blkio_read_write(t);
    }),
];

/// v1 limits by controller, read like [`V2_LIMITS`].
const V1_LIMITS: &[(&str, &str, Fill)] = &[
    ("cpu", "cpu.cfs_quota_us", |t, c| {
        c.cpu_quota_us = parse::single(t)
    }),
    ("cpu", "cpu.cfs_period_us", |t, c| {
        c.cpu_period_us = parse::single(t);
    }),
    ("memory", "memory.limit_in_bytes", |t, c| {
        c.memory_limit_bytes = parse::single(t);
    }),
    ("pids", "pids.max", |t, c| c.pids_max = parse::single(t)),
    ("pids", "../pids.max", |t, c| {
        c.pids_max = c.pids_max.or_else(|| parse::single(t));
    }),
];

const LIMITS_EVERY: u32 = 6;

/// CPU time from v1 `cpuacct`, read only where cgroup2 has no `cpu.stat` for the container
/// (both count the same nanoseconds).
const V1_CPU_USAGE: (&str, &str, Fill) = ("cpuacct", "cpuacct.usage", |t, c| {
    c.cpu_usage_ns = parse::single(t);
});

/// Where a host mounts its cgroup hierarchies.
#[derive(Clone, Debug)]
pub struct CgroupMounts {
    pub cgroup2: PathBuf,
    /// v1 controller → mount point.
    pub v1: HashMap<String, PathBuf>,
}

/// A container's counter files, open.
#[derive(Debug)]
pub struct CgroupReader {
    counters: Vec<(KeptFile, Fill)>,
    limits: Vec<(KeptFile, Fill)>,
    /// The limits as last read; counters start from them.
    last_limits: CgroupCounters,
    reads: u32,
    /// The paths the files were opened for: a change means the container moved.
    opened_for: (PathBuf, BTreeMap<String, PathBuf>),
}

impl CgroupReader {
    /// Opens every counter file that exists for a container with this cgroup2 path and
    /// these v1 paths (controller → path below that controller's mount).
    pub fn open(mounts: &CgroupMounts, cgroup2: &Path, v1: &BTreeMap<String, PathBuf>) -> Self {
        let below = |mount: &Path, path: &Path| mount.join(path.strip_prefix("/").unwrap_or(path));
        let dir = below(&mounts.cgroup2, cgroup2);
        let open_v2 = |table: &[(&str, Fill)]| -> Vec<(KeptFile, Fill)> {
            table
                .iter()
                .filter_map(|(name, fill)| Some((KeptFile::open(dir.join(name)).ok()?, *fill)))
                .collect()
        };
        let open_v1 = |table: &[(&str, &str, Fill)]| -> Vec<(KeptFile, Fill)> {
            table
                .iter()
                .filter_map(|(controller, name, fill)| {
                    let path = below(mounts.v1.get(*controller)?, v1.get(*controller)?);
                    Some((KeptFile::open(path.join(name)).ok()?, *fill))
                })
                .collect()
        };
        let mut counters = open_v2(V2_FILES);
        if !dir.join("cpu.stat").exists() {
            counters.extend(open_v1(&[V1_CPU_USAGE]));
        }
        counters.extend(open_v1(V1_FILES));
        let mut limits = open_v2(V2_LIMITS);
        limits.extend(open_v1(V1_LIMITS));
        Self {
            counters,
            limits,
            last_limits: CgroupCounters::default(),
            reads: 0,
            opened_for: (cgroup2.to_owned(), v1.clone()),
        }
    }

    /// Reads the counter files, and the limit files every [`LIMITS_EVERY`] reads. A file
    /// that fails (the cgroup is being removed) leaves its counters `None`.
    pub fn read(&mut self, buf: &mut Vec<u8>) -> CgroupCounters {
        if self.reads.is_multiple_of(LIMITS_EVERY) {
            self.last_limits = read_all(&self.limits, CgroupCounters::default(), buf);
        }
        self.reads = self.reads.wrapping_add(1);
        read_all(&self.counters, self.last_limits, buf)
    }
}

fn read_all(
    files: &[(KeptFile, Fill)],
    mut counters: CgroupCounters,
    buf: &mut Vec<u8>,
) -> CgroupCounters {
    for (file, fill) in files {
        match file.read(buf) {
            Ok(text) => fill(text, &mut counters),
            Err(err) => log_read_error(file.path(), &err),
        }
    }
    counters
}

fn log_read_error(path: &Path, err: &io::Error) {
    debug!(path = %path.display(), %err, "cgroup file unreadable; the cgroup is likely gone");
}

/// Cgroup counters for every container in the table, with files kept open across ticks
/// and closed when the container goes.
#[derive(Debug)]
pub struct CgroupCollector {
    mounts: CgroupMounts,
    readers: HashMap<String, CgroupReader>,
    buf: Vec<u8>,
}

impl CgroupCollector {
    pub fn new(mounts: CgroupMounts) -> Self {
        Self {
            mounts,
            readers: HashMap::new(),
            buf: Vec::with_capacity(4096),
        }
    }

    /// How many containers have open readers.
    pub fn open_readers(&self) -> usize {
        self.readers.len()
    }

    /// One reading of every container's counters, by container id.
    pub fn collect(&mut self, table: &ContainerTable) -> HashMap<String, CgroupCounters> {
        self.readers.retain(|id, _| table.get(id).is_some());
        let mut out = HashMap::with_capacity(table.len());
        for container in table.containers() {
            let current = (&container.cgroup, &container.controllers);
            let stale = self
                .readers
                .get(&container.id)
                .is_none_or(|reader| (&reader.opened_for.0, &reader.opened_for.1) != current);
            if stale {
                let reader =
                    CgroupReader::open(&self.mounts, &container.cgroup, &container.controllers);
                self.readers.insert(container.id.clone(), reader);
            }
            if let Some(reader) = self.readers.get_mut(&container.id) {
                out.insert(container.id.clone(), reader.read(&mut self.buf));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    /// A hybrid host in a temporary directory: v1 cpu, cpuacct, memory, pids, blkio, and a
    /// cgroup2 tree with cpu.stat and pressure only.
    fn hybrid_host(root: &Path, container: &str) -> CgroupMounts {
        let v1 = |c: &str| root.join(c).join(container.trim_start_matches('/'));
        write(&v1("cpuacct"), "cpuacct.usage", "5000000000\n");
        write(
            &v1("cpu"),
            "cpu.stat",
            "nr_periods 100\nnr_throttled 25\nthrottled_time 750000000\n",
        );
        write(&v1("cpu"), "cpu.cfs_quota_us", "50000\n");
        write(&v1("cpu"), "cpu.cfs_period_us", "100000\n");
        write(&v1("memory"), "memory.usage_in_bytes", "209715200\n");
        write(
            &v1("memory"),
            "memory.stat",
            "cache 1\ntotal_inactive_file 10485760\ntotal_pgmajfault 7\n",
        );
        write(&v1("memory"), "memory.limit_in_bytes", "268435456\n");
        write(&v1("memory"), "memory.failcnt", "3\n");
        write(
            &v1("memory"),
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        write(&v1("pids"), "pids.current", "12\n");
        write(&v1("pids"), "pids.max", "max\n");
        write(
            &root.join("pids/kubepods/burstable/podX"),
            "pids.max",
            "1024\n",
        );
        write(&v1("pids"), "pids.events", "max 4\n");
        write(
            &v1("blkio"),
            "blkio.throttle.io_service_bytes",
            "8:0 Read 4096\n8:0 Write 1048576\nTotal 1052672\n",
        );
        write(
            &v1("blkio"),
            "blkio.throttle.io_serviced",
            "8:0 Read 1\n8:0 Write 256\nTotal 257\n",
        );
        let v2 = root.join("unified").join(container.trim_start_matches('/'));
        write(
            &v2,
            "cpu.stat",
            "usage_usec 4999000\nuser_usec 1\nsystem_usec 1\n",
        );
        write(
            &v2,
            "cpu.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        write(
            &v2,
            "memory.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=20\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10\n",
        );
        write(
            &v2,
            "io.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=300\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=200\n",
        );
        let v1 = ["cpu", "cpuacct", "memory", "pids", "blkio"]
            .into_iter()
            .map(|c| (c.to_owned(), root.join(c)))
            .collect();
        CgroupMounts {
            cgroup2: root.join("unified"),
            v1,
        }
    }

    fn paths(container: &str) -> BTreeMap<String, PathBuf> {
        ["cpu", "cpuacct", "memory", "pids", "blkio"]
            .into_iter()
            .map(|c| (c.to_owned(), PathBuf::from(container)))
            .collect()
    }

    #[test]
    fn a_hybrid_host_reads_v1_controllers_and_v2_pressure() {
        let root = tempfile::tempdir().unwrap();
        let container = "/kubepods/burstable/podX/abc";
        let mounts = hybrid_host(root.path(), container);
        let mut reader = CgroupReader::open(&mounts, Path::new(container), &paths(container));
        let c = reader.read(&mut Vec::new());

        assert_eq!(
            c.cpu_usage_ns,
            Some(4_999_000_000),
            "cgroup2 cpu.stat; cpuacct counts the same and is not read too"
        );
        assert_eq!(
            (c.cpu_periods, c.cpu_throttled_periods),
            (Some(100), Some(25))
        );
        assert_eq!(c.cpu_throttled_ns, Some(750_000_000));
        assert_eq!(
            (c.cpu_quota_us, c.cpu_period_us),
            (Some(50_000), Some(100_000))
        );
        assert_eq!(c.memory_usage_bytes, Some(209_715_200));
        assert_eq!(c.memory_inactive_file_bytes, Some(10_485_760));
        assert_eq!(c.memory_limit_bytes, Some(268_435_456));
        assert_eq!(
            (c.memory_limit_hits, c.major_faults, c.oom_kills),
            (Some(3), Some(7), Some(1))
        );
        assert_eq!(
            (c.pids_current, c.pids_max, c.fork_failures),
            (Some(12), Some(1024), Some(4)),
            "the pod's pids limit when the container has none"
        );
        assert_eq!(
            (c.io_read_bytes, c.io_write_bytes),
            (Some(4096), Some(1_048_576))
        );
        assert_eq!((c.io_read_ops, c.io_write_ops), (Some(1), Some(256)));
        assert_eq!(c.cpu_pressure_some_us, Some(1500));
        assert_eq!(
            (c.memory_pressure_some_us, c.memory_pressure_full_us),
            (Some(20), Some(10))
        );
        assert_eq!(
            (c.io_pressure_some_us, c.io_pressure_full_us),
            (Some(300), Some(200))
        );
    }

    #[test]
    fn limits_are_read_every_few_reads_and_held_between() {
        let root = tempfile::tempdir().unwrap();
        let container = "/kubepods/burstable/podX/abc";
        let mounts = hybrid_host(root.path(), container);
        let mut reader = CgroupReader::open(&mounts, Path::new(container), &paths(container));
        let mut buf = Vec::new();
        assert_eq!(reader.read(&mut buf).memory_limit_bytes, Some(268_435_456));

        let memory = root
            .path()
            .join("memory")
            .join(container.trim_start_matches('/'));
        write(&memory, "memory.limit_in_bytes", "536870912\n");
        write(&memory, "memory.usage_in_bytes", "1\n");
        for _ in 1..LIMITS_EVERY {
            let c = reader.read(&mut buf);
            assert_eq!(
                c.memory_limit_bytes,
                Some(268_435_456),
                "held between limit reads"
            );
            assert_eq!(
                c.memory_usage_bytes,
                Some(1),
                "counters are read every time"
            );
        }
        assert_eq!(reader.read(&mut buf).memory_limit_bytes, Some(536_870_912));
    }

    #[test]
    fn readers_follow_the_containers_of_the_table() {
        use crate::discovery::{containers::ContainerTable, domain::LabelOwners};
        use std::time::{Duration, SystemTime};

        let root = tempfile::tempdir().unwrap();
        let mut collector = CgroupCollector::new(CgroupMounts {
            cgroup2: root.path().to_owned(),
            v1: HashMap::new(),
        });
        let mut table = ContainerTable::new(root.path(), root.path(), Duration::ZERO);
        // Containers come and go; only the live ones keep open files.
        for round in 0..50u64 {
            let path = format!("/docker/{round:064x}");
            write(
                &root.path().join(path.trim_start_matches('/')),
                "cpu.stat",
                "usage_usec 1\n",
            );
            table.update(
                [(round, Path::new(&path))],
                None,
                &LabelOwners,
                SystemTime::now(),
            );
            let counters = collector.collect(&table);
            assert_eq!(counters.len(), 1);
            assert_eq!(collector.open_readers(), 1, "round {round}");
        }
    }

    #[test]
    fn counters_without_a_file_are_missing_not_zero() {
        let root = tempfile::tempdir().unwrap();
        let container = "/docker/abc";
        let v2 = root.path().join(container.trim_start_matches('/'));
        write(&v2, "cpu.stat", "usage_usec 10\n");
        let mounts = CgroupMounts {
            cgroup2: root.path().to_owned(),
            v1: HashMap::new(),
        };
        let c = CgroupReader::open(&mounts, Path::new(container), &BTreeMap::new())
            .read(&mut Vec::new());
        assert_eq!(c.cpu_usage_ns, Some(10_000));
        assert_eq!(c.memory_usage_bytes, None);
        assert_eq!(c.oom_kills, None);
        assert_eq!(c.cpu_throttled_periods, None);
    }

    #[test]
    fn a_pure_v2_host_reads_everything_from_cgroup2() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("svc");
        write(
            &dir,
            "cpu.stat",
            "usage_usec 2000\nnr_periods 10\nnr_throttled 5\nthrottled_usec 300\n",
        );
        write(&dir, "cpu.max", "max 100000\n");
        write(&dir, "memory.current", "1000\n");
        write(
            &dir,
            "memory.stat",
            "anon 1\ninactive_file 200\npgmajfault 9\n",
        );
        write(&dir, "memory.max", "4096\n");
        write(
            &dir,
            "memory.events",
            "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
        );
        write(&dir, "pids.current", "3\n");
        write(&dir, "pids.max", "10\n");
        write(&dir, "pids.events", "max 6\n");
        write(
            &dir,
            "io.stat",
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let mounts = CgroupMounts {
            cgroup2: root.path().to_owned(),
            v1: HashMap::new(),
        };
        let c =
            CgroupReader::open(&mounts, Path::new("/svc"), &BTreeMap::new()).read(&mut Vec::new());
        assert_eq!(c.cpu_usage_ns, Some(2_000_000));
        assert_eq!(
            (c.cpu_throttled_periods, c.cpu_throttled_ns),
            (Some(5), Some(300_000))
        );
        assert_eq!((c.cpu_quota_us, c.cpu_period_us), (None, Some(100_000)));
        assert_eq!(
            (c.memory_usage_bytes, c.memory_inactive_file_bytes),
            (Some(1000), Some(200))
        );
        assert_eq!(
            (c.memory_limit_bytes, c.memory_limit_hits, c.oom_kills),
            (Some(4096), Some(2), Some(1))
        );
        assert_eq!(
            (c.pids_current, c.pids_max, c.fork_failures),
            (Some(3), Some(10), Some(6))
        );
        assert_eq!((c.io_read_bytes, c.io_write_ops), (Some(10), Some(2)));
    }
}
