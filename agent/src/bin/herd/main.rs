//! `herd`: the command-line client of the agent's node API, `herd.v1.NodeService`, and of
//! the cluster API, `herd.v1.ClusterService`, that the aggregator serves.
//!
//! Printing lives here, never in the agent: the server answers with messages, and this
//! client turns them into tables for people or JSON for programs.

mod cli;
mod commands;
mod connect;
#[cfg(test)]
mod fake;
mod human;
mod json;
mod table;

use std::{
    io::{self, Write as _},
    process::ExitCode,
};

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // Usage errors exit with 2, from clap.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Completion { shell } => {
            // Into a buffer first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            let shell: clap_complete::Shell = shell.into();
            clap_complete::generate(shell, &mut Cli::command(), "herd", &mut script);
            io::stdout()
                .write_all(&script)
                .map_err(commands::Error::from)
        }
        Command::Api(command) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(commands::Error::from)
            .and_then(|runtime| {
                runtime.block_on(commands::run(
                    &cli.server.with_tls(cli.tls.files()),
                    cli.output,
                    command,
                    &mut io::stdout().lock(),
                ))
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `herd findings | head`: the reader had enough, which is not a failure.
        Err(commands::Error::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("herd: {err}");
            ExitCode::FAILURE
        }
    }
}
