//! Network traffic per cgroup (the eBPF cgroup_skb map): IP packets and their bytes as the
//! cgroup's sockets send and receive them.

use std::time::Duration;

use herd_agent_common::NetCounts;

use crate::collect::counters::impl_counters;

impl_counters!(NetCounts {
    rx_bytes,
    rx_packets,
    tx_bytes,
    tx_packets,
});

/// Received and sent bytes per second over an interval.
pub fn byte_rates(counts: &NetCounts, interval: Duration) -> (f64, f64) {
    let secs = interval.as_secs_f64();
    if secs > 0.0 {
        (counts.rx_bytes as f64 / secs, counts.tx_bytes as f64 / secs)
    } else {
        (0.0, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        collect::counters::{DeltaSampler, fake::*},
        discovery::cgroup2::CgroupIndex,
    };

    #[test]
    fn traffic_is_reported_per_interval_and_per_second() {
        let root = tempfile::tempdir().unwrap();
        let web = cgroup(root.path(), "web");
        let mut index = CgroupIndex::new(root.path());
        let mut map = FakeMap::default();
        map.totals.insert(
            web,
            NetCounts {
                rx_bytes: 1_000,
                rx_packets: 2,
                tx_bytes: 500,
                tx_packets: 1,
            },
        );
        let mut sampler = DeltaSampler::new(map);
        sampler.sample(&mut index).unwrap();
        let rows = sampler.deltas(
            vec![(
                web,
                NetCounts {
                    rx_bytes: 5_000,
                    rx_packets: 6,
                    tx_bytes: 500,
                    tx_packets: 1,
                },
            )],
            &index,
        );
        let delta = rows[0].1;
        assert_eq!((delta.rx_bytes, delta.rx_packets), (4_000, 4));
        assert_eq!((delta.tx_bytes, delta.tx_packets), (0, 0));
        assert_eq!(byte_rates(&delta, Duration::from_secs(2)), (2_000.0, 0.0));
        assert_eq!(byte_rates(&delta, Duration::ZERO), (0.0, 0.0));
    }
}
