//! The lab against the real machine: pods made over CRI carry the kubelet's identity and
//! live in real cgroups in every hierarchy; faults do what they say; `down` leaves nothing,
//! even after a crash. Root only; each test takes the whole lab, so they run one at a time.

use std::{
    fs,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use herd_tests::{
    lab::{self, Container, Fault, FaultKind, Lab, LabSpec, Pod, Workload},
    require_root,
};

/// One lab per machine: tests in this binary take turns.
static LAB: Mutex<()> = Mutex::new(());

const CGROUP: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "blkio"];

/// Takes the lab down when the test ends, pass or fail, even if the test handed the lab
/// over to the machine.
struct DownOnDrop;

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let result = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(lab::down())
        })
        .join();
        if !matches!(result, Ok(Ok(()))) {
            eprintln!("lab down after the test: {result:?}");
        }
    }
}

/// Runs one test's body on its own runtime while holding the lab, with the lab taken down
/// afterwards whatever happened.
fn serial(body: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    require_root();
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let _down = DownOnDrop;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(body)
}

fn small_spec() -> LabSpec {
    LabSpec::new()
        .workload(
            Workload::deployment("web")
                .namespace("shop")
                .replicas(2)
                .cpu_millis(250)
                .memory_mib(48),
        )
        .workload(
            Workload::stateful_set("db")
                .namespace("data")
                .container("postgres")
                .memory_mib(64),
        )
}

fn container_of(pod: &Pod) -> anyhow::Result<&Container> {
    let [container] = pod.containers.as_slice() else {
        anyhow::bail!("pod {} has {} containers", pod.name, pod.containers.len());
    };
    Ok(container)
}

fn v1_dir(controller: &str, container: &Container) -> anyhow::Result<std::path::PathBuf> {
    let path = container
        .v1_cgroup(controller)
        .with_context(|| format!("{} has no {controller} cgroup", container.name))?;
    Ok(Path::new(CGROUP)
        .join(controller)
        .join(path.trim_start_matches('/')))
}

fn read_number(path: &Path) -> anyhow::Result<i64> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: {text:?}", path.display()))
}

/// `key value` lines of a cgroup file, e.g. memory.oom_control or pids.events.
fn keyed(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

fn assert_clean() -> anyhow::Result<()> {
    let left = lab::leftovers();
    ensure!(left.is_clean(), "the lab left things behind:\n{left}");
    // Independent of the lab's own bookkeeping: the kernel's view.
    for entry in fs::read_dir(CGROUP)? {
        let kubepods = entry?.path().join("kubepods");
        ensure!(!kubepods.exists(), "{} is left", kubepods.display());
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    ensure!(
        !mounts.contains("herd-lab"),
        "mounts of the lab are left:\n{}",
        mounts
            .lines()
            .filter(|l| l.contains("herd-lab"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    ensure!(
        !Path::new("/sys/class/net").join(lab::BRIDGE).exists(),
        "bridge {} is left",
        lab::BRIDGE
    );
    let netns: Vec<String> = fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        !netns
            .iter()
            .any(|n| n.starts_with("cni-") || n.starts_with("herd-lab")),
        "network namespaces are left: {netns:?}"
    );
    Ok(())
}

#[test]
fn pods_carry_kubelet_identity_and_live_in_every_hierarchy() -> anyhow::Result<()> {
    serial(async {
        let spec = small_spec();
        let mut lab = Lab::up(&spec).await?;

        let pods = lab.pods().await?;
        ensure!(pods.len() == 3, "expected 3 pods, CRI lists {}", pods.len());
        for pod in &pods {
            let container = container_of(pod)?;
            ensure!(
                pod.state == "SANDBOX_READY" && container.state == "CONTAINER_RUNNING",
                "{} is {} / {}",
                pod.name,
                pod.state,
                container.state
            );
            // kubelet identity on the sandbox and on the container.
            for (key, want) in [
                (lab::POD_NAME, &pod.name),
                (lab::POD_NAMESPACE, &pod.namespace),
                (lab::POD_UID, &pod.uid),
            ] {
                ensure!(
                    pod.labels.get(key) == Some(want),
                    "{}: sandbox label {key}",
                    pod.name
                );
                ensure!(
                    container.labels.get(key) == Some(want),
                    "{}: container label {key}",
                    pod.name
                );
            }
            let workload = pod.labels.get(lab::APP_NAME).context("no app name label")?;
            let (want_container, want_parent) = match workload.as_str() {
                "web" => {
                    let hash = pod
                        .labels
                        .get(lab::POD_TEMPLATE_HASH)
                        .context("web pod without pod-template-hash")?;
                    ensure!(
                        pod.name.starts_with(&format!("web-{hash}-")) && pod.namespace == "shop",
                        "Deployment pod named {}/{}",
                        pod.namespace,
                        pod.name
                    );
                    // CPU and memory limits: Guaranteed, directly under /kubepods.
                    ("app", format!("/kubepods/pod{}", pod.uid))
                }
                "db" => {
                    let revision = pod
                        .labels
                        .get(lab::CONTROLLER_REVISION_HASH)
                        .context("db pod without controller-revision-hash")?;
                    ensure!(revision.starts_with("db-"), "revision {revision}");
                    ensure!(
                        pod.name == "db-0" && pod.namespace == "data",
                        "{}",
                        pod.name
                    );
                    ("postgres", format!("/kubepods/burstable/pod{}", pod.uid))
                }
                other => anyhow::bail!("unexpected workload {other}"),
            };
            ensure!(
                container
                    .labels
                    .get(lab::CONTAINER_NAME)
                    .map(String::as_str)
                    == Some(want_container),
                "{}: container name label",
                pod.name
            );
            ensure!(
                pod.cgroup_parent.as_deref() == Some(want_parent.as_str()),
                "{}: cgroup parent {:?}, want {want_parent}",
                pod.name,
                pod.cgroup_parent
            );

            // The container's cgroup exists under cgroup2 and every v1 controller, below the
            // pod's cgroup, and holds the container's process.
            let pid = container.pid.context("running container without pid")?;
            let unified = container.unified_cgroup().context("no cgroup2 path")?;
            ensure!(
                unified == format!("{want_parent}/{}", container.id),
                "{}: cgroup2 path {unified}",
                pod.name
            );
            let procs = fs::read_to_string(
                Path::new(CGROUP)
                    .join("unified")
                    .join(unified.trim_start_matches('/'))
                    .join("cgroup.procs"),
            )?;
            ensure!(
                procs.lines().any(|l| l.trim() == pid.to_string()),
                "{}: pid {pid} not in its cgroup2 cgroup",
                pod.name
            );
            for controller in V1_CONTROLLERS {
                let dir = v1_dir(controller, container)?;
                ensure!(dir.is_dir(), "{} is missing", dir.display());
                ensure!(
                    dir.starts_with(
                        Path::new(CGROUP)
                            .join(controller)
                            .join(want_parent.trim_start_matches('/'))
                    ),
                    "{} is not below the pod cgroup",
                    dir.display()
                );
            }
            // The limits reached the kernel.
            let memory = v1_dir("memory", container)?.join("memory.limit_in_bytes");
            let want_memory = if workload == "web" { 48 } else { 64 } << 20;
            ensure!(read_number(&memory)? == want_memory, "{}", memory.display());
            let quota = read_number(&v1_dir("cpu", container)?.join("cpu.cfs_quota_us"))?;
            let want_quota = if workload == "web" { 25_000 } else { -1 };
            ensure!(quota == want_quota, "{}: cpu quota {quota}", pod.name);
        }

        // Deleting a pod removes it from CRI and its cgroups from every hierarchy.
        let victim = pods
            .iter()
            .find(|p| p.labels.get(lab::APP_NAME).is_some_and(|w| w == "web"))
            .context("no web pod")?;
        let parent = victim.cgroup_parent.clone().context("no cgroup parent")?;
        lab.remove_pod(victim).await?;
        let after = lab.pods().await?;
        ensure!(after.len() == 2, "{} pods after removing one", after.len());
        ensure!(
            !after.iter().any(|p| p.uid == victim.uid),
            "removed pod still listed"
        );
        for entry in fs::read_dir(CGROUP)? {
            let dir = entry?.path().join(parent.trim_start_matches('/'));
            ensure!(
                !dir.exists(),
                "{} is left after the pod went",
                dir.display()
            );
        }

        // A new replica appears with its own cgroup.
        let added = lab.add_pod(&spec.workloads[0], 1).await?;
        ensure!(lab.pods().await?.len() == 3, "the new pod is not listed");
        let unified = container_of(&added)?
            .unified_cgroup()
            .context("no cgroup2 path")?;
        ensure!(
            Path::new(CGROUP)
                .join("unified")
                .join(unified.trim_start_matches('/'))
                .is_dir(),
            "new pod's cgroup missing"
        );

        lab.down().await?;
        assert_clean()
    })
}

#[test]
fn faults_show_in_the_replicas_cgroups() -> anyhow::Result<()> {
    serial(async {
        let fault = |replica, kind| Fault::new(replica, kind).after_secs(1).for_secs(15);
        let spec = LabSpec::new().workload(
            Workload::deployment("stressed")
                .replicas(5)
                .cpu_millis(100)
                .memory_mib(32)
                .fault(fault(0, FaultKind::CpuHog))
                .fault(fault(1, FaultKind::MemoryLeak))
                .fault(fault(2, FaultKind::ForkStorm))
                .fault(fault(3, FaultKind::SocketFlood)),
        );
        let lab = Lab::up(&spec).await?;
        let pods = lab.pods().await?;
        let replica = |i: u32| -> anyhow::Result<&Container> {
            let pod = pods
                .iter()
                .find(|p| p.annotations.get("herd.lab/replica") == Some(&i.to_string()))
                .with_context(|| format!("no replica {i}"))?;
            container_of(pod)
        };
        let hog = v1_dir("cpu", replica(0)?)?.join("cpu.stat");
        let leak = v1_dir("memory", replica(1)?)?.join("memory.oom_control");
        // The pod's pids cgroup holds the limit; the container's counts the refusals.
        let forks = v1_dir("pids", replica(2)?)?;
        let flood_pid = replica(3)?.pid.context("no pid")?;
        let snmp = format!("/proc/{flood_pid}/net/snmp");
        let opens = |path: &str| -> u64 {
            let text = fs::read_to_string(path).unwrap_or_default();
            let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
            let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
                return 0;
            };
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(n, _)| *n == "ActiveOpens")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        // Replica 4 has no fault.
        let quiet = replica(4)?;
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut seen = [false; 4];
        while Instant::now() < deadline && !seen.iter().all(|s| *s) {
            seen[0] |= keyed(&hog, "nr_throttled") > 0;
            seen[1] |= keyed(&leak, "oom_kill") > 0;
            seen[2] |= keyed(&forks.join("pids.events"), "max") > 0
                || keyed(&forks.parent().unwrap().join("pids.events"), "max") > 0;
            seen[3] |= opens(&snmp) > 100;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ensure!(
            seen == [true; 4],
            "faults seen (cpu hog throttled, memory leak OOM-killed, fork storm hit pids.max, \
         socket flood on loopback): {seen:?}"
        );
        // The replica without a fault stays quiet.
        ensure!(
            keyed(&v1_dir("cpu", quiet)?.join("cpu.stat"), "nr_throttled") == 0,
            "the quiet replica was throttled"
        );
        ensure!(
            keyed(
                &v1_dir("memory", quiet)?.join("memory.oom_control"),
                "oom_kill"
            ) == 0,
            "the quiet replica was OOM-killed"
        );
        ensure!(
            opens(&format!("/proc/{}/net/snmp", quiet.pid.context("no pid")?)) < 10,
            "the quiet replica's loopback was flooded"
        );

        lab.down().await?;
        assert_clean()
    })
}

#[test]
fn down_cleans_up_after_a_crashed_up() -> anyhow::Result<()> {
    serial(async {
        let lab =
            Lab::up(&LabSpec::new().workload(Workload::deployment("crash").replicas(2))).await?;
        let pid: i32 = fs::read_to_string(lab.paths().run_dir().join("containerd.pid"))?
            .trim()
            .parse()?;
        lab.keep();
        // containerd dies and leaves its shims, containers, mounts and cgroups behind.
        // SAFETY: kill has no memory preconditions; the pid is the lab's containerd.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(
            !lab::leftovers().is_clean(),
            "a crashed lab should leave things to clean"
        );

        lab::down().await?;
        assert_clean()
    })
}
