//! The sender: a background task that follows a finding book's changes and posts the open
//! findings' alerts to Alertmanager on every change and before their `endsAt` lapses, and
//! their resolutions when they close.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use herd_proto::{backoff::Backoff, herd::v1 as pb};
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, body::Bytes};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use thiserror::Error;
use tokio::{
    sync::{Notify, broadcast},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::export::alerts::alert::alert_of;

#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Alertmanager's base URL, e.g. `http://alertmanager:9093`.
    pub url: String,
    /// How often firing alerts are re-sent; their `endsAt` is four of these ahead.
    pub resend: Duration,
    /// Resolutions kept while Alertmanager is away; the oldest go first.
    pub max_resolved: usize,
}

#[derive(Debug, Error)]
pub enum AlertError {
    #[error("the Alertmanager URL `{0}` is not an http:// URL")]
    Url(String),
    #[error("cannot reach Alertmanager: {0}")]
    Send(String),
    #[error("Alertmanager answered {status}: {body}")]
    Refused { status: u16, body: String },
}

/// A finding book whose changes the sender follows: the open findings now, then every change.
pub trait FindingFeed: Send + Sync + 'static {
    fn subscribe(&self) -> (Vec<pb::Finding>, broadcast::Receiver<Arc<pb::FindingEvent>>);
}

impl FindingFeed for crate::SharedAggregator {
    fn subscribe(&self) -> (Vec<pb::Finding>, broadcast::Receiver<Arc<pb::FindingEvent>>) {
        self.lock().findings().watch()
    }
}

#[derive(Default)]
struct Outbox {
    firing: BTreeMap<String, pb::Finding>,
    resolved: VecDeque<pb::Finding>,
    /// Resolutions dropped because Alertmanager stayed away while the queue was full.
    dropped: u64,
}

impl Outbox {
    fn open(&mut self, finding: pb::Finding) {
        self.firing.insert(finding.id.clone(), finding);
    }

    fn close(&mut self, mut finding: pb::Finding, max_resolved: usize) {
        self.firing.remove(&finding.id);
        if finding.closed.is_none() {
            finding.closed = Some(herd_detect::proto::timestamp(SystemTime::now()));
        }
        self.resolved.push_back(finding);
        while self.resolved.len() > max_resolved {
            self.resolved.pop_front();
            self.dropped += 1;
        }
    }

    /// After a resubscription: what is open now fires, and what fired but is no longer open
    /// closed while the sender was not looking.
    fn resync(&mut self, open: Vec<pb::Finding>, max_resolved: usize) {
        let mut firing: BTreeMap<String, pb::Finding> =
            open.into_iter().map(|f| (f.id.clone(), f)).collect();
        let gone: Vec<pb::Finding> = std::mem::take(&mut self.firing)
            .into_values()
            .filter(|f| !firing.contains_key(&f.id))
            .collect();
        for finding in gone {
            self.close(finding, max_resolved);
        }
        std::mem::swap(&mut self.firing, &mut firing);
    }
}

pub struct AlertSender {
    outbox: Arc<Mutex<Outbox>>,
    changed: Arc<Notify>,
    tasks: [JoinHandle<()>; 2],
}

impl AlertSender {
    /// Starts following `feed` and sending in the background; nothing is sent until a
    /// finding is open.
    pub fn start(config: AlertConfig, feed: impl FindingFeed) -> Result<Self, AlertError> {
        let endpoint: hyper::Uri = format!("{}/api/v2/alerts", config.url.trim_end_matches('/'))
            .parse()
            .map_err(|_| AlertError::Url(config.url.clone()))?;
        if endpoint.scheme_str() != Some("http") {
            return Err(AlertError::Url(config.url.clone()));
        }
        let outbox = Arc::new(Mutex::new(Outbox::default()));
        let changed = Arc::new(Notify::new());
        let follow = tokio::spawn(follow(
            feed,
            config.max_resolved.max(1),
            Arc::clone(&outbox),
            Arc::clone(&changed),
        ));
        let send = tokio::spawn(run(
            endpoint,
            config.clone(),
            Arc::clone(&outbox),
            Arc::clone(&changed),
        ));
        info!(url = %config.url, "sending findings to Alertmanager");
        Ok(Self {
            outbox,
            changed,
            tasks: [follow, send],
        })
    }

    /// Resolutions dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        lock(&self.outbox).dropped
    }

    /// Sends what is pending once more (within `within`), then stops.
    pub async fn stop(self, within: Duration) {
        self.changed.notify_one();
        tokio::time::sleep(within.min(Duration::from_millis(200))).await;
        for task in self.tasks {
            task.abort();
        }
    }
}

fn lock(outbox: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    outbox.lock().unwrap_or_else(|e| e.into_inner())
}

/// Follows the book's changes into the outbox. A follower that fell behind, or whose book
/// dropped its watchers, subscribes again and starts from what is open then.
async fn follow(
    feed: impl FindingFeed,
    max_resolved: usize,
    outbox: Arc<Mutex<Outbox>>,
    changed: Arc<Notify>,
) {
    loop {
        let (open, mut changes) = feed.subscribe();
        lock(&outbox).resync(open, max_resolved);
        changed.notify_one();
        loop {
            match changes.recv().await {
                Ok(event) => {
                    let Some(finding) = event.finding.clone() else {
                        continue;
                    };
                    let mut outbox = lock(&outbox);
                    match event.kind() {
                        pb::FindingEventKind::Closed => outbox.close(finding, max_resolved),
                        _ => outbox.open(finding),
                    }
                    drop(outbox);
                    changed.notify_one();
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "alerts fell behind the findings; catching up");
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

async fn run(
    endpoint: hyper::Uri,
    config: AlertConfig,
    outbox: Arc<Mutex<Outbox>>,
    changed: Arc<Notify>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let lifetime = config.resend * 4;
    let mut failing = false;
    let mut backoff = Backoff::new(Duration::from_secs(1), config.resend);
    loop {
        let (body, resolved) = {
            let outbox = lock(&outbox);
            let ends_at = SystemTime::now() + lifetime;
            let alerts: Vec<serde_json::Value> = outbox
                .firing
                .values()
                .chain(&outbox.resolved)
                .map(|finding| alert_of(finding, ends_at).to_json())
                .collect();
            (serde_json::Value::Array(alerts), outbox.resolved.len())
        };
        let wait = if body.as_array().is_some_and(|a| a.is_empty()) {
            config.resend
        } else {
            match post(&client, &endpoint, &body).await {
                Ok(()) => {
                    if failing {
                        info!("Alertmanager reachable again; alerts sent");
                        failing = false;
                    }
                    debug!(alerts = body.as_array().map_or(0, Vec::len), "alerts sent");
                    let mut outbox = lock(&outbox);
                    // Only those sent: more may have closed meanwhile.
                    let sent = resolved.min(outbox.resolved.len());
                    outbox.resolved.drain(..sent);
                    backoff.reset();
                    config.resend
                }
                Err(err) => {
                    if !failing {
                        warn!("{err}; retrying with backoff, holding the open findings' alerts");
                        failing = true;
                    }
                    backoff.next_wait()
                }
            }
        };
        tokio::select! {
            () = changed.notified(), if !failing => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn post(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    endpoint: &hyper::Uri,
    body: &serde_json::Value,
) -> Result<(), AlertError> {
    let request = Request::post(endpoint.clone())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|err| AlertError::Send(err.to_string()))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| AlertError::Send("no answer within 10 s".into()))?
        .map_err(|err| AlertError::Send(herd_proto::error_chain::error_chain(&err)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    Err(AlertError::Refused {
        status: status.as_u16(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str) -> pb::Finding {
        pb::Finding {
            id: id.into(),
            ..pb::Finding::default()
        }
    }

    #[test]
    fn resolutions_are_bounded_and_the_oldest_go_first() {
        let mut outbox = Outbox::default();
        for id in ["a", "b", "c"] {
            outbox.open(finding(id));
        }
        for id in ["a", "b", "c"] {
            outbox.close(finding(id), 2);
        }
        assert!(outbox.firing.is_empty());
        let left: Vec<&str> = outbox.resolved.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(left, ["b", "c"]);
        assert_eq!(outbox.dropped, 1);
        assert!(outbox.resolved.iter().all(|f| f.closed.is_some()));
    }

    /// A finding a node reports, through the aggregator's book, to an HTTP server that
    /// stands in for Alertmanager's API: the alert arrives, labelled.
    #[tokio::test(flavor = "current_thread")]
    async fn a_node_finding_reaches_alertmanager_through_the_aggregator() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (posted, mut received) = tokio::sync::mpsc::channel::<String>(8);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body by its length.
                loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            posted.send(body.to_owned()).await.unwrap();
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
            }
        });

        let aggregator = crate::SharedAggregator::new(
            crate::Aggregator::new(crate::AggregatorConfig::default(), None).unwrap(),
        );
        let sender = AlertSender::start(
            AlertConfig {
                url: format!("http://127.0.0.1:{port}"),
                resend: Duration::from_secs(60),
                max_resolved: 10,
            },
            aggregator.clone(),
        )
        .unwrap();
        let now = SystemTime::now();
        let summary = pb::NodeSummary {
            node: "node-1".into(),
            at: Some(herd_detect::proto::timestamp(now)),
            features: vec!["cpu_usage_cores".into()],
            findings: vec![pb::Finding {
                id: "f1".into(),
                node: "node-1".into(),
                namespace: "shop".into(),
                pod: "web-1".into(),
                domain: "shop/Deployment/web/app".into(),
                severity: pb::Severity::Critical.into(),
                kind: pb::FindingKind::NodePeers.into(),
                ..pb::Finding::default()
            }],
            ..pb::NodeSummary::default()
        };
        {
            let mut cluster = aggregator.lock();
            cluster.ingest(summary, now).unwrap();
            cluster.round(now).unwrap();
        }
        let body = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("an alert within 10 s")
            .unwrap();
        let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            alerts[0]["labels"]["alertname"], "HerdStrayContainer",
            "{alerts}"
        );
        assert_eq!(alerts[0]["labels"]["pod"], "web-1");
        sender.stop(Duration::from_millis(10)).await;
    }

    #[test]
    fn a_resync_resolves_what_closed_unseen_and_fires_what_opened() {
        let mut outbox = Outbox::default();
        outbox.open(finding("gone"));
        outbox.open(finding("kept"));
        outbox.resync(vec![finding("kept"), finding("new")], 10);
        let firing: Vec<&str> = outbox.firing.keys().map(String::as_str).collect();
        assert_eq!(firing, ["kept", "new"]);
        let resolved: Vec<&str> = outbox.resolved.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(resolved, ["gone"]);
    }
}
