//! A workload with a known syscall profile, for tests, the demo and benchmarks.
//!
//! `counted` waits for a line on stdin, then makes exactly `--calls` getppid calls (which
//! succeed) and `--failures` close(-1) calls (which fail with EBADF), and exits. `timed` runs
//! for `--seconds`, making one failing call in every `--fail-every`, and prints what it did.

use std::{
    io::BufRead as _,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Counted {
        #[arg(long)]
        calls: u64,
        #[arg(long)]
        failures: u64,
    },
    Timed {
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 10)]
        fail_every: u64,
    },
}

fn ok_call() {
    // SAFETY: getppid has no preconditions; the raw syscall avoids any libc caching.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

fn failing_call() {
    // SAFETY: closing an invalid descriptor only returns EBADF.
    unsafe { libc::syscall(libc::SYS_close, -1) };
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Counted { calls, failures } => {
            let mut cue = String::new();
            std::io::stdin().lock().read_line(&mut cue)?;
            (0..calls).for_each(|_| ok_call());
            (0..failures).for_each(|_| failing_call());
        }
        Mode::Timed {
            seconds,
            fail_every,
        } => {
            let fail_every = fail_every.max(1);
            let start = Instant::now();
            let until = Duration::from_secs_f64(seconds);
            let (mut calls, mut failed) = (0u64, 0u64);
            while start.elapsed() < until {
                for _ in 0..1000 {
                    calls += 1;
                    if calls % fail_every == 0 {
                        failed += 1;
                        failing_call();
                    } else {
                        ok_call();
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "herd-syscall-load: {calls} syscalls in {secs:.1} s ({:.0} calls/s, {:.0} failed/s)",
                calls as f64 / secs,
                failed as f64 / secs
            );
        }
    }
    Ok(())
}
