//! What Herd's probes add to the kernel's hot paths: ns per getppid (every syscall passes
//! sys_exit) and ns per pipe round trip between two threads on one CPU (each round trip is
//! two wakeups, two context switches and four syscalls), with no probe, with an empty raw
//! tracepoint program on sys_exit (the reference for the counter's goal: at most twice its
//! cost), with the syscall counter alone and with the full probe set. Configurations alternate within each round so
//! that the noise of a shared machine falls on all of them alike. With bpftrace installed,
//! a bpftrace one-liner counting syscalls per cgroup is measured beside them, as the
//! general-purpose way to get the same numbers. Needs root.
//!
//! `cargo bench -p herd-agent --bench syscall_cost -- [--output FILE]` (or `cargo xtask
//! bench`) prints a table and writes it to FILE.

use std::{
    fmt::Write as _,
    fs,
    hint::black_box,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::Instant,
};

use anyhow::Context as _;
use herd_agent::{
    collect::ebpf::{EbpfConfig, EbpfPrograms, EmptySysExit, Signal},
    host::Tracefs,
};

const CALLS_PER_ROUND: u32 = 2_000_000;
const ROUND_TRIPS_PER_ROUND: u32 = 50_000;
const ROUNDS: usize = 9;

fn ns_per_getppid() -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS_PER_ROUND {
        // SAFETY: getppid has no preconditions; the raw syscall avoids any libc caching.
        black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    start.elapsed().as_nanos() as f64 / f64::from(CALLS_PER_ROUND)
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it; pid 0 is the
    // calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Two threads on CPU 0 pass a byte back and forth through two pipes.
fn ns_per_round_trip() -> anyhow::Result<f64> {
    let (mut ping_rx, mut ping_tx) = std::io::pipe()?;
    let (mut pong_rx, mut pong_tx) = std::io::pipe()?;
    let echo = thread::spawn(move || -> std::io::Result<()> {
        pin_to_cpu0();
        let mut byte = [0u8];
        for _ in 0..ROUND_TRIPS_PER_ROUND {
            ping_rx.read_exact(&mut byte)?;
            pong_tx.write_all(&byte)?;
        }
        Ok(())
    });
    pin_to_cpu0();
    let mut byte = [0u8];
    let start = Instant::now();
    for _ in 0..ROUND_TRIPS_PER_ROUND {
        ping_tx.write_all(&byte)?;
        pong_rx.read_exact(&mut byte)?;
    }
    let elapsed = start.elapsed();
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(elapsed.as_nanos() as f64 / f64::from(ROUND_TRIPS_PER_ROUND))
}

/// The detector's median (`herd_detect::median_in_place`); a configuration always has rounds.
fn median(values: &mut [f64]) -> f64 {
    herd_detect::median_in_place(values).unwrap_or(f64::NAN)
}

/// What runs in the kernel while one configuration is measured.
enum Probes {
    None,
    /// Herd's empty program on sys_exit.
    Empty,
    Herd(Vec<Signal>),
    /// `bpftrace -e <program>`.
    Bpftrace(&'static str),
}

struct Setup {
    label: String,
    probes: Probes,
    getppid: Vec<f64>,
    round_trip: Vec<f64>,
}

/// Counting syscalls per cgroup with bpftrace, for comparison.
const BPFTRACE_PROGRAM: &str = "tracepoint:raw_syscalls:sys_exit { @[cgroup] = count(); }";

/// A running bpftrace, attached; ended on drop.
struct Bpftrace(Child);

impl Bpftrace {
    /// Starts bpftrace and waits until its probes are in. It sometimes exits at start-up
    /// on a busy machine, so it gets a few tries.
    fn start(program: &str) -> anyhow::Result<Self> {
        let mut last = String::new();
        for _ in 0..3 {
            let mut child = Command::new("bpftrace")
                .args(["-e", program])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting bpftrace")?;
            // bpftrace says "Attaching N probes..." once its probes are in.
            let mut out = BufReader::new(child.stdout.take().context("bpftrace stdout")?);
            let mut line = String::new();
            out.read_line(&mut line)?;
            if line.starts_with("Attaching") {
                return Ok(Self(child));
            }
            let _ = child.kill();
            let output = child.wait_with_output()?;
            last = format!("{line}{}", String::from_utf8_lossy(&output.stderr));
            thread::sleep(std::time::Duration::from_millis(500));
        }
        anyhow::bail!("bpftrace did not attach: {}", last.trim())
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut output = None;
    while let Some(arg) = args.next() {
        if arg == "--output" {
            output = Some(PathBuf::from(args.next().context("--output needs a file")?));
        }
    }

    let _tracefs = Tracefs::ensure()?;
    // Find out once which signals this host can attach, and measure exactly those.
    let probe = EbpfPrograms::load_available(&EbpfConfig::default())
        .context("loading the eBPF programs (root?)")?;
    let available = probe.signals().to_vec();
    let unavailable: Vec<String> = probe
        .unavailable()
        .iter()
        .map(|(signal, err)| format!("{signal} ({err})"))
        .collect();
    drop(probe);
    let names: Vec<String> = available.iter().map(ToString::to_string).collect();
    let setup = |label: String, probes| Setup {
        label,
        probes,
        getppid: Vec::new(),
        round_trip: Vec::new(),
    };
    let mut setups = vec![
        setup("none".into(), Probes::None),
        setup("empty raw_tp sys_exit program".into(), Probes::Empty),
        setup(
            "syscall counter (raw_tp sys_exit, errno classes, per-CPU slot per cgroup)".into(),
            Probes::Herd(vec![Signal::Syscalls]),
        ),
        setup(
            format!("full probe set ({})", names.join(", ")),
            Probes::Herd(available),
        ),
    ];
    let has_bpftrace = Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if has_bpftrace {
        setups.push(setup(
            format!("bpftrace `{BPFTRACE_PROGRAM}`"),
            Probes::Bpftrace(BPFTRACE_PROGRAM),
        ));
    } else {
        eprintln!("bpftrace is not installed: measuring without it");
    }

    ns_per_getppid();
    for round in 1..=ROUNDS {
        for setup in &mut setups {
            let (programs, empty, bpftrace) = match &setup.probes {
                Probes::None => (None, None, None),
                Probes::Empty => (
                    None,
                    Some(EmptySysExit::attach().context("attaching the empty program")?),
                    None,
                ),
                Probes::Herd(signals) => {
                    let config = EbpfConfig {
                        signals: signals.clone(),
                        network_cgroup: None,
                        missing_tracepoints: Vec::new(),
                    };
                    let programs = EbpfPrograms::load_with(&config)
                        .with_context(|| format!("loading {}", setup.label))?;
                    (Some(programs), None, None)
                }
                Probes::Bpftrace(program) => (None, None, Some(Bpftrace::start(program)?)),
            };
            setup.getppid.push(ns_per_getppid());
            setup.round_trip.push(ns_per_round_trip()?);
            drop(programs);
            drop(empty);
            drop(bpftrace);
        }
        eprintln!(
            "round {round}/{ROUNDS}: {}",
            setups
                .iter()
                .map(|s| format!(
                    "{:.1} ns, {:.0} ns",
                    s.getppid[round - 1],
                    s.round_trip[round - 1]
                ))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }

    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut report = String::new();
    writeln!(report, "# Cost of Herd's probes")?;
    writeln!(report)?;
    writeln!(
        report,
        "Kernel {}; median of {ROUNDS} rounds, the configurations alternating within each \
         round: {CALLS_PER_ROUND} getppid calls, and {ROUND_TRIPS_PER_ROUND} pipe round trips \
         between two threads pinned to one CPU (2 wakeups, 2 context switches, 4 syscalls \
         each).",
        kernel.trim()
    )?;
    if !unavailable.is_empty() {
        writeln!(report)?;
        writeln!(
            report,
            "Not attachable here, so not measured: {}.",
            unavailable.join("; ")
        )?;
    }
    writeln!(report)?;
    writeln!(
        report,
        "| probes | ns per getppid | added ns | ns per round trip | added ns |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|")?;
    let bare_getppid = median(&mut setups[0].getppid.clone());
    let bare_round_trip = median(&mut setups[0].round_trip.clone());
    for setup in &mut setups {
        let getppid = median(&mut setup.getppid);
        let round_trip = median(&mut setup.round_trip);
        if matches!(setup.probes, Probes::None) {
            writeln!(
                report,
                "| {} | {getppid:.1} | — | {round_trip:.0} | — |",
                setup.label
            )?;
        } else {
            writeln!(
                report,
                "| {} | {getppid:.1} | {:+.1} | {round_trip:.0} | {:+.0} |",
                setup.label,
                getppid - bare_getppid,
                round_trip - bare_round_trip
            )?;
        }
    }
    let added = |probes: fn(&Probes) -> bool| {
        setups
            .iter()
            .find(|s| probes(&s.probes))
            .map(|s| median(&mut s.getppid.clone()) - bare_getppid)
    };
    let empty = added(|p| matches!(p, Probes::Empty));
    let counter = added(|p| matches!(p, Probes::Herd(signals) if signals == &[Signal::Syscalls]));
    if let (Some(empty), Some(counter)) = (empty, counter) {
        writeln!(report)?;
        writeln!(
            report,
            "The syscall counter adds {:.2} times what the empty program adds per getppid \
             (goal: at most 2).",
            counter / empty
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
