//! Finds the entity that strays from its peers.
//!
//! Each window, every domain on a node with at least `min_peers` members is compared feature
//! by feature: robust z of each member's level against the members' median and floored MAD,
//! and of its move away from its own baseline against the others' moves. A deviation counts
//! as far as both agree, so a peer that always runs at another level is not an outlier.
//! Domains with fewer members compare each entity with its own recent history. Runs of
//! anomalous windows become [`Finding`]s. Pure code: the live agent and `replay` feed it
//! windows the same way.

mod alarm;
mod config;
mod error;
mod finding;
pub mod floors;
pub mod proto;
mod ring;
mod score;
mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use tracing::debug;

use alarm::{Alarm, Verdict};
pub use config::DetectConfig;
pub use error::DetectError;
pub use finding::{Basis, Comparison, Driver, Finding, Severity, Subject, finding_id};
use ring::Ring;
pub use score::FeatureStats;
use score::{Member, Scored, score_domain};
use stats::Floors;
pub use stats::{mad, median};

/// One entity's features in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub subject: Subject,
    /// One value per detector feature, in the detector's order; `None` is missing.
    pub values: Vec<Option<f64>>,
}

/// One entity's result for one window.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityScore {
    pub entity: String,
    /// Largest |z| over its features (0 when nothing could be compared).
    pub score: f64,
    /// Whether the entity has an open finding after this window.
    pub flagged: bool,
    /// Every feature in the detector's order, against its reference; `None` where it could
    /// not be compared. Empty while the entity is warming up.
    pub features: Vec<Option<Comparison>>,
    /// Members of its domain on its node in this window, itself included.
    pub peers: usize,
}

/// One domain on one node in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainStats {
    pub node: String,
    pub domain: String,
    /// Members in this window.
    pub members: usize,
    /// Every feature in the detector's order; `None` where no member had a value.
    pub features: Vec<Option<FeatureStats>>,
}

/// What one window changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowReport {
    /// One per observation, in the order given.
    pub scores: Vec<EntityScore>,
    /// Findings opened in this window.
    pub opened: Vec<Finding>,
    /// Open findings that got another anomalous window: a new peak, severity or drivers.
    pub updated: Vec<Finding>,
    /// Findings closed in this window, including those of entities that went away.
    pub closed: Vec<Finding>,
    /// Each domain's statistics, by node and domain.
    pub domains: Vec<DomainStats>,
}

/// What the detector remembers of one entity; all of it goes when the entity does.
struct Entity {
    subject: Subject,
    /// One ring per feature: the entity's own baseline.
    history: Vec<Ring>,
    /// Windows seen so far; under `warmup` the entity is watched but not judged.
    seen: usize,
    /// Windows in a row without this entity.
    absent: usize,
    /// Anomalous windows in a row.
    anomalous_run: usize,
    alarm: Alarm,
    finding: Option<Finding>,
}

impl Entity {
    fn new(subject: Subject, features: usize, history: usize) -> Self {
        Self {
            subject,
            history: vec![Ring::new(history); features],
            seen: 0,
            absent: 0,
            anomalous_run: 0,
            alarm: Alarm::default(),
            finding: None,
        }
    }

    fn close(&mut self, at: SystemTime) -> Option<Finding> {
        let mut finding = self.finding.take()?;
        finding.closed = Some(at);
        Some(finding)
    }
}

/// Scores windows of observations and keeps the findings they lead to.
pub struct Detector {
    config: DetectConfig,
    features: Vec<String>,
    floors: Vec<Floors>,
    entities: HashMap<String, Entity>,
}

impl Detector {
    /// A detector for the named features; observations carry values in this order.
    pub fn new(config: DetectConfig, features: Vec<String>) -> Result<Self, DetectError> {
        config.validate()?;
        if features.is_empty() {
            return Err(DetectError::NoFeatures);
        }
        let mut names = HashSet::new();
        if let Some(twice) = features.iter().find(|f| !names.insert(f.as_str())) {
            return Err(DetectError::DuplicateFeature(twice.clone()));
        }
        if let Some(unknown) = config
            .absolute_floors
            .keys()
            .find(|f| !names.contains(f.as_str()))
        {
            return Err(DetectError::UnknownFeature(unknown.clone()));
        }
        let floors = features
            .iter()
            .map(|f| Floors {
                relative: config.relative_floor,
                absolute: config
                    .absolute_floors
                    .get(f)
                    .copied()
                    .unwrap_or(config.default_absolute_floor),
            })
            .collect();
        Ok(Self {
            config,
            features,
            floors,
            entities: HashMap::new(),
        })
    }

    pub fn features(&self) -> &[String] {
        &self.features
    }

    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    /// The findings open now.
    pub fn open_findings(&self) -> impl Iterator<Item = &Finding> {
        self.entities.values().filter_map(|e| e.finding.as_ref())
    }

    /// How many entities the detector keeps state for.
    pub fn tracked(&self) -> usize {
        self.entities.len()
    }

    /// Scores one window, observed at `at`. Entities missing from `forget_after` windows in
    /// a row are forgotten. Nothing changes when the window is rejected.
    pub fn observe(
        &mut self,
        at: SystemTime,
        window: &[Observation],
    ) -> Result<WindowReport, DetectError> {
        self.check(window)?;
        let mut report = WindowReport::default();
        for obs in window {
            let subject = &obs.subject;
            let moved = self.entities.get(&subject.entity).is_some_and(|e| {
                e.subject.domain != subject.domain || e.subject.node != subject.node
            });
            if moved && let Some(mut old) = self.entities.remove(&subject.entity) {
                report.closed.extend(old.close(at));
            }
            let (features, history) = (self.features.len(), self.config.history);
            let entity = self
                .entities
                .entry(subject.entity.clone())
                .or_insert_with(|| Entity::new(subject.clone(), features, history));
            entity.subject = subject.clone();
        }

        let mut domains: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, obs) in window.iter().enumerate() {
            let node = if self.config.per_node {
                obs.subject.node.as_str()
            } else {
                ""
            };
            let key = (node, obs.subject.domain.as_str());
            domains.entry(key).or_default().push(i);
        }
        let mut scores = vec![(0.0, Vec::new(), 0); window.len()];
        for (&(node, domain), members) in &domains {
            let (scored, stats) = self.score(window, members);
            for (&i, scored) in members.iter().zip(&scored) {
                scores[i] = (scored.score, scored.features.clone(), members.len());
            }
            report.domains.push(DomainStats {
                node: node.to_owned(),
                domain: domain.to_owned(),
                members: members.len(),
                features: stats,
            });
            self.judge(at, window, members, scored, &mut report);
        }

        let present: HashSet<&str> = window.iter().map(|o| o.subject.entity.as_str()).collect();
        let forget_after = self.config.forget_after;
        self.entities.retain(|id, entity| {
            if present.contains(id.as_str()) {
                return true;
            }
            entity.absent += 1;
            if entity.absent < forget_after {
                return true;
            }
            report.closed.extend(entity.close(at));
            false
        });

        report.scores = window
            .iter()
            .zip(scores)
            .map(|(obs, (score, features, peers))| EntityScore {
                entity: obs.subject.entity.clone(),
                score,
                features,
                peers,
                flagged: self
                    .entities
                    .get(&obs.subject.entity)
                    .is_some_and(|e| e.finding.is_some()),
            })
            .collect();
        report
            .opened
            .sort_by(|a, b| a.subject.entity.cmp(&b.subject.entity));
        report
            .closed
            .sort_by(|a, b| a.subject.entity.cmp(&b.subject.entity));
        report
            .updated
            .sort_by(|a, b| a.subject.entity.cmp(&b.subject.entity));
        Ok(report)
    }

    fn check(&self, window: &[Observation]) -> Result<(), DetectError> {
        let mut seen = HashSet::new();
        for obs in window {
            let entity = &obs.subject.entity;
            if !seen.insert(entity.as_str()) {
                return Err(DetectError::DuplicateEntity(entity.clone()));
            }
            if obs.values.len() != self.features.len() {
                return Err(DetectError::FeatureCount {
                    entity: entity.clone(),
                    expected: self.features.len(),
                    got: obs.values.len(),
                });
            }
            if let Some(f) = obs
                .values
                .iter()
                .position(|v| v.is_some_and(|v| !v.is_finite()))
            {
                return Err(DetectError::NonFinite {
                    entity: entity.clone(),
                    feature: self.features[f].clone(),
                });
            }
        }
        Ok(())
    }

    /// Scores the members (indices into `window`) of one domain.
    fn score(
        &self,
        window: &[Observation],
        members: &[usize],
    ) -> (Vec<Scored>, Vec<Option<FeatureStats>>) {
        let inputs: Vec<Member<'_>> = members
            .iter()
            .filter_map(|&i| {
                let obs = &window[i];
                let entity = self.entities.get(&obs.subject.entity)?;
                Some(Member {
                    values: &obs.values,
                    history: &entity.history,
                })
            })
            .collect();
        score_domain(&self.config, &self.features, &self.floors, &inputs)
    }

    /// Turns one domain's scores into findings and feeds the members' baselines.
    fn judge(
        &mut self,
        at: SystemTime,
        window: &[Observation],
        members: &[usize],
        scored: Vec<Scored>,
        report: &mut WindowReport,
    ) {
        let config = &self.config;
        let mut candidates = Vec::new();
        for (&i, scored) in members.iter().zip(scored) {
            let obs = &window[i];
            let Some(entity) = self.entities.get_mut(&obs.subject.entity) else {
                continue;
            };
            let judged = if entity.seen < config.warmup {
                0.0
            } else {
                scored.score
            };
            match entity
                .alarm
                .record(config, judged, entity.finding.is_some())
            {
                Verdict::Quiet => {}
                Verdict::Open => candidates.push((obs.subject.entity.clone(), scored)),
                Verdict::Update => {
                    if let Some(finding) = entity.finding.as_mut() {
                        finding.updated = at;
                        finding.peak_score = finding.peak_score.max(scored.score);
                        finding.severity = severity(config, finding.peak_score);
                        finding.drivers = scored.drivers;
                        report.updated.push(finding.clone());
                    }
                }
                Verdict::Close => report.closed.extend(entity.close(at)),
            }

            let anomalous = judged >= config.threshold;
            entity.anomalous_run = if anomalous {
                entity.anomalous_run + 1
            } else {
                0
            };
            // A fault must not become its own baseline; a level that lasts long enough must.
            if !anomalous || entity.anomalous_run > config.adapt_after {
                for (ring, value) in entity.history.iter_mut().zip(&obs.values) {
                    if let Some(value) = value {
                        ring.push(*value);
                    }
                }
            }
            entity.seen = entity.seen.saturating_add(1);
            entity.absent = 0;
        }
        if candidates.is_empty() {
            return;
        }

        let open = members
            .iter()
            .filter(|&&i| {
                self.entities
                    .get(&window[i].subject.entity)
                    .is_some_and(|e| e.finding.is_some())
            })
            .count();
        let cap = ((config.max_share * members.len() as f64).floor() as usize).max(1);
        if open + candidates.len() > cap {
            debug!(
                domain = %window[members[0]].subject.domain,
                candidates = candidates.len(),
                open,
                cap,
                "too much of the domain deviates at once; taking it for the herd"
            );
            return;
        }
        for (id, scored) in candidates {
            if let Some(entity) = self.entities.get_mut(&id) {
                let finding = Finding {
                    id: finding_id(&entity.subject, at),
                    subject: entity.subject.clone(),
                    severity: severity(config, scored.score),
                    opened: at,
                    updated: at,
                    closed: None,
                    peak_score: scored.score,
                    drivers: scored.drivers,
                };
                report.opened.push(finding.clone());
                entity.finding = Some(finding);
            }
        }
    }
}

fn severity(config: &DetectConfig, peak: f64) -> Severity {
    if peak >= config.critical_score {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

#[cfg(test)]
mod tests;
