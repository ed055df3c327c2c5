//! Findings as Alertmanager alerts (v2 API, `POST /api/v2/alerts`): firing while a finding
//! is open and re-sent before its `endsAt` lapses, resolved when it closes. While
//! Alertmanager is away the sender retries with backoff; what it holds is bounded: the open
//! findings' alerts, and a capped queue of resolutions, the oldest dropped and counted.

mod alert;
mod sender;

pub use alert::{Alert, alert_of};
pub use sender::{AlertConfig, AlertError, AlertSender};
