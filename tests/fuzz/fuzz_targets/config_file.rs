//! A configuration file as both daemons read it: any TOML, any keys, any values, checked by
//! each argument's own parser, then read back as `herd-agent config` prints it. The command
//! has an argument of each kind the daemons' flags are (their `Cli`s live in the binaries).
#![no_main]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{CommandFactory as _, Parser, ValueEnum};
use herd_proto::settings::{self, FileSpec};
use libfuzzer_sys::fuzz_target;

const SPEC: FileSpec = FileSpec {
    flag: "config",
    env_prefix: "HERD_",
    default_path: "/nonexistent/herd.toml",
};

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    Auto,
    Journald,
    Stderr,
}

#[derive(Parser)]
#[allow(dead_code)]
struct Cli {
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    keep: u32,
    #[arg(long)]
    node_name: Option<String>,
    #[arg(long)]
    record: Option<PathBuf>,
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    insecure: bool,
    #[arg(long)]
    threshold: Option<f64>,
    #[arg(long, value_enum, default_value = "auto")]
    log_target: Target,
    #[arg(long)]
    label: Vec<String>,
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let command = settings::with_env_names(Cli::command(), SPEC.env_prefix);
    match settings::apply_text(command, PathBuf::from("fuzz.toml"), text, &SPEC) {
        Ok((command, layer)) => {
            // Every value passed its argument's parser, so the command line parses.
            let matches = command
                .clone()
                .try_get_matches_from(["herd"])
                .expect("a checked file parses");
            let shown = settings::effective(&command, &matches, &layer, SPEC.flag);
            let _ = settings::to_toml(&shown);
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
