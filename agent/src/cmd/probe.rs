//! `herd-agent probe`: what this host offers Herd, checked for real (the eBPF programs are
//! loaded and attached, then removed), and what is missing, in plain words. With `--require`
//! it fails naming each required feature that is missing: the DaemonSet's init container
//! runs it, so that a node that cannot run the agent says why in `kubectl logs`.

use std::path::Path;

use clap::{Args, ValueEnum};
use herd_agent::{
    collect::ebpf::{EbpfConfig, EbpfPrograms, Signal},
    config::host as capabilities,
    discovery::runtime::CriClient,
    host::{self, HostPaths, Tracefs},
};

use crate::cmd::DiscoveryArgs;

#[derive(Args, Clone, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    discovery: DiscoveryArgs,
    /// Fail unless these are available (root and cgroup2 always are required), e.g.
    /// --require btf,ebpf,syscalls,runtime.
    #[arg(long, value_enum, value_delimiter = ',')]
    require: Vec<Feature>,
}

/// What `--require` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Feature {
    /// The capabilities the agent uses (BPF, PERFMON, NET_ADMIN, SYS_PTRACE, SETPCAP;
    /// SYS_ADMIN stands in for the first two).
    Capabilities,
    /// A cgroup2 mount (always required).
    Cgroup2,
    /// Pressure stall information (/proc/pressure).
    Psi,
    /// Other processes' /proc/<pid>/net.
    Netns,
    /// The kernel's BTF at /sys/kernel/btf/vmlinux.
    Btf,
    /// tracefs, mounted or mountable.
    Tracefs,
    /// eBPF at all: at least one program loads.
    Ebpf,
    /// The syscall programs (raw tracepoint sys_exit).
    Syscalls,
    /// The block IO programs (block tracepoints).
    Block,
    /// The network programs (cgroup_skb).
    Network,
    /// The run-queue latency programs (sched raw tracepoints).
    Sched,
    /// The OOM kill programs (oom and sched tracepoints).
    Oom,
    /// The container runtime's CRI socket answers.
    Runtime,
}

impl Feature {
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    fn of(signal: Signal) -> Self {
        match signal {
            Signal::Syscalls => Self::Syscalls,
            Signal::Block => Self::Block,
            Signal::Network => Self::Network,
            Signal::Sched => Self::Sched,
            Signal::Oom => Self::Oom,
        }
    }
}

/// What each check found: the feature, and what is there or why it is missing.
#[derive(Default)]
struct Findings(Vec<(Feature, Result<String, String>)>);

impl Findings {
    fn add(&mut self, feature: Feature, what: &str, result: Result<String, String>) {
        match &result {
            Ok(found) => line(what, found),
            Err(missing) => line(what, &format!("missing: {missing}")),
        }
        self.0.push((feature, result));
    }

    fn missing(&self, feature: Feature) -> Option<&str> {
        match self.0.iter().find(|(f, _)| *f == feature) {
            Some((_, Err(why))) => Some(why),
            Some((_, Ok(_))) => None,
            None => Some("not checked"),
        }
    }
}

/// Prints one line per check; fails when the agent could not run here at all, or when a
/// required feature is missing.
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let paths = HostPaths::default();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut found = Findings::default();
    let mut missing = Vec::new();

    if euid == 0 {
        line("root", "yes");
    } else {
        line("root", &format!("no (uid {euid}): the agent needs root"));
        missing.push("root (the agent runs as uid 0)".to_owned());
    }
    found.add(
        Feature::Capabilities,
        "capabilities",
        match capabilities::effective(&paths.proc) {
            Ok(set) => {
                let missing = capabilities::missing(set);
                if missing.is_empty() {
                    Ok(names(capabilities::CAPABILITIES))
                } else {
                    Err(missing
                        .iter()
                        .map(|cap| format!("CAP_{} to {}", cap.name, cap.why))
                        .collect::<Vec<_>>()
                        .join("; "))
                }
            }
            Err(err) => Err(format!("cannot read this process's capabilities: {err}")),
        },
    );
    match host::cgroup_mounts(&paths.proc) {
        Ok(mounts) => {
            found.add(
                Feature::Cgroup2,
                "cgroup2",
                Ok(mounts.cgroup2.display().to_string()),
            );
            let mut v1: Vec<_> = mounts.cgroup_v1.keys().cloned().collect();
            v1.sort();
            line(
                "cgroup v1 controllers",
                &if v1.is_empty() {
                    "none (pure cgroup2 host)".into()
                } else {
                    v1.join(" ")
                },
            );
        }
        Err(err) => found.add(Feature::Cgroup2, "cgroup2", Err(err.to_string())),
    }
    found.add(
        Feature::Psi,
        "pressure (PSI)",
        if Path::new("/proc/pressure/cpu").exists() {
            Ok("yes".into())
        } else {
            Err("no /proc/pressure: cpu, memory and io pressure features are missing".into())
        },
    );
    // PID 1 stands for any other process: its counters, and which namespace they are.
    let init = paths.proc.join("1");
    found.add(
        Feature::Netns,
        "network namespaces",
        match (
            std::fs::read(init.join("net/dev")),
            std::fs::read_link(init.join("ns/net")),
        ) {
            (Ok(_), Ok(_)) => Ok("readable".into()),
            (Err(err), _) => Err(format!(
                "cannot read {}: {err} (is the host's PID namespace shared?)",
                init.join("net/dev").display()
            )),
            (_, Err(err)) => Err(format!(
                "cannot read {}: {err} (CAP_SYS_PTRACE is needed for other users' processes)",
                init.join("ns/net").display()
            )),
        },
    );
    match host::check_btf(&paths) {
        Ok(()) => {
            found.add(Feature::Btf, "BTF", Ok(paths.btf.display().to_string()));
            let tracefs = Tracefs::ensure();
            found.add(
                Feature::Tracefs,
                "tracefs",
                match &tracefs {
                    Ok(_) => Ok("yes".into()),
                    Err(err) => Err(format!(
                        "cannot mount ({err}): block IO and OOM signals need it"
                    )),
                },
            );
            match EbpfPrograms::load_available(&EbpfConfig::default()) {
                Ok(programs) => {
                    found.add(Feature::Ebpf, "eBPF", Ok("loads".into()));
                    for signal in programs.signals() {
                        found.add(
                            Feature::of(*signal),
                            &format!("eBPF {signal}"),
                            Ok("loaded and attached".into()),
                        );
                    }
                    for (signal, err) in programs.unavailable() {
                        found.add(
                            Feature::of(*signal),
                            &format!("eBPF {signal}"),
                            Err(err.to_string()),
                        );
                    }
                }
                Err(err) => found.add(
                    Feature::Ebpf,
                    "eBPF",
                    Err(format!(
                        "{err}; the agent would run on cgroup counters only"
                    )),
                ),
            }
            drop(tracefs);
        }
        Err(err) => found.add(
            Feature::Btf,
            "BTF",
            Err(format!(
                "{err}; the agent would run on cgroup counters only"
            )),
        ),
    }
    let runtime = match CriClient::connect(args.discovery.runtime_socket.as_deref()).await {
        Ok(mut client) => match client.snapshot().await {
            Ok(snapshot) => Ok(format!(
                "{}: {} pods, {} containers",
                client.path().display(),
                snapshot.pods.len(),
                snapshot.containers.len()
            )),
            Err(err) => Err(format!(
                "{err}; containers would be found from cgroups alone"
            )),
        },
        Err(err) => Err(format!(
            "{err}; containers would be found from cgroups alone"
        )),
    };
    found.add(Feature::Runtime, "container runtime (CRI)", runtime);

    let mut required = args.require.clone();
    required.push(Feature::Cgroup2);
    required.sort();
    required.dedup();
    for feature in required {
        if let Some(why) = found.missing(feature) {
            missing.push(format!("{} ({why})", feature.name()));
        }
    }
    anyhow::ensure!(
        missing.is_empty(),
        "herd-agent cannot run on this host as required: missing {}",
        missing.join("; ")
    );
    Ok(())
}

fn names(caps: &[capabilities::Capability]) -> String {
    caps.iter()
        .map(|cap| format!("CAP_{}", cap.name))
        .collect::<Vec<_>>()
        .join(" ")
}

fn line(what: &str, result: &str) {
    println!("{what:<26}{result}");
}
