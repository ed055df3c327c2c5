//! Least privilege, against the lab: the real agent, started as root with every capability,
//! keeps only CAP_SYS_PTRACE once its eBPF programs are attached (effective and permitted, on
//! every thread), nothing inheritable, ambient or in its bounding set, and `no_new_privs`;
//! and its windows still carry eBPF counters (syscalls, socket bytes) and the pods' own
//! network-namespace counters (refused connects from `/proc/<pid>/net/snmp`) after the drop.
//! Root only; it takes the lab.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context as _, ensure};
use herd_proto::herd::v1 as pb;
use herd_tests::{
    agent::AgentProcess,
    aggregator::eventually,
    built_binary,
    lab::{self, Lab, LabSpec, Workload},
    require_root,
};

const NAMESPACE: &str = "least-privilege";
const NODE: &str = "least-privilege-node";
/// CAP_SYS_PTRACE, bit 19: all the agent keeps.
const SYS_PTRACE: u64 = 1 << 19;
/// Each replica moves bytes through TCP sockets on its loopback (the eBPF socket counters)
/// and has connects refused (TCP's failed connects, in its network namespace's snmp).
const NETWORK_LOAD: &str = "stress-ng --sock 1 --sock-port 23000 --timeout 0 --quiet & \
     while :; do curl -s -m 1 http://127.0.0.1:9/ >/dev/null; sleep 0.2; done";

#[test]
fn the_agent_keeps_only_sys_ptrace_and_still_reads_ebpf_and_network_counters() -> anyhow::Result<()>
{
    require_root();
    lab::run_test(scenario())
}

async fn scenario() -> anyhow::Result<()> {
    let workload = Workload::deployment("talker")
        .namespace(NAMESPACE)
        .replicas(3)
        .cpu_millis(300)
        .memory_mib(64)
        .command(["sh", "-c", NETWORK_LOAD]);
    let lab = Lab::up(&LabSpec::new().workload(workload)).await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-capabilities-test");
    let _ = std::fs::remove_dir_all(&dir);
    let agent = AgentProcess::start(
        &built_binary("herd-agent")?,
        &dir,
        &[
            "--interval",
            "1s",
            "--discovery-interval",
            "1s",
            "--min-age",
            "1s",
            "--node-name",
            NODE,
            "--runtime-socket",
            &lab.socket().display().to_string(),
            "--duration",
            "10m",
        ],
    )
    .await?;

    // The API answers only after the drop: what the process holds now is what it runs with.
    let pid = agent.pid();
    let status = status_fields(&std::fs::read_to_string(format!("/proc/{pid}/status"))?);
    let field = |name: &str| {
        status
            .get(name)
            .copied()
            .with_context(|| format!("no {name} in /proc/{pid}/status: {status:?}"))
    };
    ensure!(
        field("CapEff")? == SYS_PTRACE && field("CapPrm")? == SYS_PTRACE,
        "the agent keeps exactly CAP_SYS_PTRACE: {status:x?}"
    );
    ensure!(
        field("CapInh")? == 0 && field("CapAmb")? == 0 && field("CapBnd")? == 0,
        "nothing inheritable, ambient or in the bounding set: {status:x?}"
    );
    ensure!(field("NoNewPrivs")? == 1, "no_new_privs is set: {status:?}");
    // Capabilities belong to threads: every thread of the agent holds the same.
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let fields = status_fields(&std::fs::read_to_string(task.join("status"))?);
        ensure!(
            fields.get("CapEff") == Some(&SYS_PTRACE)
                && fields.get("CapPrm") == Some(&SYS_PTRACE)
                && fields.get("CapBnd") == Some(&0),
            "thread {} holds other capabilities: {fields:x?}",
            task.display()
        );
    }
    let log = agent.log_text();
    ensure!(
        log.matches("capabilities dropped: keeping CAP_SYS_PTRACE and no_new_privs")
            .count()
            == 1,
        "the kept capabilities are logged once:\n{log}"
    );

    let mut client = agent.client().await?;
    let info = client.get_info(pb::GetInfoRequest {}).await?.into_inner();
    let active: Vec<&str> = info
        .signals
        .iter()
        .filter(|s| s.active)
        .map(|s| s.name.as_str())
        .collect();
    ensure!(
        ["syscalls", "network", "netns"]
            .iter()
            .all(|s| active.contains(s)),
        "eBPF and the network signals are active: {active:?}"
    );

    // Windows after the drop carry eBPF and network-namespace counters for every replica.
    let explained = eventually(
        Duration::from_secs(120),
        "every replica's windows carry eBPF and network counters",
        async || {
            let mut client = agent.client().await?;
            let containers = client
                .list_containers(pb::ListContainersRequest {
                    namespace: NAMESPACE.into(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .containers;
            if containers.len() < 3 {
                return Ok(None);
            }
            let mut seen = Vec::new();
            for container in &containers {
                let explained = client
                    .explain(pb::ExplainRequest {
                        pod: container.pod.clone(),
                        namespace: NAMESPACE.into(),
                        windows: 5,
                        ..Default::default()
                    })
                    .await;
                let Ok(explained) = explained else {
                    return Ok(None);
                };
                let counted = explained.into_inner().windows.iter().any(|window| {
                    let value = |name: &str| {
                        window
                            .features
                            .iter()
                            .find(|f| f.feature == name)
                            .map_or(0.0, |f| f.value)
                    };
                    value("syscalls_per_s") > 0.0
                        && value("socket_rx_bytes_per_s") > 0.0
                        && value("tcp_failed_connects_per_s") > 0.0
                });
                if !counted {
                    return Ok(None);
                }
                seen.push(container.pod.clone());
            }
            Ok(Some(seen))
        },
    )
    .await
    .with_context(|| agent.log_text())?;
    eprintln!("eBPF and network counters after the drop for {explained:?}");

    let status = agent.stop()?;
    ensure!(status.success(), "the agent's exit: {status}");
    Ok(())
}

/// The numeric fields of a `/proc/<pid>/status`: the capability sets (hex) and NoNewPrivs.
fn status_fields(status: &str) -> BTreeMap<String, u64> {
    status
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            let parsed = if name.starts_with("Cap") {
                u64::from_str_radix(value, 16).ok()?
            } else if name == "NoNewPrivs" {
                value.parse().ok()?
            } else {
                return None;
            };
            Some((name.to_owned(), parsed))
        })
        .collect()
}
