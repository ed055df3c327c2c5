//! `cargo xtask image`: Herd's images without Docker. Builds the release binaries and writes
//! one OCI image archive per image into `target/herd-images/` (`herd-agent-<version>.tar`,
//! `herd-aggregator-<version>.tar`), tagged as `deploy/` names them. The images themselves
//! (what goes in, the OCI writer) are `herd_tests::lab::herd_images`, which the lab's
//! agent-as-a-pod test uses too. `cargo xtask lab up` imports the archives when they exist.

use std::path::PathBuf;

use anyhow::Context as _;
use herd_tests::lab::HerdImage;

use crate::cmd::{self, step};

/// Where the archives go.
pub fn out_dir() -> PathBuf {
    cmd::workspace_root().join("target/herd-images")
}

/// The archives `cargo xtask image` wrote earlier, those that exist.
pub fn built() -> Vec<(HerdImage, PathBuf)> {
    HerdImage::ALL
        .into_iter()
        .map(|image| (image, out_dir().join(image.archive_name())))
        .filter(|(_, path)| path.is_file())
        .collect()
}

pub fn run() -> anyhow::Result<()> {
    step("building the release binaries");
    let mut build = cmd::cargo();
    build.args(["build", "--release", "--bins"]);
    for package in ["herd-agent", "herd-aggregator"] {
        build.args(["-p", package]);
    }
    cmd::run(&mut build)?;
    let bin_dir = cmd::workspace_root().join("target/release");
    for image in HerdImage::ALL {
        step(&format!("writing {}", image.reference()));
        let archive = image
            .write(&bin_dir, &out_dir())
            .with_context(|| format!("writing the image {}", image.reference()))?;
        let size = std::fs::metadata(&archive)?.len();
        println!(
            "{}  {}  ({:.1} MB)",
            image.reference(),
            archive.display(),
            size as f64 / 1e6
        );
    }
    eprintln!(
        "import with `ctr -n k8s.io images import <archive>` on a node, or `cargo xtask lab up`"
    );
    Ok(())
}
