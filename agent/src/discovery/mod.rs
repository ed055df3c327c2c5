//! Who is who on the node. For now: which cgroup2 directory a cgroup id names.

pub mod cgroup2;
