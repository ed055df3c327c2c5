//! Prometheus `/metrics`: each container's features and score, the open findings, and the
//! agent's own health, in the Prometheus text format on a configurable address.

pub mod bpf_stats;
pub mod node;
pub mod process;
pub mod serve;

pub use node::{MetricsLimits, NodeMetrics, WindowTimes};
pub use serve::{MetricsError, MetricsServer};
