//! The agent's own logs: a filter from `HERD_LOG` (default `info`), plain text or JSON lines
//! from `HERD_LOG_FORMAT` (`plain` or `json`). Crates that log through `log`, aya among
//! them, are bridged into tracing.

use thiserror::Error;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("HERD_LOG is not a valid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("HERD_LOG_FORMAT must be `plain` or `json`, not `{0}`")]
    Format(String),
    #[error("a global logger was already installed: {0}")]
    Install(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() -> Result<(), TelemetryError> {
    let filter = match std::env::var("HERD_LOG") {
        Ok(spec) => EnvFilter::try_new(spec)?,
        Err(_) => EnvFilter::new("info"),
    };
    let format = std::env::var("HERD_LOG_FORMAT").unwrap_or_else(|_| "plain".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format.as_str() {
        "plain" => builder.try_init(),
        "json" => builder.json().flatten_event(true).try_init(),
        other => return Err(TelemetryError::Format(other.to_owned())),
    };
    installed.map_err(TelemetryError::Install)
}
