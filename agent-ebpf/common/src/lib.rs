//! Types shared by the eBPF programs in `herd-agent-ebpf` and the agent that reads their
//! maps. Everything here is `#[repr(C)]`, `Copy` and made of fixed-width fields, so that both
//! sides agree on the layout byte for byte.
//!
//! Every counter map is a per-CPU hash keyed by cgroup id: the inode number of the task's
//! cgroup2 directory, as `bpf_get_current_cgroup_id()` returns it. Syscalls, the hottest
//! path, are counted first in [`SYSCALL_SLOTS_MAP`], a direct-mapped array that user space
//! reads through shared memory; the hash takes only what does not fit there.
#![no_std]

/// Name of the per-CPU hash map that holds [`SyscallStats`] keyed by cgroup id.
pub const SYSCALL_COUNTS_MAP: &str = "SYSCALL_COUNTS";
/// Name of the array of [`SyscallSlot`]s: [`SYSCALL_SLOTS_PER_CPU`] slots for each possible
/// CPU, CPU after CPU, made with `BPF_F_MMAPABLE` so that user space reads it without a
/// syscall. The agent sizes it at load time to the number of possible CPUs.
pub const SYSCALL_SLOTS_MAP: &str = "SYSCALL_SLOTS";
/// Name of the per-CPU hash map that holds [`BlockCounts`] keyed by cgroup id.
pub const BLOCK_COUNTS_MAP: &str = "BLOCK_COUNTS";
/// Name of the per-CPU hash map that holds [`NetCounts`] keyed by cgroup id.
pub const NET_COUNTS_MAP: &str = "NET_COUNTS";
/// Name of the per-CPU hash map that holds [`SchedCounts`] keyed by cgroup id.
pub const SCHED_COUNTS_MAP: &str = "SCHED_COUNTS";
/// Name of the per-CPU hash map that holds [`OomCounts`] keyed by cgroup id.
pub const OOM_COUNTS_MAP: &str = "OOM_COUNTS";

/// Name of the per-CPU array that counts, for each per-cgroup counter map, the inserts the
/// kernel refused because the map was full: one `u64` per map, at the map's index in
/// [`CGROUP_MAPS`]. Written only on that refusal, never on the hot path.
pub const MAP_FULL_MAP: &str = "MAP_FULL";
/// Name of the array of flags, one per map in [`CGROUP_MAPS`], set by the first program that
/// finds the map full, so that the programs report it through aya-log once, not per event.
pub const MAP_FULL_REPORTED_MAP: &str = "MAP_FULL_REPORTED";

/// The per-cgroup counter maps, each at its index in [`MAP_FULL_MAP`]. The agent sizes them
/// all at load time (their `max_entries` in the object is [`MAX_CGROUPS`]).
pub const CGROUP_MAPS: [&str; 5] = [
    SYSCALL_COUNTS_MAP,
    BLOCK_COUNTS_MAP,
    NET_COUNTS_MAP,
    SCHED_COUNTS_MAP,
    OOM_COUNTS_MAP,
];
/// Index of [`SYSCALL_COUNTS_MAP`] in [`CGROUP_MAPS`] and [`MAP_FULL_MAP`].
pub const SYSCALL_COUNTS_INDEX: u32 = 0;
/// Index of [`BLOCK_COUNTS_MAP`].
pub const BLOCK_COUNTS_INDEX: u32 = 1;
/// Index of [`NET_COUNTS_MAP`].
pub const NET_COUNTS_INDEX: u32 = 2;
/// Index of [`SCHED_COUNTS_MAP`].
pub const SCHED_COUNTS_INDEX: u32 = 3;
/// Index of [`OOM_COUNTS_MAP`].
pub const OOM_COUNTS_INDEX: u32 = 4;

/// Name of the raw-tracepoint program that counts syscall exits.
pub const SYSCALL_EXIT_PROGRAM: &str = "herd_sys_exit";
/// Name of a raw-tracepoint program on sys_exit that does nothing: the reference the
/// benchmark measures the syscall counter against. The agent never attaches it.
pub const EMPTY_SYS_EXIT_PROGRAM: &str = "herd_sys_exit_empty";
/// Name of the tracepoint program on block:block_bio_queue (submitter's context).
pub const BLOCK_QUEUE_PROGRAM: &str = "herd_block_bio_queue";
/// Name of the tracepoint program on block:block_rq_complete.
pub const BLOCK_COMPLETE_PROGRAM: &str = "herd_block_rq_complete";
/// Name of the cgroup_skb program on ingress.
pub const NET_INGRESS_PROGRAM: &str = "herd_skb_ingress";
/// Name of the cgroup_skb program on egress.
pub const NET_EGRESS_PROGRAM: &str = "herd_skb_egress";
/// Name of the tracepoint program on sched:sched_wakeup.
pub const SCHED_WAKEUP_PROGRAM: &str = "herd_sched_wakeup";
/// Name of the tracepoint program on sched:sched_wakeup_new.
pub const SCHED_WAKEUP_NEW_PROGRAM: &str = "herd_sched_wakeup_new";
/// Name of the tracepoint program on sched:sched_switch.
pub const SCHED_SWITCH_PROGRAM: &str = "herd_sched_switch";
/// Name of the tracepoint program on oom:mark_victim.
pub const OOM_VICTIM_PROGRAM: &str = "herd_oom_mark_victim";
/// Name of the tracepoint program on sched:sched_process_exit, which charges OOM kills.
pub const OOM_EXIT_PROGRAM: &str = "herd_oom_process_exit";

/// How many cgroups each counter map can hold. A node runs a few hundred containers at most;
/// the rest of the room is for host services and cgroups that vanish between two reads.
pub const MAX_CGROUPS: u32 = 16_384;

/// Syscall slots per CPU in [`SYSCALL_SLOTS_MAP`]: 72 KiB of kernel memory per possible CPU.
/// A cgroup's slot on a CPU is [`syscall_slot`]; the first cgroup to count in a slot keeps it
/// until it is removed, and another cgroup with the same slot counts in the hash.
pub const SYSCALL_SLOTS_PER_CPU: u32 = 1_024;

/// The slot of a cgroup within a CPU's block of [`SYSCALL_SLOTS_MAP`]. cgroup ids are kernfs
/// inode numbers, handed out in steps of the number of files a cgroup directory holds, so
/// they go through a full mixer (MurmurHash3's finalizer) rather than being taken modulo the
/// slots, or multiplied by a constant, either of which leaves most slots unused for some
/// steps.
#[inline(always)]
pub fn syscall_slot(cgroup_id: u64) -> u32 {
    let mut h = cgroup_id;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h as u32) & (SYSCALL_SLOTS_PER_CPU - 1)
}

/// How many block requests can be in flight with a start time. The map is an LRU, so
/// requests whose completion is never seen (merged bios, bio-based devices) age out.
pub const MAX_BLOCK_IN_FLIGHT: u32 = 16_384;

/// How many tasks can have a runnable-since timestamp, keyed by `task_struct` address. An
/// LRU, so the entries of tasks that are gone age out.
pub const MAX_RUNNABLE_TASKS: u32 = 32_768;

/// How many OOM victims can be waiting to exit. An LRU, like the others.
pub const MAX_OOM_VICTIMS: u32 = 1_024;

/// Syscalls that returned and those that failed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallCounts {
    /// Syscalls that returned.
    pub calls: u64,
    /// Syscalls that returned an error (-4095..=-1).
    pub failed: u64,
}

/// Failed syscalls by errno class. The classes are the ones that mean different things to an
/// operator: back-pressure, signals, missing files, programming errors, denials.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallErrors {
    /// EAGAIN/EWOULDBLOCK: a non-blocking call found nothing to do.
    pub again: u64,
    /// EINTR and the kernel's restart codes (ERESTARTSYS and friends).
    pub interrupted: u64,
    /// ENOENT.
    pub not_found: u64,
    /// EBADF, EINVAL, EFAULT, ENOSYS: a call the program should not have made.
    pub bad_call: u64,
    /// EPERM, EACCES.
    pub denied: u64,
    /// Any other errno.
    pub other: u64,
}

/// One cgroup's syscalls on one CPU since the map entry was created: the value of
/// [`SYSCALL_COUNTS_MAP`], one lookup per syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallStats {
    pub counts: SyscallCounts,
    /// `counts.failed`, split by class.
    pub errors: SyscallErrors,
}

/// One slot of [`SYSCALL_SLOTS_MAP`]: the cgroup that owns it (0 when free) and what that
/// cgroup's syscalls counted on this slot's CPU. Only the owning CPU's programs write the
/// counts; user space frees the slot of a removed cgroup by zeroing the counts first and the
/// owner last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallSlot {
    pub cgroup_id: u64,
    pub stats: SyscallStats,
}

/// Block IO of one direction (read, write or discard).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockDirection {
    /// Bios submitted (in the submitter's context).
    pub ops: u64,
    /// Bytes those bios asked for.
    pub bytes: u64,
    /// Requests whose completion was matched with their first bio.
    pub completed: u64,
    /// Sum of submit-to-completion times of the completed requests, in ns.
    pub latency_ns: u64,
    /// Completed requests that ended with an error.
    pub failed: u64,
}

/// One cgroup's block IO on one CPU: the value of [`BLOCK_COUNTS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCounts {
    pub read: BlockDirection,
    pub write: BlockDirection,
    pub discard: BlockDirection,
}

/// Block operation kinds, as stored in [`BlockStart::op`].
pub const BLOCK_OP_READ: u32 = 0;
pub const BLOCK_OP_WRITE: u32 = 1;
pub const BLOCK_OP_DISCARD: u32 = 2;

/// Key of the in-flight map: where a request starts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockKey {
    /// The whole disk's dev_t, as the block tracepoints give it.
    pub dev: u32,
    pub _pad: u32,
    pub sector: u64,
}

/// Value of the in-flight map: who submitted the first bio of a request, and when.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStart {
    pub submitted_ns: u64,
    pub cgroup_id: u64,
    /// One of the `BLOCK_OP_*` values.
    pub op: u32,
    pub _pad: u32,
}

/// One cgroup's network traffic on one CPU, as its sockets see it (IP packets, headers
/// included): the value of [`NET_COUNTS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounts {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// One cgroup's run-queue waits on one CPU: the value of [`SCHED_COUNTS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedCounts {
    /// Times a task of the cgroup went from runnable (woken or preempted) to running.
    pub waits: u64,
    /// Sum of those waits, in ns.
    pub wait_ns: u64,
    /// Waits longer than [`SCHED_LONG_WAIT_NS`]: the tail that users feel.
    pub long_waits: u64,
}

/// A run-queue wait longer than this counts in [`SchedCounts::long_waits`].
pub const SCHED_LONG_WAIT_NS: u64 = 5_000_000;

/// The wait of the task that a CPU switched to, charged when that task leaves the CPU (the
/// program then runs in its context and sees its cgroup). One slot per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPending {
    pub wait_ns: u64,
    /// The task the wait belongs to (its `task_struct` address); 0 when nothing is pending.
    pub task: u64,
}

/// One cgroup's OOM kills on one CPU: the value of [`OOM_COUNTS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomCounts {
    /// Tasks the OOM killer chose that then exited.
    pub kills: u64,
}

/// A field of a classic tracepoint that a program reads at a fixed offset. The offsets are
/// those of the tracefs format files of Linux 6.x; the agent checks each against the running
/// kernel's format file before it loads anything, so a kernel that moved a field is refused
/// with a plain message instead of counting garbage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointField {
    pub category: &'static str,
    pub tracepoint: &'static str,
    pub field: &'static str,
    pub offset: usize,
    /// How many bytes of it the program reads; the kernel's field must be at least as big.
    pub size: usize,
}

/// Field offsets in the tracepoint records the programs read.
pub mod offsets {
    /// block:block_bio_queue `dev_t dev`.
    pub const BIO_QUEUE_DEV: usize = 8;
    /// block:block_bio_queue `sector_t sector`.
    pub const BIO_QUEUE_SECTOR: usize = 16;
    /// block:block_bio_queue `unsigned int nr_sector`.
    pub const BIO_QUEUE_NR_SECTOR: usize = 24;
    /// block:block_bio_queue `char rwbs[]`.
    pub const BIO_QUEUE_RWBS: usize = 28;
    /// block:block_rq_complete `dev_t dev`.
    pub const RQ_COMPLETE_DEV: usize = 8;
    /// block:block_rq_complete `sector_t sector`.
    pub const RQ_COMPLETE_SECTOR: usize = 16;
    /// block:block_rq_complete `int error`.
    pub const RQ_COMPLETE_ERROR: usize = 28;
    /// oom:mark_victim `int pid`.
    pub const MARK_VICTIM_PID: usize = 8;
}

/// Every tracepoint field the programs read, for the agent's check against tracefs.
pub const TRACEPOINT_FIELDS: &[TracepointField] = {
    const fn field(
        category: &'static str,
        tracepoint: &'static str,
        field: &'static str,
        offset: usize,
        size: usize,
    ) -> TracepointField {
        TracepointField {
            category,
            tracepoint,
            field,
            offset,
            size,
        }
    }
    use offsets::*;
    &[
        field("block", "block_bio_queue", "dev", BIO_QUEUE_DEV, 4),
        field("block", "block_bio_queue", "sector", BIO_QUEUE_SECTOR, 8),
        field(
            "block",
            "block_bio_queue",
            "nr_sector",
            BIO_QUEUE_NR_SECTOR,
            4,
        ),
        field("block", "block_bio_queue", "rwbs", BIO_QUEUE_RWBS, 2),
        field("block", "block_rq_complete", "dev", RQ_COMPLETE_DEV, 4),
        field(
            "block",
            "block_rq_complete",
            "sector",
            RQ_COMPLETE_SECTOR,
            8,
        ),
        field("block", "block_rq_complete", "error", RQ_COMPLETE_ERROR, 4),
        field("oom", "mark_victim", "pid", MARK_VICTIM_PID, 4),
    ]
};

/// Whether two strings are equal, in a constant.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut at = 0;
    while at < a.len() {
        if a[at] != b[at] {
            return false;
        }
        at += 1;
    }
    true
}

// A layout change must be made on both sides at once.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<SyscallCounts>() == 16);
    assert!(size_of::<SyscallErrors>() == 48);
    assert!(size_of::<SyscallStats>() == 64);
    assert!(size_of::<SyscallSlot>() == 72);
    assert!(SYSCALL_SLOTS_PER_CPU.is_power_of_two());
    assert!(size_of::<BlockDirection>() == 40);
    assert!(size_of::<BlockCounts>() == 120);
    assert!(size_of::<BlockKey>() == 16);
    assert!(size_of::<BlockStart>() == 24);
    assert!(size_of::<NetCounts>() == 32);
    assert!(size_of::<SchedCounts>() == 24);
    assert!(size_of::<SchedPending>() == 16);
    assert!(size_of::<OomCounts>() == 8);
    let maps = [
        (SYSCALL_COUNTS_INDEX, SYSCALL_COUNTS_MAP),
        (BLOCK_COUNTS_INDEX, BLOCK_COUNTS_MAP),
        (NET_COUNTS_INDEX, NET_COUNTS_MAP),
        (SCHED_COUNTS_INDEX, SCHED_COUNTS_MAP),
        (OOM_COUNTS_INDEX, OOM_COUNTS_MAP),
    ];
    let mut at = 0;
    while at < maps.len() {
        let (index, name) = maps[at];
        assert!(index as usize == at);
        assert!(same(CGROUP_MAPS[at], name));
        at += 1;
    }
};

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: every type here is `repr(C)`, `Copy`, and made only of integers with explicit
    // padding fields, so every byte pattern is a valid value and none has implicit padding.
    unsafe impl aya::Pod for SyscallStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SyscallSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BlockCounts {}
    // SAFETY: as above.
    unsafe impl aya::Pod for NetCounts {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SchedCounts {}
    // SAFETY: as above.
    unsafe impl aya::Pod for OomCounts {}
}
