//! `cargo xtask eval --dataset DIR`: replays a dataset's frames (`cargo xtask dataset`)
//! through the agent's own `replay`, with the detector at its defaults, and scores the
//! verdicts against the labels with `herd_detect::evaluate`. Writes
//! target/herd-eval/dataset.md; fails when a goal is missed.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use herd_detect::evaluate::{Goals, Label, Metrics, Point, Timeline, evaluate};

use crate::{
    cmd::{self, step},
    setup,
};

pub fn run(dir: &Path, training: Option<&Path>) -> anyhow::Result<()> {
    setup::run()?;
    let input = dir.join("frames.csv");
    let labels = dir.join("labels.csv");
    for file in [&input, &labels] {
        if !file.is_file() {
            bail!(
                "{} is missing: make a dataset with `cargo xtask dataset --out {}`",
                file.display(),
                dir.display()
            );
        }
    }
    // The dataset's own training frames unless others are named.
    let training: Option<PathBuf> = training
        .map(Path::to_path_buf)
        .or_else(|| Some(dir.join("training.csv")).filter(|t| t.is_file()));
    step("building the agent (release)");
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "herd-agent"]))?;
    let root = cmd::workspace_root();
    let out = root.join("target/herd-eval");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let verdicts = out.join("dataset-verdicts.csv");
    let mut replay = Command::new(root.join("target/release/herd-agent"));
    replay
        .arg("replay")
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&verdicts)
        .env("HERD_LOG", "warn")
        .env("HERD_LOG_TARGET", "stderr");
    if let Some(training) = &training {
        replay.arg("--training").arg(training);
    }
    step("replaying the frames through the detector at its defaults");
    cmd::run(&mut replay)?;

    let (points, timeline) = points(&read(&verdicts)?, &read(&labels)?)?;
    let metrics = evaluate(&points);
    let goals = Goals::default();
    let missed = goals.misses(&metrics);
    let report = render(
        dir,
        training.as_deref(),
        &timeline,
        &metrics,
        &goals,
        &missed,
    );
    println!("{report}");
    let path = out.join("dataset.md");
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    step(&format!("results written to {}", path.display()));
    if !missed.is_empty() {
        bail!("goals not met: {}", missed.join("; "));
    }
    step("every goal met");
    Ok(())
}

/// A CSV file's rows after its header, split at commas (no cell of these files has one).
fn read(path: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect())
}

/// Pairs each verdict (`ts,entity,score,flag`) with its label (`ts,entity,label`); every
/// row must have both. Windows are numbered from the timestamps, gaps included.
fn points(
    verdicts: &[Vec<String>],
    labels: &[Vec<String>],
) -> anyhow::Result<(Vec<Point>, Timeline)> {
    let mut by_key: HashMap<(&str, &str), &str> = HashMap::new();
    for row in labels {
        let [ts, entity, label] = row.as_slice() else {
            bail!(
                "labels.csv: a row of {} cells: {}",
                row.len(),
                row.join(",")
            );
        };
        if by_key.insert((ts, entity), label).is_some() {
            bail!("labels.csv: {entity} at {ts} is labeled twice");
        }
    }
    let mut times = Vec::with_capacity(verdicts.len());
    for row in verdicts {
        let ts: f64 = row
            .first()
            .and_then(|ts| ts.parse().ok())
            .with_context(|| format!("a verdict without a time: {}", row.join(",")))?;
        times.push(ts);
    }
    let timeline = Timeline::of(&times).context("the replay scored no window")?;
    let mut points = Vec::with_capacity(verdicts.len());
    for (row, &ts) in verdicts.iter().zip(&times) {
        let [ts_cell, entity, _score, flag] = row.as_slice() else {
            bail!("a verdict row of {} cells: {}", row.len(), row.join(","));
        };
        let label = by_key
            .remove(&(ts_cell.as_str(), entity.as_str()))
            .with_context(|| format!("{entity} at {ts_cell} has no label"))?;
        points.push(Point {
            window: timeline.index(ts),
            entity: entity.clone(),
            label: Label::parse(label),
            flagged: flag == "1",
        });
    }
    if let Some(((ts, entity), _)) = by_key.into_iter().next() {
        bail!("{entity} at {ts} is labeled but was not in the replay's output");
    }
    Ok((points, timeline))
}

fn render(
    dir: &Path,
    training: Option<&Path>,
    timeline: &Timeline,
    metrics: &Metrics,
    goals: &Goals,
    missed: &[String],
) -> String {
    let mut md = String::from("# Herd detector on a lab dataset\n\n");
    let _ = writeln!(
        md,
        "- dataset {}; training frames {}\n- windows of {} s, {} windows from the first to \
         the last, {} container-windows scored\n- detector at the agent's defaults, replayed \
         with `herd-agent replay`\n- goals: false-positive rate ≤ {:.0} %, event recall ≥ {}, \
         median delay ≤ {} windows\n",
        dir.display(),
        training.map_or_else(|| "none".to_owned(), |t| t.display().to_string()),
        timeline.window,
        timeline.windows,
        metrics.points,
        goals.max_false_positive_rate * 100.0,
        goals.min_event_recall,
        goals.max_median_delay,
    );
    md.push_str(&metrics.table());
    md.push_str("\n| fault | container | windows | delay (windows) |\n|---|---|---|---|\n");
    for event in &metrics.per_event {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            event.id,
            &event.entity[..event.entity.len().min(12)],
            event.windows,
            event
                .delay
                .map_or_else(|| "missed".to_owned(), |d| d.to_string())
        );
    }
    md.push('\n');
    if missed.is_empty() {
        md.push_str("Every goal met.\n");
    } else {
        let _ = writeln!(md, "Goals missed: {}.", missed.join("; "));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn verdicts_meet_their_labels_and_windows_count_across_gaps() {
        let verdicts = rows(
            "3.0,a,0.1,0\n3.0,b,0.2,0\n6.0,a,9.0,1\n6.0,b,0.1,0\n9.0,a,9.0,1\n9.0,b,0.1,1\n\
             21.0,a,9.0,1",
        );
        let labels = rows(
            "3.0,a,normal\n3.0,b,normal\n6.0,a,f1\n6.0,b,normal\n9.0,a,f1\n9.0,b,normal\n\
             21.0,a,aftermath",
        );
        let (points, timeline) = points(&verdicts, &labels).unwrap();
        assert_eq!((timeline.window, timeline.windows), (3.0, 7));
        assert_eq!(
            points.iter().map(|p| p.window).collect::<Vec<_>>(),
            [0, 0, 1, 1, 2, 2, 6]
        );
        let m = evaluate(&points);
        assert_eq!(
            (m.true_positives, m.false_positives, m.normal_points),
            (2, 1, 4)
        );
        assert_eq!(m.delays, [1]);
    }

    #[test]
    fn a_row_without_its_label_or_a_label_without_its_row_is_an_error() {
        let verdicts = rows("3.0,a,0.1,0\n6.0,a,0.1,0");
        let err = points(&verdicts, &rows("3.0,a,normal")).unwrap_err();
        assert_eq!(err.to_string(), "a at 6.0 has no label");
        let err = points(&verdicts, &rows("3.0,a,normal\n6.0,a,normal\n9.0,a,normal")).unwrap_err();
        assert!(
            err.to_string().contains("was not in the replay's output"),
            "{err}"
        );
    }
}
