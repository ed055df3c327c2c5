//! Each node, as an observation among the nodes: the share of its domains with an open
//! finding, and how long its agent takes to collect a window.

use std::collections::{HashMap, HashSet};

use herd_detect::{Observation, Subject};

use crate::{compare::comparable, nodes::NodeBook};

pub const NODE_FEATURES: [&str; 2] = ["anomalous_domain_share", "collection_seconds"];
/// The domain every node belongs to in this comparison.
pub const NODES_DOMAIN: &str = "cluster/nodes";

/// A tenth of a node's domains, and 20 ms of collection, are the least spread that counts.
pub fn floors() -> HashMap<String, f64> {
    [
        ("anomalous_domain_share", 0.1),
        ("collection_seconds", 0.02),
    ]
    .into_iter()
    .map(|(name, floor)| (name.to_owned(), floor))
    .collect()
}

pub fn observations(
    book: &NodeBook,
    open_domains: &HashMap<String, HashSet<String>>,
) -> Vec<Observation> {
    book.live()
        .map(|(node, entry)| {
            let domains: Vec<&str> = entry
                .summary
                .domains
                .iter()
                .map(|d| d.domain.as_str())
                .filter(|d| comparable(d))
                .collect();
            let anomalous = open_domains.get(node).map_or(0, |open| {
                domains.iter().filter(|d| open.contains(**d)).count()
            });
            let share = (!domains.is_empty()).then(|| anomalous as f64 / domains.len() as f64);
            let collection = entry
                .summary
                .health
                .as_ref()
                .and_then(|h| h.collection.as_ref())
                .map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9);
            Observation {
                subject: Subject {
                    entity: node.clone(),
                    pod: None,
                    namespace: None,
                    domain: NODES_DOMAIN.to_owned(),
                    node: node.clone(),
                },
                values: vec![share, collection],
            }
        })
        .collect()
}
