//! What collection costs per container per tick, and what the agent holds in memory, with
//! 200 containers on the node. The containers are cgroups made here in every hierarchy
//! (`/herd-bench/<id>`, which discovery takes for containers, as it does `/docker/<id>`),
//! each with a sleeping process in a network namespace of its own, as a pod's, so that every
//! file and namespace read is real. The containers first have no CPU quota and no memory
//! limit, then both, because the collector reads the throttling and limit-hit files every
//! tick only under a quota or a limit. Needs root; removes everything it made, also when
//! interrupted by a failure (a namespace goes with its only process).
//!
//! With `--agent`, the real agent also runs beside the containers, twice: 12 s as it is
//! deployed (1 s windows here), and with 100 ms windows until it holds a full hour of
//! `Explain` history (360 windows) for every container, checked through its API.
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
    api::listen::MAX_RESPONSE_BYTES,
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
use herd_proto::herd::v1::{self as pb, node_service_client::NodeServiceClient};
use herd_tests::cgroup::{Limits, OwnedCgroups, hierarchies_of};

const CONTAINERS: usize = 200;
const TICKS: u32 = 50;
const TOP: &str = "herd-bench";
/// Enough ticks for every reader to make a slow read, which picks up new limits.
const SETTLE_TICKS: u32 = 6;
/// The agent's default `--history-windows`: an hour of its default 10 s windows.
const HISTORY_WINDOWS: u64 = 360;
/// The goals of the issue: collection per container per tick, and the agent's resident
/// memory with 200 containers.
const GOAL_MICROS_PER_CONTAINER: f64 = 30.0;
const GOAL_RSS_MB: f64 = 40.0;

/// The cgroups and processes of the bench, removed on drop: the sleepers first, then the
/// containers' cgroups, then the top one (fields drop in order).
struct FakeNode {
    sleepers: Vec<Child>,
    containers: Vec<OwnedCgroups>,
    _top: OwnedCgroups,
}

impl FakeNode {
    fn new() -> anyhow::Result<Self> {
        let hierarchies = hierarchies_of(&["", "cpu", "cpuacct", "memory", "pids", "blkio"])?;
        let mut node = Self {
            sleepers: Vec::new(),
            containers: Vec::new(),
            _top: OwnedCgroups::create(&hierarchies, TOP, &Limits::default())?,
        };
        for i in 0..CONTAINERS {
            // `unshare` runs `sleep` in its own process: the pid is the sleeper's.
            let sleeper = Command::new("unshare")
                .args(["--net", "sleep", "600"])
                .stdout(Stdio::null())
                .spawn()
                .context("starting sleep in a network namespace of its own (unshare --net)")?;
            let pid = sleeper.id();
            node.sleepers.push(sleeper);
            let cgroup =
                OwnedCgroups::create(&hierarchies, &format!("{TOP}/{i:064x}"), &Limits::default())?;
            cgroup.add(pid)?;
            node.containers.push(cgroup);
        }
        Ok(node)
    }

    /// Gives every container a CFS quota of one core, a 1 GiB memory limit and a limit of
    /// 4096 pids.
    fn limit_every_container(&self) -> anyhow::Result<()> {
        let limits = Limits {
            cpu_millis: Some(1000),
            memory_bytes: Some(1 << 30),
            pids_max: Some(4096),
        };
        for container in &self.containers {
            container.limit(&limits)?;
        }
        Ok(())
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        // An exited process leaves its cgroup empty at once.
        for sleeper in &mut self.sleepers {
            let _ = sleeper.kill();
            let _ = sleeper.wait();
        }
    }
}

/// `/proc/<pid>/status`, read by procfs (memory fields in KiB); `None` once the process is gone.
fn status(pid: u32) -> Option<procfs::process::Status> {
    procfs::process::Process::new(i32::try_from(pid).ok()?)
        .ok()?
        .status()
        .ok()
}

/// The agent beside the bench's containers, without a runtime (so that every container is
/// its own `unnamed:` domain), serving its API on `socket`.
fn start_agent(agent: &Path, socket: &Path, args: &[&str]) -> anyhow::Result<Child> {
    Command::new(agent)
        .args(args)
        .args(["--runtime-socket", "/nonexistent/herd-bench.sock"])
        .arg("--socket")
        .arg(socket)
        .env("HERD_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))
}

/// The agent's resident memory over a run beside the bench's containers: (steady, peak)
/// in KiB. Steady is the largest VmRSS once the first windows are behind it; peak is the
/// kernel's high-water mark (VmHWM), which includes loading the eBPF programs.
fn agent_memory_kib(agent: &Path, socket: &Path, seconds: u64) -> anyhow::Result<(u64, u64)> {
    let duration = format!("{seconds}s");
    let mut child = start_agent(
        agent,
        socket,
        &["--interval", "1s", "--duration", &duration],
    )?;
    let pid = child.id();
    let started = Instant::now();
    let (mut steady, mut peak) = (0, 0);
    while child.try_wait()?.is_none() {
        if started.elapsed() > Duration::from_secs(seconds / 3) {
            steady = steady.max(status(pid).and_then(|s| s.vmrss).unwrap_or(0));
        }
        peak = peak.max(status(pid).and_then(|s| s.vmhwm).unwrap_or(0));
        thread::sleep(Duration::from_millis(200));
    }
    Ok((steady, peak))
}

/// The agent's memory with a full `Explain` history: what it holds once it has kept
/// [`HISTORY_WINDOWS`] windows of every container.
struct FullHistory {
    /// Largest VmRSS over a few seconds once the history is full, in KiB.
    steady_kib: u64,
    peak_kib: u64,
    /// Windows the agent had scored when the sampling began.
    windows: u64,
    /// Windows `Explain` gave for one of the bench's containers (the full history).
    explained: usize,
    took: Duration,
}

/// Runs the agent with 100 ms windows until its API says it has scored more than
/// [`HISTORY_WINDOWS`] windows, checks with `Explain` that a bench container's history is
/// full, then samples its VmRSS for a few seconds.
async fn agent_memory_with_history(agent: &Path, socket: &Path) -> anyhow::Result<FullHistory> {
    let history = HISTORY_WINDOWS.to_string();
    let mut child = start_agent(
        agent,
        socket,
        &[
            "--interval",
            "100ms",
            "--min-age",
            "0s",
            "--history-windows",
            &history,
            "--duration",
            "180s",
        ],
    )?;
    let measured = full_history(&mut child, socket).await;
    // SAFETY: kill has no memory preconditions; the pid is our own child's, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    measured
}

async fn full_history(child: &mut Child, socket: &Path) -> anyhow::Result<FullHistory> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(150);
    let mut client = loop {
        anyhow::ensure!(
            child.try_wait()?.is_none(),
            "the agent stopped before it served its API"
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent did not serve {}",
            socket.display()
        );
        if let Ok(channel) = herd_proto::uds::connect(socket).await {
            break NodeServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let windows = loop {
        let info = client.get_info(pb::GetInfoRequest::default()).await?;
        let windows = info.into_inner().windows;
        if windows > HISTORY_WINDOWS {
            break windows;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent scored only {windows} windows in {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let containers = client
        .list_containers(pb::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    let ours = containers
        .iter()
        .find(|c| c.cgroup.starts_with(&format!("/{TOP}/")))
        .context("the agent lists none of the bench's containers")?;
    let explained = client
        .explain(pb::ExplainRequest {
            container_id: ours.id.clone(),
            windows: HISTORY_WINDOWS as u32,
            ..pb::ExplainRequest::default()
        })
        .await?
        .into_inner()
        .windows
        .len();
    let pid = child.id();
    let mut steady_kib = 0;
    for _ in 0..20 {
        steady_kib = steady_kib.max(status(pid).and_then(|s| s.vmrss).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(FullHistory {
        steady_kib,
        peak_kib: status(pid).and_then(|s| s.vmhwm).unwrap_or(0),
        windows,
        explained,
        took: started.elapsed(),
    })
}

/// The goal cell of a line: the goal, and `MISSED` when the value is over it.
fn goal(value: f64, limit: f64, unit: &str) -> String {
    if value > limit {
        format!("≤ {limit} {unit}: **MISSED**")
    } else {
        format!("≤ {limit} {unit}")
    }
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
    let node = FakeNode::new()?;

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
    node.limit_every_container()?;
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

    let sockets = tempfile::tempdir()?;
    let socket = sockets.path().join("agent.sock");
    let (rss, full) = match &agent {
        Some(agent) => (
            Some(agent_memory_kib(agent, &socket, 12)?),
            Some(agent_memory_with_history(agent, &socket).await?),
        ),
        None => (None, None),
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
    writeln!(report, "| measure | value | goal |")?;
    writeln!(report, "|---|---:|---|")?;
    writeln!(
        report,
        "| first tick (opens every file) | {:.1} ms | |",
        opening.as_secs_f64() * 1e3
    )?;
    writeln!(
        report,
        "| steady tick, all containers | {:.2} ms | |",
        per_tick.as_secs_f64() * 1e3
    )?;
    writeln!(
        report,
        "| per container per tick | {per_container:.1} µs | {} |",
        goal(per_container, GOAL_MICROS_PER_CONTAINER, "µs")
    )?;
    let micros = |total: Duration| total.as_secs_f64() * 1e6 / f64::from(TICKS) / all as f64;
    writeln!(
        report,
        "| … of which cgroup files | {:.1} µs | |",
        micros(in_cgroups)
    )?;
    writeln!(
        report,
        "| … of which network namespaces | {:.1} µs | |",
        micros(in_netns)
    )?;
    writeln!(
        report,
        "| cgroup files read per container per tick | {files_per_container:.2} | |"
    )?;
    writeln!(
        report,
        "| cgroup files per container per tick, under limits | {:.1} µs | |",
        micros(in_limited)
    )?;
    writeln!(
        report,
        "| … files read per container per tick, under limits | \
         {limited_files_per_container:.2} | |"
    )?;
    writeln!(
        report,
        "| cgroup files per container per tick, under limits, every gate open | {:.1} µs | |",
        micros(in_ungated)
    )?;
    writeln!(
        report,
        "| … files read per container per tick, under limits, every gate open | \
         {ungated_files_per_container:.2} | |"
    )?;
    writeln!(
        report,
        "| … the same with block IO from eBPF (no blkio files, as the agent runs with eBPF) \
         | {:.1} µs | |",
        micros(in_ebpf_io)
    )?;
    writeln!(
        report,
        "| … files read per container per tick, with block IO from eBPF | \
         {ebpf_io_files_per_container:.2} | |"
    )?;
    writeln!(
        report,
        "| network namespace files read per container per tick | \
         {netns_files_per_container:.2} | |"
    )?;
    writeln!(
        report,
        "| network namespaces, every file every tick, per container | {:.1} µs | |",
        micros(in_netns_ungated)
    )?;
    writeln!(
        report,
        "| … files read per container per tick, every file every tick | \
         {netns_ungated_files_per_container:.2} | |"
    )?;
    writeln!(
        report,
        "| discovery poll (cgroup walk, no runtime) | {:.1} ms | |",
        poll.as_secs_f64() * 1e3
    )?;
    let mb = |kib: u64| kib as f64 / 1024.0;
    if let Some((steady, peak)) = rss {
        writeln!(
            report,
            "| agent resident memory, steady (VmRSS), 12 s run | {:.1} MB | {} |",
            mb(steady),
            goal(mb(steady), GOAL_RSS_MB, "MB")
        )?;
        writeln!(
            report,
            "| agent resident memory, peak while loading eBPF (VmHWM) | {:.1} MB | |",
            mb(peak)
        )?;
    }
    if let Some(full) = full {
        writeln!(
            report,
            "| agent resident memory with a full hour of `Explain` history ({HISTORY_WINDOWS} \
             windows of every container, {} shown by `Explain`; 100 ms windows, {} scored in \
             {:.0} s), steady (VmRSS); no runtime, so each container is its own `unnamed:` \
             domain, compared with its own past: the most history per container | {:.1} MB \
             | {} |",
            full.explained,
            full.windows,
            full.took.as_secs_f64(),
            mb(full.steady_kib),
            goal(mb(full.steady_kib), GOAL_RSS_MB, "MB")
        )?;
        writeln!(
            report,
            "| … peak (VmHWM) of that run | {:.1} MB | |",
            mb(full.peak_kib)
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
