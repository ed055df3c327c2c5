use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use herd_agent::{
    collect::{ebpf::EbpfPrograms, syscalls::SyscallSampler},
    discovery::cgroup2::CgroupIndex,
    export::table,
    host::{self, HostPaths},
    telemetry,
};
use tracing::{error, info};

/// Herd's node agent: watches every cgroup on this host through eBPF and logs the busiest.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Load the eBPF programs and log a table of the busiest cgroups (the default).
    Run(RunArgs),
    /// Score recorded feature frames offline: `ts,node,domain,entity,<feature…>` in,
    /// `ts,entity,score,flag` out.
    Replay(herd_agent::replay::ReplayArgs),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Time between two readings of the counters.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How many cgroups the table shows.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Stop after this long instead of running until SIGINT or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(err) = telemetry::init() {
        eprintln!("herd-agent: {err}");
        return std::process::ExitCode::FAILURE;
    }
    let args = match cli.command {
        Some(Command::Run(args)) => args,
        Some(Command::Replay(args)) => {
            return match herd_agent::replay::run(&args) {
                Ok(_) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    error!("{:#}", anyhow::Error::from(err));
                    std::process::ExitCode::FAILURE
                }
            };
        }
        None => cli.run,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.interval.is_zero(),
        "--interval must be longer than zero"
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let host = host::preflight(&HostPaths::default(), euid)?;
    info!(cgroup2 = %host.cgroup2.display(), "host checks passed");

    let mut programs = EbpfPrograms::load().context("loading the eBPF programs")?;
    let counters = programs.take_syscall_counts()?;
    let mut sampler = SyscallSampler::new(counters, CgroupIndex::new(&host.cgroup2));

    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let deadline = async {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    info!(interval = ?args.interval, "watching syscalls per cgroup");
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let sample = sampler.sample()?;
                table::log_busiest(&sample, args.top);
            }
            _ = &mut deadline => {
                info!("--duration reached; stopping");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                info!("SIGINT; stopping");
                break;
            }
            _ = terminate.recv() => {
                info!("SIGTERM; stopping");
                break;
            }
        }
    }
    drop(programs);
    Ok(())
}
