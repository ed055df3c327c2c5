//! The agent's collectors and features against known faults in the lab: in each workload one
//! replica misbehaves, and its features must show it while its idle siblings' do not.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use herd_agent::{
    collect::{
        cgroup::{CgroupCollector, CgroupMounts},
        ebpf::{EbpfConfig, EbpfPrograms},
        netns::NetnsCollector,
        signals::SignalSampler,
    },
    discovery::poller::{Discovery, DiscoveryConfig},
    features::{Feature, FeatureBuilder, NodeCapacity, WindowInput},
    host::{self, HostPaths, Tracefs},
};
use herd_tests::{
    lab::{self, Fault, FaultKind, Lab, LabSpec, Workload},
    require_root,
};

/// The lab annotates each pod with its replica index; replica 0 carries the fault.
const REPLICA_LABEL: &str = "herd.lab/replica";

/// Short windows, many of them: a leaking replica's memory is a sawtooth (it fills its limit
/// in a moment, is OOM-killed, and stress-ng starts it again, about a dozen times a second
/// here), so the working set at a window's end lies anywhere on it. Eight ends after the fault
/// starts see its top half at least once; with three, one run in a few dozen saw 0.40.
const WINDOW: Duration = Duration::from_secs(2);
const WINDOWS: usize = 9;

fn spec() -> LabSpec {
    let faulty = |name: &str, kind| {
        Workload::deployment(name)
            .namespace("collect")
            .replicas(3)
            .fault(Fault::new(0, kind).after_secs(2).for_secs(60))
    };
    LabSpec::new()
        .workload(faulty("cpu", FaultKind::CpuHog).cpu_millis(100))
        .workload(faulty("mem", FaultKind::MemoryLeak).memory_mib(48))
        .workload(
            faulty("memswap", FaultKind::MemoryLeak)
                .memory_mib(48)
                .swap_unlimited(),
        )
        // Every replica under the same pids limit, so that the healthy ones have a
        // utilization to compare.
        .workload(faulty("fork", FaultKind::ForkStorm).pids_max(lab::FORK_STORM_PIDS_MAX))
        .workload(faulty("sock", FaultKind::SocketFlood))
        .workload(faulty("sys", FaultKind::SyscallErrors))
}

#[test]
fn each_fault_shows_in_its_replicas_features_and_not_in_its_siblings() -> anyhow::Result<()> {
    require_root();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let lab = Lab::up(&spec()).await?;
        let _tracefs = Tracefs::ensure()?;
        let paths = HostPaths::default();
        let host = host::cgroup_mounts(&paths.proc)?;
        let mut programs = EbpfPrograms::load_available(&EbpfConfig::default())?;
        let loaded = programs.signals().to_vec();
        let mut signals = SignalSampler::new(programs.take_signal_maps()?);
        let mut discovery = Discovery::new(DiscoveryConfig {
            runtime_socket: Some(lab.socket()),
            min_age: Duration::ZERO,
            cgroup2: host.cgroup2.clone(),
            proc: paths.proc.clone(),
        });
        discovery.poll().await;
        let mut cgroups = CgroupCollector::new(CgroupMounts {
            cgroup2: host.cgroup2.clone(),
            v1: host.cgroup_v1.clone(),
        });
        let mut netns = NetnsCollector::new(&paths.proc);
        let mut features = FeatureBuilder::new(NodeCapacity::of_this_host());

        // The largest value of each feature over the windows, per container id.
        let mut peak: HashMap<String, Vec<f64>> = HashMap::new();
        let mut last = Instant::now();
        for window in 0..=WINDOWS {
            if window > 0 {
                tokio::time::sleep(WINDOW).await;
            }
            discovery.poll().await;
            // The run loop's order: discovery's walk also resolves the signals' cgroup ids.
            let sample = signals.sample(discovery.cgroup_index())?;
            let table = discovery.table();
            let counters = cgroups.collect(table);
            let net = netns.collect(table);
            let input = WindowInput {
                elapsed: last.elapsed(),
                cgroups: &counters,
                net: &net,
                ebpf: Some(&sample),
                loaded: &loaded,
            };
            last = Instant::now();
            for (id, values) in features.window(table, &input) {
                let entry = peak
                    .entry(id)
                    .or_insert_with(|| vec![f64::NAN; values.len()]);
                for (slot, value) in entry.iter_mut().zip(values) {
                    if let Some(value) = value {
                        *slot = if slot.is_nan() {
                            value
                        } else {
                            slot.max(value)
                        };
                    }
                }
            }
        }

        let pods = lab.pods().await?;
        let by_name = |name: &str| -> anyhow::Result<(String, Vec<String>)> {
            let mut faulty = None;
            let mut healthy = Vec::new();
            for pod in pods
                .iter()
                .filter(|p| p.name.starts_with(&format!("{name}-")))
            {
                let id = pod.containers.first().context("a container")?.id.clone();
                if pod.annotations.get(REPLICA_LABEL).map(String::as_str) == Some("0") {
                    faulty = Some(id);
                } else {
                    healthy.push(id);
                }
            }
            Ok((
                faulty.with_context(|| format!("no replica 0 of {name}"))?,
                healthy,
            ))
        };
        // A feature never seen is missing, not zero: a check must not pass on no data.
        let value = |name: &str, id: &str, feature: Feature| {
            peak.get(id)
                .map(|values| values[feature as usize])
                .filter(|v| !v.is_nan())
                .with_context(|| format!("{name}: {feature:?} of {id} is missing"))
        };
        let check = |name: &str,
                     feature: Feature,
                     faulty_above: f64,
                     healthy_below: f64|
         -> anyhow::Result<()> {
            let (faulty, healthy) = by_name(name)?;
            anyhow::ensure!(!healthy.is_empty(), "{name}: no healthy replica");
            let got = value(name, &faulty, feature)?;
            anyhow::ensure!(
                got > faulty_above,
                "{name}: {feature:?} of the faulty replica is {got}, wanted > {faulty_above}"
            );
            for id in healthy {
                let got = value(name, &id, feature)?;
                anyhow::ensure!(
                    got < healthy_below,
                    "{name}: {feature:?} of a healthy replica is {got}, wanted < {healthy_below}"
                );
            }
            Ok(())
        };
        check("cpu", Feature::CpuThrottledShare, 0.5, 0.05)?;
        check("cpu", Feature::CpuPressure, 0.2, 0.05)?;
        check("mem", Feature::OomKillsPerWindow, 0.5, 0.5)?;
        check("mem", Feature::MemoryUtilization, 0.5, 0.3)?;
        // v1 counts limit hits only where memory+swap may go past the memory limit; where
        // both limits are equal (the default) the feature is missing, not a false zero.
        check("memswap", Feature::MemoryLimitHitsPerS, 1.0, 0.5)?;
        let (faulty, healthy) = by_name("mem")?;
        for id in std::iter::once(faulty).chain(healthy) {
            anyhow::ensure!(
                value("mem", &id, Feature::MemoryLimitHitsPerS).is_err(),
                "mem: limit hits of {id} read where memory and swap share one limit"
            );
        }
        check("fork", Feature::ForkFailuresPerS, 0.0, 0.01)?;
        check("fork", Feature::PidsUtilization, 0.5, 0.2)?;
        check("sock", Feature::SocketTxBytesPerS, 1_000_000.0, 10_000.0)?;
        check("sys", Feature::SyscallFailuresPerS, 200.0, 20.0)?;
        drop(programs);
        lab.down().await?;
        Ok(())
    });
    // Whatever happened, the lab is gone before the next test.
    let down = runtime.block_on(lab::down());
    result.and(down.map_err(anyhow::Error::from))
}
