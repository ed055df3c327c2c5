//! Robust statistics: median, MAD and robust z with floors on the spread.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Makes the MAD of normal data comparable with its standard deviation (Φ⁻¹(0.75)).
pub const CONSISTENCY: f64 = 0.6745;

/// Median of `values`, or `None` when there are none. Values must be finite.
pub fn median(values: &[f64]) -> Option<f64> {
    median_in_place(&mut values.to_vec())
}

/// Median absolute deviation from `center`.
pub fn mad(values: &[f64], center: f64) -> Option<f64> {
    let mut deviations = Vec::with_capacity(values.len());
    mad_into(values, center, &mut deviations)
}

/// Median of `values` by selection, which leaves them reordered: the same value a full sort
/// gives, in linear time.
pub fn median_in_place(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (lower, middle, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let middle = *middle;
    if n % 2 == 1 {
        return Some(middle);
    }
    // The other middle value is the largest of those selected below it.
    let below = lower.iter().copied().max_by(f64::total_cmp)?;
    Some((below + middle) / 2.0)
}

/// MAD of `values` from `center`, with `deviations` as the scratch space for the selection.
pub fn mad_into(values: &[f64], center: f64, deviations: &mut Vec<f64>) -> Option<f64> {
    deviations.clear();
    deviations.extend(values.iter().map(|v| (v - center).abs()));
    median_in_place(deviations)
}

/// Up to this many values, sorting them once gives the median and the MAD (by walking out
/// from the middle) faster than two selections.
const SORT_UP_TO: usize = 32;

/// Median and MAD of ascending values (each as `f64` through `value`), or `None` when
/// there are none. The deviations below the median grow walking down from the middle and
/// those above it walking up: merging the two walks reaches the middle deviation in n/2
/// steps, with the very values a selection over all deviations gives.
pub fn median_mad_of_sorted<T: Copy>(sorted: &[T], value: impl Fn(T) -> f64) -> Option<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let at = |i: usize| value(sorted[i]);
    let mid = n / 2;
    let median = if n % 2 == 1 {
        at(mid)
    } else {
        (at(mid - 1) + at(mid)) / 2.0
    };
    // Below the split every value is under the median, from it on none is.
    let split = sorted.partition_point(|&v| value(v) < median);
    let (mut down, mut up) = (split, split);
    let mut previous = 0.0;
    let mut deviation = 0.0;
    for _ in 0..=mid {
        previous = deviation;
        let below = (down > 0).then(|| (at(down - 1) - median).abs());
        let above = (up < n).then(|| (at(up) - median).abs());
        deviation = match (below, above) {
            (Some(b), Some(a)) if b <= a => {
                down -= 1;
                b
            }
            (_, Some(a)) => {
                up += 1;
                a
            }
            (Some(b), None) => {
                down -= 1;
                b
            }
            (None, None) => return None,
        };
    }
    let mad = if n % 2 == 1 {
        deviation
    } else {
        (previous + deviation) / 2.0
    };
    Some((median, mad))
}

/// Lower bounds on the spread, so that identical or idle values do not give huge z.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floors {
    /// Share of the reference level's magnitude.
    pub relative: f64,
    /// In the feature's unit; above 0, so the spread is never 0.
    pub absolute: f64,
}

/// Center and floored spread of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    /// max(MAD, relative floor · |level|, absolute floor).
    pub scale: f64,
}

impl Spread {
    /// Median and floored MAD of `values`; the relative floor is taken from `level`, the
    /// typical magnitude of the feature (for raw values, their own median).
    #[cfg(test)]
    pub fn of(values: &[f64], level: Option<f64>, floors: Floors) -> Option<Self> {
        Self::of_in_place(&mut values.to_vec(), &mut Vec::new(), level, floors)
    }

    /// [`Spread::of`] without allocating: `values` is left reordered and `deviations` is
    /// scratch space.
    pub fn of_in_place(
        values: &mut [f64],
        deviations: &mut Vec<f64>,
        level: Option<f64>,
        floors: Floors,
    ) -> Option<Self> {
        let (median, mad) = if values.len() <= SORT_UP_TO {
            values.sort_unstable_by(f64::total_cmp);
            median_mad_of_sorted(values, |v| v)?
        } else {
            let median = median_in_place(values)?;
            (median, mad_into(values, median, deviations)?)
        };
        Some(Self::floored(median, mad, level, floors))
    }

    /// The spread of a median and a MAD, raised to the floors.
    pub fn floored(median: f64, mad: f64, level: Option<f64>, floors: Floors) -> Self {
        let level = level.unwrap_or(median).abs();
        let scale = mad.max(floors.relative * level).max(floors.absolute);
        Self { median, scale }
    }

    /// Robust z of `x`: 0.6745·(x − median)/scale.
    pub fn z(&self, x: f64) -> f64 {
        CONSISTENCY * (x - self.median) / self.scale
    }
}

/// The normal z with the same tail probability as `z` under a Student t with `samples − 1`
/// degrees of freedom: a spread estimated from few samples is uncertain, so a short history
/// needs a larger deviation before it counts. Never larger in magnitude than `z`.
pub fn small_sample_z(z: f64, samples: usize) -> f64 {
    let Some(freedom) = samples.checked_sub(1).filter(|&f| f > 0) else {
        return z;
    };
    let Ok(t) = StudentsT::new(0.0, 1.0, freedom as f64) else {
        return z;
    };
    let tail = t.sf(z.abs());
    // A tail that underflows to 0 is beyond what a double can tell apart: keep z.
    if !(tail > 0.0 && tail <= 0.5) {
        return z;
    }
    let equivalent = -Normal::standard().inverse_cdf(tail);
    z.signum() * equivalent.min(z.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOORS: Floors = Floors {
        relative: 0.05,
        absolute: 0.01,
    };

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn mad_of_odd_and_even_counts() {
        // Deviations from 3: 2, 1, 0, 1, 6 → median 1.
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 9.0], 3.0), Some(1.0));
        // Deviations from 2.5: 1.5, 0.5, 0.5, 7.5 → median (0.5 + 1.5) / 2 = 1.
        assert_eq!(mad(&[1.0, 2.0, 3.0, 10.0], 2.5), Some(1.0));
    }

    #[test]
    fn robust_z_by_hand() {
        let spread = Spread::of(&[1.0, 2.0, 3.0, 4.0, 9.0], None, FLOORS).unwrap();
        assert_eq!(spread.median, 3.0);
        assert_eq!(spread.scale, 1.0);
        assert!(close(spread.z(9.0), 0.6745 * 6.0));
        assert!(close(spread.z(1.0), -0.6745 * 2.0));
    }

    #[test]
    fn identical_peers_use_the_relative_floor() {
        // MAD 0; the floor is 5 % of the median 100 = 5.
        let spread = Spread::of(&[100.0, 100.0, 100.0, 110.0], None, FLOORS).unwrap();
        assert_eq!(spread.scale, 5.0);
        assert!(close(spread.z(110.0), 0.6745 * 2.0));
    }

    #[test]
    fn idle_peers_use_the_absolute_floor() {
        // Median 0, so only the absolute floor keeps a tiny blip from an infinite z.
        let spread = Spread::of(&[0.0, 0.0, 0.0, 0.001], None, FLOORS).unwrap();
        assert_eq!(spread.scale, 0.01);
        assert!(spread.z(0.001) < 0.1);
    }

    #[test]
    fn the_relative_floor_can_follow_another_level() {
        // Deltas from baselines near 0 around a level of 200: the floor is 5 % of 200.
        let spread = Spread::of(&[0.0, 1.0, -1.0], Some(200.0), FLOORS).unwrap();
        assert_eq!(spread.scale, 10.0);
    }

    #[test]
    fn a_short_history_shrinks_z() {
        // t with 4 degrees of freedom: P(T > 4) ≈ 0.00806, which a normal reaches at ≈ 2.41.
        let z = small_sample_z(4.0, 5);
        assert!((z - 2.41).abs() < 0.01, "{z}");
        assert!((small_sample_z(-4.0, 5) + 2.41).abs() < 0.01);
        // A long history barely changes it.
        assert!((small_sample_z(4.0, 1000) - 4.0).abs() < 0.05);
        // A huge deviation stays huge, only on the normal scale.
        assert!(small_sample_z(1e12, 5) > small_sample_z(100.0, 5));
        assert!(small_sample_z(100.0, 5) > 3.5);
    }
}
