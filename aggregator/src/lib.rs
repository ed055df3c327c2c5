//! Herd's cluster aggregator: every node's summary in, each workload compared across nodes,
//! findings kept on disk and served over `herd.v1.ClusterService`. The agent runs the same
//! code in-process in standalone mode.

pub mod cluster;
pub mod compare;
pub mod export;
pub mod findings;
pub mod identities;
pub mod matrix;
pub mod metrics;
pub mod nodes;
pub mod serve;
pub mod service;
pub mod store;

pub use cluster::{Aggregator, AggregatorConfig, RoundReport, SharedAggregator};
