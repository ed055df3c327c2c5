//! A fake agent and a fake aggregator on a unix socket, to run the client's commands end to
//! end in process.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use clap::Parser;
use herd_proto::herd::v1::{
    Basis, Container, ExplainRequest, ExplainResponse, FeatureScore, FeatureStats, Finding,
    FindingEvent, FindingEventKind, FindingKind, FindingState, GetClusterDomainResponse,
    GetDomainRequest, GetDomainResponse, GetInfoRequest, GetInfoResponse, ListContainersRequest,
    ListContainersResponse, ListFindingsRequest, ListFindingsResponse, ListNodesRequest,
    ListNodesResponse, NodeDomainStats, NodeHealth, NodeStatus, Severity, WatchFindingsRequest,
    cluster_service_server::{ClusterService, ClusterServiceServer},
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
        request: Request<GetDomainRequest>,
    ) -> Result<Response<GetDomainResponse>, Status> {
        Ok(Response::new(GetDomainResponse {
            domain: request.into_inner().domain,
            members: vec![member("node-1", 1)],
            at: Some(SystemTime::now().into()),
            features: vec![cpu(1.0)],
            findings: Vec::new(),
        }))
    }
}

/// An aggregator: its findings in one page, whatever the filters; remembers the requests.
#[derive(Default)]
struct FakeCluster {
    findings: Vec<Finding>,
    nodes: Vec<NodeStatus>,
    requests: Arc<Mutex<Vec<ListFindingsRequest>>>,
}

#[tonic::async_trait]
impl ClusterService for FakeCluster {
    async fn list_findings(
        &self,
        request: Request<ListFindingsRequest>,
    ) -> Result<Response<ListFindingsResponse>, Status> {
        self.requests.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ListFindingsResponse {
            findings: self.findings.clone(),
            next_page_token: String::new(),
        }))
    }

    type WatchFindingsStream = tokio_stream::Iter<std::vec::IntoIter<Result<FindingEvent, Status>>>;

    /// The open findings, then the end of the stream.
    async fn watch_findings(
        &self,
        _: Request<WatchFindingsRequest>,
    ) -> Result<Response<Self::WatchFindingsStream>, Status> {
        let events: Vec<_> = self
            .findings
            .iter()
            .map(|finding| {
                Ok(FindingEvent {
                    kind: FindingEventKind::Existing as i32,
                    finding: Some(finding.clone()),
                })
            })
            .collect();
        Ok(Response::new(tokio_stream::iter(events)))
    }

    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        Ok(Response::new(ListNodesResponse {
            nodes: self.nodes.clone(),
        }))
    }

    async fn get_domain(
        &self,
        request: Request<GetDomainRequest>,
    ) -> Result<Response<GetClusterDomainResponse>, Status> {
        let node = |name: &str, median| NodeDomainStats {
            node: name.to_owned(),
            members: 1,
            features: vec![cpu(median)],
        };
        Ok(Response::new(GetClusterDomainResponse {
            domain: request.into_inner().domain,
            members: vec![member("node-1", 1), member("node-2", 2)],
            features: vec![cpu(1.5)],
            nodes: vec![node("node-1", 1.0), node("node-2", 2.0)],
            findings: Vec::new(),
            at: Some(SystemTime::now().into()),
        }))
    }
}

fn member(node: &str, n: u32) -> Container {
    Container {
        id: format!("{n:064x}"),
        node: node.to_owned(),
        namespace: "shop".to_owned(),
        pod: format!("web-{n}"),
        name: "app".to_owned(),
        domain: "shop/Deployment/web/app".to_owned(),
        ..Container::default()
    }
}

fn cpu(median: f64) -> FeatureStats {
    FeatureStats {
        feature: "cpu_usage_cores".to_owned(),
        median,
        mad: 0.1,
        members: 1,
        basis: Basis::Peers as i32,
    }
}

/// A node's finding, as an agent reports it.
fn finding(n: u32) -> Finding {
    Finding {
        id: format!("f{n:07}-0000-0000"),
        node: "node-1".to_owned(),
        source: "node node-1".to_owned(),
        kind: FindingKind::NodePeers as i32,
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

/// The aggregator's finding of a workload that runs unlike elsewhere on `node`.
fn workload_finding(node: &str) -> Finding {
    Finding {
        id: format!("a-{node}"),
        node: node.to_owned(),
        source: "aggregator".to_owned(),
        kind: FindingKind::WorkloadNode as i32,
        namespace: "shop".to_owned(),
        domain: "shop/Deployment/web/app".to_owned(),
        container_id: String::new(),
        pod: String::new(),
        ..finding(9)
    }
}

/// Serves an agent's NodeService, an aggregator's ClusterService, or both as an agent in
/// standalone mode, on `socket` for as long as the test's runtime lives.
fn serve(node: Option<Fake>, cluster: Option<FakeCluster>, socket: &Path) {
    let incoming = UnixListenerStream::new(tokio::net::UnixListener::bind(socket).unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_optional_service(node.map(NodeServiceServer::new))
            .add_optional_service(cluster.map(ClusterServiceServer::new))
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
        Some(Fake {
            findings: (1..=5).map(finding).collect(),
            requests: Arc::clone(&requests),
        }),
        None,
        &socket,
    );

    let (all, result) = herd(&socket, &["findings"]).await;
    result.unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 6, "{all}");
    assert!(
        lines[0].starts_with("ID        KIND   SEVERITY  STATE  NODE"),
        "{all}"
    );
    for (line, n) in lines[1..].iter().zip(1..) {
        assert!(
            line.starts_with(&format!("f{n:07}  peers  critical  open   node-1")),
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
        Some(Fake {
            findings: vec![finding(1)],
            ..Fake::default()
        }),
        None,
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
        printed.contains("  opened    critical  peers     node-1  shop/web-1/app  score 18.2"),
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

#[tokio::test(flavor = "current_thread")]
async fn findings_take_the_cluster_view_where_the_server_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let node_requests = Arc::default();
    let cluster_requests = Arc::default();
    // An agent in standalone mode: both services.
    serve(
        Some(Fake {
            findings: vec![finding(1)],
            requests: Arc::clone(&node_requests),
        }),
        Some(FakeCluster {
            findings: vec![workload_finding("node-2")],
            requests: Arc::clone(&cluster_requests),
            ..FakeCluster::default()
        }),
        &socket,
    );

    let args = ["findings", "--node", "node-2", "--kind", "workload-node"];
    let (printed, result) = herd(&socket, &args).await;
    result.unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(
        lines[1].starts_with("a-node-2  workload  critical  open   node-2  shop       -    app"),
        "{printed}"
    );
    assert!(
        node_requests.lock().unwrap().is_empty(),
        "the node was asked"
    );
    let asked: Vec<(String, i32)> = cluster_requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.node.clone(), r.kind))
        .collect();
    assert_eq!(
        asked,
        [("node-2".to_owned(), FindingKind::WorkloadNode as i32)]
    );

    let (printed, result) = herd(&socket, &["-o", "json", "findings"]).await;
    result.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let finding = &doc["findings"][0];
    assert_eq!(finding["kind"], "workload_node");
    assert_eq!(finding["source"], "aggregator");
    assert_eq!(finding["node"], "node-2");

    let (printed, result) = herd(&socket, &["watch"]).await;
    result.unwrap();
    assert!(
        printed.contains("  existing  critical  workload  node-2  shop/Deployment/web/app  "),
        "{printed}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn findings_fall_back_to_the_node_view_and_its_filters_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let requests = Arc::default();
    serve(
        Some(Fake {
            findings: vec![finding(1), finding(2)],
            requests: Arc::clone(&requests),
        }),
        None,
        &socket,
    );

    let (printed, result) = herd(&socket, &["findings", "--node", "node-1"]).await;
    result.unwrap();
    assert_eq!(printed.lines().count(), 3, "{printed}");
    assert!(printed.contains("f0000002  peers  critical  open   node-1"));

    // The fake ignores filters, as an agent from before kinds would: herd applies them.
    let (printed, result) = herd(&socket, &["findings", "--kind", "sick-node"]).await;
    result.unwrap();
    assert_eq!(printed, "No findings.\n");
    let (printed, result) = herd(&socket, &["findings", "--node", "node-7"]).await;
    result.unwrap();
    assert_eq!(printed, "No findings.\n");
    let kinds: Vec<i32> = requests.lock().unwrap().iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            FindingKind::Unspecified as i32,
            FindingKind::SickNode as i32,
            FindingKind::Unspecified as i32,
        ]
    );

    let (printed, result) = herd(&socket, &["watch", "--kind", "node-silent"]).await;
    assert_eq!(result, Err("client too slow: dropped".to_owned()));
    assert_eq!(printed, "", "the peers finding is not a silent node");
}

fn node_status(node: &str, silent: bool) -> NodeStatus {
    NodeStatus {
        node: node.to_owned(),
        last_seen: Some(
            (SystemTime::now() - Duration::from_secs(if silent { 600 } else { 5 })).into(),
        ),
        agent_version: "0.2.0".to_owned(),
        health: Some(NodeHealth {
            containers: 14,
            ..NodeHealth::default()
        }),
        open_findings: u32::from(silent),
        silent,
        summaries: 120,
        summaries_lost: 0,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn nodes_need_the_cluster_view() {
    let dir = tempfile::tempdir().unwrap();
    let aggregator = dir.path().join("aggregator.sock");
    serve(
        None,
        Some(FakeCluster {
            nodes: vec![node_status("node-1", false), node_status("node-2", true)],
            ..FakeCluster::default()
        }),
        &aggregator,
    );
    let (printed, result) = herd(&aggregator, &["nodes"]).await;
    result.unwrap();
    assert_eq!(
        printed,
        "\
NODE    STATUS     LAST SEEN  VERSION  CONTAINERS  FINDINGS  SUMMARIES  LOST
node-1  reporting  5s ago     0.2.0    14          0         120        0
node-2  silent     10m ago    0.2.0    14          1         120        0
"
    );

    let agent = dir.path().join("agent.sock");
    serve(Some(Fake::default()), None, &agent);
    let (printed, result) = herd(&agent, &["nodes"]).await;
    assert_eq!(printed, "");
    assert_eq!(
        result,
        Err(
            "this server has no cluster view (herd.v1.ClusterService): point --server at the \
             aggregator, or run the agent in standalone mode"
                .to_owned()
        )
    );
}

#[tokio::test(flavor = "current_thread")]
async fn node_commands_sent_to_the_aggregator_say_where_to_go() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("aggregator.sock");
    serve(None, Some(FakeCluster::default()), &socket);
    for command in ["info", "containers", "explain"] {
        let args: &[&str] = if command == "explain" {
            &["explain", "web-1"]
        } else {
            &[command]
        };
        let (_, result) = herd(&socket, args).await;
        assert_eq!(
            result,
            Err(format!(
                "`herd {command}` asks an agent: point --server at a node's socket"
            ))
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_domain_is_shown_per_node_where_the_server_has_the_cluster_view() {
    let dir = tempfile::tempdir().unwrap();
    let standalone = dir.path().join("standalone.sock");
    serve(
        Some(Fake::default()),
        Some(FakeCluster::default()),
        &standalone,
    );
    let (printed, result) = herd(&standalone, &["domain", "shop/Deployment/web/app"]).await;
    result.unwrap();
    assert!(printed.contains("Members:  2 on 2 nodes\n"), "{printed}");
    assert!(printed.contains("  NODE    NAMESPACE  POD"), "{printed}");
    // The cluster's statistics; each node's beside them or below, as the terminal allows.
    assert!(
        printed.contains("  cpu_usage_cores  1.5     0.1  1"),
        "{printed}"
    );

    let agent = dir.path().join("agent.sock");
    serve(Some(Fake::default()), None, &agent);
    let (printed, result) = herd(&agent, &["domain", "shop/Deployment/web/app"]).await;
    result.unwrap();
    assert!(printed.contains("Members:  1\n"), "{printed}");
    assert!(printed.contains("  NAMESPACE  POD"), "{printed}");
}
