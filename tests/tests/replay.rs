//! Replay round trip: a lab run recorded live (`herd-agent --record`), scored again offline
//! (`herd-agent replay`), gives the same findings: the same containers, from the same window.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use herd_tests::{
    built_binary,
    eval::{self, Settings},
    require_root,
};

#[test]
fn a_recorded_lab_run_replayed_gives_the_live_findings() -> anyhow::Result<()> {
    require_root();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-eval/replay");
    let agent = built_binary("herd-agent")?;
    let settings = Settings::new(agent.clone(), Duration::from_secs(3), out)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let case = eval::case("cpu-hog").context("the cpu-hog case")?;
    let live = runtime.block_on(eval::run_fault(case, &settings))?;
    let opened: Vec<_> = live.findings.iter().filter(|f| f.opened).collect();
    anyhow::ensure!(!opened.is_empty(), "the live run found nothing to compare");

    let frames = live.dir.join("frames.csv");
    let scores = live.dir.join("replayed.csv");
    let status = Command::new(&agent)
        .args(["replay", "--input"])
        .arg(&frames)
        .arg("--output")
        .arg(&scores)
        .status()?;
    anyhow::ensure!(status.success(), "replay failed: {status}");

    // The window at which each entity was first flagged offline.
    let mut first_flag: BTreeMap<String, f64> = BTreeMap::new();
    for line in fs::read_to_string(&scores)?.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let [ts, entity, _score, flag] = cells[..] else {
            anyhow::bail!("a malformed score row: {line}");
        };
        if flag == "1" {
            first_flag.entry(entity.to_owned()).or_insert(ts.parse()?);
        }
    }
    let live_entities: BTreeSet<&str> = opened.iter().map(|f| f.entity.as_str()).collect();
    let replayed_entities: BTreeSet<&str> = first_flag.keys().map(String::as_str).collect();
    assert_eq!(
        replayed_entities, live_entities,
        "flagged containers differ"
    );

    // Live, a finding is logged right after the window it opened in is scored; compare each
    // container's first.
    let mut seen = BTreeSet::new();
    for finding in opened.into_iter().filter(|f| seen.insert(f.entity.clone())) {
        let flagged_at = UNIX_EPOCH + Duration::from_secs_f64(first_flag[&finding.entity]);
        let lag = finding
            .at
            .duration_since(flagged_at)
            .unwrap_or_else(|err| err.duration());
        assert!(
            lag < Duration::from_secs(2),
            "{}: live at {:?}, replayed at {flagged_at:?}",
            finding.entity,
            finding.at.duration_since(SystemTime::UNIX_EPOCH)?
        );
    }
    Ok(())
}
