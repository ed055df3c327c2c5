//! `herd-aggregator`: takes every node's summaries, compares each workload across nodes, and
//! serves the cluster's findings.

#[cfg(test)]
mod deploy_tests;

use std::{
    net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration, time::SystemTime,
};

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser};
use herd_aggregator::{
    Aggregator, AggregatorConfig, SharedAggregator,
    export::{
        alerts::{AlertConfig, AlertSender},
        metrics_http::MetricsServer,
    },
    metrics::ClusterMetrics,
    serve::Listeners,
    service::ClusterApi,
    store::Store,
};
use herd_proto::{
    rate::{self, QueryLimit},
    settings, tls,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// mimalloc: every window replaces each node's summary (150,000 containers' worth of small
/// vectors and strings at 5,000 nodes) and a round allocates per domain; with glibc's
/// allocator that was a third of the time to take in a window (`cargo xtask bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Herd's cluster aggregator: every node's window in, replicas compared across nodes, sick
/// nodes found, findings kept across restarts.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Unix socket for the herd CLI and for agents on this host, mode 0600. An empty value
    /// serves none.
    #[arg(
        long,
        env = "HERD_AGGREGATOR_SOCKET",
        default_value = "/run/herd/aggregator.sock",
        value_parser = clap::value_parser!(std::ffi::OsString)
    )]
    socket: std::ffi::OsString,
    /// TCP address for the agents and clients, e.g. 0.0.0.0:7700: mutual TLS with
    /// --tls-cert, --tls-key and --tls-ca, or plain text with --insecure.
    #[arg(long, env = "HERD_AGGREGATOR_LISTEN")]
    listen: Option<SocketAddr>,
    /// Serve --listen in plain text: anyone who reaches it can push summaries and read
    /// findings.
    #[arg(long)]
    insecure: bool,
    /// The aggregator's certificate for --listen (PEM), with its chain after it. Its
    /// subjectAltName holds the names agents dial.
    #[arg(long, env = "HERD_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "HERD_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that signs agents' and clients' certificates: a client
    /// without one is refused.
    #[arg(long, env = "HERD_TLS_CA", value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Where the findings store lives.
    #[arg(
        long,
        env = "HERD_DATA_DIR",
        default_value = "/var/lib/herd-aggregator"
    )]
    data_dir: PathBuf,
    /// How often the cluster is compared: the agents' window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// A node unheard of this long is silent; its containers leave the comparisons.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    node_expiry: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9465).
    #[arg(long, env = "HERD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Send the cluster's findings as alerts to this Alertmanager (v2 API), e.g.
    /// http://alertmanager:9093.
    #[arg(long, env = "HERD_ALERTMANAGER")]
    alertmanager: Option<String>,
    /// How often firing alerts are re-sent to Alertmanager; each lapses after four of these.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    alert_resend: Duration,
    /// Queries a second the ClusterService answers, over all listeners (the bucket's refill
    /// rate); past it a query gets RESOURCE_EXHAUSTED. Summaries and health checks are not
    /// counted. 0 is no limit.
    #[arg(long, default_value_t = rate::DEFAULT_RATE)]
    query_rate: u32,
    /// Queries answered at once after a quiet spell (the bucket's size).
    #[arg(long, default_value_t = rate::DEFAULT_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    query_burst: u32,
    /// Stop after this long instead of running until SIGINT or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// The TOML configuration file; its keys are the long flag names. Without this flag or
    /// HERD_CONFIG, /etc/herd/aggregator.toml is read where it exists.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the configuration as TOML, each setting with where its value came from (flag,
    /// environment, file, default), and exit.
    #[arg(long)]
    print_config: bool,
}

/// The aggregator's file: `--config`, `HERD_CONFIG`, or `/etc/herd/aggregator.toml` where it
/// exists. Its settings' variables are `HERD_` and the long flag name, but for the two
/// endpoints, `HERD_AGGREGATOR_SOCKET` and `HERD_AGGREGATOR_LISTEN`, which would otherwise be
/// the agent's.
const AGGREGATOR_FILE: settings::FileSpec = settings::FileSpec {
    flag: "config",
    env_prefix: "HERD_",
    default_path: "/etc/herd/aggregator.toml",
};

/// The command line as clap sees it: every flag with its variable.
fn command() -> clap::Command {
    settings::with_env_names(Cli::command(), AGGREGATOR_FILE.env_prefix)
}

fn main() -> ExitCode {
    // Flags, then HERD_* variables, then the file, then defaults.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (command, file) = match settings::apply_file(command(), &args, &AGGREGATOR_FILE, |name| {
        std::env::var_os(name)
    }) {
        Ok(layered) => layered,
        Err(err) => {
            eprintln!("herd-aggregator: {err}");
            return ExitCode::from(2);
        }
    };
    let matches = command.clone().get_matches_from(&args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    if cli.print_config {
        let mut shown = settings::effective(&command, &matches, &file, AGGREGATOR_FILE.flag);
        shown.retain(|s| s.key != "print-config");
        print!("{}", settings::to_toml(&shown));
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HERD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listen = match cli.listen {
        Some(addr) => Some(tls::TcpListen {
            addr,
            transport: tls::server_transport(
                "--listen",
                &tls::TlsFiles {
                    cert: cli.tls_cert.clone(),
                    key: cli.tls_key.clone(),
                    ca: cli.tls_ca.clone(),
                },
                cli.insecure,
                tls::DAEMON_FLAGS,
            )?,
        }),
        None => None,
    };
    anyhow::ensure!(!cli.window.is_zero(), "--window must be longer than zero");
    let store = Store::open(&cli.data_dir)
        .with_context(|| format!("opening the findings store in {}", cli.data_dir.display()))?;
    info!(
        data_dir = %cli.data_dir.display(),
        kept = store.1.len(),
        "findings store opened"
    );
    let aggregator = SharedAggregator::new(Aggregator::new(
        AggregatorConfig {
            expiry: cli.node_expiry,
            ..AggregatorConfig::default()
        },
        Some(store),
    )?);
    let api = ClusterApi::new(aggregator.clone());
    let socket = (!cli.socket.is_empty()).then(|| PathBuf::from(&cli.socket));
    let queries = QueryLimit::new(cli.query_rate, cli.query_burst, "the aggregator");
    let listeners = Listeners::start(&api, socket, listen, &queries).await?;
    let metrics = Arc::new(ClusterMetrics::new());
    let metrics_server = match cli.metrics_listen {
        Some(addr) => Some(MetricsServer::start(addr, Arc::clone(&metrics) as _).await?),
        None => None,
    };
    let alerts = match &cli.alertmanager {
        Some(url) => Some(AlertSender::start(
            AlertConfig {
                url: url.clone(),
                resend: cli.alert_resend,
                max_resolved: 1000,
            },
            aggregator.clone(),
        )?),
        None => None,
    };

    let mut rounds = tokio::time::interval(cli.window);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = async {
        match cli.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    info!(window = ?cli.window, expiry = ?cli.node_expiry, "aggregating");
    loop {
        tokio::select! {
            _ = rounds.tick() => {
                // A round of a large cluster is CPU work for a good part of a second: on a
                // blocking thread, so that the runtime's workers go on taking summaries and
                // answering the API meanwhile.
                let (shared, metrics) = (aggregator.clone(), Arc::clone(&metrics));
                let alerts_dropped = alerts.as_ref().map_or(0, AlertSender::dropped);
                let round = tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let mut cluster = shared.lock();
                    match cluster.round(SystemTime::now()) {
                        Ok(report) => {
                            let took = started.elapsed();
                            tracing::debug!(?report, ?took, "round");
                            metrics.after_round(&cluster, report.containers, took, alerts_dropped);
                        }
                        Err(err) => {
                            warn!(%err, "a comparison round failed; the next one tries again");
                        }
                    }
                })
                .await;
                if let Err(err) = round {
                    match err.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        Err(err) => warn!(%err, "a comparison round did not finish"),
                    }
                }
            }
            _ = &mut deadline => { info!("--duration reached; stopping"); break; }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT; stopping"); break; }
            _ = terminate.recv() => { info!("SIGTERM; stopping"); break; }
        }
    }
    if let Some(alerts) = alerts {
        alerts.stop(Duration::from_secs(1)).await;
    }
    if let Some(server) = metrics_server {
        server.stop();
    }
    listeners.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table of the aggregator's settings and its flags agree, row for flag.
    #[test]
    fn the_readme_lists_every_setting() {
        let readme = include_str!("../../README.md");
        let mut built = command();
        built.build();
        let problems =
            settings::table_disagreements(readme, "The aggregator", &built, AGGREGATOR_FILE.flag);
        assert!(
            problems.is_empty(),
            "README.md, The aggregator:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_cli_is_well_formed() {
        command().debug_assert();
    }
}
