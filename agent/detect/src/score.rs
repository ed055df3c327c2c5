//! Scores one window of one domain: each member against its peers, or against its own past
//! where the domain has too few members.

use statrs::distribution::{ContinuousCDF, Normal};

use super::config::DetectConfig;
use super::finding::{Basis, Comparison, Driver};
use super::history::{History, Row};
use super::season::{Seasons, View};
use super::sketch::Sketch;
use super::spreads::Usual;
use super::stats::{CONSISTENCY, Floors, Spread, small_sample_z};

/// One member of a domain in this window.
pub struct Member<'a> {
    /// One value per feature; `None` is missing.
    pub values: &'a [Option<f64>],
    /// Where its own past values are in the detector's [`History`].
    pub slot: usize,
    /// Whether its result carries every feature's comparison, or only its score and drivers.
    pub detail: bool,
}

/// A member's score in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Largest |z| over its features; 0 when no feature could be scored.
    pub score: f64,
    /// Its features at or above the threshold, strongest first, at most `top_features`.
    pub drivers: Vec<Driver>,
    /// Every feature in the detector's order, `None` where it could not be compared; empty
    /// for a member scored without detail.
    pub features: Vec<Option<Comparison>>,
}

/// One feature across the members of a domain in one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureStats {
    /// Median and floored MAD of the members' values.
    pub median: f64,
    pub scale: f64,
    /// Members with a value.
    pub members: usize,
    /// `Peers` when there were enough members to compare them with each other.
    pub basis: Basis,
}

/// Buffers kept from domain to domain and window to window, so that scoring a member
/// allocates nothing unless it has drivers or its comparisons are asked for.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The domain's values, feature by feature (a column of members each); NaN is missing.
    values: Vec<f64>,
    /// Beside `values`: each member's own median, NaN while its history is too short.
    own: Vec<f64>,
    /// Beside `values`: the usual spread of each member's own history, NaN while too short.
    own_spread: Vec<f64>,
    /// Beside `values`: each member's move less the domain's median move, NaN where there
    /// is none; what the domain's learned spread learns from.
    pooled: Vec<f64>,
    /// Beside `values`: the same over each member's last three windows (see
    /// [`History::lasting`]), NaN where there is none.
    pooled_lasting: Vec<f64>,
    /// Beside `values`: each member's z against its own baseline and usual spread alone, NaN
    /// where it has none; what tells a domain that moved together.
    own_zs: Vec<f64>,
    /// Beside `values`: each member's level over its last windows ([`History::lasting`]),
    /// read with its baselines, member by member, where its past lies together.
    lasting: Vec<f64>,
    /// Members with a value for the feature at hand, with the value.
    present: Vec<(usize, f64)>,
    levels: Vec<f64>,
    moves: Vec<f64>,
    deviations: Vec<f64>,
    results: Results,
}

/// What the members have scored so far in a domain.
#[derive(Debug, Default)]
struct Results {
    threshold: f64,
    /// Places per member in `top`.
    places: usize,
    /// Per member: largest |z| so far.
    scores: Vec<f64>,
    /// Per member: features compared so far.
    judged: Vec<usize>,
    /// Per member, `places` places: its strongest comparisons at or above the threshold, by
    /// feature, strongest first, the earlier feature first among equals.
    top: Vec<(usize, Comparison)>,
    filled: Vec<usize>,
    /// Per member: every comparison, for those asked with detail.
    features: Vec<Vec<Option<Comparison>>>,
}

impl Results {
    fn start(&mut self, config: &DetectConfig, features: usize, members: &[Member<'_>]) {
        let none = Comparison {
            value: 0.0,
            reference: 0.0,
            scale: 0.0,
            z: 0.0,
            basis: Basis::Peers,
        };
        self.threshold = config.threshold;
        self.places = config.top_features.min(features);
        self.scores.clear();
        self.scores.resize(members.len(), 0.0);
        self.judged.clear();
        self.judged.resize(members.len(), 0);
        self.top.clear();
        self.top.resize(members.len() * self.places, (0, none));
        self.filled.clear();
        self.filled.resize(members.len(), 0);
        self.features.clear();
        self.features.extend(members.iter().map(|m| {
            if m.detail {
                vec![None; features]
            } else {
                Vec::new()
            }
        }));
    }

    fn record(&mut self, member: usize, feature: usize, c: Comparison) {
        let z = c.z.abs();
        self.judged[member] += 1;
        if z > self.scores[member] {
            self.scores[member] = z;
        }
        if let Some(slot) = self.features[member].get_mut(feature) {
            *slot = Some(c);
        }
        if z < self.threshold {
            return;
        }
        let places = self.places;
        let top = &mut self.top[member * places..(member + 1) * places];
        let filled = &mut self.filled[member];
        let at = top[..*filled]
            .iter()
            .position(|(_, o)| o.z.abs() < z)
            .unwrap_or(*filled);
        if at >= places {
            return;
        }
        let end = (*filled + 1).min(places);
        top.copy_within(at..end - 1, at + 1);
        top[at] = (feature, c);
        *filled = end;
    }

    fn finish(&mut self, names: &[String]) -> Vec<Scored> {
        let places = self.places;
        let features = std::mem::take(&mut self.features);
        features
            .into_iter()
            .enumerate()
            .map(|(member, features)| {
                let top = &self.top[member * places..member * places + self.filled[member]];
                Scored {
                    score: combined(self.scores[member], self.judged[member]),
                    drivers: top
                        .iter()
                        .map(|(f, c)| Driver::new(&names[*f], *c))
                        .collect(),
                    features,
                }
            })
            .collect()
    }
}

/// Scores every member of one domain in one window, in the order given; also returns each
/// feature's statistics across the members. A member is compared with its peers on its
/// level and on its move away from its own baseline (the median of its past values), or,
/// where too few members have a value, with its own past alone.
///
/// Each feature's move spread is at least `learned` (the domain's usual spread of moves, 0
/// where unknown), a move is no more unusual than the domain's `usual` moves say it is
/// ([`calibrated`]), and a member's move must also stand out from its own history's usual
/// spikes: the deviation counts as far as every view agrees. A member's own past is its
/// kept values and, where it has them, its `seasons` ([`own_past`]) in `window`.
#[allow(clippy::too_many_arguments)]
pub fn score_domain(
    config: &DetectConfig,
    features: &[String],
    floors: &[Floors],
    learned: &[f64],
    usual: &[Option<Usual<'_>>],
    history: &History,
    seasons: &Seasons,
    window: u64,
    members: &[Member<'_>],
    scratch: &mut Scratch,
) -> (Vec<Scored>, Vec<Option<FeatureStats>>) {
    let Scratch {
        values,
        own,
        own_spread,
        pooled,
        pooled_lasting,
        own_zs,
        lasting,
        present,
        levels,
        moves,
        deviations,
        results,
    } = scratch;
    results.start(config, features.len(), members);
    // Each member's values and baseline medians in one pass over its history, so that each
    // feature below reads a column rather than every member's rows again.
    let n = members.len();
    values.clear();
    values.resize(features.len() * n, f64::NAN);
    own.clear();
    own.resize(features.len() * n, f64::NAN);
    own_spread.clear();
    own_spread.resize(features.len() * n, f64::NAN);
    pooled.clear();
    pooled.resize(features.len() * n, f64::NAN);
    pooled_lasting.clear();
    pooled_lasting.resize(features.len() * n, f64::NAN);
    own_zs.clear();
    own_zs.resize(features.len() * n, f64::NAN);
    lasting.clear();
    lasting.resize(features.len() * n, f64::NAN);
    for (i, m) in members.iter().enumerate() {
        for (f, value) in m.values.iter().enumerate().take(features.len()) {
            if let Some(value) = value {
                values[f * n + i] = *value;
                lasting[f * n + i] = history.lasting(m.slot, f, *value);
            }
        }
        history.baselines(
            m.slot,
            config.warmup,
            &mut own[i..],
            &mut own_spread[i..],
            n,
        );
    }
    let mut stats = vec![None; features.len()];
    for (f, &floors) in floors.iter().enumerate().take(features.len()) {
        let column = &values[f * n..(f + 1) * n];
        let own = &own[f * n..(f + 1) * n];
        let own_spread = &own_spread[f * n..(f + 1) * n];
        let pooled = &mut pooled[f * n..(f + 1) * n];
        let pooled_lasting = &mut pooled_lasting[f * n..(f + 1) * n];
        let own_z = &mut own_zs[f * n..(f + 1) * n];
        let lasting = &lasting[f * n..(f + 1) * n];
        present.clear();
        levels.clear();
        for (i, &x) in column.iter().enumerate() {
            if !x.is_nan() {
                present.push((i, x));
                levels.push(x);
            }
        }
        let Some(level) = Spread::of_in_place(levels, deviations, None, floors) else {
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
            for &(i, x) in present.iter() {
                if own[i].is_nan() {
                    continue;
                }
                if let Some(c) = own_past(history, seasons, window, members[i].slot, f, x, floors) {
                    results.record(i, f, c);
                }
            }
            continue;
        }
        // Each member's move away from its own baseline, compared across the members that
        // have one: a peer that always sits at another level has no move to show. Only the
        // baseline's median is needed for that.
        moves.clear();
        moves.extend(
            present
                .iter()
                .filter(|(i, _)| !own[*i].is_nan())
                .map(|(i, x)| x - own[*i]),
        );
        let move_spread = (moves.len() >= config.min_peers)
            .then(|| Spread::of_in_place(moves, deviations, Some(level.median), floors))
            .flatten()
            .map(|s| Spread {
                scale: s.scale.max(learned[f]),
                ..s
            });
        for &(i, x) in present.iter() {
            let level_z = level.z(x);
            let median = own[i];
            // Against its own usual spikes: a size it makes now and then is not news.
            let alone = if median.is_nan() || own_spread[i].is_nan() {
                f64::NAN
            } else {
                Spread::floored(median, own_spread[i], None, floors).z(x)
            };
            own_z[i] = alone;
            let z = match move_spread {
                _ if median.is_nan() => level_z,
                Some(moves) => {
                    pooled[i] = x - median - moves.median;
                    pooled_lasting[i] = lasting[i] - median - moves.median;
                    let by_tail =
                        calibrated(moves.z(x - median), pooled[i], pooled_lasting[i], usual[f]);
                    let z = z_both_agree_on(beyond(level_z), by_tail);
                    if alone.is_nan() {
                        z
                    } else if alone.abs() >= z.abs() {
                        z_both_agree_on(z, alone)
                    } else {
                        z_both_agree_on(
                            z,
                            lasting_or(alone, lasting[i], history.row(members[i].slot, f), floors),
                        )
                    }
                }
                // Too few peers have a baseline (after a rolling restart): use its own past.
                None => match own_past(history, seasons, window, members[i].slot, f, x, floors) {
                    Some(own) => z_both_agree_on(level_z, own.z),
                    None => level_z,
                },
            };
            results.record(
                i,
                f,
                Comparison {
                    value: x,
                    reference: level.median,
                    scale: level.scale,
                    z,
                    basis: Basis::Peers,
                },
            );
        }
    }
    (results.finish(features), stats)
}

/// A value against its entity's own past: its kept values (the minutes) with the
/// small-sample correction for their number, or, where its seasonal past is ready
/// ([`Seasons::view`]), the expected value for this phase of the period with the larger of
/// the phase's and the recent residuals' spreads; while only the last hours are ready, the
/// minutes' z as far as the hours' agrees. A feature that sat at one value in most of its
/// kept values (a MAD of 0: a counter that is zero but for blips) is judged by the minutes
/// alone, whose spread knows its usual blips; quartiles cannot tell them. `None` without
/// kept values.
fn own_past(
    history: &History,
    seasons: &Seasons,
    window: u64,
    slot: usize,
    f: usize,
    x: f64,
    floors: Floors,
) -> Option<Comparison> {
    let row = history.row(slot, f);
    let (spread, mad) = row.spread_and_mad(floors)?;
    let minutes = Comparison {
        value: x,
        reference: spread.median,
        scale: spread.scale,
        z: small_sample_z(spread.z(x), row.len()),
        basis: Basis::OwnHistory,
    };
    if mad == 0.0 {
        return Some(minutes);
    }
    Some(match seasons.view(slot, f, window, floors) {
        Some(View::Season(expected)) => Comparison {
            reference: expected.median,
            scale: expected.scale,
            z: expected.z(x),
            ..minutes
        },
        Some(View::Hours(hours)) => Comparison {
            z: z_both_agree_on(minutes.z, hours.z(x)),
            ..minutes
        },
        None => minutes,
    })
}

impl Scratch {
    /// The last domain's moves less its median move, feature by feature, a column of
    /// members each (NaN where there is none).
    pub fn pooled(&self) -> &[f64] {
        &self.pooled
    }

    /// [`Scratch::pooled`] over each member's last three windows.
    pub fn pooled_lasting(&self) -> &[f64] {
        &self.pooled_lasting
    }

    /// The last domain's values and each member's z against its own baseline alone, and its
    /// own baseline medians, feature by feature, a column of members each (NaN where there
    /// is none).
    pub fn own_view(&self) -> (&[f64], &[f64], &[f64]) {
        (&self.values, &self.own_zs, &self.own)
    }
}

/// A move's z, no larger than its tail probability among the domain's usual moves says:
/// where `usual` (the learned distribution of moves less the median move) holds a share p
/// of moves at least as far out as `deviation`, the z is at most Φ⁻¹(1 − p/2), the normal
/// z of that two-sided tail. So a threshold means the same on every feature, heavy-tailed
/// or sparse: a counter that is zero most windows and blips by a few counts in one window
/// of fifty has blips of that size scored as what they are, a 2 % event (z 2.3), never by z
/// over a MAD of 0. A tail is only taken where the domain has made [`TAIL_EVIDENCE`] moves
/// or more at least half as far out: sizes it makes again and again, up to twice the size
/// of those (the largest blips of a sparse counter are rare, but of a size it makes), not
/// a fault far beyond them, nor its first windows. Under z 1 the z stands.
///
/// A move that lasts is judged by the moves that lasted: the member's move over its last
/// three windows (`lasting`, their median less its baseline and the median move; NaN while
/// it has none) must be usual among the domain's lasting moves too, with as much evidence,
/// and the smaller of the two tails counts. A spike size the domain makes now and then is
/// usual for a window, not for three; a counter whose blips come in runs has runs learned.
pub fn calibrated(z: f64, deviation: f64, lasting: f64, usual: Option<Usual<'_>>) -> f64 {
    if z.abs() < 1.0 {
        return z;
    }
    let Some(usual) = usual else {
        return z;
    };
    let Some(p) = tail(usual.window, deviation) else {
        return z;
    };
    let p = if lasting.is_nan() {
        p
    } else {
        // A lasting move on the other side is no lasting move on this one.
        let lasting = if lasting.signum() == deviation.signum() {
            lasting
        } else {
            0.0
        };
        match tail(usual.lasting, lasting) {
            Some(q) => p.min(q),
            None => return z,
        }
    };
    if p > 0.0 {
        z.signum() * z.abs().min(two_sided_z(p))
    } else {
        z
    }
}

/// The share of `sketch`'s values at least as far out as `deviation`, where it holds
/// [`TAIL_EVIDENCE`] or more at least half as far out; `None` without that evidence.
fn tail(sketch: &Sketch, deviation: f64) -> Option<f64> {
    let (near, _) = sketch.exceedance(deviation / 2.0)?;
    if near < TAIL_EVIDENCE {
        return None;
    }
    sketch.exceedance(deviation).map(|(_, p)| p)
}

/// Moves at least half as far out, counted with their decay, from which a domain's learned
/// distribution tells a move's tail probability.
pub const TAIL_EVIDENCE: f64 = 5.0;

/// The normal z whose two-sided tail is `p`: Φ⁻¹(1 − p/2), taken from the lower tail so
/// that a tiny p keeps its precision.
pub fn two_sided_z(p: f64) -> f64 {
    -Normal::standard().inverse_cdf(p / 2.0)
}

/// A member's score from its features' (calibrated) z: the most unusual feature, corrected
/// for having looked at `judged` of them (Šidák). With a two-sided tail p for the largest
/// |z|, the chance that one of k features of an ordinary member goes that far is
/// 1 − (1 − p)^k, and the score is the normal z of that tail. So the threshold keeps its
/// meaning for the member as a whole, whatever number of features it has: 3.5 is a 1 in
/// 2,150 event per member and window, on one feature or on 36. Never above the largest |z|.
pub fn combined(largest: f64, judged: usize) -> f64 {
    if judged <= 1 || largest <= 0.0 || !largest.is_finite() {
        return largest;
    }
    let k = judged as f64;
    let p = 2.0 * Normal::standard().sf(largest);
    if p < 1e-300 {
        // Beyond what a double holds: the tail's first-order shift, ln k / z.
        return largest - k.ln() / largest;
    }
    let family = -(k * (-p).ln_1p()).exp_m1();
    two_sided_z(family).min(largest)
}

/// How far to take the level view once a member has a baseline to move from. Where a
/// domain's members sit at different levels (a leader, a 70/30 split), their MAD is wide
/// and a real stray reaches no large level z; the level view then only has to say that the
/// member is clear of the herd's middle on the side it moves to, and its move (against the
/// others' moves, the domain's usual spread and its own usual spikes) says how far.
pub fn beyond(level_z: f64) -> f64 {
    if level_z.abs() >= CLEAR_OF_THE_MIDDLE {
        level_z.signum() * f64::INFINITY
    } else {
        level_z
    }
}

/// Level z from which a member counts as clear of its peers' middle (see [`beyond`]): one
/// MAD from their median, outside the middle half of the herd. In a domain of three, the
/// highest and the lowest member always are, the one in the middle never is.
const CLEAR_OF_THE_MIDDLE: f64 = CONSISTENCY;

/// A member's own view where its value alone is within its usual spikes (`alone`): the
/// level of its last windows (`lasting`, see [`History::lasting`]) against the plain spread
/// of its own history (`row`), when that says more on the same side. A spike size that
/// recurs is news only when it lasts: a slow leak in a member that spikes now and then, or
/// whose first leaking windows already widened its history's tail, shows in its lasting
/// level.
fn lasting_or(alone: f64, lasting: f64, row: Row<'_>, floors: Floors) -> f64 {
    let Some(spread) = row.lasting_spread(floors) else {
        return alone;
    };
    let z = spread.z(lasting);
    if z.is_nan() || z.signum() != alone.signum() || z.abs() <= alone.abs() {
        alone
    } else {
        z
    }
}

/// A deviation counts only as far as both views agree: the smaller z when they point the
/// same way, none when they disagree (a high peer that is falling back to the herd).
fn z_both_agree_on(level: f64, movement: f64) -> f64 {
    if level == 0.0 || movement == 0.0 || level.signum() != movement.signum() {
        0.0
    } else {
        level.signum() * level.abs().min(movement.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOORS: Floors = Floors {
        relative: 0.05,
        absolute: 0.01,
    };

    fn config() -> DetectConfig {
        DetectConfig {
            warmup: 3,
            ..DetectConfig::default()
        }
    }

    /// A member's past values of the one feature, in the order they came.
    #[derive(Clone)]
    struct Ring(Vec<f64>);

    impl Ring {
        fn new(_capacity: usize) -> Self {
            Self(Vec::new())
        }
    }

    fn ring(values: &[f64]) -> Ring {
        Ring(values.to_vec())
    }

    /// The members' rings as a detector's history, a slot per member.
    fn history_of(histories: &[Vec<Ring>]) -> History {
        let mut history = History::new(1, 10);
        for rings in histories {
            let slot = history.grow();
            for (f, ring) in rings.iter().enumerate() {
                ring.0.iter().for_each(|&v| history.push(slot, f, v));
            }
        }
        history
    }

    fn members<'a>(rows: &'a [Vec<Option<f64>>]) -> Vec<Member<'a>> {
        rows.iter()
            .enumerate()
            .map(|(slot, values)| Member {
                values,
                slot,
                detail: true,
            })
            .collect()
    }

    fn score(values: &[f64], histories: &[Vec<Ring>]) -> Vec<f64> {
        let rows: Vec<Vec<Option<f64>>> = values.iter().map(|&v| vec![Some(v)]).collect();
        let history = history_of(histories);
        let members = members(&rows);
        score_domain(
            &config(),
            &["cpu".into()],
            &[FLOORS],
            &[0.0],
            &[None],
            &history,
            &Seasons::new(1, 0, 24, 3, 5),
            0,
            &members,
            &mut Scratch::default(),
        )
        .0
        .into_iter()
        .map(|s| s.score)
        .collect()
    }

    #[test]
    fn a_sparse_counters_usual_blips_score_their_tail_probability() {
        use crate::sketch::Sketch;
        // 950 windows at 0 and 50 blips of 4: a blip of 4 is a 5 % event in one window.
        let (mut window, mut lasting) = (Sketch::default(), Sketch::default());
        (0..950).for_each(|_| window.add(0.0));
        (0..50).for_each(|_| window.add(4.0));
        // Two of three windows blipped now and then: 10 in 1,000.
        (0..990).for_each(|_| lasting.add(0.0));
        (0..10).for_each(|_| lasting.add(4.0));
        let usual = Some(Usual {
            window: &window,
            lasting: &lasting,
        });
        let p5 = two_sided_z(0.05);
        assert!((p5 - 1.96).abs() < 0.01, "{p5}");
        // A lone blip of the usual size: z 1.96, however small the floor made its raw z.
        assert!((calibrated(270.0, 4.0, 0.0, usual) - p5).abs() < 1e-9);
        // The same blip lasting: as rare as lasting blips are (1 %).
        let lasting_z = calibrated(270.0, 4.0, 4.0, usual);
        assert!((lasting_z - two_sided_z(0.01)).abs() < 1e-9, "{lasting_z}");
        // Far beyond any blip learned, or a lasting size never seen: the z stands.
        assert_eq!(calibrated(270.0, 50.0, 0.0, usual), 270.0);
        assert_eq!(calibrated(-270.0, -4.0, -50.0, usual), -270.0);
        // Small z, or nothing learned: as it is.
        assert_eq!(calibrated(0.5, 4.0, 0.0, usual), 0.5);
        assert_eq!(calibrated(270.0, 4.0, 0.0, None), 270.0);
    }

    #[test]
    fn the_combined_score_corrects_for_the_features_judged() {
        // One feature: its z. Never above the largest z, lower the more features were looked at.
        assert_eq!(combined(3.5, 1), 3.5);
        let (seven, many) = (combined(4.0, 7), combined(4.0, 36));
        assert!(seven < 4.0 && many < seven, "{seven} {many}");
        // Šidák by hand: p = 2(1 − Φ(4)) = 6.334e-5; 1 − (1 − p)^7 = 4.434e-4; z = 3.514.
        assert!((seven - 3.514).abs() < 0.002, "{seven}");
        // It keeps growing with z, through the range where the tail underflows.
        let mut last = 0.0;
        for z in [3.0, 5.0, 10.0, 30.0, 38.0, 39.0, 40.0, 100.0] {
            let c = combined(z, 36);
            assert!(c > last && c < z, "{z}: {c}");
            last = c;
        }
        assert_eq!(combined(0.0, 36), 0.0);
    }

    #[test]
    fn one_outlier_among_identical_peers_by_hand() {
        let none = vec![vec![Ring::new(10)]; 4];
        let scores = score(&[100.0, 100.0, 100.0, 150.0], &none);
        // Median 100, MAD 0 → floor 5; (150 − 100) / 5 · 0.6745 = 6.745.
        assert!((scores[3] - 6.745).abs() < 1e-9, "{scores:?}");
        assert_eq!(&scores[..3], [0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_steady_level_difference_is_not_scored() {
        // The fourth member always runs at twice the level of the others.
        let histories = vec![
            vec![ring(&[100.0, 101.0, 99.0])],
            vec![ring(&[100.0, 99.0, 101.0])],
            vec![ring(&[101.0, 100.0, 99.0])],
            vec![ring(&[200.0, 201.0, 199.0])],
        ];
        let scores = score(&[100.0, 100.0, 100.0, 200.0], &histories);
        assert!(scores.iter().all(|&s| s < 1.0), "{scores:?}");
        // The same member moving further away is scored.
        let scores = score(&[100.0, 100.0, 100.0, 400.0], &histories);
        assert!(scores[3] > 10.0, "{scores:?}");
    }

    #[test]
    fn falling_back_towards_the_herd_is_not_a_deviation() {
        let histories = vec![
            vec![ring(&[100.0, 100.0, 100.0])],
            vec![ring(&[100.0, 100.0, 100.0])],
            vec![ring(&[100.0, 100.0, 100.0])],
            vec![ring(&[300.0, 300.0, 300.0])],
        ];
        // Still above its peers, but below its own past: the views disagree.
        let scores = score(&[100.0, 100.0, 100.0, 200.0], &histories);
        assert_eq!(scores[3], 0.0);
    }

    #[test]
    fn too_few_members_compare_with_their_own_history() {
        let histories = vec![
            vec![ring(&[10.0, 11.0, 9.0, 10.0, 10.0])],
            vec![ring(&[50.0, 51.0, 49.0, 50.0, 50.0])],
        ];
        // Own median 10, MAD 0 → floor 0.5 for the first; z = 0.6745 · 10 / 0.5 = 13.49
        // before the small-sample correction; the second is at its own median.
        let scores = score(&[20.0, 50.0], &histories);
        assert!(scores[0] > 3.5 && scores[0] < 13.49, "{scores:?}");
        assert_eq!(scores[1], 0.0);
        // Without a history there is nothing to compare with.
        let none = vec![vec![Ring::new(10)]; 2];
        assert_eq!(score(&[20.0, 50.0], &none), [0.0, 0.0]);
    }

    #[test]
    fn missing_values_are_left_out_of_the_peer_statistics() {
        let rows = [
            vec![Some(100.0)],
            vec![None],
            vec![Some(100.0)],
            vec![Some(104.0)],
            vec![Some(150.0)],
        ];
        let history = history_of(&vec![vec![Ring::new(10)]; rows.len()]);
        let members = members(&rows);
        let (scored, stats) = score_domain(
            &config(),
            &["cpu".into()],
            &[FLOORS],
            &[0.0],
            &[None],
            &history,
            &Seasons::new(1, 0, 24, 3, 5),
            0,
            &members,
            &mut Scratch::default(),
        );
        let stats = stats[0].unwrap();
        assert_eq!((stats.median, stats.members), (102.0, 4));
        assert!((stats.scale - 5.1).abs() < 1e-9);
        assert_eq!(scored[4].features[0].unwrap().scale, stats.scale);
        assert_eq!(scored[1].score, 0.0);
        assert!(scored[1].drivers.is_empty());
        // Median of 100, 100, 104, 150 is 102 (with a zero for the gap it would be 100);
        // MAD 2 is under the floor 5.1; z = 0.6745 · 48 / 5.1.
        assert_eq!(scored[4].drivers[0].reference, 102.0);
        assert!((scored[4].score - 0.6745 * 48.0 / 5.1).abs() < 1e-9);
    }
}
