//! Container discovery against a real node: the lab's pods, made over CRI as a kubelet
//! makes them, must appear in the agent's table with the right names, domains and cgroup
//! ids; come and go with the pods; and stay listed from cgroups alone while the runtime
//! socket is missing, with one warning, until it returns.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use anyhow::Context as _;
use herd_agent::{
    discovery::poller::{Discovery, DiscoveryConfig},
    host::{self, HostPaths},
};
use herd_tests::{
    lab::{self, Lab, LabSpec, Pod, Workload},
    require_root,
};

/// One lab per machine: the tests of this binary take turns.
static LAB: Mutex<()> = Mutex::new(());

const POLL: Duration = Duration::from_millis(500);

fn serial(body: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    require_root();
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(body);
    // Whatever happened, the machine is left clean for the next test.
    let down = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(lab::down());
    result.and(down.map_err(anyhow::Error::from))
}

fn discovery(socket: PathBuf) -> anyhow::Result<Discovery> {
    let paths = HostPaths::default();
    Ok(Discovery::new(DiscoveryConfig {
        runtime_socket: Some(socket),
        min_age: Duration::ZERO,
        cgroup2: host::cgroup2_mount(&paths.proc)?,
        proc: paths.proc,
    }))
}

/// A container as the table shows it: (id, pod, namespace, container name, domain,
/// cgroup id).
type Row = (String, String, String, String, String, u64);

/// What the lab says each container should look like in the agent's table.
fn expected(pods: &[Pod]) -> anyhow::Result<BTreeSet<Row>> {
    let mount = host::cgroup2_mount(Path::new("/proc"))?;
    let mut rows = BTreeSet::new();
    for pod in pods {
        let owner = if pod.labels.contains_key("pod-template-hash") {
            let hash = &pod.labels["pod-template-hash"];
            let (name, _) = pod
                .name
                .split_once(&format!("-{hash}-"))
                .context("deployment pod name")?;
            format!("Deployment/{name}")
        } else {
            let (name, _) = pod.name.rsplit_once('-').context("statefulset pod name")?;
            format!("StatefulSet/{name}")
        };
        for container in &pod.containers {
            let cgroup = container
                .unified_cgroup()
                .context("container without cgroup2 path")?;
            let id = fs::metadata(mount.join(cgroup.trim_start_matches('/')))?.ino();
            rows.insert((
                container.id.clone(),
                pod.name.clone(),
                pod.namespace.clone(),
                container.name.clone(),
                format!("{}/{owner}/{}", pod.namespace, container.name),
                id,
            ));
        }
    }
    Ok(rows)
}

fn actual(discovery: &Discovery) -> BTreeSet<Row> {
    discovery
        .table()
        .containers()
        .into_iter()
        .map(|c| {
            let pod = c.pod.as_ref();
            (
                c.id.clone(),
                pod.map(|p| p.name.clone()).unwrap_or_default(),
                pod.map(|p| p.namespace.clone()).unwrap_or_default(),
                c.name.clone().unwrap_or_default(),
                c.domain
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                c.cgroup_id,
            )
        })
        .collect()
}

#[test]
fn the_table_matches_the_lab_and_follows_pods_that_come_and_go() -> anyhow::Result<()> {
    serial(async {
        let spec = LabSpec::default_lab();
        let mut lab = Lab::up(&spec).await?;
        let mut discovery = discovery(lab.socket())?;
        discovery.poll().await;
        assert!(discovery.runtime_up());
        let pods = lab.pods().await?;
        assert_eq!(pods.len(), 8, "the default lab runs 3 + 3 + 2 pods");
        assert_eq!(actual(&discovery), expected(&pods)?);

        // The CLI prints the same table.
        let out = Command::new(herd_tests::built_binary("herd-agent")?)
            .args(["containers", "--runtime-socket"])
            .arg(lab.socket())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (_, pod, _, _, domain, cgroup_id) in expected(&pods)? {
            let line = text
                .lines()
                .find(|line| line.contains(&format!(" {pod} ")))
                .with_context(|| format!("{pod} missing from\n{text}"))?;
            assert!(
                line.contains(&domain) && line.contains(&cgroup_id.to_string()),
                "{line}"
            );
        }

        // A deleted pod is gone within two polls; a new one appears, named.
        let gone = pods
            .iter()
            .find(|p| p.namespace == "shop")
            .context("a shop pod")?;
        lab.remove_pod(gone).await?;
        let mut removed = false;
        for _ in 0..2 {
            let changes = discovery.poll().await;
            removed |= changes.removed.contains(&gone.containers[0].id);
            tokio::time::sleep(POLL).await;
        }
        assert!(removed, "pod {} still listed after two polls", gone.name);
        assert!(discovery.table().get(&gone.containers[0].id).is_none());

        let web = spec
            .workloads
            .iter()
            .find(|w| w.name == "web")
            .context("web")?;
        let new = lab.add_pod(web, 3).await?;
        let changes = discovery.poll().await;
        assert_eq!(changes.added, vec![new.containers[0].id.clone()]);
        assert_eq!(actual(&discovery), expected(&lab.pods().await?)?);
        lab.down().await?;
        Ok(())
    })
}

#[test]
fn without_the_runtime_socket_discovery_goes_on_from_cgroups_and_recovers() -> anyhow::Result<()> {
    serial(async {
        let lab = Lab::up(
            &LabSpec::new().workload(Workload::deployment("web").namespace("shop").replicas(2)),
        )
        .await?;
        let ids: BTreeSet<String> = lab
            .pods()
            .await?
            .iter()
            .flat_map(|p| p.containers.iter().map(|c| c.id.clone()))
            .collect();
        // The agent is pointed at a link to the socket that is not there yet.
        let dir = tempfile::tempdir()?;
        let link = dir.path().join("cri.sock");

        let mut discovery = discovery(link.clone())?;
        discovery.poll().await;
        assert!(!discovery.runtime_up());
        let table: BTreeSet<String> = discovery
            .table()
            .containers()
            .iter()
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(table, ids, "cgroup-only discovery lists every container");
        assert!(
            discovery
                .table()
                .containers()
                .iter()
                .all(|c| c.pod.is_none() && c.pod_uid.is_some())
        );

        std::os::unix::fs::symlink(lab.socket(), &link)?;
        discovery.poll().await;
        assert!(discovery.runtime_up());
        assert!(
            discovery
                .table()
                .containers()
                .iter()
                .all(|c| c.domain.is_some())
        );
        fs::remove_file(&link)?;

        // The running agent warns once while the socket is missing, however many polls,
        // and says when the runtime answers again.
        let agent = Command::new(herd_tests::built_binary("herd-agent")?)
            .args([
                "--interval",
                "1s",
                "--discovery-interval",
                "500ms",
                "--duration",
                "5s",
                // No API: this test reads the log.
                "--socket",
                "",
            ])
            .arg("--runtime-socket")
            .arg(&link)
            .env("HERD_LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .spawn()?;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        std::os::unix::fs::symlink(lab.socket(), &link)?;
        let out = tokio::task::spawn_blocking(move || agent.wait_with_output()).await??;
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        let warnings = log.matches("discovery goes on from cgroups alone").count();
        assert_eq!(warnings, 1, "{log}");
        assert_eq!(
            log.matches("container runtime answering").count(),
            1,
            "{log}"
        );
        lab.down().await?;
        Ok(())
    })
}
