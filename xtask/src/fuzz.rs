//! `cargo xtask fuzz [--target T] [--seconds N]`: the fuzz targets of `tests/fuzz/` under
//! libFuzzer (cargo-fuzz, nightly), one at a time; `cargo xtask test` runs each briefly.
//!
//! Each target starts from its committed seeds (`tests/fuzz/corpus/<target>/`, read only)
//! and keeps what it learns in `target/fuzz/runs/corpus/<target>/`, so later runs on this
//! machine go on from there without the checkout changing. A crash leaves its input in
//! `target/fuzz/runs/artifacts/<target>/` and fails the run.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::cmd::{self, step};

/// Every target of `tests/fuzz/Cargo.toml`, in the order they run.
pub const TARGETS: &[&str] = &[
    "cgroup_path",
    "cgroup_files",
    "proc_files",
    "cri_responses",
    "replay_csv",
    "config_file",
    "node_api",
    "cluster_api",
];

/// How long `cargo xtask test` runs each target.
pub const CI_SECONDS: u32 = 20;
/// Memory a target may hold, and how long one input may take: a parser that needs more
/// is a bug (an unbounded allocation, a hang).
const RSS_LIMIT_MB: u32 = 512;
const INPUT_TIMEOUT_SECONDS: u32 = 5;

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Only this target (default: every one).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
    /// How long each target runs.
    #[arg(long, default_value_t = 300)]
    seconds: u32,
}

pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let targets: Vec<&str> = match &args.target {
        Some(target) => vec![target.as_str()],
        None => TARGETS.to_vec(),
    };
    let results = run_targets(&targets, args.seconds, Build::Optimized)?;
    step("fuzzing done: target, seconds, executions, corpus inputs");
    for result in &results {
        eprintln!(
            "    {:<14} {:>5} s {:>12} execs {:>6} inputs",
            result.target, result.seconds, result.execs, result.corpus
        );
    }
    Ok(())
}

/// What one target's run did.
pub struct FuzzResult {
    pub target: String,
    pub seconds: u32,
    pub execs: u64,
    /// Inputs in its corpus after the run.
    pub corpus: usize,
}

/// How the targets are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// cargo-fuzz's default, optimized: the most inputs a second, for long runs.
    Optimized,
    /// `--dev`, unoptimized: a fresh machine builds the agent's whole dependency tree again
    /// for the fuzzer's instrumentation, and this build takes a fraction of the optimized
    /// one's time, which is what a short run in `cargo xtask test` needs.
    Dev,
}

/// Builds the targets once, then runs each for `seconds`; fails on the first crash, leak,
/// timeout or memory overrun.
pub fn run_targets(
    targets: &[&str],
    seconds: u32,
    build: Build,
) -> anyhow::Result<Vec<FuzzResult>> {
    let root = cmd::workspace_root();
    let work = root.join("target/fuzz/runs");
    step("building the fuzz targets (nightly, coverage; no eBPF programs needed)");
    cmd::run(&mut cargo_fuzz(&root, "build", build))?;
    let mut results = Vec::new();
    for target in targets {
        let corpus = work.join("corpus").join(target);
        let seeds = root.join("tests/fuzz/corpus").join(target);
        let artifacts = work.join("artifacts").join(target);
        let log = work.join("logs").join(format!("{target}.log"));
        for dir in [&corpus, &artifacts, &work.join("logs")] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        step(&format!("fuzzing {target} for {seconds} s"));
        let mut run = cargo_fuzz(&root, "run", build);
        run.arg(target)
            // The first directory takes the new inputs; the seeds are only read.
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .stderr(fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?);
        let outcome = cmd::run(&mut run);
        let text = fs::read_to_string(&log).unwrap_or_default();
        if let Err(err) = outcome {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                eprintln!("    | {line}");
            }
            bail!(
                "fuzz target {target} failed: {err}; the input is in {} and the whole log in {}",
                artifacts.display(),
                log.display()
            );
        }
        let result = FuzzResult {
            target: (*target).to_owned(),
            seconds,
            execs: executions(&text).unwrap_or(0),
            corpus: count_files(&corpus),
        };
        eprintln!(
            "    {target}: {} executions, {} inputs in its corpus",
            result.execs, result.corpus
        );
        results.push(result);
    }
    Ok(results)
}

/// `cargo fuzz <subcommand>` on nightly for the crate in `tests/fuzz`, with its build kept
/// beside the workspace's, in `target/fuzz`.
fn cargo_fuzz(root: &Path, subcommand: &str, build: Build) -> Command {
    let mut command = Command::new("rustup");
    command
        .args(["run", crate::setup::NIGHTLY, "cargo", "fuzz", subcommand])
        .args(["--fuzz-dir", "."]);
    if build == Build::Dev {
        command.arg("--dev");
    }
    command
        // No AddressSanitizer: the parsers are safe Rust, so what is looked for is a panic,
        // an overflow (checks stay on), a hang or memory without bound, which libFuzzer
        // catches alone; without it a target runs 1.3 to 8 times as many inputs a second.
        .args(["--sanitizer", "none"])
        .current_dir(root.join("tests/fuzz"))
        // The targets parse text; they need the agent's library, not its eBPF programs.
        .env("AYA_BUILD_SKIP", "1")
        .env("CARGO_TARGET_DIR", root.join("target/fuzz"));
    command
}

/// libFuzzer's `stat::number_of_executed_units` of `-print_final_stats`.
fn executions(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |entries| entries.flatten().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_of_the_fuzz_crate_is_run_and_seeded() {
        let root = cmd::workspace_root();
        let manifest = fs::read_to_string(root.join("tests/fuzz/Cargo.toml")).unwrap();
        let mut names: Vec<&str> = manifest
            .lines()
            .filter_map(|line| line.strip_prefix("name = \""))
            .filter_map(|rest| rest.strip_suffix('"'))
            .filter(|name| *name != "herd-fuzz")
            .collect();
        names.sort_unstable();
        let mut listed = TARGETS.to_vec();
        listed.sort_unstable();
        assert_eq!(names, listed);
        for target in TARGETS {
            let seeds = root.join("tests/fuzz/corpus").join(target);
            assert!(count_files(&seeds) > 0, "{} has no seeds", seeds.display());
        }
    }

    #[test]
    fn executions_are_read_from_the_final_stats() {
        let log = "#1024 DONE cov: 10\nstat::number_of_executed_units: 123456\n\
                   stat::peak_rss_mb: 40\n";
        assert_eq!(executions(log), Some(123_456));
        assert_eq!(executions("crashed\n"), None);
    }
}
