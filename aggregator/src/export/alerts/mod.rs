//! Findings as Alertmanager alerts (v2 API, `POST /api/v2/alerts`): firing while a finding
//! is open and re-sent before its `endsAt` lapses, resolved when it closes. The sender follows
//! a finding book's changes, the agent's or the aggregator's, so node and cluster findings go
//! out the same way. While Alertmanager is away it retries with backoff; what it holds is
//! bounded: the open findings' alerts, and a capped queue of resolutions, the oldest dropped
//! and counted.

mod alert;
mod sender;

pub use alert::{Alert, alert_of, alertname};
pub use sender::{AlertConfig, AlertError, AlertSender, FindingFeed};
