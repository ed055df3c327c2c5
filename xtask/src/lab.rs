//! `cargo xtask lab up [--spec FILE] | status | down`: the lab of `herd_tests::lab` from the
//! command line. `up` leaves the lab running; `down` removes it, even after a crashed `up`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use herd_tests::lab::{self, Lab, LabSpec, Pod};

#[derive(Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Start containerd and the spec's pods (default: two Deployments of 3, a StatefulSet of 2),
    /// and import the images `cargo xtask image` wrote.
    Up {
        /// A lab spec in TOML, e.g. tests/lab/faults.toml.
        #[arg(long)]
        spec: Option<PathBuf>,
    },
    /// List the lab's pods and containers with their cgroup paths.
    Status,
    /// Remove the lab and everything it made.
    Down,
}

pub fn run(args: &LabArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    runtime.block_on(async {
        match &args.command {
            LabCommand::Up { spec } => up(spec.as_deref()).await,
            LabCommand::Status => status().await,
            LabCommand::Down => Ok(lab::down().await?),
        }
    })
}

async fn up(spec: Option<&std::path::Path>) -> anyhow::Result<()> {
    let spec = match spec {
        Some(path) => LabSpec::from_file(path)?,
        None => LabSpec::default_lab(),
    };
    let lab = Lab::up(&spec).await?;
    // Herd's own images, where `cargo xtask image` wrote them.
    for (image, archive) in crate::image::built() {
        lab.import_image(&archive)
            .with_context(|| format!("importing {}", image.reference()))?;
    }
    print_pods(&lab.pods().await?);
    eprintln!(
        "CRI socket: {}\nrun `cargo xtask lab down` to remove the lab",
        lab.socket().display()
    );
    lab.keep();
    Ok(())
}

async fn status() -> anyhow::Result<()> {
    let lab = Lab::attach().await?;
    println!("CRI socket: {}", lab.socket().display());
    print_pods(&lab.pods().await?);
    Ok(())
}

fn print_pods(pods: &[Pod]) {
    for pod in pods {
        let owner = [lab::POD_TEMPLATE_HASH, lab::CONTROLLER_REVISION_HASH]
            .iter()
            .find_map(|key| pod.labels.get(*key).map(|v| format!("{key}={v}")))
            .unwrap_or_default();
        println!(
            "{}/{}  uid={}  {}  {}  cgroup={}",
            pod.namespace,
            pod.name,
            pod.uid,
            pod.state,
            owner,
            pod.cgroup_parent.as_deref().unwrap_or("-"),
        );
        for container in &pod.containers {
            println!(
                "  {}  {}  {}  pid={}",
                container.name,
                &container.id[..container.id.len().min(13)],
                container.state,
                container
                    .pid
                    .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
            );
            for (controllers, path) in &container.cgroups {
                let hierarchy = if controllers.is_empty() {
                    "cgroup2"
                } else {
                    controllers
                };
                println!("    {hierarchy:<14} {path}");
            }
        }
    }
}
