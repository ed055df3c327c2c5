//! One detection window on a node: collect → features → detect → export, over the
//! containers discovery knows. The run loop calls [`Pipeline::window`] once per window.

use std::{
    path::PathBuf,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use thiserror::Error;

use crate::{
    collect::{
        cgroup::{CgroupCollector, CgroupMounts},
        ebpf::Signal,
        netns::NetnsCollector,
        signals::SignalSample,
    },
    detect::{DetectConfig, DetectError, Detector, Observation, Subject, WindowReport},
    discovery::containers::ContainerTable,
    export::frames::{FrameError, FrameRow, FrameSink, FrameWriter},
    features::{self, FeatureBuilder, NodeCapacity, WindowInput},
    transient::Transient,
};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// Only at start: once running, a failed write is warned about and counted.
    #[error(transparent)]
    Frames(#[from] FrameError),
}

/// What one window gave.
pub struct Window {
    pub report: WindowReport,
    /// Every judged container's features, in the detector's order.
    pub observations: Vec<Observation>,
}

/// The per-window state of the node: open counter files, previous readings, baselines.
pub struct Pipeline {
    node: String,
    cgroups: CgroupCollector,
    netns: NetnsCollector,
    features: FeatureBuilder,
    detector: Detector,
    frames: Option<FrameWriter>,
    /// The eBPF signals that are loaded.
    loaded: Vec<Signal>,
    last: Instant,
    /// How long the last window's collection took.
    collection: std::time::Duration,
    /// Windows whose frames could not be written.
    frames_lost: Transient,
}

impl Pipeline {
    pub fn new(
        node: String,
        mounts: CgroupMounts,
        proc: PathBuf,
        capacity: NodeCapacity,
        loaded: Vec<Signal>,
        record: Option<Box<dyn FrameSink>>,
        detect: DetectConfig,
    ) -> Result<Self, PipelineError> {
        let names = features::names();
        let detector = Detector::new(detect, names.clone())?;
        let frames = record
            .map(|out| FrameWriter::new(out, &names))
            .transpose()?;
        let mut cgroups = CgroupCollector::new(mounts);
        if loaded.contains(&Signal::Block) {
            // The features take block IO from eBPF where it is loaded.
            cgroups = cgroups.without_io_files();
        }
        Ok(Self {
            node,
            cgroups,
            netns: NetnsCollector::new(proc),
            features: FeatureBuilder::new(capacity),
            detector,
            frames,
            loaded,
            last: Instant::now(),
            collection: std::time::Duration::ZERO,
            frames_lost: Transient::new(
                "--record",
                "scoring goes on, and recording resumes when writes succeed",
            ),
        })
    }

    /// Windows whose frames could not be written (`--record`), since the start.
    pub fn frame_write_failures(&self) -> u64 {
        self.frames_lost.total()
    }

    /// How many containers each part of the window keeps state for: open cgroup files,
    /// open network namespaces (shared by a pod's containers), previous readings, and the
    /// detector's history. Each follows the containers that are there, none stays for one
    /// that is gone.
    pub fn state_sizes(&self) -> [(&'static str, usize); 4] {
        [
            ("cgroup_files", self.cgroups.open_readers()),
            ("network_namespaces", self.netns.open_namespaces()),
            ("features", self.features.tracked()),
            ("detector", self.detector.tracked()),
        ]
    }

    /// How long the last window took to read every container's counters.
    pub fn collection_time(&self) -> std::time::Duration {
        self.collection
    }

    /// Reads every container, scores the window, records the frame; returns what the
    /// detector found and what it was given. `ebpf` is `None` when eBPF is not available.
    pub fn window(
        &mut self,
        table: &ContainerTable,
        ebpf: Option<&SignalSample>,
        at: SystemTime,
    ) -> Result<Window, PipelineError> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last);
        self.last = now;
        let cgroups = self.cgroups.collect(table);
        let net = self.netns.collect(table);
        self.collection = now.elapsed();
        let input = WindowInput {
            elapsed,
            cgroups: &cgroups,
            net: &net,
            ebpf,
            loaded: &self.loaded,
        };
        let vectors = self.features.window(table, &input);
        let observations: Vec<Observation> = vectors
            .into_iter()
            .filter_map(|(id, values)| {
                let container = table.get(&id)?;
                // A container younger than the minimum age is read (its rates are ready
                // when it comes of age) but neither judged nor a peer of the others.
                if !table.judged(container, at) {
                    return None;
                }
                let pod = container.pod.as_ref();
                Some(Observation {
                    subject: Subject {
                        domain: container.domain_name(),
                        pod: pod.map(|p| p.name.clone()),
                        namespace: pod.map(|p| p.namespace.clone()),
                        node: self.node.clone(),
                        entity: id,
                    },
                    values,
                })
            })
            .collect();
        if let Some(frames) = &mut self.frames {
            let ts = at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let written = frames.window(
                ts,
                observations.iter().map(|o| FrameRow {
                    node: &o.subject.node,
                    domain: &o.subject.domain,
                    entity: &o.subject.entity,
                    values: &o.values,
                }),
            );
            // A full disk must not stop the agent: the window is scored all the same.
            self.frames_lost.check(written);
        }
        let report = self.detector.observe(at, &observations)?;
        Ok(Window {
            report,
            observations,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        fs,
        io::Write,
        path::{Path, PathBuf},
        sync::{Arc, Mutex},
        time::Duration,
    };

    use super::*;
    use crate::{discovery::domain::LabelOwners, export::frames::FrameStream};

    /// A frame file in memory.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A frame file whose disk fills up after the header.
    struct FillsUp {
        writes_left: usize,
    }

    impl Write for FillsUp {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.writes_left == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.writes_left -= 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_under_the_frames_does_not_stop_the_windows() {
        let root = tempfile::tempdir().unwrap();
        let cgroup2 = root.path().join("cgroup");
        let id = "e".repeat(64);
        let dir = cgroup2.join("docker").join(&id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        let mut table = ContainerTable::new(root.path(), &cgroup2, Duration::ZERO);
        let path = format!("/docker/{id}");
        table.update(
            [(7, Path::new(path.as_str()))],
            None,
            &LabelOwners,
            SystemTime::UNIX_EPOCH,
        );
        let mut pipeline = Pipeline::new(
            "node-1".into(),
            CgroupMounts {
                cgroup2,
                v1: HashMap::new(),
            },
            root.path().to_owned(),
            NodeCapacity {
                cores: 2.0,
                memory_bytes: 1e9,
            },
            Vec::new(),
            Some(Box::new(FrameStream(FillsUp { writes_left: 1 }))),
            features::detect_config(&features::names()),
        )
        .unwrap();
        for s in 0..3 {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(s);
            assert!(pipeline.window(&table, None, at).is_ok());
        }
        assert_eq!(pipeline.frame_write_failures(), 3);
    }

    /// Containers under /docker with a few counter files each; `listed` are in the table.
    fn node_of(root: &Path, ids: &[String], listed: &[String]) -> (ContainerTable, Pipeline) {
        let cgroup2 = root.join("cgroup");
        for (n, id) in ids.iter().enumerate() {
            let dir = cgroup2.join("docker").join(id);
            fs::create_dir_all(&dir).unwrap();
            for (file, text) in [
                ("cgroup.procs", String::new()),
                ("cpu.stat", format!("usage_usec {}\n", 1_000_000 * (n + 1))),
                ("memory.current", format!("{}\n", 4096 * (n + 1))),
                ("memory.max", "max\n".to_owned()),
                ("pids.current", "3\n".to_owned()),
            ] {
                fs::write(dir.join(file), text).unwrap();
            }
        }
        let mut table = ContainerTable::new(root, &cgroup2, Duration::ZERO);
        let paths: Vec<(u64, PathBuf)> = listed
            .iter()
            .enumerate()
            .map(|(n, id)| (n as u64 + 10, PathBuf::from(format!("/docker/{id}"))))
            .collect();
        table.update(
            paths.iter().map(|(n, p)| (*n, p.as_path())),
            None,
            &LabelOwners,
            SystemTime::UNIX_EPOCH,
        );
        let pipeline = Pipeline::new(
            "node-1".into(),
            CgroupMounts {
                cgroup2,
                v1: HashMap::new(),
            },
            root.to_owned(),
            NodeCapacity {
                cores: 2.0,
                memory_bytes: 1e9,
            },
            Vec::new(),
            None,
            features::detect_config(&features::names()),
        )
        .unwrap();
        (table, pipeline)
    }

    /// Which features a container has in a window, by entity.
    fn present(window: &Window) -> HashMap<String, Vec<bool>> {
        window
            .observations
            .iter()
            .map(|o| {
                let some = o.values.iter().map(Option::is_some).collect();
                (o.subject.entity.clone(), some)
            })
            .collect()
    }

    #[test]
    fn a_cgroup_that_vanishes_between_listing_and_reading_costs_only_its_own_features() {
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(64)).collect();
        let gone = &ids[2];
        // The node as discovery listed it, then the third cgroup is removed before the
        // window reads it.
        let root = tempfile::tempdir().unwrap();
        let (table, mut pipeline) = node_of(root.path(), &ids, &ids);
        fs::remove_dir_all(root.path().join("cgroup/docker").join(gone)).unwrap();
        // The same node where it never was.
        let other = tempfile::tempdir().unwrap();
        let (only_two, mut reference) = node_of(other.path(), &ids[..2], &ids[..2]);

        for s in 0..3 {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * s);
            let window = pipeline
                .window(&table, None, at)
                .expect("a vanished cgroup is no error of the window");
            let expected = reference.window(&only_two, None, at).unwrap();
            let mut seen = present(&window);
            if let Some(values) = seen.remove(gone) {
                assert!(
                    values.iter().all(|v| !v),
                    "window {s}: the vanished container has no made-up values"
                );
            }
            let expected_seen = present(&expected);
            assert_eq!(seen.len(), 2, "window {s}: both others are observed");
            assert_eq!(
                seen, expected_seen,
                "window {s}: the others have every feature they have without it"
            );
            let scored: Vec<&str> = window
                .report
                .scores
                .iter()
                .map(|e| e.entity.as_str())
                .filter(|e| e != gone)
                .collect();
            assert_eq!(scored.len(), 2, "window {s}: both others are scored");
        }
    }

    #[test]
    fn a_container_younger_than_the_minimum_age_is_read_but_not_judged() {
        let root = tempfile::tempdir().unwrap();
        let cgroup2 = root.path().join("cgroup");
        let id = "d".repeat(64);
        let path = format!("/docker/{id}");
        let dir = cgroup2.join(path.trim_start_matches('/'));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        let mut table = ContainerTable::new(root.path(), &cgroup2, Duration::from_secs(60));
        let seen = SystemTime::now();
        table.update([(7, Path::new(path.as_str()))], None, &LabelOwners, seen);

        let frames = Shared::default();
        let mut pipeline = Pipeline::new(
            "node-1".into(),
            CgroupMounts {
                cgroup2: cgroup2.clone(),
                v1: HashMap::new(),
            },
            root.path().to_owned(),
            NodeCapacity {
                cores: 2.0,
                memory_bytes: 1e9,
            },
            Vec::new(),
            Some(Box::new(FrameStream(frames.clone()))),
            features::detect_config(&features::names()),
        )
        .unwrap();
        let rows = || {
            let text = String::from_utf8(frames.0.lock().unwrap().clone()).unwrap();
            text.lines().filter(|l| l.contains(&id)).count()
        };
        pipeline.window(&table, None, seen).unwrap();
        pipeline
            .window(&table, None, seen + Duration::from_secs(59))
            .unwrap();
        assert_eq!(rows(), 0, "young: not in the frames the detector sees");
        pipeline
            .window(&table, None, seen + Duration::from_secs(60))
            .unwrap();
        assert_eq!(rows(), 1, "of age at 60 s");
    }
}
