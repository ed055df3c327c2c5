//! Loads Herd's eBPF programs into the kernel, attaches them, and hands out their maps.

use std::{
    collections::HashMap,
    fmt, fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{MapData, MapError, PerCpuArray, PerCpuHashMap},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, Program, ProgramError, RawTracePoint,
        TracePoint,
    },
};
use herd_agent_common::{
    BLOCK_COMPLETE_PROGRAM, BLOCK_COUNTS_MAP, BLOCK_QUEUE_PROGRAM, CGROUP_MAPS,
    EMPTY_SYS_EXIT_PROGRAM, MAP_FULL_MAP, MAX_CGROUPS, NET_COUNTS_MAP, NET_EGRESS_PROGRAM,
    NET_INGRESS_PROGRAM, OOM_COUNTS_MAP, OOM_EXIT_PROGRAM, OOM_VICTIM_PROGRAM, SCHED_COUNTS_MAP,
    SCHED_SWITCH_PROGRAM, SCHED_WAKEUP_NEW_PROGRAM, SCHED_WAKEUP_PROGRAM, SYSCALL_COUNTS_MAP,
    SYSCALL_EXIT_PROGRAM, SYSCALL_SLOTS_MAP, SYSCALL_SLOTS_PER_CPU, SyscallStats,
    TRACEPOINT_FIELDS, TracepointField,
};
use thiserror::Error;
use tracing::{info, warn};

use crate::{
    collect::{
        counters::{CounterMap, Counters, MapReadError, sum_cpus},
        ebpf_log::{self, LogForwardError, LogForwarder},
        map_full::{FullMaps, KernelLosses},
        signals::{SignalMap, SignalMaps},
        syscall_slots::{MappedSlots, SlotsError, SyscallCounterMap, SyscallSlots},
    },
    error_chain::{caused_by, error_chain},
    host::{self, HostPaths},
};

/// The object built by `build.rs` from `herd-agent-ebpf`; empty when the build skipped it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/herd-agent-ebpf"));

/// What the scheduler programs need from the kernel.
const SCHED_RAW_FEATURE: &str = "raw tracepoints with the sched_switch arguments of Linux 5.18+";

/// Where tracefs may be mounted, in the order aya looks.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// A group of programs that feeds one counter map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Syscalls and failures by errno class (raw tracepoint sys_exit).
    Syscalls,
    /// Block IO bytes, requests, latency and failures (block tracepoints).
    Block,
    /// Network bytes and packets (cgroup_skb ingress and egress).
    Network,
    /// Run-queue latency (raw tracepoints sched_wakeup, sched_wakeup_new, sched_switch).
    Sched,
    /// OOM kills (oom:mark_victim and sched:sched_process_exit).
    Oom,
}

impl Signal {
    pub const ALL: [Signal; 5] = [
        Signal::Syscalls,
        Signal::Block,
        Signal::Network,
        Signal::Sched,
        Signal::Oom,
    ];

    /// The raw tracepoints the signal's programs attach to: (program, tracepoint, what the
    /// kernel needs for it).
    fn raw_tracepoints(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            Signal::Syscalls => &[(
                SYSCALL_EXIT_PROGRAM,
                "sys_exit",
                "raw tracepoints and CONFIG_FTRACE_SYSCALLS",
            )],
            Signal::Sched => &[
                (SCHED_WAKEUP_PROGRAM, "sched_wakeup", SCHED_RAW_FEATURE),
                (
                    SCHED_WAKEUP_NEW_PROGRAM,
                    "sched_wakeup_new",
                    SCHED_RAW_FEATURE,
                ),
                (SCHED_SWITCH_PROGRAM, "sched_switch", SCHED_RAW_FEATURE),
            ],
            Signal::Block | Signal::Network | Signal::Oom => &[],
        }
    }

    /// The signal's short name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Syscalls => "syscalls",
            Signal::Block => "block",
            Signal::Network => "network",
            Signal::Sched => "sched",
            Signal::Oom => "oom",
        }
    }

    /// Where the signal comes from, in a person's words.
    pub fn source(self) -> &'static str {
        match self {
            Signal::Syscalls => "eBPF raw tracepoint sys_exit: calls and failures per cgroup",
            Signal::Block => {
                "eBPF tracepoints block_bio_queue and block_rq_complete: bytes, requests, \
                 latency and failures per cgroup"
            }
            Signal::Network => "eBPF cgroup_skb ingress and egress: socket bytes and packets",
            Signal::Sched => {
                "eBPF raw tracepoints sched_wakeup and sched_switch: run-queue latency"
            }
            Signal::Oom => "eBPF tracepoints oom:mark_victim and sched_process_exit: OOM kills",
        }
    }

    /// The classic tracepoints the signal's programs attach to: (program, category, name).
    fn tracepoints(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            Signal::Syscalls | Signal::Network | Signal::Sched => &[],
            Signal::Block => &[
                (BLOCK_QUEUE_PROGRAM, "block", "block_bio_queue"),
                (BLOCK_COMPLETE_PROGRAM, "block", "block_rq_complete"),
            ],
            Signal::Oom => &[
                (OOM_VICTIM_PROGRAM, "oom", "mark_victim"),
                (OOM_EXIT_PROGRAM, "sched", "sched_process_exit"),
            ],
        }
    }

    /// Every program of the signal.
    fn programs(self) -> Vec<&'static str> {
        let mut programs = match self {
            Signal::Network => vec![NET_INGRESS_PROGRAM, NET_EGRESS_PROGRAM],
            _ => Vec::new(),
        };
        programs.extend(
            self.raw_tracepoints()
                .iter()
                .map(|(program, _, _)| *program),
        );
        programs.extend(self.tracepoints().iter().map(|(program, _, _)| *program));
        programs
    }

    /// The tracepoint fields the signal's programs read at fixed offsets.
    fn fields(self) -> impl Iterator<Item = &'static TracepointField> {
        TRACEPOINT_FIELDS.iter().filter(move |field| {
            self.tracepoints()
                .iter()
                .any(|(_, category, name)| field.category == *category && field.tracepoint == *name)
        })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Syscalls => "syscalls",
            Signal::Block => "block IO",
            Signal::Network => "network",
            Signal::Sched => "run-queue latency",
            Signal::Oom => "OOM kills",
        })
    }
}

/// What to load and where to attach it.
#[derive(Clone, Debug)]
pub struct EbpfConfig {
    /// The signals to load; the others' programs stay out of the kernel.
    pub signals: Vec<Signal>,
    /// The cgroup2 directory the network programs attach to; they see the traffic of every
    /// socket in it and below (the kubepods level in production). `None` is the root of the
    /// cgroup2 mount.
    pub network_cgroup: Option<PathBuf>,
    /// Tracepoints to treat as absent from this kernel (`sys_exit`, `block_rq_complete`, …):
    /// their programs are attached under a name the kernel does not have, so that the agent
    /// meets the kernel's own refusal, as on a kernel without them. For trying the fallback
    /// on a kernel that has them; [`MISSING_TRACEPOINTS_VAR`] sets it.
    pub missing_tracepoints: Vec<String>,
}

/// The environment variable that lists tracepoints, comma-separated, for the agent (and
/// `probe`) to treat as absent: `HERD_EBPF_MISSING=block_rq_complete herd-agent`.
pub const MISSING_TRACEPOINTS_VAR: &str = "HERD_EBPF_MISSING";

/// The environment variable that sets how many cgroups each per-cgroup counter map holds
/// (default [`MAX_CGROUPS`]): `HERD_EBPF_MAP_ENTRIES=4 herd-agent` fills them on purpose, to
/// see what a full map does on a node that would never fill them.
pub const MAP_ENTRIES_VAR: &str = "HERD_EBPF_MAP_ENTRIES";

/// The capacity [`MAP_ENTRIES_VAR`] asks for, or [`MAX_CGROUPS`] where it is unset.
pub fn map_entries() -> Result<u32, LoadError> {
    match std::env::var(MAP_ENTRIES_VAR) {
        Ok(value) => parse_map_entries(&value),
        Err(_) => Ok(MAX_CGROUPS),
    }
}

fn parse_map_entries(value: &str) -> Result<u32, LoadError> {
    match value.trim().parse::<u32>() {
        Ok(entries) if entries > 0 => Ok(entries),
        _ => Err(LoadError::MapEntries(value.to_owned())),
    }
}

impl Default for EbpfConfig {
    /// Every signal, the network programs at the cgroup2 root, and the tracepoints
    /// [`MISSING_TRACEPOINTS_VAR`] names treated as absent.
    fn default() -> Self {
        let missing = std::env::var(MISSING_TRACEPOINTS_VAR).unwrap_or_default();
        Self {
            signals: Signal::ALL.to_vec(),
            network_cgroup: None,
            missing_tracepoints: missing
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl EbpfConfig {
    /// The name to ask the kernel for: `tracepoint` itself, or one no kernel has when the
    /// configuration treats it as absent.
    fn kernel_name(&self, tracepoint: &str) -> String {
        if self
            .missing_tracepoints
            .iter()
            .any(|name| name == tracepoint)
        {
            format!("{tracepoint}__absent_by_{MISSING_TRACEPOINTS_VAR}")
        } else {
            tracepoint.to_owned()
        }
    }
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "this herd-agent was built without its eBPF programs (AYA_BUILD_SKIP was set); \
         rebuild it after `cargo xtask setup`"
    )]
    NotBuilt,
    #[error("the kernel refused Herd's eBPF object: {}", refused(.0))]
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
    #[error("cannot attach {name} to {target}; it needs {feature}: {}", error_chain(.source.as_ref()))]
    Attach {
        name: &'static str,
        target: String,
        feature: &'static str,
        source: Box<ProgramError>,
    },
    #[error(
        "tracefs is not mounted (looked in {}); the {signal} programs attach to classic \
         tracepoints through it: `mount -t tracefs nodev /sys/kernel/tracing`",
        TRACEFS.join(", ")
    )]
    NoTracefs { signal: Signal },
    #[error("cannot read the tracepoint format {path}: {source}")]
    Format { path: PathBuf, source: io::Error },
    #[error(
        "this kernel has no tracepoint {category}:{tracepoint} (no {path}), which the {signal} \
         programs attach to"
    )]
    NoTracepoint {
        signal: Signal,
        category: &'static str,
        tracepoint: &'static str,
        path: PathBuf,
    },
    #[error(
        "tracepoint {category}:{tracepoint} field {field} is not where the {signal} programs \
         read it (offset {offset}, at least {size} bytes) on this kernel; found: {found}"
    )]
    Layout {
        signal: Signal,
        category: &'static str,
        tracepoint: &'static str,
        field: &'static str,
        offset: usize,
        size: usize,
        found: String,
    },
    #[error("cannot find the cgroup2 mount for the network programs: {0}")]
    Cgroup2(#[from] host::PreflightError),
    #[error("cannot open cgroup {path} to attach the network programs: {source}")]
    Cgroup { path: PathBuf, source: io::Error },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("cannot count the possible CPUs ({path}): {source}")]
    Cpus {
        path: &'static str,
        source: io::Error,
    },
    #[error(transparent)]
    Slots(#[from] SlotsError),
    #[error("{MAP_ENTRIES_VAR} must be a number of cgroups above 0, not `{0}`")]
    MapEntries(String),
}

/// Why the kernel refused the object, with the cause aya keeps apart (the errno of a map
/// or program it could not create), and what it takes where that was a missing privilege.
fn refused(err: &aya::EbpfError) -> String {
    let mut text = error_chain(err);
    if caused_by(err, io::ErrorKind::PermissionDenied) {
        text.push_str(" (loading eBPF programs needs root, or CAP_BPF and CAP_PERFMON)");
    }
    text
}

/// The loaded programs. Dropping this detaches them and frees their maps.
pub struct EbpfPrograms {
    ebpf: Ebpf,
    signals: Vec<Signal>,
    unavailable: Vec<(Signal, LoadError)>,
    /// How many cgroups each per-cgroup counter map holds.
    map_entries: u32,
}

impl EbpfPrograms {
    /// Loads the object and attaches every signal this host supports, the network programs
    /// at the cgroup2 root. A signal that cannot attach is left out and logged once; the
    /// load fails only when no signal attaches at all.
    pub fn load() -> Result<Self, LoadError> {
        let mut programs = Self::load_available(&EbpfConfig::default())?;
        for (signal, err) in &programs.unavailable {
            warn!(%signal, %err, "eBPF signal unavailable; running without it");
        }
        if programs.signals.is_empty() && !programs.unavailable.is_empty() {
            return Err(programs.unavailable.remove(0).1);
        }
        Ok(programs)
    }

    /// Loads the object and attaches the programs of the configured signals, all of them or
    /// none: any failure names the program and what the kernel lacks.
    pub fn load_with(config: &EbpfConfig) -> Result<Self, LoadError> {
        let mut programs = Self::load_available(config)?;
        if !programs.unavailable.is_empty() {
            return Err(programs.unavailable.remove(0).1);
        }
        Ok(programs)
    }

    /// Loads the object and attaches each configured signal that this host supports. A
    /// signal that fails is unloaded whole (no half-attached signal counts wrong) and kept in
    /// [`Self::unavailable`] with the reason.
    pub fn load_available(config: &EbpfConfig) -> Result<Self, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NotBuilt);
        }
        let mut wanted = config.signals.clone();
        wanted.sort();
        wanted.dedup();
        let map_entries = map_entries()?;
        let mut ebpf = load_object(map_entries)?;
        let (mut signals, mut unavailable) = (Vec::new(), Vec::new());
        for signal in wanted {
            match attach_signal(&mut ebpf, signal, config) {
                Ok(()) => {
                    info!(%signal, "eBPF programs attached");
                    signals.push(signal);
                }
                Err(err) => {
                    unload_signal(&mut ebpf, signal);
                    unavailable.push((signal, err));
                }
            }
        }
        Ok(Self {
            ebpf,
            signals,
            unavailable,
            map_entries,
        })
    }

    /// The signals that could not attach, and why.
    pub fn unavailable(&self) -> &[(Signal, LoadError)] {
        &self.unavailable
    }

    /// The signals whose programs are attached.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// Each loaded program's kernel id and name, for its run-time metrics. Asked through
    /// the descriptors this process holds, which takes no capability; listing the host's
    /// programs by id would take CAP_SYS_ADMIN, which the agent does not keep.
    pub fn program_names(&self) -> HashMap<u32, String> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some((info.id(), info.name_as_str().unwrap_or(name).to_owned()))
            })
            .collect()
    }

    /// Takes the counter maps of every attached signal out of the loaded object (once), for
    /// `collect::signals::SignalSampler`.
    pub fn take_signal_maps(&mut self) -> Result<SignalMaps, LoadError> {
        let mut maps = SignalMaps::default();
        for signal in self.signals.clone() {
            match signal {
                Signal::Syscalls => {
                    let slots = self
                        .ebpf
                        .take_map(SYSCALL_SLOTS_MAP)
                        .ok_or(LoadError::Missing(SYSCALL_SLOTS_MAP))?;
                    let aya::maps::Map::Array(slots) = slots else {
                        return Err(LoadError::Missing(SYSCALL_SLOTS_MAP));
                    };
                    maps.syscalls = Some(Box::new(SyscallCounterMap {
                        slots: SyscallSlots::new(MappedSlots::new(slots)?),
                        hash: PerCpuCounterMap {
                            name: SYSCALL_COUNTS_MAP,
                            map: take::<SyscallStats>(&mut self.ebpf, SYSCALL_COUNTS_MAP)?,
                        },
                    }));
                }
                Signal::Block => maps.block = Some(self.take_counters(BLOCK_COUNTS_MAP)?),
                Signal::Network => maps.net = Some(self.take_counters(NET_COUNTS_MAP)?),
                Signal::Sched => maps.sched = Some(self.take_counters(SCHED_COUNTS_MAP)?),
                Signal::Oom => maps.oom = Some(self.take_counters(OOM_COUNTS_MAP)?),
            }
        }
        Ok(maps)
    }

    /// Takes the array of events lost to full per-cgroup maps out of the loaded object
    /// (once), for the agent to read each window.
    pub fn take_full_maps(&mut self) -> Result<FullMaps, LoadError> {
        let map = self
            .ebpf
            .take_map(MAP_FULL_MAP)
            .ok_or(LoadError::Missing(MAP_FULL_MAP))?;
        let array = PerCpuArray::try_from(map).map_err(|source| LoadError::Map {
            name: MAP_FULL_MAP,
            source,
        })?;
        Ok(FullMaps::new(
            Box::new(KernelLosses {
                name: MAP_FULL_MAP,
                array,
            }),
            self.map_entries,
        ))
    }

    /// Starts passing what the programs log through aya-log (rare events: a map found full)
    /// to the agent's log. Needs a tokio runtime; the task ends when the forwarder is dropped.
    pub fn forward_logs(&mut self) -> Result<LogForwarder, LogForwardError> {
        ebpf_log::forward(&mut self.ebpf)
    }

    fn take_counters<V: Pod + Counters + Send>(
        &mut self,
        name: &'static str,
    ) -> Result<SignalMap<V>, LoadError> {
        Ok(Box::new(PerCpuCounterMap {
            name,
            map: take(&mut self.ebpf, name)?,
        }))
    }
}

/// Loads the object into the kernel (maps made, no program loaded yet), with the syscall
/// slots sized to this host's possible CPUs and each per-cgroup map to `map_entries`.
fn load_object(map_entries: u32) -> Result<Ebpf, LoadError> {
    let cpus = aya::util::nr_cpus().map_err(|(path, source)| LoadError::Cpus { path, source })?;
    let slots = u32::try_from(cpus)
        .ok()
        .and_then(|cpus| cpus.checked_mul(SYSCALL_SLOTS_PER_CPU))
        .unwrap_or(u32::MAX / SYSCALL_SLOTS_PER_CPU * SYSCALL_SLOTS_PER_CPU);
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(SYSCALL_SLOTS_MAP, slots);
    for name in CGROUP_MAPS {
        loader.map_max_entries(name, map_entries);
    }
    Ok(loader.load(OBJECT)?)
}

/// A raw tracepoint program on sys_exit that does nothing, attached: the benchmark's
/// reference for the syscall counter. Dropping it detaches it.
pub struct EmptySysExit {
    _ebpf: Ebpf,
}

impl EmptySysExit {
    pub fn attach() -> Result<Self, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NotBuilt);
        }
        let mut ebpf = load_object(MAX_CGROUPS)?;
        attach_raw_tracepoint(
            &mut ebpf,
            EMPTY_SYS_EXIT_PROGRAM,
            "sys_exit",
            "sys_exit",
            "raw tracepoints and CONFIG_FTRACE_SYSCALLS",
        )?;
        Ok(Self { _ebpf: ebpf })
    }
}

fn attach_signal(ebpf: &mut Ebpf, signal: Signal, config: &EbpfConfig) -> Result<(), LoadError> {
    if !signal.tracepoints().is_empty() {
        check_fields(tracefs(signal)?, signal, config)?;
    }
    if signal == Signal::Network {
        let cgroup = match &config.network_cgroup {
            Some(path) => path.clone(),
            None => host::cgroup2_mount(&HostPaths::default().proc)?,
        };
        attach_cgroup_skb(ebpf, &cgroup)?;
    }
    for &(program, tracepoint, feature) in signal.raw_tracepoints() {
        attach_raw_tracepoint(
            ebpf,
            program,
            tracepoint,
            &config.kernel_name(tracepoint),
            feature,
        )?;
    }
    for &(program, category, name) in signal.tracepoints() {
        attach_tracepoint(ebpf, program, category, name, &config.kernel_name(name))?;
    }
    Ok(())
}

/// Detaches and unloads whatever part of a signal did attach.
fn unload_signal(ebpf: &mut Ebpf, signal: Signal) {
    for name in signal.programs() {
        // A program that never loaded has nothing to undo.
        let _ = match ebpf.program_mut(name) {
            Some(Program::TracePoint(program)) => program.unload(),
            Some(Program::RawTracePoint(program)) => program.unload(),
            Some(Program::CgroupSkb(program)) => program.unload(),
            _ => Ok(()),
        };
    }
}

fn take<V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<PerCpuHashMap<MapData, u64, V>, LoadError> {
    let map = ebpf.take_map(name).ok_or(LoadError::Missing(name))?;
    PerCpuHashMap::try_from(map).map_err(|source| LoadError::Map { name, source })
}

fn tracefs(signal: Signal) -> Result<&'static Path, LoadError> {
    TRACEFS
        .iter()
        .map(Path::new)
        .find(|dir| dir.join("events").is_dir())
        .ok_or(LoadError::NoTracefs { signal })
}

/// Checks that each of the signal's classic tracepoints exists, and every field its programs
/// read against the kernel's format files.
fn check_fields(tracefs: &Path, signal: Signal, config: &EbpfConfig) -> Result<(), LoadError> {
    for &(_, category, tracepoint) in signal.tracepoints() {
        let events = tracefs.join("events").join(category);
        if !events.join(config.kernel_name(tracepoint)).is_dir() {
            return Err(LoadError::NoTracepoint {
                signal,
                category,
                tracepoint,
                path: events.join(tracepoint),
            });
        }
    }
    for field in signal.fields() {
        let path = tracefs
            .join("events")
            .join(field.category)
            .join(field.tracepoint)
            .join("format");
        let format =
            fs::read_to_string(&path).map_err(|source| LoadError::Format { path, source })?;
        check_field(&format, field).map_err(|found| LoadError::Layout {
            signal,
            category: field.category,
            tracepoint: field.tracepoint,
            field: field.field,
            offset: field.offset,
            size: field.size,
            found,
        })?;
    }
    Ok(())
}

/// Finds `field` in a tracefs format file; `Err` says what was found instead.
fn check_field(format: &str, field: &TracepointField) -> Result<(), String> {
    for line in format.lines() {
        let mut parts = line.trim().split(';').map(str::trim);
        let (Some(decl), Some(offset), Some(size)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(decl) = decl.strip_prefix("field:") else {
            continue;
        };
        let name = decl.rsplit(' ').next().unwrap_or_default();
        let name = name.split('[').next().unwrap_or_default();
        if name != field.field {
            continue;
        }
        let number =
            |text: &str, key: &str| text.strip_prefix(key).and_then(|n| n.parse::<usize>().ok());
        let (offset, size) = (number(offset, "offset:"), number(size, "size:"));
        return match (offset, size) {
            (Some(offset), Some(size)) if offset == field.offset && size >= field.size => Ok(()),
            _ => Err(line.trim().to_string()),
        };
    }
    Err("no such field".to_string())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LoadError::Missing(name))?
        .try_into()
        .map_err(|source| LoadError::Kind { name, source })
}

/// Attaches program `name` to the raw tracepoint `tracepoint`, which the kernel is asked for
/// as `kernel_name` (itself, or an absent one: [`EbpfConfig::missing_tracepoints`]).
fn attach_raw_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &'static str,
    kernel_name: &str,
    feature: &'static str,
) -> Result<(), LoadError> {
    let program: &mut RawTracePoint = program(ebpf, name)?;
    program
        .load()
        .map_err(|source| LoadError::Load { name, source })?;
    program
        .attach(kernel_name)
        .map_err(|source| LoadError::Attach {
            name,
            target: format!("raw tracepoint {tracepoint}"),
            feature,
            source: Box::new(source),
        })?;
    Ok(())
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &'static str,
    tracepoint: &'static str,
    kernel_name: &str,
) -> Result<(), LoadError> {
    let program: &mut TracePoint = program(ebpf, name)?;
    program
        .load()
        .map_err(|source| LoadError::Load { name, source })?;
    program
        .attach(category, kernel_name)
        .map_err(|source| LoadError::Attach {
            name,
            target: format!("tracepoint {category}:{tracepoint}"),
            feature: "BPF on classic tracepoints (CONFIG_BPF_EVENTS) and tracefs",
            source: Box::new(source),
        })?;
    Ok(())
}

fn attach_cgroup_skb(ebpf: &mut Ebpf, cgroup: &Path) -> Result<(), LoadError> {
    let dir = fs::File::open(cgroup).map_err(|source| LoadError::Cgroup {
        path: cgroup.to_path_buf(),
        source,
    })?;
    for (name, attach_type, direction) in [
        (NET_INGRESS_PROGRAM, CgroupSkbAttachType::Ingress, "ingress"),
        (NET_EGRESS_PROGRAM, CgroupSkbAttachType::Egress, "egress"),
    ] {
        let program: &mut CgroupSkb = program(ebpf, name)?;
        program
            .load()
            .map_err(|source| LoadError::Load { name, source })?;
        // Attached through a BPF link, which always runs beside other programs on the same
        // cgroup (a CNI's, systemd's) and takes no mode flags: `Single` is the one that sends
        // none.
        program
            .attach(&dir, attach_type, CgroupAttachMode::Single)
            .map_err(|source| LoadError::Attach {
                name,
                target: format!("cgroup {} ({direction})", cgroup.display()),
                feature: "cgroup_skb programs (CONFIG_CGROUP_BPF) on a cgroup2 directory",
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// One of the kernel's per-CPU, per-cgroup counter maps.
pub struct PerCpuCounterMap<V: Pod> {
    pub(crate) name: &'static str,
    pub(crate) map: PerCpuHashMap<MapData, u64, V>,
}

impl<V: Pod + Counters> CounterMap for PerCpuCounterMap<V> {
    type Value = V;

    fn totals(&self) -> Result<Vec<(u64, V)>, MapReadError> {
        self.map
            .iter()
            .map(|entry| {
                let (cgroup_id, per_cpu) = entry.map_err(|source| MapReadError {
                    map: self.name,
                    source,
                })?;
                Ok((cgroup_id, sum_cpus(&per_cpu)))
            })
            .collect()
    }

    fn forget(&mut self, cgroup_id: u64) -> Result<(), MapReadError> {
        match self.map.remove(&cgroup_id) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            // aya passes the kernel's ENOENT on as a failed delete; a cgroup the syscall
            // counter counted in its slots alone never had an entry here.
            Err(MapError::SyscallError(aya::sys::SyscallError { io_error, .. }))
                if io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(source) => Err(MapReadError {
                map: self.name,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCH: &str = "name: sched_switch\nID: 320\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;\n\
        \tfield:char rwbs[10];\toffset:40;\tsize:10;\tsigned:0;\n";

    fn wanted(field: &'static str, offset: usize, size: usize) -> TracepointField {
        TracepointField {
            category: "sched",
            tracepoint: "sched_switch",
            field,
            offset,
            size,
        }
    }

    #[test]
    fn a_field_where_the_program_reads_it_passes() {
        assert_eq!(check_field(SWITCH, &wanted("prev_pid", 24, 4)), Ok(()));
        assert_eq!(check_field(SWITCH, &wanted("prev_state", 32, 8)), Ok(()));
        // An array may be longer than the bytes the program reads.
        assert_eq!(check_field(SWITCH, &wanted("rwbs", 40, 2)), Ok(()));
    }

    #[test]
    fn a_moved_resized_or_missing_field_is_refused_with_what_was_found() {
        let moved = check_field(SWITCH, &wanted("prev_pid", 28, 4)).unwrap_err();
        assert!(moved.contains("offset:24"), "{moved}");
        assert!(check_field(SWITCH, &wanted("prev_state", 32, 16)).is_err());
        assert_eq!(
            check_field(SWITCH, &wanted("next_pid", 56, 4)),
            Err("no such field".to_string())
        );
    }

    #[test]
    fn the_map_capacity_is_a_positive_number_of_cgroups() {
        assert_eq!(parse_map_entries("4").unwrap(), 4);
        assert_eq!(parse_map_entries(" 16384 ").unwrap(), 16_384);
        for wrong in ["0", "-1", "four", "", "4294967296"] {
            let err = parse_map_entries(wrong).unwrap_err().to_string();
            assert!(
                err.contains(MAP_ENTRIES_VAR) && err.contains(wrong),
                "{err}"
            );
        }
    }

    #[test]
    fn every_tracepoint_field_belongs_to_a_signal_that_attaches_there() {
        let checked: usize = Signal::ALL.iter().map(|s| s.fields().count()).sum();
        assert_eq!(checked, TRACEPOINT_FIELDS.len());
        assert_eq!(Signal::Block.fields().count(), 7);
        assert_eq!(Signal::Sched.fields().count(), 0);
    }
}
