//! `herd-agent replay`: runs the detector over recorded feature frames, offline.
//!
//! Frames are CSV with the header `ts,node,domain,entity,<feature…>`, sorted by `ts`
//! (seconds); rows with the same `ts` form one window; an empty cell is a missing value. The
//! output has a row `ts,entity,score,flag` per input row.
//!
//! Time comes from the timestamps. The window length is the median gap between the first
//! windows' times ([`herd_detect::evaluate::window_length`]); a longer gap between two
//! windows is that many windows without anyone, as the live agent would have counted them
//! had it seen nothing, so an entity missing long enough is forgotten rather than judged as
//! if no time had passed. Training frames must end before the input starts.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tracing::{debug, info};

pub use crate::detect::frames::{FrameReadError, FrameReader, Window};
use crate::detect::{DetectConfig, DetectError, Detector, WindowReport};

/// Arguments of `herd-agent replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Frames to score: `ts,node,domain,entity,<feature…>`, sorted by ts.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write `ts,entity,score,flag`, one row per input row.
    #[arg(long)]
    pub output: PathBuf,
    /// Frames with the same columns that warm up the baselines first; they must end before
    /// the input starts, and get no output.
    #[arg(long, alias = "train")]
    pub training: Option<PathBuf>,
}

/// What a replay went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Input windows (distinct ts) scored.
    pub windows: usize,
    /// Input rows scored, and so output rows written.
    pub rows: usize,
    /// Findings opened during the input frames.
    pub findings: usize,
    /// The window length the timestamps gave; `None` with a single window.
    pub window: Option<Duration>,
    /// Gaps longer than a window, training and input together.
    pub gaps: usize,
}

/// Why a replay failed. `file` names the frame file, `line` its 1-based line.
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{train} has the columns {train_columns:?}, {input} has {input_columns:?}")]
    TrainColumns {
        train: String,
        train_columns: Vec<String>,
        input: String,
        input_columns: Vec<String>,
    },
    #[error(
        "{train} ends at ts {last}, not before {input} starts (ts {first}): the training \
         frames must come first"
    )]
    TrainingOverlaps {
        train: String,
        last: f64,
        input: String,
        first: f64,
    },
    #[error("cannot write {file}: {source}")]
    Write { file: String, source: csv::Error },
    #[error(transparent)]
    Frames(#[from] FrameReadError),
    #[error(transparent)]
    Detect(#[from] DetectError),
}

/// Replays the files named in `args` through a detector with the default settings.
pub fn run(args: &ReplayArgs) -> Result<ReplaySummary, ReplayError> {
    let open = |path: &Path| {
        File::open(path)
            .map(BufReader::new)
            .map_err(|source| ReplayError::Open {
                path: path.to_path_buf(),
                source,
            })
    };
    let input = FrameReader::new(args.input.display().to_string(), open(&args.input)?)?;
    let train = match &args.training {
        Some(path) => Some(FrameReader::new(path.display().to_string(), open(path)?)?),
        None => None,
    };
    let output = File::create(&args.output).map_err(|source| ReplayError::Open {
        path: args.output.clone(),
        source,
    })?;
    // A day is as many windows as the recording has in a day, as the live agent counts it
    // from --interval.
    let mut config = crate::features::detect_config(&input.features);
    let first = args.training.as_ref().unwrap_or(&args.input);
    if let Some(window) =
        recorded_window(FrameReader::new(first.display().to_string(), open(first)?)?)?
    {
        config = config.with_daily_seasons(window);
        debug!(
            ?window,
            season_period = config.season_period,
            "seasons of the recording's day"
        );
    }
    let summary = replay(
        config,
        train,
        input,
        BufWriter::new(output),
        &args.output.display().to_string(),
    )?;
    info!(
        windows = summary.windows,
        rows = summary.rows,
        findings = summary.findings,
        window = ?summary.window,
        gaps = summary.gaps,
        output = %args.output.display(),
        "replay done"
    );
    Ok(summary)
}

/// Warms a detector up on `train`, then scores `input` and writes a row per input row to
/// `output` (named `output_name` in errors). The same [`Detector`] the live agent uses.
pub fn replay<R: Read, W: Write>(
    config: DetectConfig,
    train: Option<FrameReader<R>>,
    input: FrameReader<R>,
    output: W,
    output_name: &str,
) -> Result<ReplaySummary, ReplayError> {
    let forget_after = config.forget_after;
    let mut detector = Detector::new(config, input.features.clone())?;
    let mut clock = Clock::default();
    let mut train_end = None;
    if let Some(mut train) = train {
        if train.features != input.features {
            return Err(ReplayError::TrainColumns {
                train: train.file.clone(),
                train_columns: train.features.clone(),
                input: input.file.clone(),
                input_columns: input.features.clone(),
            });
        }
        while let Some(window) = train.next_window()? {
            clock.pass(&mut detector, window.ts, forget_after)?;
            train_end = Some((train.file.clone(), window.ts));
            let report = detector.observe(window.at, &window.observations)?;
            for finding in &report.opened {
                debug!(%finding, "finding opened in the training frames");
            }
        }
    }

    let write_error = |source| ReplayError::Write {
        file: output_name.to_string(),
        source,
    };
    let mut out = csv::Writer::from_writer(output);
    out.write_record(["ts", "entity", "score", "flag"])
        .map_err(write_error)?;
    let mut input = input;
    let mut summary = ReplaySummary {
        windows: 0,
        rows: 0,
        findings: 0,
        window: None,
        gaps: 0,
    };
    while let Some(window) = input.next_window()? {
        if let Some((train, last)) = train_end.take()
            && last >= window.ts
        {
            return Err(ReplayError::TrainingOverlaps {
                train,
                last,
                input: input.file.clone(),
                first: window.ts,
            });
        }
        clock.pass(&mut detector, window.ts, forget_after)?;
        let report = detector.observe(window.at, &window.observations)?;
        log_findings(&report);
        for (ts, score) in window.ts_cells.iter().zip(&report.scores) {
            let flag = if score.flagged { "1" } else { "0" };
            let score_cell = format!("{:.3}", score.score);
            out.write_record([ts.as_str(), score.entity.as_str(), &score_cell, flag])
                .map_err(write_error)?;
        }
        summary.windows += 1;
        summary.rows += report.scores.len();
        summary.findings += report.opened.len();
    }
    out.flush()
        .map_err(|source| write_error(csv::Error::from(source)))?;
    summary.window = clock.window().map(Duration::from_secs_f64);
    summary.gaps = clock.gaps;
    Ok(summary)
}

/// The window length of a recording, from its first windows' times; `None` with fewer than
/// two windows.
fn recorded_window<R: Read>(mut frames: FrameReader<R>) -> Result<Option<Duration>, ReplayError> {
    let mut times = Vec::new();
    while times.len() <= WINDOWS_FOR_LENGTH
        && let Some(window) = frames.next_window()?
    {
        times.push(window.ts);
    }
    Ok(herd_detect::evaluate::window_length(&times)
        .filter(|w| *w > 0.0)
        .map(Duration::from_secs_f64))
}

/// Gaps between the first windows' times that give the window length.
const WINDOWS_FOR_LENGTH: usize = 9;
/// A gap between two windows longer than this many window lengths has windows missing.
const GAP_FACTOR: f64 = 1.5;

/// Time as the frames tell it: the window length, and the windows a gap leaves out.
#[derive(Debug, Default)]
struct Clock {
    /// The first windows' times.
    first: Vec<f64>,
    last: Option<f64>,
    gaps: usize,
}

impl Clock {
    fn window(&self) -> Option<f64> {
        herd_detect::evaluate::window_length(&self.first)
    }

    /// Moves on to the window at `ts`: a gap since the last window is given to `detector`
    /// as empty windows, as many as are missing, but no more than it takes to forget every
    /// entity (more would change nothing).
    fn pass(
        &mut self,
        detector: &mut Detector,
        ts: f64,
        forget_after: usize,
    ) -> Result<(), DetectError> {
        let window = self.window();
        if let (Some(last), Some(window)) = (self.last, window)
            && window > 0.0
            && ts - last > GAP_FACTOR * window
        {
            self.gaps += 1;
            let missing = ((ts - last) / window).round() as usize - 1;
            debug!(from = last, to = ts, missing, "a gap in the frames");
            for k in 1..=missing.min(forget_after) {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(last + k as f64 * window);
                detector.observe(at, &[])?;
            }
        }
        if self.first.len() <= WINDOWS_FOR_LENGTH {
            self.first.push(ts);
        }
        self.last = Some(ts);
        Ok(())
    }
}

fn log_findings(report: &WindowReport) {
    for finding in &report.opened {
        info!(%finding, "finding opened");
    }
    for finding in &report.closed {
        info!(entity = %finding.subject.entity, "finding closed");
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// Frames of one domain of five entities `e0…e4` over `windows` windows from ts `from`;
    /// `memory(w, m)` gives entity m's memory in window w, in MiB. e1 has no CPU value
    /// (missing).
    fn frames(from: usize, windows: usize, memory: impl Fn(usize, usize) -> f64) -> String {
        let mut csv = String::from("ts,node,domain,entity,cpu,memory_working_set\n");
        for w in from..from + windows {
            for m in 0..5 {
                let cpu = if m == 1 {
                    String::new()
                } else {
                    format!("{}", 1.0 + (w + m) as f64 % 3.0 * 0.01)
                };
                let ts = 10 * w;
                let mem = memory(w, m) * MIB * (1.0 + (w * 3 + m) as f64 % 4.0 * 0.005);
                writeln!(csv, "{ts},node-1,shop/web,e{m},{cpu},{mem}").unwrap();
            }
        }
        csv
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Replays through the files, as the command does; returns the output rows.
    fn replay_files(input: &str, train: Option<&str>) -> Result<Vec<Vec<String>>, ReplayError> {
        let dir = tempfile::tempdir().unwrap();
        let args = ReplayArgs {
            input: write(dir.path(), "frames.csv", input),
            output: dir.path().join("pred.csv"),
            training: train.map(|t| write(dir.path(), "train.csv", t)),
        };
        run(&args)?;
        let text = std::fs::read_to_string(&args.output).unwrap();
        Ok(text
            .lines()
            .map(|l| l.split(',').map(String::from).collect())
            .collect())
    }

    /// Entities flagged in the output rows of ts `ts`.
    fn flagged_at(rows: &[Vec<String>], ts: usize) -> Vec<String> {
        rows.iter()
            .filter(|r| r[0] == ts.to_string() && r[3] == "1")
            .map(|r| r[1].clone())
            .collect()
    }

    #[test]
    fn flags_the_stray_entity_and_no_other() {
        // e3's memory grows to 4× its peers' from window 8.
        let input = frames(0, 14, |w, m| if m == 3 && w >= 8 { 400.0 } else { 100.0 });
        let rows = replay_files(&input, None).unwrap();
        assert_eq!(rows[0], ["ts", "entity", "score", "flag"]);
        assert_eq!(rows.len(), 1 + 14 * 5);
        // One row per input row, in input order, with its ts and entity.
        for (row, line) in rows[1..].iter().zip(input.lines().skip(1)) {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!((row[0].as_str(), row[1].as_str()), (cells[0], cells[3]));
            assert!(row[2].parse::<f64>().unwrap() >= 0.0);
        }
        // Anomalous in windows 8 and 9 (ts 80, 90): two of the last three.
        assert!(flagged_at(&rows, 80).is_empty());
        for w in 9..14 {
            assert_eq!(flagged_at(&rows, 10 * w), ["e3"], "window {w}");
        }
        let flags: usize = rows[1..].iter().filter(|r| r[3] == "1").count();
        assert_eq!(flags, 5);
        let e3_late: f64 = rows[1..]
            .iter()
            .find(|r| r[0] == "130" && r[1] == "e3")
            .map(|r| r[2].parse().unwrap())
            .unwrap();
        assert!(e3_late > 10.0);
    }

    #[test]
    fn training_frames_warm_up_the_baselines() {
        // e3 is 4× from the very first input window.
        let input = frames(20, 6, |_, m| if m == 3 { 400.0 } else { 100.0 });
        // Without history, every entity is young at first and e3's level becomes its own.
        let cold = replay_files(&input, None).unwrap();
        assert!(cold[1..].iter().all(|r| r[3] == "0"));
        // After healthy training frames that end just before the input, e3 is judged at
        // once: flagged at the second window.
        let train = frames(10, 10, |_, _| 100.0);
        let warm = replay_files(&input, Some(&train)).unwrap();
        assert_eq!(warm.len(), 1 + 6 * 5);
        assert!(flagged_at(&warm, 200).is_empty());
        assert_eq!(flagged_at(&warm, 210), ["e3"]);
    }

    fn error(input: &str) -> String {
        replay_files(input, None).unwrap_err().to_string()
    }

    #[test]
    fn malformed_frames_are_rejected_with_the_line() {
        let header = "ts,node,domain,entity,cpu\n";
        assert!(
            error("time,node,domain,entity,cpu\n0,n,d,e,1\n")
                .contains("the header must start with `ts,node,domain,entity`")
        );
        assert!(error("ts,node,domain,entity\n").contains("names no feature"));
        assert!(error("ts,node,domain,entity,cpu,cpu\n").contains("`cpu` appears twice"));
        let wrong = error(&format!("{header}0,n,d,e0,1\n0,n,d,e1,1,2\n"));
        assert!(
            wrong.ends_with("line 3: 6 columns, the header has 5"),
            "{wrong}"
        );
        let nan = error(&format!("{header}0,n,d,e0,1\n10,n,d,e0,fast\n"));
        assert!(
            nan.ends_with("line 3: column `cpu` is `fast`, not a number"),
            "{nan}"
        );
        let unsorted = error(&format!("{header}10,n,d,e0,1\n20,n,d,e0,1\n15,n,d,e0,1\n"));
        assert!(
            unsorted.ends_with("line 4: ts 15 comes after 20; rows must be sorted by ts"),
            "{unsorted}"
        );
        let twice = error(&format!("{header}0,n,d,e0,1\n0,n,d,e0,2\n"));
        assert!(
            twice.ends_with("line 3: entity `e0` appears twice at ts 0"),
            "{twice}"
        );
        assert!(error(&format!("{header}-5,n,d,e0,1\n")).contains("line 2: ts `-5`"));
        assert!(
            error(&format!("{header}0,n,,e0,1\n")).contains("line 2: column `domain` is empty")
        );
    }

    #[test]
    fn a_day_is_counted_in_the_recordings_windows() {
        let reader = |text: String| {
            FrameReader::new("frames.csv".into(), io::Cursor::new(text.into_bytes())).unwrap()
        };
        // frames() writes a window every 10 s.
        let window = recorded_window(reader(frames(0, 12, |_, _| 100.0))).unwrap();
        assert_eq!(window, Some(Duration::from_secs(10)));
        let config = DetectConfig::default().with_daily_seasons(window.unwrap());
        assert_eq!(config.season_period, 8640);
        // One window has no length to tell: the defaults stand.
        assert_eq!(
            recorded_window(reader(frames(0, 1, |_, _| 100.0))).unwrap(),
            None
        );
    }

    #[test]
    fn training_frames_must_have_the_input_columns() {
        let input = frames(0, 2, |_, _| 100.0);
        let train = "ts,node,domain,entity,cpu\n0,n,d,e0,1\n";
        let err = replay_files(&input, Some(train)).unwrap_err();
        assert!(matches!(err, ReplayError::TrainColumns { .. }), "{err}");
    }

    #[test]
    fn training_frames_must_end_before_the_input_starts() {
        let input = frames(5, 3, |_, _| 100.0);
        let train = frames(0, 6, |_, _| 100.0);
        let err = replay_files(&input, Some(&train)).unwrap_err().to_string();
        assert!(
            err.contains("ends at ts 50, not before") && err.contains("starts (ts 50)"),
            "{err}"
        );
        // Ending one window before is fine.
        assert!(replay_files(&input, Some(&frames(0, 5, |_, _| 100.0))).is_ok());
    }

    /// Replays `input` and returns the summary.
    fn summary(input: &str) -> ReplaySummary {
        let dir = tempfile::tempdir().unwrap();
        let args = ReplayArgs {
            input: write(dir.path(), "frames.csv", input),
            output: dir.path().join("pred.csv"),
            training: None,
        };
        run(&args).unwrap()
    }

    #[test]
    fn the_window_length_and_gaps_come_from_the_timestamps() {
        // 10 s windows 0–9, then nothing until window 20: a gap, not the next window.
        let mut input = frames(0, 10, |_, _| 100.0);
        input.push_str(frames(20, 10, |_, _| 100.0).split_once('\n').unwrap().1);
        let s = summary(&input);
        assert_eq!(s.window, Some(Duration::from_secs(10)));
        assert_eq!((s.windows, s.gaps), (20, 1));
        assert_eq!(summary(&frames(0, 10, |_, _| 100.0)).gaps, 0);
    }

    #[test]
    fn a_gap_is_not_consecutive_windows_for_the_alarm() {
        // e3 is 4× its peers in the last window before a long gap and the first after it.
        // Consecutive, those two windows would open a finding (two of the last three); a
        // gap in between forgets e3, and after it e3 is young again and not judged.
        let stray = |w: usize, m: usize| {
            if m == 3 && (w == 9 || w == 30) {
                400.0
            } else {
                100.0
            }
        };
        let mut input = frames(0, 10, stray);
        input.push_str(frames(30, 2, stray).split_once('\n').unwrap().1);
        let rows = replay_files(&input, None).unwrap();
        assert!(rows[1..].iter().all(|r| r[3] == "0"), "{rows:?}");
        // Without the gap (the same rows, window 30 renamed 10), e3 is flagged.
        let shifted = input
            .replace("\n300,", "\n100,")
            .replace("\n310,", "\n110,");
        let rows = replay_files(&shifted, None).unwrap();
        assert_eq!(flagged_at(&rows, 100), ["e3"]);
    }

    #[test]
    fn a_missing_input_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let args = ReplayArgs {
            input: dir.path().join("absent.csv"),
            output: dir.path().join("pred.csv"),
            training: None,
        };
        let err = run(&args).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot open ") && err.contains("absent.csv"),
            "{err}"
        );
    }
}
