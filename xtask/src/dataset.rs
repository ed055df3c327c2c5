//! `cargo xtask dataset`: a labeled dataset from the lab (see `herd_tests::dataset`) for
//! `cargo xtask eval --dataset`. Holds the lab lock, /run/herd-lab.flock, for the whole
//! run, so that no lab test starts a lab beside it.

use std::{fs::File, os::fd::AsRawFd as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use herd_tests::dataset::{self, DatasetSettings};

use crate::{
    cmd::{self, step},
    eval::parse_secs,
    setup,
};

/// The lock every lab run holds.
const LAB_LOCK: &str = "/run/herd-lab.flock";

#[derive(clap::Args)]
pub struct DatasetArgs {
    /// Where the dataset goes (emptied first).
    #[arg(long, default_value = "target/herd-dataset")]
    out: PathBuf,
    /// Minutes of recording; the lab's start and the build come on top.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(4..))]
    minutes: u64,
    /// Detection window, in seconds ("3s" or "3").
    #[arg(long, default_value = "3s", value_parser = parse_secs)]
    window: Duration,
}

pub fn run(args: &DatasetArgs) -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the dataset is recorded in a lab by the agent with eBPF: run it as root");
    }
    step("building the agent (release)");
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "herd-agent"]))?;
    let root = cmd::workspace_root();
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    let _lock = lab_lock()?;
    let settings = DatasetSettings {
        agent: root.join("target/release/herd-agent"),
        window: args.window,
        minutes: args.minutes,
        out: out.clone(),
    };
    step(&format!(
        "recording {} minutes in windows of {} s into {}",
        args.minutes,
        args.window.as_secs(),
        out.display()
    ));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?
        .block_on(dataset::record(&settings))?;
    step(&format!(
        "done: cargo xtask eval --dataset {} scores the detector on it",
        args.out.display()
    ));
    Ok(())
}

/// Takes the lab lock, waiting for a lab test that holds it; released when the file
/// closes, at exit at the latest.
fn lab_lock() -> anyhow::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LAB_LOCK)
        .with_context(|| format!("opening {LAB_LOCK}"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        step(&format!("{LAB_LOCK} is held by a lab run; waiting for it"));
        // SAFETY: as above, blocking this time.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context(format!("locking {LAB_LOCK}"));
        }
    }
    step(&format!(
        "holding {LAB_LOCK} until the dataset is done: lab tests wait for it"
    ));
    Ok(file)
}
