//! How well verdicts match labels: the one place the evaluation's numbers are computed, for
//! the synthetic fleets in unit tests and for lab datasets replayed by `cargo xtask eval`.
//!
//! Input is one [`Point`] per container and window: whether the detector had it flagged,
//! and whether it was normal, inside a fault event, or in a fault's aftermath (not scored,
//! since a finding rightly stays open a few windows after its cause stops).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a container-window was.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    Normal,
    /// Inside the fault event of this id.
    Fault(String),
    /// Just after a fault on this container: neither normal nor the fault.
    Aftermath,
}

impl Label {
    /// The label as `labels.csv` writes it: `normal`, `aftermath`, or the fault's id.
    pub fn parse(text: &str) -> Self {
        match text {
            "normal" => Self::Normal,
            "aftermath" => Self::Aftermath,
            id => Self::Fault(id.to_owned()),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal"),
            Self::Aftermath => f.write_str("aftermath"),
            Self::Fault(id) => f.write_str(id),
        }
    }
}

/// One container in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// The window's index in time: consecutive windows differ by one, a gap by more.
    pub window: u64,
    pub entity: String,
    pub label: Label,
    /// Whether the detector had an open finding on the entity after this window.
    pub flagged: bool,
}

/// The evaluation's numbers. Ratios are `None` where their denominator is zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Scored container-windows (normal plus fault).
    pub points: usize,
    pub normal_points: usize,
    pub fault_points: usize,
    /// Fault windows flagged.
    pub true_positives: usize,
    /// Normal windows flagged.
    pub false_positives: usize,
    /// Flagged windows that were faults.
    pub precision: Option<f64>,
    /// Fault windows that were flagged.
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    /// Fault events.
    pub events: usize,
    /// Events with at least one flagged window.
    pub events_detected: usize,
    pub event_recall: Option<f64>,
    /// Normal container-windows flagged: `false_positives / normal_points`.
    pub false_positive_rate: Option<f64>,
    /// Per detected event, windows from its start to its first flag, counting the window
    /// it started in (flagged in its first window: 1), ascending.
    pub delays: Vec<u64>,
    pub median_delay: Option<f64>,
    /// Each event: id, entity, and its delay when detected.
    pub per_event: Vec<EventOutcome>,
}

/// What became of one fault event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutcome {
    pub id: String,
    pub entity: String,
    /// Windows it lasted.
    pub windows: usize,
    /// Windows to its first flag, counting its first; `None` when never flagged.
    pub delay: Option<u64>,
}

/// The goals the detector is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goals {
    pub max_false_positive_rate: f64,
    pub min_event_recall: f64,
    pub max_median_delay: f64,
}

impl Default for Goals {
    /// ≤ 1 % of normal container-windows flagged, event recall ≥ 0.95, median delay ≤ 3
    /// windows.
    fn default() -> Self {
        Self {
            max_false_positive_rate: 0.01,
            min_event_recall: 0.95,
            max_median_delay: 3.0,
        }
    }
}

impl Goals {
    /// The goals `metrics` misses, in words; empty when all are met. A number that cannot
    /// be computed (no normal window, no event, nothing detected) is a miss.
    pub fn misses(&self, metrics: &Metrics) -> Vec<String> {
        let mut missed = Vec::new();
        match metrics.false_positive_rate {
            Some(rate) if rate <= self.max_false_positive_rate => {}
            Some(rate) => missed.push(format!(
                "false-positive rate {:.2} % is over {:.2} %",
                rate * 100.0,
                self.max_false_positive_rate * 100.0
            )),
            None => missed.push("no normal container-window to measure false positives".into()),
        }
        match metrics.event_recall {
            Some(recall) if recall >= self.min_event_recall => {}
            Some(recall) => missed.push(format!(
                "event recall {recall:.2} is under {:.2} ({} of {} events)",
                self.min_event_recall, metrics.events_detected, metrics.events
            )),
            None => missed.push("no fault event to measure recall".into()),
        }
        match metrics.median_delay {
            Some(delay) if delay <= self.max_median_delay => {}
            Some(delay) => missed.push(format!(
                "median delay {delay} windows is over {}",
                self.max_median_delay
            )),
            None => missed.push("no event detected to measure delay".into()),
        }
        missed
    }
}

/// Windows numbered from their timestamps, as a replay sees them: the window length is the
/// median gap between consecutive times, so that a gap (a restart, a pause) neither
/// stretches it nor counts as one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    /// The first window's time, in seconds.
    pub start: f64,
    /// Seconds; 0 when there was only one window.
    pub window: f64,
    /// Windows from the first to the last, gaps included.
    pub windows: u64,
}

impl Timeline {
    /// The timeline of windows at `times` (seconds; any order, repeats allowed); `None`
    /// without a finite time.
    pub fn of(times: &[f64]) -> Option<Self> {
        let mut distinct: Vec<f64> = times.iter().copied().filter(|t| t.is_finite()).collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        let start = *distinct.first()?;
        let window = window_length(&distinct).unwrap_or(0.0);
        let mut timeline = Self {
            start,
            window,
            windows: 1,
        };
        timeline.windows = timeline.index(*distinct.last()?) + 1;
        Some(timeline)
    }

    /// The index of the window at `ts`: 0 for the first, one more per window length.
    pub fn index(&self, ts: f64) -> u64 {
        if self.window > 0.0 {
            ((ts - self.start) / self.window).round().max(0.0) as u64
        } else {
            0
        }
    }
}

/// The window length of ascending, distinct times: the median gap between neighbours;
/// `None` for fewer than two times.
pub fn window_length(times: &[f64]) -> Option<f64> {
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    let n = gaps.len();
    Some(if n % 2 == 1 {
        gaps[n / 2]
    } else {
        (gaps[n / 2 - 1] + gaps[n / 2]) / 2.0
    })
}

/// Scores `points`; their order does not matter.
pub fn evaluate(points: &[Point]) -> Metrics {
    let mut normal = 0;
    let mut faults = 0;
    let mut tp = 0;
    let mut fp = 0;
    // Event id → (entity, first window, windows, first flagged window).
    let mut events: BTreeMap<&str, (&str, u64, usize, Option<u64>)> = BTreeMap::new();
    for point in points {
        match &point.label {
            Label::Aftermath => {}
            Label::Normal => {
                normal += 1;
                fp += usize::from(point.flagged);
            }
            Label::Fault(id) => {
                faults += 1;
                tp += usize::from(point.flagged);
                let event = events
                    .entry(id)
                    .or_insert((&point.entity, point.window, 0, None));
                event.1 = event.1.min(point.window);
                event.2 += 1;
                if point.flagged {
                    event.3 = Some(event.3.map_or(point.window, |w| w.min(point.window)));
                }
            }
        }
    }
    let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, faults);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    let per_event: Vec<EventOutcome> = events
        .iter()
        .map(|(id, &(entity, start, windows, first_flag))| EventOutcome {
            id: (*id).to_owned(),
            entity: entity.to_owned(),
            windows,
            delay: first_flag.map(|w| w - start + 1),
        })
        .collect();
    let mut delays: Vec<u64> = per_event.iter().filter_map(|e| e.delay).collect();
    delays.sort_unstable();
    let median_delay = match delays.len() {
        0 => None,
        n if n % 2 == 1 => Some(delays[n / 2] as f64),
        n => Some((delays[n / 2 - 1] + delays[n / 2]) as f64 / 2.0),
    };
    Metrics {
        points: normal + faults,
        normal_points: normal,
        fault_points: faults,
        true_positives: tp,
        false_positives: fp,
        precision,
        recall,
        f1,
        events: per_event.len(),
        events_detected: delays.len(),
        event_recall: ratio(delays.len(), per_event.len()),
        false_positive_rate: ratio(fp, normal),
        delays,
        median_delay,
        per_event,
    }
}

impl Metrics {
    /// The numbers as a Markdown table, `-` where one cannot be computed.
    pub fn table(&self) -> String {
        let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"));
        let rate = self
            .false_positive_rate
            .map_or_else(|| "-".to_owned(), |r| format!("{:.2} %", r * 100.0));
        let delay = self
            .median_delay
            .map_or_else(|| "-".to_owned(), |d| format!("{d}"));
        let entities: BTreeSet<&str> = self.per_event.iter().map(|e| e.entity.as_str()).collect();
        format!(
            "| metric | value |\n|---|---|\n\
             | point precision | {} ({} of {} flagged windows) |\n\
             | point recall | {} ({} of {} fault windows) |\n\
             | point F1 | {} |\n\
             | event recall | {} ({} of {} events, {} containers) |\n\
             | false-positive rate | {rate} ({} of {} normal container-windows) |\n\
             | median delay | {delay} windows (each: {}) |\n",
            ratio(self.precision),
            self.true_positives,
            self.true_positives + self.false_positives,
            ratio(self.recall),
            self.true_positives,
            self.fault_points,
            ratio(self.f1),
            ratio(self.event_recall),
            self.events_detected,
            self.events,
            entities.len(),
            self.false_positives,
            self.normal_points,
            if self.delays.is_empty() {
                "-".to_owned()
            } else {
                self.delays
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(window: u64, entity: &str, label: &str, flagged: bool) -> Point {
        Point {
            window,
            entity: entity.to_owned(),
            label: Label::parse(label),
            flagged,
        }
    }

    /// Two containers over ten windows: `a` has fault f1 in windows 3–6, flagged from
    /// window 5 on (into its aftermath); `b` is normal and flagged once, in window 8.
    fn case() -> Vec<Point> {
        let mut points = Vec::new();
        for w in 0..10 {
            let label = match w {
                3..=6 => "f1",
                7 | 8 => "aftermath",
                _ => "normal",
            };
            points.push(point(w, "a", label, (5..=8).contains(&w)));
            points.push(point(w, "b", "normal", w == 8));
        }
        points
    }

    #[test]
    fn counts_points_events_and_delay_by_hand() {
        let m = evaluate(&case());
        // a: 4 normal + 4 fault + 2 aftermath (unscored); b: 10 normal.
        assert_eq!((m.normal_points, m.fault_points, m.points), (14, 4, 18));
        assert_eq!((m.true_positives, m.false_positives), (2, 1));
        assert_eq!(m.precision, Some(2.0 / 3.0));
        assert_eq!(m.recall, Some(0.5));
        let f1 = 2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5);
        assert!((m.f1.unwrap() - f1).abs() < 1e-12);
        assert_eq!(m.false_positive_rate, Some(1.0 / 14.0));
        assert_eq!((m.events, m.events_detected), (1, 1));
        assert_eq!(m.event_recall, Some(1.0));
        // Started in window 3, first flag in window 5: the third window of the fault.
        assert_eq!(m.delays, [3]);
        assert_eq!(m.median_delay, Some(3.0));
        assert_eq!(
            m.per_event,
            [EventOutcome {
                id: "f1".into(),
                entity: "a".into(),
                windows: 4,
                delay: Some(3)
            }]
        );
    }

    #[test]
    fn a_missed_event_lowers_event_recall_and_has_no_delay() {
        let mut points = case();
        // f2 on b in windows 0–1, never flagged; f3 on c, flagged at once.
        points[1] = point(0, "b", "f2", false);
        points[3] = point(1, "b", "f2", false);
        points.push(point(4, "c", "f3", true));
        let m = evaluate(&points);
        assert_eq!((m.events, m.events_detected), (3, 2));
        assert_eq!(m.event_recall, Some(2.0 / 3.0));
        assert_eq!(m.delays, [1, 3]);
        assert_eq!(m.median_delay, Some(2.0));
        let missed = m.per_event.iter().find(|e| e.id == "f2").unwrap();
        assert_eq!((missed.windows, missed.delay), (2, None));
        let words = Goals::default().misses(&m);
        assert!(words.iter().any(|w| w.starts_with("event recall 0.67")));
        assert!(words.iter().any(|w| w.starts_with("false-positive rate")));
        assert!(!words.iter().any(|w| w.contains("delay")), "{words:?}");
    }

    #[test]
    fn the_delay_counts_windows_across_a_gap() {
        // The fault starts at window 10; the replay saw nothing in windows 11–13.
        let points = [point(10, "a", "f", false), point(14, "a", "f", true)];
        assert_eq!(evaluate(&points).delays, [5]);
    }

    #[test]
    fn goals_are_met_only_when_every_number_is_good() {
        let mut points: Vec<Point> = (0..200).map(|w| point(w, "n", "normal", false)).collect();
        points.extend((0..4).map(|w| point(w, "a", "f", w >= 1)));
        let m = evaluate(&points);
        assert_eq!(m.median_delay, Some(2.0));
        assert!(Goals::default().misses(&m).is_empty());
        // Two false windows in 200 is 1 %: still within the goal; three is not.
        points[0].flagged = true;
        points[1].flagged = true;
        assert!(Goals::default().misses(&evaluate(&points)).is_empty());
        points[2].flagged = true;
        assert_eq!(Goals::default().misses(&evaluate(&points)).len(), 1);
    }

    #[test]
    fn nothing_to_measure_is_a_miss_not_a_pass() {
        let m = evaluate(&[]);
        assert_eq!((m.precision, m.recall, m.f1), (None, None, None));
        assert_eq!(Goals::default().misses(&m).len(), 3);
        assert!(
            m.table()
                .contains("| point precision | - (0 of 0 flagged windows) |")
        );
    }

    #[test]
    fn the_timeline_takes_its_window_from_the_usual_gap_and_counts_gaps_as_windows() {
        // 3 s windows, a 12 s gap after 9 (three windows missing), a little jitter.
        let times = [0.0, 3.0, 3.0, 6.1, 9.0, 21.0, 24.0, 27.05];
        let t = Timeline::of(&times).unwrap();
        assert!((t.window - 3.0).abs() < 0.06, "{t:?}");
        assert_eq!(t.index(6.1), 2);
        assert_eq!(t.index(21.0), 7);
        assert_eq!(t.windows, 10);
        assert_eq!(window_length(&[5.0]), None);
        let one = Timeline::of(&[5.0, 5.0]).unwrap();
        assert_eq!((one.window, one.windows, one.index(5.0)), (0.0, 1, 0));
        assert_eq!(Timeline::of(&[]), None);
    }

    #[test]
    fn labels_read_back_as_written() {
        for label in [
            Label::Normal,
            Label::Aftermath,
            Label::Fault("f3-cpu-hog".into()),
        ] {
            assert_eq!(Label::parse(&label.to_string()), label);
        }
    }
}
