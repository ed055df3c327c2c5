//! `cargo xtask …`: everything a developer or CI runs, with the machine set up first.

mod bench;
mod cmd;
mod dataset;
mod demo;
mod eval;
mod eval_dataset;
mod eval_synthetic;
mod fuzz;
mod image;
mod lab;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Herd's developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing Herd needs (apt packages, rust-src, bpf-linker).
    Setup,
    /// Run the agent on this host for a short while beside a small workload in its own cgroup.
    Demo(demo::DemoArgs),
    /// The whole suite: fmt, clippy, unit tests, a short run of each fuzz target, root
    /// integration tests.
    Test,
    /// Measure what the probes cost; results go to target/herd-bench/.
    Bench,
    /// Build the release binaries and write the herd-agent and herd-aggregator images as OCI
    /// archives into target/herd-images/ (no Docker needed).
    Image,
    /// A real container node on this machine over CRI: `up [--spec FILE]`, `status`, `down`.
    Lab(lab::LabArgs),
    /// A labeled dataset from the lab: uneven workloads, faults at known times, the agent's
    /// frames; for `eval --dataset`. Holds the lab lock while it runs.
    Dataset(dataset::DatasetArgs),
    /// The detector against every lab fault and a long healthy run, or (`--dataset DIR`)
    /// against a recorded dataset's labels; results go to target/herd-eval/.
    Eval(eval::EvalArgs),
    /// Fuzz the parsers of outside input (tests/fuzz/) for longer than `test` does: every
    /// target, or one; crashes go to target/fuzz/runs/artifacts/.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Demo(args) => demo::run(&args),
        Command::Test => test::run(),
        Command::Bench => bench::run(),
        Command::Image => image::run(),
        Command::Lab(args) => lab::run(&args),
        Command::Dataset(args) => dataset::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
    }
}
