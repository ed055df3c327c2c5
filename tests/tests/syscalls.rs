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
use herd_tests::{cgroup::OwnedCgroup, require_root, syscall_load::CountedLoad};

const CALLS: u64 = 200_000;
const FAILURES: u64 = 30_000;
/// The cued process also returns from its `read` and runs its exit path before
/// `exit_group` (which never returns, so is never counted).
const STARTUP_SLACK: u64 = 40;

fn mount() -> anyhow::Result<PathBuf> {
    Ok(host::cgroup2_mount(&HostPaths::default().proc)?)
}

/// The syscall programs, a sampler over their map and an index of the cgroup2 hierarchy.
fn sampler() -> anyhow::Result<(EbpfPrograms, SignalSampler, CgroupIndex)> {
    let config = EbpfConfig {
        signals: vec![Signal::Syscalls],
        network_cgroup: None,
        missing_tracepoints: Vec::new(),
    };
    let mut programs = EbpfPrograms::load_with(&config)?;
    let maps = programs.take_signal_maps()?;
    Ok((
        programs,
        SignalSampler::new(maps),
        CgroupIndex::new(mount()?),
    ))
}

#[test]
fn a_cgroup_is_charged_with_exactly_its_own_calls_and_failures() -> anyhow::Result<()> {
    require_root();
    let busy = OwnedCgroup::new(&mount()?, "busy")?;
    let idle = OwnedCgroup::new(&mount()?, "idle")?;
    let (_programs, mut sampler, mut index) = sampler()?;

    let load = CountedLoad::spawn(CALLS, FAILURES)?;
    let sleeper = CountedLoad::spawn(0, 0)?;
    herd_tests::syscall_load::wait_until_blocked_in_read(load.pid())?;
    herd_tests::syscall_load::wait_until_blocked_in_read(sleeper.pid())?;
    busy.add(load.pid())?;
    idle.add(sleeper.pid())?;
    sampler.sample(&mut index)?;

    load.cue_and_wait()?;
    let sample = sampler.sample(&mut index)?.syscall_sample();

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

/// Pins a process to one CPU.
fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid as libc::pid_t, size_of::<libc::cpu_set_t>(), &set)
    };
    anyhow::ensure!(
        rc == 0,
        "pinning {pid}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The counter keeps each cgroup in a slot chosen by its id; a second cgroup whose slot is
/// taken on a CPU counts in the hash instead. Both must be charged exactly.
#[test]
fn two_cgroups_that_share_a_slot_are_both_charged_exactly() -> anyhow::Result<()> {
    require_root();
    use herd_agent_common::{SYSCALL_SLOTS_PER_CPU, syscall_slot};
    let first = OwnedCgroup::new(&mount()?, "slot-first")?;
    // Make (and remove) cgroups until one lands on the first one's slot: about one in
    // SYSCALL_SLOTS_PER_CPU does.
    let mut second = None;
    for attempt in 0..16 * SYSCALL_SLOTS_PER_CPU {
        let candidate = OwnedCgroup::new(&mount()?, &format!("slot-second-{attempt}"))?;
        if syscall_slot(candidate.id()?) == syscall_slot(first.id()?) {
            second = Some(candidate);
            break;
        }
    }
    let second = second.context("no cgroup landed on the first one's slot")?;
    let (_programs, mut sampler, mut index) = sampler()?;

    // Both run on CPU 0, the first one first, so that it holds the slot there.
    let mut expected = Vec::new();
    for (cgroup, calls, failures) in [(&first, CALLS, 0), (&second, CALLS / 2, FAILURES)] {
        let load = CountedLoad::spawn(calls, failures)?;
        herd_tests::syscall_load::wait_until_blocked_in_read(load.pid())?;
        pin(load.pid(), 0)?;
        cgroup.add(load.pid())?;
        load.cue_and_wait()?;
        expected.push((cgroup.id()?, calls + failures, failures));
    }
    let sample = sampler.sample(&mut index)?.syscall_sample();
    for (id, calls, failures) in expected {
        let row = sample
            .cgroups
            .iter()
            .find(|row| row.cgroup_id == id)
            .with_context(|| format!("no syscalls reported for cgroup {id}"))?;
        assert!(
            (calls..=calls + STARTUP_SLACK).contains(&row.calls),
            "cgroup {id}: {} calls reported, {calls} made",
            row.calls
        );
        assert!(
            (failures..=failures + 2).contains(&row.failed),
            "cgroup {id}: {} failures reported, {failures} made",
            row.failed
        );
    }
    Ok(())
}

#[test]
fn a_removed_cgroup_is_dropped_from_the_counters() -> anyhow::Result<()> {
    require_root();
    let (_programs, mut sampler, mut index) = sampler()?;
    let cgroup = OwnedCgroup::new(&mount()?, "removed")?;
    let id = cgroup.id()?;
    let load = CountedLoad::spawn(1_000, 0)?;
    herd_tests::syscall_load::wait_until_blocked_in_read(load.pid())?;
    cgroup.add(load.pid())?;
    load.cue_and_wait()?;

    assert!(sampler.sample(&mut index)?.cgroup(id).is_some());
    assert!(sampler.tracks(id));
    drop(cgroup);
    let sample = sampler.sample(&mut index)?;
    assert!(sample.cgroup(id).is_none());
    assert!(!sampler.tracks(id), "state kept for a removed cgroup");
    Ok(())
}

#[test]
fn the_agent_table_puts_a_busy_cgroup_first() -> anyhow::Result<()> {
    require_root();
    // Found before the load starts: a load left running on an early return would keep the
    // cgroup from being removed.
    let agent = herd_tests::built_binary("herd-agent")?;
    let cgroup = OwnedCgroup::new(&mount()?, "table")?;
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} timed --seconds 4 --fail-every 4",
        cgroup.path().display(),
        herd_tests::syscall_load::binary()?.display()
    );
    let mut load = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()?;
    let agent = Command::new(agent)
        .args(["--interval", "1s", "--duration", "3500ms", "--top", "3"])
        // No API: this test reads the log.
        .args(["--socket", ""])
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
