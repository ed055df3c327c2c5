//! Each command: its request, the call, and the answer printed in the chosen format.

use std::{io::Write, time::SystemTime};

use herd_agent::api::MAX_PAGE;
use herd_proto::herd::v1::{
    ExplainRequest, Finding, GetDomainRequest, GetInfoRequest, ListContainersRequest,
    ListFindingsRequest, Severity, WatchFindingsRequest, node_service_client::NodeServiceClient,
};
use serde_json::Value;
use tonic::transport::Channel;

use crate::{
    cli::{ApiCommand, ExplainArgs, Filters, FindingsArgs, Output, SeverityArg, WatchArgs},
    connect::{self, ConnectError, Server},
    json, table,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The agent's own message says what went wrong ("no container matches pod web-1").
    #[error("{}", status_text(.0))]
    Status(Box<tonic::Status>),
    #[error(transparent)]
    Output(#[from] std::io::Error),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Status(Box::new(status))
    }
}

fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        status.message().to_owned()
    }
}

pub async fn run(
    server: &Server,
    output: Output,
    command: ApiCommand,
    out: &mut impl Write,
) -> Result<(), Error> {
    let mut client = connect::connect(server).await?;
    let now = SystemTime::now;
    match command {
        ApiCommand::Info => {
            let info = client.get_info(GetInfoRequest {}).await?.into_inner();
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
            let list = client.list_containers(request).await?.into_inner();
            print(
                out,
                output,
                || json::containers(&list.containers),
                || table::containers(&list.containers),
            )
        }
        ApiCommand::Findings(args) => {
            let findings = list_findings(&mut client, args, now()).await?;
            print(
                out,
                output,
                || json::findings(&findings),
                || table::findings(&findings, now()),
            )
        }
        ApiCommand::Watch(args) => watch(&mut client, args, output, out).await,
        ApiCommand::Explain(args) => {
            let explain = client.explain(explain_request(args)).await?.into_inner();
            print(
                out,
                output,
                || json::explain(&explain),
                || table::explain(&explain, now()),
            )
        }
        ApiCommand::Domain { name } => {
            let domain = client
                .get_domain(GetDomainRequest { domain: name })
                .await?
                .into_inner();
            print(
                out,
                output,
                || json::domain(&domain),
                || table::domain(&domain, now()),
            )
        }
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

/// Follows the pages until `--limit` findings or the last page.
async fn list_findings(
    client: &mut NodeServiceClient<Channel>,
    args: FindingsArgs,
    now: SystemTime,
) -> Result<Vec<Finding>, tonic::Status> {
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
        ..ListFindingsRequest::default()
    };
    let mut findings = Vec::new();
    loop {
        // Fewer than `limit` so far, or the loop would have stopped.
        let wanted = args
            .limit
            .map_or(MAX_PAGE, |limit| limit - findings.len() as u32);
        request.page_size = wanted.min(MAX_PAGE);
        let page = client.list_findings(request.clone()).await?.into_inner();
        findings.extend(page.findings);
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
    client: &mut NodeServiceClient<Channel>,
    args: WatchArgs,
    output: Output,
    out: &mut impl Write,
) -> Result<(), Error> {
    let request = WatchFindingsRequest {
        namespace: args.filters.namespace.unwrap_or_default(),
        domain: args.filters.domain.unwrap_or_default(),
        pod: args.filters.pod.unwrap_or_default(),
        min_severity: severity(args.severity),
        ..WatchFindingsRequest::default()
    };
    let mut events = client.watch_findings(request).await?.into_inner();
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
