//! A small quantile sketch of non-negative values that forgets slowly: log-spaced buckets
//! (each value known to within a relative error, as in DDSketch) with weights that decay by
//! half every `half_life` ticks. Its memory is bounded ([`MAX_BUCKETS`] weights), it merges
//! with another sketch, and its quantiles are those of the recent past.
//!
//! The decay is forward: rather than shrinking every weight each tick, a new value weighs more
//! than the last by the decay factor, and all weights are scaled down together now and then.

use std::sync::LazyLock;

/// Relative error of a value read back from its bucket.
const ACCURACY: f64 = 0.1;
/// Most buckets kept; past this the lowest ones are folded together. The sketch is read for
/// high quantiles, so the low end may lose detail. 64 buckets at 10 % span about 5.5 decades.
pub const MAX_BUCKETS: usize = 64;
/// Values at or below this count as zero (idle counters are exactly zero; this also keeps
/// log() away from denormals).
const ZERO: f64 = 1e-12;
/// Weights are scaled down together once a new value weighs this much.
const RESCALE_AT: f32 = 1e20;

/// `(1 + α) / (1 − α)`: the ratio between the bounds of a bucket.
fn gamma() -> f64 {
    (1.0 + ACCURACY) / (1.0 - ACCURACY)
}

/// The bucket of the lowest value above [`ZERO`], and the first past the largest `f64`.
const LOWEST: i32 = -138;
const HIGHEST: i32 = 3538;

/// ln 2 / ln γ: buckets per doubling of a value. A constant, so that finding a bucket
/// takes no logarithm at all (a test checks it against γ).
const BUCKETS_PER_OCTAVE: f64 = 3.454_152_480_827_379_4;

/// The upper bound of every bucket from [`LOWEST`] to [`HIGHEST`]: γ^i.
static BOUNDS: LazyLock<Vec<f64>> =
    LazyLock::new(|| (LOWEST..=HIGHEST).map(|i| gamma().powi(i)).collect());

/// The bucket `i` whose bounds (γ^(i−1), γ^i] hold `value` (above [`ZERO`], finite). A
/// value's logarithm would say it too, at several times the cost: a cluster's aggregator
/// adds millions of values a window. The exponent and a quadratic in the mantissa put the
/// logarithm within 0.03 of a bucket, which is nearly always the answer; the bounds settle
/// it.
fn bucket(value: f64) -> i32 {
    let bounds = &*BOUNDS;
    let bits = value.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    // The mantissa less 1, in [0, 1): log2(1 + t) ≈ t (1.34655 − 0.34655 t), within 0.008.
    let t = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000) - 1.0;
    let log2 = f64::from(exponent) + t * (1.346_55 - 0.346_55 * t);
    // Above LOWEST − 1 for every value above ZERO: truncation is the floor, and one more
    // the ceiling.
    let mut at =
        ((log2 * BUCKETS_PER_OCTAVE - f64::from(LOWEST)) as usize + 1).min(bounds.len() - 1);
    while at + 1 < bounds.len() && bounds[at] < value {
        at += 1;
    }
    while at > 0 && bounds[at - 1] >= value {
        at -= 1;
    }
    at as i32 + LOWEST
}

/// Recent values' distribution, within [`ACCURACY`] relative error.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    /// Weight of each bucket from `offset` on: bucket `i` holds values in
    /// (γ^(i−1), γ^i].
    buckets: Vec<f32>,
    offset: i32,
    /// Weight of the zeros.
    zeros: f32,
    /// Sum of every weight.
    total: f32,
    /// What a value added now weighs; grows by `step` per tick.
    weight: f32,
}

impl Default for Sketch {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            offset: 0,
            zeros: 0.0,
            total: 0.0,
            weight: 1.0,
        }
    }
}

/// How much more a value weighs each tick, for a half-life in ticks (0: no decay).
pub fn decay_step(half_life: usize) -> f32 {
    if half_life == 0 {
        1.0
    } else {
        2f64.powf(1.0 / half_life as f64) as f32
    }
}

impl Sketch {
    /// Adds a value (negative values count as their magnitude).
    pub fn add(&mut self, value: f64) {
        let value = value.abs();
        let w = self.weight;
        self.total += w;
        if value <= ZERO || !value.is_finite() {
            self.zeros += w;
            return;
        }
        let at = self.place(bucket(value));
        self.buckets[at] += w;
    }

    /// One tick passes: values added from now on weigh `step` times more than those before.
    pub fn tick(&mut self, step: f32) {
        self.weight *= step;
        if self.weight >= RESCALE_AT {
            let by = 1.0 / self.weight;
            self.buckets.iter_mut().for_each(|b| *b *= by);
            self.zeros *= by;
            self.total *= by;
            self.weight = 1.0;
        }
    }

    /// How many values the sketch holds, counted with their decay: each weighs the share of
    /// a value added now that it still has.
    pub fn count(&self) -> f64 {
        f64::from(self.total) / f64::from(self.weight)
    }

    /// The value below which a share `q` (0 to 1) of the weight lies; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * f64::from(self.total);
        let mut seen = f64::from(self.zeros);
        if rank <= seen && self.zeros > 0.0 {
            return Some(0.0);
        }
        let g = gamma();
        for (k, &b) in self.buckets.iter().enumerate() {
            seen += f64::from(b);
            if b > 0.0 && seen >= rank {
                let index = self.offset + k as i32;
                // The middle of (γ^(i−1), γ^i] in relative terms.
                return Some(2.0 * g.powi(index) / (g + 1.0));
            }
        }
        // Rounding left the rank just above the last bucket: that bucket.
        let last = self.buckets.iter().rposition(|&b| b > 0.0)?;
        Some(2.0 * g.powi(self.offset + last as i32) / (g + 1.0))
    }

    /// How many values at or beyond `value`'s magnitude came in the recent past (counted
    /// with their decay, as [`Sketch::count`]), and their share of all: how often a value at
    /// least as large came. The bucket that holds `value` counts whole, so both err towards
    /// the larger; `None` when empty.
    pub fn exceedance(&self, value: f64) -> Option<(f64, f64)> {
        if self.total <= 0.0 {
            return None;
        }
        let value = value.abs();
        if value <= ZERO {
            return Some((self.count(), 1.0));
        }
        if !value.is_finite() {
            return Some((0.0, 0.0));
        }
        let from = usize::try_from(bucket(value) - self.offset).unwrap_or(0);
        let beyond: f64 = self.buckets.iter().skip(from).map(|&b| f64::from(b)).sum();
        Some((
            beyond / f64::from(self.weight),
            (beyond / f64::from(self.total)).min(1.0),
        ))
    }

    /// Adds `other`'s values, as if they had been added here at the same ticks. (Nothing
    /// merges sketches yet; kept tested for a cluster view made of nodes' sketches.)
    #[cfg(test)]
    pub fn merge(&mut self, other: &Sketch) {
        if other.total <= 0.0 {
            return;
        }
        // Bring both to the scale of the younger clock.
        let (mine, theirs) = if self.weight >= other.weight {
            (1.0, self.weight / other.weight)
        } else {
            (other.weight / self.weight, 1.0)
        };
        if mine != 1.0 {
            self.buckets.iter_mut().for_each(|b| *b *= mine);
            self.zeros *= mine;
            self.total *= mine;
            self.weight *= mine;
        }
        self.zeros += other.zeros * theirs;
        self.total += other.total * theirs;
        for (k, &b) in other.buckets.iter().enumerate() {
            if b > 0.0 {
                let at = self.place(other.offset + k as i32);
                self.buckets[at] += b * theirs;
            }
        }
    }

    /// Memory the sketch holds, in bytes.
    pub fn bytes(&self) -> usize {
        size_of::<Self>() + self.buckets.capacity() * size_of::<f32>()
    }

    /// The place of bucket `index` in `buckets`, making room for it; past [`MAX_BUCKETS`],
    /// the lowest buckets are folded into the lowest kept one.
    fn place(&mut self, index: i32) -> usize {
        if self.buckets.is_empty() {
            self.offset = index;
            self.buckets.push(0.0);
            return 0;
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            if self.buckets.len() + grow > MAX_BUCKETS {
                // No room below: it counts in the lowest bucket there is room for.
                let room = MAX_BUCKETS - self.buckets.len();
                self.buckets.splice(0..0, std::iter::repeat_n(0.0, room));
                self.offset -= room as i32;
                return 0;
            }
            self.buckets.splice(0..0, std::iter::repeat_n(0.0, grow));
            self.offset = index;
            return 0;
        }
        let at = (index - self.offset) as usize;
        if at < self.buckets.len() {
            return at;
        }
        if at + 1 > MAX_BUCKETS {
            // Fold the lowest buckets together so that the high end stays exact; a value far
            // above every other folds them all into the lowest bucket kept.
            let offset = index - (MAX_BUCKETS as i32 - 1);
            let drop = usize::try_from(offset - self.offset)
                .unwrap_or(0)
                .min(self.buckets.len());
            let folded: f32 = self.buckets.drain(..drop).sum();
            self.offset = offset;
            if let Some(first) = self.buckets.first_mut() {
                *first += folded;
            } else {
                self.buckets.push(folded);
            }
            let at = (index - self.offset) as usize;
            self.buckets.resize(at + 1, 0.0);
            return at;
        }
        self.buckets.resize(at + 1, 0.0);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 in (0, 1).
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    fn exact(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn quantiles_are_within_the_relative_error_of_exact_ones() {
        let mut noise = Noise(11);
        // Log-normal over three decades, and a third of zeros, as a sparse counter gives.
        let values: Vec<f64> = (0..20_000)
            .map(|_| {
                if noise.next() < 0.33 {
                    0.0
                } else {
                    (noise.next() * 7.0).exp() * 0.01
                }
            })
            .collect();
        let mut sketch = Sketch::default();
        values.iter().for_each(|&v| sketch.add(v));
        assert!((sketch.count() - 20_000.0).abs() < 1.0);
        for q in [0.1, 0.34, 0.5, 0.9, 0.99, 0.999] {
            let (got, want) = (sketch.quantile(q).unwrap(), exact(&values, q));
            if want == 0.0 {
                assert_eq!(got, 0.0, "q {q}");
            } else {
                assert!(
                    (got - want).abs() <= ACCURACY * want * 1.01,
                    "q {q}: {got} against {want}"
                );
            }
        }
        assert!(sketch.buckets.len() <= MAX_BUCKETS);
    }

    #[test]
    fn a_value_goes_to_the_bucket_its_logarithm_names() {
        assert_eq!(BUCKETS_PER_OCTAVE, std::f64::consts::LN_2 / gamma().ln());
        let mut noise = Noise(3);
        let by_logarithm = |v: f64| (v.ln() / gamma().ln()).ceil() as i32;
        // Across every decade a value can have, and on and around the bounds themselves.
        let values = (0..100_000)
            .map(|_| (noise.next() * 1700.0 - 27.0).exp())
            .chain((LOWEST..HIGHEST - 1).flat_map(|i| {
                let bound = gamma().powi(i);
                [bound * (1.0 - 1e-9), bound * (1.0 + 1e-9)]
            }))
            .chain([ZERO * 1.0001, 1.0, f64::MAX, f64::MIN_POSITIVE * 1e300]);
        for v in values.filter(|v| *v > ZERO && v.is_finite()) {
            assert_eq!(bucket(v), by_logarithm(v), "{v:e}");
        }
    }

    #[test]
    fn exceedance_is_the_share_of_values_as_large_or_larger() {
        let mut sketch = Sketch::default();
        // 90 zeros, 9 values of 1 and one of 100: a sparse counter.
        (0..90).for_each(|_| sketch.add(0.0));
        (0..9).for_each(|_| sketch.add(1.0));
        sketch.add(100.0);
        assert_eq!(sketch.exceedance(0.0), Some((100.0, 1.0)));
        let (count, share) = sketch.exceedance(1.0).unwrap();
        assert!((count - 10.0).abs() < 1e-4 && (share - 0.10).abs() < 1e-6);
        assert_eq!(sketch.exceedance(-1.0), sketch.exceedance(1.0));
        let (count, share) = sketch.exceedance(50.0).unwrap();
        assert!((count - 1.0).abs() < 1e-4 && (share - 0.01).abs() < 1e-6);
        assert_eq!(sketch.exceedance(1000.0), Some((0.0, 0.0)));
        assert_eq!(Sketch::default().exceedance(1.0), None);
    }

    #[test]
    fn old_values_fade_with_the_half_life() {
        let step = decay_step(10);
        let mut sketch = Sketch::default();
        for _ in 0..100 {
            sketch.add(1.0);
        }
        // Ten ticks on, the old hundred count as fifty.
        for _ in 0..10 {
            sketch.tick(step);
        }
        assert!((sketch.count() - 50.0).abs() < 0.01, "{}", sketch.count());
        for _ in 0..60 {
            sketch.add(100.0);
        }
        // 60 new against 50 old: the median is among the new.
        let median = sketch.quantile(0.5).unwrap();
        assert!((median - 100.0).abs() <= 10.0, "{median}");
        // Long after, the old ones are gone entirely, through many rescalings.
        for _ in 0..5000 {
            sketch.tick(step);
            sketch.add(100.0);
        }
        assert!((sketch.quantile(0.001).unwrap() - 100.0).abs() <= 10.0);
        assert!((sketch.count() - 10.0 / std::f64::consts::LN_2).abs() < 1.0);
    }

    #[test]
    fn a_merge_is_the_sketch_of_both_sets() {
        let mut noise = Noise(5);
        let a: Vec<f64> = (0..3000).map(|_| noise.next() * 10.0).collect();
        let b: Vec<f64> = (0..1000).map(|_| 1e3 + noise.next() * 1e4).collect();
        let (mut sa, mut sb, mut both) = (Sketch::default(), Sketch::default(), Sketch::default());
        a.iter().for_each(|&v| sa.add(v));
        b.iter().for_each(|&v| sb.add(v));
        a.iter().chain(&b).for_each(|&v| both.add(v));
        sa.merge(&sb);
        for q in [0.5, 0.75, 0.8, 0.95] {
            assert_eq!(sa.quantile(q), both.quantile(q), "q {q}");
        }
    }

    #[test]
    fn a_wide_range_keeps_its_high_end_in_bounded_memory() {
        let mut sketch = Sketch::default();
        for e in -12..12 {
            sketch.add(10f64.powi(e));
        }
        assert!(sketch.buckets.len() <= MAX_BUCKETS);
        // A value far above all the others, and one far below them again.
        let mut far = Sketch::default();
        far.add(1e-9);
        far.add(1e12);
        far.add(1e-9);
        assert!(far.buckets.len() <= MAX_BUCKETS);
        assert_eq!(far.count(), 3.0);
        assert!((far.quantile(1.0).unwrap() - 1e12).abs() <= ACCURACY * 1e12);
        let top = sketch.quantile(1.0).unwrap();
        assert!((top - 1e11).abs() <= ACCURACY * 1e11, "{top}");
        assert_eq!(Sketch::default().quantile(0.5), None);
    }
}
