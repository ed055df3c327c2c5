//! What the eBPF programs log through aya-log, passed on to the agent's own log.
//!
//! The programs log only rare events (a per-cgroup map found full), never on the hot path.
//! aya-log writes their records to a ring buffer; this task wakes when it has data and hands
//! each record to the `log` facade, which the agent's tracing subscriber takes in (see
//! `telemetry`), so they land where every other line goes, under the target
//! `herd_agent_ebpf`.

use aya::Ebpf;
use aya_log::EbpfLogger;
use thiserror::Error;
use tokio::{
    io::{Interest, unix::AsyncFd},
    task::JoinHandle,
};
use tracing::warn;

#[derive(Debug, Error)]
pub enum LogForwardError {
    #[error("cannot read the eBPF programs' log: {0}")]
    Logger(#[from] aya_log::Error),
    #[error("cannot watch the eBPF programs' log buffer: {0}")]
    Watch(#[from] std::io::Error),
}

/// The task that passes the programs' log records on; stopped when dropped.
pub struct LogForwarder {
    task: JoinHandle<()>,
}

impl Drop for LogForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts passing the log records of the programs in `ebpf` on to the agent's log. Needs a
/// tokio runtime.
pub fn forward(ebpf: &mut Ebpf) -> Result<LogForwarder, LogForwardError> {
    let logger = EbpfLogger::init(ebpf)?;
    // SAFETY: the descriptor is that of the logger's ring buffer, which the logger owns and
    // keeps open, unchanged, for as long as the `AsyncFd` owns the logger.
    let mut buffer = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let task = tokio::spawn(async move {
        loop {
            let mut ready = match buffer.readable_mut().await {
                Ok(ready) => ready,
                Err(err) => {
                    warn!(%err, "stopped reading the eBPF programs' log");
                    return;
                }
            };
            ready.get_inner_mut().flush();
            ready.clear_ready();
        }
    });
    Ok(LogForwarder { task })
}
