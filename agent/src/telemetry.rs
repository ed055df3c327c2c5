//! The agent's own logs: a filter from `HERD_LOG` (default `info`), and a target: the host's
//! journal with structured fields where its socket exists, else stderr as plain text or JSON
//! lines (`HERD_LOG_FORMAT`: `plain` or `json`). Crates that log through `log`, aya among
//! them, are bridged into tracing.

use std::path::Path;

use thiserror::Error;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::filter_fn, layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

/// journald's native socket: where the journal listens on a systemd host.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";
/// The target of finding entries (`herd::finding`).
pub const FINDING_TARGET: &str = "herd::finding";
/// The target of the per-window syscall table: a terminal view, a dozen lines a window, kept
/// out of the journal.
pub const TABLE_TARGET: &str = "herd::table";

#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("HERD_LOG is not a valid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("HERD_LOG_FORMAT must be `plain` or `json`, not `{0}`")]
    Format(String),
    #[error("cannot log to journald at {JOURNALD_SOCKET}: {0}")]
    Journald(#[source] std::io::Error),
    #[error("a global logger was already installed: {0}")]
    Install(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where the logs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// journald when its socket exists, else stderr.
    Auto,
    Journald,
    Stderr,
}

impl LogTarget {
    fn resolve(self, journald_socket: &Path) -> Self {
        match self {
            Self::Auto if journald_socket.exists() => Self::Journald,
            Self::Auto => Self::Stderr,
            other => other,
        }
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(target: LogTarget) -> Result<(), TelemetryError> {
    let filter = || match std::env::var("HERD_LOG") {
        Ok(spec) => EnvFilter::try_new(spec),
        Err(_) => Ok(EnvFilter::new("info")),
    };
    match target.resolve(Path::new(JOURNALD_SOCKET)) {
        LogTarget::Journald => {
            let journal = |priorities| {
                tracing_journald::layer().map(|layer| {
                    layer
                        .with_syslog_identifier("herd-agent".to_owned())
                        // Fields keep their names, upcased: `herd_pod` is HERD_POD.
                        .with_field_prefix(None)
                        .with_priority_mappings(priorities)
                })
            };
            // Findings have priorities of their own: a critical one is `crit`, not `err`.
            let findings = journal(PriorityMappings {
                error: Priority::Critical,
                ..PriorityMappings::new()
            })
            .map_err(TelemetryError::Journald)?
            .with_filter(filter_fn(|meta| meta.target() == FINDING_TARGET));
            let rest = journal(PriorityMappings::new())
                .map_err(TelemetryError::Journald)?
                .with_filter(filter_fn(|meta| {
                    meta.target() != FINDING_TARGET && meta.target() != TABLE_TARGET
                }));
            tracing_subscriber::registry()
                .with(filter()?)
                .with(findings)
                .with(rest)
                .try_init()
                .map_err(|err| TelemetryError::Install(Box::new(err)))
        }
        _ => {
            let format = std::env::var("HERD_LOG_FORMAT").unwrap_or_else(|_| "plain".to_owned());
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter()?)
                .with_writer(std::io::stderr);
            match format.as_str() {
                "plain" => builder.try_init(),
                "json" => builder.json().flatten_event(true).try_init(),
                other => return Err(TelemetryError::Format(other.to_owned())),
            }
            .map_err(TelemetryError::Install)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_journald_only_where_its_socket_is() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        assert_eq!(LogTarget::Auto.resolve(&socket), LogTarget::Stderr);
        let _listener = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
        assert_eq!(LogTarget::Auto.resolve(&socket), LogTarget::Journald);
        assert_eq!(LogTarget::Stderr.resolve(&socket), LogTarget::Stderr);
    }
}
