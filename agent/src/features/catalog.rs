//! The features, in the order of every feature vector. The absolute floor under each one's
//! spread lives in `herd_detect::floors`, by name, so that the aggregator has it too.

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
    OomKillsPerWindow,
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

/// (feature, name), in vector order. Each one's floor is in
/// [`herd_detect::floors`], keyed by this name, where the aggregator finds it too.
pub const FEATURES: &[(Feature, &str)] = &[
    (Feature::CpuUsageCores, "cpu_usage_cores"),
    (Feature::CpuUtilization, "cpu_utilization"),
    (Feature::CpuThrottledShare, "cpu_throttled_share"),
    (Feature::CpuPressure, "cpu_pressure"),
    (Feature::CpuRunqueueWaitMs, "cpu_runqueue_wait_ms"),
    (Feature::CpuLongWaitShare, "cpu_long_wait_share"),
    (Feature::MemoryWorkingSet, "memory_working_set"),
    (Feature::MemoryUtilization, "memory_utilization"),
    (Feature::MemoryPressure, "memory_pressure"),
    (Feature::MemoryLimitHitsPerS, "memory_limit_hits_per_s"),
    (Feature::MajorFaultsPerS, "major_faults_per_s"),
    (Feature::OomKillsPerWindow, "oom_kills_per_window"),
    (Feature::DiskReadBytesPerS, "disk_read_bytes_per_s"),
    (Feature::DiskWriteBytesPerS, "disk_write_bytes_per_s"),
    (Feature::DiskOpsPerS, "disk_ops_per_s"),
    (Feature::DiskLatencyMs, "disk_latency_ms"),
    (Feature::DiskFailuresPerS, "disk_failures_per_s"),
    (Feature::IoPressure, "io_pressure"),
    (Feature::NetRxBytesPerS, "net_rx_bytes_per_s"),
    (Feature::NetTxBytesPerS, "net_tx_bytes_per_s"),
    (Feature::NetPacketsPerS, "net_packets_per_s"),
    (Feature::NetDropsPerS, "net_drops_per_s"),
    (Feature::TcpRetransmitsPerS, "tcp_retransmits_per_s"),
    (Feature::TcpResetsPerS, "tcp_resets_per_s"),
    (Feature::TcpFailedConnectsPerS, "tcp_failed_connects_per_s"),
    (
        Feature::TcpListenOverflowsPerS,
        "tcp_listen_overflows_per_s",
    ),
    (Feature::SocketRxBytesPerS, "socket_rx_bytes_per_s"),
    (Feature::SocketTxBytesPerS, "socket_tx_bytes_per_s"),
    (Feature::SyscallsPerS, "syscalls_per_s"),
    (Feature::SyscallFailureRatio, "syscall_failure_ratio"),
    (Feature::SyscallFailuresPerS, "syscall_failures_per_s"),
    (Feature::PidsCurrent, "pids_current"),
    (Feature::PidsUtilization, "pids_utilization"),
    (Feature::ForkFailuresPerS, "fork_failures_per_s"),
    (Feature::CpuMsPerKiloPacket, "cpu_ms_per_kilo_packet"),
    (Feature::SyscallsPerCpuSecond, "syscalls_per_cpu_second"),
];

/// The feature names in vector order.
pub fn names() -> Vec<String> {
    FEATURES
        .iter()
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_enum_order() {
        for (index, (feature, name)) in FEATURES.iter().enumerate() {
            assert_eq!(*feature as usize, index, "{name} is out of place");
        }
    }

    #[test]
    fn every_feature_has_its_floor_in_the_detector_in_vector_order() {
        let floors: Vec<&str> = herd_detect::floors::FEATURE_FLOORS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let ours: Vec<&str> = FEATURES.iter().map(|(_, name)| *name).collect();
        assert_eq!(
            ours, floors,
            "herd_detect::floors::FEATURE_FLOORS must name every feature of the catalog, \
             in its order"
        );
    }

    #[test]
    fn the_aggregator_judges_with_the_agents_floors() {
        let agent = super::super::detect_config(&names()).absolute_floors;
        let aggregator = herd_aggregator::AggregatorConfig::default()
            .detect
            .absolute_floors;
        for name in names() {
            assert!(
                aggregator.contains_key(&name),
                "the aggregator's configuration has no floor for {name}"
            );
            assert_eq!(aggregator[&name], agent[&name], "{name}");
        }
    }
}
