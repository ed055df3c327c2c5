//! Each domain's median on each node, as an observation of the domain across nodes: the node
//! where a whole workload runs differently stands out.

use herd_detect::{Observation, Subject};

use crate::{
    compare::{by_name, comparable},
    nodes::NodeBook,
};

/// The entity of a domain on a node.
pub fn entity(node: &str, domain: &str) -> String {
    format!("{node} {domain}")
}

pub fn observations(book: &NodeBook, order: &[String]) -> Vec<Observation> {
    book.live()
        .flat_map(|(node, entry)| {
            let names = &entry.summary.features;
            entry
                .summary
                .domains
                .iter()
                .filter(|d| comparable(&d.domain))
                .map(move |d| Observation {
                    subject: Subject {
                        entity: entity(node, &d.domain),
                        pod: None,
                        namespace: d.domain.split('/').next().map(str::to_owned),
                        domain: d.domain.clone(),
                        node: node.clone(),
                    },
                    values: by_name(names, order, &d.medians),
                })
        })
        .collect()
}
