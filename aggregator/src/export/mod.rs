//! What leaves Herd besides its gRPC API, shared by the aggregator and the agent: findings as
//! Alertmanager alerts, and `/metrics` over HTTP with the process's own usage.

pub mod alerts;
pub mod metrics_http;
pub mod process;
