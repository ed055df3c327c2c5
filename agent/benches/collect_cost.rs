//! What collection costs per container per tick, and what the agent holds in memory, with
//! 200 containers on the node. The containers are cgroups made here in every hierarchy
//! (`/herd-bench/<id>`, which discovery takes for containers, as it does `/docker/<id>`),
//! each with a sleeping process in a network namespace of its own, as a pod's, so that every
//! file and namespace read is real. The containers first have no CPU quota and no memory
//! limit, then both, because the collector reads the throttling and limit-hit files every
//! tick only under a quota or a limit. Needs root; removes everything it made, also when
//! interrupted by a failure (a namespace goes with its only process).
//!
//! `cargo bench -p herd-agent --bench collect_cost -- [--output FILE] [--agent BINARY]`
//! (a relative `BINARY` that is not found from the package directory, where cargo runs
//! benches, is taken from the workspace root).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use herd_agent::{
    collect::{
        cgroup::{CgroupCollector, CgroupMounts},
        netns::NetnsCollector,
    },
    discovery::{
        containers::ContainerTable,
        poller::{Discovery, DiscoveryConfig},
    },
    host::{self, HostPaths},
};

const CONTAINERS: usize = 200;
const TICKS: u32 = 50;
const TOP: &str = "herd-bench";
/// Enough ticks for every reader to make a slow read, which picks up new limits.
const SETTLE_TICKS: u32 = 6;

/// The cgroups and processes of the bench, removed on drop.
struct FakeNode {
    dirs: Vec<PathBuf>,
    sleepers: Vec<Child>,
}

impl FakeNode {
    fn new(mounts: &CgroupMounts) -> anyhow::Result<Self> {
        let mut hierarchies: Vec<PathBuf> = vec![mounts.cgroup2.clone()];
        for controller in ["cpu", "cpuacct", "memory", "pids", "blkio"] {
            if let Some(mount) = mounts.v1.get(controller)
                && !hierarchies.contains(mount)
            {
                hierarchies.push(mount.clone());
            }
        }
        let mut node = Self {
            dirs: Vec::new(),
            sleepers: Vec::new(),
        };
        for hierarchy in &hierarchies {
            let top = hierarchy.join(TOP);
            fs::create_dir_all(&top).with_context(|| format!("creating {}", top.display()))?;
            node.dirs.push(top);
        }
        for i in 0..CONTAINERS {
            let id = format!("{i:064x}");
            // `unshare` runs `sleep` in its own process: the pid is the sleeper's.
            let sleeper = Command::new("unshare")
                .args(["--net", "sleep", "600"])
                .stdout(Stdio::null())
                .spawn()
                .context("starting sleep in a network namespace of its own (unshare --net)")?;
            let pid = sleeper.id();
            node.sleepers.push(sleeper);
            for hierarchy in &hierarchies {
                let dir = hierarchy.join(TOP).join(&id);
                fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                node.dirs.push(dir.clone());
                fs::write(dir.join("cgroup.procs"), pid.to_string())
                    .with_context(|| format!("moving {pid} into {}", dir.display()))?;
            }
        }
        Ok(node)
    }
}

impl FakeNode {
    /// Gives every container a CFS quota of one core, a 1 GiB memory limit and a limit of
    /// 4096 pids (v1).
    fn limit_every_container(&self, mounts: &CgroupMounts) -> anyhow::Result<()> {
        let limits = [
            ("cpu", "cpu.cfs_quota_us", "100000"),
            ("memory", "memory.limit_in_bytes", "1073741824"),
            ("pids", "pids.max", "4096"),
        ];
        for (controller, file, value) in limits {
            let Some(mount) = mounts.v1.get(controller) else {
                continue;
            };
            for i in 0..CONTAINERS {
                let path = mount.join(TOP).join(format!("{i:064x}")).join(file);
                fs::write(&path, value).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        for sleeper in &mut self.sleepers {
            let _ = sleeper.kill();
            let _ = sleeper.wait();
        }
        // Children before parents; an exited process leaves its cgroup empty at once.
        for dir in self.dirs.iter().rev() {
            for _ in 0..50 {
                match fs::remove_dir(dir) {
                    Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    _ => break,
                }
            }
        }
    }
}

/// The agent's resident memory over a run beside the bench's containers: (steady, peak)
/// in KiB. Steady is the largest VmRSS once the first windows are behind it; peak is the
/// kernel's high-water mark (VmHWM), which includes loading the eBPF programs.
fn agent_memory_kib(agent: &Path, seconds: u64) -> anyhow::Result<(u64, u64)> {
    let mut child = Command::new(agent)
        .args(["--interval", "1s", "--duration", &format!("{seconds}s")])
        .args(["--runtime-socket", "/nonexistent/herd-bench.sock"])
        .env("HERD_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let status_path = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let (mut steady, mut peak) = (0, 0);
    let field = |status: &str, name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    while child.try_wait()?.is_none() {
        if let Ok(status) = fs::read_to_string(&status_path) {
            if started.elapsed() > Duration::from_secs(seconds / 3) {
                steady = steady.max(field(&status, "VmRSS:").unwrap_or(0));
            }
            peak = peak.max(field(&status, "VmHWM:").unwrap_or(0));
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok((steady, peak))
}

/// A collector the bench times alone: one tick over the table, and the files read so far.
trait Timed {
    fn tick(&mut self, table: &ContainerTable);
    fn files_read(&self) -> u64;
}

impl Timed for CgroupCollector {
    fn tick(&mut self, table: &ContainerTable) {
        std::hint::black_box(self.collect(table));
    }
    fn files_read(&self) -> u64 {
        CgroupCollector::files_read(self)
    }
}

impl Timed for NetnsCollector {
    fn tick(&mut self, table: &ContainerTable) {
        std::hint::black_box(self.collect(table));
    }
    fn files_read(&self) -> u64 {
        NetnsCollector::files_read(self)
    }
}

/// [`TICKS`] ticks of one collector alone: the time they took, and the files read per
/// container per tick.
fn timed_ticks(collector: &mut impl Timed, table: &ContainerTable) -> (Duration, f64) {
    let files_before = collector.files_read();
    let start = Instant::now();
    for _ in 0..TICKS {
        collector.tick(table);
    }
    let elapsed = start.elapsed();
    let files = collector.files_read() - files_before;
    (
        elapsed,
        files as f64 / f64::from(TICKS) / table.len() as f64,
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut output, mut agent) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--output" => output = args.next().map(PathBuf::from),
            "--agent" => agent = args.next().map(PathBuf::from),
            _ => {}
        }
    }
    let agent = agent.map(|agent| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if agent.is_relative() && !agent.exists() {
            workspace.join(agent)
        } else {
            agent
        }
    });
    let paths = HostPaths::default();
    let host = host::cgroup_mounts(&paths.proc)?;
    let mounts = CgroupMounts {
        cgroup2: host.cgroup2.clone(),
        v1: host.cgroup_v1.clone(),
    };
    let node = FakeNode::new(&mounts)?;

    let mut discovery = Discovery::new(DiscoveryConfig {
        runtime_socket: Some(PathBuf::from("/nonexistent/herd-bench.sock")),
        min_age: Duration::ZERO,
        cgroup2: host.cgroup2.clone(),
        proc: paths.proc.clone(),
    });
    discovery.poll().await;
    let table = discovery.table();
    let ours = table
        .containers()
        .iter()
        .filter(|c| c.cgroup.starts_with(format!("/{TOP}")))
        .count();
    anyhow::ensure!(
        ours == CONTAINERS,
        "discovery found {ours} of {CONTAINERS} containers"
    );

    let mut cgroups = CgroupCollector::new(mounts.clone());
    let mut netns = NetnsCollector::new(&paths.proc);
    // The first tick opens the files; the steady state is what the agent pays every tick.
    let first = Instant::now();
    cgroups.collect(table);
    netns.collect(table);
    let opening = first.elapsed();
    let (mut in_cgroups, mut in_netns) = (Duration::ZERO, Duration::ZERO);
    let files_before = cgroups.files_read();
    let netns_files_before = netns.files_read();
    for _ in 0..TICKS {
        let start = Instant::now();
        std::hint::black_box(cgroups.collect(table));
        let middle = Instant::now();
        std::hint::black_box(netns.collect(table));
        in_cgroups += middle - start;
        in_netns += middle.elapsed();
    }
    let files = cgroups.files_read() - files_before;
    let netns_files = netns.files_read() - netns_files_before;
    let per_tick = (in_cgroups + in_netns) / TICKS;
    let all = table.len();
    let per_container = per_tick.as_secs_f64() * 1e6 / all as f64;
    let files_per_container = files as f64 / f64::from(TICKS) / all as f64;
    let netns_files_per_container = netns_files as f64 / f64::from(TICKS) / all as f64;

    // Every namespace file on every tick, as where every pod has traffic on every tick.
    netns.ungate();
    let (in_netns_ungated, netns_ungated_files_per_container) = timed_ticks(&mut netns, table);

    // The same containers under a CPU quota, a memory limit and a pids limit.
    node.limit_every_container(&mounts)?;
    for _ in 0..SETTLE_TICKS {
        cgroups.collect(table);
    }
    let (in_limited, limited_files_per_container) = timed_ticks(&mut cgroups, table);

    // The same, with every file that a node-wide total gates read on every tick.
    cgroups.ungate();
    let (in_ungated, ungated_files_per_container) = timed_ticks(&mut cgroups, table);

    // The same, as the agent reads where its eBPF programs count block IO: no blkio files.
    let mut cgroups = CgroupCollector::new(mounts.clone()).without_io_files();
    cgroups.ungate();
    for _ in 0..SETTLE_TICKS {
        cgroups.collect(table);
    }
    let (in_ebpf_io, ebpf_io_files_per_container) = timed_ticks(&mut cgroups, table);

    let poll_start = Instant::now();
    discovery.poll().await;
    let poll = poll_start.elapsed();

    let rss = match &agent {
        Some(agent) => Some(agent_memory_kib(agent, 12)?),
        None => None,
    };
    drop(node);

    let mut report = String::new();
    writeln!(report, "# Collection cost with {CONTAINERS} containers")?;
    writeln!(report)?;
    writeln!(
        report,
        "{all} containers on the node ({CONTAINERS} made by the bench); cgroup files (v1 cpu, \
         cpuacct, memory, pids, blkio; cgroup2 pressure) and network-namespace files per \
         container, kept open; mean of {TICKS} back-to-back ticks. A file is read only when its \
         counters can have moved (the collector's gates); the others give their last reading. \
         The bench's containers are idle sleepers without CPU quota, memory or pids limit (as \
         BestEffort pods) on a quiet node, so most gates stay shut: their throttling, \
         limit-hit and fork-failure files are not read, `memory.stat` only every sixth tick \
         (they neither run nor change their charge), and the pressure, OOM-kill and \
         blkio-op files only when the node's total moved. The lines \"under limits\" give \
         the same containers a CPU quota, a memory and a pids limit; the lines \"every gate \
         open\" also read `memory.stat` and every pressure, OOM-kill and blkio file on \
         every tick: what a node whose containers all run and stall on every resource on \
         every tick pays (on a busy node, most containers run and CPU and IO pressure move \
         on most ticks). Each container has a network namespace of its own, as a pod has, \
         without traffic: its `net/dev` is read every tick, `net/snmp` every sixth (and \
         when a packet crossed the namespace's interfaces), `net/netstat` once (and when \
         TCP received a segment); the line \"network namespaces, every file every tick\" is \
         what namespaces with TCP traffic on every tick cost."
    )?;
    writeln!(report)?;
    writeln!(report, "| measure | value |")?;
    writeln!(report, "|---|---:|")?;
    writeln!(
        report,
        "| first tick (opens every file) | {:.1} ms |",
        opening.as_secs_f64() * 1e3
    )?;
    writeln!(
        report,
        "| steady tick, all containers | {:.2} ms |",
        per_tick.as_secs_f64() * 1e3
    )?;
    writeln!(report, "| per container per tick | {per_container:.1} µs |")?;
    let micros = |total: Duration| total.as_secs_f64() * 1e6 / f64::from(TICKS) / all as f64;
    writeln!(
        report,
        "| … of which cgroup files | {:.1} µs |",
        micros(in_cgroups)
    )?;
    writeln!(
        report,
        "| … of which network namespaces | {:.1} µs |",
        micros(in_netns)
    )?;
    writeln!(
        report,
        "| cgroup files read per container per tick | {files_per_container:.2} |"
    )?;
    writeln!(
        report,
        "| cgroup files per container per tick, under limits | {:.1} µs |",
        micros(in_limited)
    )?;
    writeln!(
        report,
        "| … files read per container per tick, under limits | \
         {limited_files_per_container:.2} |"
    )?;
    writeln!(
        report,
        "| cgroup files per container per tick, under limits, every gate open | {:.1} µs |",
        micros(in_ungated)
    )?;
    writeln!(
        report,
        "| … files read per container per tick, under limits, every gate open | \
         {ungated_files_per_container:.2} |"
    )?;
    writeln!(
        report,
        "| … the same with block IO from eBPF (no blkio files, as the agent runs with eBPF) \
         | {:.1} µs |",
        micros(in_ebpf_io)
    )?;
    writeln!(
        report,
        "| … files read per container per tick, with block IO from eBPF | \
         {ebpf_io_files_per_container:.2} |"
    )?;
    writeln!(
        report,
        "| network namespace files read per container per tick | \
         {netns_files_per_container:.2} |"
    )?;
    writeln!(
        report,
        "| network namespaces, every file every tick, per container | {:.1} µs |",
        micros(in_netns_ungated)
    )?;
    writeln!(
        report,
        "| … files read per container per tick, every file every tick | \
         {netns_ungated_files_per_container:.2} |"
    )?;
    writeln!(
        report,
        "| discovery poll (cgroup walk, no runtime) | {:.1} ms |",
        poll.as_secs_f64() * 1e3
    )?;
    if let Some((steady, peak)) = rss {
        let mb = |kib: u64| kib as f64 / 1024.0;
        writeln!(
            report,
            "| agent resident memory, steady (VmRSS), 12 s run | {:.1} MB |",
            mb(steady)
        )?;
        writeln!(
            report,
            "| agent resident memory, peak while loading eBPF (VmHWM) | {:.1} MB |",
            mb(peak)
        )?;
    }
    print!("{report}");
    if let Some(path) = output {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("written to {}", path.display());
    }
    Ok(())
}
