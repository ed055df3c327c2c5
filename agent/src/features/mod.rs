//! USE features per container per window: rates, shares of limits, pressure and error
//! ratios, plus load-normalised ratios, because replicas behind one Service rarely get
//! exactly the same load. A signal this host cannot give is missing (`None`), never zero.

mod catalog;

use std::{collections::HashMap, time::Duration};

pub use catalog::{FEATURES, Feature, names};

use crate::{
    collect::{
        block,
        cgroup::CgroupCounters,
        ebpf::Signal,
        netns::NetCounters,
        sched,
        signals::{CgroupSignals, SignalSample},
    },
    detect::DetectConfig,
    discovery::containers::ContainerTable,
};

/// The detector's configuration for frames with these features: the defaults, with the
/// absolute floor of every feature `herd_detect::floors` knows, the aggregator's too.
pub fn detect_config(features: &[String]) -> DetectConfig {
    DetectConfig {
        absolute_floors: crate::detect::floors::floors_for(features),
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
    /// What the eBPF programs counted, by cgroup id; `None` when eBPF is not available.
    pub ebpf: Option<&'a SignalSample>,
    /// The eBPF signals that are loaded: for these a cgroup without a row counted zero,
    /// for the others the features are missing.
    pub loaded: &'a [Signal],
}

/// One reading of a container's cumulative counters.
#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    cgroup: CgroupCounters,
    net: Option<NetCounters>,
}

/// Turns successive readings into feature vectors, remembering one reading per container.
#[derive(Debug)]
pub struct FeatureBuilder {
    capacity: NodeCapacity,
    previous: HashMap<String, Reading>,
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
            let now = Reading {
                cgroup: *cgroup,
                net: input.net.get(&container.id).copied(),
            };
            let before = self.previous.get(&container.id);
            let ebpf = input.ebpf.map(|sample| Ebpf {
                row: sample
                    .cgroup(container.cgroup_id)
                    .cloned()
                    .unwrap_or_default(),
                loaded: input.loaded,
            });
            let values = compute(&self.capacity, secs, &now, before, ebpf.as_ref());
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

/// Packets a second under which CPU per packet is not computed.
const MIN_PACKETS_PER_S: f64 = 1.0;

/// One container's eBPF counts for the window, and which signals were counting.
struct Ebpf<'a> {
    row: CgroupSignals,
    loaded: &'a [Signal],
}

impl Ebpf<'_> {
    fn has(&self, signal: Signal) -> bool {
        self.loaded.contains(&signal)
    }
}

fn compute(
    capacity: &NodeCapacity,
    secs: f64,
    now: &Reading,
    before: Option<&Reading>,
    ebpf: Option<&Ebpf<'_>>,
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

    // eBPF signals: a rate where the signal is loaded, missing where it is not.
    let counted = |signal: Signal| ebpf.filter(|e| e.has(signal) && secs > 0.0).map(|e| &e.row);
    let syscalls = counted(Signal::Syscalls).map(|row| row.syscalls.counts);
    let calls = syscalls.map(|c| c.calls as f64 / secs);
    let failure_ratio = syscalls.and_then(|c| ratio(Some(c.failed as f64), Some(c.calls as f64)));
    let blocks = counted(Signal::Block).map(|row| block::total(&row.block));
    let sched = counted(Signal::Sched).map(|row| row.sched);
    let sockets = counted(Signal::Network).map(|row| row.net);
    let oom_kills =
        count(|c| c.oom_kills).or_else(|| counted(Signal::Oom).map(|row| row.oom.kills as f64));
    // Block IO from eBPF where it is loaded (charged to the submitter), else the blkio
    // counters (which stay zero on v1 until a throttle rule was set on the device).
    let disk_read = match counted(Signal::Block) {
        Some(row) => Some(row.block.read.bytes as f64 / secs),
        None => rate(|c| c.io_read_bytes),
    };
    let disk_write = match counted(Signal::Block) {
        Some(row) => Some(row.block.write.bytes as f64 / secs),
        None => rate(|c| c.io_write_bytes),
    };
    let disk_ops = blocks.map(|b| b.ops as f64 / secs).or(disk_ops);

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
    set(
        Feature::CpuRunqueueWaitMs,
        sched
            .and_then(|s| sched::mean_wait(&s))
            .map(|d| d.as_secs_f64() * 1e3),
    );
    set(
        Feature::CpuLongWaitShare,
        sched.and_then(|s| sched::long_wait_share(&s)),
    );
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
    set(Feature::OomKillsPerWindow, oom_kills);
    set(Feature::DiskReadBytesPerS, disk_read);
    set(Feature::DiskWriteBytesPerS, disk_write);
    set(Feature::DiskOpsPerS, disk_ops);
    set(
        Feature::DiskLatencyMs,
        blocks
            .and_then(|b| block::mean_latency(&b))
            .map(|d| d.as_secs_f64() * 1e3),
    );
    set(
        Feature::DiskFailuresPerS,
        blocks.map(|b| b.failed as f64 / secs),
    );
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
    set(
        Feature::SocketRxBytesPerS,
        sockets.map(|n| n.rx_bytes as f64 / secs),
    );
    set(
        Feature::SocketTxBytesPerS,
        sockets.map(|n| n.tx_bytes as f64 / secs),
    );
    set(Feature::SyscallsPerS, calls);
    set(Feature::SyscallFailureRatio, failure_ratio);
    set(
        Feature::SyscallFailuresPerS,
        syscalls.map(|c| c.failed as f64 / secs),
    );
    set(Feature::PidsCurrent, c.pids_current.map(|p| p as f64));
    set(
        Feature::PidsUtilization,
        ratio(
            c.pids_current.map(|p| p as f64),
            c.pids_max.map(|m| m as f64),
        ),
    );
    set(Feature::ForkFailuresPerS, rate(|c| c.fork_failures));
    // A ratio over a trickle of packets is noise: below one packet a second it is missing.
    set(
        Feature::CpuMsPerKiloPacket,
        ratio(
            cpu_cores.map(|cores| cores * 1e6),
            packets.filter(|p| *p >= MIN_PACKETS_PER_S),
        ),
    );
    set(Feature::SyscallsPerCpuSecond, ratio(calls, cpu_cores));
    values
}

#[cfg(test)]
mod tests;
