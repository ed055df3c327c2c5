//! The lab scenario the end-to-end tests share: five replicas of `shop/web` under a light
//! steady load, one of which hogs its CPU for a while.

use anyhow::Context as _;

use crate::{
    eval::STEADY_LOAD,
    lab::{Fault, FaultKind, Lab, Workload},
};

pub const NAMESPACE: &str = "shop";

/// `shop/web`, five replicas; `faulty` hogs its CPU from `after_secs` for `for_secs`.
pub fn web_with_cpu_hog(faulty: u32, after_secs: u64, for_secs: u64) -> Workload {
    Workload::deployment("web")
        .namespace(NAMESPACE)
        .replicas(5)
        .cpu_millis(500)
        .memory_mib(64)
        .command(STEADY_LOAD.iter().copied())
        .fault(
            Fault::new(faulty, FaultKind::CpuHog)
                .after_secs(after_secs)
                .for_secs(for_secs),
        )
}

/// The name of the pod of `replica` in `namespace`.
pub async fn pod_of_replica(lab: &Lab, namespace: &str, replica: u32) -> anyhow::Result<String> {
    Ok(lab
        .pods()
        .await?
        .into_iter()
        .find(|p| {
            p.namespace == namespace
                && p.annotations.get("herd.lab/replica").map(String::as_str)
                    == Some(&replica.to_string())
        })
        .with_context(|| format!("no pod of replica {replica} in {namespace}"))?
        .name)
}
