//! What a container runtime answers over CRI, `ListPodSandbox` then `ListContainers`, as
//! the agent turns it into pods, containers and their domains: missing fields, absurd
//! sizes and times, any labels.
#![no_main]

use herd_agent::discovery::{
    domain::{LabelOwners, PodFacts, domain_of},
    runtime::snapshot_from,
};
use herd_proto::cri::v1::{ListContainersResponse, ListPodSandboxResponse};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    // Two length-delimited messages, as two calls' bodies.
    let mut buf = data;
    let Ok(pods) = ListPodSandboxResponse::decode_length_delimited(&mut buf) else {
        return;
    };
    let containers = ListContainersResponse::decode_length_delimited(&mut buf).unwrap_or_default();
    let snapshot = snapshot_from(pods.items, containers.containers);
    for container in snapshot.containers.values() {
        let pod = snapshot.pods.get(&container.sandbox_id);
        let facts = pod.map(|pod| PodFacts {
            name: &pod.name,
            namespace: &pod.namespace,
            labels: &pod.labels,
        });
        let domain = domain_of(
            &LabelOwners,
            facts.as_ref(),
            &container.name,
            &container.image,
        );
        let _ = domain.to_string();
        let _ = snapshot.is_sandbox(&container.id);
    }
});
