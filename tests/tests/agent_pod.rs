//! The agent as the DaemonSet's pod: `deploy/` built with `kubectl kustomize`, the DaemonSet's
//! pod template run on the lab node over CRI as a kubelet runs it (hostPID, capabilities,
//! hostPath mounts, the downward API, the `probe` init container first), from the
//! `herd-agent` image made of the binaries under test. The agent starts without
//! `privileged`, loads its eBPF programs, names the faulty replica of a lab workload, and
//! `herd findings` on the host answers through the hostPath socket. With CAP_BPF taken from
//! the manifest, the init container fails and its log names the capability. Root only; it
//! takes the lab.
//!
//! The test changes the pod template only where a user's overlay would: the runtime socket's
//! host path is the lab's containerd (as deploy/overlays/k3s points it at k3s's), and
//! `HERD_INTERVAL`, `HERD_DISCOVERY_INTERVAL` and `HERD_MIN_AGE` shorten the windows so that
//! a finding comes within the test's few minutes. The aggregator the manifest names does
//! not exist here: the agent keeps its summaries queued and judges its node on its own.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::FileTypeExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use herd_tests::{
    built_binary,
    certs::Ca,
    lab::{
        self, HerdImage, Lab, LabSpec, Workload,
        kubelet::{self, KubeletError, KubeletPod, Manifests, Node},
    },
    require_root, stray,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// The DaemonSet and its containers, as `deploy/` names them.
const DAEMON_SET: &str = "herd-agent";
const INIT: &str = "probe";
const AGENT: &str = "agent";
/// The volume of the container runtime's socket, and of the API's socket directory.
const RUNTIME_SOCKET_VOLUME: &str = "runtime-socket";
const API_SOCKET_VOLUME: &str = "api-socket";
/// The TLS Secret the agent's pod mounts.
const TLS_SECRET: &str = "herd-agent-tls";
/// The lab node's name, as the downward API gives it (not this host's name, so that the
/// agent's node is known to come from there).
const NODE_NAME: &str = "lab-node-1";
/// Capabilities the pod is given, as the manifest names them.
const CAPABILITIES: [&str; 5] = ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE", "SETPCAP"];
/// What the agent holds once its programs are attached (`herd_agent::privileges`).
const KEPT: [&str; 1] = ["SYS_PTRACE"];

const FAULTY_REPLICA: u32 = 3;
const FAULT_AFTER_SECS: u64 = 30;
const FAULT_SECS: u64 = 90;
/// From the fault's start until the finding must be listed.
const FINDING_WITHIN: Duration = Duration::from_secs(75);

#[test]
fn the_agent_runs_as_the_daemon_sets_pod() -> anyhow::Result<()> {
    require_root();
    lab::run_test(scenario())
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

async fn scenario() -> anyhow::Result<()> {
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-agent-pod-test");
    let _ = std::fs::remove_dir_all(&work);

    // What a user builds: the manifests and the image, tagged alike.
    let manifests = Manifests::build(&deploy_dir())?;
    let template = manifests.daemon_set_template(DAEMON_SET)?;
    let namespace = manifests.namespace_of("DaemonSet", DAEMON_SET);
    let spec = template
        .spec
        .clone()
        .context("the DaemonSet has no pod spec")?;
    for container in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        ensure!(
            container.image.as_deref() == Some(HerdImage::Agent.reference().as_str()),
            "container {} runs {:?}, not the image the build tags, {}",
            container.name,
            container.image,
            HerdImage::Agent.reference()
        );
    }
    let bin_dir = built_binary("herd-agent")?
        .parent()
        .context("binary directory")?
        .to_owned();
    let archive = HerdImage::Agent.write(&bin_dir, &work)?;
    let ca = Ca::new(&work.join("tls"), "herd-ca")?;
    let client = ca.client("herd-agent")?;
    let tls = BTreeMap::from([
        ("tls.crt".to_owned(), std::fs::read(&client.cert)?),
        ("tls.key".to_owned(), std::fs::read(&client.key)?),
        ("ca.crt".to_owned(), std::fs::read(&client.ca)?),
    ]);

    // The node: idle until the agent runs, then a herd with one stray; tracefs mounted as
    // systemd mounts it on a node (the agent may not mount it without CAP_SYS_ADMIN).
    let lab =
        Lab::up(&LabSpec::new().workload(Workload::deployment("idle").namespace("quiet"))).await?;
    let _tracefs = HostTracefs::ensure()?;
    lab.import_image(&archive)?;
    let node = Node {
        name: NODE_NAME.to_owned(),
        paths: lab.paths().clone(),
        manifests: &manifests,
        secrets: BTreeMap::new(),
    }
    .secret(TLS_SECRET, tls);
    let template = for_the_lab(template, &lab)?;

    without_bpf(&lab, &node, &namespace, &template).await?;
    as_deployed(lab, &node, &namespace, &template).await
}

/// The template as a lab overlay has it: the lab's containerd as the runtime socket, and
/// short windows. Where this machine's PID 1 refuses its namespaces even to full root (the
/// development VMs' init holds a capability no other process has), the probe cannot require
/// `netns`, which it checks on PID 1: the agent itself reads the pods' processes, not PID 1.
fn for_the_lab(mut template: PodTemplateSpec, lab: &Lab) -> anyhow::Result<PodTemplateSpec> {
    let spec = template.spec.as_mut().context("no pod spec")?;
    if let Err(err) = std::fs::read_link("/proc/1/ns/net") {
        eprintln!(
            "PID 1's network namespace is unreadable even to root here ({err}): \
             the probe does not require netns in this lab"
        );
        for init in spec.init_containers.iter_mut().flatten() {
            let args = init.args.get_or_insert_with(Vec::new);
            if let Some(at) = args.iter().position(|a| a == "--require")
                && let Some(list) = args.get_mut(at + 1)
            {
                *list = list
                    .split(',')
                    .filter(|f| *f != "netns")
                    .collect::<Vec<_>>()
                    .join(",");
            }
        }
    }
    let socket = spec
        .volumes
        .iter_mut()
        .flatten()
        .find(|v| v.name == RUNTIME_SOCKET_VOLUME)
        .and_then(|v| v.host_path.as_mut())
        .context("the DaemonSet has no runtime-socket hostPath volume")?;
    socket.path = lab.socket().to_string_lossy().into_owned();
    kubelet::set_env(
        spec,
        &[
            ("HERD_INTERVAL", "2s"),
            ("HERD_DISCOVERY_INTERVAL", "1s"),
            ("HERD_MIN_AGE", "0s"),
        ],
    );
    Ok(template)
}

/// With CAP_BPF taken out of the manifest, the init container's probe fails, naming it in
/// the log `kubectl logs -c probe` shows, and the agent never starts.
async fn without_bpf(
    lab: &Lab,
    node: &Node<'_>,
    namespace: &str,
    template: &PodTemplateSpec,
) -> anyhow::Result<()> {
    let mut template = template.clone();
    let spec = template.spec.as_mut().context("no pod spec")?;
    for container in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        let caps = container
            .security_context
            .as_mut()
            .and_then(|s| s.capabilities.as_mut())
            .and_then(|c| c.add.as_mut())
            .context("a container without added capabilities")?;
        caps.retain(|c| c != "BPF");
    }
    let mut runtime = lab.runtime();
    let mut images = kubelet::image_client(lab.paths()).await?;
    let (pod, outcome) = match kubelet::run_pod(
        &mut runtime,
        &mut images,
        node,
        namespace,
        "herd-agent-nobpf",
        &template,
    )
    .await
    {
        Ok(pod) => (Some(pod), Ok(())),
        Err((pod, err)) => (pod, Err(err)),
    };
    let checked = match &outcome {
        Err(KubeletError::InitFailed { container, log, .. }) => {
            eprintln!("the probe's log without CAP_BPF:\n{log}");
            if container != INIT {
                Err(anyhow::anyhow!(
                    "init container {container} failed, not {INIT}"
                ))
            } else if !log.contains("CAP_BPF") {
                Err(anyhow::anyhow!(
                    "the probe's log does not name CAP_BPF:\n{log}"
                ))
            } else if pod
                .as_ref()
                .is_some_and(|p| p.container_id(AGENT).is_some())
            {
                Err(anyhow::anyhow!(
                    "the agent started although its init container failed"
                ))
            } else {
                Ok(())
            }
        }
        Err(other) => Err(anyhow::anyhow!("the pod failed otherwise: {other}")),
        Ok(()) => Err(anyhow::anyhow!(
            "the pod started without CAP_BPF; the probe's log:\n{}",
            pod.as_ref().map(|p| p.log(INIT)).unwrap_or_default()
        )),
    };
    if let Some(pod) = pod {
        pod.remove(&mut runtime, lab.paths()).await?;
    }
    checked
}

/// The pod as `deploy/` has it: the agent starts unprivileged, loads its eBPF programs and
/// names the stray replica through the host's socket.
async fn as_deployed(
    mut lab: Lab,
    node: &Node<'_>,
    namespace: &str,
    template: &PodTemplateSpec,
) -> anyhow::Result<()> {
    let api_dir = template
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .find(|v| v.name == API_SOCKET_VOLUME)
        .and_then(|v| v.host_path.as_ref())
        .map(|h| PathBuf::from(&h.path))
        .context("the DaemonSet has no api-socket hostPath volume")?;
    ensure!(
        !api_dir.join("agent.sock").exists(),
        "{} exists already: is an agent running on this host?",
        api_dir.join("agent.sock").display()
    );
    let mut runtime = lab.runtime();
    let mut images = kubelet::image_client(lab.paths()).await?;
    let started = Instant::now();
    let pod = match kubelet::run_pod(
        &mut runtime,
        &mut images,
        node,
        namespace,
        "herd-agent-lab1",
        template,
    )
    .await
    {
        Ok(pod) => pod,
        Err((pod, err)) => {
            if let Some(pod) = pod {
                pod.remove(&mut runtime, lab.paths()).await?;
            }
            bail!("the agent's pod did not start: {err}");
        }
    };
    let outcome = checks(&mut lab, &pod, &api_dir, started).await;
    if outcome.is_err() {
        eprintln!("the probe's log:\n{}", pod.log(INIT));
        eprintln!("the agent's log:\n{}", pod.log(AGENT));
    }
    pod.remove(&mut runtime, lab.paths()).await?;
    let socket_left = api_dir.join("agent.sock").exists();
    lab.down().await?;
    outcome?;
    ensure!(
        !socket_left,
        "the agent left its socket behind after SIGTERM"
    );
    Ok(())
}

async fn checks(
    lab: &mut Lab,
    pod: &KubeletPod,
    api_dir: &Path,
    started: Instant,
) -> anyhow::Result<()> {
    let mut runtime = lab.runtime();
    pod.wait_ready(&mut runtime, AGENT, Duration::from_secs(90))
        .await?;
    eprintln!(
        "the agent's pod is ready (its readiness probe passes) {:.1} s after it was created",
        started.elapsed().as_secs_f64()
    );
    let probe = pod.status(&mut runtime, INIT).await?;
    ensure!(
        probe.exit_code == 0,
        "the probe exited with {}",
        probe.exit_code
    );

    // Not privileged: of the capabilities the manifest grants (which the probe used to load
    // and attach for real), the running agent keeps only what it still needs, with nothing
    // left in its bounding set.
    let agent_id = pod.container_id(AGENT).context("no agent container")?;
    let pid = lab
        .pods()
        .await?
        .into_iter()
        .flat_map(|p| p.containers)
        .find(|c| c.id == agent_id)
        .and_then(|c| c.pid)
        .context("the agent container has no process")?;
    let held = capabilities_of(pid)?;
    let kept: BTreeSet<String> = KEPT.iter().map(|c| format!("CAP_{c}")).collect();
    ensure!(
        held == kept,
        "the agent (pid {pid}) holds {held:?} after start, not only what it keeps, {kept:?} \
         (of {CAPABILITIES:?})"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    ensure!(
        status
            .lines()
            .any(|l| l.replace(char::is_whitespace, "") == "CapBnd:0000000000000000")
            && status
                .lines()
                .any(|l| l.replace(char::is_whitespace, "") == "NoNewPrivs:1"),
        "the agent's bounding set is empty and no_new_privs set:\n{status}"
    );

    // Its eBPF programs, in its log and in `herd info` through the host's socket.
    let socket = api_dir.join("agent.sock");
    ensure!(
        std::fs::metadata(&socket).is_ok_and(|m| m.file_type().is_socket()),
        "no API socket at {} on the host",
        socket.display()
    );
    let info = herd(&["info"])?;
    ensure!(
        info["node"] == NODE_NAME,
        "the agent's node is {}, not the downward API's {NODE_NAME}",
        info["node"]
    );
    ensure!(
        info["ebpf"]["loaded"] == true,
        "eBPF is not loaded: {}",
        info["ebpf"]
    );
    let active: BTreeSet<&str> = info["signals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["active"] == true)
        .filter_map(|s| s["name"].as_str())
        .collect();
    for signal in [
        "cgroup", "netns", "syscalls", "sched", "network", "block", "oom",
    ] {
        ensure!(
            active.contains(signal),
            "the {signal} signal is not active: {}",
            info["signals"]
        );
    }
    let log = pod.log(AGENT);
    let attached: BTreeSet<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == "eBPF programs attached")
        .filter_map(|entry| entry["signal"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        attached.contains("syscalls") && attached.contains("network"),
        "the agent's log does not say its eBPF programs attached (found {attached:?})"
    );

    // A herd with a stray, after the agent is up.
    let web = stray::web_with_cpu_hog(FAULTY_REPLICA, FAULT_AFTER_SECS, FAULT_SECS);
    for replica in 0..web.replicas {
        lab.add_pod(&web, replica).await?;
    }
    let fault_at = Instant::now() + Duration::from_secs(FAULT_AFTER_SECS);
    let faulty = stray::pod_of_replica(lab, stray::NAMESPACE, FAULTY_REPLICA).await?;
    let healthy: Vec<String> = lab
        .pods()
        .await?
        .into_iter()
        .filter(|p| p.namespace == stray::NAMESPACE && p.name != faulty)
        .map(|p| p.name)
        .collect();
    let deadline = fault_at + FINDING_WITHIN;
    loop {
        let findings = herd(&["findings"])?;
        let pods: Vec<&str> = findings["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["pod"].as_str())
            .collect();
        if let Some(wrong) = healthy.iter().find(|h| pods.contains(&h.as_str())) {
            bail!("`herd findings` names the healthy replica {wrong}: {findings}");
        }
        if pods.contains(&faulty.as_str()) {
            eprintln!(
                "`herd findings` names {faulty} {:.0} s after its fault started",
                Instant::now()
                    .saturating_duration_since(fault_at)
                    .as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "`herd findings` did not name the faulty replica {faulty} within {FINDING_WITHIN:?} \
                 of its fault; last answer: {findings}"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `herd -o json <args>` on the host, with its default server: the socket in the hostPath.
fn herd(args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(built_binary("herd")?)
        .env_remove("HERD_SERVER")
        .args(["-o", "json"])
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "`herd {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("`herd {}`", args.join(" ")))
}

/// The effective capabilities of a process, by name.
fn capabilities_of(pid: u32) -> anyhow::Result<BTreeSet<String>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .context("no CapEff")?;
    let set = u64::from_str_radix(hex.trim(), 16)?;
    // The kernel's numbering (linux/capability.h), as far as the manifest could name.
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    Ok((0..64)
        .filter(|bit| set & (1 << bit) != 0)
        .map(|bit| {
            NAMES
                .get(bit)
                .map_or_else(|| format!("CAP_{bit}"), |n| format!("CAP_{n}"))
        })
        .collect())
}

/// tracefs at /sys/kernel/tracing on the host, as systemd mounts it on a node; unmounted
/// again when dropped if this test mounted it.
struct HostTracefs {
    mounted_here: bool,
}

impl HostTracefs {
    const DIR: &str = "/sys/kernel/tracing";

    fn ensure() -> anyhow::Result<Self> {
        if Path::new(Self::DIR).join("events").is_dir() {
            return Ok(Self {
                mounted_here: false,
            });
        }
        let status = Command::new("mount")
            .args(["-t", "tracefs", "nodev", Self::DIR])
            .status()?;
        ensure!(status.success(), "mounting tracefs at {} failed", Self::DIR);
        Ok(Self { mounted_here: true })
    }
}

impl Drop for HostTracefs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = Command::new("umount").arg(Self::DIR).status();
        }
    }
}
