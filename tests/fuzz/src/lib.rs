//! What the API targets share: the findings a server holds, and the two finding requests
//! both services serve through `herd_proto::query`.

use herd_proto::{
    herd::v1 as pb,
    query::{self, FindingFilter},
};
use prost::Message as _;

/// Findings as a server may hold them, with times at the edges of what a timestamp holds.
pub fn findings() -> Vec<pb::Finding> {
    let at = |seconds, nanos| Some(prost_types::Timestamp { seconds, nanos });
    let finding = |id: &str, opened, closed, kind: pb::FindingKind| pb::Finding {
        id: id.into(),
        node: "node-1".into(),
        namespace: "shop".into(),
        pod: "web-0".into(),
        domain: "shop/Deployment/web/app".into(),
        severity: pb::Severity::Warning as i32,
        state: pb::FindingState::Open as i32,
        kind: kind as i32,
        opened,
        closed,
        ..Default::default()
    };
    vec![
        finding("a", at(1_700_000_000, 0), None, pb::FindingKind::NodePeers),
        finding(
            "b",
            at(1_700_000_000, 0),
            at(1_700_000_100, 5),
            pb::FindingKind::ClusterReplica,
        ),
        finding(
            "c",
            at(i64::MAX, 999_999_999),
            None,
            pb::FindingKind::NodeSilent,
        ),
        finding(
            "d",
            at(i64::MIN, -1),
            at(-1, i32::MAX),
            pb::FindingKind::Unspecified,
        ),
        finding("é", None, None, pb::FindingKind::NodePeers),
    ]
}

/// `ListFindings` (`list`) or `WatchFindings` decoded from `body` and served over
/// [`findings`]; a page token that a server gave is followed to the end.
pub fn finding_request(list: bool, body: &[u8]) {
    if list {
        let Ok(mut request) = pb::ListFindingsRequest::decode(body) else {
            return;
        };
        // Pages hold at least one finding, so this many pages reach the end.
        for _ in 0..=findings().len() {
            match query::list(findings(), &request) {
                Ok(page) if !page.next_page_token.is_empty() => {
                    assert!(
                        !page.findings.is_empty(),
                        "a page that leads on is not empty"
                    );
                    request.page_token = page.next_page_token;
                }
                Ok(_) => return,
                Err(status) => {
                    let _ = status.to_string();
                    return;
                }
            }
        }
        panic!("next_page_token never ended");
    } else {
        let Ok(request) = pb::WatchFindingsRequest::decode(body) else {
            return;
        };
        if let Ok(filter) = FindingFilter::watch(&request) {
            for finding in findings() {
                let _ = filter.admits(&finding);
            }
        }
    }
}
