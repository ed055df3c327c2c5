//! Ships summaries to the aggregator over one long-lived `PushSummaries` stream. The queue
//! holds a few windows; past that the oldest summary is dropped and counted, so the agent's
//! memory stays flat however long the aggregator is away. Reconnects back off with jitter;
//! losing and regaining the aggregator is logged once each. Over TCP the stream is mutual TLS
//! (`https://`): the aggregator's certificate is checked against the CA and the agent shows
//! its own.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use herd_proto::{
    herd::v1::{self as pb, aggregator_service_client::AggregatorServiceClient},
    tls::{DAEMON_FLAGS, TlsError, TlsFiles},
};
use thiserror::Error;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use super::identities::SentIdentities;
use crate::backoff::Backoff;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// `https://host:port`, `http://host:port` (plain text), or `unix:///path` for an
    /// aggregator on this host.
    pub url: String,
    /// The agent's certificate, key and CA for `https://`.
    pub tls: TlsFiles,
    /// Summaries held while the aggregator is away.
    pub queue: usize,
    /// Longest wait between two reconnects.
    pub max_backoff: Duration,
}

/// Why summaries cannot be sent to the aggregator at the given address.
#[derive(Debug, Error)]
pub enum SenderError {
    #[error(
        "--aggregator {url}: unsupported address; use https://HOST:PORT, http://HOST:PORT or \
         unix:///PATH"
    )]
    Scheme { url: String },
    #[error("--aggregator {url} is not a valid address")]
    Url {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(
        "--aggregator {url} needs --tls-cert, --tls-key and --tls-ca: the aggregator checks \
         the agent's certificate (mutual TLS)"
    )]
    NoTls { url: String },
    #[error("--aggregator {url}")]
    Tls {
        url: String,
        #[source]
        source: TlsError,
    },
    #[error("--aggregator {url}: the TLS settings cannot be used")]
    TlsConfig {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Where the stream goes, resolved once at start.
#[derive(Clone)]
enum Target {
    Unix(PathBuf),
    Tcp(Box<Endpoint>),
}

impl Target {
    /// Reads the TLS files and builds the endpoint, so that a bad setting fails start-up
    /// rather than the first connection.
    fn new(config: &SenderConfig) -> Result<Self, SenderError> {
        let url = &config.url;
        if let Some(path) = url.strip_prefix("unix://") {
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let endpoint = |url: &str| {
            Endpoint::from_shared(url.to_owned())
                .map(|endpoint| {
                    endpoint
                        .connect_timeout(Duration::from_secs(5))
                        .http2_keep_alive_interval(Duration::from_secs(30))
                })
                .map_err(|source| SenderError::Url {
                    url: url.to_owned(),
                    source,
                })
        };
        match url.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => {
                let tls = config
                    .tls
                    .mutual_client(DAEMON_FLAGS)
                    .map_err(|source| SenderError::Tls {
                        url: url.clone(),
                        source,
                    })?
                    .ok_or_else(|| SenderError::NoTls { url: url.clone() })?;
                let endpoint =
                    endpoint(url)?
                        .tls_config(tls)
                        .map_err(|source| SenderError::TlsConfig {
                            url: url.clone(),
                            source,
                        })?;
                Ok(Self::Tcp(Box::new(endpoint)))
            }
            Some(("http", rest)) if !rest.is_empty() => {
                warn!(
                    aggregator = %url,
                    "sending summaries in plain text (http://): use https:// with --tls-cert, \
                     --tls-key and --tls-ca to protect them"
                );
                Ok(Self::Tcp(Box::new(endpoint(url)?)))
            }
            _ => Err(SenderError::Scheme { url: url.clone() }),
        }
    }

    async fn connect(&self) -> Result<Channel, String> {
        match self {
            Self::Unix(path) => herd_proto::uds::connect(path).await,
            Self::Tcp(endpoint) => endpoint.connect().await,
        }
        .map_err(|err| crate::error_chain::error_chain(&err))
    }
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<pb::NodeSummary>,
    dropped: u64,
    sent: u64,
}

pub struct SummarySender {
    outbox: Arc<Mutex<Outbox>>,
    ready: Arc<Notify>,
    capacity: usize,
    task: JoinHandle<()>,
}

/// A sender whose address and TLS files have been checked, not started yet: the agent checks
/// its flags before it loads anything, and starts the stream once its privileges are dropped
/// (a connect may start a thread, which would keep every capability).
pub struct CheckedSender {
    config: SenderConfig,
    target: Target,
}

impl CheckedSender {
    /// Starts the stream in the background.
    pub fn start(self) -> SummarySender {
        let Self { config, target } = self;
        let outbox = Arc::new(Mutex::new(Outbox::default()));
        let ready = Arc::new(Notify::new());
        let capacity = config.queue.max(1);
        info!(aggregator = %config.url, "sending node summaries to the aggregator");
        let task = tokio::spawn(run(config, target, Arc::clone(&outbox), Arc::clone(&ready)));
        SummarySender {
            outbox,
            ready,
            capacity,
            task,
        }
    }
}

impl SummarySender {
    /// Checks the address and the TLS files; a bad one is an error now.
    pub fn check(config: SenderConfig) -> Result<CheckedSender, SenderError> {
        let target = Target::new(&config)?;
        Ok(CheckedSender { config, target })
    }

    /// Queues one window's summary; the oldest goes when the queue is full.
    pub fn push(&self, summary: pb::NodeSummary) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        if outbox.queue.len() >= self.capacity {
            outbox.queue.pop_front();
            outbox.dropped += 1;
        }
        outbox.queue.push_back(summary);
        drop(outbox);
        self.ready.notify_one();
    }

    /// Summaries dropped from the queue so far.
    pub fn dropped(&self) -> u64 {
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dropped
    }

    /// Summaries handed to the stream so far.
    pub fn sent(&self) -> u64 {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner()).sent
    }

    /// Gives the stream up to `within` to take what is queued (the last summary on SIGTERM),
    /// then stops.
    pub async fn stop(self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline
            && !self
                .outbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .queue
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.task.abort();
    }
}

async fn run(config: SenderConfig, target: Target, outbox: Arc<Mutex<Outbox>>, ready: Arc<Notify>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), config.max_backoff);
    let mut lost = false;
    loop {
        let channel = match target.connect().await {
            Ok(channel) => channel,
            Err(err) => {
                if !lost {
                    warn!(
                        aggregator = %config.url,
                        "cannot reach the aggregator ({err}); retrying with backoff, keeping the \
                         last {} summaries",
                        config.queue
                    );
                    lost = true;
                }
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        // Each identity once per stream: this new one starts with none carried.
        let mut identities = SentIdentities::default();
        let (tx, rx) = mpsc::channel(1);
        let mut client = AggregatorServiceClient::new(channel);
        let call = client.push_summaries(ReceiverStream::new(rx));
        tokio::pin!(call);
        let ended = loop {
            let next = outbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .queue
                .pop_front();
            let Some(mut summary) = next else {
                tokio::select! {
                    result = &mut call => break result.map(|r| r.into_inner().received),
                    () = ready.notified() => continue,
                }
            };
            identities.elide(&mut summary);
            tokio::select! {
                result = &mut call => break result.map(|r| r.into_inner().received),
                sent = tx.send(summary) => {
                    if let Err(mpsc::error::SendError(mut summary)) = sent {
                        identities.restore(&mut summary);
                        outbox.lock().unwrap_or_else(|e| e.into_inner()).queue.push_front(summary);
                        continue;
                    }
                    outbox.lock().unwrap_or_else(|e| e.into_inner()).sent += 1;
                    if lost {
                        info!(aggregator = %config.url, "the aggregator is reachable again; summaries flow");
                        lost = false;
                    }
                    backoff.reset();
                }
            }
        };
        match ended {
            Ok(received) => debug!(received, "the aggregator ended the stream"),
            Err(status) => {
                if !lost {
                    warn!(
                        aggregator = %config.url,
                        "lost the aggregator ({}); reconnecting with backoff",
                        status.message()
                    );
                    lost = true;
                }
            }
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}
