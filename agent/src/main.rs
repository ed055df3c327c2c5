//! The `herd-agent` binary: argument parsing and the subcommands' edges.

mod cmd;
#[cfg(test)]
mod deploy_tests;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use herd_agent::{
    config::{self, AGENT_FILE},
    telemetry,
};
use tracing::error;

/// Herd's node agent: watches every container on this host through cgroups and eBPF.
///
/// Every setting is a flag, a HERD_* environment variable (--min-age is HERD_MIN_AGE) and a key
/// of the TOML file (min-age = "90s"), in that order of precedence, above the defaults.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: cmd::run::RunArgs,
    /// Where the agent logs: journald (structured HERD_* fields) when its socket exists,
    /// else stderr.
    #[arg(
        long,
        global = true,
        env = "HERD_LOG_TARGET",
        value_enum,
        default_value = "auto"
    )]
    log_target: telemetry::LogTarget,
    /// The TOML configuration file; its keys are the long flag names. Without this flag or
    /// HERD_CONFIG, /etc/herd/agent.toml is read where it exists.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Watch every container, compare it with its peers, log findings (the default).
    Run(Box<cmd::run::RunArgs>),
    /// Print the containers on this node: pod, namespace, name, domain, cgroup id, age.
    Containers(cmd::containers::ContainersArgs),
    /// Check what this host offers: root, cgroups, pressure, BTF, eBPF, container runtime.
    Probe(cmd::probe::ProbeArgs),
    /// Score recorded feature frames offline: `ts,node,domain,entity,<feature…>` in,
    /// `ts,entity,score,flag` out.
    Replay(herd_agent::replay::ReplayArgs),
    /// Print the detector's settings (warm-up, thresholds, …) as one line of JSON.
    Detector,
    /// Ask the running agent's grpc.health.v1 over its socket; exit 0 when SERVING (the
    /// DaemonSet's readiness and liveness probe).
    Health(cmd::health::HealthArgs),
    /// Print the configuration `run` would use, as TOML, each setting with where its value
    /// came from (flag, environment, file, default). Takes the same flags as `run`.
    Config(Box<cmd::run::RunArgs>),
}

/// The agent's command line as clap sees it: every flag with its HERD_* variable.
fn command() -> clap::Command {
    config::with_env_names(Cli::command(), AGENT_FILE.env_prefix)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let (command, file) =
        match config::apply_file(command(), &args, &AGENT_FILE, |name| std::env::var_os(name)) {
            Ok(layered) => layered,
            Err(err) => {
                eprintln!("herd-agent: {err}");
                return ExitCode::from(2);
            }
        };
    let matches = command.clone().get_matches_from(&args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    if let Some(Command::Config(_)) = &cli.command {
        // Built, so that the global flags (--log-target) are among the subcommand's.
        let mut built = command;
        built.build();
        let sub = built
            .find_subcommand("config")
            .expect("the config subcommand exists");
        let sub_matches = matches
            .subcommand_matches("config")
            .expect("the config subcommand was given");
        print!("{}", cmd::config::render(sub, sub_matches, &file));
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Health(args)) = cli.command {
        // A probe's answer goes to kubelet, on stdout and stderr, never to the journal.
        return match cmd::block_on(cmd::health::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("herd-agent health: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(err) = telemetry::init(cli.log_target) {
        eprintln!("herd-agent: {err}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Some(Command::Run(args)) => cmd::block_on(cmd::run::run(*args)),
        None => cmd::block_on(cmd::run::run(cli.run)),
        Some(Command::Containers(args)) => cmd::block_on(cmd::containers::run(args)),
        Some(Command::Probe(args)) => cmd::block_on(cmd::probe::run(args)),
        Some(Command::Detector) => cmd::detector::run(),
        Some(Command::Replay(args)) => herd_agent::replay::run(&args)
            .map(drop)
            .map_err(anyhow::Error::from),
        Some(Command::Config(_) | Command::Health(_)) => {
            unreachable!("handled before logging starts")
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag's variable is HERD_ and its long name, including those named by hand.
    #[test]
    fn every_flag_has_its_herd_variable() {
        fn walk(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert_eq!(
                    env,
                    Some(config::env_name("HERD_", long)),
                    "{path} --{long} has the wrong variable"
                );
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&command(), "herd-agent");
    }

    /// The README's table of `herd-agent` settings and the agent's flags agree, row for flag:
    /// a flag added without a row, or a row left behind, fails.
    #[test]
    fn the_readme_lists_every_setting() {
        let readme = include_str!("../../README.md");
        let problems = readme_disagreements(readme);
        assert!(
            problems.is_empty(),
            "README.md, Configuration:\n{}",
            problems.join("\n")
        );
    }

    /// And the check fails when a row is missing or wrong.
    #[test]
    fn the_readme_check_sees_a_missing_or_wrong_row() {
        let readme = include_str!("../../README.md");
        let without = readme
            .lines()
            .filter(|line| !line.starts_with("| `--top`"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            readme_disagreements(&without)
                .iter()
                .any(|p| p.contains("--top"))
        );
        let wrong = readme.replace(
            "| `HERD_TOP` | `top` | `10` |",
            "| `HERD_TOP` | `top` | `12` |",
        );
        assert!(
            readme_disagreements(&wrong)
                .iter()
                .any(|p| p.contains("--top") && p.contains("`10`"))
        );
        let extra = readme.replace(
            "| `--top` |",
            "| `--bottom` | `HERD_BOTTOM` | `bottom` | `1` | x |\n| `--top` |",
        );
        assert!(
            readme_disagreements(&extra)
                .iter()
                .any(|p| p.contains("--bottom"))
        );
    }

    /// What differs between the README's settings table (below `## Configuration`) and
    /// `herd-agent run`'s flags.
    fn readme_disagreements(readme: &str) -> Vec<String> {
        let mut built = command();
        built.build();
        let run = built.find_subcommand("run").expect("run exists");
        config::table_disagreements(readme, "Configuration", run, AGENT_FILE.flag)
    }

    #[test]
    fn the_cli_is_well_formed() {
        command().debug_assert();
    }
}
