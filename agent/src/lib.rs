//! Herd's node agent. The modules follow the data flow: `discovery` finds who is who,
//! `collect` reads raw counters, `features` and `detect` judge them, `export` and `api` send
//! what was learned out of the agent.

pub mod api;
pub use herd_proto::backoff;
pub mod collect;
pub mod config;
/// The detector lives in its own crate, shared with the aggregator.
pub use herd_detect as detect;
pub mod discovery;
pub use herd_proto::error_chain;
pub mod export;
pub mod features;
pub mod heap;
pub mod host;
pub mod metrics;
pub mod pipeline;
pub mod privileges;
pub mod replay;
pub mod summary;
pub mod telemetry;
pub mod transient;
