//! A labeled dataset from the lab: uneven workloads run for a long while, faults go into
//! chosen replicas at known times, and the agent records every window's features. What
//! comes out is what `cargo xtask eval --dataset` scores the detector on:
//! - `training.csv`: the first minutes' frames, before any fault, to warm the detector up;
//! - `frames.csv`: the rest of the frames (`ts,node,domain,entity,<feature…>`);
//! - `labels.csv`: `ts,entity,label` for every row of `frames.csv`, the label `normal`, a
//!   fault's id, or `aftermath` (the few windows after a fault on its container);
//! - `faults.csv`: `fault,entity,start,end` (container id, Unix seconds);
//! - `containers.csv`: which pod and workload each container id was;
//! - `agent.log` and `dataset.md`, what ran and when.
//!
//! The unevenness is the lab's [`Load`]: a leader and followers (`db`), a 70/30 load skew
//! and a pod with a sparse error counter (`web`), a canary and a rolling restart (`api`),
//! batch bursts (`batch`), a CPU limit that a CPU hog runs into (`cache`), and a daily ramp
//! compressed into minutes under all of them.

use std::{
    fmt::Write as _,
    fs,
    io::{BufReader, BufWriter, Write as _},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use herd_detect::frames::{FrameCsvWriter, FrameReader};

use crate::eval::{self, Agent, Settings};
use crate::lab::{Fault, FaultKind, LabSpec, Load, Workload};

const NAMESPACE: &str = "dataset";
/// Windows after a fault's end labeled `aftermath` on its container.
pub const AFTERMATH_WINDOWS: u32 = 5;
/// The compressed day: every load ramps up and down over it.
const RAMP_PERIOD_SECS: u64 = 360;
const RAMP_DEPTH_PERCENT: u32 = 50;

/// How a dataset is made.
#[derive(Clone, Debug)]
pub struct DatasetSettings {
    /// The agent binary.
    pub agent: PathBuf,
    pub window: Duration,
    /// Length of the recording.
    pub minutes: u64,
    /// Where the files go; emptied first.
    pub out: PathBuf,
}

/// One fault of the plan.
#[derive(Clone, Debug)]
pub struct PlannedFault {
    pub id: String,
    /// Index into the workloads.
    pub workload: usize,
    pub replica: u32,
    pub kind: FaultKind,
    /// Seconds after the container's start.
    pub after_secs: u64,
    pub secs: u64,
}

/// The workloads and faults of a dataset of `minutes`; the faults start once a quarter of
/// the run (at most three minutes, the training frames) has gone by, spread evenly over the
/// rest but its last minute.
pub fn plan(minutes: u64) -> (Vec<Workload>, Vec<PlannedFault>) {
    let load = |cpu: u32| Load::new(cpu).ramp(RAMP_PERIOD_SECS, RAMP_DEPTH_PERCENT);
    let base = |w: Workload| w.namespace(NAMESPACE).memory_mib(128).pids_max(64);
    let workloads = vec![
        base(Workload::stateful_set("db"))
            .replicas(3)
            .cpu_millis(1000)
            .load(load(3).weights(&[250, 100, 100])),
        base(Workload::deployment("web"))
            .replicas(4)
            .cpu_millis(1000)
            .load(load(3).weights(&[140, 140, 60, 60]).sparse_errors(3, 90)),
        base(Workload::deployment("api"))
            .replicas(4)
            .cpu_millis(1000)
            .load(load(3).canary(3)),
        base(Workload::deployment("batch"))
            .replicas(3)
            .cpu_millis(1000)
            .load(load(2).bursts(120, 15, 25)),
        base(Workload::deployment("cache"))
            .replicas(3)
            .cpu_millis(200)
            .load(load(3)),
    ];
    // (name, workload, replica, kind): never the leader, the canary or the sparse counter,
    // and never `api`, whose pods the rolling restart replaces.
    let faults = [
        ("cpu-hog", 1, 1, FaultKind::CpuHog),
        ("memory-leak", 0, 2, FaultKind::MemoryLeak),
        ("io-storm", 3, 1, FaultKind::IoStorm),
        ("fork-storm", 1, 2, FaultKind::ForkStorm),
        ("syscall-errors", 0, 1, FaultKind::SyscallErrors),
        ("socket-flood", 4, 1, FaultKind::SocketFlood),
        ("cpu-throttle", 4, 2, FaultKind::CpuHog),
    ];
    let total = minutes * 60;
    let first = training_secs(minutes) + 30;
    let slot = (total.saturating_sub(first + 60) / faults.len() as u64).max(10);
    let secs = (slot * 3 / 5).clamp(6, 45);
    let planned = faults
        .iter()
        .enumerate()
        .map(|(i, &(name, workload, replica, kind))| PlannedFault {
            id: format!("f{}-{name}", i + 1),
            workload,
            replica,
            kind,
            after_secs: first + slot * i as u64,
            secs,
        })
        .collect();
    (workloads, planned)
}

/// Seconds of frames kept for training, before the first fault.
fn training_secs(minutes: u64) -> u64 {
    (minutes * 60 / 4).min(180)
}

/// A fault as it ran.
#[derive(Clone, Debug)]
struct RanFault {
    id: String,
    entity: String,
    start: SystemTime,
    end: SystemTime,
}

/// Runs the lab, records, labels. Prints progress on stderr. The caller holds the lab lock.
pub async fn record(settings: &DatasetSettings) -> anyhow::Result<()> {
    eval::fresh_dir(&settings.out)?;
    let (mut workloads, planned) = plan(settings.minutes);
    for fault in &planned {
        let w = &mut workloads[fault.workload];
        *w = w.clone().fault(
            Fault::new(fault.replica, fault.kind)
                .after_secs(fault.after_secs)
                .for_secs(fault.secs),
        );
    }
    let spec = workloads
        .iter()
        .cloned()
        .fold(LabSpec::new(), LabSpec::workload);
    spec.validate()?;
    let eval_settings = Settings::new(
        settings.agent.clone(),
        settings.window,
        settings.out.clone(),
    )?;
    progress(&format!(
        "lab up: {} workloads, {} containers",
        workloads.len(),
        workloads.iter().map(|w| w.replicas).sum::<u32>()
    ));
    let mut lab = eval::lab_up(&spec).await?;
    let run = Duration::from_secs(settings.minutes * 60);
    let agent = Agent::start(&eval_settings, &lab, &settings.out, run)?;
    let began = SystemTime::now();

    let mut containers = Vec::new();
    let pods = lab.pods().await?;
    for (w, workload) in workloads.iter().enumerate() {
        for replica in 0..workload.replicas {
            if let Some(pod) = eval::pod_of(&pods, workload, replica)
                && let Some(c) = pod.containers.first()
            {
                containers.push((c.id.clone(), pod.name.clone(), w, replica));
            }
        }
    }
    let mut ran = Vec::new();
    for fault in &planned {
        let workload = &workloads[fault.workload];
        let target = eval::container_of(&pods, workload, fault.replica)
            .with_context(|| format!("{}: the replica has no container", fault.id))?
            .id
            .clone();
        let start = eval::started_at(&lab, &target).await? + Duration::from_secs(fault.after_secs);
        ran.push(RanFault {
            id: fault.id.clone(),
            entity: target,
            start,
            end: start + Duration::from_secs(fault.secs),
        });
    }

    // The timeline, told as it happens: faults, the rolling restart, the time every minute.
    let restart_at = began + run / 2;
    let mut events: Vec<(SystemTime, String)> = ran
        .iter()
        .flat_map(|f| {
            [
                (
                    f.start,
                    format!("fault {} starts on {}", f.id, short(&f.entity)),
                ),
                (f.end, format!("fault {} ends", f.id)),
            ]
        })
        .collect();
    events.extend((1..settings.minutes).map(|m| {
        (
            began + Duration::from_secs(m * 60),
            format!("{m} of {} minutes recorded", settings.minutes),
        )
    }));
    events.sort_by_key(|e| e.0);
    let mut restarted = false;
    for (at, what) in events {
        if !restarted && at >= restart_at {
            eval::sleep_until(restart_at).await;
            let api = &workloads[2];
            progress(&format!(
                "rolling restart of {}/{}",
                api.namespace, api.name
            ));
            for replica in 0..api.replicas {
                let pods = lab.pods().await?;
                let pod = eval::pod_of(&pods, api, replica)
                    .context("a replica to restart is missing")?
                    .clone();
                lab.remove_pod(&pod).await?;
                let new = lab.add_pod(api, replica).await?;
                if let Some(c) = new.containers.first() {
                    containers.push((c.id.clone(), new.name.clone(), 2, replica));
                }
                // The way a rollout waits for the new pod before the next one.
                tokio::time::sleep(settings.window * 2).await;
            }
            restarted = true;
        }
        eval::sleep_until(at).await;
        progress(&what);
    }
    eval::sleep_until(began + run).await;
    progress("recording done; stopping the agent and the lab");
    let findings = agent.stop()?;
    lab.down().await?;

    // The agent records into frames.csv, which the input frames are written to.
    let recorded = settings.out.join("recorded.csv");
    fs::rename(settings.out.join(eval::FRAMES), &recorded)
        .context("the agent recorded no frames")?;
    let first_fault = ran.iter().map(|f| f.start).min().unwrap_or(began + run);
    let split = (began + Duration::from_secs(training_secs(settings.minutes)))
        .min(first_fault - settings.window * 2);
    let counts = split_and_label(&recorded, &settings.out, split, settings.window, &ran)?;
    write_faults(&settings.out, &ran)?;
    write_containers(&settings.out, &workloads, &containers)?;
    let summary = describe(settings, &workloads, &planned, &ran, counts, findings.len());
    fs::write(settings.out.join("dataset.md"), &summary)?;
    progress(&format!(
        "dataset written to {}: {} training rows, {} labeled rows ({} in faults)",
        settings.out.display(),
        counts.training,
        counts.rows,
        counts.fault_rows
    ));
    Ok(())
}

fn progress(what: &str) {
    eprintln!("    dataset: {what}");
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    training: usize,
    rows: usize,
    fault_rows: usize,
}

/// Splits the agent's recording at `split` into training.csv and frames.csv, and labels
/// every row of frames.csv. A window ending at `ts` covers `(ts − window, ts]`: it is a
/// fault's when that overlaps the fault on the fault's container.
fn split_and_label(
    recorded: &Path,
    out: &Path,
    split: SystemTime,
    window: Duration,
    faults: &[RanFault],
) -> anyhow::Result<Counts> {
    let file = fs::File::open(recorded)
        .with_context(|| format!("the agent recorded no frames at {}", recorded.display()))?;
    // The reader replay uses, so that what is split is what replay and the evaluation accept.
    let mut reader = FrameReader::new(recorded.display().to_string(), BufReader::new(file))?;
    let features = reader.features.clone();
    let create = |name: &str| -> anyhow::Result<FrameCsvWriter<BufWriter<fs::File>>> {
        let path = out.join(name);
        let file =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(FrameCsvWriter::new(BufWriter::new(file), &features)?)
    };
    let mut training = create("training.csv")?;
    let mut frames = create("frames.csv")?;
    let labels_path = out.join("labels.csv");
    let mut labels = BufWriter::new(
        fs::File::create(&labels_path)
            .with_context(|| format!("creating {}", labels_path.display()))?,
    );
    writeln!(labels, "ts,entity,label")?;
    let (split, window) = (unix(split), window.as_secs_f64());
    let mut counts = Counts::default();
    while let Some(frame) = reader.next_window()? {
        for (ts_cell, observation) in frame.ts_cells.iter().zip(&frame.observations) {
            if frame.ts < split {
                training.row(ts_cell, observation)?;
                counts.training += 1;
                continue;
            }
            let entity = &observation.subject.entity;
            let label = label_of(frame.ts, entity, window, faults);
            frames.row(ts_cell, observation)?;
            writeln!(labels, "{ts_cell},{entity},{label}")?;
            counts.rows += 1;
            counts.fault_rows += usize::from(label != "normal" && label != "aftermath");
        }
    }
    training.finish()?.flush()?;
    frames.finish()?.flush()?;
    labels.flush()?;
    // The agent's own file is now in the two others.
    fs::remove_file(recorded)?;
    Ok(counts)
}

fn label_of(ts: f64, entity: &str, window: f64, faults: &[RanFault]) -> String {
    let mut label = "normal".to_owned();
    for fault in faults.iter().filter(|f| f.entity == entity) {
        let (start, end) = (unix(fault.start), unix(fault.end));
        if ts > start && ts - window < end {
            return fault.id.clone();
        }
        if ts >= end && ts < end + window * f64::from(AFTERMATH_WINDOWS) {
            label = "aftermath".to_owned();
        }
    }
    label
}

fn write_faults(out: &Path, faults: &[RanFault]) -> anyhow::Result<()> {
    let mut csv = String::from("fault,entity,start,end\n");
    for f in faults {
        let _ = writeln!(
            csv,
            "{},{},{:.3},{:.3}",
            f.id,
            f.entity,
            unix(f.start),
            unix(f.end)
        );
    }
    Ok(fs::write(out.join("faults.csv"), csv)?)
}

fn write_containers(
    out: &Path,
    workloads: &[Workload],
    containers: &[(String, String, usize, u32)],
) -> anyhow::Result<()> {
    let mut csv = String::from("entity,namespace,pod,workload,replica,role\n");
    for (id, pod, w, replica) in containers {
        let workload = &workloads[*w];
        let load = workload.load.as_ref();
        let role = if load.and_then(|l| l.canary) == Some(*replica) {
            "canary".to_owned()
        } else if load.and_then(|l| l.sparse_errors) == Some(*replica) {
            "sparse-errors".to_owned()
        } else {
            format!("weight {}", load.map_or(100, |l| l.weight_of(*replica)))
        };
        let _ = writeln!(
            csv,
            "{id},{},{pod},{},{replica},{role}",
            workload.namespace, workload.name
        );
    }
    Ok(fs::write(out.join("containers.csv"), csv)?)
}

fn describe(
    settings: &DatasetSettings,
    workloads: &[Workload],
    planned: &[PlannedFault],
    ran: &[RanFault],
    counts: Counts,
    findings: usize,
) -> String {
    let mut md = format!(
        "# Herd lab dataset\n\n- {} minutes, windows of {} s, recorded {}\n- {} training \
         rows, {} labeled rows, {} of them in faults; the agent logged {findings} finding \
         events live\n- a daily ramp of ±{RAMP_DEPTH_PERCENT} % over {RAMP_PERIOD_SECS} s \
         under every load; a rolling restart of `api` half-way\n\n## Workloads\n\n",
        settings.minutes,
        settings.window.as_secs_f64(),
        settings.out.display(),
        counts.training,
        counts.rows,
        counts.fault_rows
    );
    for w in workloads {
        let _ = writeln!(
            md,
            "- {}/{}: {} replicas, {}m CPU{}",
            w.namespace,
            w.name,
            w.replicas,
            w.cpu_millis.unwrap_or(0),
            w.load.as_ref().map(describe_load).unwrap_or_default()
        );
    }
    md.push_str("\n## Faults\n\n| id | workload | replica | container | start | seconds |\n|---|---|---|---|---|---|\n");
    for (p, r) in planned.iter().zip(ran) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {} |",
            p.id,
            workloads[p.workload].name,
            p.replica,
            short(&r.entity),
            unix(r.start),
            p.secs
        );
    }
    md
}

/// A load in words: its mean, the replicas' weights and what else it does.
fn describe_load(load: &Load) -> String {
    let mut words = format!(", {} % of a CPU at weight 100", load.cpu_percent);
    if !load.weights.is_empty() {
        let _ = write!(words, ", weights {:?}", load.weights);
    }
    if load.burst_every_secs > 0 {
        let _ = write!(
            words,
            ", bursts to {} % for {} s every {} s",
            load.burst_cpu_percent, load.burst_secs, load.burst_every_secs
        );
    }
    if let Some(r) = load.canary {
        let _ = write!(words, ", replica {r} a canary");
    }
    if let Some(r) = load.sparse_errors {
        let _ = write!(
            words,
            ", replica {r} with sparse errors about every {} s",
            load.sparse_errors_every_secs
        );
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_puts_every_fault_after_the_training_and_before_the_end() {
        for minutes in [4, 15, 60] {
            let (workloads, faults) = plan(minutes);
            assert_eq!(faults.len(), 7);
            let mut spec = LabSpec::new();
            for w in &workloads {
                spec = spec.workload(w.clone());
            }
            spec.validate().unwrap();
            for f in &faults {
                assert!(f.after_secs > training_secs(minutes), "{minutes}: {f:?}");
                assert!(f.after_secs + f.secs < minutes * 60, "{minutes}: {f:?}");
                let load = workloads[f.workload].load.as_ref().unwrap();
                assert!(load.canary != Some(f.replica) && load.sparse_errors != Some(f.replica));
                assert_ne!(workloads[f.workload].name, "api");
            }
            // One at a time.
            for pair in faults.windows(2) {
                assert!(pair[0].after_secs + pair[0].secs < pair[1].after_secs);
            }
        }
    }

    #[test]
    fn windows_overlapping_a_fault_are_its_and_then_its_aftermath() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let faults = [RanFault {
            id: "f1-cpu-hog".into(),
            entity: "c1".into(),
            start: at(100),
            end: at(130),
        }];
        let label = |ts: f64, entity: &str| label_of(ts, entity, 3.0, &faults);
        assert_eq!(label(100.0, "c1"), "normal");
        assert_eq!(label(101.0, "c1"), "f1-cpu-hog");
        assert_eq!(label(132.9, "c1"), "f1-cpu-hog");
        assert_eq!(label(133.0, "c1"), "aftermath");
        assert_eq!(label(144.9, "c1"), "aftermath");
        assert_eq!(label(145.0, "c1"), "normal");
        assert_eq!(label(110.0, "c2"), "normal");
    }

    #[test]
    fn the_recording_is_split_at_the_training_end_and_every_input_row_labeled() {
        let dir = tempfile_dir();
        let recorded = dir.join("recorded.csv");
        fs::write(
            &recorded,
            "ts,node,domain,entity,cpu\n10,n,d,c1,1\n10,n,d,c2,1\n13,n,d,c1,1\n13,n,d,c2,1\n\
             16,n,d,c1,5\n16,n,d,c2,1\n",
        )
        .unwrap();
        let faults = [RanFault {
            id: "f1".into(),
            entity: "c1".into(),
            start: UNIX_EPOCH + Duration::from_secs(14),
            end: UNIX_EPOCH + Duration::from_secs(20),
        }];
        let counts = split_and_label(
            &recorded,
            &dir,
            UNIX_EPOCH + Duration::from_secs(12),
            Duration::from_secs(3),
            &faults,
        )
        .unwrap();
        assert_eq!(
            counts,
            Counts {
                training: 2,
                rows: 4,
                fault_rows: 1
            }
        );
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(
            read("training.csv"),
            "ts,node,domain,entity,cpu\n10,n,d,c1,1\n10,n,d,c2,1\n"
        );
        assert_eq!(read("frames.csv").lines().count(), 5);
        assert_eq!(
            read("labels.csv"),
            "ts,entity,label\n13,c1,normal\n13,c2,normal\n16,c1,f1\n16,c2,normal\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("herd-dataset-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
