//! Each command: its request, the call, and the answer printed in the chosen format.
//!
//! An agent serves `herd.v1.NodeService`, the aggregator `herd.v1.ClusterService`, and an
//! agent in standalone mode both. `findings`, `watch` and `domain` ask ClusterService first
//! and NodeService when the server answers UNIMPLEMENTED, so that the same command works
//! against either.

use std::{io::Write, time::SystemTime};

use herd_agent::api::MAX_PAGE;
use herd_proto::{
    herd::v1::{
        ExplainRequest, Finding, FindingEvent, FindingKind, GetDomainRequest, GetInfoRequest,
        ListContainersRequest, ListFindingsRequest, ListFindingsResponse, ListNodesRequest,
        Severity, WatchFindingsRequest, cluster_service_client::ClusterServiceClient,
        node_service_client::NodeServiceClient,
    },
    query::FindingFilter,
};
use serde_json::Value;
use tonic::{Code, Response, Status, transport::Channel};

use crate::{
    cli::{
        ApiCommand, ExplainArgs, Filters, FindingsArgs, KindArg, Output, SeverityArg, WatchArgs,
    },
    connect::{self, ConnectError, Server},
    json, table,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server's own message says what went wrong ("no container matches pod web-1").
    #[error("{}", status_text(.0))]
    Status(Box<Status>),
    #[error(
        "this server has no cluster view (herd.v1.ClusterService): point --server at the \
         aggregator, or run the agent in standalone mode"
    )]
    NoClusterView,
    /// A node command sent to a server without NodeService, such as the aggregator.
    #[error("`herd {0}` asks an agent: point --server at a node's socket")]
    NodeCommand(&'static str),
    #[error(transparent)]
    Output(#[from] std::io::Error),
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Self::Status(Box::new(status))
    }
}

fn status_text(status: &Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        status.message().to_owned()
    }
}

/// Which service answers the commands that either can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    /// Not asked yet.
    Unknown,
    Cluster,
    /// The server answered UNIMPLEMENTED for ClusterService.
    Node,
}

/// Both clients on one channel, and which of them answers, once the server has said.
struct Api {
    node: NodeServiceClient<Channel>,
    cluster: ClusterServiceClient<Channel>,
    view: View,
}

impl Api {
    fn new(channel: Channel) -> Self {
        Self {
            node: NodeServiceClient::new(channel.clone()),
            cluster: ClusterServiceClient::new(channel),
            view: View::Unknown,
        }
    }

    /// The answer of a ClusterService call, or `None` when the server has no ClusterService
    /// and NodeService is to be asked instead, for the rest of the command.
    fn cluster_answer<T>(
        &mut self,
        answer: Result<Response<T>, Status>,
    ) -> Option<Result<T, Status>> {
        match answer {
            Err(status) if status.code() == Code::Unimplemented && self.view == View::Unknown => {
                self.view = View::Node;
                None
            }
            answer => {
                self.view = View::Cluster;
                Some(answer.map(Response::into_inner))
            }
        }
    }

    async fn list_findings(
        &mut self,
        request: ListFindingsRequest,
    ) -> Result<ListFindingsResponse, Status> {
        if self.view != View::Node {
            let answer = self.cluster.list_findings(request.clone()).await;
            if let Some(answer) = self.cluster_answer(answer) {
                return answer;
            }
        }
        Ok(self.node.list_findings(request).await?.into_inner())
    }
}

/// A node command's answer; UNIMPLEMENTED means the server is no agent.
fn node_answer<T>(command: &'static str, answer: Result<Response<T>, Status>) -> Result<T, Error> {
    match answer {
        Ok(response) => Ok(response.into_inner()),
        Err(status) if status.code() == Code::Unimplemented => Err(Error::NodeCommand(command)),
        Err(status) => Err(status.into()),
    }
}

pub async fn run(
    server: &Server,
    output: Output,
    command: ApiCommand,
    out: &mut impl Write,
) -> Result<(), Error> {
    let mut api = Api::new(connect::connect(server).await?);
    let now = SystemTime::now;
    match command {
        ApiCommand::Info => {
            let info = node_answer("info", api.node.get_info(GetInfoRequest {}).await)?;
            print(
                out,
                output,
                || json::info(&info),
                || table::info(&info, now()),
            )
        }
        ApiCommand::Containers(filters) => {
            let request = ListContainersRequest {
                namespace: filters.namespace.unwrap_or_default(),
                domain: filters.domain.unwrap_or_default(),
                pod: filters.pod.unwrap_or_default(),
            };
            let list = node_answer("containers", api.node.list_containers(request).await)?;
            print(
                out,
                output,
                || json::containers(&list.containers),
                || table::containers(&list.containers),
            )
        }
        ApiCommand::Findings(args) => {
            let findings = list_findings(&mut api, args, now()).await?;
            print(
                out,
                output,
                || json::findings(&findings),
                || table::findings(&findings, now()),
            )
        }
        ApiCommand::Watch(args) => watch(&mut api, args, output, out).await,
        ApiCommand::Nodes => {
            let nodes = match api.cluster.list_nodes(ListNodesRequest {}).await {
                Err(status) if status.code() == Code::Unimplemented => {
                    return Err(Error::NoClusterView);
                }
                answer => answer?.into_inner().nodes,
            };
            print(
                out,
                output,
                || json::nodes(&nodes),
                || table::nodes(&nodes, now()),
            )
        }
        ApiCommand::Explain(args) => {
            let explain = node_answer("explain", api.node.explain(explain_request(args)).await)?;
            print(
                out,
                output,
                || json::explain(&explain),
                || table::explain(&explain, now()),
            )
        }
        ApiCommand::Domain { name } => {
            let request = GetDomainRequest { domain: name };
            let answer = api.cluster.get_domain(request.clone()).await;
            if let Some(domain) = api.cluster_answer(answer) {
                let domain = domain?;
                return print(
                    out,
                    output,
                    || json::cluster_domain(&domain),
                    || table::cluster_domain(&domain, now(), terminal_width()),
                );
            }
            let domain = api.node.get_domain(request).await?.into_inner();
            print(
                out,
                output,
                || json::domain(&domain),
                || table::domain(&domain, now()),
            )
        }
    }
}

/// Columns for a wide table: `$COLUMNS`, else the terminal's, else 120 (piped).
fn terminal_width() -> usize {
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return columns;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize to the pointer, which is valid through the call.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        120
    }
}

/// One document: pretty JSON, or the table. Only the chosen one is built.
fn print(
    out: &mut impl Write,
    output: Output,
    json: impl FnOnce() -> Value,
    table: impl FnOnce() -> String,
) -> Result<(), Error> {
    match output {
        Output::Json => writeln!(out, "{:#}", json())?,
        Output::Table => write!(out, "{}", table())?,
    }
    Ok(())
}

fn severity(severity: Option<SeverityArg>) -> i32 {
    severity.map_or(Severity::Unspecified, Severity::from) as i32
}

fn kind(kind: Option<KindArg>) -> i32 {
    kind.map_or(FindingKind::Unspecified, FindingKind::from) as i32
}

/// Follows the pages until `--limit` findings or the last page.
async fn list_findings(
    api: &mut Api,
    args: FindingsArgs,
    now: SystemTime,
) -> Result<Vec<Finding>, Status> {
    let Filters {
        namespace,
        domain,
        pod,
    } = args.filters;
    let mut request = ListFindingsRequest {
        namespace: namespace.unwrap_or_default(),
        domain: domain.unwrap_or_default(),
        pod: pod.unwrap_or_default(),
        min_severity: severity(args.severity),
        state: args.state.filter() as i32,
        since: args.since.map(|since| since.resolve(now).into()),
        node: args.finding.node.unwrap_or_default(),
        kind: kind(args.finding.kind),
        ..ListFindingsRequest::default()
    };
    // An agent from before the node and kind filters ignores them: they are applied here
    // too, to what NodeService answers.
    let filter = FindingFilter::list(&request)?;
    let mut findings = Vec::new();
    loop {
        // Fewer than `limit` so far, or the loop would have stopped.
        let wanted = args
            .limit
            .map_or(MAX_PAGE, |limit| limit - findings.len() as u32);
        request.page_size = wanted.min(MAX_PAGE);
        let page = api.list_findings(request.clone()).await?;
        let node_view = api.view == View::Node;
        findings.extend(
            page.findings
                .into_iter()
                .filter(|finding| !node_view || filter.admits(finding)),
        );
        if let Some(limit) = args.limit {
            findings.truncate(limit as usize);
            if findings.len() == limit as usize {
                break;
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    Ok(findings)
}

/// One line per event until Ctrl-C or the end of the stream; an error that ends the stream
/// is the command's error.
async fn watch(
    api: &mut Api,
    args: WatchArgs,
    output: Output,
    out: &mut impl Write,
) -> Result<(), Error> {
    let request = WatchFindingsRequest {
        namespace: args.filters.namespace.unwrap_or_default(),
        domain: args.filters.domain.unwrap_or_default(),
        pod: args.filters.pod.unwrap_or_default(),
        min_severity: severity(args.severity),
        node: args.finding.node.unwrap_or_default(),
        kind: kind(args.finding.kind),
    };
    // As for `findings`: an older agent ignores the node and kind filters.
    let filter = FindingFilter::watch(&request)?;
    let answer = api.cluster.watch_findings(request.clone()).await;
    let mut events = match api.cluster_answer(answer) {
        Some(events) => events?,
        None => api.node.watch_findings(request).await?.into_inner(),
    };
    let wanted = |event: &FindingEvent| {
        api.view != View::Node || event.finding.as_ref().is_some_and(|f| filter.admits(f))
    };
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            event = events.message() => event?,
            _ = &mut interrupted => return Ok(()),
        };
        let Some(event) = event else {
            return Ok(());
        };
        if !wanted(&event) {
            continue;
        }
        match output {
            Output::Json => writeln!(out, "{}", json::event(&event))?,
            Output::Table => writeln!(out, "{}", table::event(&event))?,
        }
        // Each line as it happens, also when piped.
        out.flush()?;
    }
}

fn explain_request(args: ExplainArgs) -> ExplainRequest {
    let (pod, container_id) = match args.container_id() {
        Some(id) => (String::new(), id.to_owned()),
        None => (args.target.clone(), String::new()),
    };
    ExplainRequest {
        pod,
        container_id,
        namespace: args.namespace.unwrap_or_default(),
        container: args.container.unwrap_or_default(),
        windows: args.windows.unwrap_or(0),
    }
}
