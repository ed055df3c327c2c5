//! Raw counters per cgroup per tick, from the kernel's own bookkeeping and from eBPF maps.

pub mod cgroup;
pub mod ebpf;
pub mod kept_file;
pub mod netns;
pub mod syscalls;
