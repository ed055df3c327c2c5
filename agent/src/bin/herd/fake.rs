//! A fake agent on a unix socket, to run the client's commands end to end in process.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use clap::Parser;
use herd_proto::herd::v1::{
    Basis, ExplainRequest, ExplainResponse, FeatureScore, Finding, FindingEvent, FindingEventKind,
    FindingState, GetDomainRequest, GetDomainResponse, GetInfoRequest, GetInfoResponse,
    ListContainersRequest, ListContainersResponse, ListFindingsRequest, ListFindingsResponse,
    Severity, WatchFindingsRequest,
    node_service_server::{NodeService, NodeServiceServer},
};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::{
    cli::{Cli, Command},
    commands,
};

/// Serves `findings` two a page whatever the page size asked for, so that the client has
/// to follow the tokens; remembers the requests.
#[derive(Default)]
struct Fake {
    findings: Vec<Finding>,
    requests: Arc<Mutex<Vec<ListFindingsRequest>>>,
}

const PAGE: usize = 2;

#[tonic::async_trait]
impl NodeService for Fake {
    async fn get_info(
        &self,
        _: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_containers(
        &self,
        _: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_findings(
        &self,
        request: Request<ListFindingsRequest>,
    ) -> Result<Response<ListFindingsResponse>, Status> {
        let request = request.into_inner();
        let start: usize = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse()
                .map_err(|_| Status::invalid_argument("bad page token"))?
        };
        self.requests.lock().unwrap().push(request);
        let end = (start + PAGE).min(self.findings.len());
        Ok(Response::new(ListFindingsResponse {
            findings: self.findings[start..end].to_vec(),
            next_page_token: if end < self.findings.len() {
                end.to_string()
            } else {
                String::new()
            },
        }))
    }

    type WatchFindingsStream = tokio_stream::Iter<std::vec::IntoIter<Result<FindingEvent, Status>>>;

    /// One event, then the agent drops the client as too slow.
    async fn watch_findings(
        &self,
        _: Request<WatchFindingsRequest>,
    ) -> Result<Response<Self::WatchFindingsStream>, Status> {
        Ok(Response::new(tokio_stream::iter(vec![
            Ok(FindingEvent {
                kind: FindingEventKind::Opened as i32,
                finding: self.findings.first().cloned(),
            }),
            Err(Status::resource_exhausted("client too slow: dropped")),
        ])))
    }

    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        Err(Status::not_found(format!(
            "no container matches pod {}",
            request.into_inner().pod
        )))
    }

    async fn get_domain(
        &self,
        _: Request<GetDomainRequest>,
    ) -> Result<Response<GetDomainResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

fn finding(n: u32) -> Finding {
    Finding {
        id: format!("f{n:07}-0000-0000"),
        namespace: "shop".to_owned(),
        pod: format!("web-{n}"),
        container: "app".to_owned(),
        container_id: format!("{n:064x}"),
        severity: Severity::Critical as i32,
        state: FindingState::Open as i32,
        opened: Some((SystemTime::now() - Duration::from_secs(180)).into()),
        peak_score: 18.2,
        drivers: vec![FeatureScore {
            feature: "cpu_usage_cores".to_owned(),
            value: 8.2,
            reference: 1.0,
            mad: 0.1,
            z: 18.2,
            basis: Basis::Peers as i32,
        }],
        ..Finding::default()
    }
}

/// Serves `fake` on `socket` for as long as the test's runtime lives.
fn serve(fake: Fake, socket: &Path) {
    let incoming = UnixListenerStream::new(tokio::net::UnixListener::bind(socket).unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NodeServiceServer::new(fake))
            .serve_with_incoming(incoming),
    );
}

/// Runs `herd ARGS…` against `socket`: what it printed, and its error message if any.
async fn herd(socket: &Path, args: &[&str]) -> (String, Result<(), String>) {
    let cli = Cli::try_parse_from([&["herd", "--server", socket.to_str().unwrap()], args].concat())
        .unwrap();
    let Command::Api(command) = cli.command else {
        panic!("not an API command: {args:?}");
    };
    let mut out = Vec::new();
    let result = commands::run(&cli.server, cli.output, command, &mut out)
        .await
        .map_err(|err| err.to_string());
    (String::from_utf8(out).unwrap(), result)
}

#[tokio::test(flavor = "current_thread")]
async fn findings_lists_every_page_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let requests = Arc::default();
    serve(
        Fake {
            findings: (1..=5).map(finding).collect(),
            requests: Arc::clone(&requests),
        },
        &socket,
    );

    let (all, result) = herd(&socket, &["findings"]).await;
    result.unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 6, "{all}");
    assert!(lines[0].starts_with("ID        SEVERITY  STATE"), "{all}");
    for (line, n) in lines[1..].iter().zip(1..) {
        assert!(
            line.starts_with(&format!("f{n:07}  critical  open")),
            "{line}"
        );
        assert!(line.contains(&format!("web-{n}")), "{line}");
        assert!(
            line.ends_with("3m ago  18.2   cpu_usage_cores 8.2× peers (z 18.2)"),
            "{line}"
        );
    }

    requests.lock().unwrap().clear();
    let (some, result) = herd(
        &socket,
        &[
            "-o",
            "json",
            "findings",
            "-n",
            "shop",
            "--severity",
            "critical",
            "--state",
            "open",
            "--since",
            "1h",
            "--limit",
            "3",
        ],
    )
    .await;
    result.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&some).unwrap();
    let pods: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| finding["pod"].as_str().unwrap())
        .collect();
    assert_eq!(pods, ["web-1", "web-2", "web-3"]);

    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "two pages of two hold three findings");
    let first = &requests[0];
    assert_eq!(first.namespace, "shop");
    assert_eq!(first.min_severity, Severity::Critical as i32);
    assert_eq!(first.state, FindingState::Open as i32);
    let since = SystemTime::try_from(first.since.unwrap()).unwrap();
    let ago = SystemTime::now().duration_since(since).unwrap();
    assert!(ago >= Duration::from_secs(3600) && ago < Duration::from_secs(3660));
    assert_eq!(first.page_size, 3);
    assert_eq!(requests[1].page_size, 1, "only what is still missing");
}

#[tokio::test(flavor = "current_thread")]
async fn statuses_are_printed_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    serve(
        Fake {
            findings: vec![finding(1)],
            ..Fake::default()
        },
        &socket,
    );

    let (_, result) = herd(&socket, &["explain", "web-1"]).await;
    assert_eq!(result, Err("no container matches pod web-1".to_owned()));

    let (printed, result) = herd(&socket, &["watch"]).await;
    assert_eq!(result, Err("client too slow: dropped".to_owned()));
    assert_eq!(
        printed.lines().count(),
        1,
        "the event before the error: {printed}"
    );
    assert!(
        printed.contains("  opened    critical  shop/web-1/app  score 18.2"),
        "{printed}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn no_socket_means_no_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let (printed, result) = herd(&socket, &["findings"]).await;
    assert_eq!(printed, "");
    assert_eq!(
        result,
        Err(format!(
            "no agent at {}: is herd-agent running?",
            socket.display()
        ))
    );
}
