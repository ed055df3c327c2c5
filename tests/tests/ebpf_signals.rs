//! The eBPF signals against real cgroups: each workload has a known effect, which must be
//! charged to its own cgroup within tolerance, and never to the idle sibling beside it.

use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use anyhow::Context as _;
use herd_agent::{
    collect::{
        block,
        ebpf::{EbpfConfig, EbpfPrograms, Signal},
        sched,
        signals::{CgroupSignals, SignalSample, SignalSampler},
    },
    discovery::cgroup2::CgroupIndex,
    host::{self, HostPaths},
};
use herd_tests::{
    cgroup::{Limits, OwnedCgroup, OwnedCgroups, hierarchies_of},
    kernel_fixtures::{LoopDevice, SmallTmpfs, Tracefs},
    require_root,
    resource_load::ResourceLoad,
    syscall_load::CountedLoad,
};

fn mount() -> anyhow::Result<PathBuf> {
    Ok(host::cgroup2_mount(&HostPaths::default().proc)?)
}

/// The programs of some signals and a sampler over their maps; detached on drop, before
/// tracefs goes (fields drop in order).
struct Probe {
    sampler: SignalSampler,
    index: CgroupIndex,
    _programs: EbpfPrograms,
    _tracefs: Tracefs,
}

impl Probe {
    fn new(signals: &[Signal], network_cgroup: Option<&Path>) -> anyhow::Result<Self> {
        let tracefs = Tracefs::ensure()?;
        let mut programs = EbpfPrograms::load_with(&EbpfConfig {
            signals: signals.to_vec(),
            network_cgroup: network_cgroup.map(Path::to_path_buf),
            missing_tracepoints: Vec::new(),
        })?;
        let maps = programs.take_signal_maps()?;
        Ok(Self {
            sampler: SignalSampler::new(maps),
            index: CgroupIndex::new(mount()?),
            _programs: programs,
            _tracefs: tracefs,
        })
    }

    fn sample(&mut self) -> anyhow::Result<SignalSample> {
        Ok(self.sampler.sample(&mut self.index)?)
    }
}

/// The row of a cgroup, or all zeros when nothing was charged to it.
fn row(sample: &SignalSample, cgroup: &OwnedCgroup) -> anyhow::Result<CgroupSignals> {
    Ok(sample.cgroup(cgroup.id()?).cloned().unwrap_or_default())
}

fn assert_idle(sample: &SignalSample, idle: &OwnedCgroup) -> anyhow::Result<()> {
    assert!(
        sample.cgroup(idle.id()?).is_none(),
        "the idle sibling was charged: {:?}",
        sample.cgroup(idle.id()?)
    );
    Ok(())
}

fn within(value: u64, low: u64, high: u64, what: &str) {
    assert!(
        (low..=high).contains(&value),
        "{what}: {value}, expected {low}..={high}"
    );
}

/// A process in the idle sibling that does nothing the signal under test sees.
fn idler(idle: &OwnedCgroup, seconds: u32) -> anyhow::Result<ResourceLoad> {
    let seconds = seconds.to_string();
    let args = [
        "tick",
        "--cpu",
        "0",
        "--seconds",
        &seconds,
        "--period-ms",
        "500",
    ];
    ResourceLoad::start(&[idle.path()], args)
}

#[test]
fn failed_syscalls_are_split_by_errno_class() -> anyhow::Result<()> {
    require_root();
    const CALLS: u64 = 50_000;
    const FAILURES: u64 = 7_000;
    let busy = OwnedCgroup::new(&mount()?, "errno")?;
    let mut probe = Probe::new(&[Signal::Syscalls], None)?;

    let load = CountedLoad::spawn(CALLS, FAILURES)?;
    herd_tests::syscall_load::wait_until_blocked_in_read(load.pid())?;
    busy.add(load.pid())?;
    probe.sample()?;
    load.cue_and_wait()?;
    let sample = probe.sample()?;

    let stats = row(&sample, &busy)?.syscalls;
    eprintln!("syscalls: {stats:?}");
    // close(-1) fails with EBADF: a bad call.
    within(stats.errors.bad_call, FAILURES, FAILURES + 2, "bad calls");
    within(stats.counts.failed, FAILURES, FAILURES + 2, "failures");
    let others = stats.errors.again
        + stats.errors.interrupted
        + stats.errors.not_found
        + stats.errors.denied
        + stats.errors.other;
    within(others, 0, 2, "failures of other classes");
    assert_eq!(
        stats.counts.failed,
        stats.errors.bad_call + others,
        "every failure is in one class"
    );
    Ok(())
}

#[test]
fn direct_io_is_charged_to_the_submitting_cgroup() -> anyhow::Result<()> {
    require_root();
    const BLOCK: u64 = 64 * 1024;
    const COUNT: u64 = 64;
    let busy = OwnedCgroup::new(&mount()?, "io")?;
    let idle = OwnedCgroup::new(&mount()?, "io-idle")?;
    let backing = std::env::temp_dir().join(format!("herd-test-loop-{}.img", std::process::id()));
    let device = LoopDevice::new(&backing, 64 << 20)?;
    let mut probe = Probe::new(&[Signal::Block], None)?;
    let _idler = idler(&idle, 30)?;
    probe.sample()?;

    let device_path = device.path().to_str().context("device path")?;
    let (block, count) = (BLOCK.to_string(), COUNT.to_string());
    for read in [false, true] {
        let mut args = vec!["direct-io", "--path", device_path];
        args.extend(["--block-size", &block, "--count", &count]);
        if read {
            args.push("--read");
        }
        ResourceLoad::start(&[busy.path()], args)?.finish()?;
    }
    let sample = probe.sample()?;

    let io = row(&sample, &busy)?.block;
    eprintln!("block: {io:?}");
    for (name, direction) in [("write", io.write), ("read", io.read)] {
        within(direction.ops, COUNT, COUNT + 2, &format!("{name} bios"));
        within(
            direction.bytes,
            COUNT * BLOCK,
            (COUNT + 2) * BLOCK,
            &format!("{name} bytes"),
        );
        // Each IO waits for the previous one, so no two merge into one request.
        within(
            direction.completed,
            COUNT - 2,
            COUNT + 2,
            &format!("{name} completions"),
        );
        let latency = block::mean_latency(&direction).context("no latency")?;
        assert!(
            latency > Duration::ZERO && latency < Duration::from_secs(1),
            "{name} latency {latency:?}"
        );
        assert_eq!(direction.failed, 0, "{name} failures");
    }
    assert_eq!(io.discard.ops, 0);
    assert_idle(&sample, &idle)?;
    Ok(())
}

#[test]
fn failed_block_requests_are_counted() -> anyhow::Result<()> {
    require_root();
    const BLOCK: u64 = 64 * 1024;
    const COUNT: u64 = 64;
    let busy = OwnedCgroup::new(&mount()?, "io-fail")?;
    // The loop device is bigger than the tmpfs its file lives on: once the tmpfs is full,
    // the device's writes fail.
    let tmpfs = SmallTmpfs::new("io-fail", 1 << 20)?;
    let device = LoopDevice::new(&tmpfs.path().join("backing.img"), 16 << 20)?;
    let mut probe = Probe::new(&[Signal::Block], None)?;
    probe.sample()?;

    let device_path = device.path().to_str().context("device path")?;
    let (block, count) = (BLOCK.to_string(), COUNT.to_string());
    let args = [
        "direct-io",
        "--path",
        device_path,
        "--block-size",
        &block,
        "--count",
        &count,
    ];
    let status = ResourceLoad::start(&[busy.path()], args)?.wait()?;
    assert!(!status.success(), "the writes did not fail");
    let sample = probe.sample()?;

    let write = row(&sample, &busy)?.block.write;
    eprintln!("failing writes: {write:?}");
    assert!(write.failed >= 1, "no failed request counted: {write:?}");
    assert!(
        write.failed <= write.completed && write.completed <= write.ops,
        "{write:?}"
    );
    Ok(())
}

#[test]
fn loopback_bytes_are_charged_to_the_sender_and_the_receiver() -> anyhow::Result<()> {
    require_root();
    const BYTES: u64 = 16 << 20;
    let parent = OwnedCgroup::new(&mount()?, "net")?;
    let tx = OwnedCgroup::new(parent.path(), "tx")?;
    let rx = OwnedCgroup::new(parent.path(), "rx")?;
    let idle = OwnedCgroup::new(parent.path(), "idle")?;
    let mut probe = Probe::new(&[Signal::Network], Some(parent.path()))?;
    let _idler = idler(&idle, 30)?;
    probe.sample()?;

    let mut receiver = ResourceLoad::start(&[rx.path()], ["listen"])?;
    let port = receiver.line()?;
    ResourceLoad::start(
        &[tx.path()],
        ["send", "--port", &port, "--bytes", &BYTES.to_string()],
    )?
    .finish()?;
    let received: u64 = receiver.line()?.parse()?;
    assert_eq!(received, BYTES);
    receiver.finish()?;
    let sample = probe.sample()?;

    // IP and TCP headers come on top of the payload: a few percent at most on loopback,
    // where packets are up to 64 KiB.
    let high = BYTES + BYTES / 20;
    let (sent, got) = (row(&sample, &tx)?.net, row(&sample, &rx)?.net);
    eprintln!("sender: {sent:?}\nreceiver: {got:?}");
    within(sent.tx_bytes, BYTES, high, "bytes sent by the sender");
    within(got.rx_bytes, BYTES, high, "bytes received by the receiver");
    assert!(sent.tx_packets > 0 && got.rx_packets > 0);
    // The other direction carries acknowledgements only.
    within(sent.rx_bytes, 1, BYTES / 50, "bytes the sender received");
    within(got.tx_bytes, 1, BYTES / 50, "bytes the receiver sent");
    assert_idle(&sample, &idle)?;
    Ok(())
}

#[test]
fn a_cpu_contended_cgroup_waits_longer_for_a_cpu() -> anyhow::Result<()> {
    require_root();
    const SPINNERS: usize = 4;
    let busy = OwnedCgroup::new(&mount()?, "contended")?;
    let light = OwnedCgroup::new(&mount()?, "light")?;
    let idle = OwnedCgroup::new(&mount()?, "sched-idle")?;
    let mut probe = Probe::new(&[Signal::Sched], None)?;
    // A process that stays blocked: the idle sibling must see nothing at all.
    let sleeper = CountedLoad::spawn(0, 0)?;
    herd_tests::syscall_load::wait_until_blocked_in_read(sleeper.pid())?;
    idle.add(sleeper.pid())?;

    // More busy processes than the one CPU they are pinned to, and a light sibling that
    // sleeps and wakes on the other CPU.
    let cpus = thread::available_parallelism()?.get();
    let other_cpu = (1 % cpus).to_string();
    let mut spinners = (0..SPINNERS)
        .map(|_| ResourceLoad::start(&[busy.path()], ["spin", "--cpu", "0", "--seconds", "4"]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ticker = ResourceLoad::start(
        &[light.path()],
        [
            "tick",
            "--cpu",
            &other_cpu,
            "--seconds",
            "4",
            "--period-ms",
            "10",
        ],
    )?;
    probe.sample()?;
    thread::sleep(Duration::from_secs(3));
    let sample = probe.sample()?;
    for spinner in &mut spinners {
        spinner.wait()?;
    }
    ticker.wait()?;

    let contended = row(&sample, &busy)?.sched;
    let quiet = row(&sample, &light)?.sched;
    let contended_wait = sched::mean_wait(&contended).context("no waits in the busy cgroup")?;
    let quiet_wait = sched::mean_wait(&quiet).context("no waits in the light cgroup")?;
    eprintln!(
        "busy: {} waits, mean {contended_wait:?}, {} over 5 ms; light: {} waits, mean {quiet_wait:?}",
        contended.waits, contended.long_waits, quiet.waits
    );
    assert!(
        contended_wait >= Duration::from_millis(1),
        "busy cgroup waits only {contended_wait:?}"
    );
    assert!(
        contended_wait > quiet_wait * 3,
        "busy {contended_wait:?} is not clearly above light {quiet_wait:?}"
    );
    assert!(contended.long_waits > 0);
    assert_idle(&sample, &idle)?;
    drop(sleeper);
    Ok(())
}

#[test]
fn an_oom_kill_is_charged_to_the_victims_cgroup() -> anyhow::Result<()> {
    require_root();
    const LIMIT: u64 = 64 << 20;
    let victim = OwnedCgroup::new(&mount()?, "oom")?;
    let idle = OwnedCgroup::new(&mount()?, "oom-idle")?;
    // The memory limit where this host has the memory controller (v1 here, cgroup2 with it
    // enabled elsewhere).
    let limits = Limits {
        memory_bytes: Some(LIMIT),
        ..Limits::default()
    };
    let limited = OwnedCgroups::create(
        &hierarchies_of(&["memory"])?,
        &format!("herd-test-oom-{}", std::process::id()),
        &limits,
    )?;
    let memory = limited.dirs().next().context("no memory hierarchy")?;
    // Without swap in the way, the limit ends in a kill rather than in swapping.
    let _ = fs::write(memory.join("memory.swappiness"), "0");
    let mut probe = Probe::new(&[Signal::Oom], None)?;
    let _idler = idler(&idle, 30)?;
    probe.sample()?;

    let mut hog = ResourceLoad::start(&[victim.path(), memory], ["hog", "--mb", "1024"])?;
    let status = hog.wait()?;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "hog ended with {status}"
    );
    let sample = probe.sample()?;

    let victim_row = row(&sample, &victim)?;
    eprintln!("victim: {:?}", victim_row.oom);
    assert_eq!(victim_row.oom.kills, 1);
    assert_idle(&sample, &idle)?;
    Ok(())
}

#[test]
fn a_signal_that_cannot_attach_is_named_and_left_out() -> anyhow::Result<()> {
    require_root();
    // cgroup_skb programs attach to cgroup2 directories only; a v1 one is refused.
    let config = EbpfConfig {
        signals: vec![Signal::Syscalls, Signal::Network],
        network_cgroup: Some(PathBuf::from("/sys/fs/cgroup/memory")),
        missing_tracepoints: Vec::new(),
    };
    let programs = EbpfPrograms::load_available(&config)?;
    assert_eq!(programs.signals(), [Signal::Syscalls]);
    let [(signal, err)] = programs.unavailable() else {
        panic!(
            "expected one unavailable signal: {:?}",
            programs.unavailable()
        );
    };
    assert_eq!(*signal, Signal::Network);
    let message = err.to_string();
    assert!(
        message.contains("herd_skb_ingress") && message.contains("cgroup_skb"),
        "the error names neither the program nor the feature: {message}"
    );
    drop(programs);

    let strict = EbpfPrograms::load_with(&config);
    assert!(strict.is_err(), "a strict load went on without the network");
    Ok(())
}

#[test]
fn a_missing_tracepoint_leaves_the_other_signals_running() -> anyhow::Result<()> {
    require_root();
    let _tracefs = Tracefs::ensure()?;
    // As a kernel without them: block_rq_complete (classic) and sys_exit (raw).
    let config = EbpfConfig {
        missing_tracepoints: vec!["block_rq_complete".to_owned(), "sys_exit".to_owned()],
        ..EbpfConfig::default()
    };
    let programs = EbpfPrograms::load_available(&config)?;
    assert_eq!(
        programs.signals(),
        [Signal::Network, Signal::Sched, Signal::Oom],
        "{:?}",
        programs.unavailable()
    );
    for (signal, needle) in [
        (Signal::Syscalls, "sys_exit"),
        (Signal::Block, "block_rq_complete"),
    ] {
        let (_, err) = programs
            .unavailable()
            .iter()
            .find(|(s, _)| *s == signal)
            .with_context(|| format!("{signal} is not listed as unavailable"))?;
        let message = err.to_string();
        assert!(
            message.contains(needle) && !message.contains("absent_by"),
            "the {signal} error does not name {needle} as the kernel's: {message}"
        );
    }
    drop(programs);

    // The agent itself: one warning naming the signal and the tracepoint, and the syscall
    // table every window, from the signals that did attach.
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(herd_tests::built_binary("herd-agent")?)
        .env("HERD_EBPF_MISSING", "block_rq_complete")
        .env("HERD_LOG_FORMAT", "plain")
        .args([
            "--log-target",
            "stderr",
            "--interval",
            "1s",
            "--duration",
            "5s",
        ])
        .args([
            "--runtime-socket",
            "/nonexistent/herd-test.sock",
            "--socket",
        ])
        .arg(dir.path().join("agent.sock"))
        .output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the agent failed: {log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("block"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning about the block signal, not {}: {log}",
        warnings.len()
    );
    assert!(
        warnings[0].contains("block:block_rq_complete"),
        "the warning names the tracepoint: {}",
        warnings[0]
    );
    assert!(
        log.lines().filter(|l| l.contains("calls/s")).count() >= 3,
        "the syscall table stopped with the block signal: {log}"
    );
    Ok(())
}
