//! Counters from a container's cgroup files, v1 controllers and cgroup2 alike (a hybrid host
//! has both: v1 for cpu, cpuacct, memory, pids and blkio; cgroup2 for pressure). Each file
//! is opened once per container and re-read with `pread`; a counter whose file does not exist
//! on this host stays `None` (missing, never zero).
//!
//! A tick costs about what the number of files it reads costs (a few µs each, more once the
//! files of a few hundred containers outgrow the CPU caches), so a file is read only when
//! its counters can have moved since it was last read; otherwise they keep their last
//! values. Every gate below but the `memory.stat` one is exact: what it skips cannot have
//! changed.
//! - Limits, every [`SLOW_EVERY`] reads: they change only when someone resizes the
//!   container. A quota or limit set on a running container is seen within that many reads,
//!   and so are the gates that look at limits.
//! - v1 `cpu.stat` (CFS throttling) while the cgroup has a CFS quota: a cgroup without a
//!   quota of its own is never throttled (a parent's quota throttles, and counts in, the
//!   parent).
//! - v1 `memory.failcnt` while the cgroup has a memory limit: it counts the charges refused
//!   at this cgroup's own limit. Only where memory+swap is limited above that limit (or not
//!   at all): the kernel charges memory+swap first, so when both limits are equal (what
//!   containerd sets unless swap is asked for) memory+swap refuses every charge first and
//!   `failcnt` stays 0 at the limit; `memory.memsw.failcnt` is not kept either (measured on
//!   6.18). There the limit hits are missing, never a false zero.
//! - v1 `pids.events` while the cgroup or one of its ancestors has a pids limit: a fork fails
//!   for pids only at a limit.
//! - `memory.stat` (the costliest file by far) when the CPU time or the memory charged moved
//!   since the last read, and on slow reads: a major fault needs the container to run, and
//!   its page cache changes with its charge. The one thing this can miss is the kernel's
//!   aging of an idle container's page cache from active to inactive, which moves the
//!   working set without a charge; that is seen at the next slow read.
//! - v1 `blkio.throttle.io_service_bytes` when `io_serviced` moved: the kernel adds bytes only
//!   together with an op.
//! - The pressure files, v1 `memory.oom_control` and v1 `blkio.throttle.io_serviced` when the
//!   matching node-wide total moved since the last tick ([`NodeTotals`]): a task that stalls
//!   in a container stalls on the node, an OOM kill anywhere counts in `/proc/vmstat`, and an
//!   op counted in any blkio cgroup counts in the root's recursive total.
//!
//! A gated file is also read whenever its last read failed, and once more when a limit gate
//! closes (for what it counted until the limit went). blkio ops are also read with the
//! limits: the root's total drops when a cgroup goes, and a drop could hide new ops.
//! cgroup2 `cpu.stat` is read only where v1 `cpuacct.usage` is missing: both count the same
//! CPU time, the v1 file costs less, and on a hybrid host cgroup2 `cpu.stat` holds nothing
//! else.

mod parse;

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
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
    /// v1 memory+swap limit, bytes: where it equals the memory limit, v1 counts no hits.
    pub memory_swap_limit_bytes: Option<u64>,
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

/// Sets a file's counters from its text, or to `None` when it could not be read.
type Fill = fn(Option<&str>, &mut CgroupCounters);

/// When a file is read (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cadence {
    Always,
    /// Only on slow reads, every [`SLOW_EVERY`].
    Slow,
    WhileCpuQuota,
    WhileMemoryLimit,
    WhilePidsLimit,
    /// When the v1 IO op counts moved since the last read.
    WhenIoOpsMoved,
    /// When the CPU time or the memory charged moved since the last read, and on slow reads.
    WhenActive,
    /// When this node-wide total moved since the last tick.
    WhenNodeMoved(NodeTotal),
}

const SLOW_EVERY: u32 = 6;

/// cgroup2 limits: on a hybrid host none of them exist, and the v1 ones below count.
const V2_LIMITS: &[(&str, Fill)] = &[
    ("cpu.max", |t, c| {
        (c.cpu_quota_us, c.cpu_period_us) = t.map(parse::cpu_max).unwrap_or_default();
    }),
    ("memory.max", |t, c| {
        c.memory_limit_bytes = t.and_then(parse::single)
    }),
    ("pids.max", |t, c| c.pids_max = t.and_then(parse::single)),
    // Kubernetes limits pids per pod, on the pod's cgroup: the container's own is `max`.
    ("../pids.max", |t, c| {
        c.pids_max = c.pids_max.or_else(|| t.and_then(parse::single));
    }),
];

/// v1 limits by controller.
const V1_LIMITS: &[(&str, &str, Fill)] = &[
    ("cpu", "cpu.cfs_quota_us", |t, c| {
        c.cpu_quota_us = t.and_then(parse::single)
    }),
    ("cpu", "cpu.cfs_period_us", |t, c| {
        c.cpu_period_us = t.and_then(parse::single);
    }),
    ("memory", "memory.limit_in_bytes", |t, c| {
        c.memory_limit_bytes = t.and_then(parse::single);
    }),
    ("memory", "memory.memsw.limit_in_bytes", |t, c| {
        c.memory_swap_limit_bytes = t.and_then(parse::single);
    }),
    ("pids", "pids.max", |t, c| {
        c.pids_max = t.and_then(parse::single)
    }),
    ("pids", "../pids.max", |t, c| {
        c.pids_max = c.pids_max.or_else(|| t.and_then(parse::single));
    }),
];

/// CPU time from cgroup2, read only where v1 `cpuacct` is missing.
const V2_CPU_STAT: (&str, Fill) = ("cpu.stat", |t, c| {
    let keys = ["usage_usec", "nr_periods", "nr_throttled", "throttled_usec"];
    let [usage, periods, throttled, throttled_us] =
        t.map(|t| parse::keyed(t, keys)).unwrap_or_default();
    // A count of µs beyond what ns can hold is no reading, not a wrapped one.
    c.cpu_usage_ns = usage.and_then(|us| us.checked_mul(1000));
    (c.cpu_periods, c.cpu_throttled_periods) = (periods, throttled);
    c.cpu_throttled_ns = throttled_us.and_then(|us| us.checked_mul(1000));
});

/// Every counter file a reader may read, as `(v1 controller, file name)` (`None` for
/// cgroup2): the names [`fill_from`] takes.
pub fn counter_files() -> impl Iterator<Item = (Option<&'static str>, &'static str)> {
    let v2 = V2_LIMITS
        .iter()
        .map(|(name, _)| *name)
        .chain([V2_CPU_STAT.0])
        .chain(V2_FILES.iter().map(|(name, ..)| *name))
        .map(|name| (None, name));
    let v1 = V1_LIMITS
        .iter()
        .map(|(controller, name, _)| (*controller, *name))
        .chain([(V1_CPU_USAGE.0, V1_CPU_USAGE.1)])
        .chain(
            V1_FILES
                .iter()
                .map(|(controller, name, ..)| (*controller, *name)),
        )
        .map(|(controller, name)| (Some(controller), name));
    v2.chain(v1)
}

/// Sets `counters` from `text` as a read of the counter file `name` (of v1 `controller`, or
/// of cgroup2 for `None`) does; `false` for a file no reader reads. The parsing of a read
/// without the files, for tests and fuzzing of what a kernel (or a broken one) may write.
pub fn fill_from(
    controller: Option<&str>,
    name: &str,
    text: &str,
    counters: &mut CgroupCounters,
) -> bool {
    let fill = match controller {
        None => V2_LIMITS
            .iter()
            .copied()
            .chain([V2_CPU_STAT])
            .chain(V2_FILES.iter().map(|(name, _, fill)| (*name, *fill)))
            .find(|(file, _)| *file == name)
            .map(|(_, fill)| fill),
        Some(controller) => V1_LIMITS
            .iter()
            .copied()
            .chain([V1_CPU_USAGE])
            .chain(V1_FILES.iter().map(|(c, name, _, fill)| (*c, *name, *fill)))
            .find(|(c, file, _)| *c == controller && *file == name)
            .map(|(.., fill)| fill),
    };
    fill.map(|fill| fill(Some(text), counters)).is_some()
}

/// cgroup2 counter files: on a hybrid host only the pressure files (and `cpu.stat`) exist
/// there, and the v1 files below fill in the rest.
const V2_FILES: &[(&str, Cadence, Fill)] = &[
    ("memory.current", Cadence::Always, |t, c| {
        c.memory_usage_bytes = t.and_then(parse::single)
    }),
    ("memory.stat", Cadence::WhenActive, |t, c| {
        let keys = ["inactive_file", "pgmajfault"];
        [c.memory_inactive_file_bytes, c.major_faults] =
            t.map(|t| parse::keyed(t, keys)).unwrap_or_default();
    }),
    ("memory.events", Cadence::Always, |t, c| {
        [c.memory_limit_hits, c.oom_kills] = t
            .map(|t| parse::keyed(t, ["max", "oom_kill"]))
            .unwrap_or_default();
    }),
    ("pids.current", Cadence::Always, |t, c| {
        c.pids_current = t.and_then(parse::single)
    }),
    ("pids.events", Cadence::Always, |t, c| {
        [c.fork_failures] = t.map(|t| parse::keyed(t, ["max"])).unwrap_or_default();
    }),
    ("io.stat", Cadence::Always, |t, c| {
        // Empty before any IO: zero, where an unreadable file is missing.
        let sums = t.map(parse::io_stat);
        [
            c.io_read_bytes,
            c.io_write_bytes,
            c.io_read_ops,
            c.io_write_ops,
        ] = [0, 1, 2, 3].map(|i| sums.map(|s| s[i]));
    }),
    (
        "cpu.pressure",
        Cadence::WhenNodeMoved(NodeTotal::CpuPressure),
        |t, c| c.cpu_pressure_some_us = t.and_then(|t| parse::psi_totals(t).0),
    ),
    (
        "memory.pressure",
        Cadence::WhenNodeMoved(NodeTotal::MemoryPressure),
        |t, c| {
            (c.memory_pressure_some_us, c.memory_pressure_full_us) =
                t.map(parse::psi_totals).unwrap_or_default();
        },
    ),
    (
        "io.pressure",
        Cadence::WhenNodeMoved(NodeTotal::IoPressure),
        |t, c| {
            (c.io_pressure_some_us, c.io_pressure_full_us) =
                t.map(parse::psi_totals).unwrap_or_default();
        },
    ),
];

/// CPU time from v1 `cpuacct`, in ns.
const V1_CPU_USAGE: (&str, &str, Fill) = ("cpuacct", "cpuacct.usage", |t, c| {
    c.cpu_usage_ns = t.and_then(parse::single);
});

/// v1 counter files by controller. `io_serviced` comes before `io_service_bytes`, whose
/// cadence looks at the op counts.
const V1_FILES: &[(&str, &str, Cadence, Fill)] = &[
    ("cpu", "cpu.stat", Cadence::WhileCpuQuota, |t, c| {
        let keys = ["nr_periods", "nr_throttled", "throttled_time"];
        [c.cpu_periods, c.cpu_throttled_periods, c.cpu_throttled_ns] =
            t.map(|t| parse::keyed(t, keys)).unwrap_or_default();
    }),
    (
        "memory",
        "memory.usage_in_bytes",
        Cadence::Always,
        |t, c| {
            c.memory_usage_bytes = t.and_then(parse::single);
        },
    ),
    ("memory", "memory.stat", Cadence::WhenActive, |t, c| {
        let keys = ["total_inactive_file", "total_pgmajfault"];
        [c.memory_inactive_file_bytes, c.major_faults] =
            t.map(|t| parse::keyed(t, keys)).unwrap_or_default();
    }),
    (
        "memory",
        "memory.failcnt",
        Cadence::WhileMemoryLimit,
        |t, c| {
            // After the limits: see the module docs for why an equal memory+swap limit
            // leaves nothing to count.
            let counted = match (c.memory_limit_bytes, c.memory_swap_limit_bytes) {
                (Some(memory), Some(swap)) => swap > memory,
                _ => true,
            };
            c.memory_limit_hits = t.and_then(parse::single).filter(|_| counted);
        },
    ),
    (
        "memory",
        "memory.oom_control",
        Cadence::WhenNodeMoved(NodeTotal::OomKills),
        |t, c| [c.oom_kills] = t.map(|t| parse::keyed(t, ["oom_kill"])).unwrap_or_default(),
    ),
    ("pids", "pids.current", Cadence::Always, |t, c| {
        c.pids_current = t.and_then(parse::single)
    }),
    ("pids", "pids.events", Cadence::WhilePidsLimit, |t, c| {
        [c.fork_failures] = t.map(|t| parse::keyed(t, ["max"])).unwrap_or_default();
    }),
    (
        "blkio",
        "blkio.throttle.io_serviced",
        Cadence::WhenNodeMoved(NodeTotal::IoOps),
        |t, c| {
            (c.io_read_ops, c.io_write_ops) = t.map(parse::blkio_read_write).unwrap_or_default();
        },
    ),
    (
        "blkio",
        "blkio.throttle.io_service_bytes",
        Cadence::WhenIoOpsMoved,
        |t, c| {
            (c.io_read_bytes, c.io_write_bytes) =
                t.map(parse::blkio_read_write).unwrap_or_default();
        },
    ),
];

/// Where a host mounts its cgroup hierarchies.
#[derive(Clone, Debug)]
pub struct CgroupMounts {
    pub cgroup2: PathBuf,
    /// v1 controller → mount point.
    pub v1: HashMap<String, PathBuf>,
}

/// A node-wide total that bounds a kind of per-container total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeTotal {
    /// `oom_kill` in `/proc/vmstat`: every OOM kill, whichever cgroup it hit.
    OomKills,
    /// The cgroup2 root's pressure files: the node's stalls, which include every cgroup's.
    CpuPressure,
    MemoryPressure,
    IoPressure,
    /// The v1 blkio root's `blkio.throttle.io_serviced_recursive`: the ops of every blkio
    /// cgroup. Its sums also drop when a cgroup goes, so it is compared whole (every device
    /// and op), and the files it gates are also read with the limits.
    IoOps,
}

const NODE_TOTALS: [NodeTotal; 5] = [
    NodeTotal::OomKills,
    NodeTotal::CpuPressure,
    NodeTotal::MemoryPressure,
    NodeTotal::IoPressure,
    NodeTotal::IoOps,
];

/// Which node-wide totals moved since the last tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeMoved([bool; NODE_TOTALS.len()]);

impl NodeMoved {
    /// As if every total moved: every gated file is read.
    pub const ALL: Self = Self([true; NODE_TOTALS.len()]);

    fn moved(self, total: NodeTotal) -> bool {
        self.0[total as usize]
    }
}

/// The node-wide totals, kept open; each one missing on this host counts as always moving.
#[derive(Debug)]
struct NodeTotals {
    files: [Option<KeptFile>; NODE_TOTALS.len()],
    last: [Option<NodeReading>; NODE_TOTALS.len()],
}

/// What a node-wide total read: its numbers, or the whole text of the blkio file.
#[derive(Debug, PartialEq)]
enum NodeReading {
    Numbers(u64, Option<u64>),
    Text(String),
}

impl NodeTotals {
    fn open(mounts: &CgroupMounts, vmstat: &Path) -> Self {
        let files = NODE_TOTALS.map(|total| {
            let path = match total {
                NodeTotal::OomKills => vmstat.to_owned(),
                NodeTotal::CpuPressure => mounts.cgroup2.join("cpu.pressure"),
                NodeTotal::MemoryPressure => mounts.cgroup2.join("memory.pressure"),
                NodeTotal::IoPressure => mounts.cgroup2.join("io.pressure"),
                NodeTotal::IoOps => mounts
                    .v1
                    .get("blkio")?
                    .join("blkio.throttle.io_serviced_recursive"),
            };
            KeptFile::open(path).ok()
        });
        Self {
            files,
            last: Default::default(),
        }
    }

    /// Reads every total; one that cannot be read counts as moved.
    fn read(&mut self, buf: &mut Vec<u8>) -> NodeMoved {
        let mut moved = NodeMoved::ALL;
        for (i, total) in NODE_TOTALS.into_iter().enumerate() {
            let Some(file) = &self.files[i] else { continue };
            let reading = match file.read(buf) {
                Ok(text) => match total {
                    NodeTotal::OomKills => {
                        let [kills] = parse::keyed(text, ["oom_kill"]);
                        kills.map(|k| NodeReading::Numbers(k, None))
                    }
                    NodeTotal::CpuPressure | NodeTotal::MemoryPressure | NodeTotal::IoPressure => {
                        let (some, full) = parse::psi_totals(text);
                        some.map(|s| NodeReading::Numbers(s, full))
                    }
                    NodeTotal::IoOps => Some(NodeReading::Text(text.to_owned())),
                },
                Err(err) => {
                    log_read_error(file.path(), &err);
                    None
                }
            };
            moved.0[i] = reading.is_none() || reading != self.last[i];
            self.last[i] = reading;
        }
        moved
    }
}

/// One open counter file.
#[derive(Debug)]
struct Source {
    file: KeptFile,
    cadence: Cadence,
    fill: Fill,
    /// No reading yet, or the last failed: due whatever the cadence.
    unread: bool,
    /// Whether its cadence let it be read at the last read.
    was_open: bool,
}

/// A container's counter files, open.
#[derive(Debug)]
pub struct CgroupReader {
    /// Limits first: the cadences of the files after them look at the limits.
    sources: Vec<Source>,
    /// v1 `pids.max` of the ancestors above the parent (whose limit is a counter already),
    /// read on slow reads.
    pids_above: Vec<KeptFile>,
    /// Whether one of `pids_above` had a limit at the last slow read, or could not be read.
    limited_above: bool,
    reads: u32,
    /// Read the files that container activity gates as if the container always ran.
    assume_active: bool,
    /// Every limit file read at the last slow read: only then does a missing quota or limit
    /// mean that there is none.
    limits_read: bool,
    /// The counters as last read: a file that is not due keeps its own.
    last: CgroupCounters,
    /// How many files the reads so far have read.
    files_read: u64,
    /// The cgroup2 and v1 paths the files were opened for.
    paths: (PathBuf, BTreeMap<String, PathBuf>),
}

impl CgroupReader {
    /// Opens every counter file that exists for a container with this cgroup2 path and
    /// these v1 paths (controller → path below that controller's mount).
    pub fn open(mounts: &CgroupMounts, cgroup2: &Path, v1: &BTreeMap<String, PathBuf>) -> Self {
        Self::open_with(mounts, cgroup2, v1, true)
    }

    /// [`Self::open`], leaving out the block IO files (v1 blkio, cgroup2 `io.stat`) unless
    /// `io_files`.
    fn open_with(
        mounts: &CgroupMounts,
        cgroup2: &Path,
        v1: &BTreeMap<String, PathBuf>,
        io_files: bool,
    ) -> Self {
        let io_file = |controller: &str, name: &str| controller == "blkio" || name == "io.stat";
        let below = |mount: &Path, path: &Path| mount.join(path.strip_prefix("/").unwrap_or(path));
        let dir = below(&mounts.cgroup2, cgroup2);
        let source = |path: PathBuf, cadence, fill| {
            Some(Source {
                file: KeptFile::open(path).ok()?,
                cadence,
                fill,
                unread: true,
                was_open: false,
            })
        };
        let v1_dir =
            |controller: &str| Some(below(mounts.v1.get(controller)?, v1.get(controller)?));
        let v1_source = |controller: &str, name: &str, cadence, fill| {
            source(v1_dir(controller)?.join(name), cadence, fill)
        };

        let mut sources: Vec<Source> = V2_LIMITS
            .iter()
            .filter_map(|(name, fill)| source(dir.join(name), Cadence::Slow, *fill))
            .collect();
        sources.extend(
            V1_LIMITS
                .iter()
                .filter_map(|(ctl, name, fill)| v1_source(ctl, name, Cadence::Slow, *fill)),
        );
        let (ctl, name, fill) = V1_CPU_USAGE;
        match v1_source(ctl, name, Cadence::Always, fill) {
            Some(cpuacct) => sources.push(cpuacct),
            None => sources.extend(source(
                dir.join(V2_CPU_STAT.0),
                Cadence::Always,
                V2_CPU_STAT.1,
            )),
        }
        sources.extend(
            V2_FILES
                .iter()
                .filter(|(name, _, _)| io_files || !io_file("", name))
                .filter_map(|(name, cadence, fill)| source(dir.join(name), *cadence, *fill)),
        );
        sources.extend(
            V1_FILES
                .iter()
                .filter(|(ctl, name, _, _)| io_files || !io_file(ctl, name))
                .filter_map(|(ctl, name, cadence, fill)| v1_source(ctl, name, *cadence, *fill)),
        );
        let pids_above = match (v1_dir("pids"), mounts.v1.get("pids")) {
            (Some(pids), Some(mount)) => pids
                .ancestors()
                .skip(2)
                .take_while(|dir| dir.starts_with(mount) && *dir != mount)
                .filter_map(|dir| KeptFile::open(dir.join("pids.max")).ok())
                .collect(),
            _ => Vec::new(),
        };
        Self {
            sources,
            pids_above,
            limited_above: true,
            reads: 0,
            assume_active: false,
            limits_read: false,
            last: CgroupCounters::default(),
            files_read: 0,
            paths: (cgroup2.to_owned(), v1.clone()),
        }
    }

    /// Whether the files were opened for these paths: a container that moved needs others.
    fn opened_for(&self, cgroup2: &Path, v1: &BTreeMap<String, PathBuf>) -> bool {
        let (cgroup, controllers) = &self.paths;
        // As bytes: `Path` equality parses components, and this runs every tick.
        cgroup.as_os_str() == cgroup2.as_os_str()
            && controllers.len() == v1.len()
            && controllers
                .iter()
                .zip(v1)
                .all(|((c, p), (d, q))| c == d && p.as_os_str() == q.as_os_str())
    }

    /// Reads the files that are due (see the module docs); the others keep their counters
    /// as last read. `node` says which node-wide totals moved since the last tick. A file
    /// that fails (the cgroup is being removed) leaves its counters `None`.
    pub fn read(&mut self, buf: &mut Vec<u8>, node: NodeMoved) -> CgroupCounters {
        let slow = self.reads.is_multiple_of(SLOW_EVERY);
        self.reads = self.reads.wrapping_add(1);
        if slow {
            // One that cannot be read counts as limited.
            self.limited_above = self.pids_above.iter().any(|file| {
                self.files_read += 1;
                file.read(buf)
                    .map_or(true, |text| parse::single(text).is_some())
            });
        }
        let mut limits_read = true;
        let mut c = self.last;
        for source in &mut self.sources {
            let limited = |gate: bool| !self.limits_read || gate;
            let (open, by_limits) = match source.cadence {
                Cadence::Always => (true, false),
                Cadence::Slow => (slow, false),
                Cadence::WhileCpuQuota => {
                    let no_quota = c.cpu_quota_us.is_none() && c.cpu_period_us.is_some();
                    (limited(!no_quota), true)
                }
                Cadence::WhileMemoryLimit => (limited(c.memory_limit_bytes.is_some()), true),
                Cadence::WhilePidsLimit => {
                    (limited(c.pids_max.is_some() || self.limited_above), true)
                }
                Cadence::WhenActive => {
                    let active = |c: &CgroupCounters| (c.cpu_usage_ns, c.memory_usage_bytes);
                    let moved = active(&c) != active(&self.last);
                    (slow || self.assume_active || moved, false)
                }
                Cadence::WhenIoOpsMoved => {
                    let ops = |c: &CgroupCounters| (c.io_read_ops, c.io_write_ops);
                    (ops(&c) != ops(&self.last), false)
                }
                Cadence::WhenNodeMoved(NodeTotal::IoOps) => {
                    (slow || node.moved(NodeTotal::IoOps), false)
                }
                Cadence::WhenNodeMoved(total) => (node.moved(total), false),
            };
            // A limit gate that has just closed lets its file be read once more, for what it
            // counted until the limit went.
            let due = open || source.unread || (by_limits && source.was_open);
            source.was_open = open;
            if !due {
                continue;
            }
            self.files_read += 1;
            match source.file.read(buf) {
                Ok(text) => {
                    (source.fill)(Some(text), &mut c);
                    source.unread = false;
                }
                Err(err) => {
                    log_read_error(source.file.path(), &err);
                    (source.fill)(None, &mut c);
                    source.unread = true;
                    limits_read &= source.cadence != Cadence::Slow;
                }
            }
        }
        if slow {
            self.limits_read = limits_read;
        }
        self.last = c;
        c
    }
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
    node: NodeTotals,
    /// Whether node-wide totals and container activity gate the containers' files.
    gated: bool,
    /// Whether block IO files are read (not when eBPF counts block IO).
    io_files: bool,
    buf: Vec<u8>,
    files_read: u64,
}

impl CgroupCollector {
    pub fn new(mounts: CgroupMounts) -> Self {
        Self::with_vmstat(mounts, Path::new("/proc/vmstat"))
    }

    /// `vmstat` is the node-wide one in any pid namespace.
    fn with_vmstat(mounts: CgroupMounts, vmstat: &Path) -> Self {
        Self {
            node: NodeTotals::open(&mounts, vmstat),
            mounts,
            readers: HashMap::new(),
            gated: true,
            io_files: true,
            buf: Vec::new(),
            files_read: 0,
        }
    }

    /// Leaves out the block IO files (v1 blkio, cgroup2 `io.stat`): for an agent whose eBPF
    /// programs count block IO per cgroup, from which the features take it.
    pub fn without_io_files(mut self) -> Self {
        self.io_files = false;
        self.readers.clear();
        self.node.files[NodeTotal::IoOps as usize] = None;
        self
    }

    /// From now on reads the files that node-wide totals and container activity gate on
    /// every tick, as on a node whose containers all run, and stall on every resource,
    /// OOM-kill and count blkio ops all the time. For measuring what such a node costs.
    pub fn ungate(&mut self) {
        self.gated = false;
    }

    /// How many containers have open readers.
    pub fn open_readers(&self) -> usize {
        self.readers.len()
    }

    /// How many files all reads so far have read (the others gave their last text again),
    /// node-wide totals included.
    pub fn files_read(&self) -> u64 {
        self.files_read
    }

    /// One reading of every container's counters, by container id.
    pub fn collect(&mut self, table: &ContainerTable) -> HashMap<String, CgroupCounters> {
        self.readers.retain(|id, _| table.get(id).is_some());
        let mut node = self.node.read(&mut self.buf);
        self.files_read += self.node.files.iter().flatten().count() as u64;
        if !self.gated {
            node = NodeMoved::ALL;
        }
        let mut out = HashMap::with_capacity(table.len());
        for container in table.containers() {
            let reader = match self.readers.entry(container.id.clone()) {
                Entry::Occupied(entry)
                    if entry
                        .get()
                        .opened_for(&container.cgroup, &container.controllers) =>
                {
                    entry.into_mut()
                }
                entry => entry
                    .insert_entry(CgroupReader::open_with(
                        &self.mounts,
                        &container.cgroup,
                        &container.controllers,
                        self.io_files,
                    ))
                    .into_mut(),
            };
            reader.assume_active = !self.gated;
            let before = reader.files_read;
            let counters = reader.read(&mut self.buf, node);
            self.files_read += reader.files_read - before;
            out.insert(container.id.clone(), counters);
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

    const CONTAINER: &str = "/kubepods/burstable/podX/abc";

    /// A [`hybrid_host`] for [`CONTAINER`] in a temporary directory.
    struct TestHost {
        root: tempfile::TempDir,
        mounts: CgroupMounts,
    }

    impl TestHost {
        fn new() -> Self {
            let root = tempfile::tempdir().unwrap();
            let mounts = hybrid_host(root.path(), CONTAINER);
            Self { root, mounts }
        }

        /// The container's directory in one hierarchy (`unified` is cgroup2).
        fn dir(&self, hierarchy: &str) -> PathBuf {
            self.root
                .path()
                .join(hierarchy)
                .join(CONTAINER.trim_start_matches('/'))
        }

        fn reader(&self) -> CgroupReader {
            CgroupReader::open(&self.mounts, Path::new(CONTAINER), &paths(CONTAINER))
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
        let host = TestHost::new();
        let mut reader = host.reader();
        let c = reader.read(&mut Vec::new(), NodeMoved::ALL);

        assert_eq!(
            c.cpu_usage_ns,
            Some(5_000_000_000),
            "v1 cpuacct; cgroup2 cpu.stat counts the same and is not read too"
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
        let host = TestHost::new();
        let mut reader = host.reader();
        let mut buf = Vec::new();
        assert_eq!(
            reader.read(&mut buf, NodeMoved::ALL).memory_limit_bytes,
            Some(268_435_456)
        );

        let memory = host.dir("memory");
        write(&memory, "memory.limit_in_bytes", "536870912\n");
        write(&memory, "memory.usage_in_bytes", "1\n");
        for _ in 1..SLOW_EVERY {
            let c = reader.read(&mut buf, NodeMoved::ALL);
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
        assert_eq!(
            reader.read(&mut buf, NodeMoved::ALL).memory_limit_bytes,
            Some(536_870_912)
        );
    }

    /// Reads until the next slow read has been made, returning the last reading.
    fn past_a_slow_read(reader: &mut CgroupReader, buf: &mut Vec<u8>) -> CgroupCounters {
        loop {
            let slow = reader.reads.is_multiple_of(SLOW_EVERY);
            let c = reader.read(buf, NodeMoved::ALL);
            if slow {
                return c;
            }
        }
    }

    #[test]
    fn throttling_is_read_every_time_only_under_a_cpu_quota() {
        let host = TestHost::new();
        let cpu = host.dir("cpu");
        let stat =
            |periods: u64| format!("nr_periods {periods}\nnr_throttled 50\nthrottled_time 9\n");
        let mut reader = host.reader();
        let mut buf = Vec::new();
        reader.read(&mut buf, NodeMoved::ALL);

        // Under a quota every read sees the throttling as it is.
        write(&cpu, "cpu.stat", &stat(200));
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(
            (c.cpu_periods, c.cpu_throttled_periods),
            (Some(200), Some(50))
        );

        // The quota goes: the slow read that sees it reads the totals once more.
        while !reader.reads.is_multiple_of(SLOW_EVERY) {
            reader.read(&mut buf, NodeMoved::ALL);
        }
        write(&cpu, "cpu.cfs_quota_us", "-1\n");
        write(&cpu, "cpu.stat", &stat(250));
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!((c.cpu_quota_us, c.cpu_periods), (None, Some(250)));

        // Without a quota the totals stand still: they are held, slow reads included (the
        // file changes here only to show that it is not read).
        write(&cpu, "cpu.stat", &stat(300));
        for _ in 0..2 * SLOW_EVERY {
            let c = reader.read(&mut buf, NodeMoved::ALL);
            assert_eq!(
                (c.cpu_periods, c.cpu_throttled_periods, c.cpu_throttled_ns),
                (Some(250), Some(50), Some(9)),
                "held, not missing"
            );
        }

        write(&cpu, "cpu.cfs_quota_us", "20000\n");
        let c = past_a_slow_read(&mut reader, &mut buf);
        assert_eq!(
            c.cpu_periods,
            Some(300),
            "a new quota is seen with the limits"
        );
        write(&cpu, "cpu.stat", &stat(400));
        assert_eq!(reader.read(&mut buf, NodeMoved::ALL).cpu_periods, Some(400));
    }

    #[test]
    fn limit_hits_are_read_every_time_only_under_a_memory_limit() {
        let host = TestHost::new();
        let memory = host.dir("memory");
        let mut reader = host.reader();
        let mut buf = Vec::new();
        reader.read(&mut buf, NodeMoved::ALL);
        write(&memory, "memory.failcnt", "4\n");
        assert_eq!(
            reader.read(&mut buf, NodeMoved::ALL).memory_limit_hits,
            Some(4)
        );

        write(&memory, "memory.limit_in_bytes", "9223372036854771712\n");
        past_a_slow_read(&mut reader, &mut buf);
        write(&memory, "memory.failcnt", "5\n");
        let before = reader.files_read;
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(c.memory_limit_hits, Some(4), "held without a limit");
        assert_eq!(
            reader.files_read - before,
            10,
            "cpuacct, cpu.stat (under a quota), memory usage, oom_control, pids current, \
             events, blkio ops, three pressure files: not failcnt, nor memory.stat (CPU and \
             charge still), nor io bytes (ops still)"
        );
        write(&memory, "memory.limit_in_bytes", "1073741824\n");
        let c = past_a_slow_read(&mut reader, &mut buf);
        assert_eq!(c.memory_limit_hits, Some(5));
        write(&memory, "memory.failcnt", "6\n");
        assert_eq!(
            reader.read(&mut buf, NodeMoved::ALL).memory_limit_hits,
            Some(6)
        );
    }

    #[test]
    fn limit_hits_are_missing_where_memory_and_swap_share_one_limit() {
        let host = TestHost::new();
        let memory = host.dir("memory");
        write(&memory, "memory.memsw.limit_in_bytes", "268435456\n");
        let mut reader = host.reader();
        let mut buf = Vec::new();
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(
            (c.memory_limit_bytes, c.memory_limit_hits),
            (Some(268_435_456), None),
            "failcnt reads 0 whatever happens there"
        );

        write(
            &memory,
            "memory.memsw.limit_in_bytes",
            "9223372036854771712\n",
        );
        let c = past_a_slow_read(&mut reader, &mut buf);
        assert_eq!(
            c.memory_limit_hits,
            Some(3),
            "swap unlimited: failcnt counts"
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_missing_and_read_again_whatever_its_gate() {
        let host = TestHost::new();
        let memory = host.dir("memory");
        write(&memory, "memory.limit_in_bytes", "9223372036854771712\n");
        // Opens, but every read fails (EISDIR).
        fs::remove_file(memory.join("memory.failcnt")).unwrap();
        fs::create_dir(memory.join("memory.failcnt")).unwrap();
        let mut reader = host.reader();
        let mut buf = Vec::new();
        let still = NodeMoved([false; NODE_TOTALS.len()]);
        let first = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(
            (first.memory_limit_bytes, first.memory_limit_hits),
            (None, None)
        );
        for _ in 1..SLOW_EVERY {
            let before = reader.files_read;
            let c = reader.read(&mut buf, still);
            assert_eq!(c.memory_limit_hits, None, "missing, never a stale value");
            assert_eq!(
                reader.files_read - before,
                6,
                "cpuacct, cpu.stat (quota), usage, pids current and events (the pod's limit), \
                 and failcnt again; not memory.stat (CPU and charge still)"
            );
        }
    }

    #[test]
    fn memory_stat_is_read_when_the_container_ran_or_its_charge_moved() {
        let host = TestHost::new();
        let (memory, cpuacct) = (host.dir("memory"), host.dir("cpuacct"));
        let stat = |faults: u64| format!("total_inactive_file 0\ntotal_pgmajfault {faults}\n");
        let mut reader = host.reader();
        let mut buf = Vec::new();
        reader.read(&mut buf, NodeMoved::ALL);

        // Idle: no CPU time, the same charge. The file changes here only to show that it is
        // not read.
        write(&memory, "memory.stat", &stat(100));
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(c.major_faults, Some(7), "held while idle");

        write(&cpuacct, "cpuacct.usage", "5000000001\n");
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(c.major_faults, Some(100), "read after the container ran");

        write(&memory, "memory.stat", &stat(101));
        write(&memory, "memory.usage_in_bytes", "209719296\n");
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(c.major_faults, Some(101), "read after the charge moved");

        write(&memory, "memory.stat", &stat(102));
        assert_eq!(
            past_a_slow_read(&mut reader, &mut buf).major_faults,
            Some(102),
            "read on slow reads whatever moved"
        );
    }

    #[test]
    fn io_bytes_are_read_when_the_io_ops_moved() {
        let host = TestHost::new();
        let blkio = host.dir("blkio");
        let mut reader = host.reader();
        let mut buf = Vec::new();
        reader.read(&mut buf, NodeMoved::ALL);

        // Bytes that change without ops cannot happen; that they are not seen shows that the
        // file was not read.
        write(
            &blkio,
            "blkio.throttle.io_service_bytes",
            "8:0 Read 1\n8:0 Write 1\n",
        );
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(
            (c.io_read_bytes, c.io_write_bytes),
            (Some(4096), Some(1_048_576))
        );

        write(
            &blkio,
            "blkio.throttle.io_serviced",
            "8:0 Read 2\n8:0 Write 256\nTotal 258\n",
        );
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!((c.io_read_ops, c.io_read_bytes), (Some(2), Some(1)));
    }

    #[test]
    fn files_behind_a_still_node_total_hold_until_it_moves() {
        let host = TestHost::new();
        let memory = host.dir("memory");
        let v2 = host.dir("unified");
        let mut reader = host.reader();
        let mut buf = Vec::new();
        reader.read(&mut buf, NodeMoved::ALL);

        write(
            &memory,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(
            &v2,
            "memory.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=30\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=15\n",
        );
        let still = NodeMoved([false; NODE_TOTALS.len()]);
        let c = reader.read(&mut buf, still);
        assert_eq!(c.oom_kills, Some(1), "held, not missing");
        assert_eq!(c.memory_pressure_some_us, Some(20));

        let mut kills = still;
        kills.0[NodeTotal::OomKills as usize] = true;
        let c = reader.read(&mut buf, kills);
        assert_eq!(c.oom_kills, Some(2));
        assert_eq!(
            c.memory_pressure_some_us,
            Some(20),
            "only what that total bounds"
        );
        let c = past_a_slow_read(&mut reader, &mut buf);
        assert_eq!(
            c.memory_pressure_full_us,
            Some(15),
            "and all with the limits"
        );
    }

    #[test]
    fn node_totals_move_when_their_totals_do() {
        let root = tempfile::tempdir().unwrap();
        let psi = |avg: &str, total: u64| {
            format!(
                "some avg10={avg} avg60=0.00 avg300=0.00 total={total}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            )
        };
        let unified = root.path().join("unified");
        let blkio = root.path().join("blkio");
        for name in ["cpu.pressure", "memory.pressure", "io.pressure"] {
            write(&unified, name, &psi("0.00", 100));
        }
        write(&blkio, "blkio.throttle.io_serviced_recursive", "Total 0\n");
        write(root.path(), "vmstat", "nr_free_pages 10\noom_kill 0\n");
        let mounts = CgroupMounts {
            cgroup2: unified.clone(),
            v1: HashMap::from([("blkio".to_owned(), blkio.clone())]),
        };
        let mut totals = NodeTotals::open(&mounts, &root.path().join("vmstat"));
        let mut buf = Vec::new();
        assert_eq!(
            totals.read(&mut buf),
            NodeMoved::ALL,
            "the first read moves all"
        );

        // What is not a total (averages, other counters) moves nothing.
        write(&unified, "cpu.pressure", &psi("1.50", 100));
        write(root.path(), "vmstat", "nr_free_pages 9\noom_kill 0\n");
        assert_eq!(totals.read(&mut buf), NodeMoved([false; 5]));

        write(root.path(), "vmstat", "nr_free_pages 9\noom_kill 1\n");
        write(&unified, "io.pressure", &psi("0.00", 101));
        write(
            &blkio,
            "blkio.throttle.io_serviced_recursive",
            "8:0 Read 1\nTotal 1\n",
        );
        assert_eq!(
            totals.read(&mut buf),
            NodeMoved([true, false, false, true, true])
        );

        let without_blkio = CgroupMounts {
            cgroup2: unified,
            v1: HashMap::new(),
        };
        let mut totals = NodeTotals::open(&without_blkio, &root.path().join("vmstat"));
        totals.read(&mut buf);
        assert!(
            totals.read(&mut buf).moved(NodeTotal::IoOps),
            "a total this host lacks always moves"
        );
    }

    #[test]
    fn without_io_files_no_block_io_file_is_read() {
        let host = TestHost::new();
        let mut with = host.reader();
        let mut without =
            CgroupReader::open_with(&host.mounts, Path::new(CONTAINER), &paths(CONTAINER), false);
        let mut buf = Vec::new();
        let c = with.read(&mut buf, NodeMoved::ALL);
        assert_eq!(c.io_read_ops, Some(1));
        let c = without.read(&mut buf, NodeMoved::ALL);
        assert_eq!((c.io_read_ops, c.io_read_bytes), (None, None));
        assert_eq!(
            with.files_read - without.files_read,
            2,
            "blkio io_serviced and io_service_bytes"
        );
        assert_eq!(c.memory_usage_bytes, Some(209_715_200), "the rest is read");
    }

    #[test]
    fn fork_failures_are_read_every_time_only_under_a_pids_limit() {
        let host = TestHost::new();
        let pids = host.root.path().join("pids");
        let own = host.dir("pids");
        write(&pids.join("kubepods/burstable"), "pids.max", "max\n");
        let mut reader = host.reader();
        let mut buf = Vec::new();
        reader.read(&mut buf, NodeMoved::ALL);

        // The pod's limit.
        write(&own, "pids.events", "max 5\n");
        assert_eq!(reader.read(&mut buf, NodeMoved::ALL).fork_failures, Some(5));

        write(&pids.join("kubepods/burstable/podX"), "pids.max", "max\n");
        past_a_slow_read(&mut reader, &mut buf);
        write(&own, "pids.events", "max 6\n");
        let c = reader.read(&mut buf, NodeMoved::ALL);
        assert_eq!(
            (c.pids_max, c.fork_failures),
            (None, Some(5)),
            "held without any limit"
        );

        // A limit higher up, on the QoS class.
        write(&pids.join("kubepods/burstable"), "pids.max", "4096\n");
        past_a_slow_read(&mut reader, &mut buf);
        write(&own, "pids.events", "max 7\n");
        assert_eq!(reader.read(&mut buf, NodeMoved::ALL).fork_failures, Some(7));
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
            .read(&mut Vec::new(), NodeMoved::ALL);
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
        let c = CgroupReader::open(&mounts, Path::new("/svc"), &BTreeMap::new())
            .read(&mut Vec::new(), NodeMoved::ALL);
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

    #[test]
    fn cpu_time_beyond_what_ns_hold_is_missing_not_wrapped() {
        let mut c = CgroupCounters::default();
        let text = format!("usage_usec {}\nthrottled_usec 7\n", u64::MAX / 10);
        assert!(fill_from(None, "cpu.stat", &text, &mut c));
        assert_eq!(c.cpu_usage_ns, None);
        assert_eq!(c.cpu_throttled_ns, Some(7000));
    }

    #[test]
    fn every_counter_file_can_be_filled_from_text() {
        let files: Vec<_> = counter_files().collect();
        assert!(files.contains(&(None, "memory.current")));
        assert!(files.contains(&(Some("blkio"), "blkio.throttle.io_service_bytes")));
        for (controller, name) in files {
            let mut c = CgroupCounters::default();
            assert!(fill_from(controller, name, "garbage\n", &mut c), "{name}");
        }
        let mut c = CgroupCounters::default();
        assert!(!fill_from(None, "no.such.file", "1\n", &mut c));
        assert!(fill_from(None, "memory.current", "4096\n", &mut c));
        assert_eq!(c.memory_usage_bytes, Some(4096));
    }
}
