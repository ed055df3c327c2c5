//! An uneven, noisy domain: members that differ in level, a sparse error counter that every
//! member blips now and then, and one member with a spike that recurs. Normal behaviour of
//! this kind must open no finding; a real stray must still be found within three windows.

use std::time::{Duration, SystemTime};

use super::*;

const FEATURES: [&str; 3] = ["cpu", "memory_working_set", "errors"];
const CPU: usize = 0;
const MEMORY: usize = 1;
const ERRORS: usize = 2;
const MEMBERS: usize = 8;

fn at(w: usize) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(10 * w as u64)
}

/// A number in [0, 1) fixed by its arguments (splitmix64 of them).
fn noise(w: usize, m: usize, f: usize) -> f64 {
    let mut z = (w as u64) << 32 ^ (m as u64) << 8 ^ f as u64;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Member m's ordinary values in window w: CPU at its own level (up to ±30 % from the
/// others) with 4 % noise, memory with 1 %, and an error counter that is zero except in
/// about one window in 25, when it blips by 1 to 6.
fn ordinary(w: usize, m: usize) -> [f64; 3] {
    let level = 1.0 + 0.6 * (noise(0, m, 9) - 0.5);
    let errors = if noise(w, m, 7) < 0.04 {
        (1.0 + 6.0 * noise(w, m, 8)).floor()
    } else {
        0.0
    };
    [
        level * (1.0 + 0.08 * (noise(w, m, CPU) - 0.5)),
        100e6 * (1.0 + 0.02 * (noise(w, m, MEMORY) - 0.5)),
        errors,
    ]
}

/// e5 runs a job that triples its CPU for two windows every 15, from window 20 on.
fn with_recurring_spike(w: usize, m: usize) -> [f64; 3] {
    let mut v = ordinary(w, m);
    if m == 5 && w >= 20 && w % 15 < 2 {
        v[CPU] *= 3.0;
    }
    v
}

/// Runs windows `0..windows` of the domain, each member's values from `values`; returns the
/// findings opened, with the window each opened in.
fn run(
    config: DetectConfig,
    windows: usize,
    values: impl Fn(usize, usize) -> [f64; 3],
) -> Vec<(usize, Finding)> {
    let names = FEATURES.iter().map(|f| f.to_string()).collect();
    let mut detector = Detector::new(config, names).unwrap();
    let mut opened = Vec::new();
    for w in 0..windows {
        let window: Vec<Observation> = (0..MEMBERS)
            .map(|m| Observation {
                subject: Subject {
                    entity: format!("e{m}"),
                    pod: None,
                    namespace: None,
                    domain: "shop/web".into(),
                    node: "node-1".into(),
                },
                values: values(w, m).into_iter().map(Some).collect(),
            })
            .collect();
        let report = detector.observe(at(w), &window).unwrap();
        opened.extend(report.opened.into_iter().map(|f| (w, f)));
    }
    opened
}

fn config() -> DetectConfig {
    DetectConfig {
        absolute_floors: [("errors".to_string(), 0.01)].into(),
        ..DetectConfig::default()
    }
}

fn entities(opened: &[(usize, Finding)]) -> Vec<(usize, &str)> {
    opened
        .iter()
        .map(|(w, f)| (*w, f.subject.entity.as_str()))
        .collect()
}

#[test]
fn a_blip_of_a_sparse_counter_of_a_usual_size_opens_no_finding() {
    // e2's counter blips by 4 for two windows in a row: a size every member makes now and
    // then, on a counter whose median and MAD are 0.
    let blip = |w: usize, m: usize| {
        let mut v = ordinary(w, m);
        if m == 2 && (150..152).contains(&w) {
            v[ERRORS] = 4.0;
        }
        v
    };
    let opened = run(config(), 170, blip);
    assert_eq!(entities(&opened), [], "a quiet domain");
    // Judged over the MAD of the moment, with fixed floors only, the domain's usual blips
    // are findings (the member's own history knows some of its own sizes, not its peers').
    let fixed = DetectConfig {
        learned_spreads: false,
        ..config()
    };
    let opened = run(fixed, 170, blip);
    assert!(!opened.is_empty(), "{:?}", entities(&opened));
}

#[test]
fn a_spike_size_that_recurs_in_an_entitys_history_opens_no_finding() {
    let opened = run(config(), 200, with_recurring_spike);
    // The first spike is news; once it has been seen, the next ones of its size are not.
    assert!(
        opened.iter().all(|(w, _)| *w < 40),
        "{:?}",
        entities(&opened)
    );
    // Kept out of its history, every spike stays news.
    let forgetful = DetectConfig {
        spike_windows: 0,
        ..config()
    };
    let opened = run(forgetful, 200, with_recurring_spike);
    let late = opened.iter().filter(|(w, _)| *w >= 40).count();
    assert!(late >= 5, "{:?}", entities(&opened));
}

#[test]
fn a_real_stray_is_still_found_within_three_windows() {
    const START: usize = 150;
    // (member, what goes wrong from START on, the feature that must explain it)
    type Fault = fn(usize, &mut [f64; 3]);
    let faults: [(usize, Fault, &str); 3] = [
        // A CPU hog: four times its level.
        (1, |_, v| v[CPU] *= 4.0, "cpu"),
        // A memory leak: 30 % more every window.
        (
            3,
            |k, v| v[MEMORY] *= 1.0 + 0.3 * (k + 1) as f64,
            "memory_working_set",
        ),
        // An error burst far above any blip seen.
        (6, |_, v| v[ERRORS] = 60.0, "errors"),
    ];
    for (stray, fault, feature) in faults {
        let opened = run(config(), START + 10, |w, m| {
            let mut v = with_recurring_spike(w, m);
            if m == stray && w >= START {
                fault(w - START, &mut v);
            }
            v
        });
        let found: Vec<&(usize, Finding)> = opened
            .iter()
            .filter(|(w, f)| *w >= START && f.subject.entity == format!("e{stray}"))
            .collect();
        assert!(
            found.first().is_some_and(|(w, _)| *w <= START + 2),
            "{feature}: {:?}",
            entities(&opened)
        );
        assert_eq!(found[0].1.drivers[0].feature, feature);
        let others = opened
            .iter()
            .filter(|(w, f)| *w >= START && f.subject.entity != format!("e{stray}"));
        assert_eq!(others.count(), 0, "{feature}: {:?}", entities(&opened));
    }
}
