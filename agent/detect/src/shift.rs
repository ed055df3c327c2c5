//! A domain that moved together. When a third or more of a domain's members move away from
//! their own baselines the same way on a feature in one window, none of them strays from
//! the others, but the domain as a whole changed: one "domain shift" finding for the domain
//! opens (m of n windows, as a member's would) instead of either silence or a finding per
//! member, and closes with the same hysteresis.

use std::collections::HashMap;
use std::time::SystemTime;

use super::alarm::{Alarm, Verdict};
use super::config::DetectConfig;
use super::finding::{Basis, Comparison, Driver, Finding, Kind, Subject, finding_id};
use super::stats::median_in_place;

/// What moved in one window of one domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// The strongest feature's median |z| among its movers.
    pub score: f64,
    /// Members that moved on the strongest feature.
    pub moved: usize,
    pub members: usize,
    /// The features that moved, strongest first: the movers' median value against their
    /// median own baseline, with their median z.
    pub drivers: Vec<Driver>,
}

/// Whether a third or more of the domain's `members` (at least two, and at least
/// `min_peers` members in all) moved the same way on some feature, judged against each
/// member's own baseline and usual spread. A member that strays from its peers this window
/// (`strays`) is not one of a herd that moved: a CPU hog and the neighbour whose run queue
/// it lengthens are a stray and its side effect, not a shift. The columns are as [`crate::score`] leaves them:
/// feature by feature, a column of members each, NaN where there is none.
pub fn moved_together(
    config: &DetectConfig,
    names: &[String],
    members: usize,
    values: &[f64],
    own_zs: &[f64],
    own: &[f64],
    strays: &[bool],
) -> Option<Moved> {
    if members < config.min_peers || members == 0 {
        return None;
    }
    let least = members.div_ceil(3).max(2);
    let mut found: Vec<(usize, Driver)> = Vec::new();
    for (f, name) in names.iter().enumerate() {
        let column = f * members..(f + 1) * members;
        let zs = &own_zs[column.clone()];
        for sign in [1.0, -1.0] {
            let movers: Vec<usize> = (0..members)
                .filter(|&i| !strays[i] && sign * zs[i] >= config.threshold)
                .collect();
            if movers.len() < least {
                continue;
            }
            let median_of = |of: &[f64]| {
                let mut v: Vec<f64> = movers.iter().map(|&i| of[i]).collect();
                median_in_place(&mut v).unwrap_or(0.0)
            };
            let z = sign * median_of(&zs.iter().map(|z| z.abs()).collect::<Vec<_>>());
            let value = median_of(&values[column.clone()]);
            let reference = median_of(&own[column.clone()]);
            let scale = if z == 0.0 {
                0.0
            } else {
                (0.6745 * (value - reference) / z).abs()
            };
            found.push((
                movers.len(),
                Driver::new(
                    name,
                    Comparison {
                        value,
                        reference,
                        scale,
                        z,
                        basis: Basis::OwnHistory,
                    },
                ),
            ));
        }
    }
    found.sort_by(|a, b| b.1.z.abs().total_cmp(&a.1.z.abs()));
    let (moved, top) = found.first()?;
    let (moved, score) = (*moved, top.z.abs());
    found.truncate(config.top_features);
    Some(Moved {
        score,
        moved,
        members,
        drivers: found.into_iter().map(|(_, d)| d).collect(),
    })
}

/// One domain's shift alarm and finding.
#[derive(Debug, Default)]
struct Shift {
    alarm: Alarm,
    finding: Option<Box<Finding>>,
    /// The detector's window that last saw the domain.
    window: u64,
}

/// Every domain's shift alarm, by node ("" when compared across nodes) and domain.
#[derive(Debug, Default)]
pub struct Shifts {
    by_node: HashMap<String, HashMap<String, Shift>>,
}

/// What one window did to a domain's shift finding.
pub enum Change {
    Opened(Finding),
    Updated(Finding),
    Closed(Finding),
}

impl Shifts {
    /// Records one window of a domain; returns what changed.
    pub fn record(
        &mut self,
        config: &DetectConfig,
        at: SystemTime,
        window: u64,
        node: &str,
        domain: &str,
        moved: Option<Moved>,
    ) -> Option<Change> {
        let domains = match self.by_node.get_mut(node) {
            Some(d) => d,
            None if moved.is_none() => return None,
            None => self.by_node.entry(node.to_owned()).or_default(),
        };
        let shift = match domains.get_mut(domain) {
            Some(s) => s,
            None if moved.is_none() => return None,
            None => domains.entry(domain.to_owned()).or_default(),
        };
        shift.window = window;
        let score = moved.as_ref().map_or(0.0, |m| m.score);
        match shift.alarm.record(config, score, shift.finding.is_some()) {
            Verdict::Quiet => None,
            Verdict::Open => {
                let moved = moved?;
                let subject = Subject {
                    entity: String::new(),
                    pod: None,
                    namespace: None,
                    domain: domain.to_owned(),
                    node: node.to_owned(),
                };
                // The id hashes the domain in the entity's place: one per domain and time.
                let id = finding_id(
                    &Subject {
                        entity: format!("domain-shift/{domain}"),
                        ..subject.clone()
                    },
                    at,
                );
                let finding = Finding {
                    kind: Kind::DomainShift {
                        moved: moved.moved,
                        members: moved.members,
                    },
                    id,
                    subject,
                    severity: super::severity(config, moved.score),
                    opened: at,
                    updated: at,
                    closed: None,
                    peak_score: moved.score,
                    drivers: moved.drivers,
                };
                shift.finding = Some(Box::new(finding.clone()));
                Some(Change::Opened(finding))
            }
            Verdict::Update => {
                let moved = moved?;
                let finding = shift.finding.as_mut()?;
                finding.updated = at;
                finding.peak_score = finding.peak_score.max(moved.score);
                finding.severity = super::severity(config, finding.peak_score);
                finding.kind = Kind::DomainShift {
                    moved: moved.moved,
                    members: moved.members,
                };
                finding.drivers = moved.drivers;
                Some(Change::Updated((**finding).clone()))
            }
            Verdict::Close => {
                let mut finding = *shift.finding.take()?;
                finding.closed = Some(at);
                Some(Change::Closed(finding))
            }
        }
    }

    /// Closes and forgets the shifts of domains unseen for `after` windows up to `window`;
    /// domains without a finding or a recent move are forgotten too.
    pub fn forget(&mut self, at: SystemTime, window: u64, after: usize, closed: &mut Vec<Finding>) {
        for domains in self.by_node.values_mut() {
            domains.retain(|_, s| {
                let gone = window - s.window >= after as u64;
                let idle = s.finding.is_none() && s.alarm.is_quiet();
                if gone && let Some(mut f) = s.finding.take().map(|f| *f) {
                    f.closed = Some(at);
                    closed.push(f);
                }
                !(gone || idle)
            });
        }
        self.by_node.retain(|_, d| !d.is_empty());
    }

    /// Open shift findings.
    pub fn open(&self) -> impl Iterator<Item = &Finding> {
        self.by_node
            .values()
            .flat_map(|d| d.values())
            .filter_map(|s| s.finding.as_deref())
    }
}
