//! A pod's volumes on the host, as the kubelet makes them ready: hostPath checked (or made) as
//! its type says; ConfigMap, Secret and emptyDir volumes written into the pod's directory.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::Volume;

use super::{super::LabError, KubeletError, KubeletPod, Node};

/// Makes each volume ready on the host; its host path by volume name.
pub(super) fn prepare_volumes(
    pod: &mut KubeletPod,
    node: &Node<'_>,
    volumes: &[Volume],
) -> Result<BTreeMap<String, PathBuf>, KubeletError> {
    let mut out = BTreeMap::new();
    for volume in volumes {
        let path = if let Some(host) = &volume.host_path {
            host_path(
                pod,
                &volume.name,
                Path::new(&host.path),
                host.type_.as_deref(),
            )?
        } else if let Some(source) = &volume.config_map {
            let map = node.manifests.config_map(&source.name)?;
            let mut files: BTreeMap<String, Vec<u8>> = map
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            files.extend(
                map.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            write_volume(pod, &volume.name, &files, source.default_mode)?
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let files = node
                .secrets
                .get(&name)
                .ok_or_else(|| KubeletError::Missing {
                    kind: "Secret",
                    name: name.clone(),
                })?;
            write_volume(pod, &volume.name, files, source.default_mode)?
        } else if volume.empty_dir.is_some() {
            write_volume(pod, &volume.name, &BTreeMap::new(), None)?
        } else {
            return Err(KubeletError::Unsupported(format!(
                "volume {:?} is of a kind the lab does not mount",
                volume.name
            )));
        };
        out.insert(volume.name.clone(), path);
    }
    Ok(out)
}

/// A hostPath volume, checked (or made) as its type says.
fn host_path(
    pod: &mut KubeletPod,
    volume: &str,
    path: &Path,
    kind: Option<&str>,
) -> Result<PathBuf, KubeletError> {
    let kind = kind.unwrap_or("");
    let fail = |reason: &str| KubeletError::HostPath {
        volume: volume.to_owned(),
        path: path.to_owned(),
        kind: kind.to_owned(),
        reason: reason.to_owned(),
    };
    let meta = fs::metadata(path);
    match kind {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                let mut missing: Vec<PathBuf> = path
                    .ancestors()
                    .take_while(|a| !a.exists())
                    .map(Path::to_path_buf)
                    .collect();
                fs::create_dir_all(path).map_err(LabError::io(path))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(LabError::io(path))?;
                // Deepest first, so that removing them in order works.
                pod.made_dirs.append(&mut missing);
            } else if !meta.as_ref().is_ok_and(fs::Metadata::is_dir) {
                return Err(fail("exists and is not a directory"));
            }
        }
        "Directory" if !meta.as_ref().is_ok_and(fs::Metadata::is_dir) => {
            return Err(fail("is not a directory"));
        }
        "File" if !meta.as_ref().is_ok_and(fs::Metadata::is_file) => {
            return Err(fail("is not a file"));
        }
        "Socket" if !meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) => {
            return Err(fail("is not a socket"));
        }
        "Directory" | "File" | "Socket" => {}
        other => {
            return Err(fail(&format!(
                "the lab's kubelet does not check type {other}"
            )));
        }
    }
    Ok(path.to_owned())
}

/// A volume of files the kubelet writes (ConfigMap, Secret, emptyDir).
fn write_volume(
    pod: &KubeletPod,
    volume: &str,
    files: &BTreeMap<String, Vec<u8>>,
    mode: Option<i32>,
) -> Result<PathBuf, KubeletError> {
    let dir = pod.volumes_dir.join(volume);
    fs::create_dir_all(&dir).map_err(LabError::io(&dir))?;
    let mode = mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(0o644);
    for (key, data) in files {
        let path = dir.join(key);
        fs::write(&path, data).map_err(LabError::io(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(LabError::io(&path))?;
    }
    Ok(dir)
}
