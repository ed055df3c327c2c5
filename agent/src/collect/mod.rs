//! Raw counters per cgroup per tick, from the kernel's own bookkeeping and from eBPF maps.

pub mod ebpf;
pub mod syscalls;
