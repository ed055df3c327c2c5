//! The requests of `herd.v1.ClusterService`, and `AggregatorService`'s stream of node
//! summaries, as the aggregator decodes and checks them: summaries are taken into a node
//! book as a stream would bring them.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use herd_aggregator::nodes::NodeBook;
use herd_fuzz::finding_request;
use herd_proto::herd::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Some((method, body)) = data.split_first() else {
        return;
    };
    match method % 5 {
        0 => finding_request(true, body),
        1 => finding_request(false, body),
        2 => drop(pb::ListNodesRequest::decode(body)),
        3 => drop(pb::GetDomainRequest::decode(body)),
        _ => push_summaries(body),
    }
});

/// Length-delimited summaries, as one `PushSummaries` stream.
fn push_summaries(mut body: &[u8]) {
    let mut book = NodeBook::default();
    let mut now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    while let Ok(summary) = pb::NodeSummary::decode_length_delimited(&mut body) {
        if let Err(err) = book.ingest(summary, now) {
            let _ = err.to_string();
        }
        now += Duration::from_secs(10);
    }
    let _ = book.expire(now, Duration::from_secs(30));
}
