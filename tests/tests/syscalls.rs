//! The syscall counter against real cgroups: a process that makes a known number of
//! successful and failing syscalls is charged to its own cgroup and to no other.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::Context as _;
use herd_agent::{
    collect::{
        ebpf::{EbpfConfig, EbpfPrograms, Signal},
        signals::SignalSampler,
    },
    discovery::cgroup2::CgroupIndex,
    host::{self, HostPaths},
};
use herd_tests::{cgroup::OwnedCgroup, load::CountedLoad, require_root};

const CALLS: u64 = 200_000;
const FAILURES: u64 = 30_000;
/// The cued process also returns from its `read` and runs its exit path before
/// `exit_group` (which never returns, so is never counted).
const STARTUP_SLACK: u64 = 40;

fn mount() -> anyhow::Result<PathBuf> {
    Ok(host::cgroup2_mount(&HostPaths::default().proc)?)
}

fn sampler() -> anyhow::Result<(EbpfPrograms, SignalSampler)> {
    let config = EbpfConfig {
        signals: vec![Signal::Syscalls],
        network_cgroup: None,
    };
    let mut programs = EbpfPrograms::load_with(&config)?;
    let maps = programs.take_signal_maps()?;
    Ok((
        programs,
        SignalSampler::new(maps, CgroupIndex::new(mount()?)),
    ))
}

#[test]
fn a_cgroup_is_charged_with_exactly_its_own_calls_and_failures() -> anyhow::Result<()> {
    require_root();
    let busy = OwnedCgroup::new(&mount()?, "busy")?;
    let idle = OwnedCgroup::new(&mount()?, "idle")?;
    let (_programs, mut sampler) = sampler()?;

    let load = CountedLoad::spawn(CALLS, FAILURES)?;
    let sleeper = CountedLoad::spawn(0, 0)?;
    herd_tests::load::wait_until_blocked_in_read(load.pid())?;
    herd_tests::load::wait_until_blocked_in_read(sleeper.pid())?;
    busy.add(load.pid())?;
    idle.add(sleeper.pid())?;
    sampler.sample()?;

    load.cue_and_wait()?;
    let sample = sampler.sample()?.syscall_sample();

    let row = sample
        .cgroups
        .iter()
        .find(|row| row.cgroup_id == busy.id().unwrap_or_default())
        .with_context(|| format!("no syscalls reported for {}", busy.path().display()))?;
    assert_eq!(row.path, busy.relative());
    let expected = CALLS + FAILURES;
    assert!(
        (expected..=expected + STARTUP_SLACK).contains(&row.calls),
        "{} calls reported, {expected} made",
        row.calls
    );
    assert!(
        (FAILURES..=FAILURES + 2).contains(&row.failed),
        "{} failures reported, {FAILURES} made",
        row.failed
    );
    let idle_id = idle.id()?;
    let charged = sample.cgroups.iter().find(|row| row.cgroup_id == idle_id);
    assert!(
        charged.is_none(),
        "the idle sibling was charged: {charged:?}"
    );
    drop(sleeper);
    Ok(())
}

#[test]
fn a_removed_cgroup_is_dropped_from_the_counters() -> anyhow::Result<()> {
    require_root();
    let (_programs, mut sampler) = sampler()?;
    let cgroup = OwnedCgroup::new(&mount()?, "removed")?;
    let id = cgroup.id()?;
    let load = CountedLoad::spawn(1_000, 0)?;
    herd_tests::load::wait_until_blocked_in_read(load.pid())?;
    cgroup.add(load.pid())?;
    load.cue_and_wait()?;

    assert!(sampler.sample()?.cgroup(id).is_some());
    assert!(sampler.tracks(id));
    drop(cgroup);
    let sample = sampler.sample()?;
    assert!(sample.cgroup(id).is_none());
    assert!(!sampler.tracks(id), "state kept for a removed cgroup");
    Ok(())
}

#[test]
fn the_agent_table_puts_a_busy_cgroup_first() -> anyhow::Result<()> {
    require_root();
    let cgroup = OwnedCgroup::new(&mount()?, "table")?;
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} timed --seconds 4 --fail-every 4",
        cgroup.path().display(),
        herd_tests::load::binary()?.display()
    );
    let mut load = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()?;
    let agent = Command::new(herd_tests::built_binary("herd-agent")?)
        .args(["--interval", "1s", "--duration", "3500ms", "--top", "3"])
        .env("HERD_LOG_FORMAT", "json")
        .output()?;
    load.wait()?;
    let log = String::from_utf8_lossy(&agent.stderr);
    assert!(agent.status.success(), "agent failed:\n{log}");

    // Each table is a header line, a column line, then rows; the first row of every table
    // after the first full interval must be the busy cgroup.
    let wanted = cgroup.relative().display().to_string();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("\"target\":\"herd::table\""))
        .collect();
    let first_rows: Vec<&&str> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains("calls/s"))
        .filter_map(|(i, _)| lines.get(i + 1))
        .collect();
    assert!(first_rows.len() >= 2, "too few tables in:\n{log}");
    for row in &first_rows[1..] {
        assert!(
            row.contains(&format!("  {wanted}\"")),
            "not first: {row}\n{log}"
        );
    }
    Ok(())
}
