//! The node's window as a summary for the aggregator (`build`), and the sender that ships
//! summaries over one long-lived stream with a bounded queue (`sender`).

pub mod build;
pub mod sender;

pub use build::{Health, SummaryBuilder};
pub use sender::{SenderConfig, SummarySender};
