//! A container's domain: the set of containers that must behave alike, keyed by
//! `(namespace, owner kind, owner name, container name)`.
//!
//! The owner comes from the labels the controllers put on their pods, because that needs no
//! API server: `pod-template-hash` (ReplicaSet of a Deployment), `controller-revision-hash`
//! (StatefulSet or DaemonSet), `job-name` (Job); then `app.kubernetes.io/name`; then the
//! image repository. Containers outside Kubernetes are grouped by image alone.

use std::{collections::HashMap, fmt};

/// What kind of thing owns the pods of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnerKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    /// Pods grouped by their `app.kubernetes.io/name` label.
    App,
    /// Containers grouped by image repository: no better owner was known.
    Image,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::App => "App",
            Self::Image => "Image",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub kind: OwnerKind,
    pub name: String,
}

/// The peers of a container are the containers with the same domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain {
    /// Empty for containers outside Kubernetes.
    pub namespace: String,
    pub owner: Owner,
    pub container: String,
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let namespace = if self.namespace.is_empty() {
            "-"
        } else {
            &self.namespace
        };
        write!(
            f,
            "{namespace}/{}/{}/{}",
            self.owner.kind.as_str(),
            self.owner.name,
            self.container
        )
    }
}

/// What is known of a pod when its domain is decided.
#[derive(Clone, Copy, Debug)]
pub struct PodFacts<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub labels: &'a HashMap<String, String>,
}

/// Finds a pod's owner. The label-based [`LabelOwners`] needs nothing but the pod; an
/// implementation that asks the API server (for owners the labels cannot tell, such as a
/// Deployment renamed behind its ReplicaSet) goes behind the same trait.
pub trait OwnerLookup {
    fn owner(&self, pod: &PodFacts<'_>) -> Option<Owner>;
}

/// Owners from the labels Kubernetes controllers set on the pods they create.
#[derive(Clone, Copy, Debug, Default)]
pub struct LabelOwners;

impl OwnerLookup for LabelOwners {
    fn owner(&self, pod: &PodFacts<'_>) -> Option<Owner> {
        let label = |key: &str| pod.labels.get(key).map(String::as_str);
        let owner = |kind, name: &str| {
            Some(Owner {
                kind,
                name: name.to_owned(),
            })
        };
        if let Some(hash) = label("pod-template-hash") {
            // A Deployment's pods are named <deployment>-<hash>-<suffix>.
            if let Some((deployment, _)) = pod.name.split_once(&format!("-{hash}-")) {
                return owner(OwnerKind::Deployment, deployment);
            }
        }
        if let Some(revision) = label("controller-revision-hash") {
            // A StatefulSet's pods are <set>-<ordinal> and its revisions <set>-<hash>;
            // a DaemonSet's pods are <set>-<suffix> and its revisions a bare hash.
            if let Some((set, ordinal)) = pod.name.rsplit_once('-') {
                let ordinal_is_number =
                    !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit());
                if ordinal_is_number && revision.starts_with(&format!("{set}-")) {
                    return owner(OwnerKind::StatefulSet, set);
                }
                return owner(OwnerKind::DaemonSet, set);
            }
        }
        if let Some(job) = label("job-name") {
            return owner(OwnerKind::Job, job);
        }
        label("app.kubernetes.io/name").and_then(|app| owner(OwnerKind::App, app))
    }
}

/// The image repository: the reference without its tag or digest.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(repo, _)| repo);
    // A colon after the last slash starts the tag; one before it belongs to a registry port.
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// The domain of a container of a pod (or of no pod).
pub fn domain_of(
    lookup: &dyn OwnerLookup,
    pod: Option<&PodFacts<'_>>,
    container: &str,
    image: &str,
) -> Domain {
    let by_image = || Owner {
        kind: OwnerKind::Image,
        name: image_repository(image).to_owned(),
    };
    Domain {
        namespace: pod.map(|pod| pod.namespace.to_owned()).unwrap_or_default(),
        owner: pod
            .and_then(|pod| lookup.owner(pod))
            .unwrap_or_else(by_image),
        container: container.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn owner_of(name: &str, pairs: &[(&str, &str)]) -> Option<(OwnerKind, String)> {
        let labels = labels(pairs);
        let pod = PodFacts {
            name,
            namespace: "shop",
            labels: &labels,
        };
        LabelOwners.owner(&pod).map(|o| (o.kind, o.name))
    }

    #[test]
    fn owners_from_controller_labels() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(OwnerKind, &'a str)>,
        );
        let cases: &[Case] = &[
            (
                "web-frontend-7d9f8b6c5-x2k4p",
                &[("pod-template-hash", "7d9f8b6c5"), ("app", "web")],
                Some((OwnerKind::Deployment, "web-frontend")),
            ),
            (
                "db-2",
                &[("controller-revision-hash", "db-6b8f9c7d5")],
                Some((OwnerKind::StatefulSet, "db")),
            ),
            (
                "node-exporter-8xk2q",
                &[("controller-revision-hash", "5c4d8f7b9")],
                Some((OwnerKind::DaemonSet, "node-exporter")),
            ),
            (
                "nightly-report-29123450-abcde",
                &[("job-name", "nightly-report-29123450")],
                Some((OwnerKind::Job, "nightly-report-29123450")),
            ),
            (
                "handmade",
                &[("app.kubernetes.io/name", "cache")],
                Some((OwnerKind::App, "cache")),
            ),
            ("loner", &[("app", "x")], None),
            // The hash must be in the name where a Deployment puts it.
            ("renamed", &[("pod-template-hash", "abc")], None),
        ];
        for (name, pairs, expected) in cases {
            assert_eq!(
                owner_of(name, pairs),
                expected.map(|(kind, owner)| (kind, owner.to_owned())),
                "{name}"
            );
        }
    }

    #[test]
    fn image_repositories_drop_tag_and_digest_but_keep_registry_ports() {
        assert_eq!(image_repository("nginx:1.27"), "nginx");
        assert_eq!(
            image_repository("registry.local:5000/shop/cart:v2"),
            "registry.local:5000/shop/cart"
        );
        assert_eq!(
            image_repository("registry.local:5000/shop/cart"),
            "registry.local:5000/shop/cart"
        );
        assert_eq!(
            image_repository("quay.io/app@sha256:0123abcd"),
            "quay.io/app"
        );
        assert_eq!(image_repository("busybox"), "busybox");
    }

    #[test]
    fn domains_fall_back_to_the_image() {
        let empty = HashMap::new();
        let pod = PodFacts {
            name: "loner",
            namespace: "tools",
            labels: &empty,
        };
        let domain = domain_of(&LabelOwners, Some(&pod), "main", "herd/tools:1");
        assert_eq!(domain.to_string(), "tools/Image/herd/tools/main");

        let outside = domain_of(&LabelOwners, None, "redis", "redis:7");
        assert_eq!(outside.to_string(), "-/Image/redis/redis");
    }

    #[test]
    fn replicas_of_one_deployment_share_a_domain() {
        let a = labels(&[("pod-template-hash", "5f6d")]);
        let pod = |name| PodFacts {
            name,
            namespace: "shop",
            labels: &a,
        };
        let first = domain_of(&LabelOwners, Some(&pod("cart-5f6d-aaaaa")), "app", "cart:1");
        let second = domain_of(&LabelOwners, Some(&pod("cart-5f6d-bbbbb")), "app", "cart:2");
        assert_eq!(first, second);
        let sidecar = domain_of(
            &LabelOwners,
            Some(&pod("cart-5f6d-aaaaa")),
            "proxy",
            "envoy:1",
        );
        assert_ne!(first, sidecar, "each container of a pod has its own domain");
    }
}
