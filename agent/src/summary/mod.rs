//! The node's window as a summary for the aggregator (`build`), the sender that ships
//! summaries over one long-lived stream with a bounded queue (`sender`), and the identities
//! each stream carries once (`identities`).

pub mod build;
pub mod identities;
pub mod sender;

pub use build::{Health, SummaryBuilder};
pub use sender::{SenderConfig, SummarySender};
