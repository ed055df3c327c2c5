//! Who is who on the node: which cgroup a cgroup id names, which cgroups are containers, and
//! which containers are peers.

pub mod cgroup2;
pub mod cgroup_path;
pub mod containers;
pub mod domain;
pub mod poller;
pub mod runtime;
