//! Each container, as an observation of its domain across the cluster.

use herd_detect::Observation;
use rustc_hash::FxHashSet;

use crate::{
    compare::{FeatureMap, comparable, set, set_nonempty, slot},
    nodes::NodeBook,
};

/// The shard of `shards` that compares `domain`: the same in every round and process.
pub fn shard(domain: &str, shards: usize) -> usize {
    // FNV-1a: stable, unlike the standard library's hasher, and enough to spread names.
    let hash = domain.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % shards as u64) as usize
}

/// Every live node's containers into the shards of `out` (a domain's all in one), in place
/// of last round's.
pub fn observations(book: &NodeBook, order: &[String], out: &mut [Vec<Observation>]) {
    let mut seen = FxHashSet::default();
    seen.reserve(out.iter().map(Vec::len).sum());
    let mut filled = vec![0; out.len()];
    for (node, entry) in book.live() {
        let map = FeatureMap::new(&entry.summary.features, order);
        for (container, _, values) in entry.containers() {
            // A container reported by two nodes (a misconfigured agent) counts once.
            if !comparable(&container.domain) || !seen.insert(container.id.as_str()) {
                continue;
            }
            let s = shard(&container.domain, out.len());
            let obs = slot(&mut out[s], filled[s]);
            filled[s] += 1;
            let subject = &mut obs.subject;
            set(&mut subject.entity, &container.id);
            set_nonempty(&mut subject.pod, &container.pod);
            set_nonempty(&mut subject.namespace, &container.namespace);
            set(&mut subject.domain, &container.domain);
            set(&mut subject.node, node);
            map.fill(values, &mut obs.values);
        }
    }
    for (shard, n) in out.iter_mut().zip(filled) {
        shard.truncate(n);
    }
}
