//! The agent's gRPC API, `herd.v1.NodeService`: what the node's containers are, what was
//! found, and the evidence behind it. The run loop refreshes a [`SharedState`] after every
//! discovery poll and window; the service only reads it.

mod convert;
pub mod findings_log;
pub mod history;
pub mod listen;
mod service;
pub mod state;

pub use listen::{ApiConfig, ApiError, ApiServer};
pub use service::{MAX_PAGE, NodeApi};
pub use state::{AgentFacts, RuntimeState, SharedState, SignalState};
