//! Herd's own images: `herd-agent` (which holds the `herd` client too) and `herd-aggregator`,
//! each its binaries and exactly the shared libraries they load (per `ldd`), written as OCI
//! image archives (`ctr images import` reads them) with the OCI writer the lab's other images
//! use. `cargo xtask image` writes them from the release build; the agent-as-a-pod test from
//! the binaries it tests.
//!
//! Dynamic rather than static binaries: the lab's images are already made this way from
//! `ldd`, the glibc build is the one every test runs, and a static build would need the musl
//! target, with its own C toolchain for ring, on top of the eBPF toolchain.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use super::{
    LabError, cmd,
    images::add_programs,
    oci::{Entry, Image},
};

/// The version the images are tagged with: the crates', which the manifests' tags follow.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where programs live in Herd's images (on the image's `PATH`).
const BIN_DIR: &str = "usr/local/bin";

/// One of Herd's images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HerdImage {
    /// The node agent, with `herd` beside it for `kubectl exec … herd findings`.
    Agent,
    /// The cluster aggregator.
    Aggregator,
}

impl HerdImage {
    /// Every image, in the order `cargo xtask image` builds them.
    pub const ALL: [Self; 2] = [Self::Agent, Self::Aggregator];

    /// The image's repository as `deploy/` names it: a bare name, which kustomize's `images:`
    /// points at a registry.
    pub fn repository(self) -> &'static str {
        match self {
            Self::Agent => "herd-agent",
            Self::Aggregator => "herd-aggregator",
        }
    }

    /// `herd-agent:0.1.0`, as the manifests name it.
    pub fn reference(self) -> String {
        format!("{}:{VERSION}", self.repository())
    }

    /// The reference as containerd stores it: a bare name is Docker Hub's `library/`, which
    /// is what CRI looks up when a pod names `herd-agent:0.1.0`.
    pub fn stored_reference(self) -> String {
        normalized(&self.reference())
    }

    /// The workspace binaries the image holds; the first is its entrypoint.
    pub fn binaries(self) -> &'static [&'static str] {
        match self {
            Self::Agent => &["herd-agent", "herd"],
            Self::Aggregator => &["herd-aggregator"],
        }
    }

    /// The archive's file name, e.g. `herd-agent-0.1.0.tar`.
    pub fn archive_name(self) -> String {
        format!("{}-{VERSION}.tar", self.repository())
    }

    /// Writes the image archive into `out_dir` from the binaries in `bin_dir` (e.g.
    /// `target/release`), with their debug information stripped into `out_dir` first.
    /// Returns the archive's path.
    pub fn write(self, bin_dir: &Path, out_dir: &Path) -> Result<PathBuf, LabError> {
        fs::create_dir_all(out_dir).map_err(LabError::io(out_dir))?;
        let mut stripped = Vec::new();
        for name in self.binaries() {
            let binary = bin_dir.join(name);
            if !binary.is_file() {
                return Err(LabError::io(&binary)(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the binary is not built",
                )));
            }
            let copy = out_dir.join(format!("{name}.stripped"));
            cmd::run(
                Command::new("strip")
                    .arg("--strip-debug")
                    .arg("-o")
                    .arg(&copy)
                    .arg(&binary),
            )?;
            stripped.push((copy, format!("{BIN_DIR}/{name}")));
        }
        let programs: Vec<(&Path, &str)> = stripped
            .iter()
            .map(|(host, path)| (host.as_path(), path.as_str()))
            .collect();
        let mut entries = vec![Entry::Dir {
            path: "etc".to_owned(),
            mode: 0o755,
        }];
        let library_path = add_programs(&mut entries, &programs)?;
        let image = Image {
            name: self.stored_reference(),
            entries,
            entrypoint: vec![format!("/{BIN_DIR}/{}", self.binaries()[0])],
            env: vec![
                format!("PATH=/{BIN_DIR}:/usr/bin:/bin"),
                // No ld.so.cache in the image: say where the libraries are.
                format!("LD_LIBRARY_PATH={library_path}"),
            ],
        };
        let archive = out_dir.join(self.archive_name());
        image.write(&archive)?;
        for (copy, _) in &stripped {
            fs::remove_file(copy).map_err(LabError::io(copy))?;
        }
        Ok(archive)
    }
}

/// An image reference as containerd's CRI plugin normalizes it: `herd-agent:0.1.0` is
/// `docker.io/library/herd-agent:0.1.0`, `ghcr.io/x/y:1` stays as it is.
pub fn normalized(reference: &str) -> String {
    let (first, rest) = reference.split_once('/').unwrap_or(("", reference));
    let has_registry =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    let with_tag = |r: &str| {
        let name = r.rsplit('/').next().unwrap_or(r);
        if name.contains(':') || r.contains('@') {
            r.to_owned()
        } else {
            format!("{r}:latest")
        }
    };
    if has_registry {
        with_tag(reference)
    } else if first.is_empty() {
        with_tag(&format!("docker.io/library/{rest}"))
    } else {
        with_tag(&format!("docker.io/{reference}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_as_containerd_does() {
        assert_eq!(
            normalized("herd-agent:0.1.0"),
            "docker.io/library/herd-agent:0.1.0"
        );
        assert_eq!(
            normalized("herd-agent"),
            "docker.io/library/herd-agent:latest"
        );
        assert_eq!(normalized("herd/agent:1"), "docker.io/herd/agent:1");
        assert_eq!(normalized("ghcr.io/herd/agent:1"), "ghcr.io/herd/agent:1");
        assert_eq!(
            normalized("localhost:5000/agent"),
            "localhost:5000/agent:latest"
        );
        assert_eq!(normalized("herd.local/tools:lab"), "herd.local/tools:lab");
    }

    #[test]
    fn the_agent_image_is_tagged_with_the_version_and_holds_the_client() {
        assert_eq!(
            HerdImage::Agent.reference(),
            format!("herd-agent:{VERSION}")
        );
        assert_eq!(HerdImage::Agent.binaries(), ["herd-agent", "herd"]);
        assert_eq!(
            HerdImage::Aggregator.archive_name(),
            format!("herd-aggregator-{VERSION}.tar")
        );
    }
}
