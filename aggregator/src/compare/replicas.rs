//! Each container, as an observation of its domain across the cluster.

use std::collections::HashSet;

use herd_detect::Observation;

use crate::{
    compare::{FeatureMap, comparable, set, set_nonempty, slot},
    nodes::NodeBook,
};

/// Every live node's containers into `out`, in place of last round's.
pub fn observations(book: &NodeBook, order: &[String], out: &mut Vec<Observation>) {
    let mut seen = HashSet::with_capacity(out.len());
    let mut n = 0;
    for (node, entry) in book.live() {
        let map = FeatureMap::new(&entry.summary.features, order);
        for (container, _, values) in entry.containers() {
            // A container reported by two nodes (a misconfigured agent) counts once.
            if !comparable(&container.domain) || !seen.insert(container.id.as_str()) {
                continue;
            }
            let obs = slot(out, n);
            n += 1;
            let subject = &mut obs.subject;
            set(&mut subject.entity, &container.id);
            set_nonempty(&mut subject.pod, &container.pod);
            set_nonempty(&mut subject.namespace, &container.namespace);
            set(&mut subject.domain, &container.domain);
            set(&mut subject.node, node);
            map.fill(values, &mut obs.values);
        }
    }
    out.truncate(n);
}
