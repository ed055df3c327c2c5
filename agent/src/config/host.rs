//! What a node must give the agent: the host paths it reads and the capabilities it uses.
//! One list, used by the agent itself (`probe` checks the capabilities) and by the tests that
//! hold `deploy/`'s DaemonSet to it: every path here is mounted, every capability here is
//! granted, and no other.

use std::path::{Path, PathBuf};

use crate::{discovery::runtime::COMMON_SOCKETS, host, telemetry::JOURNALD_SOCKET};

/// A path on the host that the agent reads (or, for its API socket, writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPath {
    /// The path, the same inside the agent's container as on the host.
    pub path: PathBuf,
    /// What the agent does with it.
    pub why: &'static str,
    /// Whether the agent writes there (its API socket); everything else is read-only.
    pub writes: bool,
}

/// The host paths the agent reads at run time, as its code names them. `/proc` is not here:
/// it is the host's when the pod shares the host's PID namespace (`hostPID`), not a mount.
/// The container runtime's socket is one of [`runtime_sockets`], chosen per node.
pub fn host_paths() -> Vec<HostPath> {
    let paths = host::HostPaths::default();
    vec![
        HostPath {
            path: PathBuf::from("/sys/fs/cgroup"),
            why: "the cgroup hierarchies (v1 controllers and cgroup2): every container's \
                  counters, and the cgroup the network programs attach to",
            writes: false,
        },
        HostPath {
            path: paths.btf.parent().unwrap_or(Path::new("/")).to_owned(),
            why: "the kernel's BTF, which the eBPF programs are relocated against",
            writes: false,
        },
        HostPath {
            path: PathBuf::from(host::TRACEFS),
            why: "tracefs: the tracepoints the block IO and OOM programs attach to",
            writes: false,
        },
        HostPath {
            path: Path::new(JOURNALD_SOCKET)
                .parent()
                .unwrap_or(Path::new("/"))
                .to_owned(),
            why: "journald's socket: findings and logs in the host's journal",
            writes: false,
        },
        HostPath {
            path: PathBuf::from(API_SOCKET_DIR),
            why: "the API's socket (agent.sock), so that `herd` on the host reaches the agent",
            writes: true,
        },
    ]
}

/// The directory of the API's default socket (`run --socket`).
pub const API_SOCKET_DIR: &str = "/run/herd";

/// The runtime sockets the agent probes when none is configured.
pub fn runtime_sockets() -> &'static [&'static str] {
    COMMON_SOCKETS
}

/// A Linux capability the agent uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// The name without `CAP_`, as Kubernetes writes it.
    pub name: &'static str,
    /// Its bit in the capability sets.
    pub bit: u32,
    /// What the agent needs it for.
    pub why: &'static str,
}

/// The capabilities the agent uses, found by running it with each one removed: without any
/// of the first four a signal goes missing (`herd-agent probe` names it). All but
/// CAP_SYS_PTRACE are needed at start only, and dropped once the programs are attached
/// (`privileges`); CAP_SETPCAP is what lets the agent empty its bounding set then.
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: "BPF",
        bit: 39,
        why: "create the eBPF maps and load the programs (bpf())",
    },
    Capability {
        name: "PERFMON",
        bit: 38,
        why: "load tracing programs and attach them to tracepoints (perf_event_open)",
    },
    Capability {
        name: "NET_ADMIN",
        bit: 12,
        why: "load cgroup_skb programs and attach them to the kubepods cgroup (network bytes \
              and packets)",
    },
    Capability {
        name: "SYS_PTRACE",
        bit: 19,
        why: "read /proc/<pid>/ns/net of other users' processes: which network namespace each \
              pod's counters come from",
    },
    Capability {
        name: "SETPCAP",
        bit: 8,
        why: "empty the bounding set when the agent drops the capabilities it needs only at \
              start",
    },
];

/// On kernels before 5.8, which have neither CAP_BPF nor CAP_PERFMON, CAP_SYS_ADMIN stands in
/// for both (`deploy/overlays/legacy-kernel`).
pub const LEGACY_ADMIN: Capability = Capability {
    name: "SYS_ADMIN",
    bit: 21,
    why: "bpf() and perf_event_open on kernels without CAP_BPF and CAP_PERFMON (before 5.8)",
};

/// The capabilities of [`CAPABILITIES`] missing from an effective set (`CapEff` of
/// `/proc/self/status`). CAP_SYS_ADMIN covers CAP_BPF and CAP_PERFMON, as the kernel has it.
pub fn missing(effective: u64) -> Vec<Capability> {
    let has = |bit: u32| effective & (1u64 << bit) != 0;
    CAPABILITIES
        .iter()
        .copied()
        .filter(|cap| {
            let covered = matches!(cap.name, "BPF" | "PERFMON") && has(LEGACY_ADMIN.bit);
            !has(cap.bit) && !covered
        })
        .collect()
}

/// This process's effective capability set, from `<proc>/self/status`.
pub fn effective(proc: &Path) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(proc.join("self/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::other("no CapEff line in self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_capabilities_are_named_and_sys_admin_stands_in_for_bpf() {
        let all = CAPABILITIES.iter().fold(0u64, |set, c| set | 1 << c.bit);
        assert!(missing(all).is_empty());
        let names = |set| missing(set).iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(names(all & !(1 << 19)), ["SYS_PTRACE"]);
        assert_eq!(
            names(0),
            ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE", "SETPCAP"]
        );
        let legacy = 1 << LEGACY_ADMIN.bit | 1 << 12 | 1 << 19 | 1 << 8;
        assert!(missing(legacy).is_empty());
    }

    #[test]
    fn the_effective_set_is_read_from_status() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("self")).unwrap();
        std::fs::write(
            dir.path().join("self/status"),
            "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000000c000081100\n",
        )
        .unwrap();
        let set = effective(dir.path()).unwrap();
        assert_eq!(set, 0xc000081100);
        assert!(missing(set).is_empty());
    }

    #[test]
    fn every_path_is_absolute_and_only_the_socket_dir_is_written() {
        let paths = host_paths();
        assert!(paths.iter().all(|p| p.path.is_absolute()));
        let written: Vec<_> = paths.iter().filter(|p| p.writes).collect();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].path, Path::new(API_SOCKET_DIR));
        assert!(
            paths
                .iter()
                .any(|p| Path::new(JOURNALD_SOCKET).starts_with(&p.path))
        );
    }
}
