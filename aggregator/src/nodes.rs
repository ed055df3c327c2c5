//! The nodes that report: each one's latest summary, when it came, how many were lost, and
//! whether the node has gone silent.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use herd_detect::proto::from_timestamp;
use herd_proto::herd::v1 as pb;
use thiserror::Error;

use crate::identities::{Identities, StreamIdentities};

/// What a summary may hold: far above a real node, low enough to bound memory.
pub const MAX_CONTAINERS: usize = 2_000;
pub const MAX_FEATURES: usize = 256;
pub const MAX_NAME: usize = 512;
/// A finding's one-line summary: a few drivers in words.
pub const MAX_TEXT: usize = 4_096;
/// The node's open findings, and each one's drivers.
pub const MAX_FINDINGS: usize = MAX_CONTAINERS;
pub const MAX_DRIVERS: usize = MAX_FEATURES;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IngestError {
    #[error("a summary without a node name")]
    NoNode,
    #[error("node {node}: {what}")]
    Invalid { node: String, what: String },
}

#[derive(Debug, Clone)]
pub struct NodeEntry {
    /// Its containers named by id, without their identities: those are in `identities`.
    pub summary: pb::NodeSummary,
    /// Its containers' identities, as its stream carried them.
    pub identities: Arc<Identities>,
    pub last_seen: SystemTime,
    pub received: u64,
    /// Summaries its sequence numbers say never arrived.
    pub lost: u64,
    pub silent: bool,
}

#[derive(Debug, Default)]
pub struct NodeBook {
    nodes: BTreeMap<String, NodeEntry>,
    /// Summaries taken since the start, from every node.
    received: u64,
}

/// Nodes that went silent or came back in one expiry pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Silence {
    pub went: Vec<String>,
    pub back: Vec<String>,
}

impl NodeEntry {
    /// Each of its containers with its identity and values.
    pub fn containers(
        &self,
    ) -> impl Iterator<Item = (&pb::Container, &pb::ContainerSummary, &[f32])> {
        self.summary
            .containers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let values = container_values(&self.summary, i);
                Some((self.identities.get(&c.id)?, c, values))
            })
    }
}

impl NodeBook {
    /// Takes a node's latest summary with every container's identity in it, after checking
    /// that it is whole.
    pub fn ingest(
        &mut self,
        mut summary: pb::NodeSummary,
        now: SystemTime,
    ) -> Result<(), IngestError> {
        let identities = prepare(&mut summary, &mut StreamIdentities::default())?;
        self.take(summary, identities, now);
        Ok(())
    }

    /// Takes a summary that [`prepare`] accepted, with the identities it resolved.
    pub(crate) fn take(
        &mut self,
        summary: pb::NodeSummary,
        identities: Arc<Identities>,
        now: SystemTime,
    ) {
        self.received += 1;
        let node = summary.node.clone();
        match self.nodes.get_mut(&node) {
            Some(entry) => {
                let expected = entry.summary.sequence.wrapping_add(1);
                // A lower number is a restarted agent, not a loss.
                if summary.sequence > expected {
                    // Saturating: a node's sequence numbers are whatever it sends.
                    entry.lost = entry.lost.saturating_add(summary.sequence - expected);
                }
                entry.summary = summary;
                entry.identities = identities;
                entry.last_seen = now;
                entry.received += 1;
            }
            None => {
                self.nodes.insert(
                    node,
                    NodeEntry {
                        summary,
                        identities,
                        last_seen: now,
                        received: 1,
                        lost: 0,
                        silent: false,
                    },
                );
            }
        }
    }

    /// Marks nodes unheard of for `expiry` as silent, and those heard again as back.
    pub fn expire(&mut self, now: SystemTime, expiry: Duration) -> Silence {
        let mut silence = Silence::default();
        for (node, entry) in &mut self.nodes {
            let quiet = now.duration_since(entry.last_seen).unwrap_or_default() > expiry;
            if quiet && !entry.silent {
                entry.silent = true;
                silence.went.push(node.clone());
            } else if !quiet && entry.silent {
                entry.silent = false;
                silence.back.push(node.clone());
            }
        }
        silence
    }

    /// A node's entry, silent or not.
    pub fn get(&self, node: &str) -> Option<&NodeEntry> {
        self.nodes.get(node)
    }

    /// The nodes that report, with their latest summary.
    pub fn live(&self) -> impl Iterator<Item = (&String, &NodeEntry)> {
        self.nodes.iter().filter(|(_, e)| !e.silent)
    }

    pub fn all(&self) -> impl Iterator<Item = (&String, &NodeEntry)> {
        self.nodes.iter()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Summaries taken since the start, from every node.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Checks that a summary is whole, resolves its containers' identities on its `stream`,
/// puts its values in matrices (see [`pack`]), and sets aside what the aggregator does not keep: each container's drivers on its node
/// (three features with their statistics, a sixth of a summary's memory), which nothing here
/// reads; its findings carry their own.
pub(crate) fn prepare(
    summary: &mut pb::NodeSummary,
    stream: &mut StreamIdentities,
) -> Result<Arc<Identities>, IngestError> {
    check(summary)?;
    let identities = stream.resolve(summary)?;
    pack(summary);
    for c in &mut summary.containers {
        c.drivers = Vec::new();
    }
    Ok(identities)
}

/// Whether a summary is whole: a node name, valid sizes, values that match its features.
fn check(s: &pb::NodeSummary) -> Result<(), IngestError> {
    if s.node.is_empty() {
        return Err(IngestError::NoNode);
    }
    let invalid = |what: String| IngestError::Invalid {
        node: s.node.chars().take(MAX_NAME).collect(),
        what,
    };
    if s.node.len() > MAX_NAME {
        return Err(invalid(format!("a node name over {MAX_NAME} bytes")));
    }
    if s.features.is_empty() || s.features.len() > MAX_FEATURES {
        return Err(invalid(format!(
            "{} features; 1 to {MAX_FEATURES} are taken",
            s.features.len()
        )));
    }
    if s.containers.len() > MAX_CONTAINERS {
        return Err(invalid(format!(
            "{} containers; at most {MAX_CONTAINERS} are taken",
            s.containers.len()
        )));
    }
    if s.at.as_ref().and_then(from_timestamp).is_none() {
        return Err(invalid("no valid window time".into()));
    }
    let features = s.features.len();
    // Values come in the summary's matrix or, from older agents, in each container's own.
    let packed = !s.values.is_empty();
    if packed && s.values.len() != s.containers.len() * features {
        return Err(invalid(format!(
            "{} values for {} containers of {features} features",
            s.values.len(),
            s.containers.len()
        )));
    }
    if s.values.iter().any(|v| v.is_infinite()) {
        return Err(invalid("an infinite value".into()));
    }
    for c in &s.containers {
        let id = c
            .container
            .as_ref()
            .map_or(c.id.as_str(), |c| c.id.as_str());
        if id.is_empty() || id.len() > MAX_NAME || (!c.id.is_empty() && c.id != id) {
            return Err(invalid("a container without a valid id".into()));
        }
        if c.values.len() != if packed { 0 } else { features } {
            return Err(invalid(format!(
                "container {id} has {} values for {features} features",
                c.values.len()
            )));
        }
        if c.values.iter().any(|v| v.is_infinite()) {
            return Err(invalid(format!("container {id} has an infinite value")));
        }
    }
    bounded(s).map_err(invalid)?;
    let packed = !s.domain_medians.is_empty() || !s.domain_mads.is_empty();
    let rows = s.domains.len() * features;
    if packed && (s.domain_medians.len() != rows || s.domain_mads.len() != rows) {
        return Err(invalid(format!(
            "{} domain medians and {} MADs for {} domains of {features} features",
            s.domain_medians.len(),
            s.domain_mads.len(),
            s.domains.len()
        )));
    }
    let each = if packed { 0 } else { features };
    for d in &s.domains {
        if d.medians.len() != each || d.mads.len() != each {
            return Err(invalid(format!(
                "domain {} has {} medians and {} MADs for {features} features",
                d.domain,
                d.medians.len(),
                d.mads.len()
            )));
        }
    }
    Ok(())
}

/// Every name, label and text of a summary within its bound, and as many findings, domains
/// and drivers as a node can have: the summary's size limit alone would let one field of
/// megabytes through, kept for every node until its next summary.
fn bounded(s: &pb::NodeSummary) -> Result<(), String> {
    let within = |what: &str, value: &str, max: usize| {
        if value.len() > max {
            Err(format!(
                "{what} of {} bytes; at most {max} are taken",
                value.len()
            ))
        } else {
            Ok(())
        }
    };
    let count = |what: &str, n: usize, max: usize| {
        if n > max {
            Err(format!("{n} {what}; at most {max} are taken"))
        } else {
            Ok(())
        }
    };
    within("an agent version", &s.agent_version, MAX_NAME)?;
    for feature in &s.features {
        within("a feature name", feature, MAX_NAME)?;
    }
    for c in &s.containers {
        count("drivers of a container", c.drivers.len(), MAX_DRIVERS)?;
        for driver in &c.drivers {
            within("a driver's feature name", &driver.feature, MAX_NAME)?;
        }
        if let Some(identity) = &c.container {
            for (what, value) in [
                ("a pod name", &identity.pod),
                ("a namespace", &identity.namespace),
                ("a container name", &identity.name),
                ("an image", &identity.image),
                ("a domain", &identity.domain),
                ("a cgroup path", &identity.cgroup),
                ("a node name", &identity.node),
                ("a pod uid", &identity.pod_uid),
            ] {
                within(what, value, MAX_NAME)?;
            }
        }
    }
    count("domains", s.domains.len(), MAX_CONTAINERS)?;
    for d in &s.domains {
        within("a domain", &d.domain, MAX_NAME)?;
    }
    count("findings", s.findings.len(), MAX_FINDINGS)?;
    for f in &s.findings {
        for (what, value) in [
            ("a finding id", &f.id),
            ("a finding's node", &f.node),
            ("a finding's namespace", &f.namespace),
            ("a finding's pod", &f.pod),
            ("a finding's container", &f.container),
            ("a finding's container id", &f.container_id),
            ("a finding's domain", &f.domain),
            ("a finding's image", &f.image),
            ("a finding's source", &f.source),
        ] {
            within(what, value, MAX_NAME)?;
        }
        within("a finding's summary", &f.summary, MAX_TEXT)?;
        count("drivers of a finding", f.drivers.len(), MAX_DRIVERS)?;
        for driver in &f.drivers {
            within("a driver's feature name", &driver.feature, MAX_NAME)?;
        }
    }
    Ok(())
}

/// Moves the values of an older agent's summary, a vector per container and domain, into
/// the summary's matrices, as newer agents send them: one allocation a node, not one a
/// container, and 4 bytes a value.
fn pack(s: &mut pb::NodeSummary) {
    let features = s.features.len();
    if s.values.is_empty() && !s.containers.is_empty() {
        let mut values = Vec::with_capacity(s.containers.len() * features);
        for c in &mut s.containers {
            values.extend(c.values.iter().map(|v| *v as f32));
            c.values = Vec::new();
        }
        s.values = values;
    }
    if s.domain_medians.is_empty() && !s.domains.is_empty() {
        let rows = s.domains.len() * features;
        let (mut medians, mut mads) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for d in &mut s.domains {
            medians.extend(d.medians.iter().map(|v| *v as f32));
            mads.extend(d.mads.iter().map(|v| *v as f32));
            d.medians = Vec::new();
            d.mads = Vec::new();
        }
        s.domain_medians = medians;
        s.domain_mads = mads;
    }
}

/// Row `i` of a prepared summary's matrix `m` of its features' width.
fn row<'a>(s: &pb::NodeSummary, m: &'a [f32], i: usize) -> &'a [f32] {
    let width = s.features.len();
    m.get(i * width..(i + 1) * width).unwrap_or_default()
}

/// The values of container `i` of a prepared summary, in its features' order.
pub fn container_values(s: &pb::NodeSummary, i: usize) -> &[f32] {
    row(s, &s.values, i)
}

/// The medians and MADs of domain `i` of a prepared summary, in its features' order.
pub fn domain_stats(s: &pb::NodeSummary, i: usize) -> (&[f32], &[f32]) {
    (row(s, &s.domain_medians, i), row(s, &s.domain_mads, i))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    pub fn summary(node: &str, sequence: u64) -> pb::NodeSummary {
        pb::NodeSummary {
            node: node.into(),
            at: Some(herd_detect::proto::timestamp(
                UNIX_EPOCH + Duration::from_secs(100),
            )),
            features: vec!["cpu".into()],
            sequence,
            ..Default::default()
        }
    }

    #[test]
    fn gaps_in_the_sequence_are_lost_summaries() {
        let mut book = NodeBook::default();
        let now = UNIX_EPOCH + Duration::from_secs(100);
        for sequence in [1, 2, 5, 6] {
            book.ingest(summary("a", sequence), now).unwrap();
        }
        let entry = book.all().next().unwrap().1;
        assert_eq!((entry.received, entry.lost), (4, 2));
        // The agent restarted: numbering starts over, nothing lost.
        book.ingest(summary("a", 1), now).unwrap();
        assert_eq!(book.all().next().unwrap().1.lost, 2);
    }

    #[test]
    fn a_quiet_node_goes_silent_and_comes_back() {
        let mut book = NodeBook::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        book.ingest(summary("a", 1), t0).unwrap();
        book.ingest(summary("b", 1), t0 + Duration::from_secs(50))
            .unwrap();
        let expiry = Duration::from_secs(30);
        let silence = book.expire(t0 + Duration::from_secs(60), expiry);
        assert_eq!(silence.went, ["a"]);
        assert_eq!(book.live().count(), 1);
        book.ingest(summary("a", 2), t0 + Duration::from_secs(70))
            .unwrap();
        let silence = book.expire(t0 + Duration::from_secs(70), expiry);
        assert_eq!(silence.back, ["a"]);
    }

    #[test]
    fn names_labels_and_texts_over_their_bounds_are_refused() {
        let mut book = NodeBook::default();
        let now = UNIX_EPOCH;
        let long = "x".repeat(MAX_NAME + 1);
        let with_pod = |pod: &str| {
            let mut s = summary("a", 1);
            s.containers.push(pb::ContainerSummary {
                container: Some(pb::Container {
                    id: "c1".into(),
                    pod: pod.into(),
                    ..Default::default()
                }),
                values: vec![0.0],
                ..Default::default()
            });
            s
        };
        book.ingest(with_pod(&"x".repeat(MAX_NAME)), now).unwrap();
        let err = book.ingest(with_pod(&long), now).unwrap_err().to_string();
        assert!(
            err.contains("a pod name of 513 bytes; at most 512"),
            "{err}"
        );
        let mut feature = summary("a", 2);
        feature.features = vec![long.clone()];
        let err = book.ingest(feature, now).unwrap_err().to_string();
        assert!(err.contains("a feature name of 513 bytes"), "{err}");
        let mut findings = summary("a", 3);
        findings.findings = vec![pb::Finding::default(); MAX_FINDINGS + 1];
        let err = book.ingest(findings, now).unwrap_err().to_string();
        assert!(err.contains("2001 findings; at most 2000"), "{err}");
        let mut text = summary("a", 4);
        text.findings = vec![pb::Finding {
            summary: "x".repeat(MAX_TEXT + 1),
            ..Default::default()
        }];
        let err = book.ingest(text, now).unwrap_err().to_string();
        assert!(err.contains("a finding's summary of 4097 bytes"), "{err}");
        // The refused summaries left the accepted one as it was.
        assert_eq!(book.all().next().unwrap().1.received, 1);
    }

    #[test]
    fn broken_summaries_are_refused_and_named() {
        let mut book = NodeBook::default();
        let now = UNIX_EPOCH;
        assert_eq!(book.ingest(summary("", 1), now), Err(IngestError::NoNode));
        let mut short = summary("a", 1);
        short.containers.push(pb::ContainerSummary {
            container: Some(pb::Container {
                id: "c1".into(),
                ..Default::default()
            }),
            values: vec![],
            ..Default::default()
        });
        let err = book.ingest(short, now).unwrap_err().to_string();
        assert!(
            err.contains("container c1 has 0 values for 1 features"),
            "{err}"
        );
        assert!(book.is_empty(), "nothing of a refused summary is kept");
    }

    #[test]
    fn values_in_the_matrix_or_per_container_read_the_same() {
        let container = |values: Vec<f64>| pb::ContainerSummary {
            container: Some(pb::Container {
                id: "c1".into(),
                ..Default::default()
            }),
            values,
            ..Default::default()
        };
        let domain = |stats: Vec<f64>| pb::DomainSummary {
            domain: "shop/Deployment/web/app".into(),
            medians: stats.clone(),
            mads: stats,
            ..Default::default()
        };
        let mut old = summary("a", 1);
        old.containers.push(container(vec![0.5]));
        old.domains.push(domain(vec![0.25]));
        let mut new = summary("b", 1);
        new.containers.push(container(vec![]));
        new.domains.push(domain(vec![]));
        new.values = vec![0.5];
        (new.domain_medians, new.domain_mads) = (vec![0.25], vec![0.25]);
        let mut book = NodeBook::default();
        book.ingest(old, UNIX_EPOCH).unwrap();
        book.ingest(new.clone(), UNIX_EPOCH).unwrap();
        for (_, entry) in book.all() {
            let (_, _, values) = entry.containers().next().unwrap();
            assert_eq!(values, [0.5]);
            assert_eq!(domain_stats(&entry.summary, 0), (&[0.25][..], &[0.25][..]));
        }
        // A matrix that does not fit its containers is refused.
        new.values.push(1.0);
        let err = book.ingest(new, UNIX_EPOCH).unwrap_err().to_string();
        assert!(err.contains("2 values for 1 containers"), "{err}");
    }

    #[test]
    fn losses_a_node_claims_past_u64_saturate_instead_of_overflowing() {
        let mut book = NodeBook::default();
        let now = UNIX_EPOCH + Duration::from_secs(100);
        // After u64::MAX the next expected number wraps to 0, so each MAX claims MAX lost.
        for sequence in [0, u64::MAX, u64::MAX] {
            book.ingest(summary("a", sequence), now).unwrap();
        }
        assert_eq!(book.all().next().unwrap().1.lost, u64::MAX);
    }
}
