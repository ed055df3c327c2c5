//! Each domain's usual spread, learned: per feature, a decaying sketch of how far its
//! members' moves (a value less the member's own baseline median) stray from the domain's
//! median move in ordinary windows. A high quantile of it, as a MAD, is the least spread a
//! move is judged against, so that a counter whose members now and then blip by a few
//! counts, or a feature that is noisier than its peers' MAD of the moment shows, does not
//! flag on the sizes the domain makes every day.

use std::collections::HashMap;

use statrs::distribution::{ContinuousCDF, Normal};

use super::config::DetectConfig;
use super::sketch::{Sketch, decay_step};
use super::stats::CONSISTENCY;

/// Ordinary members whose moves a domain learns from in one window; a large domain learns
/// from a sample (the first in the window's order), so that learning costs the same per
/// window at any size.
pub const SAMPLE: usize = 64;
/// Pooled moves (counted with their decay) a domain needs before its spread is used: enough
/// that a high quantile is not simply the largest move seen.
pub const LEAST: f64 = 200.0;

/// One domain's sketches, two per feature.
#[derive(Debug)]
struct Domain {
    /// Moves less the median move, window by window.
    sketches: Vec<Sketch>,
    /// The same over each member's last three windows (their median): what a move that
    /// lasts usually is. A counter whose blips come in runs has them here; a one-window
    /// spike does not.
    lasting: Vec<Sketch>,
    /// The detector's window in which it last learned.
    window: u64,
}

/// A domain's learned moves of one feature: in one window, and lasting three.
#[derive(Debug, Clone, Copy)]
pub struct Usual<'a> {
    pub window: &'a Sketch,
    pub lasting: &'a Sketch,
}

/// The learned spreads of every domain, by node ("" when compared across nodes) and domain.
#[derive(Debug)]
pub struct Spreads {
    features: usize,
    step: f32,
    quantile: f64,
    /// Φ⁻¹((1 + q) / 2): where the quantile `q` of |normal| lies, in standard deviations.
    normal_at: f64,
    by_node: HashMap<String, HashMap<String, Domain>>,
}

impl Spreads {
    pub fn new(config: &DetectConfig, features: usize) -> Self {
        let q = config.spread_quantile;
        Self {
            features,
            step: decay_step(config.spread_half_life),
            quantile: q,
            normal_at: Normal::standard().inverse_cdf(0.5 + q / 2.0),
            by_node: HashMap::new(),
        }
    }

    /// The learned least spread of each feature's moves, as a MAD, into `out`; 0 where the
    /// domain has not learned enough yet.
    pub fn floors(&self, node: &str, domain: &str, out: &mut Vec<f64>) {
        out.clear();
        out.resize(self.features, 0.0);
        let Some(d) = self.by_node.get(node).and_then(|d| d.get(domain)) else {
            return;
        };
        for (out, sketch) in out.iter_mut().zip(&d.sketches) {
            if sketch.count() >= LEAST
                && let Some(q) = sketch.quantile(self.quantile)
            {
                *out = CONSISTENCY * q / self.normal_at;
            }
        }
    }

    /// The domain's learned distributions of moves, per feature, once it has learned
    /// enough ([`LEAST`]) on that feature; what [`crate::score`] takes tail probabilities
    /// from.
    pub fn usual(&self, node: &str, domain: &str) -> Vec<Option<Usual<'_>>> {
        let d = self.by_node.get(node).and_then(|d| d.get(domain));
        (0..self.features)
            .map(|f| {
                let d = d?;
                let window = d.sketches.get(f).filter(|s| s.count() >= LEAST)?;
                Some(Usual {
                    window,
                    lasting: &d.lasting[f],
                })
            })
            .collect()
    }

    /// Learns one window of a domain: `deviations` holds, feature by feature, a column of
    /// `members` moves less the median move (NaN where there is none), and `lasting` the
    /// same over each member's last three windows; only the members `ordinary` marks count.
    pub fn learn(
        &mut self,
        node: &str,
        domain: &str,
        window: u64,
        deviations: &[f64],
        lasting: &[f64],
        ordinary: &[bool],
    ) {
        let members = ordinary.len();
        let features = self.features;
        let domains = match self.by_node.get_mut(node) {
            Some(d) => d,
            None => self.by_node.entry(node.to_owned()).or_default(),
        };
        let d = match domains.get_mut(domain) {
            Some(d) => d,
            None => domains.entry(domain.to_owned()).or_insert_with(|| Domain {
                sketches: vec![Sketch::default(); features],
                lasting: vec![Sketch::default(); features],
                window,
            }),
        };
        if d.window != window {
            d.sketches
                .iter_mut()
                .chain(&mut d.lasting)
                .for_each(|s| s.tick(self.step));
            d.window = window;
        }
        for (f, (sketch, lasting_sketch)) in d.sketches.iter_mut().zip(&mut d.lasting).enumerate() {
            let columns = f * members..(f + 1) * members;
            for (column, sketch) in [
                (&deviations[columns.clone()], sketch),
                (&lasting[columns], lasting_sketch),
            ] {
                column
                    .iter()
                    .zip(ordinary)
                    .filter(|(v, ok)| **ok && !v.is_nan())
                    .take(SAMPLE)
                    .for_each(|(v, _)| sketch.add(*v));
            }
        }
    }

    /// Forgets the domains that learned nothing for `after` windows up to `window`.
    pub fn forget(&mut self, window: u64, after: usize) {
        for domains in self.by_node.values_mut() {
            domains.retain(|_, d| window - d.window < after as u64);
        }
        self.by_node.retain(|_, d| !d.is_empty());
    }

    /// Domains kept, and the bytes their sketches hold.
    pub fn footprint(&self) -> (usize, usize) {
        let domains = self.by_node.values().flat_map(|d| d.values());
        domains.fold((0, 0), |(n, bytes), d| {
            (
                n + 1,
                bytes
                    + d.sketches
                        .iter()
                        .chain(&d.lasting)
                        .map(Sketch::bytes)
                        .sum::<usize>(),
            )
        })
    }
}
