use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use herd_agent_common::{BlockDirection, NetCounts, SchedCounts, SyscallCounts, SyscallStats};

use super::*;
use crate::discovery::{containers::ContainerTable, domain::LabelOwners};

const ID: &str = "abababababababababababababababababababababababababababababababab";
const CGROUP_ID: u64 = 77;

fn table() -> (tempfile::TempDir, ContainerTable) {
    let dir = tempfile::tempdir().unwrap();
    let mut table = ContainerTable::new(dir.path(), dir.path(), Duration::ZERO);
    let path = format!("/docker/{ID}");
    table.update(
        [(CGROUP_ID, Path::new(&path))],
        None,
        &LabelOwners,
        SystemTime::now(),
    );
    (dir, table)
}

const NODE: NodeCapacity = NodeCapacity {
    cores: 2.0,
    memory_bytes: 8.0 * 1024.0 * 1024.0 * 1024.0,
};

fn reading(cpu_s: u64, throttled: u64, periods: u64) -> CgroupCounters {
    CgroupCounters {
        cpu_usage_ns: Some(cpu_s * 1_000_000_000),
        cpu_periods: Some(periods),
        cpu_throttled_periods: Some(throttled),
        cpu_quota_us: Some(50_000),
        cpu_period_us: Some(100_000),
        memory_usage_bytes: Some(300 << 20),
        memory_inactive_file_bytes: Some(100 << 20),
        memory_limit_bytes: Some(400 << 20),
        ..CgroupCounters::default()
    }
}

fn get(values: &[Option<f64>], feature: Feature) -> Option<f64> {
    values[feature as usize]
}

fn window(
    builder: &mut FeatureBuilder,
    table: &ContainerTable,
    counters: CgroupCounters,
    ebpf: Option<&SignalSample>,
) -> Vec<Option<f64>> {
    let cgroups = HashMap::from([(ID.to_owned(), counters)]);
    let net = HashMap::new();
    let input = WindowInput {
        elapsed: Duration::from_secs(10),
        cgroups: &cgroups,
        net: &net,
        ebpf,
        loaded: &Signal::ALL,
    };
    let mut out = builder.window(table, &input);
    assert_eq!(out.len(), 1);
    out.remove(0).1
}

#[test]
fn the_first_window_has_gauges_and_no_rates() {
    let (_dir, table) = table();
    let mut builder = FeatureBuilder::new(NODE);
    let v = window(&mut builder, &table, reading(100, 0, 0), None);
    assert_eq!(get(&v, Feature::CpuUsageCores), None);
    assert_eq!(get(&v, Feature::MemoryWorkingSet), Some((200 << 20) as f64));
    assert_eq!(get(&v, Feature::MemoryUtilization), Some(0.5));
}

#[test]
fn cpu_against_its_quota_and_throttling_as_a_share_of_periods() {
    let (_dir, table) = table();
    let mut builder = FeatureBuilder::new(NODE);
    window(&mut builder, &table, reading(100, 10, 100), None);
    // 4 CPU seconds in 10 s with a quota of half a core.
    let v = window(&mut builder, &table, reading(104, 60, 200), None);
    assert_eq!(get(&v, Feature::CpuUsageCores), Some(0.4));
    assert_eq!(get(&v, Feature::CpuUtilization), Some(0.8));
    assert_eq!(get(&v, Feature::CpuThrottledShare), Some(0.5));
}

#[test]
fn missing_sources_are_missing_not_zero() {
    let (_dir, table) = table();
    let mut builder = FeatureBuilder::new(NODE);
    window(&mut builder, &table, reading(100, 0, 0), None);
    let v = window(&mut builder, &table, reading(101, 0, 0), None);
    assert_eq!(
        get(&v, Feature::SyscallsPerS),
        None,
        "no eBPF, no syscall feature"
    );
    assert_eq!(get(&v, Feature::NetRxBytesPerS), None, "no namespace read");
    assert_eq!(get(&v, Feature::DiskReadBytesPerS), None, "no blkio file");
    assert_eq!(get(&v, Feature::PidsUtilization), None);
}

fn ebpf_sample(row: CgroupSignals) -> SignalSample {
    SignalSample {
        interval: Duration::from_secs(10),
        cgroups: vec![row],
    }
}

#[test]
fn syscalls_and_their_failure_ratio_per_container() {
    let (_dir, table) = table();
    let mut builder = FeatureBuilder::new(NODE);
    let sample = ebpf_sample(CgroupSignals {
        cgroup_id: CGROUP_ID,
        syscalls: SyscallStats {
            counts: SyscallCounts {
                calls: 50_000,
                failed: 5_000,
            },
            ..SyscallStats::default()
        },
        ..CgroupSignals::default()
    });
    window(&mut builder, &table, reading(100, 0, 0), Some(&sample));
    let v = window(&mut builder, &table, reading(102, 0, 0), Some(&sample));
    assert_eq!(get(&v, Feature::SyscallsPerS), Some(5000.0));
    assert_eq!(get(&v, Feature::SyscallFailureRatio), Some(0.1));
    assert_eq!(get(&v, Feature::SyscallFailuresPerS), Some(500.0));
    assert_eq!(get(&v, Feature::SyscallsPerCpuSecond), Some(25_000.0));

    let quiet = SignalSample {
        interval: Duration::from_secs(10),
        cgroups: Vec::new(),
    };
    let v = window(&mut builder, &table, reading(103, 0, 0), Some(&quiet));
    assert_eq!(
        get(&v, Feature::SyscallsPerS),
        Some(0.0),
        "eBPF on, no calls: zero"
    );
    assert_eq!(
        get(&v, Feature::SyscallFailureRatio),
        None,
        "no calls, no ratio"
    );
    assert_eq!(get(&v, Feature::SocketTxBytesPerS), Some(0.0));
}

#[test]
fn block_io_network_and_run_queue_from_ebpf() {
    let (_dir, table) = table();
    let mut builder = FeatureBuilder::new(NODE);
    let io = |ops, bytes| BlockDirection {
        ops,
        bytes,
        completed: ops,
        latency_ns: ops * 2_000_000,
        failed: 0,
    };
    let sample = ebpf_sample(CgroupSignals {
        cgroup_id: CGROUP_ID,
        block: herd_agent_common::BlockCounts {
            read: io(100, 1 << 20),
            write: io(300, 3 << 20),
            ..Default::default()
        },
        net: NetCounts {
            rx_bytes: 100_000,
            tx_bytes: 200_000,
            ..NetCounts::default()
        },
        sched: SchedCounts {
            waits: 1000,
            wait_ns: 3_000_000_000,
            long_waits: 100,
        },
        ..CgroupSignals::default()
    });
    let v = window(&mut builder, &table, reading(100, 0, 0), Some(&sample));
    assert_eq!(
        get(&v, Feature::DiskWriteBytesPerS),
        Some((3 << 20) as f64 / 10.0)
    );
    assert_eq!(get(&v, Feature::DiskOpsPerS), Some(40.0));
    assert_eq!(get(&v, Feature::DiskLatencyMs), Some(2.0));
    assert_eq!(get(&v, Feature::SocketRxBytesPerS), Some(10_000.0));
    assert_eq!(get(&v, Feature::CpuRunqueueWaitMs), Some(3.0));
    assert_eq!(get(&v, Feature::CpuLongWaitShare), Some(0.1));
}

#[test]
fn signals_that_did_not_load_are_missing() {
    let (_dir, table) = table();
    let mut builder = FeatureBuilder::new(NODE);
    let cgroups = HashMap::from([(ID.to_owned(), reading(100, 0, 0))]);
    let net = HashMap::new();
    let sample = SignalSample {
        interval: Duration::from_secs(10),
        cgroups: Vec::new(),
    };
    let input = WindowInput {
        elapsed: Duration::from_secs(10),
        cgroups: &cgroups,
        net: &net,
        ebpf: Some(&sample),
        loaded: &[Signal::Syscalls],
    };
    let v = builder.window(&table, &input).remove(0).1;
    assert_eq!(get(&v, Feature::SyscallsPerS), Some(0.0));
    assert_eq!(get(&v, Feature::SocketRxBytesPerS), None);
    assert_eq!(get(&v, Feature::CpuRunqueueWaitMs), None);
    assert_eq!(get(&v, Feature::DiskLatencyMs), None);
}

#[test]
fn a_reset_counter_gives_no_rate_and_vanished_containers_are_forgotten() {
    let (_dir, table) = table();
    let mut builder = FeatureBuilder::new(NODE);
    window(&mut builder, &table, reading(100, 0, 0), None);
    let v = window(&mut builder, &table, reading(5, 0, 0), None);
    assert_eq!(get(&v, Feature::CpuUsageCores), None);
    assert_eq!(builder.tracked(), 1);

    let empty = ContainerTable::new("/nonexistent", "/nonexistent", Duration::ZERO);
    let cgroups = HashMap::new();
    let net = HashMap::new();
    let input = WindowInput {
        elapsed: Duration::from_secs(10),
        cgroups: &cgroups,
        net: &net,
        ebpf: None,
        loaded: &[],
    };
    assert!(builder.window(&empty, &input).is_empty());
    assert_eq!(builder.tracked(), 0);
}
