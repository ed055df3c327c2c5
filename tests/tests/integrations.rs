//! Where operators already look, each with the real program from Debian, while one lab
//! replica holds a CPU fault for two minutes:
//! - journald: a real `systemd-journald`, started by the test in a private mount namespace
//!   (its own sockets under /run/systemd and its own journal directories, the host's
//!   untouched), receives the agent's entries; `journalctl` reads them back. One entry when
//!   the finding opens, at most one when it escalates, one when it closes: a lasting fault
//!   does not flood the journal.
//! - Prometheus: a real Prometheus on loopback scrapes the agent; its query API shows the
//!   faulty replica's score above its peers' and the target up; `promtool check metrics`
//!   passes on the agent's /metrics.
//! - Alertmanager: a real Alertmanager on loopback gets the finding as a firing alert, read
//!   back with `amtool`, and routes it by a grouping route to a webhook the test runs, first
//!   firing, then resolved once the fault is over.
//!
//! Root only; it takes the lab.

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use herd_tests::{
    built_binary,
    export::{self, field, free_port, journal_entries},
    lab::{self, Lab, LabSpec},
    require_root, stray,
};
use serde_json::Value;

const FAULTY_REPLICA: u32 = 1;
const FAULT_AFTER_SECS: u64 = 30;
/// Held for 60 windows of 2 s.
const FAULT_SECS: u64 = 120;
/// Until the fault has ended and the finding had time to close.
const AGENT_SECS: u64 = FAULT_AFTER_SECS + FAULT_SECS + 35;

#[test]
fn a_stray_replica_reaches_the_journal_and_prometheus() -> anyhow::Result<()> {
    require_root();
    lab::install::ensure(&[
        "systemd",
        "util-linux",
        "prometheus",
        "prometheus-alertmanager",
        "curl",
    ])?;
    lab::run_test(scenario())
}

async fn scenario() -> anyhow::Result<()> {
    let spec = LabSpec::new().workload(stray::web_with_cpu_hog(
        FAULTY_REPLICA,
        FAULT_AFTER_SECS,
        FAULT_SECS,
    ));
    let lab = Lab::up(&spec).await?;
    let faulty = stray::pod_of_replica(&lab, stray::NAMESPACE, FAULTY_REPLICA).await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/herd-journald-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let agent = built_binary("herd-agent")?;
    let socket = lab.socket();
    let dir_for_run = dir.clone();
    let metrics_port = free_port()?;
    let prometheus = Prometheus::start(&dir, metrics_port)?;
    let webhook = Webhook::start()?;
    let alertmanager = Alertmanager::start(&dir, webhook.port)?;
    let alertmanager_url = alertmanager.url();
    let run = tokio::task::spawn_blocking(move || {
        export::under_private_journal(&dir_for_run, agent)
            .args(["--log-target", "journald", "--interval", "2s"])
            .args(["--discovery-interval", "1s", "--min-age", "0s"])
            .args(["--duration", &format!("{AGENT_SECS}s")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--alertmanager", &alertmanager_url, "--alert-resend", "5s"])
            .arg("--socket")
            .arg(dir_for_run.join("agent.sock"))
            .arg("--runtime-socket")
            .arg(socket)
            .status()
    });
    // While the fault holds: what Prometheus scraped, and promtool on the live endpoint.
    tokio::time::sleep(Duration::from_secs(FAULT_AFTER_SECS + 20)).await;
    let scraped = prometheus.faulty_stands_out(&faulty).await;
    let linted = promtool(metrics_port, &dir);
    let alerted = alertmanager.firing(&faulty, &dir);
    let status = run.await??;
    // The resolution reaches the webhook a group interval after the close.
    let notified = webhook
        .fired_then_resolved(&faulty, Duration::from_secs(30))
        .await;
    drop(prometheus);
    drop(alertmanager);
    lab.down().await?;
    scraped.context("Prometheus")?;
    linted.context("promtool check metrics")?;
    alerted.context("amtool alert query")?;
    notified.context("Alertmanager's webhook")?;
    ensure!(
        status.success(),
        "the agent or journald failed ({status}); stderr: {}",
        std::fs::read_to_string(dir.join("agent.stderr")).unwrap_or_default()
    );
    check(&dir, &faulty)
}

fn check(dir: &Path, faulty: &str) -> anyhow::Result<()> {
    let journal = journal_entries(&dir.join("journal.json"))?;
    ensure!(!journal.is_empty(), "journald holds no herd-agent entry");
    let started: Vec<&Value> = journal
        .iter()
        .filter(|e| field(e, "MESSAGE").contains("started, watching with"))
        .collect();
    ensure!(started.len() == 1, "one start entry, not {}", started.len());
    ensure!(
        field(started[0], "SIGNALS").contains("syscalls"),
        "{}",
        started[0]
    );

    let mut findings: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for entry in journal
        .iter()
        .filter(|e| !field(e, "HERD_FINDING_ID").is_empty())
    {
        findings
            .entry(field(entry, "HERD_FINDING_ID"))
            .or_default()
            .push(entry);
    }
    let pods: Vec<&str> = findings.values().map(|e| field(e[0], "HERD_POD")).collect();
    ensure!(
        pods == [faulty],
        "one finding, of the faulty pod {faulty}; the journal has findings of {pods:?}"
    );
    let (id, entries) = findings.into_iter().next().context("the finding")?;
    let states: Vec<&str> = entries.iter().map(|e| field(e, "HERD_STATE")).collect();
    let escalations = states.iter().filter(|s| **s == "escalated").count();
    ensure!(
        states.first() == Some(&"opened")
            && states.last() == Some(&"closed")
            && states.len() == 2 + escalations
            && escalations <= 1,
        "a finding held for {FAULT_SECS} s gives an opening, at most one escalation and a \
         closing, not {states:?}"
    );
    for entry in &entries {
        let expected = match (field(entry, "HERD_STATE"), field(entry, "HERD_SEVERITY")) {
            ("closed", _) => "5",
            (_, "critical") => "2",
            (_, "warning") => "4",
            other => anyhow::bail!("unexpected state and severity {other:?}"),
        };
        ensure!(
            field(entry, "PRIORITY") == expected,
            "priority {} for {entry}",
            field(entry, "PRIORITY")
        );
        for name in [
            "HERD_NAMESPACE",
            "HERD_POD",
            "HERD_CONTAINER",
            "HERD_DOMAIN",
            "HERD_NODE",
            "HERD_SEVERITY",
            "HERD_SCORE",
            "HERD_TOP_FEATURE",
        ] {
            ensure!(
                !field(entry, name).is_empty(),
                "{name} missing from {entry}"
            );
        }
        ensure!(field(entry, "HERD_NAMESPACE") == "shop");
        ensure!(field(entry, "SYSLOG_IDENTIFIER") == "herd-agent");
    }

    // What an operator types: the namespace's findings at warning or worse.
    let warnings = entries_of(&dir.join("warnings.json"), id)?;
    let states: Vec<&str> = warnings.iter().map(|e| field(e, "HERD_STATE")).collect();
    ensure!(
        states.first() == Some(&"opened") && !states.contains(&"closed"),
        "`journalctl -t herd-agent HERD_NAMESPACE=shop -p warning` shows {states:?}"
    );
    Ok(())
}

fn entries_of(path: &Path, id: &str) -> anyhow::Result<Vec<Value>> {
    Ok(journal_entries(path)?
        .into_iter()
        .filter(|e| field(e, "HERD_FINDING_ID") == id)
        .collect())
}

/// A real Prometheus on loopback, scraping the agent every second; ended when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, agent_port: u16) -> anyhow::Result<Self> {
        let port = free_port()?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: herd\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n"
            ),
        )?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
            .spawn()
            .context("starting prometheus")?;
        Ok(Self { child, port })
    }

    fn query(&self, expr: &str) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "--get", "--data-urlencode"])
            .arg(format!("query={expr}"))
            .arg(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .output()?;
        let json: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "Prometheus answered {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        ensure!(json["status"] == "success", "query {expr}: {json}");
        json["data"]["result"]
            .as_array()
            .context("a vector result")?
            .iter()
            .map(|sample| {
                let labels = serde_json::from_value(sample["metric"].clone())?;
                let value: f64 = sample["value"][1].as_str().unwrap_or("nan").parse()?;
                Ok((labels, value))
            })
            .collect()
    }

    /// Within 40 s: the agent is up, and the faulty replica's score stands above every peer's.
    async fn faulty_stands_out(&self, faulty: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut last = String::new();
        while Instant::now() < deadline {
            let up = self.query("up{job=\"herd\"}");
            let scores = self.query("herd_container_score{namespace=\"shop\"}");
            match (up, scores) {
                (Ok(up), Ok(scores)) => {
                    let up = up.first().map(|(_, v)| *v);
                    let faulty_score = scores
                        .iter()
                        .find(|(labels, _)| labels.get("pod").map(String::as_str) == Some(faulty))
                        .map(|(_, v)| *v);
                    let peers = scores
                        .iter()
                        .filter(|(labels, _)| labels.get("pod").map(String::as_str) != Some(faulty))
                        .map(|(_, v)| *v)
                        .fold(f64::NEG_INFINITY, f64::max);
                    if up == Some(1.0)
                        && scores.len() == 5
                        && faulty_score.is_some_and(|s| s > 3.5 && s > peers)
                    {
                        return Ok(());
                    }
                    last = format!(
                        "up {up:?}, faulty {faulty_score:?}, peers' highest {peers}, {} series",
                        scores.len()
                    );
                }
                (up, scores) => last = format!("{up:?} {scores:?}"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        anyhow::bail!("the faulty replica did not stand out in Prometheus: {last}")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Also keeps what it checked in `dir/metrics.txt`.
fn promtool(port: u16, dir: &Path) -> anyhow::Result<()> {
    let text = export::promtool_check(port, dir, "metrics.txt")?;
    ensure!(
        text.contains("herd_container_feature{"),
        "the agent's /metrics lacks the per-container features"
    );
    Ok(())
}

/// A real Alertmanager on loopback, its gossip off, routing Herd's alerts by alertname and
/// namespace to the test's webhook; ended when dropped.
struct Alertmanager {
    child: Child,
    port: u16,
}

impl Alertmanager {
    fn start(dir: &Path, webhook_port: u16) -> anyhow::Result<Self> {
        let port = free_port()?;
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  group_by: [alertname, namespace]\n  \
                 group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: hook\n    webhook_configs:\n      \
                 - url: http://127.0.0.1:{webhook_port}/hook\n        send_resolved: true\n"
            ),
        )?;
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.join("alertmanager").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log"))?)
            .spawn()
            .context("starting prometheus-alertmanager")?;
        Ok(Self { child, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `amtool alert query` shows the faulty pod's alert, labelled and annotated; what it
    /// printed for a person is kept in `dir/amtool.txt`.
    fn firing(&self, faulty: &str, dir: &Path) -> anyhow::Result<()> {
        let shown = Command::new("amtool")
            .arg(format!("--alertmanager.url={}", self.url()))
            .args([
                "alert",
                "query",
                "-o",
                "extended",
                "alertname=HerdStrayContainer",
            ])
            .output()?;
        ensure!(
            shown.status.success(),
            "amtool: {}",
            String::from_utf8_lossy(&shown.stderr)
        );
        std::fs::write(dir.join("amtool.txt"), &shown.stdout)?;
        let out = Command::new("amtool")
            .arg(format!("--alertmanager.url={}", self.url()))
            .args([
                "alert",
                "query",
                "-o",
                "json",
                "alertname=HerdStrayContainer",
            ])
            .output()?;
        ensure!(
            out.status.success(),
            "amtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let alerts: Vec<Value> = serde_json::from_slice(&out.stdout)?;
        let alert = alerts
            .iter()
            .find(|a| a["labels"]["pod"] == faulty)
            .with_context(|| format!("no alert for {faulty}: {alerts:?}"))?;
        for label in [
            "severity",
            "namespace",
            "container",
            "domain",
            "node",
            "finding_id",
        ] {
            ensure!(
                alert["labels"][label].is_string(),
                "label {label} missing: {alert}"
            );
        }
        ensure!(alert["labels"]["namespace"] == "shop");
        ensure!(
            alert["annotations"]["explain"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("herd explain {faulty}"))),
            "the explain annotation: {alert}"
        );
        ensure!(
            alerts.iter().all(|a| a["labels"]["pod"] == faulty),
            "alerts for other pods: {alerts:?}"
        );
        Ok(())
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP receiver for Alertmanager's webhook: every notification's JSON body, in order.
struct Webhook {
    port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Webhook {
    fn start() -> anyhow::Result<Self> {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&bodies);
        // Ends with the test process; it only ever answers on loopback.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(json) = serde_json::from_slice(&body)
                {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(json);
                }
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Ok(Self { port, bodies })
    }

    /// Within `within`: a firing notification for the faulty pod, then a resolved one.
    async fn fired_then_resolved(&self, faulty: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let statuses: Vec<String> = self
                .bodies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
                .filter(|alert| alert["labels"]["pod"] == faulty)
                .filter_map(|alert| alert["status"].as_str().map(str::to_owned))
                .collect();
            let fired = statuses.iter().position(|s| s == "firing");
            let resolved = statuses.iter().rposition(|s| s == "resolved");
            if fired.zip(resolved).is_some_and(|(f, r)| f < r) {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the webhook saw {statuses:?} for {faulty}, not firing then resolved"
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The alert rules `deploy/` ships load in Prometheus: `promtool check rules` on the
/// PrometheusRule's `spec`, which is a plain rule file.
#[test]
fn the_shipped_alert_rules_pass_promtool() -> anyhow::Result<()> {
    require_root();
    lab::install::ensure(&["prometheus"])?;
    let rule =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring/prometheus-rule.yaml");
    let text = std::fs::read_to_string(&rule)?;
    let spec = text
        .split_once("\nspec:\n")
        .context("the PrometheusRule has a spec")?
        .1;
    let groups: String = spec
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix("  ").unwrap_or(line)))
        .collect();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("herd.rules.yml");
    std::fs::write(&file, groups)?;
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()?;
    ensure!(
        out.status.success(),
        "promtool check rules {}: {}{}",
        rule.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
