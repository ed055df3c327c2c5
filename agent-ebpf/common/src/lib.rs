//! Types shared by the eBPF programs in `herd-agent-ebpf` and the agent that reads their
//! maps. Everything here is `#[repr(C)]`, `Copy` and made of fixed-width fields, so that both
//! sides agree on the layout byte for byte.
#![no_std]

/// Name of the per-CPU hash map that holds [`SyscallCounts`] keyed by cgroup id.
pub const SYSCALL_COUNTS_MAP: &str = "SYSCALL_COUNTS";

/// Name of the raw-tracepoint program that counts syscall exits.
pub const SYSCALL_EXIT_PROGRAM: &str = "herd_sys_exit";

/// How many cgroups the syscall map can hold. A node runs a few hundred containers at most;
/// the rest of the room is for host services and cgroups that vanish between two reads.
pub const MAX_CGROUPS: u32 = 16_384;

/// Syscalls that returned in one cgroup, on one CPU, since the map entry was created.
///
/// The key is the cgroup id: the inode number of the task's cgroup2 directory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallCounts {
    /// Syscalls that returned.
    pub calls: u64,
    /// Syscalls that returned a negative value (an error).
    pub failed: u64,
}

// A layout change must be made on both sides at once.
const _: () = assert!(core::mem::size_of::<SyscallCounts>() == 16);

#[cfg(feature = "user")]
// SAFETY: `SyscallCounts` is `repr(C)`, `Copy`, and made only of integers, so every byte
// pattern is a valid value and it has no padding.
unsafe impl aya::Pod for SyscallCounts {}
