//! Herd's cluster aggregator. It will receive the per-node summaries and compare each
//! workload across nodes; for now it only names itself, so that the workspace, the image and
//! the manifests have their final shape.

use clap::Parser;

/// Herd's cluster aggregator (no endpoints yet: the node agents do not ship summaries).
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    Cli::parse();
    eprintln!("herd-aggregator: no endpoints yet; nothing to serve");
    std::process::ExitCode::from(2)
}
