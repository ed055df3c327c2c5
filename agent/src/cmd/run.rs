//! `herd-agent run`: keep the container table, read every container each window, score it
//! against its peers, log the busiest cgroups and any findings, and serve what it knows over
//! the API.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
    time::SystemTime,
};

use anyhow::Context as _;
use clap::Args;
use herd_agent::{
    api::{
        AgentFacts, ApiConfig, ApiServer, RuntimeState, SharedState, SignalState,
        findings_log::LogLimits,
    },
    collect::{
        cgroup::CgroupMounts,
        ebpf::{EbpfConfig, EbpfPrograms, Signal},
        signals::SignalSampler,
    },
    discovery::poller::Discovery,
    export::{
        findings,
        frames::{FrameSink, RecordFiles, Rotation, parse_size},
        table,
    },
    features::{self, NodeCapacity},
    heap::HeapTrim,
    host::{self, Host, HostPaths, Tracefs},
    metrics::{MetricsLimits, MetricsServer, NodeMetrics, WindowTimes},
    pipeline::Pipeline,
    privileges,
    summary::{Health, SenderConfig, SummaryBuilder, SummarySender},
    transient,
};
use herd_aggregator::{
    Aggregator, AggregatorConfig, SharedAggregator,
    export::alerts::{AlertConfig, AlertSender},
    service::ClusterApi,
};
use herd_proto::{
    rate::{self, QueryLimit},
    tls::{DAEMON_FLAGS, TcpListen, TlsFiles, server_transport},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::cmd::{DiscoveryArgs, detection::DetectionArgs};

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Length of a detection window: every container is read and scored once per window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Time between two polls of the cgroups and the container runtime.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    discovery_interval: Duration,
    /// How many cgroups the syscall table shows each window.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Stop after this long instead of running until SIGINT or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// This node's name in findings and frames (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "HERD_NODE_NAME")]
    node_name: Option<String>,
    /// Also write every window's feature frames to this CSV file (`replay` reads it).
    #[arg(long)]
    record: Option<PathBuf>,
    /// A --record file is rotated before it grows past this size (bytes, or K, M, G in powers
    /// of 1024); 0 never rotates.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    record_max_size: u64,
    /// Rotated --record files kept beside the current one: FILE.1 (the newest) to FILE.<N>.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    record_keep: u32,
    /// The API's unix socket (herd.v1.NodeService), created mode 0600: root only. An empty
    /// value serves no socket.
    #[arg(
        long,
        env = "HERD_SOCKET",
        default_value = "/run/herd/agent.sock",
        value_parser = clap::value_parser!(std::ffi::OsString)
    )]
    socket: std::ffi::OsString,
    /// Also serve the API on this TCP address (e.g. 0.0.0.0:7443): mutual TLS with
    /// --tls-cert, --tls-key and --tls-ca, or plain text with --insecure.
    #[arg(long, env = "HERD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Allow plain text on TCP: --listen without TLS (anyone who reaches the address can read
    /// the findings) and an http:// --aggregator (anyone on the path can read the summaries).
    #[arg(long)]
    insecure: bool,
    /// The agent's certificate (PEM), with its chain after it: served on --listen and shown
    /// to an https:// aggregator.
    #[arg(long, env = "HERD_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "HERD_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that signs the aggregator's and clients' certificates.
    #[arg(long, env = "HERD_TLS_CA", value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Windows of each container's features kept for `herd explain` (360 is an hour of 10 s
    /// windows).
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u32).range(1..=8640))]
    history_windows: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464).
    #[arg(long, env = "HERD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Most per-container series in /metrics; the highest scores are kept.
    #[arg(long, default_value_t = 10_000)]
    metrics_max_series: usize,
    /// Send findings as alerts to this Alertmanager (v2 API), e.g. http://alertmanager:9093:
    /// the cluster's findings in standalone mode, the node's own with --aggregator (where the
    /// aggregator is the one that should send them).
    #[arg(long, env = "HERD_ALERTMANAGER")]
    alertmanager: Option<String>,
    /// How often firing alerts are re-sent to Alertmanager; each lapses after four of these.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    alert_resend: Duration,
    /// Send each window's summary to this aggregator: https://host:port (mutual TLS with
    /// --tls-cert, --tls-key and --tls-ca), http://host:port (plain text) or unix:///path.
    /// Without it the agent runs the aggregator in its own process (standalone) and serves
    /// its cluster view too.
    #[arg(long, env = "HERD_AGGREGATOR")]
    aggregator: Option<String>,
    /// Summaries kept while the aggregator is away; the oldest are dropped past this.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
    summary_queue: u32,
    /// Finding changes a watcher may fall behind before it is dropped.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    watch_queue: u32,
    /// Queries a second the API answers, over all its listeners (the bucket's refill rate);
    /// past it a query gets RESOURCE_EXHAUSTED. Health checks are not counted. 0 is no limit.
    #[arg(long, default_value_t = rate::DEFAULT_RATE)]
    query_rate: u32,
    /// Queries the API answers at once after a quiet spell (the bucket's size).
    #[arg(long, default_value_t = rate::DEFAULT_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    query_burst: u32,
    #[command(flatten)]
    discovery: DiscoveryArgs,
    #[command(flatten)]
    detection: DetectionArgs,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.interval.is_zero() && !args.discovery_interval.is_zero(),
        "--interval and --discovery-interval must be longer than zero"
    );
    let tls_files = TlsFiles {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        ca: args.tls_ca.clone(),
    };
    let listen = match args.listen {
        Some(addr) => Some(TcpListen {
            addr,
            transport: server_transport("--listen", &tls_files, args.insecure, DAEMON_FLAGS)?,
        }),
        None => None,
    };
    let detect = args
        .detection
        // The detector counts windows: its seasons are days of windows of this length.
        .apply(features::detect_config(&features::names()).with_daily_seasons(args.interval))
        .map_err(anyhow::Error::msg)?;
    // A bad --aggregator address or TLS file is an error before the host checks and eBPF.
    let sender = match &args.aggregator {
        Some(url) if url.starts_with("http://") && !args.insecure => anyhow::bail!(
            "--aggregator {url} sends the summaries in plain text; use https:// with \
             --tls-cert, --tls-key and --tls-ca, or pass --insecure to allow that"
        ),
        Some(url) => Some(SummarySender::check(SenderConfig {
            url: url.clone(),
            tls: tls_files,
            queue: args.summary_queue as usize,
            max_backoff: Duration::from_secs(60),
        })?),
        None => None,
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let paths = HostPaths::default();
    let host = host::preflight(&paths, euid)?;
    info!(cgroup2 = %host.cgroup2.display(), "host checks passed");

    let tracefs = Tracefs::ensure()
        .inspect(|t| {
            if t.mounted_here() {
                info!("mounted tracefs at /sys/kernel/tracing for the tracepoint programs");
            }
        })
        .map_err(|err| warn!(%err, "cannot mount tracefs; block IO and OOM signals need it"))
        .ok();
    let (mut programs, ebpf_missing) = match load_ebpf(&paths, &host, &args.discovery.cgroup_root) {
        Ok(programs) => (Some(programs), None),
        Err(reason) => (None, Some(reason)),
    };
    let signals = signal_states(programs.as_ref(), ebpf_missing.as_deref());
    let loaded = programs
        .as_ref()
        .map(|p| p.signals().to_vec())
        .unwrap_or_default();
    let mut sampler = match &mut programs {
        Some(programs) => Some(SignalSampler::new(programs.take_signal_maps()?)),
        None => None,
    };
    let mut full_maps = programs
        .as_mut()
        .map(EbpfPrograms::take_full_maps)
        .transpose()?;
    // What the programs log (a map found full) joins the agent's log; without it the agent
    // still counts and warns from user space.
    let ebpf_log = programs.as_mut().and_then(|programs| {
        programs
            .forward_logs()
            .map_err(|err| warn!(%err, "the eBPF programs' own log is not read"))
            .ok()
    });
    let program_names = programs
        .as_ref()
        .map(EbpfPrograms::program_names)
        .unwrap_or_default();
    // Attached tracepoints need tracefs no more, and unmounting it takes CAP_SYS_ADMIN, which
    // goes now.
    drop(tracefs);
    drop_privileges(&args, &paths.proc)?;
    let mut discovery = args.discovery.discovery(&host.cgroup2, &paths.proc)?;
    let record = match &args.record {
        Some(path) => {
            let rotation = Rotation {
                max_bytes: args.record_max_size,
                keep: args.record_keep,
            };
            let files = RecordFiles::create(path, rotation)
                .with_context(|| format!("creating the frame file {}", path.display()))?;
            info!(file = %path.display(), "recording feature frames");
            Some(Box::new(files) as Box<dyn FrameSink>)
        }
        None => None,
    };
    let node = args.node_name.clone().unwrap_or_else(hostname);
    let mounts = CgroupMounts {
        cgroup2: host.cgroup2.clone(),
        v1: host.cgroup_v1.clone(),
    };
    let mut pipeline = Pipeline::new(
        node.clone(),
        mounts,
        paths.proc.clone(),
        NodeCapacity::of_this_host(),
        loaded,
        record,
        detect.clone(),
    )?;

    let names = features::names();
    let state = SharedState::new(
        AgentFacts {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            node: node.clone(),
            window: args.interval,
            min_age: args.discovery.min_age,
            started: SystemTime::now(),
            signals,
            ebpf_missing,
            threshold: detect.threshold,
            features: names,
        },
        args.history_windows as usize,
        LogLimits {
            watch_queue: args.watch_queue as usize,
            ..LogLimits::default()
        },
    );
    let mut summaries = SummaryBuilder::new(node.clone(), args.interval, features::names());
    let upstream = match sender {
        Some(sender) => Upstream::Remote(sender.start()),
        None => {
            info!("no --aggregator: running the aggregator in this process (standalone)");
            Upstream::Standalone(SharedAggregator::new(Aggregator::new(
                AggregatorConfig {
                    // One node's summaries come every window: it is silent after three.
                    expiry: args.interval * 3,
                    // The agent's own floors per feature, with the aggregator's history and
                    // seasons (none: the agent's own detector keeps them).
                    detect: herd_agent::detect::DetectConfig {
                        history: AggregatorConfig::default().detect.history,
                        season_period: AggregatorConfig::default().detect.season_period,
                        ..detect.clone()
                    },
                    ..AggregatorConfig::default()
                },
                None,
            )?))
        }
    };
    let api = ApiServer::start(
        &ApiConfig {
            socket: (!args.socket.is_empty()).then(|| PathBuf::from(&args.socket)),
            listen,
            cluster: match &upstream {
                Upstream::Standalone(aggregator) => Some(ClusterApi::new(aggregator.clone())),
                Upstream::Remote(_) => None,
            },
            queries: QueryLimit::new(args.query_rate, args.query_burst, "this agent"),
        },
        state.clone(),
    )
    .await?;

    let metrics = Arc::new(NodeMetrics::new(MetricsLimits {
        max_series: args.metrics_max_series,
    }));
    metrics.programs_loaded(program_names);
    let metrics_server = match args.metrics_listen {
        Some(addr) => Some(MetricsServer::start(addr, Arc::clone(&metrics) as _).await?),
        None => None,
    };

    let alerts = match &args.alertmanager {
        Some(url) => {
            let config = AlertConfig {
                url: url.clone(),
                resend: args.alert_resend,
                max_resolved: 1000,
            };
            Some(match &upstream {
                Upstream::Standalone(aggregator) => AlertSender::start(config, aggregator.clone())?,
                Upstream::Remote(_) => AlertSender::start(config, state.clone())?,
            })
        }
        None => None,
    };

    // The first discovery poll comes before the first window, so that it has containers.
    discovery.poll().await;
    state
        .lock()
        .after_poll(discovery.table(), runtime_state(&discovery));
    let mut finding_log = findings::FindingLogger::default();
    let mut discovery_errors = 0u64;
    let mut ebpf_faults = transient::ebpf_reads();
    let mut full_map_faults = transient::Transient::new(
        "reading the eBPF full-map counts",
        "what full maps lose is counted at the next good read",
    );
    let mut windows =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    windows.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls = tokio::time::interval_at(
        tokio::time::Instant::now() + args.discovery_interval,
        args.discovery_interval,
    );
    polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = async {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let active: Vec<String> = state
        .lock()
        .facts
        .signals
        .iter()
        .filter(|s| s.active)
        .map(|s| s.name.clone())
        .collect();
    info!(
        %node,
        window = ?args.interval,
        containers = discovery.table().len(),
        signals = %active.join(","),
        "herd-agent {} started, watching with {}",
        env!("CARGO_PKG_VERSION"),
        active.join(", ")
    );
    let mut heap_trim = HeapTrim::default();
    loop {
        tokio::select! {
            _ = polls.tick() => {
                let changes = discovery.poll().await;
                for id in &changes.added {
                    if let Some(container) = discovery.table().get(id) {
                        info!(container = %container.label(), id = %short(id), "container appeared");
                    }
                }
                for id in &changes.removed {
                    info!(id = %short(id), "container gone");
                }
                if !discovery.runtime_up() {
                    metrics.discovery_failed();
                    discovery_errors += 1;
                }
                state.lock().after_poll(discovery.table(), runtime_state(&discovery));
            }
            _ = windows.tick() => {
                // A map that cannot be read this window costs this window's eBPF signals,
                // not the agent.
                let sample = transient::sample_signals(
                    sampler.as_mut(),
                    discovery.cgroup_index(),
                    &mut ebpf_faults,
                );
                let containers = discovery.table();
                let at = SystemTime::now();
                let started = std::time::Instant::now();
                let window = pipeline.window(containers, sample.as_ref(), at)?;
                let report = &window.report;
                finding_log.log(report, containers);
                let mut shared = state.lock();
                shared.after_window(at, containers, report);
                metrics.after_window(
                    report,
                    containers,
                    &shared.facts.features,
                    shared.findings.open(),
                    WindowTimes {
                        collection: pipeline.collection_time(),
                        window: started.elapsed(),
                    },
                );
                let open = shared.findings.watch().0;
                drop(shared);
                let summary = summaries.build(
                    at,
                    containers,
                    &window,
                    open,
                    Health {
                        collection: pipeline.collection_time(),
                        ebpf_loaded: sampler.is_some(),
                        runtime_connected: discovery.runtime_up(),
                        discovery_errors,
                        summaries_dropped: upstream.dropped(),
                    },
                );
                upstream.send(summary, at);
                metrics.senders(
                    upstream.sent(),
                    upstream.dropped(),
                    alerts.as_ref().map_or(0, AlertSender::dropped),
                );
                metrics.faults(ebpf_faults.total(), pipeline.frame_write_failures());
                if let Some(full_maps) = &mut full_maps
                    && full_map_faults.check(full_maps.read()).is_some()
                {
                    metrics.map_full(full_maps.totals());
                }
                let history = state.lock().history.len();
                let holders = [("table", containers.len()), ("history", history)]
                    .into_iter()
                    .chain(pipeline.state_sizes());
                heap_trim.after_window(holders.clone().map(|(_, n)| n).sum());
                metrics.state(
                    holders,
                    sampler.as_ref().map(|s| s.map_entries()).unwrap_or_default(),
                );
                if let Some(sample) = &sample {
                    table::log_busiest(&sample.syscall_sample(), args.top, |row| {
                        containers
                            .by_cgroup_id(row.cgroup_id)
                            .map_or_else(|| row.path.display().to_string(), |c| c.label())
                    });
                }
            }
            _ = &mut deadline => {
                info!("--duration reached; stopping");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                info!("SIGINT; stopping");
                break;
            }
            _ = terminate.recv() => {
                info!("SIGTERM; stopping");
                break;
            }
        }
    }
    // The last summary goes out before the API and the programs.
    upstream.stop().await;
    let windows = state.lock().windows;
    info!(windows, "stopped after {windows} windows");
    api.stop(&state).await;
    if let Some(server) = metrics_server {
        server.stop();
    }
    if let Some(alerts) = alerts {
        alerts.stop(Duration::from_secs(1)).await;
    }
    drop(ebpf_log);
    drop(programs);
    Ok(())
}

/// Gives up every capability the agent needed only to start (`privileges`), saying once
/// what it keeps. The runtime has started no thread yet: capabilities belong to threads.
fn drop_privileges(args: &RunArgs, proc: &Path) -> anyhow::Result<()> {
    let ports: Vec<u16> = [args.listen, args.metrics_listen]
        .iter()
        .flatten()
        .map(SocketAddr::port)
        .collect();
    let dropped = privileges::drop_all_but(&privileges::steady_state(&ports, proc), proc)
        .context("dropping the capabilities needed only at start")?;
    let kept = dropped.kept.iter().cloned().collect::<Vec<_>>().join(", ");
    info!(
        kept = %kept,
        dropped = dropped.dropped.len(),
        bounding = dropped.bounding,
        "capabilities dropped: keeping {} and no_new_privs{}",
        if kept.is_empty() { "none" } else { &kept },
        if dropped.bounding {
            ""
        } else {
            " (the bounding set stays: emptying it takes CAP_SETPCAP)"
        }
    );
    Ok(())
}

/// Where summaries go: an aggregator elsewhere, or the one in this process.
enum Upstream {
    Remote(SummarySender),
    Standalone(SharedAggregator),
}

impl Upstream {
    fn send(&self, summary: herd_proto::herd::v1::NodeSummary, at: SystemTime) {
        match self {
            Self::Remote(sender) => sender.push(summary),
            Self::Standalone(aggregator) => {
                let mut aggregator = aggregator.lock();
                // Its own summary is whole by construction; a refusal is a bug to see.
                if let Err(err) = aggregator.ingest(summary, at) {
                    warn!(%err, "the in-process aggregator refused this node's summary");
                }
                if let Err(err) = aggregator.round(at) {
                    warn!(%err, "the in-process aggregator's round failed");
                }
            }
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            Self::Remote(sender) => sender.dropped(),
            Self::Standalone(_) => 0,
        }
    }

    /// Summaries handed on: to the stream, or to the aggregator in this process.
    fn sent(&self) -> u64 {
        match self {
            Self::Remote(sender) => sender.sent(),
            Self::Standalone(aggregator) => aggregator.lock().rounds(),
        }
    }

    async fn stop(self) {
        if let Self::Remote(sender) = self {
            sender.stop(Duration::from_secs(2)).await;
        }
    }
}

fn runtime_state(discovery: &Discovery) -> RuntimeState {
    let (socket, reason) = discovery.runtime_status();
    RuntimeState {
        connected: discovery.runtime_up(),
        socket,
        reason,
    }
}

/// Every signal, with where it comes from and why it is missing where it is.
fn signal_states(programs: Option<&EbpfPrograms>, ebpf_missing: Option<&str>) -> Vec<SignalState> {
    let mut states = vec![
        SignalState {
            name: "cgroup".into(),
            active: true,
            source: "cgroup files (v1 controllers and cgroup2): CPU, memory, IO, pids, \
                     pressure"
                .into(),
            reason: None,
        },
        SignalState {
            name: "netns".into(),
            active: true,
            source: "/proc/<pid>/net/{dev,snmp,netstat} of each pod's network namespace".into(),
            reason: None,
        },
    ];
    for signal in Signal::ALL {
        let reason = match programs {
            Some(programs) if programs.signals().contains(&signal) => None,
            Some(programs) => Some(
                programs
                    .unavailable()
                    .iter()
                    .find(|(s, _)| *s == signal)
                    .map_or_else(|| "not loaded".to_owned(), |(_, err)| err.to_string()),
            ),
            None => Some(ebpf_missing.unwrap_or("eBPF is not loaded").to_owned()),
        };
        states.push(SignalState {
            name: signal.name().into(),
            active: reason.is_none(),
            source: signal.source().into(),
            reason,
        });
    }
    states
}

/// The eBPF programs of every signal this kernel supports, or why none loads; each missing
/// signal, or eBPF as a whole, is said once, plainly. Without eBPF the agent runs on cgroup
/// and namespace counters alone.
fn load_ebpf(paths: &HostPaths, host: &Host, cgroup_root: &Path) -> Result<EbpfPrograms, String> {
    if let Err(err) = host::check_btf(paths) {
        warn!("{err}; running on cgroup and network-namespace counters only");
        return Err(err.to_string());
    }
    // The network programs see every socket below the cgroup they attach to: this node's
    // pods.
    let root = host
        .cgroup2
        .join(cgroup_root.strip_prefix("/").unwrap_or(cgroup_root));
    let network_cgroup = ["kubepods", "kubepods.slice"]
        .iter()
        .map(|name| root.join(name))
        .find(|dir| dir.is_dir())
        .or(Some(root));
    let config = EbpfConfig {
        signals: Signal::ALL.to_vec(),
        network_cgroup,
        ..EbpfConfig::default()
    };
    match EbpfPrograms::load_available(&config) {
        Ok(programs) => {
            for (signal, err) in programs.unavailable() {
                warn!("the {signal} signal is not available: {err}");
            }
            Ok(programs)
        }
        Err(err) => {
            warn!(
                "eBPF is not available ({err}); running on cgroup and network-namespace \
                 counters only"
            );
            Err(err.to_string())
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown-node".to_owned())
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
