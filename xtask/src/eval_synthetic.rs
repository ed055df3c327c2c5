//! `cargo xtask eval --synthetic N`: the detector at its defaults (with seasons of the
//! fleet's compressed day) on the default seeded synthetic fleet of `herd_detect::synthetic`
//! under seeds 1 to N, in memory, in seconds (no root, no lab). Prints each seed's numbers
//! and all seeds' together, writes them to target/herd-eval/synthetic.md, and fails when the
//! seeds together miss a goal.

use std::{fmt::Write as _, fs};

use anyhow::{Context as _, bail};
use herd_detect::{
    Detector,
    evaluate::{Goals, evaluate},
    synthetic::{FleetSpec, generate},
};

use crate::cmd::{self, step};

pub fn run(seeds: u64) -> anyhow::Result<()> {
    if seeds == 0 {
        bail!("--synthetic takes the number of seeds, at least 1");
    }
    step(&format!("the detector on {seeds} synthetic fleets"));
    let mut out = String::new();
    writeln!(out, "# The detector on synthetic fleets\n")?;
    writeln!(
        out,
        "`cargo xtask eval --synthetic {seeds}`: the default fleet of `herd_detect::synthetic` \
         under seeds 1 to {seeds}, the detector at its defaults with seasons of the fleet's \
         compressed day.\n"
    )?;
    writeln!(
        out,
        "| seed | faults found | false-positive rate | median delay | delays (windows) |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---|")?;
    let (mut events, mut found, mut normal, mut false_positives) = (0, 0, 0, 0);
    let mut delays = Vec::new();
    for seed in 1..=seeds {
        let spec = FleetSpec {
            seed,
            ..FleetSpec::default()
        };
        let data = generate(&spec);
        let mut detector = Detector::new(spec.detect_config(), data.features.clone())?;
        let m = evaluate(&data.points(&mut detector)?);
        events += m.events;
        found += m.events_detected;
        normal += m.normal_points;
        false_positives += m.false_positives;
        delays.extend_from_slice(&m.delays);
        let each: Vec<String> = m.delays.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "| {seed} | {} of {} | {:.2} % ({} of {}) | {} | {} |",
            m.events_detected,
            m.events,
            100.0 * m.false_positives as f64 / m.normal_points.max(1) as f64,
            m.false_positives,
            m.normal_points,
            m.median_delay.map_or("—".to_owned(), |d| format!("{d}")),
            each.join(", "),
        )?;
    }
    delays.sort_unstable();
    let median = match delays.len() {
        0 => None,
        n if n % 2 == 1 => Some(delays[n / 2] as f64),
        n => Some((delays[n / 2 - 1] + delays[n / 2]) as f64 / 2.0),
    };
    let recall = found as f64 / events.max(1) as f64;
    let rate = false_positives as f64 / normal.max(1) as f64;
    writeln!(
        out,
        "| all | {found} of {events} ({recall:.3}) | {:.2} % ({false_positives} of {normal}) | {} | |",
        100.0 * rate,
        median.map_or("—".to_owned(), |d| format!("{d}")),
    )?;
    let goals = Goals::default();
    let mut missed = Vec::new();
    if recall < goals.min_event_recall {
        missed.push(format!(
            "event recall {recall:.3} is under {}",
            goals.min_event_recall
        ));
    }
    if rate > goals.max_false_positive_rate {
        missed.push(format!(
            "false-positive rate {:.2} % is over {} %",
            100.0 * rate,
            100.0 * goals.max_false_positive_rate
        ));
    }
    if median.is_none_or(|d| d > goals.max_median_delay) {
        missed.push(format!(
            "median delay {median:?} is over {} windows",
            goals.max_median_delay
        ));
    }
    print!("{out}");
    let dir = cmd::workspace_root().join("target/herd-eval");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("synthetic.md");
    fs::write(&file, &out).with_context(|| format!("writing {}", file.display()))?;
    eprintln!("written to {}", file.display());
    if !missed.is_empty() {
        bail!("goals missed: {}", missed.join("; "));
    }
    Ok(())
}
