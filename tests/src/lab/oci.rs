//! Writes single-layer OCI image archives (an image layout in a tar), the format
//! `ctr images import` reads. No registry is reachable, so every image is made here.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::LabError;

/// One file of a layer.
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

pub struct Image {
    /// Full reference, e.g. `herd.local/pause:lab`.
    pub name: String,
    pub entries: Vec<Entry>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
}

struct Blob {
    media_type: &'static str,
    digest: String,
    data: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Self {
        let digest = format!("sha256:{:x}", Sha256::digest(&data));
        Self {
            media_type,
            digest,
            data,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.data.len()})
    }
}

impl Image {
    /// Writes the image archive to `path`.
    pub fn write(&self, path: &Path) -> Result<(), LabError> {
        let layer = Blob::new("application/vnd.oci.image.layer.v1.tar", self.layer()?);
        let diff_id = layer.digest.clone();
        let config = Blob::new(
            "application/vnd.oci.image.config.v1+json",
            serde_json::to_vec(&json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": self.entrypoint, "Env": self.env},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }))
            .expect("JSON of plain values"),
        );
        let manifest = Blob::new(
            "application/vnd.oci.image.manifest.v1+json",
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }))
            .expect("JSON of plain values"),
        );
        let tag = self.name.rsplit_once(':').map_or("latest", |(_, tag)| tag);
        let mut manifest_ref = manifest.descriptor();
        // containerd names the imported image from the first annotation; the second is the
        // OCI layout's own tag.
        manifest_ref["annotations"] = json!({
            "io.containerd.image.name": self.name,
            "org.opencontainers.image.ref.name": tag,
        });
        let index = json!({"schemaVersion": 2, "manifests": [manifest_ref]});

        let mut archive = tar::Builder::new(Vec::new());
        append_file(
            &mut archive,
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        append_file(
            &mut archive,
            "index.json",
            0o644,
            &serde_json::to_vec(&index).expect("JSON of plain values"),
        )?;
        for blob in [&layer, &config, &manifest] {
            let name = format!("blobs/sha256/{}", &blob.digest["sha256:".len()..]);
            append_file(&mut archive, &name, 0o644, &blob.data)?;
        }
        let bytes = archive.into_inner().map_err(LabError::io(path))?;
        let mut file = fs::File::create(path).map_err(LabError::io(path))?;
        file.write_all(&bytes).map_err(LabError::io(path))
    }

    fn layer(&self) -> Result<Vec<u8>, LabError> {
        let mut layer = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::Dir { path, mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    layer
                        .append_data(&mut header, path, std::io::empty())
                        .map_err(LabError::io(path))?;
                }
                Entry::File { path, mode, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    layer
                        .append_data(&mut header, path, data.as_slice())
                        .map_err(LabError::io(path))?;
                }
                Entry::Symlink { path, target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    layer
                        .append_link(&mut header, path, target)
                        .map_err(LabError::io(path))?;
                }
            }
        }
        layer.into_inner().map_err(LabError::io("image layer"))
    }
}

fn append_file(
    archive: &mut tar::Builder<Vec<u8>>,
    name: &str,
    mode: u32,
    data: &[u8],
) -> Result<(), LabError> {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    archive
        .append_data(&mut header, name, data)
        .map_err(LabError::io(PathBuf::from(name)))
}
