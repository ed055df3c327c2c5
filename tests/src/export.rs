//! What the export tests share: a private `systemd-journald` to run the agent under, the
//! journal read back as JSON, and `promtool check metrics` on a live `/metrics`.

use std::{
    ffi::OsStr,
    io::Write as _,
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, ensure};
use serde_json::Value;

/// Runs journald and a command in a mount namespace of their own: tmpfs over journald's
/// socket and journal directories, so that the host's journal sees nothing of this. The
/// command's stderr goes to `<dir>/agent.stderr`; afterwards `<dir>/journal.json` holds every
/// `herd-agent` entry, `warnings.json` and `warnings.txt` what
/// `journalctl -t herd-agent HERD_NAMESPACE=shop -p warning` shows.
const SCRIPT: &str = r#"
set -eu
dir="$1"; shift
for d in /run/systemd /run/log /var/log/journal; do
    if [ -d "$d" ]; then mount -t tmpfs herd-test-journal "$d"; fi
done
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald &
journald=$!
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
status=0
"$@" 2>"$dir/agent.stderr" || status=$?
journalctl --sync 2>/dev/null || true
journalctl -t herd-agent -o json --no-pager >"$dir/journal.json"
journalctl -t herd-agent HERD_NAMESPACE=shop -p warning -o json --no-pager >"$dir/warnings.json"
journalctl -t herd-agent HERD_NAMESPACE=shop -p warning --no-pager >"$dir/warnings.txt"
kill "$journald"; wait "$journald" || true
exit "$status"
"#;

/// The Debian packages the helpers here run.
pub const PACKAGES: &[&str] = &["systemd", "util-linux", "prometheus", "curl"];

/// A command that runs `program` under a private journald (see [`SCRIPT`]); add the
/// program's arguments, then run it. It ends when the program ends.
pub fn under_private_journal(dir: &Path, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "journald-test",
        ])
        .arg(dir)
        .arg(program);
    command
}

/// The entries of a `journalctl -o json` file.
pub fn journal_entries(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|line| serde_json::from_str(line).context("journalctl -o json line"))
        .collect()
}

/// A journal entry's field as text, empty when absent.
pub fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or("")
}

/// A TCP port free on loopback now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Scrapes `http://127.0.0.1:<port>/metrics` with curl, keeps it as `<dir>/<name>`, and runs
/// `promtool check metrics` on it; returns the text.
pub fn promtool_check(port: u16, dir: &Path, name: &str) -> anyhow::Result<String> {
    let metrics = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .context("running curl")?;
    ensure!(
        metrics.status.success(),
        "curl http://127.0.0.1:{port}/metrics failed: {}",
        metrics.status
    );
    std::fs::write(dir.join(name), &metrics.stdout)?;
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool")?;
    check
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(&metrics.stdout)?;
    let out = check.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics on port {port}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&metrics.stdout).into_owned())
}

/// The value of the sample `series` (name and labels exactly as exposed) in a text
/// exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}
