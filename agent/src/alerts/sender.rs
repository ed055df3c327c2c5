//! The sender: a background task that posts the open findings' alerts to Alertmanager on
//! every change and before their `endsAt` lapses, and their resolutions when they close.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, body::Bytes};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use thiserror::Error;
use tokio::{sync::Notify, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::{
    alerts::alert::alert_of,
    api::findings_log::FindingRecord,
    backoff::Backoff,
    detect::{Finding, WindowReport},
};

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

#[derive(Default)]
struct Outbox {
    firing: BTreeMap<String, FindingRecord>,
    resolved: VecDeque<FindingRecord>,
    /// Resolutions dropped because Alertmanager stayed away while the queue was full.
    dropped: u64,
}

pub struct AlertSender {
    outbox: Arc<Mutex<Outbox>>,
    changed: Arc<Notify>,
    max_resolved: usize,
    task: JoinHandle<()>,
}

impl AlertSender {
    /// Starts the background task; nothing is sent until a finding opens.
    pub fn start(config: AlertConfig) -> Result<Self, AlertError> {
        let endpoint: hyper::Uri = format!("{}/api/v2/alerts", config.url.trim_end_matches('/'))
            .parse()
            .map_err(|_| AlertError::Url(config.url.clone()))?;
        if endpoint.scheme_str() != Some("http") {
            return Err(AlertError::Url(config.url.clone()));
        }
        let outbox = Arc::new(Mutex::new(Outbox::default()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            endpoint,
            config.clone(),
            Arc::clone(&outbox),
            Arc::clone(&changed),
        ));
        info!(url = %config.url, "sending findings to Alertmanager");
        Ok(Self {
            outbox,
            changed,
            max_resolved: config.max_resolved.max(1),
            task,
        })
    }

    /// Takes in one window's openings, updates and closings.
    pub fn after_window(
        &self,
        report: &WindowReport,
        describe: impl Fn(&str) -> (Option<String>, Option<String>),
    ) {
        if report.opened.is_empty() && report.updated.is_empty() && report.closed.is_empty() {
            return;
        }
        let record = |finding: &Finding| {
            let (container, image) = describe(&finding.subject.entity);
            FindingRecord {
                finding: finding.clone(),
                container,
                image,
            }
        };
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        for finding in report.opened.iter().chain(&report.updated) {
            let record = match outbox.firing.get(&finding.id) {
                Some(known) => FindingRecord {
                    finding: finding.clone(),
                    ..known.clone()
                },
                None => record(finding),
            };
            outbox.firing.insert(finding.id.clone(), record);
        }
        for finding in &report.closed {
            let record = match outbox.firing.remove(&finding.id) {
                Some(known) => FindingRecord {
                    finding: finding.clone(),
                    ..known
                },
                None => record(finding),
            };
            outbox.resolved.push_back(record);
            while outbox.resolved.len() > self.max_resolved {
                outbox.resolved.pop_front();
                outbox.dropped += 1;
            }
        }
        drop(outbox);
        self.changed.notify_one();
    }

    /// Resolutions dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dropped
    }

    /// Sends what is pending once more (within `within`), then stops.
    pub async fn stop(self, within: Duration) {
        self.changed.notify_one();
        tokio::time::sleep(within.min(Duration::from_millis(200))).await;
        self.task.abort();
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
            let outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
            let ends_at = SystemTime::now() + lifetime;
            let alerts: Vec<serde_json::Value> = outbox
                .firing
                .values()
                .chain(&outbox.resolved)
                .map(|record| alert_of(record, ends_at).to_json())
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
                    let mut outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
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
        .map_err(|err| AlertError::Send(crate::error_chain::error_chain(&err)))?;
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
