//! `herd-agent config`: the configuration `run` would use, as TOML, each setting with where
//! its value came from.

use herd_agent::config::{self, AGENT_FILE, FileLayer};

/// The effective configuration of the `config` subcommand's matches (the same flags as
/// `run`), with a header naming the file layer.
pub fn render(command: &clap::Command, matches: &clap::ArgMatches, file: &FileLayer) -> String {
    let layer = match (&file.path, &file.absent_default) {
        (Some(path), _) => format!("file {}", path.display()),
        (None, Some(default)) => format!("no file ({} is absent)", default.display()),
        (None, None) => "no file".to_owned(),
    };
    let settings = config::effective(command, matches, file, AGENT_FILE.flag);
    format!(
        "# herd-agent {}: the effective configuration of `run`.\n\
         # Precedence: flags, then HERD_* variables, then the file, then defaults; {layer}.\n\
         # This output is a valid configuration file (--config PATH).\n{}",
        env!("CARGO_PKG_VERSION"),
        config::to_toml(&settings)
    )
}
