//! What the syscall counter adds to every syscall: ns per getppid with no probe and with
//! Herd's programs attached, measured in alternating rounds in one run so that the noise of
//! a shared machine falls on both sides alike. Needs root.
//!
//! `cargo bench -p herd-agent --bench syscall_cost -- [--output FILE]` (or `cargo xtask
//! bench`) prints a table and writes it to FILE.

use std::{fmt::Write as _, fs, hint::black_box, path::PathBuf, time::Instant};

use anyhow::Context as _;
use herd_agent::collect::ebpf::EbpfPrograms;

const CALLS_PER_ROUND: u32 = 2_000_000;
const ROUNDS: usize = 9;

fn ns_per_getppid() -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS_PER_ROUND {
        // SAFETY: getppid has no preconditions; the raw syscall avoids any libc caching.
        black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    start.elapsed().as_nanos() as f64 / f64::from(CALLS_PER_ROUND)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
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

    ns_per_getppid();
    let (mut bare, mut probed) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        bare.push(ns_per_getppid());
        let programs = EbpfPrograms::load().context("loading the eBPF programs (root?)")?;
        probed.push(ns_per_getppid());
        drop(programs);
        eprintln!(
            "round {round}/{ROUNDS}: {:.1} ns without probes, {:.1} ns with",
            bare[round - 1],
            probed[round - 1]
        );
    }
    let (bare, probed) = (median(&mut bare), median(&mut probed));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut report = String::new();
    writeln!(report, "# Syscall cost of Herd's probes")?;
    writeln!(report)?;
    writeln!(
        report,
        "Kernel {}; median of {ROUNDS} alternating rounds of {CALLS_PER_ROUND} getppid calls.",
        kernel.trim()
    )?;
    writeln!(report)?;
    writeln!(report, "| probes | ns per getppid | added ns |")?;
    writeln!(report, "|---|---:|---:|")?;
    writeln!(report, "| none | {bare:.1} | — |")?;
    writeln!(
        report,
        "| Herd syscall counter (raw_tp sys_exit, per-CPU hash per cgroup) | {probed:.1} | {:+.1} |",
        probed - bare
    )?;
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
