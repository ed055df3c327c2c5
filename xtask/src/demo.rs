//! `cargo xtask demo`: the agent on this host, for real, in two short acts, each of which
//! fails the demo when the agent gets it wrong.
//!
//! 1. Syscalls per cgroup: a workload in a cgroup the demo makes leads the agent's table,
//!    beside its own count of what it did.
//! 2. The herd: five replicas of one Deployment run in the lab (containerd over CRI); after
//!    the detector's warm-up one replica starts hogging its CPU. The demo asks the agent's
//!    API, as `herd` does for an operator, until the agent names it, and shows
//!    `herd findings` and `herd explain` for that pod.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use herd_tests::{
    agent::AgentProcess,
    cgroup::OwnedCgroup,
    lab::{Fault, FaultKind, Lab, LabSpec, Workload},
};
use serde_json::Value;

use crate::{
    cmd::{self, step},
    setup,
};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long the agent watches the syscall workload, in seconds.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Only the first act (no lab).
    #[arg(long)]
    skip_herd: bool,
}

const DEMO_CGROUP: &str = "herd-demo";
/// The herd act: 3 s windows; the detector judges a container after 6 windows.
const WINDOW_SECS: u64 = 3;
const FAULT_AFTER_SECS: u64 = 30;
/// How long the agent has to name the faulty replica, from its start.
const HERD_SECS: u64 = 60;
/// How often the demo asks the agent for open findings.
const POLL_SECS: u64 = 3;
const FAULTY_REPLICA: u32 = 2;
/// What the agent logs in the herd act: its findings and its start and stop.
const HERD_LOG: &str = "warn,herd::finding=info,herd_agent::cmd::run=info";

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the demo loads eBPF programs, makes cgroups and runs containers: run it as root");
    }
    step("building the agent, herd and the demo workload (release)");
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "herd-agent",
        "-p",
        "herd-tests",
        "--bins",
    ]))?;
    let release = cmd::workspace_root().join("target/release");
    syscalls_act(args, &release)?;
    if !args.skip_herd {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(herd_act(&release))?;
    }
    Ok(())
}

/// Where the demo's agents put their API sockets and logs.
fn demo_dir() -> PathBuf {
    cmd::workspace_root().join("target/herd-demo")
}

fn syscalls_act(args: &DemoArgs, release: &Path) -> anyhow::Result<()> {
    let mount = cgroup2_mount()?;
    let cgroup = OwnedCgroup::at(&mount, DEMO_CGROUP)?;
    step(&format!(
        "act 1: a workload in cgroup {} makes syscalls, ~1 in 10 failing",
        cgroup.path().display()
    ));
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} timed --seconds {} --fail-every 10",
        cgroup.path().display(),
        release.join("herd-syscall-load").display(),
        args.seconds + 2
    );
    let load = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the demo workload")?;

    step(&format!(
        "running herd-agent for {} s; /{DEMO_CGROUP} should lead the table",
        args.seconds
    ));
    let dir = demo_dir().join("syscalls");
    std::fs::create_dir_all(&dir)?;
    let mut agent = Command::new(release.join("herd-agent"));
    agent
        .args(["--interval", "2s", "--top", "5"])
        .args(["--duration", &format!("{}s", args.seconds)])
        .arg("--socket")
        .arg(dir.join("agent.sock"))
        .args(["--log-target", "stderr"])
        .env("HERD_LOG", "warn,herd::table=info");
    let tables = watch_tables(&mut agent);
    // The workload ends on its own; wait for it whatever the agent did, so that its cgroup
    // is empty when it is removed.
    let load = load
        .wait_with_output()
        .context("waiting for the demo workload")?;
    let (status, tables) = tables?;
    ensure!(status.success(), "herd-agent failed: {status}");
    step("what the workload counted itself, to compare with the agent's figures:");
    eprint!("    {}", String::from_utf8_lossy(&load.stdout));
    drop(cgroup);
    step("demo cgroup removed");
    tables.verdict()
}

/// Runs the agent, shows its log as it comes and reads the syscall tables in it.
fn watch_tables(agent: &mut Command) -> anyhow::Result<(ExitStatus, Tables)> {
    eprintln!("    $ {}", cmd::show(agent));
    let mut child = agent
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::show(agent)))?;
    let stderr = child.stderr.take().context("the agent's stderr")?;
    let mut tables = Tables::default();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        eprintln!("{line}");
        tables.read(&line);
    }
    Ok((child.wait()?, tables))
}

/// The leaders of the agent's syscall tables (`herd::table`): a header line starts each
/// table, and its first row is the busiest cgroup.
#[derive(Debug, Default)]
struct Tables {
    leaders: Vec<Option<String>>,
    after_header: bool,
}

impl Tables {
    fn read(&mut self, line: &str) {
        let line = strip_ansi(line);
        let Some((_, message)) = line.split_once("herd::table: ") else {
            return;
        };
        let message = message.trim();
        if message.starts_with("calls/s") {
            self.leaders.push(None);
            self.after_header = true;
        } else if std::mem::take(&mut self.after_header)
            && let Some(cgroup) = table_row(message)
            && let Some(leader) = self.leaders.last_mut()
        {
            *leader = Some(cgroup.to_owned());
        }
    }

    /// /herd-demo must lead most tables; the first is left out, as the workload may only
    /// have started during its window.
    fn verdict(&self) -> anyhow::Result<()> {
        let demo = format!("/{DEMO_CGROUP}");
        ensure!(
            !self.leaders.is_empty(),
            "the agent printed no syscall table"
        );
        let judged = if self.leaders.len() > 1 {
            &self.leaders[1..]
        } else {
            &self.leaders[..]
        };
        let led = judged
            .iter()
            .filter(|leader| leader.as_deref() == Some(demo.as_str()))
            .count();
        if 2 * led > judged.len() {
            step(&format!(
                "{demo} led {led} of {} tables (the first left out)",
                judged.len()
            ));
            return Ok(());
        }
        let others: Vec<_> = judged
            .iter()
            .map(|leader| leader.as_deref().unwrap_or("(an empty table)"))
            .collect();
        bail!(
            "{demo} led only {led} of {} syscall tables; the leaders were: {}",
            judged.len(),
            others.join(", ")
        )
    }
}

/// The cgroup of a table row, `calls/s failed/s cgroup`; None for any other line.
fn table_row(message: &str) -> Option<&str> {
    let (calls, rest) = message.split_once(' ')?;
    let (failed, cgroup) = rest.trim_start().split_once(' ')?;
    calls.parse::<f64>().ok()?;
    failed.parse::<f64>().ok()?;
    Some(cgroup.trim())
}

/// The log's text without its colours (the agent colours its log even into a pipe).
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then one final byte in @..~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

async fn herd_act(release: &Path) -> anyhow::Result<()> {
    step(&format!(
        "act 2: five replicas of shop/web in the lab; replica {FAULTY_REPLICA} starts a CPU \
         hog after {FAULT_AFTER_SECS} s"
    ));
    // Every replica runs a light, steady load; the hog is one busy stress-ng worker.
    let spec = LabSpec::new().workload(
        Workload::deployment("web")
            .namespace("shop")
            .replicas(5)
            .cpu_millis(500)
            .memory_mib(64)
            .command([
                "stress-ng",
                "--cpu",
                "1",
                "--cpu-load",
                "5",
                "--timeout",
                "0",
                "--quiet",
            ])
            .fault(
                Fault::new(FAULTY_REPLICA, FaultKind::CpuHog)
                    .after_secs(FAULT_AFTER_SECS)
                    .for_secs(HERD_SECS),
            ),
    );
    let lab = Lab::up(&spec).await?;
    let verdict = watch_the_herd(&lab, release).await;
    let down = lab.down().await;
    if let (Err(_), Err(err)) = (&verdict, &down) {
        eprintln!("    the lab did not come down cleanly either: {err}");
    }
    let verdict = verdict?;
    down?;
    verdict.judge()
}

/// Runs the agent on the lab, asks its API until it names the faulty replica, shows what an
/// operator would see, and stops it.
async fn watch_the_herd(lab: &Lab, release: &Path) -> anyhow::Result<Verdict> {
    let faulty = lab
        .pods()
        .await?
        .into_iter()
        .find(|pod| {
            pod.annotations.get("herd.lab/replica").map(String::as_str)
                == Some(&FAULTY_REPLICA.to_string())
        })
        .context("the faulty replica's pod")?
        .name;
    let dir = demo_dir().join("herd");
    let _ = std::fs::remove_dir_all(&dir);
    step(&format!(
        "running herd-agent with {WINDOW_SECS} s windows, its API on {}; it should name pod \
         {faulty} within {HERD_SECS} s",
        dir.join("agent.sock").display()
    ));
    let runtime_socket = lab.socket();
    let mut agent = AgentProcess::start_logging(
        &release.join("herd-agent"),
        &dir,
        &[
            "--interval",
            &format!("{WINDOW_SECS}s"),
            "--discovery-interval",
            "2s",
            "--min-age",
            "0s",
            // Only a backstop: the demo stops the agent itself.
            "--duration",
            "5m",
            "--runtime-socket",
            runtime_socket.to_str().context("the lab's socket path")?,
        ],
        HERD_LOG,
    )
    .await?;
    let herd = Herd {
        binary: release.join("herd"),
        server: agent.socket().to_owned(),
    };
    let mut log = LogTail::default();
    let findings = ask(&mut agent, &herd, &faulty, &mut log).await;
    let status = agent.stop();
    let log_text = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    log.show(&log_text);
    let findings = findings?;
    let status = status?;
    ensure!(status.success(), "herd-agent failed: {status}");
    Ok(Verdict::new(faulty, &findings, &log_text))
}

/// Polls the open findings until the faulty pod has one or time is up, then shows
/// `herd findings` and `herd explain`; returns every finding, open or closed.
async fn ask(
    agent: &mut AgentProcess,
    herd: &Herd,
    faulty: &str,
    log: &mut LogTail,
) -> anyhow::Result<Vec<Value>> {
    let open = ["findings", "--state", "open"];
    step(&format!(
        "asking the agent every {POLL_SECS} s for open findings (HERD_SERVER={})",
        herd.server.display()
    ));
    eprintln!("    $ herd -o json {}", open.join(" "));
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(POLL_SECS)).await;
        log.show(&agent.log_text());
        ensure!(
            agent.running(),
            "herd-agent stopped early:\n{}",
            agent.log_text()
        );
        let pods: Vec<_> = herd.findings(&open)?.iter().map(Named::of).collect();
        let names: Vec<_> = pods.iter().map(|pod| pod.0.as_str()).collect();
        eprintln!(
            "    {:>3} s: {}",
            started.elapsed().as_secs(),
            if names.is_empty() {
                "no open finding".to_owned()
            } else {
                format!("open findings on {}", names.join(", "))
            }
        );
        if pods.iter().any(|pod| pod.is(faulty)) {
            break;
        }
        if started.elapsed() >= Duration::from_secs(HERD_SECS) {
            step(&format!("no finding on {faulty} after {HERD_SECS} s"));
            break;
        }
    }
    step("what the operator sees: every finding on this node, open and recently closed");
    herd.show(&["findings"])?;
    step(&format!(
        "why the agent named {faulty}: its score and features, window by window"
    ));
    herd.show(&["explain", faulty])?;
    herd.findings(&["findings"])
}

/// The `herd` CLI, pointed at the demo's agent through `HERD_SERVER`, so that its commands
/// read as an operator types them.
struct Herd {
    binary: PathBuf,
    server: PathBuf,
}

impl Herd {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args).env("HERD_SERVER", &self.server);
        command
    }

    /// Runs `herd ARGS`, printing the command line and its output, indented.
    fn show(&self, args: &[&str]) -> anyhow::Result<()> {
        eprintln!("    $ herd {}", args.join(" "));
        let out = self.command(args).output().context("cannot start herd")?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            eprintln!("      {line}");
        }
        ensure!(
            out.status.success(),
            "`herd {}` failed ({})",
            args.join(" "),
            out.status
        );
        Ok(())
    }

    /// The findings of `herd -o json ARGS`.
    fn findings(&self, args: &[&str]) -> anyhow::Result<Vec<Value>> {
        let out = self
            .command(&[&["-o", "json"], args].concat())
            .output()
            .context("cannot start herd")?;
        ensure!(
            out.status.success(),
            "`herd -o json {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let doc: Value = serde_json::from_slice(&out.stdout).context("herd's JSON")?;
        doc["findings"]
            .as_array()
            .cloned()
            .context("no \"findings\" list in herd's JSON")
    }
}

/// What a finding names: `namespace/pod`, or the container where it has no pod.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Named(String);

impl Named {
    fn of(finding: &Value) -> Self {
        let text = |key: &str| finding[key].as_str().unwrap_or_default();
        if text("pod").is_empty() {
            Self(format!("container {}", text("container_id")))
        } else {
            Self(format!("{}/{}", text("namespace"), text("pod")))
        }
    }

    /// From a `herd::finding` log line: `… (pod NAMESPACE/POD) in …`.
    fn of_log_line(line: &str) -> Option<Self> {
        let line = strip_ansi(line);
        let (_, message) = line.split_once("herd::finding: ")?;
        Some(match message.split_once(" (pod ") {
            Some((_, rest)) => Self(rest.split(')').next().unwrap_or_default().to_owned()),
            None => Self(message.to_owned()),
        })
    }

    fn is(&self, pod: &str) -> bool {
        self.0.rsplit_once('/').is_some_and(|(_, name)| name == pod)
    }
}

/// The shown part of the agent's log file: complete lines, each once.
#[derive(Default)]
struct LogTail {
    shown: usize,
}

impl LogTail {
    fn show(&mut self, text: &str) {
        let Some(fresh) = text.get(self.shown..) else {
            return;
        };
        let Some(end) = fresh.rfind('\n') else {
            return;
        };
        for line in fresh[..end].lines() {
            eprintln!("    {line}");
        }
        self.shown += end + 1;
    }
}

/// Whom the agent named, through its API and in its log.
struct Verdict {
    faulty: String,
    named_faulty: bool,
    others: BTreeSet<Named>,
}

impl Verdict {
    fn new(faulty: String, findings: &[Value], log: &str) -> Self {
        let named = findings
            .iter()
            .map(Named::of)
            .chain(log.lines().filter_map(Named::of_log_line));
        let (right, others): (Vec<_>, Vec<_>) = named.partition(|named| named.is(&faulty));
        Self {
            named_faulty: !right.is_empty(),
            faulty,
            others: others.into_iter().collect(),
        }
    }

    fn judge(&self) -> anyhow::Result<()> {
        let faulty = &self.faulty;
        let others: Vec<_> = self.others.iter().map(|named| named.0.as_str()).collect();
        match (self.named_faulty, others.is_empty()) {
            (true, true) => {
                step(&format!("the agent named {faulty}, and nothing else"));
                Ok(())
            }
            (true, false) => {
                step(&format!(
                    "the agent named {faulty}, and {} other(s): {}",
                    others.len(),
                    others.join(", ")
                ));
                bail!(
                    "findings on pods that did nothing wrong: {}",
                    others.join(", ")
                )
            }
            (false, _) => {
                step(&format!("the agent did not name {faulty} in {HERD_SECS} s"));
                if others.is_empty() {
                    bail!("no finding names the faulty pod {faulty}")
                }
                bail!(
                    "no finding names the faulty pod {faulty}; findings named {} instead",
                    others.join(", ")
                )
            }
        }
    }
}

fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let out = Command::new("findmnt")
        .args([
            "--types",
            "cgroup2",
            "--noheadings",
            "--first-only",
            "--output",
            "TARGET",
        ])
        .output()
        .context("running findmnt")?;
    let target = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if target.is_empty() {
        bail!("no cgroup2 file system is mounted; Herd needs the unified hierarchy");
    }
    Ok(PathBuf::from(target))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Lines as the agent writes them into a pipe, colours and all.
    fn table_line(message: &str) -> String {
        format!(
            "\u{1b}[2m2026-12-02T05:38:17.073602Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
             \u{1b}[2mherd::table\u{1b}[0m\u{1b}[2m:\u{1b}[0m {message}"
        )
    }

    fn tables(rows: &[&[&str]]) -> Tables {
        let mut tables = Tables::default();
        for table in rows {
            tables.read(&table_line(
                "busiest cgroups by syscalls cgroups=3 interval_s=2.0",
            ));
            tables.read(&table_line("     calls/s     failed/s  cgroup"));
            for cgroup in *table {
                tables.read(&table_line(&format!("      123456         1234  {cgroup}")));
            }
        }
        tables
    }

    #[test]
    fn the_first_row_after_each_header_leads() {
        let read = tables(&[&["/", "/herd-demo"], &["/herd-demo", "/"], &[]]);
        assert_eq!(
            read.leaders,
            [Some("/".to_owned()), Some("/herd-demo".to_owned()), None]
        );
    }

    #[test]
    fn herd_demo_must_lead_most_tables_after_the_first() {
        let demo = ["/herd-demo", "/"];
        let other = ["/user.slice", "/herd-demo"];
        assert!(tables(&[&other, &demo, &demo, &other]).verdict().is_ok());
        assert!(tables(&[&demo, &demo, &other, &other]).verdict().is_err());
        assert!(tables(&[]).verdict().is_err());
        let err = tables(&[&demo, &other, &[]]).verdict().unwrap_err();
        assert!(
            err.to_string().contains("/user.slice, (an empty table)"),
            "{err}"
        );
    }

    #[test]
    fn findings_on_other_pods_fail_the_herd_act() {
        let finding = |pod: &str| json!({"namespace": "shop", "pod": pod, "state": "open"});
        let log = "\u{1b}[33m WARN\u{1b}[0m herd::finding: warning 3f2a (pod shop/web-4) in \
                   shop/Deployment/web/main on lab: cpu_usage_cores 0.9";
        let verdict =
            |findings: &[Value], log: &str| Verdict::new("web-2".to_owned(), findings, log);
        assert!(verdict(&[finding("web-2")], "").judge().is_ok());
        assert!(verdict(&[], "").judge().is_err());
        assert!(
            verdict(&[finding("web-2"), finding("web-1")], "")
                .judge()
                .is_err()
        );
        let with_log = verdict(&[finding("web-2")], log);
        assert_eq!(
            with_log.others.iter().collect::<Vec<_>>(),
            [&Named("shop/web-4".to_owned())]
        );
        assert!(with_log.judge().is_err());
    }
}
