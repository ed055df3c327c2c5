//! The container table: every container on the node, found from its cgroup and named by the
//! runtime when the runtime answers.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use procfs::{FromBufRead as _, ProcessCGroups};
use tracing::debug;

use crate::discovery::{
    cgroup_path::{self, Qos, Runtime},
    domain::{self, Domain, OwnerLookup, PodFacts},
    runtime::{Pod, RuntimeSnapshot},
};

/// One container on this node.
#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    /// The runtime's id (64 hex digits).
    pub id: String,
    /// From the cgroup name; `None` where the name carries no runtime prefix.
    pub runtime: Option<Runtime>,
    /// Path below the cgroup2 mount.
    pub cgroup: PathBuf,
    /// The cgroup id eBPF reports for the container's tasks.
    pub cgroup_id: u64,
    /// The container's path in each v1 hierarchy (`cpu`, `memory`, `pids`, …), which can
    /// differ from the cgroup2 path.
    pub controllers: BTreeMap<String, PathBuf>,
    /// A process of the container, for its namespaces.
    pub pid: Option<u32>,
    pub pod_uid: Option<String>,
    pub qos: Option<Qos>,
    /// What the runtime said; `None` while it has not answered for this container.
    pub pod: Option<Pod>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub labels: HashMap<String, String>,
    pub domain: Option<Domain>,
    /// Creation time from the runtime, else when the agent first saw the cgroup.
    pub started: SystemTime,
}

impl Container {
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.started).unwrap_or_default()
    }

    /// The domain it is judged in: the runtime's name for it, else `unnamed:<cgroup>`.
    pub fn domain_name(&self) -> String {
        self.domain.as_ref().map_or_else(
            // Without the runtime, a container is its own domain: it is compared with its
            // own past.
            || format!("unnamed:{}", self.cgroup.display()),
            ToString::to_string,
        )
    }

    /// `namespace/pod/container` when the runtime named it, else the cgroup path.
    pub fn label(&self) -> String {
        match (&self.pod, &self.name) {
            (Some(pod), Some(name)) => format!("{}/{}/{name}", pod.namespace, pod.name),
            _ => self.cgroup.display().to_string(),
        }
    }
}

/// Containers that came and went in one update.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Every container on the node, by id.
#[derive(Debug)]
pub struct ContainerTable {
    proc: PathBuf,
    cgroup2: PathBuf,
    /// The node's cgroup root, relative to the mounts: container paths are read below it.
    cgroup_root: PathBuf,
    min_age: Duration,
    by_id: HashMap<String, Container>,
}

impl ContainerTable {
    /// `proc` and `cgroup2` are the mount points of procfs and the cgroup2 hierarchy;
    /// containers younger than `min_age` are listed but not judged.
    pub fn new(proc: impl Into<PathBuf>, cgroup2: impl Into<PathBuf>, min_age: Duration) -> Self {
        Self {
            proc: proc.into(),
            cgroup2: cgroup2.into(),
            cgroup_root: PathBuf::from("/"),
            min_age,
            by_id: HashMap::new(),
        }
    }

    /// The same table for a node whose pods live below `root` (the kubelet's
    /// `--cgroup-root`, relative to the mounts): paths are read relative to it.
    pub fn scoped(mut self, root: impl Into<PathBuf>) -> Self {
        self.cgroup_root = root.into();
        self
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Container> {
        self.by_id.get(id)
    }

    /// The containers, oldest first.
    pub fn containers(&self) -> Vec<&Container> {
        let mut all: Vec<_> = self.by_id.values().collect();
        all.sort_by(|a, b| a.started.cmp(&b.started).then_with(|| a.id.cmp(&b.id)));
        all
    }

    /// The container whose cgroup2 id this is.
    pub fn by_cgroup_id(&self, cgroup_id: u64) -> Option<&Container> {
        self.by_id.values().find(|c| c.cgroup_id == cgroup_id)
    }

    /// Whether a container is old enough to be compared with its peers.
    pub fn judged(&self, container: &Container, now: SystemTime) -> bool {
        container.age(now) >= self.min_age
    }

    /// Brings the table up to date from a fresh list of cgroups and, when the runtime
    /// answered, its snapshot. Containers whose cgroup is gone are dropped with all their
    /// state.
    pub fn update<'a>(
        &mut self,
        cgroups: impl IntoIterator<Item = (u64, &'a Path)>,
        runtime: Option<&RuntimeSnapshot>,
        owners: &dyn OwnerLookup,
        now: SystemTime,
    ) -> Changes {
        let mut changes = Changes::default();
        let mut seen = HashSet::new();
        for (cgroup_id, path) in cgroups {
            let Some(parsed) = cgroup_path::parse_below(&self.cgroup_root, path) else {
                continue;
            };
            // The pause container holds the pod's namespaces; it is not a workload. The
            // runtime knows which containers are sandboxes; without it, the sandbox is the
            // container whose process is `pause`.
            let sandbox = match runtime {
                Some(snapshot) => snapshot.is_sandbox(&parsed.id),
                None => self.runs_pause(path),
            };
            if sandbox {
                continue;
            }
            seen.insert(parsed.id.clone());
            let container = self.by_id.entry(parsed.id.clone()).or_insert_with(|| {
                changes.added.push(parsed.id.clone());
                Container {
                    id: parsed.id.clone(),
                    runtime: parsed.runtime,
                    cgroup: path.to_owned(),
                    cgroup_id,
                    controllers: BTreeMap::new(),
                    pid: None,
                    pod_uid: parsed.pod_uid.clone(),
                    qos: parsed.qos,
                    pod: None,
                    name: None,
                    image: None,
                    labels: HashMap::new(),
                    domain: None,
                    started: now,
                }
            });
            container.cgroup = path.to_owned();
            container.cgroup_id = cgroup_id;
            refresh_process(container, &self.proc, &self.cgroup2);
            if let Some(snapshot) = runtime {
                enrich(container, snapshot, owners);
            }
        }
        self.by_id.retain(|id, _| {
            let keep = seen.contains(id);
            if !keep {
                changes.removed.push(id.clone());
            }
            keep
        });
        changes
    }
}

impl ContainerTable {
    /// Whether `pid` is a process of `container` now: listed in its cgroup's
    /// `cgroup.procs`. A pid seen at the last poll may since belong to another container.
    pub fn holds(&self, container: &Container, pid: u32) -> bool {
        procs_of(&self.cgroup2, &container.cgroup).contains(&pid)
    }

    fn runs_pause(&self, cgroup: &Path) -> bool {
        first_pid(&self.cgroup2, cgroup).is_some_and(|pid| {
            fs::read_to_string(self.proc.join(pid.to_string()).join("comm"))
                .is_ok_and(|comm| comm.trim() == "pause")
        })
    }
}

/// The processes of the cgroup, its `cgroup.procs`: empty when the cgroup is gone.
fn procs_of(cgroup2: &Path, cgroup: &Path) -> Vec<u32> {
    let relative = cgroup.strip_prefix("/").unwrap_or(cgroup);
    fs::read_to_string(cgroup2.join(relative).join("cgroup.procs"))
        .map(|procs| {
            procs
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A process of the cgroup, from its `cgroup.procs`.
fn first_pid(cgroup2: &Path, cgroup: &Path) -> Option<u32> {
    procs_of(cgroup2, cgroup).first().copied()
}

/// Finds a live process of the container and, through it, the container's v1 paths. The
/// process kept from the last poll must still be listed in the container's cgroup: once it
/// exits, its number can go to a process of another container, whose namespace the
/// container would then be read through.
fn refresh_process(container: &mut Container, proc: &Path, cgroup2: &Path) {
    let procs = procs_of(cgroup2, &container.cgroup);
    if container.pid.is_some_and(|pid| procs.contains(&pid)) {
        return;
    }
    container.pid = procs.first().copied();
    if let Some(pid) = container.pid {
        match fs::read_to_string(proc.join(pid.to_string()).join("cgroup")) {
            Ok(text) => container.controllers = v1_paths(&text),
            Err(err) => debug!(pid, %err, "process left before its cgroups were read"),
        }
    }
}

/// The v1 hierarchies of `/proc/<pid>/cgroup` (`id:controllers:path`, read by procfs), one
/// entry per controller; the cgroup2 line (`0::path`) has none. A line procfs cannot read is
/// passed over.
pub fn v1_paths(proc_cgroup: &str) -> BTreeMap<String, PathBuf> {
    let mut paths = BTreeMap::new();
    for line in proc_cgroup.lines() {
        let Ok(groups) = ProcessCGroups::from_buf_read(line.as_bytes()) else {
            debug!(
                line,
                "passing over a /proc/<pid>/cgroup line procfs cannot read"
            );
            continue;
        };
        for group in groups {
            for controller in group.controllers {
                paths.insert(controller, PathBuf::from(&group.pathname));
            }
        }
    }
    paths
}

fn enrich(container: &mut Container, snapshot: &RuntimeSnapshot, owners: &dyn OwnerLookup) {
    let Some(known) = snapshot.containers.get(&container.id) else {
        return;
    };
    let pod = snapshot.pods.get(&known.sandbox_id);
    let facts = pod.map(|pod| PodFacts {
        name: &pod.name,
        namespace: &pod.namespace,
        labels: &pod.labels,
    });
    container.domain = Some(domain::domain_of(
        owners,
        facts.as_ref(),
        &known.name,
        &known.image,
    ));
    container.started = known.created_at;
    container.name = Some(known.name.clone());
    container.image = Some(known.image.clone());
    container.labels = known.labels.clone();
    if let Some(pod) = pod {
        container.pod_uid = Some(pod.uid.clone());
        container.pod = Some(pod.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{domain::LabelOwners, runtime::RuntimeContainer};

    const SANDBOX: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const APP: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const UID: &str = "8d5b3f6e-2c1a-4b9e-9f7d-0a1b2c3d4e5f";

    fn path(id: &str) -> PathBuf {
        PathBuf::from(format!("/kubepods/burstable/pod{UID}/{id}"))
    }

    fn snapshot(created: SystemTime) -> RuntimeSnapshot {
        let mut snapshot = RuntimeSnapshot::default();
        snapshot.pods.insert(
            SANDBOX.to_owned(),
            Pod {
                name: "web-5f6d-aaaaa".to_owned(),
                namespace: "shop".to_owned(),
                uid: UID.to_owned(),
                labels: HashMap::from([("pod-template-hash".to_owned(), "5f6d".to_owned())]),
                annotations: HashMap::new(),
            },
        );
        snapshot.containers.insert(
            APP.to_owned(),
            RuntimeContainer {
                id: APP.to_owned(),
                sandbox_id: SANDBOX.to_owned(),
                name: "app".to_owned(),
                image: "shop/web:1".to_owned(),
                running: true,
                created_at: created,
                labels: HashMap::new(),
                annotations: HashMap::new(),
            },
        );
        snapshot
    }

    fn table() -> (tempfile::TempDir, ContainerTable) {
        let dir = tempfile::tempdir().unwrap();
        let table = ContainerTable::new(
            dir.path().join("proc"),
            dir.path().join("cgroup"),
            Duration::from_secs(60),
        );
        (dir, table)
    }

    #[test]
    fn containers_are_named_by_the_runtime_and_sandboxes_left_out() {
        let (_dir, mut table) = table();
        let now = SystemTime::now();
        let (sandbox, app) = (path(SANDBOX), path(APP));
        let cgroups = [
            (10, sandbox.as_path()),
            (11, app.as_path()),
            (1, Path::new("/")),
        ];
        let changes = table.update(cgroups, Some(&snapshot(now)), &LabelOwners, now);

        assert_eq!(changes.added, vec![APP.to_owned()]);
        let app = table.get(APP).unwrap();
        assert_eq!(app.label(), "shop/web-5f6d-aaaaa/app");
        assert_eq!(
            app.domain.as_ref().unwrap().to_string(),
            "shop/Deployment/web/app"
        );
        assert_eq!((app.cgroup_id, app.qos), (11, Some(Qos::Burstable)));
        assert_eq!(table.by_cgroup_id(11).map(|c| c.id.as_str()), Some(APP));
    }

    #[test]
    fn without_the_runtime_containers_come_from_cgroups_alone() {
        let (_dir, mut table) = table();
        let now = SystemTime::now();
        let app = path(APP);
        table.update([(11, app.as_path())], None, &LabelOwners, now);
        let container = table.get(APP).unwrap();
        assert_eq!(container.pod_uid.as_deref(), Some(UID));
        assert_eq!(container.domain, None);
        assert_eq!(container.label(), app.display().to_string());

        // When the runtime answers again, the same entry gets its names.
        table.update(
            [(11, app.as_path())],
            Some(&snapshot(now)),
            &LabelOwners,
            now,
        );
        assert_eq!(table.get(APP).unwrap().label(), "shop/web-5f6d-aaaaa/app");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn without_the_runtime_the_pause_container_is_known_by_its_process() {
        let (dir, mut table) = table();
        let now = SystemTime::now();
        let (sandbox, app) = (path(SANDBOX), path(APP));
        for (cgroup, pid, comm) in [(&sandbox, "41", "pause\n"), (&app, "42", "nginx\n")] {
            let cgroup_dir = dir
                .path()
                .join("cgroup")
                .join(cgroup.strip_prefix("/").unwrap());
            fs::create_dir_all(&cgroup_dir).unwrap();
            fs::write(cgroup_dir.join("cgroup.procs"), format!("{pid}\n")).unwrap();
            let proc_dir = dir.path().join("proc").join(pid);
            fs::create_dir_all(&proc_dir).unwrap();
            fs::write(proc_dir.join("comm"), comm).unwrap();
        }
        let cgroups = [(10, sandbox.as_path()), (11, app.as_path())];
        let changes = table.update(cgroups, None, &LabelOwners, now);
        assert_eq!(changes.added, vec![APP.to_owned()]);
        assert_eq!(table.get(APP).unwrap().pid, Some(42));
    }

    #[test]
    fn a_scoped_table_reads_paths_below_its_root_and_nothing_else() {
        let (_dir, table) = table();
        let mut table = table.scoped("/nodes/a");
        let now = SystemTime::now();
        let ours = PathBuf::from("/nodes/a").join(path(APP).strip_prefix("/").unwrap());
        let theirs = PathBuf::from("/nodes/b").join(path(SANDBOX).strip_prefix("/").unwrap());
        let host = path(SANDBOX);
        let cgroups = [
            (11, ours.as_path()),
            (12, theirs.as_path()),
            (13, host.as_path()),
        ];
        let changes = table.update(cgroups, None, &LabelOwners, now);
        assert_eq!(changes.added, vec![APP.to_owned()]);
        let app = table.get(APP).unwrap();
        assert_eq!(
            (app.qos, app.pod_uid.as_deref()),
            (Some(Qos::Burstable), Some(UID))
        );
        // Files are still read at the full path below the mount.
        assert_eq!(app.cgroup, ours);
    }

    #[test]
    fn vanished_containers_are_dropped() {
        let (_dir, mut table) = table();
        let now = SystemTime::now();
        let app = path(APP);
        table.update([(11, app.as_path())], None, &LabelOwners, now);
        let changes = table.update([], None, &LabelOwners, now);
        assert_eq!(changes.removed, vec![APP.to_owned()]);
        assert!(table.is_empty());
    }

    #[test]
    fn young_containers_are_listed_but_not_judged() {
        let (_dir, mut table) = table();
        let now = SystemTime::now();
        let app = path(APP);
        let created = now - Duration::from_secs(30);
        table.update(
            [(11, app.as_path())],
            Some(&snapshot(created)),
            &LabelOwners,
            now,
        );
        let container = table.get(APP).unwrap();
        assert!(!table.judged(container, now));
        assert!(table.judged(container, now + Duration::from_secs(30)));
    }

    #[test]
    fn v1_paths_per_controller() {
        let text =
            "12:pids:/kubepods/x\n4:cpu,cpuacct:/kubepods/y\n1:name=systemd:/z\n0::/kubepods/x\n";
        let paths = v1_paths(text);
        assert_eq!(paths["pids"], PathBuf::from("/kubepods/x"));
        assert_eq!(paths["cpu"], PathBuf::from("/kubepods/y"));
        assert_eq!(paths["cpuacct"], PathBuf::from("/kubepods/y"));
        assert_eq!(paths["name=systemd"], PathBuf::from("/z"));
        assert_eq!(paths.len(), 4);
    }
}
