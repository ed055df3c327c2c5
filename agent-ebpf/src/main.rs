//! Herd's eBPF programs. Each program is a thin entry point around a `try_` body; everything
//! is aggregated in the kernel in per-CPU maps keyed by cgroup id, so user space reads a few
//! counters per cgroup per tick instead of a stream of events.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_get_current_cgroup_id,
    macros::{map, raw_tracepoint},
    maps::PerCpuHashMap,
    programs::RawTracePointContext,
};
use herd_agent_common::{MAX_CGROUPS, SyscallCounts};

#[map(name = "SYSCALL_COUNTS")]
static SYSCALL_COUNTS: PerCpuHashMap<u64, SyscallCounts> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Counts every syscall that returns, and those that fail, per cgroup.
///
/// Only the exit is traced: it carries both the call and its result, so one program does the
/// work of two. `exit` and `exit_group` never return and are not counted.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn herd_sys_exit(ctx: RawTracePointContext) -> i32 {
    match try_herd_sys_exit(&ctx) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn try_herd_sys_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    // TP_PROTO(struct pt_regs *regs, long ret)
    let ret: i64 = ctx.arg(1);
    let failed = u64::from(ret < 0);
    // SAFETY: the helper takes no arguments and is allowed in tracing programs.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if let Some(counts) = SYSCALL_COUNTS.get_ptr_mut(cgroup_id) {
        add(counts, failed);
        return Ok(());
    }
    let first = SYSCALL_COUNTS.insert(
        cgroup_id,
        SyscallCounts { calls: 1, failed },
        u64::from(BPF_NOEXIST),
    );
    if first.is_err() {
        // Another CPU created the entry between the lookup and the insert: count on this
        // CPU's slot of it.
        let counts = SYSCALL_COUNTS.get_ptr_mut(cgroup_id).ok_or(-1i64)?;
        add(counts, failed);
    }
    Ok(())
}

#[inline(always)]
fn add(counts: *mut SyscallCounts, failed: u64) {
    // SAFETY: `counts` is this CPU's slot of a per-CPU map value, so nothing else writes it
    // while this program runs on this CPU.
    unsafe {
        (*counts).calls += 1;
        (*counts).failed += failed;
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
