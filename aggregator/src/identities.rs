//! Containers' identities per `PushSummaries` stream. An agent sends a container's identity
//! (`herd.v1.Container`: id, pod, namespace, name, image, domain, cgroup, node, pod uid) in
//! its stream's first summary and again only when it changes; in between it names the
//! container by `ContainerSummary.id` alone. Each stream keeps the identities it carried, and
//! every summary taken from it refers to them instead of holding its own copies.

use std::sync::Arc;

use herd_proto::herd::v1 as pb;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::nodes::IngestError;

/// Container id → its identity, as a node's stream last carried it. Looked up for every
/// container of every summary and round: FxHash, not SipHash, whose cost on 64-digit ids was
/// a tenth of a round. The ids come from agents with the cluster's certificates, at most
/// [`crate::nodes::MAX_CONTAINERS`] a summary.
pub type Identities = FxHashMap<String, pb::Container>;

/// The identities one stream has carried so far: none when it opens.
#[derive(Debug, Default)]
pub struct StreamIdentities {
    known: Arc<Identities>,
}

impl StreamIdentities {
    /// Moves the identities `summary` carries into the stream's table, and leaves every
    /// container of `summary` named by its `id`, with its age, score and flags beside it:
    /// the table (shared, copied only when an identity changes) is what names them. A
    /// container without an identity that the stream never carried refuses the summary;
    /// containers the summary no longer has leave the table.
    pub fn resolve(
        &mut self,
        summary: &mut pb::NodeSummary,
    ) -> Result<Arc<Identities>, IngestError> {
        let mut changed = Vec::new();
        for c in &mut summary.containers {
            let Some(identity) = c.container.take() else {
                continue;
            };
            if c.id.is_empty() {
                // An agent from before `id`: what changes each window is in the identity.
                c.id.clone_from(&identity.id);
                c.age = identity.age;
                c.scored = identity.scored;
                c.flagged = identity.flagged;
            }
            if self
                .known
                .get(&identity.id)
                .is_none_or(|known| !same_identity(known, &identity))
            {
                changed.push(identity);
            }
        }
        if !changed.is_empty() || self.known.len() != summary.containers.len() {
            let known = Arc::make_mut(&mut self.known);
            for identity in changed {
                known.insert(identity.id.clone(), identity);
            }
            if known.len() != summary.containers.len() {
                let present: FxHashSet<&str> =
                    summary.containers.iter().map(|c| c.id.as_str()).collect();
                known.retain(|id, _| present.contains(id.as_str()));
            }
        }
        if let Some(c) = summary
            .containers
            .iter()
            .find(|c| !self.known.contains_key(&c.id))
        {
            return Err(IngestError::Invalid {
                node: summary.node.clone(),
                what: format!(
                    "container {} comes without its identity, which this stream never carried",
                    c.id
                ),
            });
        }
        Ok(Arc::clone(&self.known))
    }
}

/// Whether two containers' identities are the same, whatever their age, score and flags.
pub fn same_identity(a: &pb::Container, b: &pb::Container) -> bool {
    a.id == b.id
        && a.pod == b.pod
        && a.namespace == b.namespace
        && a.name == b.name
        && a.image == b.image
        && a.domain == b.domain
        && a.cgroup == b.cgroup
        && a.node == b.node
        && a.pod_uid == b.pod_uid
}

/// A container as the summary it came in said, its identity from the stream's table.
pub fn container(identity: &pb::Container, c: &pb::ContainerSummary) -> pb::Container {
    pb::Container {
        age: c.age,
        judged: true,
        score: c.score,
        flagged: c.flagged,
        scored: c.scored,
        ..identity.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(id: &str, pod: &str) -> pb::ContainerSummary {
        pb::ContainerSummary {
            container: Some(pb::Container {
                id: id.into(),
                pod: pod.into(),
                domain: "shop/Deployment/web/app".into(),
                ..Default::default()
            }),
            id: id.into(),
            values: vec![1.0],
            ..Default::default()
        }
    }

    fn bare(id: &str) -> pb::ContainerSummary {
        pb::ContainerSummary {
            id: id.into(),
            values: vec![1.0],
            ..Default::default()
        }
    }

    fn summary(containers: Vec<pb::ContainerSummary>) -> pb::NodeSummary {
        pb::NodeSummary {
            node: "n".into(),
            containers,
            ..Default::default()
        }
    }

    #[test]
    fn a_container_named_by_id_takes_the_identity_its_stream_carried() {
        let mut stream = StreamIdentities::default();
        stream
            .resolve(&mut summary(vec![full("a", "web-1"), full("b", "web-2")]))
            .unwrap();
        let mut next = summary(vec![bare("a"), full("b", "web-3")]);
        let table = stream.resolve(&mut next).unwrap();
        assert_eq!(table["a"].pod, "web-1");
        assert_eq!(
            table["b"].pod, "web-3",
            "a changed identity replaces the old"
        );
        assert!(next.containers.iter().all(|c| c.container.is_none()));
    }

    #[test]
    fn a_new_stream_or_a_gone_container_knows_no_identity() {
        let mut stream = StreamIdentities::default();
        stream
            .resolve(&mut summary(vec![full("a", "web-1"), full("b", "web-2")]))
            .unwrap();
        // b is gone; when it comes back without its identity, it is unknown.
        let table = stream.resolve(&mut summary(vec![bare("a")])).unwrap();
        assert_eq!(table.len(), 1);
        let err = stream
            .resolve(&mut summary(vec![bare("a"), bare("b")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("container b comes without"),
            "{err}"
        );
        let err = StreamIdentities::default()
            .resolve(&mut summary(vec![bare("a")]))
            .unwrap_err();
        assert!(err.to_string().contains("container a"), "{err}");
    }

    #[test]
    fn an_older_agent_with_every_identity_every_window_keeps_its_age_and_flags() {
        let mut stream = StreamIdentities::default();
        for flagged in [false, true] {
            let mut old = full("a", "web-1");
            old.id.clear();
            let identity = old.container.as_mut().unwrap();
            identity.flagged = flagged;
            identity.scored = true;
            let mut s = summary(vec![old]);
            let table = stream.resolve(&mut s).unwrap();
            let c = &s.containers[0];
            assert_eq!((c.id.as_str(), c.flagged, c.scored), ("a", flagged, true));
            assert_eq!(container(&table["a"], c).flagged, flagged);
        }
    }
}
