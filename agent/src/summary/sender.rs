//! Ships summaries to the aggregator over one long-lived `PushSummaries` stream. The queue
//! holds a few windows; past that the oldest summary is dropped and counted, so the agent's
//! memory stays flat however long the aggregator is away. Reconnects back off with jitter;
//! losing and regaining the aggregator is logged once each.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use herd_proto::herd::v1::{self as pb, aggregator_service_client::AggregatorServiceClient};
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// `http://host:port`, or `unix:///path` for an aggregator on this host.
    pub url: String,
    /// Summaries held while the aggregator is away.
    pub queue: usize,
    /// Longest wait between two reconnects.
    pub max_backoff: Duration,
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

impl SummarySender {
    pub fn start(config: SenderConfig) -> Self {
        let outbox = Arc::new(Mutex::new(Outbox::default()));
        let ready = Arc::new(Notify::new());
        let capacity = config.queue.max(1);
        info!(aggregator = %config.url, "sending node summaries to the aggregator");
        let task = tokio::spawn(run(config, Arc::clone(&outbox), Arc::clone(&ready)));
        Self {
            outbox,
            ready,
            capacity,
            task,
        }
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

async fn connect(url: &str) -> Result<Channel, String> {
    let connected = match url.strip_prefix("unix://") {
        Some(path) => herd_proto::uds::connect(path).await,
        None => {
            let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
            endpoint
                .connect_timeout(Duration::from_secs(5))
                .http2_keep_alive_interval(Duration::from_secs(30))
                .connect()
                .await
        }
    };
    connected.map_err(|err| crate::error_chain::error_chain(&err))
}

async fn run(config: SenderConfig, outbox: Arc<Mutex<Outbox>>, ready: Arc<Notify>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), config.max_backoff);
    let mut lost = false;
    loop {
        let channel = match connect(&config.url).await {
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
            let Some(summary) = next else {
                tokio::select! {
                    result = &mut call => break result.map(|r| r.into_inner().received),
                    () = ready.notified() => continue,
                }
            };
            tokio::select! {
                result = &mut call => break result.map(|r| r.into_inner().received),
                sent = tx.send(summary) => {
                    if let Err(mpsc::error::SendError(summary)) = sent {
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
