//! Which cgroup paths belong to containers, and what the path alone says about them.
//!
//! Runtimes and kubelet cgroup drivers name cgroups differently; the leaf names the
//! container, the ancestors name the pod and its QoS class:
//!
//! | driver, runtime | leaf |
//! |---|---|
//! | systemd, containerd | `…/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope` |
//! | systemd, CRI-O | `…/kubepods-pod<uid_>.slice/crio-<id>.scope` |
//! | systemd, docker | `…/docker-<id>.scope` |
//! | cgroupfs, any | `/kubepods/besteffort/pod<uid>/<id>` (CRI-O: `crio-<id>`) |
//! | docker without Kubernetes | `/docker/<id>`, `/system.slice/docker-<id>.scope` |
//!
//! The systemd driver writes the pod uid with `_` for `-`.
//!
//! A kubelet started with `--cgroup-root /X` puts its pods below `/X/kubepods`; the agent on
//! that node is given the same root and reads paths relative to it ([`parse_below`]). A
//! kubepods level deeper than the top belongs to such a node, never to the agent of the
//! root: nested nodes' pods are not counted twice.

use std::path::Path;

/// The container runtime a cgroup name points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
}

/// The pod's Kubernetes QoS class, from the kubepods level its cgroup sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// What a container's cgroup path says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPath {
    /// The runtime's container id: 64 lowercase hex digits.
    pub id: String,
    /// `None` where the name carries no runtime prefix (cgroupfs with containerd).
    pub runtime: Option<Runtime>,
    /// The pod uid, with dashes, for containers under kubepods.
    pub pod_uid: Option<String>,
    pub qos: Option<Qos>,
}

/// Parses a cgroup path (relative to any hierarchy's mount); `None` for cgroups that are not
/// a container's own: host services, pod-level cgroups, CRI-O's conmon, the root, and pods
/// of a node with a cgroup root of its own.
pub fn parse(path: &str) -> Option<ContainerPath> {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    let (leaf, ancestors) = parts.split_last()?;
    if ancestors.iter().skip(1).any(|part| is_kubepods(part)) {
        return None;
    }
    let (id, mut runtime) = container_id(leaf)?;
    if runtime.is_none() && ancestors.last() == Some(&"docker") {
        runtime = Some(Runtime::Docker);
    }
    let in_kubepods = ancestors.first().is_some_and(|top| is_kubepods(top));
    let (pod_uid, qos) = if in_kubepods {
        let pod_uid = ancestors.iter().rev().find_map(|part| pod_uid(part));
        let qos = pod_uid.as_ref().map(|_| qos(ancestors));
        (pod_uid, qos)
    } else {
        (None, None)
    };
    if in_kubepods && pod_uid.is_none() {
        // Something below kubepods that is not inside a pod is not a container of ours.
        return None;
    }
    Some(ContainerPath {
        id: id.to_owned(),
        runtime,
        pod_uid,
        qos,
    })
}

/// Parses `path` (relative to a hierarchy's mount) as seen from `root`, the node's cgroup
/// root (the kubelet's `--cgroup-root`; `/` by default); `None` outside the root.
pub fn parse_below(root: &Path, path: &Path) -> Option<ContainerPath> {
    let relative = path.strip_prefix(root).ok()?;
    parse(relative.to_str()?)
}

fn is_kubepods(part: &str) -> bool {
    part == "kubepods" || part == "kubepods.slice"
}

fn container_id(leaf: &str) -> Option<(&str, Option<Runtime>)> {
    let name = leaf.strip_suffix(".scope").unwrap_or(leaf);
    let (id, runtime) = if let Some(id) = name.strip_prefix("cri-containerd-") {
        (id, Some(Runtime::Containerd))
    } else if let Some(id) = name.strip_prefix("crio-") {
        (id, Some(Runtime::CriO))
    } else if let Some(id) = name.strip_prefix("docker-") {
        (id, Some(Runtime::Docker))
    } else {
        (name, None)
    };
    is_container_id(id).then_some((id, runtime))
}

fn is_container_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_>.slice` (systemd).
fn pod_uid(part: &str) -> Option<String> {
    let raw = match part.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod")?.1,
        None => part.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    let looks_like_uid = uid.len() >= 32 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    looks_like_uid.then_some(uid)
}

fn qos(ancestors: &[&str]) -> Qos {
    let named = |class: &str| {
        ancestors
            .iter()
            .any(|part| *part == class || *part == format!("kubepods-{class}.slice"))
    };
    if named("besteffort") {
        Qos::BestEffort
    } else if named("burstable") {
        Qos::Burstable
    } else {
        // Guaranteed pods sit directly below kubepods.
        Qos::Guaranteed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4b2a1c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";
    const UID: &str = "8d5b3f6e-2c1a-4b9e-9f7d-0a1b2c3d4e5f";

    fn uid_(uid: &str) -> String {
        uid.replace('-', "_")
    }

    fn container(runtime: Option<Runtime>, qos: Option<Qos>) -> Option<ContainerPath> {
        Some(ContainerPath {
            id: ID.to_owned(),
            runtime,
            pod_uid: qos.map(|_| UID.to_owned()),
            qos,
        })
    }

    #[test]
    fn systemd_driver_paths() {
        let u = uid_(UID);
        let cases = [
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope"
                ),
                container(Some(Runtime::Containerd), Some(Qos::Burstable)),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/crio-{ID}.scope"
                ),
                container(Some(Runtime::CriO), Some(Qos::BestEffort)),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{u}.slice/docker-{ID}.scope"),
                container(Some(Runtime::Docker), Some(Qos::Guaranteed)),
            ),
            (
                format!("/system.slice/docker-{ID}.scope"),
                container(Some(Runtime::Docker), None),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(parse(&path), expected, "{path}");
        }
    }

    #[test]
    fn cgroupfs_driver_paths() {
        let cases = [
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                container(None, Some(Qos::Burstable)),
            ),
            (
                format!("/kubepods/besteffort/pod{UID}/{ID}"),
                container(None, Some(Qos::BestEffort)),
            ),
            (
                format!("/kubepods/pod{UID}/{ID}"),
                container(None, Some(Qos::Guaranteed)),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
                container(Some(Runtime::CriO), Some(Qos::Burstable)),
            ),
            (
                format!("/docker/{ID}"),
                container(Some(Runtime::Docker), None),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(parse(&path), expected, "{path}");
        }
    }

    #[test]
    fn paths_that_are_not_containers() {
        let u = uid_(UID);
        let paths = [
            String::new(),
            "/".to_owned(),
            "/init.scope".to_owned(),
            "/system.slice/containerd.service".to_owned(),
            "/user.slice/user-0.slice/session-1.scope".to_owned(),
            "/kubepods".to_owned(),
            "/kubepods/burstable".to_owned(),
            format!("/kubepods/burstable/pod{UID}"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice"),
            format!("/kubepods.slice/kubepods-pod{u}.slice/crio-conmon-{ID}.scope"),
            // A container id right under kubepods, outside any pod.
            format!("/kubepods/burstable/{ID}"),
            // Too short, or not hex.
            format!("/docker/{}", &ID[..12]),
            format!("/docker/{}", ID.replace('a', "g")),
            // A pod of a node whose kubelet has a cgroup root of its own.
            format!("/nodes/a/kubepods/burstable/pod{UID}/{ID}"),
        ];
        for path in paths {
            assert_eq!(parse(&path), None, "{path}");
        }
    }

    #[test]
    fn paths_below_a_cgroup_root_are_read_relative_to_it() {
        let path = format!("/nodes/a/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(
            parse_below(Path::new("/nodes/a"), Path::new(&path)),
            container(None, Some(Qos::Burstable))
        );
        assert_eq!(
            parse_below(
                Path::new("/"),
                Path::new(&format!("/kubepods/pod{UID}/{ID}"))
            ),
            container(None, Some(Qos::Guaranteed))
        );
        // Another node's pods, seen from this node's root or from the host's.
        let other = format!("/nodes/b/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse_below(Path::new("/nodes/a"), Path::new(&other)), None);
        assert_eq!(parse_below(Path::new("/"), Path::new(&other)), None);
    }
}
