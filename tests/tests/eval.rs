//! A short lab evaluation of the detector: a few faults with 3 s windows, each found within
//! 3 windows on the faulty replica by a feature that explains the fault, with no healthy
//! replica flagged. Root only; it takes the lab, so it runs alone. `cargo xtask eval` is the
//! full evaluation.

use std::{path::PathBuf, time::Duration};

use herd_agent::features;
use herd_tests::{
    built_binary,
    eval::{self, Settings},
    require_root,
};

const WINDOW: Duration = Duration::from_secs(3);
const GOAL_WINDOWS: usize = 3;
const FAULTS: &[&str] = &["cpu-hog", "fork-storm", "syscall-errors"];

#[test]
fn faults_are_found_within_three_windows_on_the_right_replica() -> anyhow::Result<()> {
    require_root();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-eval/test");
    let settings = Settings::new(built_binary("herd-agent")?, WINDOW, out)?;
    // The scenarios are timed by what the agent binary says its warm-up is; that is the
    // detector's configuration this test links.
    let warmup = features::detect_config(&features::names()).warmup;
    assert_eq!(usize::try_from(settings.detector.warmup)?, warmup);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut failures = Vec::new();
    for name in FAULTS {
        let case = eval::case(name).expect("a known fault");
        // Each scenario brings its lab up and down; the next one starts clean.
        let o = runtime.block_on(eval::run_fault(case, &settings))?;
        let found = o.windows_to_finding();
        let falses: Vec<&str> = o
            .false_findings()
            .iter()
            .map(|f| f.message.as_str())
            .collect();
        eprintln!(
            "{name}: windows {found:?}, right container {}, top feature {:?}, false {falses:?}",
            o.named_right_container(),
            o.top_feature()
        );
        if !o.meets(GOAL_WINDOWS) || !o.top_feature_expected() {
            failures.push(format!(
                "{name}: found after {found:?} windows (goal {GOAL_WINDOWS}), right container \
                 {}, top feature {:?} (wanted one of {:?}), false findings {falses:?}; \
                 frames in {}",
                o.named_right_container(),
                o.top_feature(),
                case.expected,
                o.dir.display()
            ));
        }
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
