//! The least spread between peers that counts, for each feature the agent computes: below
//! it, differences between peers are noise, whatever the median. One table keyed by the
//! feature's name, so that the agent, its standalone aggregator and `herd-aggregator` judge
//! with the same floors.

use std::collections::HashMap;

/// (feature name, absolute floor on the MAD in the feature's own unit), in the order of the
/// agent's feature vector (`herd-agent`'s catalog checks that it names each of its features
/// here, in its order).
pub const FEATURE_FLOORS: &[(&str, f64)] = &[
    ("cpu_usage_cores", 0.02),
    ("cpu_utilization", 0.02),
    ("cpu_throttled_share", 0.02),
    ("cpu_pressure", 0.02),
    ("cpu_runqueue_wait_ms", 0.5),
    ("cpu_long_wait_share", 0.02),
    ("memory_working_set", 4.0 * 1024.0 * 1024.0),
    ("memory_utilization", 0.02),
    ("memory_pressure", 0.02),
    ("memory_limit_hits_per_s", 0.5),
    ("major_faults_per_s", 5.0),
    ("oom_kills_per_window", 0.5),
    ("disk_read_bytes_per_s", 256.0 * 1024.0),
    ("disk_write_bytes_per_s", 256.0 * 1024.0),
    ("disk_ops_per_s", 10.0),
    ("disk_latency_ms", 1.0),
    ("disk_failures_per_s", 0.5),
    ("io_pressure", 0.02),
    ("net_rx_bytes_per_s", 32.0 * 1024.0),
    ("net_tx_bytes_per_s", 32.0 * 1024.0),
    ("net_packets_per_s", 20.0),
    ("net_drops_per_s", 1.0),
    ("tcp_retransmits_per_s", 1.0),
    ("tcp_resets_per_s", 1.0),
    ("tcp_failed_connects_per_s", 1.0),
    ("tcp_listen_overflows_per_s", 1.0),
    ("socket_rx_bytes_per_s", 32.0 * 1024.0),
    ("socket_tx_bytes_per_s", 32.0 * 1024.0),
    ("syscalls_per_s", 200.0),
    ("syscall_failure_ratio", 0.02),
    ("syscall_failures_per_s", 2.0),
    ("pids_current", 2.0),
    ("pids_utilization", 0.05),
    ("fork_failures_per_s", 0.5),
    ("cpu_ms_per_kilo_packet", 5.0),
    ("syscalls_per_cpu_second", 5000.0),
];

/// The floor of one feature, if the table has it.
pub fn floor(feature: &str) -> Option<f64> {
    FEATURE_FLOORS
        .iter()
        .find(|(name, _)| *name == feature)
        .map(|(_, floor)| *floor)
}

/// The floors of `features` that the table has, by name, for
/// [`DetectConfig::absolute_floors`](crate::DetectConfig::absolute_floors); a feature it
/// lacks gets the configuration's `default_absolute_floor`.
pub fn floors_for<S: AsRef<str>>(features: &[S]) -> HashMap<String, f64> {
    features
        .iter()
        .filter_map(|f| Some((f.as_ref().to_owned(), floor(f.as_ref())?)))
        .collect()
}

/// Every floor of the table, by name.
pub fn feature_floors() -> HashMap<String, f64> {
    FEATURE_FLOORS
        .iter()
        .map(|(name, floor)| ((*name).to_owned(), *floor))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_floor_is_positive_and_named_once() {
        let mut seen = std::collections::HashSet::new();
        for (name, floor) in FEATURE_FLOORS {
            assert!(
                *floor > 0.0 && floor.is_finite(),
                "{name} needs a floor above 0"
            );
            assert!(seen.insert(*name), "{name} is in the table twice");
        }
    }

    #[test]
    fn only_known_features_get_a_floor() {
        let floors = floors_for(&["cpu_usage_cores", "made_up"]);
        assert_eq!(floors.len(), 1);
        assert_eq!(floors["cpu_usage_cores"], 0.02);
    }
}
