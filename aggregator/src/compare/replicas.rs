//! Each container, as an observation of its domain across the cluster.

use herd_detect::{Observation, Subject};

use crate::{
    compare::{by_name, comparable},
    nodes::NodeBook,
};

pub fn observations(book: &NodeBook, order: &[String]) -> Vec<Observation> {
    let mut seen = std::collections::HashSet::new();
    book.live()
        .flat_map(|(node, entry)| {
            let names = &entry.summary.features;
            entry.summary.containers.iter().filter_map(move |c| {
                let container = c.container.as_ref()?;
                comparable(&container.domain).then(|| Observation {
                    subject: Subject {
                        entity: container.id.clone(),
                        pod: (!container.pod.is_empty()).then(|| container.pod.clone()),
                        namespace: (!container.namespace.is_empty())
                            .then(|| container.namespace.clone()),
                        domain: container.domain.clone(),
                        node: node.clone(),
                    },
                    values: by_name(names, order, &c.values),
                })
            })
        })
        // A container reported by two nodes (a misconfigured agent) counts once.
        .filter(|o| seen.insert(o.subject.entity.clone()))
        .collect()
}
