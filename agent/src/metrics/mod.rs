//! Prometheus `/metrics`: each container's features and score, the open findings, and the
//! agent's own health, in the Prometheus text format on a configurable address.

pub mod bpf_stats;
pub mod node;

pub use herd_aggregator::export::metrics_http::{MetricsError, MetricsServer};
pub use node::{MetricsLimits, NodeMetrics, WindowTimes};
