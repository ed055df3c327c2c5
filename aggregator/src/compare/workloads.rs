//! Each domain's median on each node, as an observation of the domain across nodes: the node
//! where a whole workload runs differently stands out.
//!
//! Only domains that run two or more members on some node are compared this way. Where every
//! node runs one member (a DaemonSet, a Deployment spread by anti-affinity), a node's median
//! is its one replica, which the replica comparison already sets against every other: a
//! second comparison would cost as much again, in time and in memory, and name each stray
//! twice.

use std::fmt::Write as _;

use herd_detect::Observation;
use rustc_hash::FxHashSet;

use crate::{
    compare::{FeatureMap, comparable, set, slot},
    nodes::{NodeBook, domain_stats},
};

/// The entity of a domain on a node.
pub fn entity(node: &str, domain: &str) -> String {
    format!("{node} {domain}")
}

/// Every live node's domains into `out`, in place of last round's.
pub fn observations(book: &NodeBook, order: &[String], out: &mut Vec<Observation>) {
    let stacked: FxHashSet<&str> = book
        .live()
        .flat_map(|(_, entry)| &entry.summary.domains)
        .filter(|d| d.members >= 2)
        .map(|d| d.domain.as_str())
        .collect();
    let mut n = 0;
    for (node, entry) in book.live() {
        let map = FeatureMap::new(&entry.summary.features, order);
        for (i, d) in (entry.summary.domains.iter().enumerate())
            .filter(|(_, d)| comparable(&d.domain) && stacked.contains(d.domain.as_str()))
        {
            let obs = slot(out, n);
            n += 1;
            let subject = &mut obs.subject;
            subject.entity.clear();
            let _ = write!(subject.entity, "{node} {}", d.domain);
            let namespace = d.domain.split('/').next().unwrap_or_default();
            match &mut subject.namespace {
                Some(s) => set(s, namespace),
                None => subject.namespace = Some(namespace.to_owned()),
            }
            set(&mut subject.domain, &d.domain);
            set(&mut subject.node, node);
            map.fill(domain_stats(&entry.summary, i).0, &mut obs.values);
        }
    }
    out.truncate(n);
}
