//! Loads Herd's eBPF programs into the kernel, attaches them, and hands out their maps.

use aya::{
    Ebpf,
    maps::{MapData, MapError, PerCpuHashMap},
    programs::{ProgramError, RawTracePoint},
};
use herd_agent_common::{SYSCALL_COUNTS_MAP, SYSCALL_EXIT_PROGRAM, SyscallCounts};
use thiserror::Error;
use tracing::info;

use crate::collect::syscalls::{CounterError, SyscallCounters, sum_cpus};

/// The object built by `build.rs` from `herd-agent-ebpf`; empty when the build skipped it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/herd-agent-ebpf"));

/// The raw tracepoint the syscall counter attaches to.
const SYS_EXIT: &str = "sys_exit";

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "this herd-agent was built without its eBPF programs (AYA_BUILD_SKIP was set); \
         rebuild it after `cargo xtask setup`"
    )]
    NotBuilt,
    #[error("the kernel refused Herd's eBPF object: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("the eBPF object has no program or map named {0}")]
    Missing(&'static str),
    #[error("program {name} is not of the expected kind: {source}")]
    Kind {
        name: &'static str,
        source: ProgramError,
    },
    #[error("the kernel refused to load program {name}: {source}")]
    Load {
        name: &'static str,
        source: ProgramError,
    },
    #[error(
        "cannot attach {name} to the raw tracepoint {tracepoint}; is that tracepoint in this \
         kernel (CONFIG_FTRACE_SYSCALLS)? {source}"
    )]
    Attach {
        name: &'static str,
        tracepoint: &'static str,
        source: ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
}

/// The loaded programs. Dropping this detaches them and frees their maps.
pub struct EbpfPrograms {
    ebpf: Ebpf,
}

impl EbpfPrograms {
    /// Loads the object and attaches every program.
    pub fn load() -> Result<Self, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NotBuilt);
        }
        let mut ebpf = Ebpf::load(OBJECT)?;
        attach_raw_tracepoint(&mut ebpf, SYSCALL_EXIT_PROGRAM, SYS_EXIT)?;
        info!(
            program = SYSCALL_EXIT_PROGRAM,
            tracepoint = SYS_EXIT,
            "eBPF syscall counter attached"
        );
        Ok(Self { ebpf })
    }

    /// Takes the per-cgroup syscall counters out of the loaded object (once).
    pub fn take_syscall_counts(&mut self) -> Result<SyscallCountMap, LoadError> {
        let map = self
            .ebpf
            .take_map(SYSCALL_COUNTS_MAP)
            .ok_or(LoadError::Missing(SYSCALL_COUNTS_MAP))?;
        let map = PerCpuHashMap::try_from(map).map_err(|source| LoadError::Map {
            name: SYSCALL_COUNTS_MAP,
            source,
        })?;
        Ok(SyscallCountMap { map })
    }
}

fn attach_raw_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &'static str,
) -> Result<(), LoadError> {
    let program: &mut RawTracePoint = ebpf
        .program_mut(name)
        .ok_or(LoadError::Missing(name))?
        .try_into()
        .map_err(|source| LoadError::Kind { name, source })?;
    program
        .load()
        .map_err(|source| LoadError::Load { name, source })?;
    program
        .attach(tracepoint)
        .map_err(|source| LoadError::Attach {
            name,
            tracepoint,
            source,
        })?;
    Ok(())
}

/// The kernel's per-CPU, per-cgroup syscall counters.
pub struct SyscallCountMap {
    map: PerCpuHashMap<MapData, u64, SyscallCounts>,
}

impl SyscallCounters for SyscallCountMap {
    fn totals(&self) -> Result<Vec<(u64, SyscallCounts)>, CounterError> {
        self.map
            .iter()
            .map(|entry| {
                let (cgroup_id, per_cpu) = entry?;
                Ok((cgroup_id, sum_cpus(&per_cpu)))
            })
            .collect()
    }

    fn forget(&mut self, cgroup_id: u64) -> Result<(), CounterError> {
        match self.map.remove(&cgroup_id) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}
