//! The command line: global options, commands and their arguments.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use herd_proto::{
    herd::v1::{FindingKind, FindingState, Severity},
    tls::TlsFiles,
};

use crate::connect::{DEFAULT_SERVER, Server};

/// Shown apart from each command's own options in every command's help.
const GLOBAL: &str = "Global options";

/// Ask a Herd agent what it watches on its node, or the aggregator what the cluster has found.
#[derive(Parser, Debug)]
#[command(name = "herd", version)]
pub struct Cli {
    /// The agent's or the aggregator's API: unix:///PATH, a socket path, https://HOST:PORT
    /// (with --ca, and --cert and --key for mutual TLS), or http://HOST:PORT (plain text).
    #[arg(long, global = true, env = "HERD_SERVER", default_value = DEFAULT_SERVER,
          value_name = "ADDRESS", help_heading = GLOBAL)]
    pub server: Server,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// How to print: aligned columns for people, or JSON for programs.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table,
          help_heading = GLOBAL)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// The PEM files for an https:// server.
#[derive(Args, Debug)]
pub struct TlsArgs {
    /// The CA certificate that signed the server's certificate (PEM).
    #[arg(long, global = true, env = "HERD_CA", value_name = "PEM", help_heading = GLOBAL)]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM), for a server that asks for one (mutual TLS).
    #[arg(long, global = true, env = "HERD_CERT", value_name = "PEM", help_heading = GLOBAL)]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, global = true, env = "HERD_KEY", value_name = "PEM", help_heading = GLOBAL)]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Api(ApiCommand),
    /// Print a shell completion script: `source <(herd completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The commands that ask the server. `findings`, `watch` and `domain` take the cluster's
/// view where the server has one and the node's otherwise; `nodes` needs the cluster's;
/// `info`, `containers` and `explain` ask an agent.
#[derive(Subcommand, Debug)]
pub enum ApiCommand {
    /// Which agent this is, on which node, and what it can see there.
    Info,
    /// The containers the agent watches, with their latest score.
    Containers(Filters),
    /// Open and recently closed findings, newest first: the cluster's, or the node's.
    Findings(FindingsArgs),
    /// Findings open now, then every opening, update and close as it happens.
    Watch(WatchArgs),
    /// The nodes that report to the aggregator, with their health.
    Nodes,
    /// The evidence behind a container's score, window by window.
    Explain(ExplainArgs),
    /// The members of a domain and each feature's statistics, per node on the cluster view.
    Domain {
        /// Domain name, as `herd containers` shows it: namespace/Kind/owner/container.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct Filters {
    /// Only this namespace.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Only this domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Only this pod.
    #[arg(long)]
    pub pod: Option<String>,
}

/// What only a finding has: where it is and what it compares.
#[derive(Args, Debug)]
pub struct FindingFilters {
    /// Only findings on or about this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Only findings of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
}

#[derive(Args, Debug)]
pub struct FindingsArgs {
    #[command(flatten)]
    pub filters: Filters,
    #[command(flatten)]
    pub finding: FindingFilters,
    /// Only findings at least this severe.
    #[arg(long, value_enum)]
    pub severity: Option<SeverityArg>,
    /// Only open, or only closed, findings.
    #[arg(long, value_enum, default_value_t = StateArg::All)]
    pub state: StateArg,
    /// Only findings opened or closed since then: a duration ago (1h, 30m) or an RFC 3339
    /// time (2025-01-02T03:04:05Z).
    #[arg(long, value_parser = parse_since, value_name = "WHEN")]
    pub since: Option<Since>,
    /// At most this many findings.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub filters: Filters,
    #[command(flatten)]
    pub finding: FindingFilters,
    /// Only findings at least this severe.
    #[arg(long, value_enum)]
    pub severity: Option<SeverityArg>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The pod, or a container id (12 or more hex digits, or runtime://id).
    #[arg(value_name = "POD")]
    pub target: String,
    /// The pod's namespace, where the pod name is not unique on the node.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The container within the pod.
    #[arg(short, long, value_name = "NAME")]
    pub container: Option<String>,
    /// POD is a container id, or a prefix of one.
    #[arg(long)]
    pub id: bool,
    /// How many of the latest windows (the agent's default is 10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub windows: Option<u32>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(shell: Shell) -> Self {
        match shell {
            Shell::Bash => Self::Bash,
            Shell::Zsh => Self::Zsh,
            Shell::Fish => Self::Fish,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeverityArg {
    Warning,
    Critical,
}

impl From<SeverityArg> for Severity {
    fn from(severity: SeverityArg) -> Self {
        match severity {
            SeverityArg::Warning => Self::Warning,
            SeverityArg::Critical => Self::Critical,
        }
    }
}

/// What a finding compares; the help lists them in the order of `herd.v1.FindingKind`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    /// A container against the other replicas of its workload on its node.
    NodePeers,
    /// A container against every replica of its workload in the cluster.
    ClusterReplica,
    /// A workload on one node against the same workload on the other nodes.
    WorkloadNode,
    /// A node where an unusual share of workloads stray.
    SickNode,
    /// A node whose agent stopped reporting.
    NodeSilent,
}

impl From<KindArg> for FindingKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::NodePeers => Self::NodePeers,
            KindArg::ClusterReplica => Self::ClusterReplica,
            KindArg::WorkloadNode => Self::WorkloadNode,
            KindArg::SickNode => Self::SickNode,
            KindArg::NodeSilent => Self::NodeSilent,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateArg {
    Open,
    Closed,
    All,
}

impl StateArg {
    /// The API's filter: unspecified means both.
    pub fn filter(self) -> FindingState {
        match self {
            Self::Open => FindingState::Open,
            Self::Closed => FindingState::Closed,
            Self::All => FindingState::Unspecified,
        }
    }
}

/// `--since`, kept relative until the request is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(SystemTime),
}

impl Since {
    pub fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            Self::Ago(ago) => now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH),
            Self::At(at) => at,
        }
    }
}

fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(ago) = humantime::parse_duration(s) {
        return Ok(Since::Ago(ago));
    }
    humantime::parse_rfc3339_weak(s)
        .map(Since::At)
        .map_err(|_| {
            "expected a duration such as 1h or 30m, or a time such as 2025-01-02T03:04:05Z"
                .to_owned()
        })
}

impl ExplainArgs {
    /// The container id to ask for, when the target is one rather than a pod name.
    pub fn container_id(&self) -> Option<&str> {
        // The form kubectl shows in a pod's status: `containerd://<id>`.
        if let Some((_, id)) = self.target.split_once("://") {
            return Some(id);
        }
        let looks_like_id = self.target.len() >= 12
            && self
                .target
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (self.id || looks_like_id).then_some(self.target.as_str())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn explain(args: &[&str]) -> ExplainArgs {
        let cli = Cli::try_parse_from([&["herd", "explain"], args].concat()).unwrap();
        match cli.command {
            Command::Api(ApiCommand::Explain(args)) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn explain_tells_pods_from_container_ids() {
        assert_eq!(explain(&["web-5d8f9c-x2x7q"]).container_id(), None);
        // Short hex words are pod names: a pod may well be called "cafe".
        assert_eq!(explain(&["cafe"]).container_id(), None);
        assert_eq!(explain(&["cafe", "--id"]).container_id(), Some("cafe"));
        assert_eq!(
            explain(&["3f2a9c1b7d4e"]).container_id(),
            Some("3f2a9c1b7d4e")
        );
        assert_eq!(
            explain(&["containerd://3f2a9c"]).container_id(),
            Some("3f2a9c")
        );
    }

    #[test]
    fn since_takes_a_duration_ago_or_a_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let hour_ago = parse_since("1h").unwrap().resolve(now);
        assert_eq!(
            now.duration_since(hour_ago).unwrap(),
            Duration::from_secs(3600)
        );
        let at = parse_since("2023-11-14T22:13:20Z").unwrap().resolve(now);
        assert_eq!(at, now);
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn https_takes_its_files_after_the_command_too() {
        let cli = Cli::try_parse_from([
            "herd",
            "--server",
            "https://node-1:9443",
            "info",
            "--ca",
            "ca.crt",
            "--cert",
            "me.crt",
            "--key",
            "me.key",
        ])
        .unwrap();
        let server = cli.server.with_tls(cli.tls.files());
        assert_eq!(
            server,
            Server::Https {
                uri: "https://node-1:9443".to_owned(),
                tls: Box::new(TlsFiles {
                    cert: Some("me.crt".into()),
                    key: Some("me.key".into()),
                    ca: Some("ca.crt".into()),
                }),
            }
        );
    }
}
