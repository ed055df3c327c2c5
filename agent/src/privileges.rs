//! Least privilege after start: once the eBPF programs are loaded and attached, the agent
//! keeps in its effective and permitted sets only the capabilities it still uses, empties
//! its inheritable, ambient and bounding sets (it executes nothing, and what it might execute
//! should get nothing), and sets `no_new_privs`, so that no capability can come back.
//!
//! What it keeps was found by running it with each capability removed after start: reading
//! `/proc/<pid>/ns/net` of a process whose capabilities are not a subset of the agent's (a
//! container's, as the kernel's ptrace check has it) takes `CAP_SYS_PTRACE`; every other read
//! (cgroup files, `/proc/<pid>/net/*`, the eBPF maps through the descriptors it holds, its own
//! programs' statistics) and its sockets need none for root's files.

use std::{collections::BTreeSet, fs, io, path::Path};

use caps::{CapSet, Capability, CapsHashSet};
use thiserror::Error;

/// What the agent keeps while it runs: CAP_SYS_PTRACE, to read `/proc/<pid>/ns/net` of each
/// container's process (which network namespace its counters come from).
pub const KEPT: &[Capability] = &[Capability::CAP_SYS_PTRACE];

#[derive(Debug, Error)]
pub enum PrivilegeError {
    /// Capabilities belong to threads: dropping them on one leaves the others with theirs.
    #[error(
        "capabilities are dropped per thread and this process has {0} threads; the others \
         would keep theirs"
    )]
    Threads(usize),
    #[error("cannot count this process's threads in {path}: {source}")]
    Tasks {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(#[source] io::Error),
    #[error("cannot {what}: {source}")]
    Caps {
        what: String,
        #[source]
        source: caps::errors::CapsError,
    },
}

/// What the drop left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The capabilities still held (effective and permitted), by name (`CAP_SYS_PTRACE`).
    pub kept: BTreeSet<String>,
    /// The capabilities given up, by name.
    pub dropped: BTreeSet<String>,
    /// Whether the bounding set was emptied too: that takes `CAP_SETPCAP`.
    pub bounding: bool,
}

/// The capabilities to keep: [`KEPT`], and `CAP_NET_BIND_SERVICE` while a listener on a
/// privileged port has yet to bind (`ports` below the host's first unprivileged port).
pub fn steady_state(ports: &[u16], proc: &Path) -> CapsHashSet {
    let mut keep: CapsHashSet = KEPT.iter().copied().collect();
    let first_unprivileged =
        fs::read_to_string(proc.join("sys/net/ipv4/ip_unprivileged_port_start"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .unwrap_or(1024);
    if ports
        .iter()
        .any(|&port| port != 0 && u32::from(port) < first_unprivileged)
    {
        keep.insert(Capability::CAP_NET_BIND_SERVICE);
    }
    keep
}

/// Keeps `keep` (where held) in the effective and permitted sets of this process and
/// nothing in the others, and sets `no_new_privs`. Capabilities are per thread, so the
/// process must have one thread: the agent calls this before its runtime starts any other.
pub fn drop_all_but(keep: &CapsHashSet, proc: &Path) -> Result<Dropped, PrivilegeError> {
    let tasks = proc.join("self/task");
    let threads = fs::read_dir(&tasks)
        .map_err(|source| PrivilegeError::Tasks {
            path: tasks.display().to_string(),
            source,
        })?
        .count();
    if threads != 1 {
        return Err(PrivilegeError::Threads(threads));
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only and changes no memory.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegeError::NoNewPrivs(io::Error::last_os_error()));
    }
    let caps_error = |what: &str| {
        let what = what.to_owned();
        move |source| PrivilegeError::Caps { what, source }
    };
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(caps_error("read the permitted set"))?;
    let held: CapsHashSet = permitted.intersection(keep).copied().collect();
    // The bounding set first: cutting it takes CAP_SETPCAP, which goes with the rest below.
    // It limits what an execve could gain, not what the process holds, so all of it goes.
    let bounding = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(caps_error("read the effective set"))?;
    if bounding {
        let bound =
            caps::read(None, CapSet::Bounding).map_err(caps_error("read the bounding set"))?;
        for cap in &bound {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(caps_error(&format!("drop {cap} from the bounding set")))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_error("clear the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_error("clear the inheritable set"))?;
    // Effective before permitted: the effective set must stay within the permitted one.
    for (set, name) in [
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ] {
        caps::set(None, set, &held).map_err(caps_error(&format!("set the {name} set")))?;
    }
    let names = |set: &mut dyn Iterator<Item = &Capability>| {
        set.map(ToString::to_string).collect::<BTreeSet<_>>()
    };
    Ok(Dropped {
        kept: names(&mut held.iter()),
        dropped: names(&mut permitted.difference(&held)),
        bounding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_with_port_start(start: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("sys/net/ipv4");
        fs::create_dir_all(&path).expect("the sysctl directory");
        fs::write(path.join("ip_unprivileged_port_start"), start).expect("the sysctl");
        dir
    }

    #[test]
    fn only_sys_ptrace_is_kept_unless_a_privileged_port_is_still_to_bind() {
        let proc = proc_with_port_start("1024\n");
        let ptrace: CapsHashSet = [Capability::CAP_SYS_PTRACE].into();
        assert_eq!(steady_state(&[], proc.path()), ptrace);
        assert_eq!(steady_state(&[7443, 0], proc.path()), ptrace);
        let with_bind: CapsHashSet =
            [Capability::CAP_SYS_PTRACE, Capability::CAP_NET_BIND_SERVICE].into();
        assert_eq!(steady_state(&[7443, 443], proc.path()), with_bind);
        // A host that lets anyone bind from port 80 up needs no capability for it.
        let open = proc_with_port_start("80\n");
        assert_eq!(steady_state(&[443], open.path()), ptrace);
    }

    #[test]
    fn a_process_with_several_threads_is_refused_before_anything_changes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for task in ["100", "101"] {
            fs::create_dir_all(dir.path().join("self/task").join(task)).expect("a task");
        }
        let err = drop_all_but(&CapsHashSet::new(), dir.path()).expect_err("two threads");
        assert!(matches!(err, PrivilegeError::Threads(2)), "{err}");
    }
}
