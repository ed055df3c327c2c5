//! USE features per container per window: rates, shares of limits, pressure and error
//! ratios, plus load-normalised ratios, because replicas behind one Service rarely get
//! exactly the same load. A signal this host cannot give is missing (`None`), never zero.

mod catalog;

use std::{collections::HashMap, time::Duration};

pub use catalog::{FEATURES, Feature, absolute_floors, names};

use crate::{
    collect::{cgroup::CgroupCounters, netns::NetCounters, syscalls::SyscallSample},
    detect::DetectConfig,
    discovery::containers::ContainerTable,
};

/// The detector's configuration for frames with these features: the defaults, with the
/// absolute floor of every feature the catalog knows.
pub fn detect_config(features: &[String]) -> DetectConfig {
    let mut floors = absolute_floors();
    floors.retain(|name, _| features.contains(name));
    DetectConfig {
        absolute_floors: floors,
        ..DetectConfig::default()
    }
}

/// What the node offers a container without limits.
#[derive(Clone, Copy, Debug)]
pub struct NodeCapacity {
    pub cores: f64,
    pub memory_bytes: f64,
}

impl NodeCapacity {
    /// This machine's online CPUs and physical memory.
    pub fn of_this_host() -> Self {
        // SAFETY: sysconf has no preconditions.
        let (cpus, pages, page_size) = unsafe {
            (
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Self {
            cores: cpus.max(1) as f64,
            memory_bytes: (pages.max(1) as f64) * (page_size.max(1) as f64),
        }
    }
}

/// The raw readings of one window.
pub struct WindowInput<'a> {
    pub elapsed: Duration,
    pub cgroups: &'a HashMap<String, CgroupCounters>,
    pub net: &'a HashMap<String, NetCounters>,
    /// Syscall deltas by cgroup id; `None` when eBPF is not available.
    pub syscalls: Option<&'a SyscallSample>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    cgroup: CgroupCounters,
    net: Option<NetCounters>,
}

/// Turns successive readings into feature vectors, remembering one reading per container.
#[derive(Debug)]
pub struct FeatureBuilder {
    capacity: NodeCapacity,
    previous: HashMap<String, Totals>,
}

impl FeatureBuilder {
    pub fn new(capacity: NodeCapacity) -> Self {
        Self {
            capacity,
            previous: HashMap::new(),
        }
    }

    /// How many containers the builder keeps a previous reading for.
    pub fn tracked(&self) -> usize {
        self.previous.len()
    }

    /// One feature vector (in [`FEATURES`] order) per container of the table that has
    /// cgroup readings. Rates need two readings: a container's first window has gauges only.
    pub fn window(
        &mut self,
        table: &ContainerTable,
        input: &WindowInput<'_>,
    ) -> Vec<(String, Vec<Option<f64>>)> {
        let secs = input.elapsed.as_secs_f64();
        let mut out = Vec::with_capacity(input.cgroups.len());
        let mut next = HashMap::with_capacity(input.cgroups.len());
        for container in table.containers() {
            let Some(cgroup) = input.cgroups.get(&container.id) else {
                continue;
            };
            let now = Totals {
                cgroup: *cgroup,
                net: input.net.get(&container.id).copied(),
            };
            let before = self.previous.get(&container.id);
            let syscalls = input.syscalls.map(|sample| {
                sample
                    .cgroup(container.cgroup_id)
                    .map_or((0, 0), |row| (row.calls, row.failed))
            });
            let values = compute(&self.capacity, secs, &now, before, syscalls);
            next.insert(container.id.clone(), now);
            out.push((container.id.clone(), values));
        }
        // Containers that went away take their readings with them.
        self.previous = next;
        out
    }
}

/// The increase of a total over the window, or `None` when either reading is missing or
/// the total went down (the counter was reset).
fn delta(now: Option<u64>, before: Option<u64>) -> Option<f64> {
    let (now, before) = (now?, before?);
    (now >= before).then(|| (now - before) as f64)
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    let denominator = denominator.filter(|d| *d > 0.0)?;
    Some(numerator? / denominator)
}

fn compute(
    capacity: &NodeCapacity,
    secs: f64,
    now: &Totals,
    before: Option<&Totals>,
    syscalls: Option<(u64, u64)>,
) -> Vec<Option<f64>> {
    let c = &now.cgroup;
    let b = before.map(|t| t.cgroup);
    let per_s = |now: Option<u64>, before: Option<u64>| {
        if secs > 0.0 {
            delta(now, before).map(|d| d / secs)
        } else {
            None
        }
    };
    let pick = |f: fn(&CgroupCounters) -> Option<u64>| (f(c), b.as_ref().and_then(f));

    let cpu_cores = {
        let (n, p) = pick(|c| c.cpu_usage_ns);
        per_s(n, p).map(|ns| ns / 1e9)
    };
    let limit_cores = match (c.cpu_quota_us, c.cpu_period_us) {
        (Some(quota), Some(period)) if period > 0 => quota as f64 / period as f64,
        _ => capacity.cores,
    };
    let throttled_share = {
        let (n, p) = pick(|c| c.cpu_throttled_periods);
        let (pn, pp) = pick(|c| c.cpu_periods);
        let periods = delta(pn, pp);
        match periods {
            Some(0.0) => delta(n, p).map(|_| 0.0),
            _ => ratio(delta(n, p), periods),
        }
    };
    let pressure = |f: fn(&CgroupCounters) -> Option<u64>| {
        let (n, p) = pick(f);
        per_s(n, p).map(|us| us / 1e6)
    };
    let working_set = c
        .memory_usage_bytes
        .map(|usage| usage.saturating_sub(c.memory_inactive_file_bytes.unwrap_or(0)) as f64);
    let memory_limit = c
        .memory_limit_bytes
        .map(|l| l as f64)
        .unwrap_or(capacity.memory_bytes);
    let rate = |f: fn(&CgroupCounters) -> Option<u64>| {
        let (n, p) = pick(f);
        per_s(n, p)
    };
    let count = |f: fn(&CgroupCounters) -> Option<u64>| {
        let (n, p) = pick(f);
        delta(n, p)
    };
    let disk_ops = match (rate(|c| c.io_read_ops), rate(|c| c.io_write_ops)) {
        (Some(r), Some(w)) => Some(r + w),
        _ => None,
    };

    let net_rate = |f: fn(&NetCounters) -> u64| {
        let n = now.net.as_ref().map(f);
        let p = before.and_then(|t| t.net.as_ref()).map(f);
        per_s(n, p)
    };
    let packets = match (net_rate(|n| n.rx_packets), net_rate(|n| n.tx_packets)) {
        (Some(r), Some(t)) => Some(r + t),
        _ => None,
    };
    let drops = match (net_rate(|n| n.rx_drops), net_rate(|n| n.tx_drops)) {
        (Some(r), Some(t)) => Some(r + t),
        _ => None,
    };
    let resets = match (
        net_rate(|n| n.tcp_resets_sent),
        net_rate(|n| n.tcp_established_resets),
    ) {
        (Some(r), Some(e)) => Some(r + e),
        _ => None,
    };

    let (calls, failed) = match syscalls {
        Some((calls, failed)) if secs > 0.0 => (Some(calls as f64 / secs), Some(failed as f64)),
        _ => (None, None),
    };
    let call_count = syscalls.map(|(calls, _)| calls as f64);

    let mut values = vec![None; FEATURES.len()];
    let mut set = |feature: Feature, value: Option<f64>| {
        values[feature as usize] = value.filter(|v| v.is_finite());
    };
    set(Feature::CpuUsageCores, cpu_cores);
    set(
        Feature::CpuUtilization,
        cpu_cores.map(|cores| cores / limit_cores),
    );
    set(Feature::CpuThrottledShare, throttled_share);
    set(Feature::CpuPressure, pressure(|c| c.cpu_pressure_some_us));
    set(Feature::MemoryWorkingSet, working_set);
    set(
        Feature::MemoryUtilization,
        working_set.map(|ws| ws / memory_limit),
    );
    set(
        Feature::MemoryPressure,
        pressure(|c| c.memory_pressure_some_us),
    );
    set(Feature::MemoryLimitHitsPerS, rate(|c| c.memory_limit_hits));
    set(Feature::MajorFaultsPerS, rate(|c| c.major_faults));
    set(Feature::OomKills, count(|c| c.oom_kills));
    set(Feature::DiskReadBytesPerS, rate(|c| c.io_read_bytes));
    set(Feature::DiskWriteBytesPerS, rate(|c| c.io_write_bytes));
    set(Feature::DiskOpsPerS, disk_ops);
    set(Feature::IoPressure, pressure(|c| c.io_pressure_some_us));
    set(Feature::NetRxBytesPerS, net_rate(|n| n.rx_bytes));
    set(Feature::NetTxBytesPerS, net_rate(|n| n.tx_bytes));
    set(Feature::NetPacketsPerS, packets);
    set(Feature::NetDropsPerS, drops);
    set(Feature::TcpRetransmitsPerS, net_rate(|n| n.tcp_retransmits));
    set(Feature::TcpResetsPerS, resets);
    set(
        Feature::TcpFailedConnectsPerS,
        net_rate(|n| n.tcp_failed_connects),
    );
    set(
        Feature::TcpListenOverflowsPerS,
        net_rate(|n| n.tcp_listen_overflows),
    );
    set(Feature::SyscallsPerS, calls);
    set(Feature::SyscallFailureRatio, ratio(failed, call_count));
    set(Feature::PidsCurrent, c.pids_current.map(|p| p as f64));
    set(
        Feature::PidsUtilization,
        ratio(
            c.pids_current.map(|p| p as f64),
            c.pids_max.map(|m| m as f64),
        ),
    );
    set(Feature::ForkFailuresPerS, rate(|c| c.fork_failures));
    set(
        Feature::CpuMsPerKiloPacket,
        ratio(cpu_cores.map(|cores| cores * 1e6), packets),
    );
    set(Feature::SyscallsPerCpuSecond, ratio(calls, cpu_cores));
    values
}

#[cfg(test)]
mod tests;
