//! The features, in the order of every feature vector, with the absolute floor under each
//! one's spread: below it, differences between peers are noise, whatever the median.

use std::collections::HashMap;

/// Every feature the agent computes. The names (snake case) are the CSV column names of
/// recorded frames and, with spaces, the words of findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    CpuUsageCores,
    CpuUtilization,
    CpuThrottledShare,
    CpuPressure,
    CpuRunqueueWaitMs,
    CpuLongWaitShare,
    MemoryWorkingSet,
    MemoryUtilization,
    MemoryPressure,
    MemoryLimitHitsPerS,
    MajorFaultsPerS,
    OomKills,
    DiskReadBytesPerS,
    DiskWriteBytesPerS,
    DiskOpsPerS,
    DiskLatencyMs,
    DiskFailuresPerS,
    IoPressure,
    NetRxBytesPerS,
    NetTxBytesPerS,
    NetPacketsPerS,
    NetDropsPerS,
    TcpRetransmitsPerS,
    TcpResetsPerS,
    TcpFailedConnectsPerS,
    TcpListenOverflowsPerS,
    SocketRxBytesPerS,
    SocketTxBytesPerS,
    SyscallsPerS,
    SyscallFailureRatio,
    SyscallFailuresPerS,
    PidsCurrent,
    PidsUtilization,
    ForkFailuresPerS,
    CpuMsPerKiloPacket,
    SyscallsPerCpuSecond,
}

/// (feature, name, absolute floor), in vector order.
pub const FEATURES: &[(Feature, &str, f64)] = &[
    (Feature::CpuUsageCores, "cpu_usage_cores", 0.02),
    (Feature::CpuUtilization, "cpu_utilization", 0.02),
    (Feature::CpuThrottledShare, "cpu_throttled_share", 0.02),
    (Feature::CpuPressure, "cpu_pressure", 0.02),
    (Feature::CpuRunqueueWaitMs, "cpu_runqueue_wait_ms", 0.5),
    (Feature::CpuLongWaitShare, "cpu_long_wait_share", 0.02),
    (
        Feature::MemoryWorkingSet,
        "memory_working_set",
        4.0 * 1024.0 * 1024.0,
    ),
    (Feature::MemoryUtilization, "memory_utilization", 0.02),
    (Feature::MemoryPressure, "memory_pressure", 0.02),
    (Feature::MemoryLimitHitsPerS, "memory_limit_hits_per_s", 0.5),
    (Feature::MajorFaultsPerS, "major_faults_per_s", 5.0),
    (Feature::OomKills, "oom_kills", 0.5),
    (
        Feature::DiskReadBytesPerS,
        "disk_read_bytes_per_s",
        256.0 * 1024.0,
    ),
    (
        Feature::DiskWriteBytesPerS,
        "disk_write_bytes_per_s",
        256.0 * 1024.0,
    ),
    (Feature::DiskOpsPerS, "disk_ops_per_s", 10.0),
    (Feature::DiskLatencyMs, "disk_latency_ms", 1.0),
    (Feature::DiskFailuresPerS, "disk_failures_per_s", 0.5),
    (Feature::IoPressure, "io_pressure", 0.02),
    (Feature::NetRxBytesPerS, "net_rx_bytes_per_s", 32.0 * 1024.0),
    (Feature::NetTxBytesPerS, "net_tx_bytes_per_s", 32.0 * 1024.0),
    (Feature::NetPacketsPerS, "net_packets_per_s", 20.0),
    (Feature::NetDropsPerS, "net_drops_per_s", 1.0),
    (Feature::TcpRetransmitsPerS, "tcp_retransmits_per_s", 1.0),
    (Feature::TcpResetsPerS, "tcp_resets_per_s", 1.0),
    (
        Feature::TcpFailedConnectsPerS,
        "tcp_failed_connects_per_s",
        1.0,
    ),
    (
        Feature::TcpListenOverflowsPerS,
        "tcp_listen_overflows_per_s",
        1.0,
    ),
    (
        Feature::SocketRxBytesPerS,
        "socket_rx_bytes_per_s",
        32.0 * 1024.0,
    ),
    (
        Feature::SocketTxBytesPerS,
        "socket_tx_bytes_per_s",
        32.0 * 1024.0,
    ),
    (Feature::SyscallsPerS, "syscalls_per_s", 200.0),
    (Feature::SyscallFailureRatio, "syscall_failure_ratio", 0.02),
    (Feature::SyscallFailuresPerS, "syscall_failures_per_s", 2.0),
    (Feature::PidsCurrent, "pids_current", 2.0),
    (Feature::PidsUtilization, "pids_utilization", 0.05),
    (Feature::ForkFailuresPerS, "fork_failures_per_s", 0.5),
    (Feature::CpuMsPerKiloPacket, "cpu_ms_per_kilo_packet", 5.0),
    (
        Feature::SyscallsPerCpuSecond,
        "syscalls_per_cpu_second",
        5000.0,
    ),
];

/// The feature names in vector order.
pub fn names() -> Vec<String> {
    FEATURES
        .iter()
        .map(|(_, name, _)| (*name).to_owned())
        .collect()
}

/// The absolute floors by name, for the detector's configuration.
pub fn absolute_floors() -> HashMap<String, f64> {
    FEATURES
        .iter()
        .map(|(_, name, floor)| ((*name).to_owned(), *floor))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_enum_order() {
        for (index, (feature, name, floor)) in FEATURES.iter().enumerate() {
            assert_eq!(*feature as usize, index, "{name} is out of place");
            assert!(*floor > 0.0, "{name} needs a floor");
        }
    }
}
