//! The manifests as the API server would hold them: `kubectl kustomize` of a directory, each
//! object parsed into its Kubernetes API type when asked for.

use std::{path::Path, process::Command};

use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
use serde::de::DeserializeOwned;

use super::{super::cmd, KubeletError};

/// `kubectl kustomize` of a directory, each object as JSON.
pub struct Manifests {
    objects: Vec<serde_json::Value>,
}

impl Manifests {
    /// Builds `dir` (e.g. `deploy/`) with `kubectl kustomize`.
    pub fn build(dir: &Path) -> Result<Self, KubeletError> {
        let text =
            cmd::output(Command::new("kubectl").arg("kustomize").arg(dir)).map_err(|err| {
                KubeletError::Kustomize {
                    dir: dir.to_owned(),
                    reason: err.to_string(),
                }
            })?;
        let mut objects = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                <serde_json::Value as serde::Deserialize>::deserialize(doc).map_err(|err| {
                    KubeletError::Kustomize {
                        dir: dir.to_owned(),
                        reason: format!("its output is not YAML: {err}"),
                    }
                })?;
            if !value.is_null() {
                objects.push(value);
            }
        }
        Ok(Self { objects })
    }

    /// The object of `kind` named `name`, parsed into its API type.
    pub fn get<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        name: &str,
    ) -> Result<T, KubeletError> {
        let object = self
            .objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .ok_or_else(|| KubeletError::Missing {
                kind,
                name: name.to_owned(),
            })?;
        serde_json::from_value(object.clone()).map_err(|source| KubeletError::Parse {
            kind,
            name: name.to_owned(),
            source,
        })
    }

    /// The namespace the manifests put `kind`/`name` in (`default` when none).
    pub fn namespace_of(&self, kind: &str, name: &str) -> String {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .and_then(|o| o["metadata"]["namespace"].as_str())
            .unwrap_or("default")
            .to_owned()
    }

    /// A DaemonSet's pod template.
    pub fn daemon_set_template(&self, name: &str) -> Result<PodTemplateSpec, KubeletError> {
        let ds: k8s_openapi::api::apps::v1::DaemonSet = self.get("DaemonSet", name)?;
        Ok(ds.spec.unwrap_or_default().template)
    }

    pub(super) fn config_map(&self, name: &str) -> Result<ConfigMap, KubeletError> {
        self.get("ConfigMap", name)
    }
}
