//! The detector against a plain one: each median a sort of a copy, each baseline recomputed
//! from a ring of every entity's values, every comparison kept, as the detector did before it
//! was made cheap enough for a cluster. On a seeded fleet with strays, churn, moves, missing
//! values and domains too small for peers, both must give the same scores, comparisons and
//! findings, window after window.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use statrs::distribution::{ContinuousCDF, Normal};

use super::alarm::{Alarm, Verdict};
use super::score::{calibrated, combined};
use super::spreads::{Spreads, Usual};
use super::stats::{self, CONSISTENCY, Floors, Spread, small_sample_z};
use super::*;
use crate::synthetic::Rng;

fn sorted_median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

fn spread(values: &[f64], level: Option<f64>, floors: Floors) -> Option<Spread> {
    let median = sorted_median(values)?;
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    let mad = sorted_median(&deviations)?;
    let level = level.unwrap_or(median).abs();
    let scale = mad.max(floors.relative * level).max(floors.absolute);
    Some(Spread { median, scale })
}

/// The spread that puts a ring's second-largest or second-smallest value where the second
/// largest of as many normal values falls; `None` under five values.
fn usual_spread(values: &[f64]) -> Option<f64> {
    let n = values.len();
    if n < 5 {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted_median(&sorted)?;
    let tail = Normal::standard().inverse_cdf(1.0 - 2.0 / (n as f64 + 1.0));
    Some(CONSISTENCY * (sorted[n - 2] - median).max(median - sorted[1]) / tail)
}

/// Median and floored MAD of a ring; where its MAD is 0, widened to put its third-largest or
/// third-smallest value where the third largest of as many normal values falls (from five
/// values on).
fn lasting_spread(values: &[f64], floors: Floors) -> Option<Spread> {
    let plain = spread(values, None, floors)?;
    let n = values.len();
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted_median(&sorted)?;
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    let mad = sorted_median(&deviations)?;
    if n < 5 || mad > 0.0 {
        return Some(plain);
    }
    let third = Normal::standard().inverse_cdf(1.0 - 3.0 / (n as f64 + 1.0));
    let wide = CONSISTENCY * (sorted[n - 3] - median).max(median - sorted[2]) / third;
    Some(Spread::floored(median, mad.max(wide), None, floors))
}

/// Median and floored MAD of a ring, widened to its usual spikes.
fn own_spread(values: &[f64], floors: Floors) -> Option<Spread> {
    let plain = spread(values, None, floors)?;
    let usual = usual_spread(values).unwrap_or(0.0);
    Some(Spread {
        scale: plain.scale.max(usual),
        ..plain
    })
}

/// A level one MAD or more from the median is clear of the middle: the level view then takes
/// any size.
fn clear(level: f64) -> f64 {
    if level.abs() >= CONSISTENCY {
        level.signum() * f64::INFINITY
    } else {
        level
    }
}

fn z_both_agree_on(level: f64, movement: f64) -> f64 {
    if level == 0.0 || movement == 0.0 || level.signum() != movement.signum() {
        0.0
    } else {
        level.signum() * level.abs().min(movement.abs())
    }
}

/// A held run's windows of values, calm windows since it ended, and whether it ran too long.
type Held = (Vec<Vec<Option<f64>>>, usize, bool);

struct PlainEntity {
    subject: Subject,
    rings: Vec<VecDeque<f64>>,
    /// Per feature, every value observed, the newest last (the last two are used).
    observed: Vec<Vec<f64>>,
    seen: usize,
    absent: usize,
    anomalous_run: usize,
    alarm: Alarm,
    finding: Option<Finding>,
    /// A short anomalous run held back: its windows' values, calm windows since, too long.
    held: Option<Held>,
}

/// The straightforward detector. `keep` is how a value enters a ring: as it is, or as the
/// detector stores it (`f32`).
struct Plain {
    config: DetectConfig,
    features: Vec<String>,
    floors: Vec<Floors>,
    entities: HashMap<String, PlainEntity>,
    keep: fn(f64) -> f64,
    spreads: Spreads,
    windows: u64,
}

struct PlainScored {
    score: f64,
    drivers: Vec<Driver>,
    features: Vec<Option<Comparison>>,
}

impl Plain {
    fn new(config: DetectConfig, features: &[&str], keep: fn(f64) -> f64) -> Self {
        let floors = features
            .iter()
            .map(|f| Floors {
                relative: config.relative_floor,
                absolute: config
                    .absolute_floors
                    .get(*f)
                    .copied()
                    .unwrap_or(config.default_absolute_floor),
            })
            .collect();
        Self {
            features: features.iter().map(|f| f.to_string()).collect(),
            floors,
            entities: HashMap::new(),
            keep,
            spreads: Spreads::new(&config, features.len()),
            config,
            windows: 0,
        }
    }

    fn observe(&mut self, at: SystemTime, window: &[Observation]) -> WindowReport {
        self.windows += 1;
        let mut report = WindowReport::default();
        for obs in window {
            let s = &obs.subject;
            let changed_domain = self
                .entities
                .get(&s.entity)
                .is_some_and(|e| e.subject.domain != s.domain || e.subject.node != s.node);
            if changed_domain && let Some(mut old) = self.entities.remove(&s.entity) {
                report.closed.extend(close(&mut old.finding, at));
            }
            let features = self.features.len();
            let entity = self
                .entities
                .entry(s.entity.clone())
                .or_insert_with(|| PlainEntity {
                    subject: s.clone(),
                    rings: vec![VecDeque::new(); features],
                    observed: vec![Vec::new(); features],
                    seen: 0,
                    absent: 0,
                    anomalous_run: 0,
                    alarm: Alarm::default(),
                    finding: None,
                    held: None,
                });
            entity.subject = s.clone();
        }
        let mut domains: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, obs) in window.iter().enumerate() {
            let node = if self.config.per_node {
                obs.subject.node.as_str()
            } else {
                ""
            };
            domains
                .entry((node, obs.subject.domain.as_str()))
                .or_default()
                .push(i);
        }
        let mut scores = vec![(0.0, Vec::new(), 0); window.len()];
        for (&(node, domain), members) in &domains {
            let mut learned = Vec::new();
            self.spreads.floors(node, domain, &mut learned);
            let usual = self.spreads.usual(node, domain);
            let (scored, stats, pooled, pooled_lasting) =
                self.score(window, members, &learned, &usual);
            for (&i, s) in members.iter().zip(&scored) {
                scores[i] = (s.score, s.features.clone(), members.len());
            }
            report.domains.push(DomainStats {
                node: node.to_owned(),
                domain: domain.to_owned(),
                members: members.len(),
                features: stats,
            });
            self.judge(at, window, members, scored, &mut report);
            let ordinary: Vec<bool> = members
                .iter()
                .map(|&i| self.entities[&window[i].subject.entity].finding.is_none())
                .collect();
            let n = members.len();
            let columns_of = |rows: &[Vec<Option<f64>>]| {
                let mut columns = vec![f64::NAN; self.features.len() * n];
                for (k, row) in rows.iter().enumerate() {
                    for (f, v) in row.iter().enumerate() {
                        columns[f * n + k] = v.unwrap_or(f64::NAN);
                    }
                }
                columns
            };
            let (columns, lasting) = (columns_of(&pooled), columns_of(&pooled_lasting));
            self.spreads
                .learn(node, domain, self.windows, &columns, &lasting, &ordinary);
        }
        self.spreads.forget(self.windows, self.config.forget_after);
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
            report.closed.extend(close(&mut entity.finding, at));
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
                flagged: self.entities[&obs.subject.entity].finding.is_some(),
            })
            .collect();
        for list in [&mut report.opened, &mut report.updated, &mut report.closed] {
            list.sort_by(|a, b| a.subject.entity.cmp(&b.subject.entity));
        }
        report
    }

    /// Scores, statistics, and each member's move less the median move per feature.
    #[allow(clippy::type_complexity)]
    fn score(
        &self,
        window: &[Observation],
        members: &[usize],
        learned: &[f64],
        tails: &[Option<Usual<'_>>],
    ) -> (
        Vec<PlainScored>,
        Vec<Option<FeatureStats>>,
        Vec<Vec<Option<f64>>>,
        Vec<Vec<Option<f64>>>,
    ) {
        let config = &self.config;
        let mut compared = vec![vec![None; self.features.len()]; members.len()];
        let mut pooled = vec![vec![None; self.features.len()]; members.len()];
        let mut pooled_lasting = vec![vec![None; self.features.len()]; members.len()];
        let mut stats = vec![None; self.features.len()];
        for (f, &floors) in self.floors.iter().enumerate() {
            // (member, value, own baseline and its samples, its usual spread, the median of
            // its last three values against its ring's plain spread)
            type Present = (
                usize,
                f64,
                Option<(Spread, usize)>,
                Option<f64>,
                Option<f64>,
            );
            let present: Vec<Present> = members
                .iter()
                .enumerate()
                .filter_map(|(k, &i)| {
                    let x = window[i].values[f]?;
                    let ring = &self.entities[&window[i].subject.entity].rings[f];
                    let values: Vec<f64> = ring.iter().copied().collect();
                    let baseline = values.len() >= config.warmup;
                    let own = baseline
                        .then(|| own_spread(&values, floors).map(|s| (s, values.len())))
                        .flatten();
                    let usual = baseline.then(|| usual_spread(&values)).flatten();
                    let observed = &self.entities[&window[i].subject.entity].observed[f];
                    let lasting = match observed.as_slice() {
                        [.., a, b] if baseline => {
                            let last = sorted_median(&[x, *a, *b])?;
                            lasting_spread(&values, floors).map(|s| s.z(last))
                        }
                        _ => None,
                    };
                    Some((k, x, own, usual, lasting))
                })
                .collect();
            let levels: Vec<f64> = present.iter().map(|p| p.1).collect();
            let Some(level) = spread(&levels, None, floors) else {
                continue;
            };
            let enough = present.len() >= config.min_peers;
            stats[f] = Some(FeatureStats {
                median: level.median,
                scale: level.scale,
                members: present.len(),
                basis: if enough {
                    Basis::Peers
                } else {
                    Basis::OwnHistory
                },
            });
            if !enough {
                for (k, x, own, _, _) in &present {
                    if let Some((own, samples)) = own {
                        compared[*k][f] = Some(Comparison {
                            value: *x,
                            reference: own.median,
                            scale: own.scale,
                            z: small_sample_z(own.z(*x), *samples),
                            basis: Basis::OwnHistory,
                        });
                    }
                }
                continue;
            }
            let moves: Vec<f64> = present
                .iter()
                .filter_map(|(_, x, own, _, _)| own.map(|(o, _)| x - o.median))
                .collect();
            let move_spread = (moves.len() >= config.min_peers)
                .then(|| spread(&moves, Some(level.median), floors))
                .flatten()
                .map(|s| Spread {
                    scale: s.scale.max(learned[f]),
                    ..s
                });
            for (k, x, own, usual, lasting) in &present {
                let level_z = level.z(*x);
                let z = match (own, move_spread) {
                    (Some((own, _)), Some(moves)) => {
                        pooled[*k][f] = Some(x - own.median - moves.median);
                        let deviation = x - own.median - moves.median;
                        let observed =
                            &self.entities[&window[members[*k]].subject.entity].observed[f];
                        let last = match observed.as_slice() {
                            [.., a, b] => sorted_median(&[*x, *a, *b]).unwrap(),
                            _ => f64::NAN,
                        };
                        let lasting_move = last - own.median - moves.median;
                        if !lasting_move.is_nan() {
                            pooled_lasting[*k][f] = Some(lasting_move);
                        }
                        let z = z_both_agree_on(
                            clear(level_z),
                            calibrated(moves.z(x - own.median), deviation, lasting_move, tails[f]),
                        );
                        match usual {
                            Some(usual) => {
                                let alone = CONSISTENCY * (x - own.median)
                                    / usual
                                        .max(floors.relative * own.median.abs())
                                        .max(floors.absolute);
                                // Within its usual spikes, but lasting: the lasting level counts.
                                let alone = match lasting {
                                    Some(l)
                                        if l.signum() == alone.signum()
                                            && l.abs() > alone.abs() =>
                                    {
                                        *l
                                    }
                                    _ => alone,
                                };
                                z_both_agree_on(z, alone)
                            }
                            None => z,
                        }
                    }
                    (Some((own, samples)), None) => {
                        z_both_agree_on(level_z, small_sample_z(own.z(*x), *samples))
                    }
                    (None, _) => level_z,
                };
                compared[*k][f] = Some(Comparison {
                    value: *x,
                    reference: level.median,
                    scale: level.scale,
                    z,
                    basis: Basis::Peers,
                });
            }
        }
        let scored = compared
            .into_iter()
            .map(|features_of| {
                let mut found: Vec<Driver> = features_of
                    .iter()
                    .zip(&self.features)
                    .filter_map(|(c, name)| c.map(|c| Driver::new(name, c)))
                    .collect();
                found.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
                let score = combined(found.first().map_or(0.0, |d| d.z.abs()), found.len());
                found.retain(|d| d.z.abs() >= config.threshold);
                found.truncate(config.top_features);
                PlainScored {
                    score,
                    drivers: found,
                    features: features_of,
                }
            })
            .collect();
        (scored, stats, pooled, pooled_lasting)
    }

    fn judge(
        &mut self,
        at: SystemTime,
        window: &[Observation],
        members: &[usize],
        scored: Vec<PlainScored>,
        report: &mut WindowReport,
    ) {
        let config = &self.config;
        let mut candidates = Vec::new();
        for (&i, scored) in members.iter().zip(scored) {
            let obs = &window[i];
            let entity = self.entities.get_mut(&obs.subject.entity).unwrap();
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
                    let finding = entity.finding.as_mut().unwrap();
                    finding.updated = at;
                    finding.peak_score = finding.peak_score.max(scored.score);
                    finding.severity = severity(config, finding.peak_score);
                    finding.drivers = scored.drivers;
                    report.updated.push(finding.clone());
                }
                Verdict::Close => report.closed.extend(close(&mut entity.finding, at)),
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
            let keep = self.keep;
            for (observed, value) in entity.observed.iter_mut().zip(&obs.values) {
                if let Some(value) = value {
                    observed.push(as_f32(*value));
                }
            }
            let keep_window = |entity: &mut PlainEntity, values: &[Option<f64>]| {
                for (ring, value) in entity.rings.iter_mut().zip(values) {
                    if let Some(value) = value {
                        if ring.len() == config.history {
                            ring.pop_front();
                        }
                        ring.push_back(keep(*value));
                    }
                }
            };
            if !anomalous || entity.anomalous_run > config.adapt_after {
                keep_window(entity, &obs.values);
            }
            // A short run held back joins the history once calm has settled after it.
            if anomalous {
                let held = entity.held.get_or_insert((Vec::new(), 0, false));
                if held.1 > 0 {
                    *held = (Vec::new(), 0, false);
                }
                if held.0.len() < config.spike_windows {
                    held.0.push(obs.values.clone());
                } else {
                    held.2 = true;
                }
            } else if let Some(held) = entity.held.as_mut() {
                held.1 += 1;
                if held.2 {
                    entity.held = None;
                } else if held.1 >= config.spike_settle {
                    let (windows, _, _) = entity.held.take().unwrap();
                    for values in windows {
                        keep_window(entity, &values);
                    }
                }
            }
            entity.seen += 1;
            entity.absent = 0;
        }
        if candidates.is_empty() {
            return;
        }
        let open = members
            .iter()
            .filter(|&&i| self.entities[&window[i].subject.entity].finding.is_some())
            .count();
        let cap = ((config.max_share * members.len() as f64).floor() as usize).max(1);
        if open + candidates.len() > cap {
            return;
        }
        for (id, scored) in candidates {
            let entity = self.entities.get_mut(&id).unwrap();
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
            entity.finding = Some(finding);
        }
    }
}

fn close(finding: &mut Option<Finding>, at: SystemTime) -> Option<Finding> {
    let mut finding = finding.take()?;
    finding.closed = Some(at);
    Some(finding)
}

/// As the detector keeps a value in its history.
fn as_f32(v: f64) -> f64 {
    f64::from(v.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32)
}

/// The last is the first again, so that drivers tie and their order shows.
const FLEET_FEATURES: [&str; 6] = [
    "cpu",
    "memory",
    "errors",
    "latency_ms",
    "packets",
    "cpu_again",
];

struct Member {
    id: String,
    domain: usize,
    node: usize,
    factor: f64,
    /// Windows [from, to) in which it strays, and how.
    stray: Option<(usize, usize, usize, f64)>,
}

/// A fleet of domains from 1 to 12 members on four nodes, over `windows` windows: noise,
/// lasting level differences, strays of a few windows and lasting ones, a herd that moves
/// together, restarts (new ids), members that move to another node or domain, members
/// missing for a window or two, and missing values.
fn fleet(seed: u64, windows: usize) -> Vec<Vec<Observation>> {
    let mut noise = Rng::new(seed);
    let sizes = [12, 7, 5, 4, 3, 3, 2, 1, 1, 6];
    let levels: Vec<[f64; 5]> = sizes
        .iter()
        .map(|_| {
            [
                0.1 + noise.unit(),
                1e8 * (0.5 + noise.unit()),
                if noise.unit() < 0.7 { 0.0 } else { 3.0 },
                2.0 + 10.0 * noise.unit(),
                500.0 * noise.unit(),
            ]
        })
        .collect();
    let mut members: Vec<Member> = Vec::new();
    let mut next_id = 0;
    let mut new_member = |domain: usize, node: usize, noise: &mut Rng| {
        next_id += 1;
        let stray = (noise.unit() < 0.25).then(|| {
            let from = (noise.unit() * windows as f64) as usize;
            let to = from + 2 + (noise.unit() * 40.0) as usize;
            (
                from,
                to,
                (noise.unit() * 5.0) as usize,
                2.0 + 6.0 * noise.unit(),
            )
        });
        Member {
            id: format!("c{next_id:04}"),
            domain,
            node,
            factor: 1.0 + 0.3 * (noise.unit() - 0.5),
            stray,
        }
    };
    for (domain, &size) in sizes.iter().enumerate() {
        for m in 0..size {
            members.push(new_member(domain, m % 4, &mut noise));
        }
    }
    (0..windows)
        .map(|w| {
            // The whole of domain 3 moves together for a while: the herd, not an outlier.
            let herd = if (40..60).contains(&w) { 3.0 } else { 1.0 };
            for member in &mut members {
                let roll = noise.unit();
                if roll < 0.01 {
                    *member = new_member(member.domain, member.node, &mut noise);
                } else if roll < 0.015 {
                    member.node = (member.node + 1) % 4;
                } else if roll < 0.017 {
                    member.domain = (member.domain + 1) % sizes.len();
                }
            }
            let present: Vec<&Member> = members.iter().filter(|_| noise.unit() > 0.02).collect();
            present
                .into_iter()
                .map(|m| {
                    let mut values: Vec<Option<f64>> = (0..FLEET_FEATURES.len() - 1)
                        .map(|f| {
                            if noise.unit() < 0.03 {
                                return None;
                            }
                            let mut v = levels[m.domain][f]
                                * m.factor
                                * (1.0 + 0.08 * (noise.unit() - 0.5));
                            if f == 2 && noise.unit() < 0.05 {
                                v += 1.0;
                            }
                            if m.domain == 3 && f == 0 {
                                v *= herd;
                            }
                            if let Some((from, to, feature, times)) = m.stray
                                && (from..to).contains(&w)
                                && feature == f
                            {
                                v = v * times + times;
                            }
                            Some(v)
                        })
                        .collect();
                    values.push(values[0]);
                    Observation {
                        subject: Subject {
                            entity: m.id.clone(),
                            pod: Some(format!("pod-{}", m.id)),
                            namespace: Some("fleet".into()),
                            domain: format!("fleet/d{}", m.domain),
                            node: format!("node-{}", m.node),
                        },
                        values,
                    }
                })
                .collect()
        })
        .collect()
}

fn fleet_config(per_node: bool) -> DetectConfig {
    DetectConfig {
        warmup: 3,
        history: 9,
        adapt_after: 12,
        forget_after: 2,
        per_node,
        // Domain shifts have tests of their own; the plain detector has none.
        domain_shifts: false,
        absolute_floors: [("memory".to_string(), 4e6), ("packets".to_string(), 20.0)].into(),
        ..DetectConfig::default()
    }
}

fn at(w: usize) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 10 * w as u64)
}

/// Fails on the first part of `got` that differs from `expected`, naming only that part.
fn assert_same(got: &WindowReport, expected: &WindowReport, context: &str) {
    assert_eq!(got.opened, expected.opened, "{context}: opened");
    assert_eq!(got.updated, expected.updated, "{context}: updated");
    assert_eq!(got.closed, expected.closed, "{context}: closed");
    assert_eq!(got.scores.len(), expected.scores.len(), "{context}: scores");
    for (a, b) in got.scores.iter().zip(&expected.scores) {
        assert_eq!(a, b, "{context}: score of {}", b.entity);
    }
    assert_eq!(got.domains, expected.domains, "{context}: domains");
}

fn without_comparisons(report: &WindowReport) -> WindowReport {
    let mut report = report.clone();
    for score in &mut report.scores {
        score.features.clear();
    }
    report
}

#[test]
fn the_detector_decides_as_the_plain_one_on_a_seeded_fleet() {
    let features: Vec<String> = FLEET_FEATURES.iter().map(|f| f.to_string()).collect();
    for (seed, per_node) in [(1, true), (2, false), (3, true), (4, false)] {
        let config = fleet_config(per_node);
        let mut plain = Plain::new(config.clone(), &FLEET_FEATURES, as_f32);
        let mut full = Detector::new(config.clone(), features.clone()).unwrap();
        let mut lean = Detector::new(config, features.clone()).unwrap();
        let none = HashSet::new();
        let (mut opened, mut own, mut moved_away) = (0, 0, 0);
        for (w, window) in fleet(seed, 150).iter().enumerate() {
            let expected = plain.observe(at(w), window);
            let got = full.observe(at(w), window).unwrap();
            let context = format!("seed {seed}, window {w}");
            assert_same(&got, &expected, &context);
            let scores_only = lean
                .observe_with(at(w), window, Detail::Only(&none))
                .unwrap();
            assert_same(&scores_only, &without_comparisons(&expected), &context);
            opened += expected.opened.len();
            moved_away += expected.closed.len();
            own += expected
                .scores
                .iter()
                .flat_map(|s| s.features.iter().flatten())
                .filter(|c| c.basis == Basis::OwnHistory)
                .count();
        }
        // The fleet reaches every path: findings opened and closed, own-history baselines.
        assert!(opened >= 5, "seed {seed}: {opened} findings opened");
        assert!(moved_away >= 5, "seed {seed}: {moved_away} closed");
        assert!(own > 100, "seed {seed}: {own} own-history comparisons");
        assert_eq!(full.tracked(), plain.entities.len());
    }
}

#[test]
fn keeping_the_history_in_f32_changes_no_decision() {
    let features: Vec<String> = FLEET_FEATURES.iter().map(|f| f.to_string()).collect();
    for (seed, per_node) in [(5, true), (6, false)] {
        let config = fleet_config(per_node);
        let mut exact = Plain::new(config.clone(), &FLEET_FEATURES, |v| v);
        let mut detector = Detector::new(config, features.clone()).unwrap();
        for (w, window) in fleet(seed, 150).iter().enumerate() {
            let expected = exact.observe(at(w), window);
            let got = detector.observe(at(w), window).unwrap();
            let ids = |f: &[Finding]| f.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&got.opened), ids(&expected.opened), "window {w}");
            assert_eq!(ids(&got.closed), ids(&expected.closed), "window {w}");
            assert_eq!(ids(&got.updated), ids(&expected.updated), "window {w}");
            for (a, b) in got.scores.iter().zip(&expected.scores) {
                assert_eq!((&a.entity, a.flagged), (&b.entity, b.flagged));
                assert!(
                    (a.score - b.score).abs() <= 1e-5 * b.score.max(1.0),
                    "window {w}, {}: {} against {}",
                    a.entity,
                    a.score,
                    b.score
                );
            }
        }
    }
}

#[test]
fn medians_by_selection_are_those_of_a_sort() {
    let mut noise = Rng::new(7);
    for n in 0..40 {
        let values: Vec<f64> = (0..n)
            .map(|_| match (noise.unit() * 4.0) as u32 {
                0 => 0.0,
                1 => -0.0,
                _ => (noise.unit() * 10.0).round() - 5.0,
            })
            .collect();
        let expected = sorted_median(&values);
        assert_eq!(
            median(&values).map(f64::to_bits),
            expected.map(f64::to_bits)
        );
        if let Some(center) = expected {
            let deviations: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
            let expected_mad = sorted_median(&deviations);
            assert_eq!(mad(&values, center), expected_mad);
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(
                stats::median_mad_of_sorted(&sorted, |v| v),
                Some((center, expected_mad.unwrap())),
                "{sorted:?}"
            );
        }
    }
}
