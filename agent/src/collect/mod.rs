//! Raw counters per cgroup per tick, from the kernel's own bookkeeping and from eBPF maps.

pub mod block;
pub mod cgroup;
pub mod counters;
pub mod ebpf;
pub mod ebpf_log;
pub mod errno;
pub mod kept_file;
pub mod map_full;
pub mod net;
pub mod netns;
pub mod oom;
pub mod sched;
pub mod signals;
pub mod syscall_slots;
pub mod syscalls;
