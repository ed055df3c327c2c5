//! Each container's identity once per `PushSummaries` stream: the stream's first summary
//! carries every identity, later ones only those that are new or changed, and name the other
//! containers by `ContainerSummary.id` alone. The aggregator keeps what each stream carried
//! (`herd_aggregator::identities`), so a new stream, after a reconnect or an aggregator
//! restart, starts over with every identity and needs nothing else.

use std::collections::{HashMap, HashSet};

use herd_aggregator::identities::same_identity;
use herd_proto::herd::v1 as pb;

/// The identities one stream has carried, by container id: none when it opens.
#[derive(Debug, Default)]
pub struct SentIdentities {
    sent: HashMap<String, pb::Container>,
}

impl SentIdentities {
    /// Leaves out of a whole `summary` (as [`super::SummaryBuilder`] makes it) each identity
    /// this stream already carried unchanged, and forgets the containers it no longer has.
    pub fn elide(&mut self, summary: &mut pb::NodeSummary) {
        for c in &mut summary.containers {
            let Some(identity) = c.container.as_ref() else {
                continue;
            };
            match self.sent.get(&identity.id) {
                Some(sent) if same_identity(sent, identity) => c.container = None,
                _ => {
                    self.sent.insert(identity.id.clone(), identity.clone());
                }
            }
        }
        if self.sent.len() != summary.containers.len() {
            let present: HashSet<&str> = summary.containers.iter().map(|c| c.id.as_str()).collect();
            self.sent.retain(|id, _| present.contains(id.as_str()));
        }
    }

    /// Puts back the identities [`elide`](Self::elide) left out of `summary`, which another
    /// stream will carry.
    pub fn restore(&self, summary: &mut pb::NodeSummary) {
        for c in summary
            .containers
            .iter_mut()
            .filter(|c| c.container.is_none())
        {
            if let Some(identity) = self.sent.get(&c.id) {
                c.container = Some(herd_aggregator::identities::container(identity, c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, pod: &str, age: i64) -> pb::ContainerSummary {
        let age = Some(prost_types::Duration {
            seconds: age,
            nanos: 0,
        });
        pb::ContainerSummary {
            container: Some(pb::Container {
                id: id.into(),
                pod: pod.into(),
                namespace: "shop".into(),
                domain: "shop/Deployment/web/app".into(),
                age,
                judged: true,
                ..Default::default()
            }),
            id: id.into(),
            age,
            values: vec![0.5],
            ..Default::default()
        }
    }

    fn summary(containers: Vec<pb::ContainerSummary>) -> pb::NodeSummary {
        pb::NodeSummary {
            node: "node-a".into(),
            containers,
            ..Default::default()
        }
    }

    /// The pods whose identity went in the summary.
    fn carried(s: &pb::NodeSummary) -> Vec<&str> {
        s.containers
            .iter()
            .filter_map(|c| c.container.as_ref())
            .map(|c| c.pod.as_str())
            .collect()
    }

    #[test]
    fn a_streams_first_summary_carries_every_identity_and_later_ones_none() {
        let mut stream = SentIdentities::default();
        let mut first = summary(vec![
            container("a", "web-1", 10),
            container("b", "web-2", 10),
        ]);
        stream.elide(&mut first);
        assert_eq!(carried(&first), ["web-1", "web-2"]);
        // A window later the containers are older, nothing else changed.
        let mut second = summary(vec![
            container("a", "web-1", 20),
            container("b", "web-2", 20),
        ]);
        stream.elide(&mut second);
        assert!(carried(&second).is_empty());
        assert_eq!(second.containers[0].id, "a");
        assert_eq!(second.containers[0].age.unwrap().seconds, 20);
        // A reconnect is a new stream: every identity again.
        let mut again = summary(vec![
            container("a", "web-1", 30),
            container("b", "web-2", 30),
        ]);
        SentIdentities::default().elide(&mut again);
        assert_eq!(carried(&again), ["web-1", "web-2"]);
    }

    #[test]
    fn a_changed_or_new_identity_is_sent_again_and_a_gone_container_is_forgotten() {
        let mut stream = SentIdentities::default();
        stream.elide(&mut summary(vec![
            container("a", "web-1", 10),
            container("b", "web-2", 10),
        ]));
        let mut renamed = container("a", "web-1", 20);
        renamed.container.as_mut().unwrap().pod = "web-1-renamed".into();
        let mut next = summary(vec![renamed, container("c", "web-3", 20)]);
        stream.elide(&mut next);
        assert_eq!(carried(&next), ["web-1-renamed", "web-3"]);
        // b left in that summary: when an id like it comes back, its identity goes again.
        let mut back = summary(vec![container("b", "web-2", 30)]);
        stream.elide(&mut back);
        assert_eq!(carried(&back), ["web-2"]);
    }

    #[test]
    fn the_aggregator_reads_every_identity_from_the_streams_summaries() {
        let mut sent = SentIdentities::default();
        let mut taken = herd_aggregator::identities::StreamIdentities::default();
        for age in [10, 20] {
            let mut s = summary(vec![container("a", "web-1", age)]);
            sent.elide(&mut s);
            let identities = taken.resolve(&mut s).unwrap();
            let c = &s.containers[0];
            let whole = herd_aggregator::identities::container(&identities[&c.id], c);
            assert_eq!(
                (whole.pod.as_str(), whole.age.unwrap().seconds),
                ("web-1", age)
            );
        }
    }

    #[test]
    fn a_summary_put_back_for_another_stream_is_whole_again() {
        let mut stream = SentIdentities::default();
        stream.elide(&mut summary(vec![container("a", "web-1", 10)]));
        let mut next = summary(vec![container("a", "web-1", 20)]);
        stream.elide(&mut next);
        assert!(carried(&next).is_empty());
        stream.restore(&mut next);
        assert_eq!(carried(&next), ["web-1"]);
        assert_eq!(
            next.containers[0]
                .container
                .as_ref()
                .unwrap()
                .age
                .unwrap()
                .seconds,
            20
        );
    }
}
