//! When a run of anomalous windows becomes a finding, and when it ends.

use super::config::DetectConfig;

/// One entity's recent verdicts: m of the last n windows to open, a calm streak to close.
#[derive(Debug, Clone, Default)]
pub struct Alarm {
    /// Bit i set: the window i steps back was anomalous. Only the low `open_n` bits count.
    recent: u64,
    /// Calm windows in a row while a finding is open.
    calm: usize,
}

/// What a window means for an entity's finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changes.
    Quiet,
    /// This window and enough recent ones were anomalous: a finding should open, if the
    /// domain allows.
    Open,
    /// The open finding got another anomalous window.
    Update,
    /// The open finding has been calm long enough.
    Close,
}

impl Alarm {
    /// Records one window's score; `is_open` says whether the entity has an open finding.
    pub fn record(&mut self, config: &DetectConfig, score: f64, is_open: bool) -> Verdict {
        let anomalous = score >= config.threshold;
        let mask = if config.open_n == 64 {
            u64::MAX
        } else {
            (1 << config.open_n) - 1
        };
        self.recent = ((self.recent << 1) | u64::from(anomalous)) & mask;
        if !is_open {
            return if anomalous && self.recent.count_ones() as usize >= config.open_m {
                Verdict::Open
            } else {
                Verdict::Quiet
            };
        }
        if score < config.close_threshold {
            self.calm += 1;
        } else {
            self.calm = 0;
        }
        if self.calm >= config.close_after {
            self.reset();
            Verdict::Close
        } else if anomalous {
            Verdict::Update
        } else {
            Verdict::Quiet
        }
    }

    /// Whether no recent window was anomalous and no calm streak is being counted.
    pub fn is_quiet(&self) -> bool {
        self.recent == 0 && self.calm == 0
    }

    /// Starts over, so that old anomalous windows cannot reopen a closed finding.
    fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DetectConfig {
        DetectConfig {
            threshold: 3.5,
            close_threshold: 2.5,
            open_m: 2,
            open_n: 3,
            close_after: 2,
            ..DetectConfig::default()
        }
    }

    /// Feeds scores, opening and closing as the verdicts say; returns whether it was open
    /// after each window.
    fn run(scores: &[f64]) -> Vec<bool> {
        let config = config();
        let mut alarm = Alarm::default();
        let mut open = false;
        scores
            .iter()
            .map(|&score| {
                match alarm.record(&config, score, open) {
                    Verdict::Open => open = true,
                    Verdict::Close => open = false,
                    Verdict::Quiet | Verdict::Update => {}
                }
                open
            })
            .collect()
    }

    #[test]
    fn opens_on_m_of_n_not_on_a_single_spike() {
        assert_eq!(run(&[9.0, 0.0, 0.0, 9.0]), [false; 4]);
        // 9, 0, 9: two of the last three.
        assert_eq!(run(&[9.0, 0.0, 9.0]), [false, false, true]);
        assert_eq!(run(&[9.0, 9.0]), [false, true]);
    }

    #[test]
    fn closes_only_after_calm_windows_below_the_lower_threshold() {
        // 3.0 is under the opening threshold but above the closing one: still open.
        let open = run(&[9.0, 9.0, 3.0, 3.0, 3.0, 1.0, 9.0, 1.0, 1.0]);
        assert_eq!(
            open,
            [false, true, true, true, true, true, true, true, false]
        );
    }

    #[test]
    fn a_closed_finding_needs_m_new_windows_to_reopen() {
        let open = run(&[9.0, 9.0, 1.0, 1.0, 9.0, 9.0]);
        assert_eq!(open, [false, true, true, false, false, true]);
    }
}
