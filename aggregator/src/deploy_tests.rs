//! `deploy/` against `herd-aggregator`: the Deployment, its Service and its claim, parsed into
//! the Kubernetes API types, agree with this binary. Every variable is one it reads with a
//! value it accepts, every path it uses is mounted, its ports are the Service's, the agents'
//! configured URL is the Service, and the volume it keeps its store in is the claim's. The
//! negative test changes one side and checks that the agreement fails.

#[path = "../../agent/src/deploy_tests/kustomize.rs"]
mod kustomize;

use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Container, PersistentVolumeClaim, PodSpec, Service},
};

use kustomize::{kustomize, parse};

struct Build {
    deployment: Deployment,
    service: Service,
    claim: PersistentVolumeClaim,
    /// The agents' configuration file (the ConfigMap herd-agent-config's agent.toml).
    agent_file: String,
}

fn build() -> Build {
    let objects = kustomize("");
    let config: ConfigMap = parse(&objects, "ConfigMap");
    Build {
        deployment: parse(&objects, "Deployment"),
        service: parse(&objects, "Service"),
        claim: parse(&objects, "PersistentVolumeClaim"),
        agent_file: config
            .data
            .and_then(|d| d.get("agent.toml").cloned())
            .unwrap_or_default(),
    }
}

fn pod(build: &Build) -> &PodSpec {
    build
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template")
}

/// The port of an address such as `0.0.0.0:7700`.
fn port(addr: &str) -> Option<i32> {
    addr.rsplit_once(':')?.1.parse().ok()
}

fn disagreements(build: &Build) -> Vec<String> {
    let mut problems = Vec::new();
    let command = crate::Cli::command();
    let pod = pod(build);
    let [container]: &[Container; 1] = pod.containers.as_slice().try_into().unwrap_or_else(|_| {
        panic!("the aggregator's pod has one container");
    });
    let version = env!("CARGO_PKG_VERSION");
    if container.image.as_deref() != Some(&format!("herd-aggregator:{version}")) {
        problems.push(format!(
            "image {:?}, not herd-aggregator:{version} (the crate's version)",
            container.image
        ));
    }
    if pod.automount_service_account_token != Some(false) {
        problems.push("the pod mounts a service account token it does not use".into());
    }
    let mounts: Vec<(PathBuf, String)> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (PathBuf::from(&m.mount_path), m.name.clone()))
        .collect();
    let mut settings: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        if matches!(var.name.as_str(), "HERD_LOG" | "HERD_LOG_FORMAT") {
            continue;
        }
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == var.name.as_str()))
        else {
            problems.push(format!(
                "variable {} is not one herd-aggregator reads",
                var.name
            ));
            continue;
        };
        let long = arg.get_long().unwrap_or_default().to_owned();
        let value = var.value.clone().unwrap_or_default();
        if let Err(err) = command
            .clone()
            .try_get_matches_from(["herd-aggregator".to_owned(), format!("--{long}={value}")])
        {
            let text = err.to_string();
            problems.push(format!(
                "{}={value:?}: {}",
                var.name,
                text.lines().next().unwrap_or("")
            ));
        }
        if value.starts_with('/') && !mounts.iter().any(|(m, _)| Path::new(&value).starts_with(m)) {
            problems.push(format!("--{long} {value} is not in any of its mounts"));
        }
        settings.push((long, value));
    }
    let setting = |long: &str| {
        settings
            .iter()
            .find(|(l, _)| l == long)
            .map(|(_, v)| v.clone())
    };
    // Its ports: the gRPC listener and /metrics, as the container and the Service name them.
    let container_port = |name: &str| {
        container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
    };
    for (name, long) in [("grpc", "listen"), ("metrics", "metrics-listen")] {
        let served = setting(long).as_deref().and_then(port);
        if served.is_none() || served != container_port(name) {
            problems.push(format!(
                "container port {name} {:?}, but --{long} serves {served:?}",
                container_port(name)
            ));
        }
        let in_service = build
            .service
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .any(|p| p.name.as_deref() == Some(name));
        if !in_service {
            problems.push(format!("the Service has no port {name}"));
        }
    }
    // The agents dial the Service's name, namespace and gRPC port.
    let url = build
        .agent_file
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("aggregator")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    let service_name = build.service.metadata.name.clone().unwrap_or_default();
    let namespace = build.service.metadata.namespace.clone().unwrap_or_default();
    let grpc_port = build
        .service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("grpc"))
        .map(|p| p.port);
    let expected = format!(
        "https://{service_name}.{namespace}.svc:{}",
        grpc_port.unwrap_or_default()
    );
    if url != expected {
        problems.push(format!(
            "the agents dial {url:?}, the Service is {expected}"
        ));
    }
    // The store: --data-dir on the claim's volume.
    let data_dir = setting("data-dir").unwrap_or_default();
    let claim = build.claim.metadata.name.clone().unwrap_or_default();
    let on_claim = mounts.iter().any(|(path, volume)| {
        Path::new(&data_dir).starts_with(path)
            && pod.volumes.iter().flatten().any(|v| {
                &v.name == volume
                    && v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == claim)
            })
    });
    if !on_claim {
        problems.push(format!(
            "--data-dir {data_dir:?} is not on the claim {claim}"
        ));
    }
    // Probes on the ports it serves.
    for (kind, probe) in [
        ("liveness", &container.liveness_probe),
        ("readiness", &container.readiness_probe),
    ] {
        let named = probe.as_ref().and_then(|p| {
            p.tcp_socket
                .as_ref()
                .map(|t| t.port.clone())
                .or_else(|| p.http_get.as_ref().map(|h| h.port.clone()))
        });
        match named {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name))
                if container_port(&name).is_some() => {}
            other => problems.push(format!("{kind} probe on {other:?}, not a port it serves")),
        }
    }
    problems
}

#[test]
fn the_deployment_agrees_with_the_aggregator() {
    let problems = disagreements(&build());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each side changed alone: the agreement fails, naming what differs.
#[test]
fn a_change_to_one_side_alone_fails() {
    fn container(build: &mut Build) -> &mut Container {
        let spec = build.deployment.spec.as_mut().unwrap();
        &mut spec.template.spec.as_mut().unwrap().containers[0]
    }
    let fails = |change: &dyn Fn(&mut Build), want: &str| {
        let mut build = build();
        assert!(disagreements(&build).is_empty());
        change(&mut build);
        let problems = disagreements(&build);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "expected a problem with {want:?}, got {problems:?}"
        );
    };
    fails(
        &|b| container(b).env.as_mut().unwrap()[0].name = "HERD_LISTEN".into(),
        "HERD_LISTEN is not one",
    );
    fails(
        &|b| container(b).env.as_mut().unwrap()[0].value = Some("0.0.0.0:7701".into()),
        "container port grpc",
    );
    fails(
        &|b| {
            let env = container(b).env.as_mut().unwrap();
            let dir = env.iter_mut().find(|v| v.name == "HERD_DATA_DIR").unwrap();
            dir.value = Some("/data".into());
        },
        "--data-dir /data is not in any of its mounts",
    );
    fails(
        &|b| b.agent_file = b.agent_file.replace(":7700", ":7443"),
        "the agents dial",
    );
    fails(
        &|b| {
            let probe = container(b).liveness_probe.as_mut().unwrap();
            probe.tcp_socket.as_mut().unwrap().port =
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("admin".into());
        },
        "liveness probe",
    );
}
