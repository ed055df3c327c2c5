//! `/metrics` over HTTP/1.1, for Prometheus to scrape: the agent's and the aggregator's.

use std::{net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, info, warn};

/// What `/metrics` shows.
pub trait Scrape: Send + Sync + 'static {
    /// Every metric in the OpenMetrics text format, as of now.
    fn encode(&self) -> Result<String, std::fmt::Error>;
}

/// OpenMetrics, which Prometheus asks for when it scrapes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text format, for every other client (promtool, curl).
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct MetricsServer {
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds now, so that a taken port fails start-up, and serves in the background.
    pub async fn start(addr: SocketAddr, metrics: Arc<dyn Scrape>) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Listen { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        info!(%addr, "serving Prometheus metrics at /metrics");
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        warn!(%err, "accepting a metrics connection failed");
                        continue;
                    }
                };
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    let service = service_fn(move |request| respond(request, Arc::clone(&metrics)));
                    if let Err(err) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        debug!(%peer, %err, "a metrics connection ended with an error");
                    }
                });
            }
        });
        Ok(Self { task })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn respond(
    request: Request<hyper::body::Incoming>,
    metrics: Arc<dyn Scrape>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let reply = |status, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert("content-type", value);
        }
        Ok(response)
    };
    let openmetrics = request
        .headers()
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => match metrics.encode() {
            Ok(text) if openmetrics => reply(StatusCode::OK, OPENMETRICS, text),
            Ok(text) => reply(StatusCode::OK, TEXT, classic(&text)),
            Err(_) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "encoding the metrics failed\n".into(),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /metrics is served here\n".into(),
        ),
    }
}

/// The classic text format from OpenMetrics text: a counter's family is named with its
/// `_total`, and the `# UNIT` and `# EOF` lines, which the classic format lacks, go.
pub fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_their_total_in_the_classic_format() {
        let om = "# HELP herd_windows Windows scored.\n# TYPE herd_windows counter\n\
                  herd_windows_total 4\n# HELP herd_containers Containers.\n\
                  # TYPE herd_containers gauge\nherd_containers 2\n\
                  # HELP process_resident_memory_bytes Resident memory.\n\
                  # TYPE process_resident_memory_bytes gauge\n\
                  # UNIT process_resident_memory_bytes bytes\nprocess_resident_memory_bytes 9\n# EOF\n";
        assert_eq!(
            classic(om),
            "# HELP herd_windows_total Windows scored.\n# TYPE herd_windows_total counter\n\
             herd_windows_total 4\n# HELP herd_containers Containers.\n\
             # TYPE herd_containers gauge\nherd_containers 2\n\
             # HELP process_resident_memory_bytes Resident memory.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 9\n"
        );
    }
}
