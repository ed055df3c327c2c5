//! An entity's own past at longer horizons than its last kept values (`history`, the
//! "minutes"), for the entities judged on their own past alone (too few peers): the
//! **hours**, a decaying summary of its values with a half-life of one phase (an hour at the
//! default of 24 phases a day), and **the same time yesterday**, a ring of phase buckets over
//! a period (a day), each a summary of the values seen in that phase on earlier periods, each
//! earlier period counting half as much as the next, so that last week fades.
//!
//! Judging with them (`score`): once the bucket of the window's phase holds at least
//! `warmup` values of earlier periods, the reference is the seasonal expectation, the
//! bucket's median moved by the entity's current offset from it (the median of its recent
//! residuals, x − bucket median, with a half-life of half its kept values), and the spread is
//! the larger of the bucket's spread and the recent residuals' spread: a value counts as far
//! as the same time on earlier days and the last minutes agree that it is unusual, where
//! "usual" is the expected value for this phase. So a daily swing is not news, and a step
//! that stays within the day's range but not within this hour's is. Before that, once the
//! hours summary holds its warm-up, the minutes' z counts as far as the hours' agrees (a
//! level the entity held within the last hours is not news); before either, the minutes
//! alone, as always.
//!
//! Memory: every summary is [`Quartiles`], 20 bytes; an entity has `buckets + 3` of them per
//! feature ([`Seasons::bytes_per_entity`]), allocated only while it is judged on its own past.

use std::collections::HashMap;

use super::stats::{Floors, Spread};

/// A decaying summary of values: their quartiles, their mean distance from the median and
/// their weight, in 20 bytes.
///
/// It stands for the distribution whose cumulative share runs linearly through its
/// quartiles, and one more quartile gap beyond the first and the third (a jump where a gap
/// is 0: a single value, or a counter that is mostly 0). Adding a value, or merging another
/// summary, takes the quartiles of the weighted mixture of both distributions. Each quartile
/// then moves towards a new value by a step that shrinks with the weight held, a
/// stochastic-approximation quantile estimate whose gain is the local density, so on values
/// from one distribution the quartiles settle on its quartiles; a decay of the weight keeps
/// the step from vanishing, so that they follow the recent past.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quartiles {
    q: [f32; 3],
    /// Mean |x − median| of the values, weighted as they are.
    deviation: f32,
    weight: f32,
}

const SHARES: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

impl Quartiles {
    /// One value, weight 1.
    fn point(x: f64) -> Self {
        let x = x.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32;
        Self {
            q: [x; 3],
            deviation: 0.0,
            weight: 1.0,
        }
    }

    /// Adds one value: each quartile moves towards it by the stochastic-approximation step
    /// for its share τ, 2·s/w · τ up or 2·s/w · (1 − τ) down, w the weight held and s the
    /// larger of the IQR and the mean distance from the median (1/(2s) stands for the
    /// density at the quartile). The step does not depend on the side the value falls on, so
    /// the settling point is where a share τ of the values lies below, skewed or not; the
    /// mean distance keeps the step from vanishing while the quartiles are one value (the
    /// first values, a level that never varied) and makes them follow a level that moved
    /// about as fast as a mean of the same half-life would.
    pub fn add(&mut self, x: f64) {
        if self.weight <= 0.0 || !x.is_finite() {
            self.merge(&Self::point(x));
            return;
        }
        let iqr = f64::from(self.q[2]) - f64::from(self.q[0]);
        let held = f64::from(self.weight);
        let distance = (x - f64::from(self.q[1])).abs();
        let deviation = (f64::from(self.deviation) * held + distance) / (held + 1.0);
        self.deviation = deviation as f32;
        self.weight = (held + 1.0) as f32;
        let gain = 2.0 * iqr.max(deviation) / (held + 1.0);
        for (q, tau) in self.q.iter_mut().zip([0.25, 0.5, 0.75]) {
            let at = f64::from(*q);
            if x > at {
                *q = x.min(at + gain * tau) as f32;
            } else if x < at {
                *q = x.max(at - gain * (1.0 - tau)) as f32;
            }
        }
        self.q.sort_unstable_by(f32::total_cmp);
    }

    /// The summary of both sets of values.
    pub fn merge(&mut self, other: &Self) {
        if other.weight <= 0.0 {
            return;
        }
        if self.weight <= 0.0 {
            *self = *other;
            return;
        }
        let (a, b) = (self.knots(), other.knots());
        let total = f64::from(self.weight) + f64::from(other.weight);
        let (wa, wb) = (
            f64::from(self.weight) / total,
            f64::from(other.weight) / total,
        );
        let mut points = [0.0; 10];
        points[..5].copy_from_slice(&a);
        points[5..].copy_from_slice(&b);
        points.sort_unstable_by(f64::total_cmp);
        let share = |y: f64| wa * share_at(&a, y) + wb * share_at(&b, y);
        let below = |y: f64| wa * share_below(&a, y) + wb * share_below(&b, y);
        for (k, p) in [0.25, 0.5, 0.75].into_iter().enumerate() {
            self.q[k] = invert(&points, p, share, below) as f32;
        }
        // Each side's mean distance, from the new median.
        let median = f64::from(self.q[1]);
        let (ma, mb) = (a[2], b[2]);
        self.deviation = (wa * (f64::from(self.deviation) + (ma - median).abs())
            + wb * (f64::from(other.deviation) + (mb - median).abs()))
            as f32;
        self.weight = total as f32;
    }

    /// Every value so far counts `factor` times as much.
    pub fn decay(&mut self, factor: f32) {
        self.weight *= factor;
    }

    /// The values held, counted with their decay.
    pub fn weight(&self) -> f64 {
        f64::from(self.weight)
    }

    /// The median, `None` when empty.
    pub fn median(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| f64::from(self.q[1]))
    }

    /// The first and third quartiles, `None` when empty.
    #[cfg(test)]
    pub fn quartiles(&self) -> Option<(f64, f64)> {
        (self.weight > 0.0).then(|| (f64::from(self.q[0]), f64::from(self.q[2])))
    }

    /// Half the interquartile range: the MAD of a symmetric distribution.
    pub fn mad(&self) -> f64 {
        (f64::from(self.q[2]) - f64::from(self.q[0])) / 2.0
    }

    /// Where the cumulative share is 0, ¼, ½, ¾ and 1.
    fn knots(&self) -> [f64; 5] {
        let [a, b, c] = self.q.map(f64::from);
        [a - (b - a), a, b, c, c + (c - b)]
    }
}

/// The share at or below `y` of the distribution through `knots`.
fn share_at(knots: &[f64; 5], y: f64) -> f64 {
    match knots.iter().rposition(|&k| k <= y) {
        None => 0.0,
        Some(4) => 1.0,
        Some(j) => SHARES[j] + 0.25 * (y - knots[j]) / (knots[j + 1] - knots[j]),
    }
}

/// The share strictly below `y`.
fn share_below(knots: &[f64; 5], y: f64) -> f64 {
    match knots.iter().rposition(|&k| k < y) {
        None => 0.0,
        Some(4) => 1.0,
        Some(j) => SHARES[j] + 0.25 * (y - knots[j]) / (knots[j + 1] - knots[j]),
    }
}

/// The least y at which the share (`at`, `below` its left limit) reaches p; the share is
/// linear between consecutive `points` (ascending) and may jump at them.
fn invert(points: &[f64], p: f64, at: impl Fn(f64) -> f64, below: impl Fn(f64) -> f64) -> f64 {
    let mut previous: Option<(f64, f64)> = None;
    for &y in points {
        let share = at(y);
        if share >= p {
            let left = below(y);
            return match previous {
                Some((x, from)) if left >= p && left > from => {
                    x + (p - from) / (left - from) * (y - x)
                }
                _ => y,
            };
        }
        previous = Some((y, share));
    }
    points[points.len() - 1]
}

/// What an entity's seasonal past says of one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    /// The same phase on earlier periods, moved by the recent offset from it.
    Season(Spread),
    /// The last hours.
    Hours(Spread),
}

/// One entity's summaries: per feature, the hours, the recent residuals from its phase
/// buckets, the current phase's values of this period, then one bucket per phase.
#[derive(Debug)]
struct Season {
    /// The absolute phase (window / phase length) that `visit` holds the values of.
    visit: u64,
    /// The last window in which it was judged on its own past.
    alone: u64,
    summaries: Box<[Quartiles]>,
}

const HOURS: usize = 0;
const RESIDUALS: usize = 1;
const VISIT: usize = 2;
const PHASES: usize = 3;

/// The seasonal past of every entity judged on its own past, by slot.
#[derive(Debug)]
pub struct Seasons {
    features: usize,
    period: u64,
    buckets: usize,
    /// Summaries per feature.
    stride: usize,
    least: f64,
    hours_step: f32,
    residual_step: f32,
    hours_ready: f64,
    by_slot: HashMap<usize, Season>,
}

/// Each earlier period counts this much of the next.
pub const PERIOD_DECAY: f32 = 0.5;

impl Seasons {
    /// Seasons of `period` windows (0: none) in `buckets` phases, for `features` features;
    /// a bucket is used from `least` values, the residuals' half-life is `recent` windows.
    pub fn new(
        features: usize,
        period: usize,
        buckets: usize,
        least: usize,
        recent: usize,
    ) -> Self {
        let phase = (period / buckets.max(1)).max(1);
        let half = |h: usize| 0.5f64.powf(1.0 / h.max(1) as f64);
        let hours = half(phase);
        Self {
            features,
            period: period as u64,
            buckets,
            stride: PHASES + buckets,
            least: least as f64,
            hours_step: hours as f32,
            residual_step: half(recent) as f32,
            // Half the weight it holds in the steady state: a half-life's worth of values.
            hours_ready: 0.5 / (1.0 - hours),
            by_slot: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.period > 0
    }

    /// Bytes an entity's seasonal past holds, while it has one.
    pub fn bytes_per_entity(&self) -> usize {
        size_of::<Season>() + self.features * self.stride * size_of::<Quartiles>()
    }

    /// Entities that have a seasonal past now.
    pub fn entities(&self) -> usize {
        self.by_slot.len()
    }

    /// The phase bucket of a window, and its absolute phase.
    fn phase(&self, window: u64) -> (usize, u64) {
        let phase = ((window % self.period) * self.buckets as u64 / self.period) as usize;
        let length = (self.period / self.buckets as u64).max(1);
        (phase, window / length)
    }

    /// Notes that the entity in `slot` was judged on its own past in `window`, giving it a
    /// seasonal past if it has none.
    pub fn alone(&mut self, slot: usize, window: u64) {
        if !self.enabled() {
            return;
        }
        let (_, visit) = self.phase(window);
        let len = self.features * self.stride;
        self.by_slot
            .entry(slot)
            .or_insert_with(|| Season {
                visit,
                alone: window,
                summaries: vec![Quartiles::default(); len].into_boxed_slice(),
            })
            .alone = window;
    }

    /// Forgets the seasonal past of the entity in `slot`.
    pub fn clear(&mut self, slot: usize) {
        self.by_slot.remove(&slot);
    }

    /// Forgets the seasonal past of the entity in `slot` if it has had peers for a whole
    /// period up to `window`.
    pub fn forget_if_peered(&mut self, slot: usize, window: u64) {
        if self.by_slot.is_empty() {
            return;
        }
        if let Some(season) = self.by_slot.get(&slot)
            && window.saturating_sub(season.alone) > self.period
        {
            self.by_slot.remove(&slot);
        }
    }

    /// Learns one ordinary window of the entity in `slot` (nothing without a seasonal past).
    pub fn learn(&mut self, slot: usize, window: u64, values: &[Option<f64>]) {
        if self.by_slot.is_empty() {
            return;
        }
        let (phase, visit) = if self.enabled() {
            self.phase(window)
        } else {
            return;
        };
        let (buckets, period, stride) = (self.buckets, self.period, self.stride);
        let length = (period / buckets as u64).max(1);
        let Some(season) = self.by_slot.get_mut(&slot) else {
            return;
        };
        if season.visit != visit {
            // The phase changed: this period's values of the last one join its bucket.
            let done = ((season.visit * length) % period * buckets as u64 / period) as usize;
            for f in 0..self.features {
                let row = &mut season.summaries[f * stride..(f + 1) * stride];
                let values = std::mem::take(&mut row[VISIT]);
                let bucket = &mut row[PHASES + done];
                bucket.decay(PERIOD_DECAY);
                bucket.merge(&values);
            }
            season.visit = visit;
        }
        for (f, value) in values.iter().enumerate().take(self.features) {
            let Some(x) = *value else {
                continue;
            };
            let row = &mut season.summaries[f * stride..(f + 1) * stride];
            row[HOURS].decay(self.hours_step);
            row[HOURS].add(x);
            row[VISIT].add(x);
            let bucket = row[PHASES + phase];
            if bucket.weight() >= self.least
                && let Some(median) = bucket.median()
            {
                row[RESIDUALS].decay(self.residual_step);
                row[RESIDUALS].add(x - median);
            }
        }
    }

    /// What the seasonal past of the entity in `slot` says of feature `f` in `window`, if it
    /// is ready: the expected value for this phase and its spread, or the last hours'.
    pub fn view(&self, slot: usize, f: usize, window: u64, floors: Floors) -> Option<View> {
        if !self.enabled() {
            return None;
        }
        let season = self.by_slot.get(&slot)?;
        let row = &season.summaries[f * self.stride..(f + 1) * self.stride];
        let (phase, _) = self.phase(window);
        let bucket = &row[PHASES + phase];
        if bucket.weight() >= self.least
            && let Some(median) = bucket.median()
        {
            let residuals = &row[RESIDUALS];
            let (offset, spread) = match residuals.median() {
                Some(offset) if residuals.weight() >= self.least => {
                    (offset, bucket.mad().max(residuals.mad()))
                }
                _ => (0.0, bucket.mad()),
            };
            return Some(View::Season(Spread::floored(
                median + offset,
                spread,
                None,
                floors,
            )));
        }
        let hours = &row[HOURS];
        if hours.weight() >= self.hours_ready
            && let Some(median) = hours.median()
        {
            return Some(View::Hours(Spread::floored(
                median,
                hours.mad(),
                None,
                floors,
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Rng;

    fn exact(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn summary(values: &[f64]) -> Quartiles {
        let mut s = Quartiles::default();
        values.iter().for_each(|&v| s.add(v));
        s
    }

    /// Each quartile within `tolerance` of the exact one, as a share of the exact IQR.
    fn assert_near(s: &Quartiles, values: &[f64], tolerance: f64, what: &str) {
        let iqr = exact(values, 0.75) - exact(values, 0.25);
        let (q1, q3) = s.quartiles().unwrap();
        for (got, q) in [(q1, 0.25), (s.median().unwrap(), 0.5), (q3, 0.75)] {
            let want = exact(values, q);
            assert!(
                (got - want).abs() <= tolerance * iqr,
                "{what}: q {q}: {got} against {want} (IQR {iqr})"
            );
        }
    }

    #[test]
    fn quartiles_are_near_the_exact_ones() {
        let mut noise = Rng::new(3);
        let normal: Vec<f64> = (0..20_000).map(|_| 100.0 + 5.0 * noise.normal()).collect();
        let skewed: Vec<f64> = (0..20_000).map(|_| (noise.normal() * 0.8).exp()).collect();
        let uniform: Vec<f64> = (0..20_000).map(|_| noise.unit() * 1e6).collect();
        for (values, what) in [
            (&normal, "normal"),
            (&skewed, "log-normal"),
            (&uniform, "uniform"),
        ] {
            assert_near(&summary(values), values, 0.05, what);
        }
        // A few values already sit near their quartiles.
        let few: Vec<f64> = normal[..60].to_vec();
        assert_near(&summary(&few), &few, 0.35, "60 values");
    }

    #[test]
    fn a_merge_is_the_summary_of_both_sets() {
        let mut noise = Rng::new(9);
        let a: Vec<f64> = (0..5000).map(|_| 10.0 + noise.normal()).collect();
        let b: Vec<f64> = (0..5000).map(|_| 10.5 + 2.0 * noise.normal()).collect();
        let mut merged = summary(&a);
        merged.merge(&summary(&b));
        let both: Vec<f64> = a.iter().chain(&b).copied().collect();
        assert!((merged.weight() - 10_000.0).abs() < 1.0);
        assert_near(&merged, &both, 0.05, "merged");
        // Weights count: a small set barely moves a large one.
        let mut large = summary(&a);
        large.merge(&summary(&[100.0; 10]));
        assert_near(&large, &a, 0.05, "a few far values");
        // Merging with nothing changes nothing, either way.
        let mut empty = Quartiles::default();
        empty.merge(&merged);
        assert_eq!(empty, merged);
        merged.merge(&Quartiles::default());
        assert_eq!(empty, merged);
    }

    #[test]
    fn earlier_periods_fade() {
        let mut noise = Rng::new(17);
        // A week at 100, then a day at 200: each period halves what came before.
        let mut bucket = Quartiles::default();
        for day in 0..8 {
            let level = if day < 7 { 100.0 } else { 200.0 };
            let values: Vec<f64> = (0..50)
                .map(|_| level * (1.0 + 0.02 * noise.normal()))
                .collect();
            bucket.decay(PERIOD_DECAY);
            bucket.merge(&summary(&values));
        }
        // The new day weighs 50 against the week's 50·(½ + ¼ + …) < 50: the median is at
        // the boundary between them, the third quartile among the new.
        let (_, q3) = bucket.quartiles().unwrap();
        assert!(q3 > 190.0, "{q3}");
        assert!((bucket.weight() - 100.0).abs() < 1.0, "{}", bucket.weight());
        // A second day at 200: the old week is a quarter of the weight, out of the middle.
        let values: Vec<f64> = (0..50)
            .map(|_| 200.0 * (1.0 + 0.02 * noise.normal()))
            .collect();
        bucket.decay(PERIOD_DECAY);
        bucket.merge(&summary(&values));
        let median = bucket.median().unwrap();
        assert!((median - 200.0).abs() < 8.0, "{median}");
    }

    #[test]
    fn the_hours_follow_the_recent_past() {
        let step = 0.5f32.powf(1.0 / 10.0);
        let mut hours = Quartiles::default();
        for _ in 0..200 {
            hours.decay(step);
            hours.add(1.0);
        }
        for _ in 0..40 {
            hours.decay(step);
            hours.add(5.0);
        }
        // Four half-lives on, the old level holds 1/16 of the weight: the quartiles moved
        // most of the way, as a mean of that half-life (at 4.75) would.
        let (q1, q3) = hours.quartiles().unwrap();
        let median = hours.median().unwrap();
        assert!(median > 4.5 && q3 <= 5.0 && q1 > 3.0, "{hours:?}");
        assert!((hours.weight() - 10.0 / std::f64::consts::LN_2).abs() < 1.0);
    }

    #[test]
    fn a_bucket_is_ready_after_one_period_and_holds_that_phase() {
        let floors = Floors {
            relative: 0.0,
            absolute: 1e-9,
        };
        // A period of 40 windows in 4 phases; each phase at its own level.
        let mut seasons = Seasons::new(1, 40, 4, 6, 30);
        let level = |w: u64| 10.0 * (1 + (w % 40) / 10) as f64;
        seasons.alone(0, 0);
        for w in 0..40 {
            assert!(!matches!(
                seasons.view(0, 0, w, floors),
                Some(View::Season(_))
            ));
            seasons.learn(0, w, &[Some(level(w))]);
        }
        for w in 40..80 {
            let Some(View::Season(s)) = seasons.view(0, 0, w, floors) else {
                panic!("window {w}: not ready");
            };
            assert!((s.median - level(w)).abs() < 1e-6, "{w}: {s:?}");
            seasons.learn(0, w, &[Some(level(w))]);
        }
        // The offset: on the third period every phase runs 1 above its bucket, and the
        // expected value follows within the residuals' half-life.
        for w in 80..155 {
            seasons.learn(0, w, &[Some(level(w) + 1.0)]);
        }
        let Some(View::Season(s)) = seasons.view(0, 0, 155, floors) else {
            panic!("not ready");
        };
        assert!((s.median - (level(155) + 1.0)).abs() < 0.35, "{s:?}");
        assert_eq!(seasons.entities(), 1);
        seasons.clear(0);
        assert_eq!(seasons.entities(), 0);
        assert_eq!(seasons.view(0, 0, 85, floors), None);
    }
}
