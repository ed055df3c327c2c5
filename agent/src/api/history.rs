//! What `Explain` shows: each container's last windows, feature by feature, with what each
//! value was compared with. Bounded: a fixed number of windows per container, each row
//! allocated once at its full size, and everything of a container goes when the container
//! does.
//!
//! Per container, window and feature: the value as `f32` and z as `f16` (6 bytes; z keeps
//! three significant digits). A domain compared as peers keeps its median and spread once
//! for all its members (8 bytes per feature); a container compared with its own past keeps
//! which features were (a bit each), and its own reference (`f32`) and spread (`f16`) for
//! the last [`OWN_WINDOWS`] windows: older windows show its value and z against its own
//! past, with the reference and spread unknown (NaN). That keeps a node whose containers all
//! lack peers (no runtime: each container is its own domain) near the named case's memory.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use half::f16;

use crate::detect::{Basis, Comparison, DomainStats, WindowReport};

/// Rows of `width` cells, the oldest overwritten once `capacity` rows are held.
#[derive(Debug)]
struct Rows<T> {
    width: usize,
    capacity: usize,
    cells: Vec<T>,
    /// Where the next row goes once full; the oldest row starts here.
    next: usize,
}

impl<T: Copy> Rows<T> {
    fn new(width: usize, capacity: usize) -> Self {
        Self {
            width,
            capacity,
            cells: Vec::new(),
            next: 0,
        }
    }

    fn len(&self) -> usize {
        self.cells.len() / self.width.max(1)
    }

    fn push(&mut self, row: impl IntoIterator<Item = T>) {
        if self.cells.capacity() == 0 {
            // Once, at the full size: growing by doubling would hold a quarter more.
            self.cells.reserve_exact(self.width * self.capacity);
        }
        if self.len() < self.capacity {
            let before = self.cells.len();
            self.cells.extend(row.into_iter().take(self.width));
            debug_assert_eq!(self.cells.len() - before, self.width);
            return;
        }
        let start = self.next * self.width;
        for (cell, value) in self.cells[start..start + self.width].iter_mut().zip(row) {
            *cell = value;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// Row `i`, oldest first.
    fn row(&self, i: usize) -> &[T] {
        let physical = if self.len() < self.capacity {
            i
        } else {
            (self.next + i) % self.capacity
        };
        &self.cells[physical * self.width..(physical + 1) * self.width]
    }
}

/// A domain's median and spread of one feature in one window.
#[derive(Debug, Clone, Copy)]
struct PeerCell {
    median: f32,
    scale: f32,
}

#[derive(Debug, Clone, Copy)]
struct WindowMeta {
    seq: u64,
    score: f32,
    peers: u32,
}

#[derive(Debug)]
struct EntityHistory {
    domain: String,
    meta: Rows<WindowMeta>,
    /// `NaN` where the feature was not compared.
    values: Rows<f32>,
    z: Rows<f16>,
    /// Per window, a bit per feature (the first 64) compared with the container's own past.
    own_mask: Rows<u64>,
    /// The last windows' own references and spreads, once any feature was compared with the
    /// container's own past; `NaN` where compared with peers.
    own: Option<OwnHistory>,
}

/// Windows for which a container's own reference and spread are kept.
pub const OWN_WINDOWS: usize = 60;

#[derive(Debug)]
struct OwnHistory {
    reference: Rows<f32>,
    scale: Rows<f16>,
}

#[derive(Debug)]
struct DomainHistory {
    seqs: Rows<u64>,
    stats: Rows<PeerCell>,
}

/// One window of one container, as `Explain` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedWindow {
    pub at: SystemTime,
    pub score: f64,
    pub peers: usize,
    /// (feature index, comparison) for every feature that was compared.
    pub features: Vec<(usize, Comparison)>,
}

/// Every container's recent windows.
#[derive(Debug)]
pub struct History {
    capacity: usize,
    features: usize,
    /// (sequence number, time) of the windows held, oldest first.
    windows: VecDeque<(u64, SystemTime)>,
    next_seq: u64,
    entities: HashMap<String, EntityHistory>,
    domains: HashMap<String, DomainHistory>,
}

const NO_PEERS: PeerCell = PeerCell {
    median: f32::NAN,
    scale: f32::NAN,
};

impl History {
    /// Keeps `capacity` windows of `features` features per container.
    pub fn new(features: usize, capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            features,
            windows: VecDeque::new(),
            next_seq: 0,
            entities: HashMap::new(),
            domains: HashMap::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Containers with a history.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Records one scored window. `domain_of` names each scored entity's domain.
    pub fn record<'a>(
        &mut self,
        at: SystemTime,
        report: &WindowReport,
        domain_of: impl Fn(&str) -> Option<&'a str>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.windows.push_back((seq, at));
        while self.windows.len() > self.capacity {
            self.windows.pop_front();
        }
        for stats in &report.domains {
            self.record_domain(seq, stats);
        }
        for scored in &report.scores {
            if scored.features.is_empty() {
                continue;
            }
            let Some(domain) = domain_of(&scored.entity) else {
                continue;
            };
            let (features, capacity) = (self.features, self.capacity);
            let entity = self
                .entities
                .entry(scored.entity.clone())
                .or_insert_with(|| EntityHistory::new(domain, features, capacity));
            if entity.domain != domain {
                *entity = EntityHistory::new(domain, features, capacity);
            }
            entity.meta.push([WindowMeta {
                seq,
                score: scored.score as f32,
                peers: u32::try_from(scored.peers).unwrap_or(u32::MAX),
            }]);
            entity.values.push(
                scored
                    .features
                    .iter()
                    .map(|c| c.map_or(f32::NAN, |c| c.value as f32)),
            );
            entity.z.push(
                scored
                    .features
                    .iter()
                    .map(|c| c.map_or(f16::NAN, |c| f16::from_f64(c.z))),
            );
            let own_mask = scored
                .features
                .iter()
                .take(64)
                .enumerate()
                .filter(|(_, c)| c.is_some_and(|c| c.basis == Basis::OwnHistory))
                .fold(0u64, |mask, (f, _)| mask | 1 << f);
            entity.own_mask.push([own_mask]);
            if own_mask != 0 && entity.own.is_none() {
                let windows = OWN_WINDOWS.min(capacity);
                entity.own = Some(OwnHistory {
                    reference: Rows::new(features, windows),
                    scale: Rows::new(features, windows),
                });
            }
            if let Some(own) = &mut entity.own {
                let own_of = |c: &Option<Comparison>| c.filter(|c| c.basis == Basis::OwnHistory);
                own.reference.push(
                    scored
                        .features
                        .iter()
                        .map(|c| own_of(c).map_or(f32::NAN, |c| c.reference as f32)),
                );
                own.scale.push(
                    scored
                        .features
                        .iter()
                        .map(|c| own_of(c).map_or(f16::NAN, |c| f16::from_f64(c.scale))),
                );
            }
        }
    }

    fn record_domain(&mut self, seq: u64, stats: &DomainStats) {
        // A domain too small to compare its members with each other has nothing to keep:
        // its members are compared with their own past.
        if !stats
            .features
            .iter()
            .any(|s| s.is_some_and(|s| s.basis == Basis::Peers))
        {
            return;
        }
        let (features, capacity) = (self.features, self.capacity);
        let domain = self
            .domains
            .entry(stats.domain.clone())
            .or_insert_with(|| DomainHistory {
                seqs: Rows::new(1, capacity),
                stats: Rows::new(features, capacity),
            });
        domain.seqs.push([seq]);
        domain.stats.push(stats.features.iter().map(|s| match s {
            Some(s) if s.basis == Basis::Peers => PeerCell {
                median: s.median as f32,
                scale: s.scale as f32,
            },
            _ => NO_PEERS,
        }));
    }

    /// Forgets every container for which `keep` is false, and domains nobody is in.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entities.retain(|id, _| keep(id));
        let live: std::collections::HashSet<&str> =
            self.entities.values().map(|e| e.domain.as_str()).collect();
        self.domains.retain(|name, _| live.contains(name.as_str()));
    }

    /// The last `n` windows of `entity`, oldest first.
    pub fn explain(&self, entity: &str, n: usize) -> Vec<ExplainedWindow> {
        let Some(history) = self.entities.get(entity) else {
            return Vec::new();
        };
        let domain = self.domains.get(&history.domain);
        let rows = history.meta.len();
        (rows.saturating_sub(n)..rows)
            .filter_map(|i| {
                let meta = history.meta.row(i)[0];
                let at = self.time_of(meta.seq)?;
                let peer_stats = domain.and_then(|d| d.row_of(meta.seq));
                let own_mask = history.own_mask.row(i)[0];
                // The own rows are the most recent ones.
                let own = history.own.as_ref().and_then(|o| {
                    let j = i.checked_sub(rows - o.reference.len())?;
                    Some((o.reference.row(j), o.scale.row(j)))
                });
                let z = history.z.row(i);
                let features = history
                    .values
                    .row(i)
                    .iter()
                    .enumerate()
                    .filter(|(_, value)| !value.is_nan())
                    .filter_map(|(f, value)| {
                        let against_own = f < 64 && own_mask & (1 << f) != 0;
                        let (reference, scale, basis) = match against_own {
                            true => {
                                let (reference, scale) = own
                                    .map_or((f32::NAN, f16::NAN), |(reference, scale)| {
                                        (reference[f], scale[f])
                                    });
                                (f64::from(reference), scale.to_f64(), Basis::OwnHistory)
                            }
                            false => {
                                let peers = peer_stats?[f];
                                if peers.median.is_nan() {
                                    return None;
                                }
                                (
                                    f64::from(peers.median),
                                    f64::from(peers.scale),
                                    Basis::Peers,
                                )
                            }
                        };
                        Some((
                            f,
                            Comparison {
                                value: f64::from(*value),
                                reference,
                                scale,
                                z: z[f].to_f64(),
                                basis,
                            },
                        ))
                    })
                    .collect();
                Some(ExplainedWindow {
                    at,
                    score: f64::from(meta.score),
                    peers: meta.peers as usize,
                    features,
                })
            })
            .collect()
    }

    fn time_of(&self, seq: u64) -> Option<SystemTime> {
        let first = self.windows.front()?.0;
        let (found, at) = *self
            .windows
            .get(usize::try_from(seq.checked_sub(first)?).ok()?)?;
        (found == seq).then_some(at)
    }
}

impl EntityHistory {
    fn new(domain: &str, features: usize, capacity: usize) -> Self {
        Self {
            domain: domain.to_owned(),
            meta: Rows::new(1, capacity),
            values: Rows::new(features, capacity),
            z: Rows::new(features, capacity),
            own_mask: Rows::new(1, capacity),
            own: None,
        }
    }
}

impl DomainHistory {
    fn row_of(&self, seq: u64) -> Option<&[PeerCell]> {
        let rows = self.seqs.len();
        // Sequence numbers grow with the rows: binary search over the ring's logical order.
        let (mut lo, mut hi) = (0, rows);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.seqs.row(mid)[0].cmp(&seq) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.stats.row(mid)),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::detect::{EntityScore, FeatureStats};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn comparison(value: f64, basis: Basis) -> Option<Comparison> {
        Some(Comparison {
            value,
            reference: 10.0,
            scale: 2.0,
            z: (value - 10.0) / 2.0,
            basis,
        })
    }

    /// One window: entity "a" in domain "d" with two features, the second missing.
    fn window(value: f64, basis: Basis) -> WindowReport {
        WindowReport {
            scores: vec![EntityScore {
                entity: "a".into(),
                score: (value - 10.0).abs() / 2.0,
                flagged: false,
                features: vec![comparison(value, basis), None],
                peers: 4,
            }],
            domains: vec![DomainStats {
                node: "n".into(),
                domain: "d".into(),
                members: 4,
                features: vec![
                    Some(FeatureStats {
                        median: 10.0,
                        scale: 2.0,
                        members: 4,
                        basis: Basis::Peers,
                    }),
                    None,
                ],
            }],
            ..WindowReport::default()
        }
    }

    #[test]
    fn keeps_the_last_windows_oldest_first() {
        let mut history = History::new(2, 3);
        for s in 0..5 {
            history.record(at(s), &window(10.0 + s as f64, Basis::Peers), |_| Some("d"));
        }
        let shown = history.explain("a", 10);
        let times: Vec<SystemTime> = shown.iter().map(|w| w.at).collect();
        assert_eq!(times, [at(2), at(3), at(4)], "only the capacity is kept");
        let last = &shown[2];
        assert_eq!(last.features.len(), 1, "the missing feature is left out");
        let (f, c) = last.features[0];
        assert_eq!(f, 0);
        assert_eq!((c.value, c.reference, c.scale, c.z), (14.0, 10.0, 2.0, 2.0));
        assert_eq!(c.basis, Basis::Peers);
        assert_eq!(last.peers, 4);
        assert_eq!(history.explain("a", 2).len(), 2);
        assert!(history.explain("nobody", 2).is_empty());
    }

    #[test]
    fn own_history_comparisons_keep_their_own_reference() {
        let mut history = History::new(2, 4);
        history.record(at(0), &window(12.0, Basis::Peers), |_| Some("d"));
        let mut own = window(20.0, Basis::OwnHistory);
        if let Some(Some(c)) = own.scores[0].features.get_mut(0) {
            c.reference = 3.0;
            c.scale = 0.5;
        }
        history.record(at(1), &own, |_| Some("d"));
        let shown = history.explain("a", 2);
        assert_eq!(shown[0].features[0].1.basis, Basis::Peers);
        let (_, c) = shown[1].features[0];
        assert_eq!(
            (c.reference, c.scale, c.basis),
            (3.0, 0.5, Basis::OwnHistory)
        );
    }

    #[test]
    fn own_references_are_kept_for_the_last_windows_only() {
        let mut history = History::new(2, OWN_WINDOWS + 5);
        for s in 0..(OWN_WINDOWS as u64 + 5) {
            history.record(at(s), &window(12.0, Basis::OwnHistory), |_| Some("d"));
        }
        let shown = history.explain("a", OWN_WINDOWS + 5);
        assert_eq!(shown.len(), OWN_WINDOWS + 5);
        let (_, oldest) = shown[0].features[0];
        assert_eq!(
            oldest.basis,
            Basis::OwnHistory,
            "the basis is kept for every window"
        );
        assert_eq!((oldest.value, oldest.z), (12.0, 1.0));
        assert!(oldest.reference.is_nan() && oldest.scale.is_nan());
        let (_, kept) = shown[5].features[0];
        assert_eq!((kept.reference, kept.scale), (10.0, 2.0));
    }

    #[test]
    fn gone_containers_are_forgotten_with_their_domains() {
        let mut history = History::new(2, 4);
        history.record(at(0), &window(12.0, Basis::Peers), |_| Some("d"));
        assert_eq!(history.len(), 1);
        history.retain(|id| id != "a");
        assert!(history.is_empty());
        assert!(history.domains.is_empty());
    }

    #[test]
    fn a_domain_change_starts_over() {
        let mut history = History::new(2, 4);
        history.record(at(0), &window(12.0, Basis::Peers), |_| Some("d"));
        history.record(at(1), &window(12.0, Basis::Peers), |_| Some("other"));
        assert_eq!(history.explain("a", 10).len(), 1);
    }
}
