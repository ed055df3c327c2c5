//! A container alone in its domain through compressed days: its own past at the same time
//! of day.

use std::time::{Duration, SystemTime};

use super::*;
use crate::synthetic::Rng;

const FEATURES: [&str; 2] = ["cpu_usage_cores", "memory_working_set"];
/// Windows of one compressed day.
const DAY: usize = 240;

fn at(window: usize) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(10 * window as u64)
}

/// Its load through the day: from 1 − `swing` to 1 + `swing` of the mean, the trough three
/// quarters into the day.
fn day(w: usize, swing: f64) -> f64 {
    1.0 + swing * (std::f64::consts::TAU * (w % DAY) as f64 / DAY as f64).sin()
}

/// Windows of the 4th day's trough where a step goes in.
const STEP: std::ops::Range<usize> = 3 * DAY + DAY * 3 / 4 - 5..3 * DAY + DAY * 3 / 4 + 5;

/// The detector at its defaults, with a day of [`DAY`] windows (or none).
fn config(seasons: bool) -> DetectConfig {
    DetectConfig {
        season_period: if seasons { DAY } else { 0 },
        ..DetectConfig::default()
    }
}

fn detector(config: DetectConfig) -> Detector {
    Detector::new(config, FEATURES.iter().map(|f| f.to_string()).collect()).unwrap()
}

/// `entity` of `domain` on node-1.
fn observation(entity: &str, domain: &str, values: Vec<Option<f64>>) -> Observation {
    Observation {
        subject: Subject {
            entity: entity.into(),
            pod: None,
            namespace: None,
            domain: domain.into(),
            node: "node-1".into(),
        },
        values,
    }
}

fn solo(cpu: f64, memory: f64) -> Observation {
    let mut solo = observation(
        "solo",
        "shop/Deployment/solo/app",
        vec![Some(cpu), Some(memory)],
    );
    solo.subject.pod = Some("solo-0".into());
    solo.subject.namespace = Some("shop".into());
    solo
}

/// What four days of a container alone in its domain gave.
struct Days {
    /// Findings opened: window, entity, top driver.
    opened: Vec<(usize, String, String)>,
    /// Its CPU's reference in the window before the step's.
    reference: f64,
}

/// Four days of a container alone in its domain, its CPU and memory following the day
/// (`swing`) with 5 % noise; with `step`, its CPU runs at `step` times its own over [`STEP`].
fn four_days(config: DetectConfig, swing: f64, step: Option<f64>, seed: u64) -> Days {
    let mut detector = detector(config);
    let mut noise = Rng::new(seed);
    let mut days = Days {
        opened: Vec::new(),
        reference: f64::NAN,
    };
    for w in 0..4 * DAY {
        let hog = match step {
            Some(by) if STEP.contains(&w) => by,
            _ => 1.0,
        };
        let cpu = 0.5 * hog * day(w, swing) * (1.0 + 0.05 * noise.normal());
        let memory = 2e8 * day(w, swing) * (1.0 + 0.05 * noise.normal());
        let report = detector.observe(at(w), &[solo(cpu, memory)]).unwrap();
        if w + 1 == STEP.start {
            days.reference = report.scores[0].features[0].unwrap().reference;
        }
        days.opened.extend(
            report
                .opened
                .into_iter()
                .map(|f| (w, f.subject.entity.clone(), f.drivers[0].feature.clone())),
        );
    }
    days
}

/// The swings of the tests: four times from trough to peak (±60 %), and nine times (±80 %).
const SWINGS: [f64; 2] = [0.6, 0.8];

#[test]
fn a_container_alone_follows_its_day_without_a_finding() {
    for swing in SWINGS {
        for seed in 1..=3 {
            for seasons in [false, true] {
                let days = four_days(config(seasons), swing, None, seed);
                assert!(
                    days.opened.is_empty(),
                    "swing {swing}, seed {seed}, seasons {seasons}: {:?}",
                    days.opened
                );
            }
            // With its seasonal past, the reference at the trough is the trough (0.5 ×
            // (1 − swing)), not the median of its last 60 windows, half-way up the day.
            let trough = 0.5 * (1.0 - swing);
            let with = four_days(config(true), swing, None, seed).reference;
            let without = four_days(config(false), swing, None, seed).reference;
            assert!(
                (with - trough).abs() < 0.1 * trough,
                "swing {swing}: {with}"
            );
            assert!(without > 1.3 * trough, "swing {swing}: {without}");
        }
    }
}

/// A step at the 4th day's trough that stays within the day's range (three times its CPU
/// where the day swings four times, eight times where it swings nine): the last 60 windows
/// span a quarter of the day, so the minutes alone see nothing unusual; the same time on
/// earlier days does.
#[test]
fn a_step_within_the_days_range_is_found_at_its_time_of_day() {
    for (swing, step) in [(0.6, 3.0), (0.8, 8.0)] {
        let peak = 1.0 + swing;
        assert!(
            step * (1.0 - swing) < peak,
            "the step stays under the day's peak"
        );
        for seed in 1..=3 {
            let days = four_days(config(true), swing, Some(step), seed);
            assert!(
                matches!(
                    days.opened.as_slice(),
                    [(w, e, top)] if STEP.contains(w) && *w <= STEP.start + 2
                        && e == "solo" && top == "cpu_usage_cores"
                ),
                "swing {swing}, step {step}, seed {seed}: {:?}",
                days.opened
            );
            // Today's own past alone (no seasons) misses it.
            let minutes = four_days(config(false), swing, Some(step), seed);
            assert!(
                minutes.opened.is_empty(),
                "swing {swing}, step {step}, seed {seed}: {:?}",
                minutes.opened
            );
        }
    }
}

#[test]
fn only_a_container_judged_on_its_own_past_keeps_a_seasonal_past() {
    let mut detector = detector(config(true));
    let member = |name: &str, domain: &str, w: usize| {
        observation(
            name,
            domain,
            vec![Some(day(w, 0.5)), Some(1e8 * day(w, 0.5))],
        )
    };
    // Three replicas with peers, and one container alone.
    for w in 0..DAY {
        let mut window: Vec<Observation> = (0..3)
            .map(|m| member(&format!("web-{m}"), "web", w))
            .collect();
        window.push(member("solo", "solo", w));
        detector.observe(at(w), &window).unwrap();
    }
    let footprint = detector.footprint();
    assert_eq!(footprint.entities, 4);
    assert_eq!(footprint.seasonal_entities, 1, "only the container alone");
    // 24 phases, the hours, the recent residuals and this phase's values so far: 27
    // summaries of 20 bytes per feature, and the record of its slot.
    let per_entity = FEATURES.len() * 27 * 20;
    assert!(
        (per_entity..per_entity + 64).contains(&footprint.season_bytes_per_entity),
        "{}",
        footprint.season_bytes_per_entity
    );
    // The container alone goes away: its seasonal past goes with it.
    for w in DAY..DAY + 3 {
        let window: Vec<Observation> = (0..3)
            .map(|m| member(&format!("web-{m}"), "web", w))
            .collect();
        detector.observe(at(w), &window).unwrap();
    }
    let footprint = detector.footprint();
    assert_eq!((footprint.entities, footprint.seasonal_entities), (3, 0));
    // A domain that shrinks below three judges its members on their own past: they get one,
    // and lose it a period after they have peers again.
    let web = |detector: &mut Detector, windows: std::ops::Range<usize>, members: usize| {
        for w in windows {
            let window: Vec<Observation> = (0..members)
                .map(|m| member(&format!("web-{m}"), "web", w))
                .collect();
            detector.observe(at(w), &window).unwrap();
        }
    };
    web(&mut detector, DAY + 3..DAY + 5, 2);
    assert_eq!(detector.footprint().seasonal_entities, 2);
    web(&mut detector, DAY + 5..2 * DAY + 5, 3);
    assert_eq!(detector.footprint().seasonal_entities, 2, "for a period");
    web(&mut detector, 2 * DAY + 5..2 * DAY + 7, 3);
    assert_eq!(detector.footprint().seasonal_entities, 0);
}
/// On the first day only the hours are ready: a step the minutes find is found as fast (the
/// hours' view only keeps the minutes from counting what the last hours saw as usual).
#[test]
fn on_the_first_day_a_step_the_minutes_find_is_found_as_fast() {
    for (swing, step) in [(0.6, 8.0), (0.3, 2.0)] {
        for seed in 1..=3 {
            let run = |seasons: bool| {
                let mut detector = detector(config(seasons));
                let mut noise = Rng::new(seed);
                let mut opened = Vec::new();
                for w in 0..DAY {
                    let hog = if (175..185).contains(&w) { step } else { 1.0 };
                    let cpu = 0.5 * hog * day(w, swing) * (1.0 + 0.05 * noise.normal());
                    let memory = 2e8 * day(w, swing) * (1.0 + 0.05 * noise.normal());
                    let report = detector.observe(at(w), &[solo(cpu, memory)]).unwrap();
                    opened.extend(report.opened.iter().map(|_| w));
                }
                opened
            };
            let with = run(true);
            assert!(
                matches!(with.as_slice(), [w] if *w <= 177),
                "swing {swing}, step {step}, seed {seed}: {with:?}"
            );
            assert_eq!(with, run(false), "swing {swing}, step {step}, seed {seed}");
        }
    }
}

#[test]
fn a_member_alone_on_one_feature_keeps_a_seasonal_past_and_its_peers_none() {
    let mut detector = detector(config(true));
    // Four replicas; only the first reports its memory: it is judged on its own past there.
    for w in 0..10 {
        let window: Vec<Observation> = (0..4)
            .map(|m| {
                observation(
                    &format!("web-{m}"),
                    "web",
                    vec![Some(day(w, 0.5)), (m == 0).then_some(1e8)],
                )
            })
            .collect();
        detector.observe(at(w), &window).unwrap();
    }
    let footprint = detector.footprint();
    assert_eq!((footprint.entities, footprint.seasonal_entities), (4, 1));
}
