//! The detection settings of `run`: when a window is anomalous, when a finding opens, closes
//! and turns critical, and how many members a domain needs for a peer comparison.

use clap::Args;
use herd_agent::detect::{DetectConfig, DetectError};

/// Defaults are the detector's own (`herd-agent detector` prints them all).
#[derive(Args, Clone, Debug)]
pub struct DetectionArgs {
    /// Score (largest robust |z| of a container's features) from which a window is anomalous.
    #[arg(long, default_value_t = DetectConfig::default().threshold)]
    threshold: f64,
    /// An open finding counts a window as calm only below this score; below --threshold.
    #[arg(long, default_value_t = DetectConfig::default().close_threshold)]
    close_threshold: f64,
    /// A finding opens when this many of the last --open-within windows were anomalous.
    #[arg(long, default_value_t = DetectConfig::default().open_m)]
    open_after: usize,
    /// The windows --open-after counts in (at most 64).
    #[arg(long, default_value_t = DetectConfig::default().open_n)]
    open_within: usize,
    /// A finding closes after this many calm windows in a row.
    #[arg(long, default_value_t = DetectConfig::default().close_after)]
    close_after: usize,
    /// Peak score from which a finding is critical rather than a warning.
    #[arg(long, default_value_t = DetectConfig::default().critical_score)]
    critical_score: f64,
    /// Fewest members of a domain with a value for a peer comparison; a smaller domain's
    /// members are compared with their own recent history.
    #[arg(long, default_value_t = DetectConfig::default().min_peers)]
    min_peers: usize,
    /// Largest share of a domain that may be flagged at once: past it, the herd moved and
    /// no new finding opens.
    #[arg(long, default_value_t = DetectConfig::default().max_share)]
    max_share: f64,
    /// Windows a container is watched before it is judged.
    #[arg(long, default_value_t = DetectConfig::default().warmup)]
    warmup: usize,
}

impl DetectionArgs {
    /// `base` with these settings, checked the way the detector checks them; an error names
    /// the flag.
    pub fn apply(&self, base: DetectConfig) -> Result<DetectConfig, String> {
        let config = DetectConfig {
            threshold: self.threshold,
            close_threshold: self.close_threshold,
            open_m: self.open_after,
            open_n: self.open_within,
            close_after: self.close_after,
            critical_score: self.critical_score,
            min_peers: self.min_peers,
            max_share: self.max_share,
            warmup: self.warmup,
            ..base
        };
        match config.validate() {
            Ok(()) => Ok(config),
            Err(DetectError::InvalidConfig { field, reason }) => {
                // The reason may name other fields: say them as flags too.
                let reason: Vec<String> = reason
                    .replace('`', "")
                    .split(' ')
                    .map(|word| flag_of(word).map_or_else(|| word.to_owned(), |f| format!("--{f}")))
                    .collect();
                let reason = reason.join(" ");
                Err(format!("--{} {reason}", flag_of(field).unwrap_or(field)))
            }
            Err(other) => Err(other.to_string()),
        }
    }
}

/// The detector's fields that a flag sets, and their flags.
const FIELDS: [(&str, &str); 9] = [
    ("close_threshold", "close-threshold"),
    ("threshold", "threshold"),
    ("open_m", "open-after"),
    ("open_n", "open-within"),
    ("close_after", "close-after"),
    ("critical_score", "critical-score"),
    ("min_peers", "min-peers"),
    ("max_share", "max-share"),
    ("warmup", "warmup"),
];

/// The flag that sets a field of the detector's configuration, where one does.
fn flag_of(field: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, flag)| *flag)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        detection: DetectionArgs,
    }

    fn apply(args: &[&str]) -> Result<DetectConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.detection.apply(DetectConfig::default())
    }

    #[test]
    fn the_defaults_are_the_detectors() {
        let config = apply(&[]).unwrap();
        let default = DetectConfig::default();
        assert_eq!(config.threshold, default.threshold);
        assert_eq!(config.open_m, default.open_m);
        assert_eq!(config.warmup, default.warmup);
    }

    #[test]
    fn settings_reach_the_detector_and_bad_ones_name_their_flag() {
        let config = apply(&[
            "--threshold",
            "5",
            "--open-after",
            "3",
            "--open-within",
            "5",
        ])
        .unwrap();
        assert_eq!(
            (config.threshold, config.open_m, config.open_n),
            (5.0, 3, 5)
        );
        let err = apply(&["--open-after", "4", "--open-within", "3"]).unwrap_err();
        assert_eq!(err, "--open-after must be between 1 and --open-within");
        let err = apply(&["--close-threshold", "4"]).unwrap_err();
        assert_eq!(
            err,
            "--close-threshold must be above 0 and at most --threshold"
        );
    }
}
