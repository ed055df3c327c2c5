//! The requests of `herd.v1.NodeService` as the agent decodes them, then what it checks of
//! them without its state: the finding filters and pages.
#![no_main]

use herd_fuzz::finding_request;
use herd_proto::herd::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the method, the rest is its request.
    let Some((method, body)) = data.split_first() else {
        return;
    };
    match method % 6 {
        0 => drop(pb::GetInfoRequest::decode(body)),
        1 => drop(pb::ListContainersRequest::decode(body)),
        2 => finding_request(true, body),
        3 => finding_request(false, body),
        4 => drop(pb::ExplainRequest::decode(body)),
        _ => drop(pb::GetDomainRequest::decode(body)),
    }
});
