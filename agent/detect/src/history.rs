//! Each entity's recent values per feature, the memory behind its own baseline: one buffer of
//! `f32` per detector, a row of `capacity` values per entity and feature, each row kept in
//! ascending order with the age of every value, so that a baseline's median is read rather
//! than computed, and the oldest value is found to make room for the newest.

use statrs::distribution::{ContinuousCDF, Normal};

use super::stats::{CONSISTENCY, Floors, Spread, median_mad_of_sorted};

/// The most values a row can keep: ages are one byte.
pub const MAX_CAPACITY: usize = u8::MAX as usize;

/// Fewest values from which a row's tail tells its usual spikes.
pub const TAIL_LEAST: usize = 5;

/// For each row length n, the normal quantile that the `rank`th largest of n values
/// reaches on average, Φ⁻¹(1 − rank/(n + 1)): at rank 2, what a spike that came at least
/// twice is worth in z.
fn tail_quantiles(rank: usize) -> Vec<f64> {
    let normal = Normal::standard();
    (0..=MAX_CAPACITY)
        .map(|n| {
            if n < TAIL_LEAST {
                f64::NAN
            } else {
                normal.inverse_cdf(1.0 - rank as f64 / (n as f64 + 1.0))
            }
        })
        .collect()
}

/// The rows of every slot, slot by slot, feature by feature.
#[derive(Debug)]
pub struct History {
    features: usize,
    capacity: usize,
    /// Each row's values, ascending in its first `len` places.
    values: Vec<f32>,
    /// Beside each value: how many values came after it (0 is the newest).
    ages: Vec<u8>,
    /// How many values each row holds.
    lens: Vec<u8>,
    /// [`tail_quantiles`] at ranks 2 and 3, by row length.
    tails: Vec<f64>,
    thirds: Vec<f64>,
    /// Per row, the last [`RECENT`] values observed, newest first, whether or not they
    /// joined the row (NaN until seen): the entity's level over its last windows.
    recent: Vec<f32>,
}

/// Values kept per row of the latest windows, besides the row itself.
pub const RECENT: usize = 2;

/// One entity's values of one feature, ascending.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    sorted: &'a [f32],
    /// [`tail_quantiles`] at its length, at ranks 2 and 3.
    tail: f64,
    third: f64,
}

impl History {
    /// Rows of at most `capacity` values (at most [`MAX_CAPACITY`]) for `features` features.
    pub fn new(features: usize, capacity: usize) -> Self {
        debug_assert!((1..=MAX_CAPACITY).contains(&capacity));
        Self {
            features,
            capacity,
            values: Vec::new(),
            ages: Vec::new(),
            lens: Vec::new(),
            tails: tail_quantiles(2),
            thirds: tail_quantiles(3),
            recent: Vec::new(),
        }
    }

    /// Bytes of history per entity: a value and an age per feature and place, a length per
    /// feature, and the latest [`RECENT`] values per feature.
    pub fn bytes_per_slot(&self) -> usize {
        self.features * (self.capacity * (size_of::<f32>() + 1) + 1 + RECENT * size_of::<f32>())
    }

    /// Slots the buffer holds rows for.
    pub fn slots(&self) -> usize {
        self.lens.len() / self.features
    }

    /// Adds empty rows for one more slot; returns it.
    pub fn grow(&mut self) -> usize {
        let slot = self.slots();
        let cells = self.features * self.capacity;
        self.values.resize(self.values.len() + cells, 0.0);
        self.ages.resize(self.ages.len() + cells, 0);
        self.lens.resize(self.lens.len() + self.features, 0);
        self.recent
            .resize(self.recent.len() + self.features * RECENT, f32::NAN);
        slot
    }

    /// Makes room for `slots` more slots at once: a cluster's first window brings 150,000
    /// entities, and growing the buffers one slot at a time would copy them over and over.
    pub fn reserve(&mut self, slots: usize) {
        let cells = self.features * self.capacity * slots;
        self.values.reserve(cells);
        self.ages.reserve(cells);
        self.lens.reserve(self.features * slots);
        self.recent.reserve(self.features * RECENT * slots);
    }

    /// Empties a slot's rows, for an entity that starts over or for the slot's next owner.
    pub fn clear(&mut self, slot: usize) {
        let rows = slot * self.features..(slot + 1) * self.features;
        self.recent[rows.start * RECENT..rows.end * RECENT].fill(f32::NAN);
        self.lens[rows].fill(0);
    }

    /// Notes a value observed in this window, whether or not it joins the row.
    pub fn note(&mut self, slot: usize, feature: usize, value: f64) {
        let at = (slot * self.features + feature) * RECENT;
        let recent = &mut self.recent[at..at + RECENT];
        recent.copy_within(..RECENT - 1, 1);
        recent[0] = value.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32;
    }

    /// The level of a row's entity over its last windows: the median of `value` (this
    /// window's) and the [`RECENT`] values noted before it; NaN until that many were noted.
    /// A one-window spike does not move it; a level that lasts does.
    pub fn lasting(&self, slot: usize, feature: usize, value: f64) -> f64 {
        let at = (slot * self.features + feature) * RECENT;
        let [a, b] = [self.recent[at], self.recent[at + 1]].map(f64::from);
        if a.is_nan() || b.is_nan() {
            return f64::NAN;
        }
        // The median of three.
        value.max(a.min(b)).min(a.max(b))
    }

    pub fn row(&self, slot: usize, feature: usize) -> Row<'_> {
        let row = slot * self.features + feature;
        let start = row * self.capacity;
        let sorted = &self.values[start..start + usize::from(self.lens[row])];
        Row {
            sorted,
            tail: self.tails[sorted.len()],
            third: self.thirds[sorted.len()],
        }
    }

    /// Keeps `value` as the newest of its row, in place of the oldest when the row is full.
    /// A value beyond the range of `f32` is kept as the largest `f32` of its sign.
    pub fn push(&mut self, slot: usize, feature: usize, value: f64) {
        let row = slot * self.features + feature;
        let start = row * self.capacity;
        let cells = start..start + self.capacity;
        let (values, ages) = (&mut self.values[cells.clone()], &mut self.ages[cells]);
        let len = usize::from(self.lens[row]);
        // The place that is given up: the oldest value's (it has seen len − 1 come after it)
        // or, while the row fills, the one after the last.
        let (mut at, len) = if len == self.capacity {
            // Found first, then every age counted up in one pass the compiler vectorizes.
            let oldest = ages
                .iter()
                .position(|&age| usize::from(age) == len - 1)
                .unwrap_or(0);
            ages.iter_mut().for_each(|age| *age = age.wrapping_add(1));
            (oldest, len)
        } else {
            for age in &mut ages[..len] {
                *age += 1;
            }
            // len < capacity ≤ 255.
            self.lens[row] = (len + 1) as u8;
            (len, len + 1)
        };
        // One step of an insertion sort from the place given up, either way.
        let value = value.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32;
        while at > 0 && values[at - 1] > value {
            values[at] = values[at - 1];
            ages[at] = ages[at - 1];
            at -= 1;
        }
        while at + 1 < len && values[at + 1] < value {
            values[at] = values[at + 1];
            ages[at] = ages[at + 1];
            at += 1;
        }
        values[at] = value;
        ages[at] = 0;
    }

    /// Each row of `slot` that holds at least `least` values as its median and its usual
    /// spread (see [`Row::usual_spread`], NaN under [`TAIL_LEAST`] values), NaN for the
    /// others, into `medians` and `spreads` at every `stride`th place from the first.
    pub fn baselines(
        &self,
        slot: usize,
        least: usize,
        medians: &mut [f64],
        spreads: &mut [f64],
        stride: usize,
    ) {
        for f in 0..self.features {
            let row = self.row(slot, f);
            let (median, spread) = if row.len() >= least.max(1) {
                (median_of_sorted(row.sorted), row.usual_spread())
            } else {
                (f64::NAN, f64::NAN)
            };
            medians[f * stride] = median;
            spreads[f * stride] = spread;
        }
    }
}

/// The median of ascending values, at least one.
fn median_of_sorted(sorted: &[f32]) -> f64 {
    let n = sorted.len();
    let mid = n / 2;
    if n % 2 == 1 {
        f64::from(sorted[mid])
    } else {
        (f64::from(sorted[mid - 1]) + f64::from(sorted[mid])) / 2.0
    }
}

impl Row<'_> {
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The median of the row's values, read from the middle.
    #[cfg(test)]
    pub fn median(&self) -> Option<f64> {
        (!self.sorted.is_empty()).then(|| median_of_sorted(self.sorted))
    }

    /// What a level that lasts is judged against: the median and floored MAD of the row,
    /// its spikes left out. Where the row is mostly one value (a MAD of 0: a sparse counter,
    /// zero but for blips), the MAD says nothing, and the row's third-largest (or
    /// third-smallest) value sets the spread at its rank: blips that come again and again,
    /// sometimes two windows out of three, are no lasting level.
    pub fn lasting_spread(&self, floors: Floors) -> Option<Spread> {
        let (median, mad) = median_mad_of_sorted(self.sorted, f64::from)?;
        let n = self.sorted.len();
        let mad = if n < TAIL_LEAST || mad > 0.0 {
            mad
        } else {
            let high = f64::from(self.sorted[n - 3]) - median;
            let low = median - f64::from(self.sorted[2]);
            mad.max(CONSISTENCY * high.max(low) / self.third)
        };
        Some(Spread::floored(median, mad, None, floors))
    }

    /// Median and floored MAD of the row, widened to its usual spikes
    /// ([`Row::usual_spread`]); beside it, the plain MAD of the row's values.
    pub fn spread_and_mad(&self, floors: Floors) -> Option<(Spread, f64)> {
        let (median, mad) = median_mad_of_sorted(self.sorted, f64::from)?;
        let usual = self.usual_spread();
        let widened = if usual.is_nan() { mad } else { mad.max(usual) };
        Some((Spread::floored(median, widened, None, floors), mad))
    }

    /// The spread, in MAD units, that makes the row's second-largest (or second-smallest)
    /// value as far out as the second largest of normal values would be: a spike size that
    /// came at least twice scores no more than ordinary noise at that rank. NaN under
    /// [`TAIL_LEAST`] values.
    pub fn usual_spread(&self) -> f64 {
        let n = self.sorted.len();
        if n < TAIL_LEAST {
            return f64::NAN;
        }
        let median = median_of_sorted(self.sorted);
        let high = f64::from(self.sorted[n - 2]) - median;
        let low = median - f64::from(self.sorted[1]);
        CONSISTENCY * high.max(low) / self.tail
    }

    /// The row's values, ascending.
    #[cfg(test)]
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.sorted.iter().map(|&v| f64::from(v))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[test]
    fn keeps_only_the_most_recent_values_in_order() {
        let mut history = History::new(2, 3);
        let slot = history.grow();
        for v in [5, 1, 4, 2, 3] {
            history.push(slot, 1, f64::from(v));
        }
        // The last three pushed: 4, 2, 3.
        assert_eq!(
            history.row(slot, 1).values().collect::<Vec<_>>(),
            [2.0, 3.0, 4.0]
        );
        assert_eq!(history.row(slot, 1).median(), Some(3.0));
        assert_eq!(history.row(slot, 0).len(), 0);
        history.clear(slot);
        assert_eq!(history.row(slot, 1).median(), None);
    }

    #[test]
    fn rows_follow_a_plain_ring_with_repeats_and_extremes() {
        let capacity = 7;
        let mut history = History::new(3, capacity);
        let slots = [history.grow(), history.grow()];
        let mut rings = vec![VecDeque::new(); 6];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for step in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Few distinct values, so that equal values are common; now and then one beyond f32.
            let value = match state % 23 {
                0 => 1e300,
                1 => -1e300,
                k => f64::from((k % 5) as u32) * 0.5 - 1.0,
            };
            let (slot, feature) = (step % 2, (step / 2) % 3);
            history.push(slots[slot], feature, value);
            let ring = &mut rings[slot * 3 + feature];
            if ring.len() == capacity {
                ring.pop_front();
            }
            ring.push_back(value.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32);
            let mut expected: Vec<f64> = ring.iter().map(|&v| f64::from(v)).collect();
            expected.sort_by(f64::total_cmp);
            let row = history.row(slots[slot], feature);
            assert_eq!(row.values().collect::<Vec<_>>(), expected, "step {step}");
            assert_eq!(row.median(), crate::median(&expected));
        }
    }

    #[test]
    fn the_spread_of_a_row_is_its_median_and_floored_mad() {
        let mut history = History::new(1, 10);
        let slot = history.grow();
        for v in [1.0, 2.0, 3.0, 4.0, 9.0] {
            history.push(slot, 0, v);
        }
        let floors = Floors {
            relative: 0.05,
            absolute: 0.01,
        };
        let spread = history.row(slot, 0).spread_and_mad(floors).unwrap().0;
        // MAD 1; but the second largest, 4, is 1 above the median, where the second largest
        // of five normal values lies 0.43 σ out: as a MAD, 0.6745 / 0.4307 = 1.566.
        assert_eq!(spread.median, 3.0);
        assert!((spread.scale - 1.566).abs() < 1e-3, "{}", spread.scale);
        // A spike that came only once does not widen it.
        let other = history.grow();
        for v in [3.0, 3.0, 2.0, 4.0, 3.0, 3.0, 100.0, 3.0] {
            history.push(other, 0, v);
        }
        let spread = history.row(other, 0).spread_and_mad(floors).unwrap().0;
        assert!(spread.scale < 2.0, "{}", spread.scale);
    }
}
