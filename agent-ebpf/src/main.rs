//! Herd's eBPF programs. Each program is a thin entry point around a `try_` body; everything
//! is aggregated in the kernel in per-CPU maps keyed by cgroup id, so user space reads a few
//! counters per cgroup per tick instead of a stream of events.
//!
//! A per-cgroup map that is full refuses the entry of a new cgroup: what is lost is counted
//! per map in `MAP_FULL`, and the first loss in each map is logged through aya-log. Both
//! happen only on that refusal, never on the hot path.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, BPF_F_MMAPABLE, BPF_NOEXIST},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_ktime_get_ns, bpf_skb_cgroup_id,
    },
    macros::{cgroup_skb, map, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{RawTracePointContext, SkBuffContext, TracePointContext},
};
use aya_log_ebpf::warn;
use herd_agent_common::{
    BLOCK_COUNTS_INDEX, BLOCK_COUNTS_MAP, BLOCK_OP_DISCARD, BLOCK_OP_READ, BLOCK_OP_WRITE,
    BlockCounts, BlockDirection, BlockKey, BlockStart, CGROUP_MAPS, MAX_BLOCK_IN_FLIGHT,
    MAX_CGROUPS, MAX_OOM_VICTIMS, MAX_RUNNABLE_TASKS, NET_COUNTS_INDEX, NET_COUNTS_MAP, NetCounts,
    OOM_COUNTS_INDEX, OOM_COUNTS_MAP, OomCounts, SCHED_COUNTS_INDEX, SCHED_COUNTS_MAP,
    SCHED_LONG_WAIT_NS, SYSCALL_COUNTS_INDEX, SYSCALL_COUNTS_MAP, SYSCALL_SLOTS_PER_CPU,
    SchedCounts, SchedPending, SyscallErrors, SyscallSlot, SyscallStats, offsets, syscall_slot,
};

/// Why a program body stopped early; every such case is benign and only ends the event.
type Skip = ();

/// Sized by the agent at load time to `SYSCALL_SLOTS_PER_CPU` times the possible CPUs.
#[map(name = "SYSCALL_SLOTS")]
static SYSCALL_SLOTS: Array<SyscallSlot> =
    Array::with_max_entries(SYSCALL_SLOTS_PER_CPU, BPF_F_MMAPABLE);

#[map(name = "SYSCALL_COUNTS")]
static SYSCALL_COUNTS: PerCpuHashMap<u64, SyscallStats> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

#[map(name = "BLOCK_COUNTS")]
static BLOCK_COUNTS: PerCpuHashMap<u64, BlockCounts> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

#[map(name = "BLOCK_IN_FLIGHT")]
static BLOCK_IN_FLIGHT: LruHashMap<BlockKey, BlockStart> =
    LruHashMap::with_max_entries(MAX_BLOCK_IN_FLIGHT, 0);

#[map(name = "NET_COUNTS")]
static NET_COUNTS: PerCpuHashMap<u64, NetCounts> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

#[map(name = "SCHED_COUNTS")]
static SCHED_COUNTS: PerCpuHashMap<u64, SchedCounts> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

#[map(name = "SCHED_RUNNABLE_SINCE")]
static SCHED_RUNNABLE_SINCE: LruHashMap<u64, u64> =
    LruHashMap::with_max_entries(MAX_RUNNABLE_TASKS, 0);

#[map(name = "SCHED_PENDING")]
static SCHED_PENDING: PerCpuArray<SchedPending> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "OOM_COUNTS")]
static OOM_COUNTS: PerCpuHashMap<u64, OomCounts> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

#[map(name = "OOM_VICTIMS")]
static OOM_VICTIMS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(MAX_OOM_VICTIMS, 0);

#[map(name = "MAP_FULL")]
static MAP_FULL: PerCpuArray<u64> = PerCpuArray::with_max_entries(CGROUP_MAPS.len() as u32, 0);

#[map(name = "MAP_FULL_REPORTED")]
static MAP_FULL_REPORTED: Array<u32> = Array::with_max_entries(CGROUP_MAPS.len() as u32, 0);

/// What a hash map's insert returns when the map holds `max_entries` already.
const E2BIG: i32 = 7;

/// A per-cgroup counter map, with its index in `MAP_FULL` and its name for the log.
#[derive(Clone, Copy)]
struct CgroupMap<V: 'static> {
    map: &'static PerCpuHashMap<u64, V>,
    index: u32,
    name: &'static str,
}

const BLOCK: CgroupMap<BlockCounts> = CgroupMap {
    map: &BLOCK_COUNTS,
    index: BLOCK_COUNTS_INDEX,
    name: BLOCK_COUNTS_MAP,
};
const NET: CgroupMap<NetCounts> = CgroupMap {
    map: &NET_COUNTS,
    index: NET_COUNTS_INDEX,
    name: NET_COUNTS_MAP,
};
const SCHED: CgroupMap<SchedCounts> = CgroupMap {
    map: &SCHED_COUNTS,
    index: SCHED_COUNTS_INDEX,
    name: SCHED_COUNTS_MAP,
};
const OOM: CgroupMap<OomCounts> = CgroupMap {
    map: &OOM_COUNTS,
    index: OOM_COUNTS_INDEX,
    name: OOM_COUNTS_MAP,
};

/// This CPU's slot of a cgroup's counters, made (zeroed) on first use.
#[inline(always)]
fn slot<C: EbpfContext, V: Default>(
    ctx: &C,
    map: CgroupMap<V>,
    cgroup_id: u64,
) -> Result<*mut V, Skip> {
    if let Some(counts) = map.map.get_ptr_mut(cgroup_id) {
        return Ok(counts);
    }
    // Another CPU may make the entry between the lookup and the insert (EEXIST); either way
    // the entry exists afterwards, with a slot for this CPU.
    if let Err(err) = map
        .map
        .insert(cgroup_id, V::default(), u64::from(BPF_NOEXIST))
    {
        if err == -E2BIG {
            map_full(ctx, map.index, map.name);
        }
    }
    map.map.get_ptr_mut(cgroup_id).ok_or(())
}

/// Counts an event lost because its cgroup found no room in a full map, and logs the first
/// such loss of each map. The flag is read and set without an atomic: two CPUs that find
/// the same map full at the same instant may both log it, which costs a line, not a count.
#[inline(never)]
fn map_full<C: EbpfContext>(ctx: &C, index: u32, name: &'static str) {
    if let Some(lost) = MAP_FULL.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a per-CPU array. A network program in a softirq that
        // interrupts this one on the same CPU could lose one of the two adds, as with the
        // network counters; a count of losses can afford that.
        unsafe { *lost += 1 };
    }
    let Some(reported) = MAP_FULL_REPORTED.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: a map value; a racing writer can only store 1 too.
    unsafe {
        if *reported != 0 {
            return;
        }
        *reported = 1;
    }
    warn!(
        ctx,
        "eBPF map {} is full: a new cgroup's events are not counted", name
    );
}

/// A field of a classic tracepoint record, read directly from the context (the verifier
/// allows aligned loads inside the record, which costs less than a probe-read helper call).
///
/// # Safety
/// `offset` must be the offset of a field of type `T` in this tracepoint's record.
#[inline(always)]
unsafe fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: the caller names a field of the record, which the context points to.
    unsafe { ctx.as_ptr().cast::<u8>().add(offset).cast::<T>().read() }
}

#[inline(always)]
fn current_cgroup() -> u64 {
    // SAFETY: the helper takes no arguments and is allowed in tracing programs.
    unsafe { bpf_get_current_cgroup_id() }
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: the helper takes no arguments.
    unsafe { bpf_ktime_get_ns() }
}

// ---- syscalls -------------------------------------------------------------------------------

/// Counts every syscall that returns, and those that fail by errno class, per cgroup.
///
/// Only the exit is traced: it carries both the call and its result, so one program does the
/// work of two. `exit` and `exit_group` never return and are not counted.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn herd_sys_exit(ctx: RawTracePointContext) -> i32 {
    match try_herd_sys_exit(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

fn try_herd_sys_exit(ctx: &RawTracePointContext) -> Result<(), Skip> {
    // TP_PROTO(struct pt_regs *regs, long ret)
    let ret: i64 = ctx.arg(1);
    // Only -4095..=-1 are errors; a few syscalls return other negative values.
    let failed = (-4095..0).contains(&ret);
    let cgroup_id = current_cgroup();

    // The fast path: this CPU's slot for the cgroup, an array lookup the kernel inlines.
    // SAFETY: the helper takes no arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let index = cpu
        .wrapping_mul(SYSCALL_SLOTS_PER_CPU)
        .wrapping_add(syscall_slot(cgroup_id));
    if let Some(slot) = SYSCALL_SLOTS.get_ptr_mut(index) {
        // SAFETY: only programs on this CPU write this CPU's slots, one at a time (a raw
        // tracepoint program does not nest on a CPU); user space writes a slot only to free
        // it, after its cgroup is gone.
        let slot = unsafe { &mut *slot };
        if slot.cgroup_id == cgroup_id {
            add_syscall(&mut slot.stats, failed, ret);
            return Ok(());
        }
        if slot.cgroup_id == 0 {
            slot.cgroup_id = cgroup_id;
            add_syscall(&mut slot.stats, failed, ret);
            return Ok(());
        }
    }

    // The slot belongs to another cgroup: count in the hash.
    if let Some(stats) = SYSCALL_COUNTS.get_ptr_mut(cgroup_id) {
        // SAFETY: `stats` is this CPU's slot of a per-CPU map value, so nothing else writes
        // it while this program runs on this CPU.
        unsafe { add_syscall(&mut *stats, failed, ret) };
        return Ok(());
    }
    let mut first = SyscallStats::default();
    add_syscall(&mut first, failed, ret);
    if let Err(err) = SYSCALL_COUNTS.insert(cgroup_id, first, u64::from(BPF_NOEXIST)) {
        if err == -E2BIG {
            map_full(ctx, SYSCALL_COUNTS_INDEX, SYSCALL_COUNTS_MAP);
            return Err(());
        }
        // Another CPU created the entry between the lookup and the insert: count on this
        // CPU's slot of it.
        let stats = SYSCALL_COUNTS.get_ptr_mut(cgroup_id).ok_or(())?;
        // SAFETY: as above.
        unsafe { add_syscall(&mut *stats, failed, ret) };
    }
    Ok(())
}

/// Does nothing: attached only by the benchmark, as the cost of a raw tracepoint on
/// sys_exit before any work, which the syscall counter is measured against.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn herd_sys_exit_empty(_ctx: RawTracePointContext) -> i32 {
    0
}

#[inline(always)]
fn add_syscall(stats: &mut SyscallStats, failed: bool, ret: i64) {
    stats.counts.calls += 1;
    if failed {
        stats.counts.failed += 1;
        *errno_class(&mut stats.errors, -ret) += 1;
    }
}

#[inline(always)]
fn errno_class(errors: &mut SyscallErrors, errno: i64) -> &mut u64 {
    match errno {
        11 => &mut errors.again,                  // EAGAIN, EWOULDBLOCK
        4 | 512..=516 => &mut errors.interrupted, // EINTR, ERESTART*
        2 => &mut errors.not_found,               // ENOENT
        9 | 14 | 22 | 38 => &mut errors.bad_call, // EBADF, EFAULT, EINVAL, ENOSYS
        1 | 13 => &mut errors.denied,             // EPERM, EACCES
        _ => &mut errors.other,
    }
}

// ---- block IO -------------------------------------------------------------------------------

/// Counts a bio in the context of the task that submits it, and remembers when and by whom
/// its request started, so that the completion (in interrupt context) can be charged back.
#[tracepoint(category = "block", name = "block_bio_queue")]
pub fn herd_block_bio_queue(ctx: TracePointContext) -> u32 {
    let _ = try_herd_block_bio_queue(&ctx);
    0
}

fn try_herd_block_bio_queue(ctx: &TracePointContext) -> Result<(), Skip> {
    // SAFETY: the offsets are those of block_bio_queue's record (checked by the agent).
    let (dev, sector, nr_sector, rwbs) = unsafe {
        (
            field::<u32>(ctx, offsets::BIO_QUEUE_DEV),
            field::<u64>(ctx, offsets::BIO_QUEUE_SECTOR),
            field::<u32>(ctx, offsets::BIO_QUEUE_NR_SECTOR),
            [
                field::<u8>(ctx, offsets::BIO_QUEUE_RWBS),
                field::<u8>(ctx, offsets::BIO_QUEUE_RWBS + 1),
            ],
        )
    };
    // Flushes carry no data and would only blur the request counts.
    if nr_sector == 0 {
        return Ok(());
    }
    let op = block_op(rwbs).ok_or(())?;
    let cgroup_id = current_cgroup();
    let counts = slot(ctx, BLOCK, cgroup_id)?;
    // SAFETY: this CPU's slot of a per-CPU map value.
    let direction = unsafe { block_direction(&mut *counts, op) };
    direction.ops += 1;
    direction.bytes += u64::from(nr_sector) * 512;

    let key = BlockKey {
        dev,
        _pad: 0,
        sector,
    };
    let start = BlockStart {
        submitted_ns: now_ns(),
        cgroup_id,
        op,
        _pad: 0,
    };
    // The newest bio at a sector wins: an older entry there is one whose completion was
    // never seen (a bio merged behind another), which the LRU would drop anyway.
    BLOCK_IN_FLIGHT
        .insert(&key, &start, u64::from(BPF_ANY))
        .map_err(|_| ())
}

/// Matches a completed request with its first bio and charges its latency, and its failure,
/// to the cgroup that submitted it.
#[tracepoint(category = "block", name = "block_rq_complete")]
pub fn herd_block_rq_complete(ctx: TracePointContext) -> u32 {
    let _ = try_herd_block_rq_complete(&ctx);
    0
}

fn try_herd_block_rq_complete(ctx: &TracePointContext) -> Result<(), Skip> {
    // SAFETY: the offsets are those of block_rq_complete's record (checked by the agent).
    let (dev, sector, error) = unsafe {
        (
            field::<u32>(ctx, offsets::RQ_COMPLETE_DEV),
            field::<u64>(ctx, offsets::RQ_COMPLETE_SECTOR),
            field::<i32>(ctx, offsets::RQ_COMPLETE_ERROR),
        )
    };
    let key = BlockKey {
        dev,
        _pad: 0,
        sector,
    };
    // SAFETY: the value is copied out before the entry is removed.
    let start = unsafe { *BLOCK_IN_FLIGHT.get(&key).ok_or(())? };
    let _ = BLOCK_IN_FLIGHT.remove(&key);
    let counts = slot(ctx, BLOCK, start.cgroup_id)?;
    // SAFETY: this CPU's slot of a per-CPU map value.
    let direction = unsafe { block_direction(&mut *counts, start.op) };
    direction.completed += 1;
    direction.latency_ns += now_ns().saturating_sub(start.submitted_ns);
    if error != 0 {
        direction.failed += 1;
    }
    Ok(())
}

/// The operation in a tracepoint's `rwbs` string: an optional `F` (preflush) and then `R`,
/// `W` or `D`. Pure flushes and other operations are not counted.
#[inline(always)]
fn block_op(rwbs: [u8; 2]) -> Option<u32> {
    let op = if rwbs[0] == b'F' { rwbs[1] } else { rwbs[0] };
    match op {
        b'R' => Some(BLOCK_OP_READ),
        b'W' => Some(BLOCK_OP_WRITE),
        b'D' => Some(BLOCK_OP_DISCARD),
        _ => None,
    }
}

#[inline(always)]
fn block_direction(counts: &mut BlockCounts, op: u32) -> &mut BlockDirection {
    match op {
        BLOCK_OP_READ => &mut counts.read,
        BLOCK_OP_WRITE => &mut counts.write,
        _ => &mut counts.discard,
    }
}

// ---- network --------------------------------------------------------------------------------

/// Counts packets received by sockets of the cgroups below the attach point. Always allows.
#[cgroup_skb(ingress)]
pub fn herd_skb_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_count_skb(&ctx, true);
    1
}

/// Counts packets sent by sockets of the cgroups below the attach point. Always allows.
#[cgroup_skb(egress)]
pub fn herd_skb_egress(ctx: SkBuffContext) -> i32 {
    let _ = try_count_skb(&ctx, false);
    1
}

fn try_count_skb(ctx: &SkBuffContext, ingress: bool) -> Result<(), Skip> {
    // The socket's cgroup, not the current task's: ingress runs in softirq context.
    // SAFETY: the context is the program's own skb.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    if cgroup_id == 0 {
        return Ok(());
    }
    let bytes = u64::from(ctx.skb.len());
    // A GSO packet stands for several on the wire.
    // SAFETY: gso_segs is a readable field of the program's own skb.
    let packets = u64::from(unsafe { (*ctx.skb.skb).gso_segs }.max(1));
    let counts = slot(ctx, NET, cgroup_id)?;
    // SAFETY: this CPU's slot of a per-CPU map value. A softirq that sends on this CPU while
    // a task's send is being counted could lose one of the two adds; that window is a few
    // instructions long, and the bpf target has no 64-bit atomic add in `core`.
    let counts = unsafe { &mut *counts };
    if ingress {
        counts.rx_bytes += bytes;
        counts.rx_packets += packets;
    } else {
        counts.tx_bytes += bytes;
        counts.tx_packets += packets;
    }
    Ok(())
}

// ---- scheduler ------------------------------------------------------------------------------

// The scheduler programs are raw tracepoints keyed by `task_struct` address: they read no
// tracepoint record (formatting one costs more than the rest of the program) and no task
// field, only the arguments.

/// A task became runnable: its wait for a CPU starts now.
#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn herd_sched_wakeup(ctx: RawTracePointContext) -> i32 {
    let _ = try_runnable(&ctx);
    0
}

/// A new task became runnable for the first time.
#[raw_tracepoint(tracepoint = "sched_wakeup_new")]
pub fn herd_sched_wakeup_new(ctx: RawTracePointContext) -> i32 {
    let _ = try_runnable(&ctx);
    0
}

fn try_runnable(ctx: &RawTracePointContext) -> Result<(), Skip> {
    // TP_PROTO(struct task_struct *p)
    let task: u64 = ctx.arg(0);
    mark_runnable(task, now_ns())
}

/// Records when a task became runnable. A task's entry is reused from one wait to the next
/// (a store instead of a delete and an insert, which lock the map), and zero means "not
/// waiting"; the LRU drops the entries of tasks that are gone.
#[inline(always)]
fn mark_runnable(task: u64, now: u64) -> Result<(), Skip> {
    if let Some(since) = SCHED_RUNNABLE_SINCE.get_ptr_mut(&task) {
        // SAFETY: a map value; a racing writer can only store another timestamp or zero.
        unsafe { *since = now };
        return Ok(());
    }
    SCHED_RUNNABLE_SINCE
        .insert(&task, &now, u64::from(BPF_ANY))
        .map_err(|_| ())
}

/// A CPU switches from `prev` (the current task) to `next`.
///
/// The wait of `next` is known here, but its cgroup is not (only the current task's is), so
/// it is parked in this CPU's pending slot and charged when `next` itself leaves the CPU:
/// this program then runs in its context.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn herd_sched_switch(ctx: RawTracePointContext) -> i32 {
    let _ = try_herd_sched_switch(&ctx);
    0
}

fn try_herd_sched_switch(ctx: &RawTracePointContext) -> Result<(), Skip> {
    // TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
    //          unsigned int prev_state)
    let preempt: u64 = ctx.arg(0);
    let prev: u64 = ctx.arg(1);
    let next: u64 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    let now = now_ns();
    let pending = SCHED_PENDING.get_ptr_mut(0).ok_or(())?;
    // SAFETY: this CPU's slot of a per-CPU array; nothing else on this CPU runs meanwhile.
    let pending = unsafe { &mut *pending };
    if pending.task != 0 && pending.task == prev {
        charge_wait(ctx, pending.wait_ns);
    }
    pending.task = 0;

    // A preempted task (or one that yielded, still TASK_RUNNING) goes straight back to the
    // run queue: its next wait starts now. The idle task (pid 0) never waits; it is never
    // marked, so switching to it finds no entry below.
    let prev_is_idle = bpf_get_current_pid_tgid() as u32 == 0;
    if !prev_is_idle && (preempt != 0 || prev_state as u32 == 0) {
        let _ = mark_runnable(prev, now);
    }
    let since = SCHED_RUNNABLE_SINCE.get_ptr_mut(&next).ok_or(())?;
    // SAFETY: a map value, read and cleared in place.
    let since = unsafe { core::mem::replace(&mut *since, 0) };
    if since == 0 {
        return Ok(());
    }
    pending.wait_ns = now.saturating_sub(since);
    pending.task = next;
    Ok(())
}

#[inline(always)]
fn charge_wait(ctx: &RawTracePointContext, wait_ns: u64) {
    let Ok(counts) = slot(ctx, SCHED, current_cgroup()) else {
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU map value.
    let counts = unsafe { &mut *counts };
    counts.waits += 1;
    counts.wait_ns += wait_ns;
    if wait_ns > SCHED_LONG_WAIT_NS {
        counts.long_waits += 1;
    }
}

// ---- OOM kills ------------------------------------------------------------------------------

/// The OOM killer chose a victim. It runs in the context of whichever task ran out of memory,
/// which need not be the victim, so the victim is only remembered here and charged when it
/// exits, in its own context.
#[tracepoint(category = "oom", name = "mark_victim")]
pub fn herd_oom_mark_victim(ctx: TracePointContext) -> u32 {
    let _ = try_herd_oom_mark_victim(&ctx);
    0
}

fn try_herd_oom_mark_victim(ctx: &TracePointContext) -> Result<(), Skip> {
    // SAFETY: the offset of `pid` in mark_victim's record (checked by the agent).
    let pid = unsafe { field::<i32>(ctx, offsets::MARK_VICTIM_PID) } as u32;
    OOM_VICTIMS
        .insert(&pid, &1, u64::from(BPF_ANY))
        .map_err(|_| ())
}

/// Charges an OOM kill to the cgroup of the victim as it exits.
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn herd_oom_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_herd_oom_process_exit(&ctx);
    0
}

fn try_herd_oom_process_exit(ctx: &TracePointContext) -> Result<(), Skip> {
    // The lower half is the thread id, which is what mark_victim names.
    let pid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: only the presence of the entry is used.
    if unsafe { OOM_VICTIMS.get(&pid) }.is_none() {
        return Ok(());
    }
    let _ = OOM_VICTIMS.remove(&pid);
    let counts = slot(ctx, OOM, current_cgroup())?;
    // SAFETY: this CPU's slot of a per-CPU map value.
    unsafe { (*counts).kills += 1 };
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
