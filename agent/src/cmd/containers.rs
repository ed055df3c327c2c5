//! `herd-agent containers`: one discovery poll, printed as a table.

use std::time::SystemTime;

use clap::Args;
use herd_agent::{
    export::container_list,
    host::{self, HostPaths},
};

use crate::cmd::DiscoveryArgs;

#[derive(Args, Clone, Debug)]
pub struct ContainersArgs {
    #[command(flatten)]
    discovery: DiscoveryArgs,
}

pub async fn run(args: ContainersArgs) -> anyhow::Result<()> {
    let paths = HostPaths::default();
    let mut discovery = args
        .discovery
        .discovery(&host::cgroup2_mount(&paths.proc)?, &paths.proc)?;
    discovery.poll().await;
    print!(
        "{}",
        container_list::render(discovery.table(), SystemTime::now())
    );
    Ok(())
}
