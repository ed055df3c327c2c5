//! `cargo xtask eval`: the detector against every fault the lab injects and against a long
//! healthy run, one lab per scenario. Prints a table and writes it, with the settings, to
//! target/herd-eval/results.md; fails when a goal is missed. With `--dataset`, the detector
//! is scored offline on a recorded dataset instead (`crate::eval_dataset`); with
//! `--synthetic`, on seeded synthetic fleets (`crate::eval_synthetic`).

use std::{
    fmt::Write as _,
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use herd_tests::eval::{self, CASES, Case, FaultOutcome, HealthyOutcome, Settings};

use crate::{
    cmd::{self, step},
    setup,
};

/// Windows within which a fault must be found.
const GOAL_WINDOWS: usize = 3;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Faults to run, comma-separated (default: all): cpu-hog, memory-leak, io-storm,
    /// fork-storm, syscall-errors, socket-flood, cpu-throttle.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Detection window, in seconds ("10s" or "10").
    #[arg(long, default_value = "10s", value_parser = parse_secs)]
    window: Duration,
    /// Length of the healthy run, in minutes.
    #[arg(long, default_value_t = 10)]
    healthy_minutes: u64,
    /// Run the faults only.
    #[arg(long)]
    skip_healthy: bool,
    /// Score the detector on this dataset (`cargo xtask dataset`) instead of running labs:
    /// its frames replayed offline, its labels, the evaluation's goals.
    #[arg(long, conflicts_with_all = ["faults", "healthy_minutes", "skip_healthy"])]
    dataset: Option<PathBuf>,
    /// Frames that warm the detector up before the dataset's; they must end before its
    /// frames start. Default: the dataset's training.csv.
    #[arg(long, requires = "dataset")]
    training: Option<PathBuf>,
    /// Score the detector on this many seeded synthetic fleets (`herd_detect::synthetic`)
    /// instead: in memory, in seconds, no root.
    #[arg(long, value_name = "SEEDS", conflicts_with_all = ["faults", "healthy_minutes", "skip_healthy", "dataset"])]
    synthetic: Option<u64>,
}

pub(crate) fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: u64 = text
        .strip_suffix('s')
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds, like 10s"))?;
    if secs == 0 {
        return Err("the window must be at least 1s".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.dataset {
        return crate::eval_dataset::run(dir, args.training.as_deref());
    }
    if let Some(seeds) = args.synthetic {
        return crate::eval_synthetic::run(seeds);
    }
    setup::run()?;
    if !cmd::is_root() {
        bail!("the evaluation runs a lab and loads eBPF programs: run it as root");
    }
    let cases = chosen(&args.faults)?;
    step("building the agent (release)");
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "herd-agent"]))?;
    let root = cmd::workspace_root();
    let out = root.join("target/herd-eval");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let settings = Settings::new(
        root.join("target/release/herd-agent"),
        args.window,
        out.clone(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;

    let began = Instant::now();
    let mut faults = Vec::new();
    for case in cases {
        step(&format!("fault {}", case.name));
        let outcome = runtime
            .block_on(eval::run_fault(case, &settings))
            .map_err(|err| format!("{err:#}"));
        match &outcome {
            Ok(outcome) => eprintln!("    {}", fault_row(outcome)),
            Err(err) => eprintln!("    failed: {err}"),
        }
        faults.push((case, outcome));
    }
    let healthy = (!args.skip_healthy).then(|| {
        step(&format!(
            "healthy run, {} minutes, with a rolling restart",
            args.healthy_minutes
        ));
        runtime
            .block_on(eval::run_healthy(
                &settings,
                Duration::from_secs(args.healthy_minutes * 60),
            ))
            .map_err(|err| format!("{err:#}"))
    });

    let report = render(&settings, &faults, healthy.as_ref(), began.elapsed());
    println!("{report}");
    let path = out.join("results.md");
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    step(&format!("results written to {}", path.display()));

    let missed = misses(&faults, healthy.as_ref());
    if !missed.is_empty() {
        bail!("goals not met: {}", missed.join("; "));
    }
    step("every fault found in time on the right container by the right feature, no false finding");
    Ok(())
}

/// The cases named on the command line, in the evaluation's order; all when none is.
fn chosen(names: &[String]) -> anyhow::Result<Vec<Case>> {
    if let Some(unknown) = names.iter().find(|n| eval::case(n).is_none()) {
        let known: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        bail!("unknown fault {unknown:?}; known: {}", known.join(", "));
    }
    Ok(CASES
        .iter()
        .copied()
        .filter(|c| names.is_empty() || names.iter().any(|n| n == c.name))
        .collect())
}

type Outcome<T> = Result<T, String>;

fn render(
    settings: &Settings,
    faults: &[(Case, Outcome<FaultOutcome>)],
    healthy: Option<&Outcome<HealthyOutcome>>,
    took: Duration,
) -> String {
    let mut md = String::from("# Herd detector evaluation in the lab\n\n## Settings\n\n");
    let window = settings.window.as_secs();
    let lines = [
        format!(
            "- window {window} s, discovery every {} s; detector at the agent's defaults \
             (warm-up {} windows, opens on {} of the last {} windows over z {})",
            settings.discovery_interval.as_secs(),
            settings.detector.warmup,
            settings.detector.open_m,
            settings.detector.open_n,
            settings.detector.threshold
        ),
        format!(
            "- faults: a Deployment of {} replicas, each running `{}`; the fault goes into \
             replica {} {} s after it starts and lasts {} s ({} windows)",
            settings.replicas,
            settings.steady_load(),
            eval::FAULTY_REPLICA,
            settings.fault_after().as_secs(),
            settings.fault_duration().as_secs(),
            settings.fault_windows
        ),
        format!(
            "- goal: found within {GOAL_WINDOWS} windows on the right container, no finding on a healthy replica"
        ),
        format!("- took {} min", took.as_secs().div_ceil(60)),
    ];
    for line in lines {
        md.push_str(&line);
        md.push('\n');
    }

    md.push_str(
        "\n## Faults\n\n| fault | limits | detected | windows to finding | right container \
         | top feature | expected top feature | false findings |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (case, outcome) in faults {
        let limits = format!(
            "{}m CPU, {} MiB, {} pids",
            case.cpu_millis, case.memory_mib, case.pids_max
        );
        match outcome {
            Ok(o) => {
                let _ = writeln!(
                    md,
                    "| {} | {limits} | {} | {} | {} | {} | {} | {} |",
                    case.name,
                    yes_no(o.detected()),
                    o.windows_to_finding()
                        .map_or_else(|| "-".to_owned(), |w| w.to_string()),
                    yes_no(o.named_right_container()),
                    o.top_feature().unwrap_or_else(|| "-".to_owned()),
                    case.expected.join(", "),
                    o.false_findings().len()
                );
            }
            Err(err) => {
                let _ = writeln!(
                    md,
                    "| {} | {limits} | error: {} | | | | | |",
                    case.name,
                    err.replace('|', "/")
                );
            }
        }
    }

    if let Some(healthy) = healthy {
        md.push_str("\n## Healthy run\n\n");
        match healthy {
            Ok(h) => {
                let _ = writeln!(
                    md,
                    "| duration | windows | workloads | rolling restart | false findings |\n\
                     |---|---|---|---|---|\n| {} min | {} | {} | {} (every replica, one by \
                     one, half-way) | {} |",
                    h.duration.as_secs() / 60,
                    h.frames.windows.len(),
                    h.workloads.join("; "),
                    h.restarted,
                    h.false_findings().len()
                );
            }
            Err(err) => {
                let _ = writeln!(md, "failed: {err}");
            }
        }
    }

    md.push_str("\n## Findings\n\n");
    for (case, outcome) in faults {
        let Ok(o) = outcome else { continue };
        let _ = writeln!(
            md,
            "### {}\n\nfaulty container {}, {} windows scored before the fault; frames and \
             agent log in {}\n",
            case.name,
            short(&o.target),
            o.windows_before_fault,
            o.dir.display()
        );
        list_findings(&mut md, o.findings.iter());
    }
    if let Some(Ok(h)) = healthy {
        let _ = writeln!(
            md,
            "### healthy\n\nframes and agent log in {}\n",
            h.dir.display()
        );
        list_findings(&mut md, h.findings.iter());
    }
    md
}

fn list_findings<'a>(md: &mut String, findings: impl Iterator<Item = &'a eval::FindingEvent>) {
    let mut any = false;
    for finding in findings.filter(|f| f.opened) {
        any = true;
        let _ = writeln!(md, "- {}", finding.message);
    }
    if !any {
        md.push_str("- none\n");
    }
    md.push('\n');
}

/// One line per fault while the evaluation runs.
fn fault_row(o: &FaultOutcome) -> String {
    format!(
        "detected {}, windows {}, right container {}, top feature {}, false findings {}",
        yes_no(o.detected()),
        o.windows_to_finding()
            .map_or_else(|| "-".to_owned(), |w| w.to_string()),
        yes_no(o.named_right_container()),
        o.top_feature().unwrap_or_else(|| "-".to_owned()),
        o.false_findings().len()
    )
}

fn misses(
    faults: &[(Case, Outcome<FaultOutcome>)],
    healthy: Option<&Outcome<HealthyOutcome>>,
) -> Vec<String> {
    let mut missed = Vec::new();
    for (case, outcome) in faults {
        match outcome {
            Ok(o) if !o.meets(GOAL_WINDOWS) => {
                missed.push(format!("{} (see the table)", case.name))
            }
            Ok(o) if !o.top_feature_expected() => missed.push(format!(
                "{}: top feature {}, not one of {}",
                case.name,
                o.top_feature().unwrap_or_default(),
                case.expected.join(", ")
            )),
            Ok(_) => {}
            Err(err) => missed.push(format!("{}: {err}", case.name)),
        }
    }
    match healthy {
        Some(Ok(h)) if !h.false_findings().is_empty() => missed.push(format!(
            "{} false findings in the healthy run",
            h.false_findings().len()
        )),
        Some(Err(err)) => missed.push(format!("healthy run: {err}")),
        _ => {}
    }
    missed
}

fn yes_no(yes: bool) -> &'static str {
    if yes { "yes" } else { "no" }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_or_without_a_unit() {
        assert_eq!(parse_secs("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert!(parse_secs("0s").is_err());
        assert!(parse_secs("3m").is_err());
    }

    #[test]
    fn faults_run_in_the_evaluation_order_and_unknown_ones_are_refused() {
        let names = ["fork-storm".to_owned(), "cpu-hog".to_owned()];
        let picked: Vec<&str> = chosen(&names).unwrap().iter().map(|c| c.name).collect();
        assert_eq!(picked, ["cpu-hog", "fork-storm"]);
        assert_eq!(chosen(&[]).unwrap().len(), CASES.len());
        assert!(chosen(&["disk-full".to_owned()]).is_err());
    }
}
