//! Responses as aligned text for a terminal, the way kubectl prints them.

use std::{fmt::Write as _, time::SystemTime};

use herd_proto::herd::v1::{
    Container, ExplainResponse, FeatureScore, FeatureStats, Finding, FindingEvent,
    FindingEventKind, GetClusterDomainResponse, GetDomainResponse, GetInfoResponse, NodeStatus,
};

use crate::human;

/// Columns padded to their widest cell, two spaces apart, header first.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|&title| title.to_owned()).collect()],
        }
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn is_empty(&self) -> bool {
        self.rows.len() == 1
    }

    /// Characters in its widest line, unindented.
    fn width(&self) -> usize {
        self.render("")
            .lines()
            .map(|line| line.chars().count())
            .max()
            .unwrap_or(0)
    }

    /// The table's lines, each starting with `indent`.
    fn render(&self, indent: &str) -> String {
        let widths: Vec<usize> = (0..self.rows[0].len())
            .map(|col| {
                self.rows
                    .iter()
                    .map(|row| row[col].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = indent.to_owned();
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Key:  value` lines with the values aligned, as in `kubectl describe`.
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(key, _)| key.len() + 1)
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(key, value)| format!("{:<width$}  {value}\n", format!("{key}:")))
        .collect()
}

fn or_dash(text: &str) -> String {
    if text.is_empty() { "-" } else { text }.to_owned()
}

/// `namespace/pod/container`; the short container id for a container without a pod.
fn who(namespace: &str, pod: &str, container: &str, id: &str) -> String {
    if pod.is_empty() {
        return human::short_id(id, 12).to_owned();
    }
    format!("{namespace}/{pod}/{container}")
}

/// What a finding is about: its container; else its workload, for a finding about a
/// workload's share of a node; else `-`, for a finding about a node.
fn subject(finding: &Finding) -> String {
    if finding.pod.is_empty() && finding.container_id.is_empty() {
        return or_dash(&finding.domain);
    }
    who(
        &finding.namespace,
        &finding.pod,
        &finding.container,
        &finding.container_id,
    )
}

pub fn info(info: &GetInfoResponse, now: SystemTime) -> String {
    let span = |d| human::span(d).map_or_else(|| "-".to_owned(), human::duration);
    let ebpf = match &info.ebpf {
        Some(ebpf) if ebpf.loaded => "loaded".to_owned(),
        Some(ebpf) => format!("not loaded: {}", ebpf.reason),
        None => "-".to_owned(),
    };
    let runtime = match &info.runtime {
        Some(runtime) if runtime.connected => format!("connected to {}", runtime.socket),
        Some(runtime) => format!("not connected: {}", runtime.reason),
        None => "-".to_owned(),
    };
    let mut out = fields(&[
        ("Agent", format!("{} on node {}", info.version, info.node)),
        (
            "Started",
            human::ago(human::time(info.started.as_ref()), now),
        ),
        ("Window", span(info.window.as_ref())),
        ("Min age", span(info.min_age.as_ref())),
        ("History", format!("{} windows", info.history_windows)),
        ("Containers", format!("{} watched", info.containers)),
        ("Findings", format!("{} open", info.open_findings)),
        ("Windows", format!("{} scored", info.windows)),
        ("eBPF", ebpf),
        ("Runtime", runtime),
    ]);
    let mut signals = Table::new(&["NAME", "ACTIVE", "SOURCE OR REASON"]);
    for signal in &info.signals {
        signals.push(vec![
            signal.name.clone(),
            if signal.active { "yes" } else { "no" }.to_owned(),
            or_dash(if signal.active {
                &signal.source
            } else {
                &signal.reason
            }),
        ]);
    }
    out.push_str("Signals:\n");
    out.push_str(&signals.render("  "));
    out
}

/// Which optional columns a table of containers has.
#[derive(Clone, Copy)]
struct ContainerColumns {
    node: bool,
    domain: bool,
}

fn container_table(containers: &[Container], columns: ContainerColumns) -> Table {
    let mut header = if columns.node {
        vec!["NODE"]
    } else {
        Vec::new()
    };
    header.extend([
        "NAMESPACE",
        "POD",
        "CONTAINER",
        "ID",
        "AGE",
        "SCORE",
        "STATUS",
    ]);
    if columns.domain {
        header.push("DOMAIN");
    }
    let mut table = Table::new(&header);
    for container in containers {
        let status = if container.flagged {
            "flagged"
        } else if !container.judged {
            "young"
        } else {
            "ok"
        };
        let mut row = if columns.node {
            vec![or_dash(&container.node)]
        } else {
            Vec::new()
        };
        row.extend([
            or_dash(&container.namespace),
            or_dash(&container.pod),
            or_dash(&container.name),
            human::short_id(&container.id, 12).to_owned(),
            human::span(container.age.as_ref()).map_or_else(|| "-".to_owned(), human::duration),
            if container.scored {
                human::score(container.score)
            } else {
                "-".to_owned()
            },
            status.to_owned(),
        ]);
        if columns.domain {
            row.push(or_dash(&container.domain));
        }
        table.push(row);
    }
    table
}

pub fn containers(containers: &[Container]) -> String {
    let table = container_table(
        containers,
        ContainerColumns {
            node: false,
            domain: true,
        },
    );
    if table.is_empty() {
        return "No containers.\n".to_owned();
    }
    table.render("")
}

/// `origin`: with KIND and NODE, for findings that may come from any node and comparison;
/// without them for one container's findings on its own node.
fn finding_table(findings: &[Finding], now: SystemTime, origin: bool) -> Table {
    let header: &[&str] = if origin {
        &[
            "ID",
            "KIND",
            "SEVERITY",
            "STATE",
            "NODE",
            "NAMESPACE",
            "POD",
            "CONTAINER",
            "OPENED",
            "SCORE",
            "TOP",
        ]
    } else {
        &[
            "ID",
            "SEVERITY",
            "STATE",
            "NAMESPACE",
            "POD",
            "CONTAINER",
            "OPENED",
            "SCORE",
            "TOP",
        ]
    };
    let mut table = Table::new(header);
    for finding in findings {
        let mut row = vec![human::short_id(&finding.id, 8).to_owned()];
        if origin {
            row.push(human::kind(finding.kind).to_owned());
        }
        row.extend([
            human::severity(finding.severity).to_owned(),
            human::state(finding.state).to_owned(),
        ]);
        if origin {
            row.push(or_dash(human::node(finding)));
        }
        row.extend([
            or_dash(&finding.namespace),
            or_dash(&finding.pod),
            or_dash(&finding.container),
            human::ago(human::time(finding.opened.as_ref()), now),
            human::score(finding.peak_score),
            finding
                .drivers
                .first()
                .map_or_else(|| "-".to_owned(), human::driver),
        ]);
        table.push(row);
    }
    table
}

pub fn findings(findings: &[Finding], now: SystemTime) -> String {
    let table = finding_table(findings, now, true);
    if table.is_empty() {
        return "No findings.\n".to_owned();
    }
    table.render("")
}

/// One line per event, for `herd watch`: when, what happened, to whom, and why.
pub fn event(event: &FindingEvent) -> String {
    let finding = event.finding.clone().unwrap_or_default();
    let at = match FindingEventKind::try_from(event.kind) {
        Ok(FindingEventKind::Closed) => finding.closed.as_ref(),
        Ok(FindingEventKind::Opened) => finding.opened.as_ref(),
        _ => finding.updated.as_ref().or(finding.opened.as_ref()),
    };
    let at = human::time(at).map_or_else(
        || "-".to_owned(),
        |at| humantime::format_rfc3339_seconds(at).to_string(),
    );
    let top = finding
        .drivers
        .first()
        .map_or_else(|| "-".to_owned(), human::driver);
    format!(
        "{at}  {:<8}  {:<8}  {:<8}  {}  {}  score {}  {top}  id {}",
        human::event_kind(event.kind),
        human::severity(finding.severity),
        human::kind(finding.kind),
        or_dash(human::node(&finding)),
        subject(&finding),
        human::score(finding.peak_score),
        human::short_id(&finding.id, 8),
    )
}

pub fn nodes(nodes: &[NodeStatus], now: SystemTime) -> String {
    let mut table = Table::new(&[
        "NODE",
        "STATUS",
        "LAST SEEN",
        "VERSION",
        "CONTAINERS",
        "FINDINGS",
        "SUMMARIES",
        "LOST",
    ]);
    for node in nodes {
        table.push(vec![
            node.node.clone(),
            if node.silent { "silent" } else { "reporting" }.to_owned(),
            human::ago(human::time(node.last_seen.as_ref()), now),
            or_dash(&node.agent_version),
            node.health
                .as_ref()
                .map_or_else(|| "-".to_owned(), |health| health.containers.to_string()),
            node.open_findings.to_string(),
            node.summaries.to_string(),
            node.summaries_lost.to_string(),
        ]);
    }
    if table.is_empty() {
        return "No node has reported yet.\n".to_owned();
    }
    table.render("")
}

pub fn explain(explain: &ExplainResponse, now: SystemTime) -> String {
    let container = explain.container.clone().unwrap_or_default();
    let latest = explain.windows.last();
    let score = latest.map_or_else(
        || "not scored yet".to_owned(),
        |window| {
            format!(
                "{} in the latest window, {} with {} peers (threshold {})",
                human::score(window.score),
                human::ago(human::time(window.at.as_ref()), now),
                window.peers,
                human::score(explain.threshold),
            )
        },
    );
    let mut out = fields(&[
        (
            "Container",
            who(
                &container.namespace,
                &container.pod,
                &container.name,
                &container.id,
            ),
        ),
        ("ID", container.id.clone()),
        ("Image", or_dash(&container.image)),
        ("Domain", or_dash(&container.domain)),
        (
            "Age",
            human::span(container.age.as_ref()).map_or_else(|| "-".to_owned(), human::duration),
        ),
        ("Score", score),
    ]);
    out.push_str("Findings:\n");
    if explain.findings.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&finding_table(&explain.findings, now, false).render("  "));
    }
    if explain.windows.is_empty() {
        return out;
    }

    // Drivers first, as the findings rank them; then whatever else strays, strongest first.
    let mut shown: Vec<(String, Vec<&str>)> = Vec::new();
    for finding in &explain.findings {
        for driver in &finding.drivers {
            let id = human::short_id(&finding.id, 8);
            match shown.iter_mut().find(|(name, _)| *name == driver.feature) {
                Some((_, ids)) if !ids.contains(&id) => ids.push(id),
                Some(_) => {}
                None => shown.push((driver.feature.clone(), vec![id])),
            }
        }
    }
    let strongest = |feature: &str| {
        features_named(explain, feature)
            .map(|(_, score)| score.z.abs())
            .fold(0.0, f64::max)
    };
    let mut strays: Vec<(String, f64)> = Vec::new();
    for window in &explain.windows {
        for score in &window.features {
            let known = shown.iter().any(|(name, _)| *name == score.feature)
                || strays.iter().any(|(name, _)| *name == score.feature);
            if score.z.abs() >= 1.0 && !known {
                strays.push((score.feature.clone(), strongest(&score.feature)));
            }
        }
    }
    strays.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    shown.extend(strays.into_iter().map(|(name, _)| (name, Vec::new())));

    if shown.is_empty() {
        out.push_str("\nNo feature has a |z| of 1 or more in these windows.\n");
        return out;
    }
    let mut marked = false;
    for (feature, drove) in &shown {
        out.push('\n');
        out.push_str(feature);
        if !drove.is_empty() {
            let _ = write!(out, "  (driver of {})", drove.join(", "));
        }
        out.push('\n');
        let mut table = Table::new(&["AT", "VALUE", "REFERENCE", "MAD", "Z", "BASIS"]);
        for (at, score) in features_named(explain, feature) {
            let over = score.z.abs() >= explain.threshold;
            marked |= over;
            table.push(vec![
                human::ago(at, now),
                human::float(score.value),
                human::float(score.reference),
                human::float(score.mad),
                format!("{}{}", human::score(score.z), if over { "*" } else { "" }),
                human::basis(score.basis).to_owned(),
            ]);
        }
        if table.is_empty() {
            out.push_str("  no value in these windows\n");
        } else {
            out.push_str(&table.render("  "));
        }
    }
    if marked {
        let _ = writeln!(
            out,
            "\n* |z| at or above the threshold, {}",
            human::score(explain.threshold)
        );
    }
    out
}

/// The windows' scores of one feature, oldest first, with when each window was scored.
fn features_named<'a>(
    explain: &'a ExplainResponse,
    feature: &'a str,
) -> impl Iterator<Item = (Option<SystemTime>, &'a FeatureScore)> {
    explain.windows.iter().flat_map(move |window| {
        window
            .features
            .iter()
            .filter(move |score| score.feature == feature)
            .map(|score| (human::time(window.at.as_ref()), score))
    })
}

pub fn domain(domain: &GetDomainResponse, now: SystemTime) -> String {
    let scored = human::time(domain.at.as_ref())
        .map_or_else(|| "not yet".to_owned(), |at| human::ago(Some(at), now));
    let mut out = fields(&[
        ("Domain", domain.domain.clone()),
        ("Scored", scored),
        ("Members", domain.members.len().to_string()),
    ]);
    out.push_str(
        &container_table(
            &domain.members,
            ContainerColumns {
                node: false,
                domain: false,
            },
        )
        .render("  "),
    );
    out.push_str("Features:\n");
    if domain.features.is_empty() {
        out.push_str("  none yet\n");
    } else {
        let mut table = Table::new(&["FEATURE", "MEDIAN", "MAD", "MEMBERS", "BASIS"]);
        for stats in &domain.features {
            table.push(vec![
                stats.feature.clone(),
                human::float(stats.median),
                human::float(stats.mad),
                stats.members.to_string(),
                human::basis(stats.basis).to_owned(),
            ]);
        }
        out.push_str(&table.render("  "));
    }
    out.push_str("Open findings:\n");
    if domain.findings.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&finding_table(&domain.findings, now, false).render("  "));
    }
    out
}

fn named<'a>(features: &'a [FeatureStats], name: &str) -> Option<&'a FeatureStats> {
    features.iter().find(|stats| stats.feature == name)
}

/// One statistic of a feature, `-` where there is none.
fn stat(stats: Option<&FeatureStats>, value: fn(&FeatureStats) -> f64) -> String {
    stats.map_or_else(|| "-".to_owned(), |stats| human::float(value(stats)))
}

/// A domain across the cluster: its members on every node, then each feature cluster-wide
/// with each node's median beside it when that fits in `width` columns, else one table per
/// node below the cluster's.
pub fn cluster_domain(domain: &GetClusterDomainResponse, now: SystemTime, width: usize) -> String {
    let scored = human::time(domain.at.as_ref())
        .map_or_else(|| "not yet".to_owned(), |at| human::ago(Some(at), now));
    let nodes = domain.nodes.len();
    let mut out = fields(&[
        ("Domain", domain.domain.clone()),
        ("Scored", scored),
        (
            "Members",
            format!(
                "{} on {nodes} node{}",
                domain.members.len(),
                if nodes == 1 { "" } else { "s" }
            ),
        ),
    ]);
    out.push_str(
        &container_table(
            &domain.members,
            ContainerColumns {
                node: true,
                domain: false,
            },
        )
        .render("  "),
    );

    // Cluster-wide features first, then any that only some node has.
    let mut names: Vec<&str> = Vec::new();
    let stats = domain
        .features
        .iter()
        .chain(domain.nodes.iter().flat_map(|node| node.features.iter()));
    for stats in stats {
        if !names.contains(&stats.feature.as_str()) {
            names.push(&stats.feature);
        }
    }
    if names.is_empty() {
        out.push_str("Features:\n  none yet\n");
    } else {
        let mut header = vec!["FEATURE", "MEDIAN", "MAD", "MEMBERS"];
        header.extend(domain.nodes.iter().map(|node| node.node.as_str()));
        let mut side_by_side = Table::new(&header);
        let mut cluster = Table::new(&["FEATURE", "MEDIAN", "MAD", "MEMBERS"]);
        for name in &names {
            let stats = named(&domain.features, name);
            let row = vec![
                (*name).to_owned(),
                stat(stats, |s| s.median),
                stat(stats, |s| s.mad),
                stats.map_or_else(|| "-".to_owned(), |stats| stats.members.to_string()),
            ];
            cluster.push(row.clone());
            let mut row = row;
            row.extend(
                domain
                    .nodes
                    .iter()
                    .map(|node| stat(named(&node.features, name), |s| s.median)),
            );
            side_by_side.push(row);
        }
        const INDENT: &str = "  ";
        if side_by_side.width() + INDENT.len() <= width {
            out.push_str("Features (cluster-wide, then each node's median):\n");
            out.push_str(&side_by_side.render(INDENT));
        } else {
            out.push_str("Features, cluster-wide:\n");
            out.push_str(&cluster.render(INDENT));
            for node in &domain.nodes {
                let _ = writeln!(
                    out,
                    "On {} ({} member{}):",
                    node.node,
                    node.members,
                    if node.members == 1 { "" } else { "s" }
                );
                let mut table = Table::new(&["FEATURE", "MEDIAN", "MAD"]);
                for name in &names {
                    let stats = named(&node.features, name);
                    table.push(vec![
                        (*name).to_owned(),
                        stat(stats, |s| s.median),
                        stat(stats, |s| s.mad),
                    ]);
                }
                out.push_str(&table.render(INDENT));
            }
        }
    }
    out.push_str("Open findings:\n");
    if domain.findings.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&finding_table(&domain.findings, now, true).render("  "));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herd_proto::herd::v1::{
        Basis, ExplainWindow, FindingKind, FindingState, NodeDomainStats, NodeHealth, Severity,
    };

    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn at(ago: u64) -> Option<prost_types::Timestamp> {
        Some((now() - Duration::from_secs(ago)).into())
    }

    fn score(feature: &str, value: f64, reference: f64, z: f64) -> FeatureScore {
        FeatureScore {
            feature: feature.to_owned(),
            value,
            reference,
            mad: 0.1,
            z,
            basis: Basis::Peers as i32,
        }
    }

    fn finding() -> Finding {
        Finding {
            id: "9b1c2d3e-4f50-4a6b-8c7d-0e1f2a3b4c5d".to_owned(),
            node: "node-1".to_owned(),
            source: "node node-1".to_owned(),
            kind: FindingKind::NodePeers as i32,
            namespace: "shop".to_owned(),
            pod: "web-7d9f8-x2x7q".to_owned(),
            container: "app".to_owned(),
            container_id: "3f2a9c1b7d4e5f60".to_owned(),
            severity: Severity::Critical as i32,
            state: FindingState::Open as i32,
            opened: at(180),
            updated: at(10),
            peak_score: 18.24,
            drivers: vec![score("cpu_usage_cores", 8.2, 1.0, 18.24)],
            ..Finding::default()
        }
    }

    #[test]
    fn findings_line_up_under_their_headers() {
        let quiet = Finding {
            id: "00aa".to_owned(),
            severity: Severity::Warning as i32,
            state: FindingState::Closed as i32,
            pod: "db-0".to_owned(),
            opened: at(2 * 3600),
            peak_score: 4.5,
            drivers: Vec::new(),
            ..finding()
        };
        // The aggregator's: a workload's share of node-2, and node-3 itself.
        let workload = Finding {
            id: "7e7e".to_owned(),
            kind: FindingKind::WorkloadNode as i32,
            source: "aggregator".to_owned(),
            node: "node-2".to_owned(),
            pod: String::new(),
            container_id: String::new(),
            ..finding()
        };
        let silent = Finding {
            id: "5115".to_owned(),
            kind: FindingKind::NodeSilent as i32,
            source: "aggregator".to_owned(),
            node: "node-3".to_owned(),
            namespace: String::new(),
            pod: String::new(),
            container: String::new(),
            container_id: String::new(),
            severity: Severity::Warning as i32,
            peak_score: 0.0,
            drivers: Vec::new(),
            ..finding()
        };
        // From an agent before kinds and before `node`: its source names the node.
        let old = Finding {
            id: "01d0".to_owned(),
            kind: FindingKind::Unspecified as i32,
            node: String::new(),
            ..quiet.clone()
        };
        assert_eq!(
            findings(&[finding(), quiet, workload, silent, old], now()),
            "\
ID        KIND      SEVERITY  STATE   NODE    NAMESPACE  POD              CONTAINER  OPENED  SCORE  TOP
9b1c2d3e  peers     critical  open    node-1  shop       web-7d9f8-x2x7q  app        3m ago  18.2   cpu_usage_cores 8.2× peers (z 18.2)
00aa      peers     warning   closed  node-1  shop       db-0             app        2h ago  4.5    -
7e7e      workload  critical  open    node-2  shop       -                app        3m ago  18.2   cpu_usage_cores 8.2× peers (z 18.2)
5115      silent    warning   open    node-3  -          -                -          3m ago  0.0    -
01d0      peers     warning   closed  node-1  shop       db-0             app        2h ago  4.5    -
"
        );
        assert_eq!(findings(&[], now()), "No findings.\n");
    }

    #[test]
    fn containers_say_which_are_young_flagged_or_unscored() {
        let web = Container {
            id: "3f2a9c1b7d4e5f60".to_owned(),
            namespace: "shop".to_owned(),
            pod: "web-1".to_owned(),
            name: "app".to_owned(),
            domain: "shop/Deployment/web/app".to_owned(),
            age: Some(prost_types::Duration {
                seconds: 303,
                nanos: 0,
            }),
            judged: true,
            scored: true,
            score: 18.24,
            flagged: true,
            ..Container::default()
        };
        let young = Container {
            id: "aa".to_owned(),
            pod: String::new(),
            judged: false,
            scored: false,
            flagged: false,
            domain: "unnamed:/herd-demo".to_owned(),
            ..web.clone()
        };
        assert_eq!(
            containers(&[web, young]),
            "\
NAMESPACE  POD    CONTAINER  ID            AGE   SCORE  STATUS   DOMAIN
shop       web-1  app        3f2a9c1b7d4e  5m3s  18.2   flagged  shop/Deployment/web/app
shop       -      app        aa            5m3s  -      young    unnamed:/herd-demo
"
        );
    }

    #[test]
    fn a_watch_line_says_when_what_and_why() {
        let line = event(&FindingEvent {
            kind: FindingEventKind::Opened as i32,
            finding: Some(finding()),
        });
        assert_eq!(
            line,
            "2023-11-14T22:10:20Z  opened    critical  peers     node-1  shop/web-7d9f8-x2x7q/app  \
             score 18.2  cpu_usage_cores 8.2× peers (z 18.2)  id 9b1c2d3e"
        );
        // About a workload's share of a node, not one container: the workload.
        let line = event(&FindingEvent {
            kind: FindingEventKind::Updated as i32,
            finding: Some(Finding {
                kind: FindingKind::WorkloadNode as i32,
                node: "node-2".to_owned(),
                domain: "shop/Deployment/web/app".to_owned(),
                pod: String::new(),
                container_id: String::new(),
                ..finding()
            }),
        });
        assert!(
            line.contains("  updated   critical  workload  node-2  shop/Deployment/web/app  "),
            "{line}"
        );
    }

    #[test]
    fn nodes_say_which_report_and_how_much_was_lost() {
        let node = |name: &str, silent, seen, health| NodeStatus {
            node: name.to_owned(),
            last_seen: at(seen),
            agent_version: "0.2.0".to_owned(),
            health,
            open_findings: 3,
            silent,
            summaries: 1440,
            summaries_lost: 2,
        };
        let health = Some(NodeHealth {
            containers: 31,
            ..NodeHealth::default()
        });
        assert_eq!(
            nodes(
                &[
                    node("node-1", false, 4, health),
                    node("ip-10-0-3-17.ec2.internal", true, 1800, None),
                ],
                now()
            ),
            "\
NODE                       STATUS     LAST SEEN  VERSION  CONTAINERS  FINDINGS  SUMMARIES  LOST
node-1                     reporting  4s ago     0.2.0    31          3         1440       2
ip-10-0-3-17.ec2.internal  silent     30m ago    0.2.0    -           3         1440       2
"
        );
        assert_eq!(nodes(&[], now()), "No node has reported yet.\n");
    }

    fn cluster_domain_of_two_nodes() -> GetClusterDomainResponse {
        let stats = |feature: &str, median, members| FeatureStats {
            feature: feature.to_owned(),
            median,
            mad: median / 10.0,
            members,
            basis: Basis::Peers as i32,
        };
        let member = |node: &str, pod: &str| Container {
            id: format!("{pod}-0123456789"),
            node: node.to_owned(),
            namespace: "shop".to_owned(),
            pod: pod.to_owned(),
            name: "app".to_owned(),
            judged: true,
            scored: true,
            score: 1.2,
            ..Container::default()
        };
        GetClusterDomainResponse {
            domain: "shop/Deployment/web/app".to_owned(),
            members: vec![
                member("node-1", "web-a"),
                member("node-1", "web-b"),
                member("node-2", "web-c"),
            ],
            features: vec![
                stats("cpu_usage_cores", 1.0, 3),
                stats("memory_rss_bytes", 2e8, 3),
            ],
            nodes: vec![
                NodeDomainStats {
                    node: "node-1".to_owned(),
                    members: 2,
                    features: vec![
                        stats("cpu_usage_cores", 0.9, 2),
                        stats("memory_rss_bytes", 2e8, 2),
                    ],
                },
                // Its memory is not read on that node.
                NodeDomainStats {
                    node: "node-2".to_owned(),
                    members: 1,
                    features: vec![stats("cpu_usage_cores", 4.1, 1)],
                },
            ],
            findings: vec![Finding {
                kind: FindingKind::WorkloadNode as i32,
                node: "node-2".to_owned(),
                pod: String::new(),
                container_id: String::new(),
                ..finding()
            }],
            at: at(5),
        }
    }

    #[test]
    fn a_cluster_domain_puts_each_nodes_median_beside_the_clusters_when_it_fits() {
        assert_eq!(
            cluster_domain(&cluster_domain_of_two_nodes(), now(), 100),
            "\
Domain:   shop/Deployment/web/app
Scored:   5s ago
Members:  3 on 2 nodes
  NODE    NAMESPACE  POD    CONTAINER  ID            AGE  SCORE  STATUS
  node-1  shop       web-a  app        web-a-012345  -    1.2    ok
  node-1  shop       web-b  app        web-b-012345  -    1.2    ok
  node-2  shop       web-c  app        web-c-012345  -    1.2    ok
Features (cluster-wide, then each node's median):
  FEATURE           MEDIAN  MAD  MEMBERS  node-1  node-2
  cpu_usage_cores   1       0.1  3        0.9     4.1
  memory_rss_bytes  200M    20M  3        200M    -
Open findings:
  ID        KIND      SEVERITY  STATE  NODE    NAMESPACE  POD  CONTAINER  OPENED  SCORE  TOP
  9b1c2d3e  workload  critical  open   node-2  shop       -    app        3m ago  18.2   cpu_usage_cores 8.2× peers (z 18.2)
"
        );
    }

    #[test]
    fn a_cluster_domain_too_wide_for_the_terminal_gets_a_table_per_node() {
        let text = cluster_domain(&cluster_domain_of_two_nodes(), now(), 50);
        let features = text
            .split_once("Open findings:")
            .unwrap()
            .0
            .split_once("Features")
            .unwrap()
            .1;
        assert_eq!(
            features,
            "\
, cluster-wide:
  FEATURE           MEDIAN  MAD  MEMBERS
  cpu_usage_cores   1       0.1  3
  memory_rss_bytes  200M    20M  3
On node-1 (2 members):
  FEATURE           MEDIAN  MAD
  cpu_usage_cores   0.9     0.09
  memory_rss_bytes  200M    20M
On node-2 (1 member):
  FEATURE           MEDIAN  MAD
  cpu_usage_cores   4.1     0.41
  memory_rss_bytes  -       -
"
        );
    }

    #[test]
    fn info_says_what_runs_and_why_a_signal_does_not() {
        use herd_proto::herd::v1::{EbpfStatus, RuntimeStatus, SignalStatus};

        let text = info(
            &GetInfoResponse {
                version: "0.1.0".to_owned(),
                node: "node-1".to_owned(),
                window: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                min_age: Some(prost_types::Duration {
                    seconds: 300,
                    nanos: 0,
                }),
                signals: vec![
                    SignalStatus {
                        name: "cgroup".to_owned(),
                        active: true,
                        source: "cgroup v2 files".to_owned(),
                        reason: String::new(),
                    },
                    SignalStatus {
                        name: "sched".to_owned(),
                        active: false,
                        source: String::new(),
                        reason: "no BTF".to_owned(),
                    },
                ],
                ebpf: Some(EbpfStatus {
                    loaded: true,
                    reason: String::new(),
                }),
                runtime: Some(RuntimeStatus {
                    connected: false,
                    socket: String::new(),
                    reason: "no CRI socket found".to_owned(),
                }),
                started: at(2 * 3600 + 180),
                containers: 12,
                open_findings: 1,
                windows: 740,
                history_windows: 60,
            },
            now(),
        );
        assert_eq!(
            text,
            "\
Agent:       0.1.0 on node node-1
Started:     2h3m ago
Window:      10s
Min age:     5m
History:     60 windows
Containers:  12 watched
Findings:    1 open
Windows:     740 scored
eBPF:        loaded
Runtime:     not connected: no CRI socket found
Signals:
  NAME    ACTIVE  SOURCE OR REASON
  cgroup  yes     cgroup v2 files
  sched   no      no BTF
"
        );
    }

    fn explained() -> ExplainResponse {
        let window = |ago, cpu_z, rss_z| ExplainWindow {
            at: at(ago),
            score: f64::max(cpu_z, rss_z),
            peers: 4,
            features: vec![
                score("cpu_usage_cores", 1.0 + cpu_z * 0.4, 1.0, cpu_z),
                score("memory_rss_bytes", 2.1e8, 2e8, rss_z),
                score("syscalls_per_second", 1200.0, 1190.0, 0.2),
            ],
        };
        ExplainResponse {
            container: Some(Container {
                id: "3f2a9c1b7d4e5f60".to_owned(),
                namespace: "shop".to_owned(),
                pod: "web-7d9f8-x2x7q".to_owned(),
                name: "app".to_owned(),
                image: "shop/web:1.4".to_owned(),
                domain: "shop/Deployment/web/app".to_owned(),
                age: Some(prost_types::Duration {
                    seconds: 7380,
                    nanos: 0,
                }),
                ..Container::default()
            }),
            windows: vec![window(30, 0.3, 1.5), window(20, 18.24, 1.2)],
            findings: vec![finding()],
            threshold: 4.0,
        }
    }

    #[test]
    fn explain_shows_the_drivers_first_and_leaves_out_what_does_not_stray() {
        assert_eq!(
            explain(&explained(), now()),
            "\
Container:  shop/web-7d9f8-x2x7q/app
ID:         3f2a9c1b7d4e5f60
Image:      shop/web:1.4
Domain:     shop/Deployment/web/app
Age:        2h3m
Score:      18.2 in the latest window, 20s ago with 4 peers (threshold 4.0)
Findings:
  ID        SEVERITY  STATE  NAMESPACE  POD              CONTAINER  OPENED  SCORE  TOP
  9b1c2d3e  critical  open   shop       web-7d9f8-x2x7q  app        3m ago  18.2   cpu_usage_cores 8.2× peers (z 18.2)

cpu_usage_cores  (driver of 9b1c2d3e)
  AT       VALUE  REFERENCE  MAD  Z      BASIS
  30s ago  1.12   1          0.1  0.3    peers
  20s ago  8.3    1          0.1  18.2*  peers

memory_rss_bytes
  AT       VALUE  REFERENCE  MAD  Z    BASIS
  30s ago  210M   200M       0.1  1.5  peers
  20s ago  210M   200M       0.1  1.2  peers

* |z| at or above the threshold, 4.0
"
        );
    }

    #[test]
    fn explain_says_so_when_nothing_strays() {
        let mut calm = explained();
        calm.findings.clear();
        for window in &mut calm.windows {
            window
                .features
                .retain(|score| score.feature == "syscalls_per_second");
        }
        let text = explain(&calm, now());
        assert!(text.contains("Findings:\n  none\n"), "{text}");
        assert!(
            text.ends_with("\nNo feature has a |z| of 1 or more in these windows.\n"),
            "{text}"
        );
        assert!(!text.contains("syscalls_per_second"), "{text}");
    }
}
