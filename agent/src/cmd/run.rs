//! `herd-agent run`: load the probes, keep the container table, log the busiest cgroups.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use herd_agent::{
    collect::{ebpf::EbpfPrograms, syscalls::SyscallSampler},
    discovery::{
        cgroup2::CgroupIndex,
        poller::{Discovery, DiscoveryConfig},
    },
    export::table,
    host::{self, HostPaths},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::cmd::DiscoveryArgs;

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Time between two readings of the counters.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Time between two polls of the cgroups and the container runtime.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    discovery_interval: Duration,
    /// How many cgroups the table shows.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Stop after this long instead of running until SIGINT or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[command(flatten)]
    discovery: DiscoveryArgs,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.interval.is_zero() && !args.discovery_interval.is_zero(),
        "--interval and --discovery-interval must be longer than zero"
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let paths = HostPaths::default();
    let host = host::preflight(&paths, euid)?;
    info!(cgroup2 = %host.cgroup2.display(), "host checks passed");

    let mut programs = EbpfPrograms::load().context("loading the eBPF programs")?;
    let counters = programs.take_syscall_counts()?;
    let mut sampler = SyscallSampler::new(counters, CgroupIndex::new(&host.cgroup2));
    let mut discovery = Discovery::new(DiscoveryConfig {
        runtime_socket: args.discovery.runtime_socket.clone(),
        min_age: args.discovery.min_age,
        cgroup2: host.cgroup2.clone(),
        proc: paths.proc.clone(),
    });

    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut polls = tokio::time::interval(args.discovery_interval);
    polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = async {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    info!(interval = ?args.interval, "watching syscalls per cgroup");
    loop {
        tokio::select! {
            _ = polls.tick() => {
                let changes = discovery.poll().await;
                for id in &changes.added {
                    if let Some(container) = discovery.table().get(id) {
                        info!(container = %container.label(), id = %&id[..12], "container appeared");
                    }
                }
                for id in &changes.removed {
                    info!(id = %&id[..12], "container gone");
                }
            }
            _ = ticks.tick() => {
                let sample = sampler.sample()?;
                let containers = discovery.table();
                table::log_busiest(&sample, args.top, |row| {
                    containers
                        .by_cgroup_id(row.cgroup_id)
                        .map_or_else(|| row.path.display().to_string(), |c| c.label())
                });
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
