//! Finds the entity that strays from its peers, and the domain that moved together.
//!
//! Each window, every domain on a node with at least `min_peers` members is compared feature
//! by feature: robust z of each member's level against the members' median and floored MAD,
//! and of its move away from its own baseline against the others' moves, with a spread of
//! at least the domain's learned usual spread of moves (`spreads`) and against the
//! member's own usual spikes (`history`), and no further than the tail probability the
//! domain's learned moves give it (`score::calibrated`). A deviation counts as far as the views agree, so
//! a peer that always runs at another level is not an outlier, nor is a blip or spike size
//! the domain or the member makes every day. Domains with fewer members compare each entity
//! with its own recent history and, once it has one, its own past at the same time of day
//! (`season`). Runs of anomalous windows become [`Finding`]s; a third or
//! more of a domain moving at once becomes one domain shift finding (`shift`). Pure code:
//! the live agent and `replay` feed it windows the same way.
//!
//! The domain's member × feature matrices (`score::Scratch`) are plain feature-major
//! `Vec<f64>`s rather than ndarray's `Array2`, which the aggregator's `matrix` uses: they are
//! reused from domain to domain and window to window so that scoring allocates nothing, and
//! every step reads one feature's members as one contiguous slice, which is what a
//! feature-major buffer already is. Views of ndarray over the same buffers would index them
//! the same way and add a layer over code that the reference tests pin window by window.

mod alarm;
mod config;
mod error;
pub mod evaluate;
mod finding;
pub mod floors;
pub mod frames;
mod history;
pub mod proto;
mod score;
mod season;
mod shift;
mod sketch;
mod spreads;
mod stats;
pub mod synthetic;

use std::collections::HashSet;
use std::time::SystemTime;

use rustc_hash::{FxHashMap, FxHashSet};
use tracing::debug;

use alarm::{Alarm, Verdict};
pub use config::DetectConfig;
pub use error::DetectError;
pub use finding::{Basis, Comparison, Driver, Finding, Kind, Severity, Subject, finding_id};
use history::History;
pub use score::FeatureStats;
use score::{Member, Scored, Scratch, score_domain};
use season::Seasons;
use shift::{Change, Shifts, moved_together};
use spreads::Spreads;
use stats::Floors;
pub use stats::{mad, median, median_in_place};

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
    /// Its features' largest |z|, corrected for the number of features compared (Šidák, see
    /// [`DetectConfig::threshold`]); 0 when nothing could be compared.
    pub score: f64,
    /// Whether the entity has an open finding after this window.
    pub flagged: bool,
    /// Every feature in the detector's order, against its reference; `None` where it could
    /// not be compared. Empty when the window was observed without this entity's
    /// comparisons (see [`Detail`]).
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

/// What a detector's state holds (see [`Detector::footprint`]). Per entity: its history,
/// its record (plus the heap of its id and names), while one is held, a spike's values, and
/// while it is judged on its own past (too few peers), its seasonal past; per domain: one
/// sketch per feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub entities: usize,
    /// Fixed per entity: `history` values and ages per feature.
    pub history_bytes_per_entity: usize,
    /// Fixed per entity, besides the heap of its strings.
    pub entity_bytes: usize,
    /// Held spikes' values, all entities together (at most `spike_windows` windows each).
    pub held_spike_bytes: usize,
    /// Entities with a seasonal past: those judged on their own past within the last
    /// `season_period` windows. An entity with peers has none.
    pub seasonal_entities: usize,
    /// Fixed per entity with a seasonal past: `season_buckets + 3` summaries of 20 bytes per
    /// feature, and its record.
    pub season_bytes_per_entity: usize,
    /// Domains with learned spreads.
    pub domains: usize,
    pub spread_bytes: usize,
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

/// Which entities' scores in a [`WindowReport`] carry every feature's comparison. Scores,
/// findings and domain statistics are the same either way; a comparison per feature and
/// entity is most of a report's size and of its cost when a cluster's worth of entities is
/// observed at once.
#[derive(Debug, Clone, Copy, Default)]
pub enum Detail<'a> {
    /// Every entity's (what the agent's API and metrics show).
    #[default]
    All,
    /// Only those of the entities named.
    Only(&'a HashSet<String>),
}

impl Detail<'_> {
    fn wants(&self, entity: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(entities) => entities.contains(entity),
        }
    }
}

/// What the detector remembers of one entity; all of it goes when the entity does.
#[derive(Debug)]
struct Entity {
    subject: Subject,
    /// Windows seen so far; under `warmup` the entity is watched but not judged.
    seen: usize,
    /// Windows in a row without this entity.
    absent: usize,
    /// Anomalous windows in a row.
    anomalous_run: usize,
    alarm: Alarm,
    finding: Option<Box<Finding>>,
    /// The last window (the detector's count) that had this entity.
    window: u64,
    /// The values of its latest short anomalous run, until it proves a spike or not.
    spike: Option<Box<Spike>>,
}

/// A short anomalous run held back from an entity's history: when calm follows for
/// `spike_settle` windows, it was a spike and joins the history, so that its size is known
/// the next time; a longer run, or one soon followed by another, is dropped.
#[derive(Debug, Default)]
struct Spike {
    /// Its windows' values, one window after the other.
    values: Vec<Option<f64>>,
    windows: usize,
    /// Calm windows since it ended.
    calm: usize,
    /// Longer than a spike may be.
    long: bool,
}

impl Entity {
    fn new(subject: Subject, window: u64) -> Self {
        Self {
            subject,
            seen: 0,
            absent: 0,
            anomalous_run: 0,
            alarm: Alarm::default(),
            finding: None,
            window,
            spike: None,
        }
    }

    fn close(&mut self, at: SystemTime) -> Option<Finding> {
        let mut finding = *self.finding.take()?;
        finding.closed = Some(at);
        Some(finding)
    }
}

/// Scores windows of observations and keeps the findings they lead to.
pub struct Detector {
    config: DetectConfig,
    features: Vec<String>,
    floors: Vec<Floors>,
    /// Entity id → its slot in `slots` and in `history`.
    index: FxHashMap<String, usize>,
    slots: Vec<Option<Entity>>,
    /// Slots whose entity was forgotten, for the next new one.
    free: Vec<usize>,
    /// Every entity's own past values: its baseline.
    history: History,
    /// The longer own past of the entities judged on their own past.
    seasons: Seasons,
    /// Each domain's usual spread of moves, when learned.
    spreads: Option<Spreads>,
    /// The learned spreads of the domain at hand.
    learned: Vec<f64>,
    /// Each domain's "moved together" alarm and finding.
    shifts: Shifts,
    scratch: Scratch,
    /// Windows observed (or refused) so far.
    windows: u64,
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
            history: History::new(features.len(), config.history),
            seasons: Seasons::new(
                features.len(),
                config.season_period,
                config.season_buckets,
                config.warmup,
                config.history / 2,
            ),
            spreads: config
                .learned_spreads
                .then(|| Spreads::new(&config, features.len())),
            learned: vec![0.0; features.len()],
            shifts: Shifts::default(),
            config,
            features,
            floors,
            index: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            scratch: Scratch::default(),
            windows: 0,
        })
    }

    pub fn features(&self) -> &[String] {
        &self.features
    }

    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    /// The findings open now: members' and domains'.
    pub fn open_findings(&self) -> impl Iterator<Item = &Finding> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|e| e.finding.as_deref())
            .chain(self.shifts.open())
    }

    /// How many entities the detector keeps state for.
    pub fn tracked(&self) -> usize {
        self.index.len()
    }

    /// What the detector's state holds now, for benchmarks and capacity planning.
    pub fn footprint(&self) -> Footprint {
        let (domains, spread_bytes) = self.spreads.as_ref().map_or((0, 0), Spreads::footprint);
        let held_spikes = self
            .slots
            .iter()
            .flatten()
            .filter_map(|e| e.spike.as_ref())
            .map(|s| size_of::<Spike>() + s.values.capacity() * size_of::<Option<f64>>())
            .sum();
        Footprint {
            entities: self.index.len(),
            history_bytes_per_entity: self.history.bytes_per_slot(),
            entity_bytes: size_of::<Option<Entity>>() + size_of::<Subject>(),
            held_spike_bytes: held_spikes,
            seasonal_entities: self.seasons.entities(),
            season_bytes_per_entity: self.seasons.bytes_per_entity(),
            domains,
            spread_bytes,
        }
    }

    /// Scores one window, observed at `at`, with every entity's comparisons in the report.
    /// Entities missing from `forget_after` windows in a row are forgotten. Nothing changes
    /// when the window is rejected.
    pub fn observe(
        &mut self,
        at: SystemTime,
        window: &[Observation],
    ) -> Result<WindowReport, DetectError> {
        self.observe_with(at, window, Detail::All)
    }

    /// [`Detector::observe`], with the comparisons of the entities `detail` names only.
    pub fn observe_with(
        &mut self,
        at: SystemTime,
        window: &[Observation],
        detail: Detail<'_>,
    ) -> Result<WindowReport, DetectError> {
        self.windows += 1;
        let known = self.check(window)?;
        let new = known.iter().filter(|k| k.is_none()).count();
        let fresh = new.saturating_sub(self.free.len());
        self.history.reserve(fresh);
        self.slots.reserve(fresh);
        self.index.reserve(new);
        let mut report = WindowReport::default();
        let slots: Vec<usize> = window
            .iter()
            .zip(known)
            .map(|(obs, known)| self.place(at, &obs.subject, known, &mut report))
            .collect();

        // Members of each domain (on each node, when compared per node), domains in order.
        let mut groups: FxHashMap<(&str, &str), usize> = FxHashMap::default();
        let mut keys: Vec<(&str, &str)> = Vec::new();
        let group_of: Vec<usize> = window
            .iter()
            .map(|obs| {
                let node = if self.config.per_node {
                    obs.subject.node.as_str()
                } else {
                    ""
                };
                let key = (node, obs.subject.domain.as_str());
                *groups.entry(key).or_insert_with(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect();
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by_key(|&g| keys[g]);
        let mut starts = vec![0usize; keys.len() + 1];
        for &g in &group_of {
            starts[g + 1] += 1;
        }
        for g in 0..keys.len() {
            starts[g + 1] += starts[g];
        }
        let mut members = vec![0usize; window.len()];
        let mut next = starts.clone();
        for (i, &g) in group_of.iter().enumerate() {
            members[next[g]] = i;
            next[g] += 1;
        }

        let mut scores: Vec<(f64, Vec<Option<Comparison>>, usize)> =
            vec![(0.0, Vec::new(), 0); window.len()];
        let mut inputs: Vec<Member<'_>> = Vec::new();
        for g in order {
            let (node, domain) = keys[g];
            let members = &members[starts[g]..starts[g + 1]];
            inputs.clear();
            inputs.extend(members.iter().map(|&i| Member {
                values: &window[i].values,
                slot: slots[i],
                detail: detail.wants(&window[i].subject.entity),
            }));
            let usual = match &self.spreads {
                Some(spreads) => {
                    spreads.floors(node, domain, &mut self.learned);
                    spreads.usual(node, domain)
                }
                None => {
                    self.learned.fill(0.0);
                    vec![None; self.features.len()]
                }
            };
            let (mut scored, stats) = score_domain(
                &self.config,
                &self.features,
                &self.floors,
                &self.learned,
                &usual,
                &self.history,
                &self.seasons,
                self.windows,
                &inputs,
                &mut self.scratch,
            );
            // A member with a value of a feature too few members have is judged on its own
            // past: it keeps a seasonal past while it is, and loses it a period after. Most
            // domains have peers on every feature, and then no member needs looking at.
            let judged_alone = self.seasons.enabled()
                && stats
                    .iter()
                    .any(|s| s.is_some_and(|s| s.basis == Basis::OwnHistory));
            for &i in members {
                let alone = judged_alone
                    && stats.iter().zip(&window[i].values).any(|(s, v)| {
                        v.is_some() && s.is_some_and(|s| s.basis == Basis::OwnHistory)
                    });
                if alone {
                    self.seasons.alone(slots[i], self.windows);
                } else {
                    self.seasons.forget_if_peered(slots[i], self.windows);
                }
            }
            for (&i, scored) in members.iter().zip(&mut scored) {
                scores[i] = (
                    scored.score,
                    std::mem::take(&mut scored.features),
                    members.len(),
                );
            }
            report.domains.push(DomainStats {
                node: node.to_owned(),
                domain: domain.to_owned(),
                members: members.len(),
                features: stats,
            });
            let moved = if self.config.domain_shifts {
                let (values, own_zs, own) = self.scratch.own_view();
                let strays: Vec<bool> = scored
                    .iter()
                    .map(|s| s.score >= self.config.threshold)
                    .collect();
                moved_together(
                    &self.config,
                    &self.features,
                    members.len(),
                    values,
                    own_zs,
                    own,
                    &strays,
                )
            } else {
                None
            };
            let together = moved.is_some();
            match self
                .shifts
                .record(&self.config, at, self.windows, node, domain, moved)
            {
                Some(Change::Opened(f)) => report.opened.push(f),
                Some(Change::Updated(f)) => report.updated.push(f),
                Some(Change::Closed(f)) => report.closed.push(f),
                None => {}
            }
            self.judge(at, window, members, &slots, scored, together, &mut report);
            if let Some(spreads) = &mut self.spreads {
                // A member with an open finding does not teach the domain what is usual; a
                // lone anomalous window does, or blips would never become known.
                let ordinary: Vec<bool> = members
                    .iter()
                    .map(|&i| {
                        self.slots[slots[i]]
                            .as_ref()
                            .is_some_and(|e| e.finding.is_none())
                    })
                    .collect();
                spreads.learn(
                    node,
                    domain,
                    self.windows,
                    self.scratch.pooled(),
                    self.scratch.pooled_lasting(),
                    &ordinary,
                );
            }
        }

        self.forget(at, &mut report);
        self.shifts.forget(
            at,
            self.windows,
            self.config.forget_after,
            &mut report.closed,
        );
        if let Some(spreads) = &mut self.spreads {
            spreads.forget(self.windows, self.config.forget_after);
        }

        report.scores = window
            .iter()
            .zip(scores)
            .zip(&slots)
            .map(|((obs, (score, features, peers)), &slot)| EntityScore {
                entity: obs.subject.entity.clone(),
                score,
                features,
                peers,
                flagged: self.slots[slot]
                    .as_ref()
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

    /// Checks a window before anything changes; returns the slot of each observation's
    /// entity where the detector knows it.
    fn check(&mut self, window: &[Observation]) -> Result<Vec<Option<usize>>, DetectError> {
        let mut new = FxHashSet::default();
        let mut known = Vec::with_capacity(window.len());
        for obs in window {
            let entity = &obs.subject.entity;
            let slot = self.index.get(entity.as_str()).copied();
            // A known entity is marked with this window once it is seen in it.
            let twice = match slot.and_then(|s| self.slots[s].as_mut()) {
                Some(e) => std::mem::replace(&mut e.window, self.windows) == self.windows,
                None => !new.insert(entity.as_str()),
            };
            if twice {
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
            known.push(slot);
        }
        Ok(known)
    }

    /// The slot of an observed entity: its own, started over when it moved to another
    /// domain or node (closing its finding), or a new one.
    fn place(
        &mut self,
        at: SystemTime,
        subject: &Subject,
        known: Option<usize>,
        report: &mut WindowReport,
    ) -> usize {
        if let Some(slot) = known
            && let Some(entity) = self.slots[slot].as_mut()
        {
            if entity.subject.domain != subject.domain || entity.subject.node != subject.node {
                report.closed.extend(entity.close(at));
                *entity = Entity::new(subject.clone(), self.windows);
                self.history.clear(slot);
                self.seasons.clear(slot);
            } else if entity.subject != *subject {
                entity.subject.clone_from(subject);
            }
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.history.clear(slot);
                self.seasons.clear(slot);
                slot
            }
            None => {
                self.slots.push(None);
                self.history.grow()
            }
        };
        self.slots[slot] = Some(Entity::new(subject.clone(), self.windows));
        self.index.insert(subject.entity.clone(), slot);
        slot
    }

    /// Counts the absence of every entity not in this window, and forgets those absent for
    /// `forget_after` windows, closing their findings.
    fn forget(&mut self, at: SystemTime, report: &mut WindowReport) {
        for (slot, place) in self.slots.iter_mut().enumerate() {
            let Some(entity) = place.as_mut() else {
                continue;
            };
            if entity.window == self.windows {
                continue;
            }
            entity.absent += 1;
            if entity.absent < self.config.forget_after {
                continue;
            }
            report.closed.extend(entity.close(at));
            self.index.remove(&entity.subject.entity);
            *place = None;
            self.free.push(slot);
            self.seasons.clear(slot);
        }
    }

    /// Turns one domain's scores into findings and feeds the members' baselines; no member
    /// finding opens while the domain moves `together`.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        at: SystemTime,
        window: &[Observation],
        members: &[usize],
        slots: &[usize],
        scored: Vec<Scored>,
        together: bool,
        report: &mut WindowReport,
    ) {
        let config = &self.config;
        let mut candidates = Vec::new();
        for (&i, scored) in members.iter().zip(scored) {
            let obs = &window[i];
            let slot = slots[i];
            let Some(entity) = self.slots[slot].as_mut() else {
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
                Verdict::Open => candidates.push((slot, scored)),
                Verdict::Update => {
                    if let Some(finding) = entity.finding.as_mut() {
                        finding.updated = at;
                        finding.peak_score = finding.peak_score.max(scored.score);
                        finding.severity = severity(config, finding.peak_score);
                        finding.drivers = scored.drivers;
                        report.updated.push((**finding).clone());
                    }
                }
                Verdict::Close => report.closed.extend(entity.close(at)),
            }

            for (f, value) in obs.values.iter().enumerate() {
                if let Some(value) = value {
                    self.history.note(slot, f, *value);
                }
            }
            // While a finding is open, a window that is not calm is held back too: a tail
            // between the thresholds must not become the entity's usual spread.
            let anomalous = judged >= config.threshold
                || (entity.finding.is_some() && judged >= config.close_threshold);
            entity.anomalous_run = if anomalous {
                entity.anomalous_run + 1
            } else {
                0
            };
            // A fault must not become its own baseline; a level that lasts long enough must,
            // and so must a short spike once calm has followed it for long enough.
            if !anomalous || entity.anomalous_run > config.adapt_after {
                for (f, value) in obs.values.iter().enumerate() {
                    if let Some(value) = value {
                        self.history.push(slot, f, *value);
                    }
                }
                self.seasons.learn(slot, self.windows, &obs.values);
            }
            if let Some(spike) = spike_after(config, &mut entity.spike, anomalous, &obs.values) {
                for (k, value) in spike.values.iter().enumerate() {
                    if let Some(value) = value {
                        self.history.push(slot, k % obs.values.len(), *value);
                    }
                }
            }
            entity.seen = entity.seen.saturating_add(1);
            entity.absent = 0;
        }
        if candidates.is_empty() {
            return;
        }
        if together {
            debug!(
                domain = %window[members[0]].subject.domain,
                candidates = candidates.len(),
                "the domain moved together; its shift is the finding, not its members"
            );
            return;
        }

        let open = members
            .iter()
            .filter(|&&i| {
                self.slots[slots[i]]
                    .as_ref()
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
        for (slot, scored) in candidates {
            if let Some(entity) = self.slots[slot].as_mut() {
                let finding = Finding {
                    kind: Kind::Member,
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
                entity.finding = Some(Box::new(finding));
            }
        }
    }
}

/// Follows an entity's possible spike through one window; returns it once it has settled
/// and joins the history.
fn spike_after(
    config: &DetectConfig,
    spike: &mut Option<Box<Spike>>,
    anomalous: bool,
    values: &[Option<f64>],
) -> Option<Box<Spike>> {
    if config.spike_windows == 0 {
        return None;
    }
    if anomalous {
        let held = spike.get_or_insert_with(Box::default);
        if held.calm > 0 {
            // Another run before the last settled: neither was a lone spike.
            **held = Spike::default();
        }
        if held.windows < config.spike_windows {
            held.values.extend_from_slice(values);
            held.windows += 1;
        } else {
            held.long = true;
        }
        return None;
    }
    let held = spike.as_mut()?;
    held.calm += 1;
    if held.long {
        *spike = None;
        return None;
    }
    if held.calm >= config.spike_settle {
        return spike.take();
    }
    None
}

pub(crate) fn severity(config: &DetectConfig, peak: f64) -> Severity {
    if peak >= config.critical_score {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

#[cfg(test)]
mod noise_tests;
#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod season_tests;
#[cfg(test)]
mod tests;
