//! The agent's configuration: flags, then `HERD_*` variables, then the TOML file
//! (`--config`, `HERD_CONFIG`, or `/etc/herd/agent.toml` where it exists), then defaults, as
//! `herd_proto::settings` layers them for both daemons; and what a node must give the agent
//! ([`host`]).

pub mod host;

pub use herd_proto::settings::*;

/// The agent's file: `--config`, `HERD_CONFIG`, or `/etc/herd/agent.toml` where it exists.
pub const AGENT_FILE: FileSpec = FileSpec {
    flag: "config",
    env_prefix: "HERD_",
    default_path: "/etc/herd/agent.toml",
};
