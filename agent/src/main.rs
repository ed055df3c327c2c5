//! The `herd-agent` binary: argument parsing and the subcommands' edges.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herd_agent::telemetry;
use tracing::error;

/// Herd's node agent: watches every container on this host through cgroups and eBPF.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: cmd::run::RunArgs,
    /// Where the agent logs: journald (structured HERD_* fields) when its socket exists,
    /// else stderr.
    #[arg(
        long,
        global = true,
        env = "HERD_LOG_TARGET",
        value_enum,
        default_value = "auto"
    )]
    log_target: telemetry::LogTarget,
}

#[derive(Subcommand)]
enum Command {
    /// Watch every container, compare it with its peers, log findings (the default).
    Run(Box<cmd::run::RunArgs>),
    /// Print the containers on this node: pod, namespace, name, domain, cgroup id, age.
    Containers(cmd::containers::ContainersArgs),
    /// Check what this host offers: root, cgroups, pressure, BTF, eBPF, container runtime.
    Probe(cmd::probe::ProbeArgs),
    /// Score recorded feature frames offline: `ts,node,domain,entity,<feature…>` in,
    /// `ts,entity,score,flag` out.
    Replay(herd_agent::replay::ReplayArgs),
    /// Print the detector's settings (warm-up, thresholds, …) as one line of JSON.
    Detector,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = telemetry::init(cli.log_target) {
        eprintln!("herd-agent: {err}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Some(Command::Run(args)) => cmd::block_on(cmd::run::run(*args)),
        None => cmd::block_on(cmd::run::run(cli.run)),
        Some(Command::Containers(args)) => cmd::block_on(cmd::containers::run(args)),
        Some(Command::Probe(args)) => cmd::block_on(cmd::probe::run(args)),
        Some(Command::Detector) => cmd::detector::run(),
        Some(Command::Replay(args)) => herd_agent::replay::run(&args)
            .map(drop)
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
