//! Each container, as an observation of its domain across the cluster.

use herd_detect::Observation;
use herd_proto::herd::v1 as pb;
use rustc_hash::FxHashSet;

use crate::{
    compare::{FeatureMap, comparable, set, set_nonempty, slot},
    nodes::NodeBook,
};

/// The shard of `shards` that compares a domain, from its [`key`]: the same in every round
/// and process.
pub fn shard(key: u64, shards: usize) -> usize {
    (key % shards as u64) as usize
}

/// A domain's name as a number: FNV-1a, stable, unlike the standard library's hasher, and
/// enough to spread names.
pub fn key(domain: &str) -> u64 {
    domain.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A live node's container, for the replica comparison.
pub struct Placed<'a> {
    /// Its domain's [`key`].
    key: u64,
    node: &'a str,
    /// Its node's place in [`Assigned::maps`].
    map: usize,
    identity: &'a pb::Container,
    values: &'a [f32],
}

/// Every live node's containers, each in the shard of its domain: what one thread a shard
/// turns into observations ([`observations`]).
pub struct Assigned<'a> {
    /// Each node's values in the comparison's feature order.
    pub maps: Vec<FeatureMap>,
    pub shards: Vec<Vec<Placed<'a>>>,
}

/// Puts every live node's containers in the shard of their domain (of `shards`).
pub fn assign<'a>(book: &'a NodeBook, order: &[String], shards: usize) -> Assigned<'a> {
    let mut assigned = Assigned {
        maps: Vec::new(),
        shards: (0..shards).map(|_| Vec::new()).collect(),
    };
    let mut seen = FxHashSet::default();
    for (node, entry) in book.live() {
        let map = assigned.maps.len();
        assigned
            .maps
            .push(FeatureMap::new(&entry.summary.features, order));
        for (identity, _, values) in entry.containers() {
            // A container reported by two nodes (a misconfigured agent) counts once.
            if !comparable(&identity.domain) || !seen.insert(identity.id.as_str()) {
                continue;
            }
            let key = key(&identity.domain);
            assigned.shards[shard(key, shards)].push(Placed {
                key,
                node,
                map,
                identity,
                values,
            });
        }
    }
    assigned
}

/// One shard's containers as observations, in place of last round's in `out`, a domain's
/// together: the detector keeps each entity's past where it first saw it, so a domain's
/// members' pasts sit together too, and a round reads them in the order they lie.
pub fn observations(maps: &[FeatureMap], placed: &mut [Placed<'_>], out: &mut Vec<Observation>) {
    placed.sort_by_key(|p| p.key);
    for (n, p) in placed.iter().enumerate() {
        let obs = slot(out, n);
        let subject = &mut obs.subject;
        set(&mut subject.entity, &p.identity.id);
        set_nonempty(&mut subject.pod, &p.identity.pod);
        set_nonempty(&mut subject.namespace, &p.identity.namespace);
        set(&mut subject.domain, &p.identity.domain);
        set(&mut subject.node, p.node);
        maps[p.map].fill(p.values, &mut obs.values);
    }
    out.truncate(placed.len());
}
