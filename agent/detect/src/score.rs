//! Scores one window of one domain: each member against its peers, or against its own past
//! where the domain has too few members.

use super::config::DetectConfig;
use super::finding::{Basis, Comparison, Driver};
use super::ring::Ring;
use super::stats::{Floors, Spread, small_sample_z};

/// One member of a domain in this window.
pub struct Member<'a> {
    /// One value per feature; `None` is missing.
    pub values: &'a [Option<f64>],
    /// One ring of the member's own past values per feature.
    pub history: &'a [Ring],
}

/// A member's score in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Largest |z| over its features; 0 when no feature could be scored.
    pub score: f64,
    /// Its features at or above the threshold, strongest first, at most `top_features`.
    pub drivers: Vec<Driver>,
    /// Every feature in the detector's order; `None` where it could not be compared.
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

/// The member's own baseline for one feature, once its history is long enough.
struct Own {
    spread: Spread,
    samples: usize,
}

impl Own {
    fn of(ring: &Ring, config: &DetectConfig, floors: Floors) -> Option<Self> {
        if ring.len() < config.warmup {
            return None;
        }
        let spread = Spread::of(ring.values(), None, floors)?;
        Some(Self {
            spread,
            samples: ring.len(),
        })
    }

    /// How far `x` is from the member's own past, corrected for a short history.
    fn z(&self, x: f64) -> f64 {
        small_sample_z(self.spread.z(x), self.samples)
    }
}

/// Scores every member of one domain in one window, in the order given; also returns each
/// feature's statistics across the members.
pub fn score_domain(
    config: &DetectConfig,
    features: &[String],
    floors: &[Floors],
    members: &[Member<'_>],
) -> (Vec<Scored>, Vec<Option<FeatureStats>>) {
    let mut compared: Vec<Vec<Option<Comparison>>> =
        vec![vec![None; features.len()]; members.len()];
    let mut stats = vec![None; features.len()];
    for (f, &floors) in floors.iter().enumerate().take(features.len()) {
        let present: Vec<(usize, f64, Option<Own>)> = members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let x = m.values.get(f).copied().flatten()?;
                let own = m.history.get(f).and_then(|r| Own::of(r, config, floors));
                Some((i, x, own))
            })
            .collect();
        let levels: Vec<f64> = present.iter().map(|p| p.1).collect();
        let Some(level) = Spread::of(&levels, None, floors) else {
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
            for (i, x, own) in &present {
                if let Some(own) = own {
                    compared[*i][f] = Some(Comparison {
                        value: *x,
                        reference: own.spread.median,
                        scale: own.spread.scale,
                        z: own.z(*x),
                        basis: Basis::OwnHistory,
                    });
                }
            }
            continue;
        }
        // Each member's move away from its own baseline, compared across the members that
        // have one: a peer that always sits at another level has no move to show.
        let moves: Vec<f64> = present
            .iter()
            .filter_map(|(_, x, own)| own.as_ref().map(|o| x - o.spread.median))
            .collect();
        let move_spread = (moves.len() >= config.min_peers)
            .then(|| Spread::of(&moves, Some(level.median), floors))
            .flatten();
        for (i, x, own) in &present {
            let level_z = level.z(*x);
            let z = match (own, move_spread) {
                (Some(own), Some(moves)) => agreed(level_z, moves.z(x - own.spread.median)),
                // Too few peers have a baseline (after a rolling restart): use its own past.
                (Some(own), None) => agreed(level_z, own.z(*x)),
                (None, _) => level_z,
            };
            compared[*i][f] = Some(Comparison {
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
                .zip(features)
                .filter_map(|(c, name)| c.map(|c| Driver::new(name, c)))
                .collect();
            found.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
            let score = found.first().map_or(0.0, |d| d.z.abs());
            found.retain(|d| d.z.abs() >= config.threshold);
            found.truncate(config.top_features);
            Scored {
                score,
                drivers: found,
                features: features_of,
            }
        })
        .collect();
    (scored, stats)
}

/// A deviation counts only as far as both views agree: the smaller z when they point the
/// same way, none when they disagree (a high peer that is falling back to the herd).
fn agreed(level: f64, movement: f64) -> f64 {
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

    fn ring(values: &[f64]) -> Ring {
        let mut ring = Ring::new(10);
        values.iter().for_each(|&v| ring.push(v));
        ring
    }

    fn score(values: &[f64], histories: &[Vec<Ring>]) -> Vec<f64> {
        let rows: Vec<Vec<Option<f64>>> = values.iter().map(|&v| vec![Some(v)]).collect();
        let members: Vec<Member<'_>> = rows
            .iter()
            .zip(histories)
            .map(|(values, history)| Member { values, history })
            .collect();
        score_domain(&config(), &["cpu".into()], &[FLOORS], &members)
            .0
            .into_iter()
            .map(|s| s.score)
            .collect()
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
        let history = vec![Ring::new(10)];
        let members: Vec<Member<'_>> = rows
            .iter()
            .map(|values| Member {
                values,
                history: &history,
            })
            .collect();
        let (scored, stats) = score_domain(&config(), &["cpu".into()], &[FLOORS], &members);
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
