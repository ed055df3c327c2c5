//! `herd-agent probe`: what this host offers Herd, checked for real (the eBPF programs are
//! loaded and attached, then removed), and what is missing, in plain words.

use std::path::Path;

use clap::Args;
use herd_agent::{
    collect::ebpf::{EbpfConfig, EbpfPrograms},
    discovery::runtime::CriClient,
    host::{self, HostPaths, Tracefs},
};

use crate::cmd::DiscoveryArgs;

#[derive(Args, Clone, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    discovery: DiscoveryArgs,
}

/// Prints one line per check; fails when the agent could not run here at all.
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let paths = HostPaths::default();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut fatal = Vec::new();

    let root = euid == 0;
    line(
        "root",
        if root {
            "yes".into()
        } else {
            format!("no (uid {euid}): the agent needs root")
        },
    );
    if !root {
        fatal.push("root");
    }
    match host::cgroup_mounts(&paths.proc) {
        Ok(mounts) => {
            line("cgroup2", mounts.cgroup2.display().to_string());
            let mut v1: Vec<_> = mounts.cgroup_v1.keys().cloned().collect();
            v1.sort();
            line(
                "cgroup v1 controllers",
                if v1.is_empty() {
                    "none (pure cgroup2 host)".into()
                } else {
                    v1.join(" ")
                },
            );
        }
        Err(err) => {
            line("cgroup2", format!("missing: {err}"));
            fatal.push("cgroup2");
        }
    }
    let psi = Path::new("/proc/pressure/cpu").exists();
    line(
        "pressure (PSI)",
        if psi {
            "yes".into()
        } else {
            "no: cpu, memory and io pressure features are missing".into()
        },
    );
    line(
        "network namespaces",
        if paths.proc.join("self/net/dev").exists() {
            "readable".into()
        } else {
            "no /proc/<pid>/net".into()
        },
    );
    match host::check_btf(&paths) {
        Ok(()) => {
            line("BTF", paths.btf.display().to_string());
            let tracefs = Tracefs::ensure();
            if let Err(err) = &tracefs {
                line(
                    "tracefs",
                    format!("cannot mount ({err}): block IO and OOM signals need it"),
                );
            }
            match EbpfPrograms::load_available(&EbpfConfig::default()) {
                Ok(programs) => {
                    for signal in programs.signals() {
                        line(&format!("eBPF {signal}"), "loaded and attached".into());
                    }
                    for (signal, err) in programs.unavailable() {
                        line(&format!("eBPF {signal}"), format!("unavailable: {err}"));
                    }
                }
                Err(err) => line(
                    "eBPF",
                    format!("unavailable ({err}); the agent would run on cgroup counters only"),
                ),
            }
        }
        Err(err) => line(
            "BTF",
            format!("{err}; the agent would run on cgroup counters only"),
        ),
    }
    let runtime = match CriClient::connect(args.discovery.runtime_socket.as_deref()).await {
        Ok(mut client) => match client.snapshot().await {
            Ok(snapshot) => format!(
                "{}: {} pods, {} containers",
                client.path().display(),
                snapshot.pods.len(),
                snapshot.containers.len()
            ),
            Err(err) => format!("{err}; containers would be found from cgroups alone"),
        },
        Err(err) => format!("{err}; containers would be found from cgroups alone"),
    };
    line("container runtime (CRI)", runtime);

    anyhow::ensure!(
        fatal.is_empty(),
        "herd-agent cannot run on this host: missing {}",
        fatal.join(", ")
    );
    Ok(())
}

fn line(what: &str, result: String) {
    println!("{what:<26}{result}");
}
