//! Detector settings and their defaults.

use std::collections::HashMap;

use super::error::DetectError;
use super::history::MAX_CAPACITY;

/// How the detector scores entities and when it opens and closes findings.
///
/// Each feature's z is a robust z, 0.6745·(x − median)/MAD (about a standard normal z on
/// well-behaved data), no larger than the normal z of its tail probability among the
/// domain's learned moves. A member's score is its largest |z| corrected for the number k
/// of features compared (Šidák): the normal z of the two-sided tail 1 − (1 − p)^k, p the
/// largest |z|'s tail. Thresholds are on that scale: 3.5 is a 1 in 2,150 event per member
/// and window, whatever its number of features.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    /// Score from which a window counts as anomalous. 3.5 is the usual cut-off for robust z.
    pub threshold: f64,
    /// An open finding counts a window as calm only below this score (hysteresis).
    pub close_threshold: f64,
    /// A finding opens when at least `open_m` of the last `open_n` windows were anomalous.
    pub open_m: usize,
    /// Length of the window history for `open_m` (at most 64).
    pub open_n: usize,
    /// A finding closes after this many calm windows in a row.
    pub close_after: usize,
    /// Fewest members with a value for a feature for a peer comparison; with fewer, each
    /// entity is compared with its own recent history.
    pub min_peers: usize,
    /// Largest share of a domain that may have open findings at once. When more members
    /// would be flagged, the herd moved and none of the new ones is opened. At least one
    /// finding per domain is always allowed.
    pub max_share: f64,
    /// Floor on the MAD as a share of the |median|, so near-identical peers do not give
    /// huge scores for tiny differences.
    pub relative_floor: f64,
    /// Floor on the MAD, in the feature's own unit, for features without an entry in
    /// `absolute_floors`. Guards features whose median is zero (idle peers).
    pub default_absolute_floor: f64,
    /// Floor on the MAD per feature name, in the feature's unit.
    pub absolute_floors: HashMap<String, f64>,
    /// Values kept per entity and feature for its own baseline (a fixed-size ring, at most
    /// 255).
    pub history: usize,
    /// Windows an entity is watched before it is judged, and values its baseline needs
    /// before it is used.
    pub warmup: usize,
    /// An anomalous stretch does not enter the entity's baseline, so a lasting fault stays
    /// visible; after this many anomalous windows in a row it does, so that a lasting new
    /// level becomes the entity's normal.
    pub adapt_after: usize,
    /// An entity absent for this many windows in a row is forgotten and its finding closed.
    pub forget_after: usize,
    /// Most features named as drivers of one finding.
    pub top_features: usize,
    /// Peak score from which a finding is critical rather than a warning.
    pub critical_score: f64,
    /// Whether a domain's members are compared node by node (the agent) or across every
    /// node at once (the aggregator's cluster-wide comparisons).
    pub per_node: bool,
    /// Whether each domain learns the usual spread of its members' moves, per feature, and
    /// judges a move against at least that (see `spread_quantile`). Costs a small sketch
    /// per domain and feature (at most about 300 bytes).
    pub learned_spreads: bool,
    /// The share of a domain's ordinary moves that its learned spread must cover: moves up
    /// to this quantile of the recent ones score at most as that quantile of normal noise
    /// does (0.99: about 2.6 standard deviations).
    pub spread_quantile: f64,
    /// Windows after which what a domain learned counts half (360 windows of 10 s: an hour).
    pub spread_half_life: usize,
    /// An anomalous run of at most this many windows that is followed by `spike_settle`
    /// calm ones was a spike: its values join the entity's own history, so that a spike
    /// size that recurs becomes part of its normal. Longer runs stay out (see
    /// `adapt_after`). 0 keeps every spike out.
    pub spike_windows: usize,
    /// Calm windows after a spike before it joins the history; a fault that comes and goes
    /// faster than this never becomes its own baseline.
    pub spike_settle: usize,
    /// Whether a third or more of a domain moving away from its own past together opens
    /// one "domain shift" finding for the domain (no member findings open while it moves).
    pub domain_shifts: bool,
    /// Windows of one season (a day: 8,640 windows of 10 s; the agent sets it from its window
    /// length). An entity judged on its own past (too few peers) also keeps summaries of its
    /// values at longer horizons: the last hours, and the same phase of earlier periods (see
    /// `season_buckets`). 0 turns them off.
    pub season_period: usize,
    /// Phases of a season, each a summary of the values seen in it on earlier periods (24:
    /// an hour each in a day); one phase's length is also the hours' half-life. At most 96.
    pub season_buckets: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            threshold: 3.5,
            close_threshold: 2.5,
            open_m: 2,
            open_n: 3,
            close_after: 3,
            min_peers: 3,
            max_share: 0.34,
            relative_floor: 0.05,
            default_absolute_floor: 0.01,
            absolute_floors: HashMap::new(),
            history: 60,
            warmup: 6,
            adapt_after: 60,
            forget_after: 3,
            top_features: 3,
            critical_score: 7.0,
            per_node: true,
            learned_spreads: true,
            spread_quantile: 0.99,
            spread_half_life: 360,
            spike_windows: 3,
            spike_settle: 6,
            domain_shifts: true,
            season_period: 8640,
            season_buckets: 24,
        }
    }
}

impl DetectConfig {
    /// Whether every setting is in its range; the detector refuses a configuration that is not.
    pub fn validate(&self) -> Result<(), DetectError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        check(positive(self.threshold), "threshold", "must be above 0")?;
        check(
            positive(self.close_threshold) && self.close_threshold <= self.threshold,
            "close_threshold",
            "must be above 0 and at most `threshold`",
        )?;
        check(
            (1..=64).contains(&self.open_n),
            "open_n",
            "must be between 1 and 64",
        )?;
        check(
            (1..=self.open_n).contains(&self.open_m),
            "open_m",
            "must be between 1 and `open_n`",
        )?;
        check(self.close_after >= 1, "close_after", "must be at least 1")?;
        check(
            self.min_peers >= 3,
            "min_peers",
            "must be at least 3: with two members the median cannot tell which one strays",
        )?;
        check(
            positive(self.max_share) && self.max_share <= 1.0,
            "max_share",
            "must be above 0 and at most 1",
        )?;
        check(
            self.relative_floor.is_finite() && self.relative_floor >= 0.0,
            "relative_floor",
            "must be 0 or more",
        )?;
        check(
            positive(self.default_absolute_floor),
            "default_absolute_floor",
            "must be above 0",
        )?;
        check(
            self.absolute_floors.values().all(|&v| positive(v)),
            "absolute_floors",
            "must all be above 0",
        )?;
        check(self.warmup >= 2, "warmup", "must be at least 2")?;
        check(
            self.history >= self.warmup,
            "history",
            "must be at least `warmup`",
        )?;
        check(
            self.history <= MAX_CAPACITY,
            "history",
            "must be at most 255 values",
        )?;
        check(self.adapt_after >= 1, "adapt_after", "must be at least 1")?;
        check(self.forget_after >= 1, "forget_after", "must be at least 1")?;
        check(self.top_features >= 1, "top_features", "must be at least 1")?;
        check(
            positive(self.critical_score),
            "critical_score",
            "must be above 0",
        )?;
        check(
            self.spread_quantile > 0.5 && self.spread_quantile < 1.0,
            "spread_quantile",
            "must be above 0.5 and below 1",
        )?;
        check(
            self.spike_windows <= 8,
            "spike_windows",
            "must be at most 8",
        )?;
        check(self.spike_settle >= 1, "spike_settle", "must be at least 1")?;
        check(
            (1..=96).contains(&self.season_buckets),
            "season_buckets",
            "must be between 1 and 96",
        )?;
        check(
            self.season_period == 0 || self.season_period >= 2 * self.season_buckets,
            "season_period",
            "must be 0 (off) or at least two windows per bucket (`season_buckets`)",
        )
    }

    /// This configuration with seasons of a day for a detector fed one window every
    /// `window`: `season_period` is the windows in a day, or 0 (off) where a day has fewer
    /// than two windows per phase.
    pub fn with_daily_seasons(self, window: std::time::Duration) -> Self {
        let day = (86_400.0 / window.as_secs_f64().max(1e-3)).round() as usize;
        Self {
            season_period: if day >= 2 * self.season_buckets {
                day
            } else {
                0
            },
            ..self
        }
    }
}

fn check(ok: bool, field: &'static str, reason: &'static str) -> Result<(), DetectError> {
    if ok {
        Ok(())
    } else {
        Err(DetectError::InvalidConfig { field, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(DetectConfig::default().validate(), Ok(()));
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let config = DetectConfig {
            open_m: 4,
            open_n: 3,
            ..DetectConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(DetectError::InvalidConfig {
                field: "open_m",
                ..
            })
        ));
        let config = DetectConfig {
            close_threshold: 5.0,
            ..DetectConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(DetectError::InvalidConfig {
                field: "close_threshold",
                ..
            })
        ));
        let config = DetectConfig {
            season_period: 30,
            ..DetectConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(DetectError::InvalidConfig {
                field: "season_period",
                ..
            })
        ));
        let off = DetectConfig {
            season_period: 0,
            ..DetectConfig::default()
        };
        assert_eq!(off.validate(), Ok(()));
        let daily = |secs| {
            DetectConfig::default()
                .with_daily_seasons(std::time::Duration::from_secs(secs))
                .season_period
        };
        assert_eq!(daily(10), DetectConfig::default().season_period);
        assert_eq!(daily(3), 28_800);
        // An hour's window: a day of 24 windows is too few for 24 phases.
        assert_eq!(daily(3600), 0);
    }
}
