//! `deploy/` against the agent: every kustomization builds (with the `kubectl` that
//! `cargo xtask setup` ensures), and the DaemonSet each one builds, parsed into the Kubernetes
//! API types, agrees with this binary. Every flag, variable, path, port and probe it names is
//! one the agent accepts; every host path the agent reads (`config::host::host_paths`) is
//! mounted, read-only but for its socket directory, and nothing else from the host is; every
//! capability it uses (`config::host::CAPABILITIES`) is granted and no other. The negative
//! tests change one side and check that the agreement fails.

mod kustomize;

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    path::{Path, PathBuf},
};

use herd_agent::config::{self, AGENT_FILE, host};
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{ConfigMap, Container, PodSpec},
};
use kustomize::{kustomize, parse};

/// The installable kustomizations: `deploy/` itself, then each overlay.
const BUILDS: &[&str] = &[
    "",
    "overlays/crio",
    "overlays/k3s",
    "overlays/legacy-kernel",
];

/// The capabilities each build grants in place of BPF and PERFMON, if any.
fn legacy(build: &str) -> bool {
    build == "overlays/legacy-kernel"
}

/// The DaemonSet and the agent's configuration file of one build.
struct Build {
    name: String,
    daemonset: DaemonSet,
    config_maps: Vec<ConfigMap>,
}

fn build(dir: &str) -> Build {
    let objects = kustomize(dir);
    let config_maps = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| serde_json::from_value(o.clone()).expect("a ConfigMap"))
        .collect();
    Build {
        name: if dir.is_empty() {
            "deploy/".into()
        } else {
            format!("deploy/{dir}")
        },
        daemonset: parse(&objects, "DaemonSet"),
        config_maps,
    }
}

fn pod(build: &Build) -> &PodSpec {
    build
        .daemonset
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("the DaemonSet has a pod template")
}

/// Every way the build disagrees with the agent, in words.
fn disagreements(build: &Build, legacy: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let pod = pod(build);
    let mut say = |problem: String| problems.push(format!("{}: {problem}", build.name));

    if pod.host_pid != Some(true) {
        say("hostPID is not set: the agent reads every container's /proc/<pid>".into());
    }
    if pod.automount_service_account_token != Some(false) {
        say("the pod mounts a service account token; the agent reads nothing from the API".into());
    }
    let tolerates_all =
        pod.tolerations.iter().flatten().any(|t| {
            t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()
        });
    if !tolerates_all {
        say("no toleration for every taint: some nodes would go unwatched".into());
    }
    let containers: Vec<&Container> = pod
        .init_containers
        .iter()
        .flatten()
        .chain(pod.containers.iter())
        .collect();
    if !containers.iter().any(|c| {
        args(c).first().map(String::as_str) == Some("probe")
            && args(c).iter().any(|a| a.starts_with("--require"))
    }) {
        say("no init container runs `herd-agent probe --require …`".into());
    }
    for container in &containers {
        for problem in container_disagreements(pod, container, &build.config_maps, legacy) {
            say(format!("container {}: {problem}", container.name));
        }
    }
    // Nothing else from the host: each hostPath is a path the agent reads, or a runtime
    // socket.
    let wanted: Vec<PathBuf> = host::host_paths().into_iter().map(|p| p.path).collect();
    for volume in pod.volumes.iter().flatten() {
        let Some(host_path) = &volume.host_path else {
            continue;
        };
        let path = Path::new(&host_path.path);
        let known = wanted.iter().any(|w| w == path)
            || host::runtime_sockets().iter().any(|s| Path::new(s) == path);
        if !known {
            say(format!(
                "volume {} mounts {} from the host, which the agent does not read",
                volume.name, host_path.path
            ));
        }
    }
    problems
}

fn args(container: &Container) -> Vec<String> {
    container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .cloned()
        .collect()
}

/// The argument of the agent's command line (in any subcommand) that has this variable, with
/// the subcommands leading to it.
fn arg_of_env(command: &clap::Command, env: &str) -> Option<(Vec<String>, clap::Arg)> {
    if let Some(arg) = command
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == env))
    {
        return Some((Vec::new(), arg.clone()));
    }
    command.get_subcommands().find_map(|sub| {
        arg_of_env(sub, env).map(|(mut path, arg)| {
            path.insert(0, sub.get_name().to_owned());
            (path, arg)
        })
    })
}

/// Settings whose values start with `/` but are not files: a cgroup path, read below the
/// mounted cgroup hierarchies.
const NOT_FILES: &[&str] = &["cgroup-root"];

/// Variables the agent reads that are not flags (telemetry's).
const PLAIN_VARIABLES: &[&str] = &["HERD_LOG", "HERD_LOG_FORMAT"];

fn container_disagreements(
    pod: &PodSpec,
    container: &Container,
    config_maps: &[ConfigMap],
    legacy: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let command = crate::command();
    let version = env!("CARGO_PKG_VERSION");
    let image = container.image.as_deref().unwrap_or_default();
    if image != format!("herd-agent:{version}") {
        problems.push(format!(
            "image {image}, not herd-agent:{version} (the crate's version)"
        ));
    }

    // The file: where the agent looks for it, from the ConfigMap mounted there.
    let mounts = mounts(pod, container);
    let file_path = Path::new(AGENT_FILE.default_path);
    let file_text = mounts
        .iter()
        .find(|m| file_path.starts_with(&m.mount_path))
        .and_then(|m| m.config_map.as_ref())
        .and_then(|name| {
            config_maps
                .iter()
                .find(|c| c.metadata.name.as_ref() == Some(name))
        })
        .and_then(|c| c.data.as_ref())
        .and_then(|data| data.get(file_path.file_name()?.to_str()?))
        .cloned();
    if file_text.is_none() {
        problems.push(format!(
            "no configuration file at {} (the ConfigMap herd-agent-config)",
            file_path.display()
        ));
    }
    let file = file_text.map(|text| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, &text).expect("writing the file");
        (dir, path, text)
    });

    // The command line as the container runs it, with each variable as the flag it stands
    // for, parsed by the agent with the file applied.
    let mut argv: Vec<OsString> = vec!["herd-agent".into()];
    argv.extend(args(container).into_iter().map(OsString::from));
    let subcommand = args(container).first().cloned().unwrap_or_default();
    let mut values: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        if PLAIN_VARIABLES.contains(&var.name.as_str()) {
            continue;
        }
        let Some((path, arg)) = arg_of_env(&command, &var.name) else {
            problems.push(format!("variable {} is not one the agent reads", var.name));
            continue;
        };
        let long = arg.get_long().unwrap_or_default().to_owned();
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => {
                let field = from.field_ref.as_ref().map(|f| f.field_path.as_str());
                if var.name == "HERD_NODE_NAME" && field != Some("spec.nodeName") {
                    problems.push("HERD_NODE_NAME is not the downward API's spec.nodeName".into());
                }
                "node-1".into()
            }
            (None, None) => String::new(),
        };
        // A variable of another subcommand is checked by that subcommand's parser.
        let mut check: Vec<OsString> = vec!["herd-agent".into()];
        check.extend(path.iter().map(OsString::from));
        check.push(format!("--{long}={value}").into());
        if let Err(err) = command.clone().try_get_matches_from(&check) {
            problems.push(format!("{}={value:?}: {}", var.name, first_line(&err)));
        }
        if path.first().is_none_or(|p| *p == subcommand) || path.is_empty() {
            values.push((long, value));
        }
    }
    if let Some((_, path, _)) = &file {
        argv.push(format!("--{}={}", AGENT_FILE.flag, path.display()).into());
    }
    let (layered, _) = match config::apply_file(command.clone(), &argv, &AGENT_FILE, |_| None) {
        Ok(layered) => layered,
        Err(err) => {
            problems.push(format!("its configuration file: {err}"));
            return problems;
        }
    };
    match layered.clone().try_get_matches_from(&argv) {
        Ok(matches) => {
            // Every path the agent will use is mounted.
            let (sub_name, sub_matches) = matches.subcommand().unwrap_or(("", &matches));
            let mut built = layered.clone();
            built.build();
            let sub = built.find_subcommand(sub_name).unwrap_or(&built);
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                let long = arg.get_long().unwrap_or_default();
                if long == AGENT_FILE.flag || NOT_FILES.contains(&long) {
                    continue;
                }
                let given = values
                    .iter()
                    .find(|(long, _)| Some(long.as_str()) == arg.get_long())
                    .map(|(_, v)| vec![v.clone()]);
                let used = given.or_else(|| {
                    sub_matches
                        .get_raw(id)
                        .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                });
                for value in used.into_iter().flatten() {
                    if value.starts_with('/') && !is_mounted(&mounts, Path::new(&value)) {
                        problems.push(format!(
                            "--{} {value} is not in any of its mounts",
                            arg.get_long().unwrap_or(id)
                        ));
                    }
                }
            }
        }
        Err(err) => problems.push(format!("its arguments: {}", first_line(&err))),
    }

    // Every host path the agent reads, mounted from the same host path, read-only but where
    // it writes.
    for wanted in host::host_paths() {
        match mounts
            .iter()
            .find(|m| wanted.path.starts_with(&m.mount_path))
        {
            Some(mount) if mount.host_path.as_deref() != Some(mount.mount_path.as_path()) => {
                problems.push(format!(
                    "{} is mounted from {:?}, not from the host's {}",
                    wanted.path.display(),
                    mount.host_path,
                    mount.mount_path.display()
                ))
            }
            Some(mount) if mount.read_only == wanted.writes => problems.push(format!(
                "{} is mounted {} (the agent {} there)",
                wanted.path.display(),
                if mount.read_only {
                    "read-only"
                } else {
                    "read-write"
                },
                if wanted.writes {
                    "writes"
                } else {
                    "only reads"
                }
            )),
            Some(_) => {}
            None => problems.push(format!(
                "{} is not mounted: the agent reads it for {}",
                wanted.path.display(),
                wanted.why
            )),
        }
    }
    for mount in &mounts {
        let wanted = host::host_paths()
            .into_iter()
            .find(|w| w.path.starts_with(&mount.mount_path));
        if !mount.read_only && wanted.is_none_or(|w| !w.writes) {
            problems.push(format!(
                "{} is mounted read-write; the agent writes only below {}",
                mount.mount_path.display(),
                host::API_SOCKET_DIR
            ));
        }
    }
    // The runtime's socket: one of the runtimes the agent knows, where HERD_RUNTIME_SOCKET
    // says.
    let runtime = container
        .env
        .iter()
        .flatten()
        .find(|v| v.name == "HERD_RUNTIME_SOCKET")
        .and_then(|v| v.value.clone());
    match runtime {
        Some(socket) => {
            match mounts.iter().find(|m| m.mount_path == Path::new(&socket)) {
                Some(mount)
                    if mount.host_path.as_ref().is_some_and(|p| {
                        host::runtime_sockets().iter().any(|s| Path::new(s) == p)
                    }) => {}
                other => problems.push(format!(
                    "HERD_RUNTIME_SOCKET {socket} is not a runtime socket the agent knows mounted \
                 there ({:?})",
                    other.map(|m| &m.host_path)
                )),
            }
        }
        None => problems.push("no HERD_RUNTIME_SOCKET".into()),
    }

    // Capabilities: those the agent uses and no other, every default dropped, no privilege.
    let security = container.security_context.clone().unwrap_or_default();
    if security.privileged == Some(true) {
        problems.push("privileged".into());
    }
    let caps = security.capabilities.unwrap_or_default();
    if caps.drop.as_deref() != Some(&["ALL".to_owned()][..]) {
        problems.push(format!("drops {:?}, not [ALL]", caps.drop));
    }
    let granted: BTreeSet<String> = caps.add.into_iter().flatten().collect();
    let needed: BTreeSet<String> = host::CAPABILITIES
        .iter()
        .filter(|c| !(legacy && matches!(c.name, "BPF" | "PERFMON")))
        .map(|c| c.name.to_owned())
        .chain(legacy.then(|| host::LEGACY_ADMIN.name.to_owned()))
        .collect();
    for cap in needed.difference(&granted) {
        problems.push(format!("CAP_{cap} is not granted"));
    }
    for cap in granted.difference(&needed) {
        problems.push(format!(
            "CAP_{cap} is granted but the agent does not use it"
        ));
    }

    // Probes: the agent's own health command, and ports it serves.
    if container.name == "agent" {
        for (kind, probe) in [
            ("readiness", &container.readiness_probe),
            ("liveness", &container.liveness_probe),
        ] {
            let command_line = probe
                .as_ref()
                .and_then(|p| p.exec.as_ref())
                .and_then(|e| e.command.clone());
            match command_line {
                Some(line) if line.get(1).map(String::as_str) == Some("health") => {
                    if let Err(err) = command.clone().try_get_matches_from(&line) {
                        problems.push(format!("{kind} probe {line:?}: {}", first_line(&err)));
                    }
                }
                other => problems.push(format!(
                    "{kind} probe {other:?} is not `herd-agent health` (grpc.health.v1)"
                )),
            }
        }
        let metrics = file
            .as_ref()
            .and_then(|(_, _, text)| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("metrics-listen")?.as_str().map(str::to_owned))
            .and_then(|addr| addr.rsplit_once(':')?.1.parse::<i32>().ok());
        let ports: BTreeMap<String, i32> = container
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
            .collect();
        if metrics != ports.get("metrics").copied() || ports.len() != 1 {
            problems.push(format!(
                "ports {ports:?}; the agent serves only metrics-listen, on port {metrics:?}"
            ));
        }
    }
    problems
}

/// One volume mount, with what backs it.
struct Mount {
    mount_path: PathBuf,
    read_only: bool,
    host_path: Option<PathBuf>,
    config_map: Option<String>,
}

fn mounts(pod: &PodSpec, container: &Container) -> Vec<Mount> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let volume = pod.volumes.iter().flatten().find(|v| v.name == m.name);
            Mount {
                mount_path: PathBuf::from(&m.mount_path),
                read_only: m.read_only == Some(true),
                host_path: volume
                    .and_then(|v| v.host_path.as_ref())
                    .map(|h| PathBuf::from(&h.path)),
                config_map: volume
                    .and_then(|v| v.config_map.as_ref())
                    .map(|c| c.name.clone()),
            }
        })
        .collect()
}

fn is_mounted(mounts: &[Mount], path: &Path) -> bool {
    mounts.iter().any(|m| path.starts_with(&m.mount_path))
}

fn first_line(err: &clap::Error) -> String {
    err.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

#[test]
fn every_kustomization_builds() {
    for dir in BUILDS.iter().chain(&["monitoring"]) {
        let objects = kustomize(dir);
        assert!(!objects.is_empty(), "deploy/{dir} builds nothing");
    }
}

#[test]
fn every_build_agrees_with_the_agent() {
    let problems: Vec<String> = BUILDS
        .iter()
        .flat_map(|dir| disagreements(&build(dir), legacy(dir)))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_api_socket_directory_is_the_sockets() {
    let mut built = crate::command();
    built.build();
    let socket = built
        .find_subcommand("run")
        .and_then(|run| run.get_arguments().find(|a| a.get_long() == Some("socket")))
        .and_then(|a| a.get_default_values().first().cloned())
        .expect("run --socket has a default");
    assert_eq!(
        Path::new(&socket).parent(),
        Some(Path::new(host::API_SOCKET_DIR))
    );
}

/// Each side changed alone: the agreement fails, naming what differs.
#[test]
fn a_change_to_one_side_alone_fails() {
    let fails = |change: &dyn Fn(&mut Build), want: &str| {
        let mut build = build("");
        assert!(disagreements(&build, false).is_empty());
        change(&mut build);
        let problems = disagreements(&build, false);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "expected a problem with {want:?}, got {problems:?}"
        );
    };
    fn agent(build: &mut Build) -> &mut Container {
        let spec = build.daemonset.spec.as_mut().unwrap();
        let pod = spec.template.spec.as_mut().unwrap();
        &mut pod.containers[0]
    }
    // A capability the agent uses, taken away; one it does not use, added.
    fails(
        &|b| {
            let caps = agent(b)
                .security_context
                .as_mut()
                .unwrap()
                .capabilities
                .as_mut();
            caps.unwrap()
                .add
                .as_mut()
                .unwrap()
                .retain(|c| c != "SYS_PTRACE");
        },
        "CAP_SYS_PTRACE is not granted",
    );
    fails(
        &|b| {
            let caps = agent(b)
                .security_context
                .as_mut()
                .unwrap()
                .capabilities
                .as_mut();
            caps.unwrap().add.as_mut().unwrap().push("SYS_ADMIN".into());
        },
        "CAP_SYS_ADMIN is granted",
    );
    // A variable the agent does not have; a value it refuses.
    fails(
        &|b| agent(b).env.as_mut().unwrap()[1].name = "HERD_RUNTIME".into(),
        "HERD_RUNTIME is not one",
    );
    fails(
        &|b| {
            agent(b)
                .env
                .as_mut()
                .unwrap()
                .push(k8s_openapi::api::core::v1::EnvVar {
                    name: "HERD_INTERVAL".into(),
                    value: Some("often".into()),
                    ..Default::default()
                })
        },
        "HERD_INTERVAL=\"often\"",
    );
    // A host path the agent reads, unmounted; a mount made writable.
    fails(
        &|b| {
            agent(b)
                .volume_mounts
                .as_mut()
                .unwrap()
                .retain(|m| m.mount_path != "/sys/kernel/btf")
        },
        "/sys/kernel/btf is not mounted",
    );
    fails(
        &|b| {
            let mounts = agent(b).volume_mounts.as_mut().unwrap();
            mounts.iter_mut().for_each(|m| m.read_only = None);
        },
        "/sys/fs/cgroup is mounted read-write",
    );
    // A path in the agent's settings that no mount holds.
    fails(
        &|b| {
            let data = b.config_maps[0].data.as_mut().unwrap();
            let text = data.get_mut("agent.toml").unwrap();
            *text = text.replace("/etc/herd-tls/tls.crt", "/etc/ssl/herd.crt");
        },
        "--tls-cert /etc/ssl/herd.crt is not in any of its mounts",
    );
    // A key the agent's file does not have.
    fails(
        &|b| {
            let data = b.config_maps[0].data.as_mut().unwrap();
            data.get_mut("agent.toml")
                .unwrap()
                .push_str("\nwindow = \"10s\"\n");
        },
        "unknown key `window`",
    );
    // A probe the agent does not answer; an argument it does not take.
    fails(
        &|b| {
            let probe = agent(b).readiness_probe.as_mut().unwrap();
            probe.exec.as_mut().unwrap().command = Some(vec!["herd-agent".into(), "ready".into()]);
        },
        "readiness probe",
    );
    fails(
        &|b| agent(b).args = Some(vec!["run".into(), "--intervall=5s".into()]),
        "--intervall",
    );
    // The agent reads a new host path that the DaemonSet does not mount: seen through the
    // same list, which `host_paths` gives and the check walks.
    fails(
        &|b| {
            let spec = b.daemonset.spec.as_mut().unwrap();
            let pod = spec.template.spec.as_mut().unwrap();
            pod.volumes
                .as_mut()
                .unwrap()
                .push(k8s_openapi::api::core::v1::Volume {
                    name: "etc".into(),
                    host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
                        path: "/etc".into(),
                        type_: None,
                    }),
                    ..Default::default()
                });
        },
        "mounts /etc from the host",
    );
}
