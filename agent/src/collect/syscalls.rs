//! Syscalls per cgroup during one interval, in the shape the log table shows them.

use std::{path::PathBuf, time::Duration};

/// Syscalls that returned in one cgroup during one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupSyscalls {
    /// The cgroup id (inode of the cgroup2 directory).
    pub cgroup_id: u64,
    /// Path below the cgroup2 mount; `/` is the root cgroup.
    pub path: PathBuf,
    pub calls: u64,
    pub failed: u64,
}

impl CgroupSyscalls {
    pub fn calls_per_second(&self, interval: Duration) -> f64 {
        per_second(self.calls, interval)
    }

    pub fn failed_per_second(&self, interval: Duration) -> f64 {
        per_second(self.failed, interval)
    }
}

fn per_second(count: u64, interval: Duration) -> f64 {
    let secs = interval.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// One reading of every cgroup that made syscalls.
#[derive(Clone, Debug)]
pub struct SyscallSample {
    /// Time since the previous reading (or since the sampler was made).
    pub interval: Duration,
    pub cgroups: Vec<CgroupSyscalls>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_of_the_interval() {
        let row = CgroupSyscalls {
            cgroup_id: 1,
            path: PathBuf::from("/"),
            calls: 500,
            failed: 50,
        };
        let interval = Duration::from_millis(2500);
        assert_eq!(row.calls_per_second(interval), 200.0);
        assert_eq!(row.failed_per_second(interval), 20.0);
        assert_eq!(row.calls_per_second(Duration::ZERO), 0.0);
    }
}
