//! Detector scenarios: windows of a small herd, with jitter so that MADs are not all zero.

use std::time::{Duration, SystemTime};

use super::*;

const FEATURES: [&str; 2] = ["cpu", "memory_working_set"];

fn config() -> DetectConfig {
    DetectConfig {
        warmup: 3,
        history: 20,
        ..DetectConfig::default()
    }
}

fn build(config: DetectConfig) -> Detector {
    Detector::new(config, FEATURES.iter().map(|f| f.to_string()).collect()).unwrap()
}

fn at(window: usize) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(10 * window as u64)
}

fn observation(entity: &str, domain: &str, cpu: f64, memory: f64) -> Observation {
    Observation {
        subject: Subject {
            entity: entity.into(),
            pod: Some(format!("pod-{entity}")),
            namespace: Some("shop".into()),
            domain: domain.into(),
            node: "node-1".into(),
        },
        values: vec![Some(cpu), Some(memory)],
    }
}

/// A little deterministic noise around a level.
fn jitter(window: usize, member: usize) -> f64 {
    ((window * 7 + member * 3) % 5) as f64 * 0.01
}

/// Runs `windows` windows of a domain of `members` entities `e0…`, whose (cpu, memory) in
/// window w for member m is `level(w, m)` plus jitter. Returns every window's report.
fn run(
    detector: &mut Detector,
    from: usize,
    windows: usize,
    members: usize,
    level: impl Fn(usize, usize) -> (f64, f64),
) -> Vec<WindowReport> {
    (from..from + windows)
        .map(|w| {
            let window: Vec<Observation> = (0..members)
                .map(|m| {
                    let (cpu, memory) = level(w, m);
                    let noise = jitter(w, m);
                    observation(
                        &format!("e{m}"),
                        "shop/web",
                        cpu + noise,
                        memory * (1.0 + noise),
                    )
                })
                .collect();
            detector.observe(at(w), &window).unwrap()
        })
        .collect()
}

fn flagged(report: &WindowReport) -> Vec<&str> {
    report
        .scores
        .iter()
        .filter(|s| s.flagged)
        .map(|s| s.entity.as_str())
        .collect()
}

#[test]
fn one_outlier_among_identical_peers_is_flagged_and_explained() {
    let mut detector = build(config());
    let reports = run(&mut detector, 0, 12, 5, |w, m| {
        let memory = if m == 3 && w >= 6 { 410.0 } else { 100.0 };
        (1.0, memory)
    });
    assert!(reports[..7].iter().all(|r| flagged(r).is_empty()));
    // Anomalous in windows 6 and 7: two of the last three.
    assert_eq!(flagged(&reports[7]), ["e3"]);
    assert_eq!(reports[7].opened.len(), 1);
    assert!(reports[8..].iter().all(|r| flagged(r) == ["e3"]));

    let finding = &reports[7].opened[0];
    assert_eq!(finding.subject.entity, "e3");
    assert_eq!(finding.subject.pod.as_deref(), Some("pod-e3"));
    assert_eq!(finding.opened, at(7));
    assert_eq!(finding.severity, Severity::Critical);
    let top = &finding.drivers[0];
    assert_eq!(top.feature, "memory_working_set");
    assert_eq!(top.basis, Basis::Peers);
    assert!(
        top.to_string()
            .starts_with("memory working set 4.1× peer median"),
        "{top}"
    );
    // The unchanged CPU did not drive it.
    assert_eq!(finding.drivers.len(), 1);
}

#[test]
fn a_young_entity_is_watched_but_not_judged() {
    let mut detector = build(config());
    // The outlier is there from the first window; warmup is 3 windows.
    let reports = run(&mut detector, 0, 3, 5, |_, m| {
        (if m == 0 { 9.0 } else { 1.0 }, 100.0)
    });
    assert!(reports[2].scores[0].score > 3.5);
    assert!(reports.iter().all(|r| flagged(r).is_empty()));
}

/// The findings a run opened, as (window, kind, entity).
fn opened(reports: &[WindowReport]) -> Vec<(usize, Kind, String)> {
    reports
        .iter()
        .enumerate()
        .flat_map(|(w, r)| {
            r.opened
                .iter()
                .map(move |f| (w, f.kind, f.subject.entity.clone()))
        })
        .collect()
}

#[test]
fn all_peers_moving_together_is_one_domain_shift_and_no_stray() {
    let mut detector = build(config());
    let reports = run(&mut detector, 0, 20, 5, |w, _| {
        let load = if w >= 8 { 6.0 } else { 1.0 };
        (load, 100.0 * load)
    });
    assert!(reports[10].scores.iter().all(|s| s.score < 1.0));
    assert!(reports.iter().all(|r| flagged(r).is_empty()));
    let shift = Kind::DomainShift {
        moved: 5,
        members: 5,
    };
    assert_eq!(opened(&reports), [(9, shift, String::new())]);
    let finding = &reports[9].opened[0];
    assert_eq!(finding.subject.domain, "shop/web");
    assert_eq!(
        proto::finding(finding, Default::default()).kind(),
        herd_proto::herd::v1::FindingKind::DomainShift
    );
    assert!(
        finding
            .to_string()
            .contains("5 of 5 members moved together"),
        "{finding}"
    );
    // Once the new level is the members' own normal, the shift closes.
    let closed: Vec<&Finding> = reports.iter().flat_map(|r| &r.closed).collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].id, finding.id);
    assert_eq!(detector.open_findings().count(), 0);
}

#[test]
fn half_a_domain_moving_together_is_one_domain_shift_and_no_member_finding() {
    let mut detector = build(config());
    // Three of six members triple their CPU from window 10 on.
    let reports = run(&mut detector, 0, 20, 6, |w, m| {
        (if m < 3 && w >= 10 { 3.0 } else { 1.0 }, 100.0)
    });
    let shift = Kind::DomainShift {
        moved: 3,
        members: 6,
    };
    assert_eq!(opened(&reports), [(11, shift, String::new())]);
    assert_eq!(reports[11].opened[0].drivers[0].feature, "cpu");
    assert!(reports.iter().all(|r| flagged(r).is_empty()));
    // Without domain shifts the herd is left alone, as the share cap says.
    let mut detector = build(DetectConfig {
        domain_shifts: false,
        ..config()
    });
    let reports = run(&mut detector, 0, 20, 6, |w, m| {
        (if m < 3 && w >= 10 { 3.0 } else { 1.0 }, 100.0)
    });
    assert_eq!(opened(&reports), []);
}

#[test]
fn a_steady_level_difference_between_peers_is_no_finding() {
    let mut detector = build(config());
    // e4 gets a bigger share of the load, all along.
    let reports = run(&mut detector, 0, 30, 5, |_, m| {
        if m == 4 { (2.0, 180.0) } else { (1.0, 100.0) }
    });
    assert!(reports.iter().all(|r| r.opened.is_empty()));
    // Its raw level alone would be far out: the comparison of moves is what keeps it quiet.
    // When it moves away from its own level, it is flagged.
    let reports = run(&mut detector, 30, 3, 5, |_, m| {
        if m == 4 { (8.0, 180.0) } else { (1.0, 100.0) }
    });
    assert_eq!(flagged(&reports[1]), ["e4"]);
    assert_eq!(reports[1].opened[0].drivers[0].feature, "cpu");
}

#[test]
fn too_few_peers_compare_with_their_own_history() {
    let mut detector = build(DetectConfig {
        history: 30,
        ..config()
    });
    // Two members: below min_peers.
    let reports = run(&mut detector, 0, 25, 2, |w, m| {
        let cpu = if m == 1 && w >= 20 {
            5.0
        } else {
            1.0 + m as f64
        };
        (cpu, 100.0)
    });
    assert!(reports[..20].iter().all(|r| r.opened.is_empty()));
    assert_eq!(flagged(&reports[21]), ["e1"]);
    let driver = &reports[21].opened[0].drivers[0];
    assert_eq!(driver.basis, Basis::OwnHistory);
    assert!((driver.reference - 2.0).abs() < 0.05, "{driver}");
    assert!(driver.to_string().contains("its own past"));
}

#[test]
fn opens_on_m_of_n_and_closes_with_hysteresis() {
    let mut detector = build(DetectConfig {
        threshold: 3.5,
        close_threshold: 2.0,
        open_m: 2,
        open_n: 3,
        close_after: 3,
        ..config()
    });
    // e0's CPU: a lone spike at 5, then spikes at 7 and 9, a tail at 10–13 below the opening
    // threshold but above the closing one, and calm from 14.
    let cpu = |w: usize| match w {
        5 | 7 | 9 => 3.0,
        10..=13 => 1.2,
        _ => 1.0,
    };
    let reports = run(&mut detector, 0, 20, 5, |w, m| {
        (if m == 0 { cpu(w) } else { 1.0 }, 100.0)
    });
    let open: Vec<bool> = reports.iter().map(|r| r.scores[0].flagged).collect();
    let expected: Vec<bool> = (0..20).map(|w| (7..16).contains(&w)).collect();
    assert_eq!(
        open,
        expected,
        "scores: {:?}",
        reports
            .iter()
            .map(|r| r.scores[0].score)
            .collect::<Vec<_>>()
    );
    assert_eq!(reports[16].closed.len(), 1);
    let closed = &reports[16].closed[0];
    assert_eq!(
        (closed.opened, closed.updated, closed.closed),
        (at(7), at(9), Some(at(16)))
    );
}

#[test]
fn never_more_than_a_bounded_share_of_a_domain() {
    let two_stray = |w: usize, m: usize| (if m < 2 && w >= 5 { 6.0 } else { 1.0 }, 100.0);
    let config = || DetectConfig {
        domain_shifts: false,
        ..config()
    };
    // Six members and a share of 0.34: at most two findings; two strays fit.
    let mut detector = build(config());
    let reports = run(&mut detector, 0, 10, 6, two_stray);
    assert_eq!(flagged(&reports[9]), ["e0", "e1"]);
    // Five members: at most one; two strays at once are the herd moving, not an outlier.
    let mut detector = build(config());
    let reports = run(&mut detector, 0, 10, 5, two_stray);
    assert!(reports.iter().all(|r| r.opened.is_empty()));
}

#[test]
fn a_lasting_fault_stays_flagged_until_it_becomes_the_entitys_normal() {
    let mut detector = build(DetectConfig {
        adapt_after: 15,
        ..config()
    });
    let reports = run(&mut detector, 0, 60, 5, |w, m| {
        (if m == 0 && w >= 5 { 4.0 } else { 1.0 }, 100.0)
    });
    // Its baseline is frozen while anomalous, so the fault does not hide itself.
    assert!(reports[6..20].iter().all(|r| r.scores[0].flagged));
    // After adapt_after windows the new level enters the baseline and, once it dominates,
    // the comparison of moves no longer sees one.
    assert!(!reports[59].scores[0].flagged);
}

#[test]
fn vanished_entities_free_their_state_and_close_their_findings() {
    let mut detector = build(DetectConfig {
        forget_after: 2,
        ..config()
    });
    let reports = run(&mut detector, 0, 8, 5, |w, m| {
        (if m == 0 && w >= 5 { 6.0 } else { 1.0 }, 100.0)
    });
    assert_eq!(flagged(&reports[7]), ["e0"]);
    // Churn: every window, a fresh set of short-lived entities beside e1…e4; e0 is gone.
    for w in 8..200 {
        let mut window: Vec<Observation> = (1..5)
            .map(|m| observation(&format!("e{m}"), "shop/web", 1.0, 100.0))
            .collect();
        window.extend((0..10).map(|k| observation(&format!("job-{w}-{k}"), "batch", 1.0, 50.0)));
        let report = detector.observe(at(w), &window).unwrap();
        if w == 9 {
            assert_eq!(report.closed.len(), 1);
            assert_eq!(report.closed[0].subject.entity, "e0");
            assert_eq!(report.closed[0].closed, Some(at(9)));
        }
    }
    // e1…e4 plus the jobs of the last two windows.
    assert_eq!(detector.tracked(), 4 + 2 * 10);
    assert_eq!(detector.open_findings().count(), 0);
}

#[test]
fn missing_values_are_not_zeros() {
    let mut detector = build(config());
    for w in 0..10 {
        let mut window: Vec<Observation> = (0..5)
            .map(|m| observation(&format!("e{m}"), "shop/web", 1.0, 100.0))
            .collect();
        window[2].values[0] = None;
        let report = detector.observe(at(w), &window).unwrap();
        assert!(report.scores.iter().all(|s| s.score < 1.0 && !s.flagged));
    }
}

#[test]
fn a_bad_window_is_rejected_without_changing_state() {
    let mut detector = build(config());
    let good = observation("e0", "shop/web", 1.0, 100.0);
    let mut short = good.clone();
    short.values.pop();
    assert_eq!(
        detector.observe(at(0), &[short]),
        Err(DetectError::FeatureCount {
            entity: "e0".into(),
            expected: 2,
            got: 1
        })
    );
    let mut nan = good.clone();
    nan.values[1] = Some(f64::NAN);
    assert_eq!(
        detector.observe(at(0), &[nan]),
        Err(DetectError::NonFinite {
            entity: "e0".into(),
            feature: "memory_working_set".into()
        })
    );
    assert_eq!(
        detector.observe(at(0), &[good.clone(), good]),
        Err(DetectError::DuplicateEntity("e0".into()))
    );
    assert_eq!(detector.tracked(), 0);
}

#[test]
fn features_are_checked_when_building() {
    let names = |n: &[&str]| n.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    assert_eq!(
        Detector::new(config(), vec![]).err(),
        Some(DetectError::NoFeatures)
    );
    assert_eq!(
        Detector::new(config(), names(&["cpu", "cpu"])).err(),
        Some(DetectError::DuplicateFeature("cpu".into()))
    );
    let floors = DetectConfig {
        absolute_floors: [("cpuu".to_string(), 0.1)].into(),
        ..config()
    };
    assert_eq!(
        Detector::new(floors, names(&["cpu"])).err(),
        Some(DetectError::UnknownFeature("cpuu".into()))
    );
}

#[test]
fn across_nodes_one_replica_per_node_is_compared_with_the_others() {
    // Five replicas, each alone on its node; the fourth runs hot from window 5 on.
    let window = |w: usize| -> Vec<Observation> {
        (0..5)
            .map(|m| {
                let mut obs = observation(
                    &format!("e{m}"),
                    "shop/web",
                    if m == 3 && w >= 5 { 5.0 } else { 1.0 } + jitter(w, m),
                    100.0 + jitter(w, m),
                );
                obs.subject.node = format!("node-{m}");
                obs
            })
            .collect()
    };
    let basis_of = |per_node: bool| {
        let mut detector = build(DetectConfig {
            per_node,
            ..config()
        });
        let reports: Vec<WindowReport> = (0..9)
            .map(|w| detector.observe(at(w), &window(w)).unwrap())
            .collect();
        let opened: Vec<String> = reports
            .iter()
            .flat_map(|r| r.opened.iter().map(|f| f.subject.entity.clone()))
            .collect();
        let peers = reports.last().unwrap().scores[0].peers;
        (opened, peers)
    };
    let (opened, peers) = basis_of(false);
    assert_eq!(opened, ["e3"]);
    assert_eq!(peers, 5, "all five compared together");
    let (_, peers) = basis_of(true);
    assert_eq!(peers, 1, "node by node, each replica is alone");
}

#[test]
fn a_pair_too_small_for_peers_follows_a_daily_cycle_but_not_a_step() {
    // Two members (too few for peers: each is judged against its own past), both following
    // a day compressed into 120 windows of ±80 %, for six such days; from window 700 on (near
    // the day's trough), one of them runs at `step` times its CPU. With the minutes alone
    // (`season_period` 0), eight times goes unseen: its own past of 60 windows spans half the
    // day, so its spread is the cycle's; twelve times is found. With its seasonal past (a
    // period of 120 windows), the same time on earlier days says what this hour should be,
    // and eight times is found as fast.
    let run = |step: f64, season_period: usize| {
        let mut detector = Detector::new(
            DetectConfig {
                season_period,
                ..DetectConfig::default()
            },
            FEATURES.iter().map(|f| f.to_string()).collect(),
        )
        .unwrap();
        let mut opened = Vec::new();
        for w in 0..720 {
            let day = 1.0 + 0.8 * (std::f64::consts::TAU * (w % 120) as f64 / 120.0).sin();
            let window: Vec<Observation> = (0..2)
                .map(|m| {
                    let hog = if m == 1 && w >= 700 { step } else { 1.0 };
                    let cpu = hog * day * (1.0 + 2.0 * jitter(w, m));
                    observation(
                        &format!("e{m}"),
                        "lonely",
                        cpu,
                        1e8 * day * (1.0 + jitter(w, m)),
                    )
                })
                .collect();
            let report = detector.observe(at(w), &window).unwrap();
            opened.extend(report.opened.into_iter().map(|f| (w, f.subject.entity)));
        }
        opened
    };
    let found = |opened: &[(usize, String)]| matches!(opened, [(w, e)] if *w <= 702 && e == "e1");
    for season in [0, 120] {
        assert_eq!(run(1.0, season), [], "the cycle alone, season {season}");
    }
    assert_eq!(run(8.0, 0), [], "eight times, the minutes alone");
    let opened = run(12.0, 0);
    assert!(
        found(&opened),
        "twelve times, the minutes alone: {opened:?}"
    );
    let opened = run(8.0, 120);
    assert!(
        found(&opened),
        "eight times, with its seasonal past: {opened:?}"
    );
}
