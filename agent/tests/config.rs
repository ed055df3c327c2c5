//! `herd-agent config` as a person runs it: the real binary, a real file, real variables.
//! Each layer beats the ones below it, and a bad file stops the agent with exit code 2.

use std::process::Command;

fn agent() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herd-agent"));
    // Nothing from the environment this test runs in.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERD_") {
            command.env_remove(name);
        }
    }
    command
}

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

#[test]
fn flags_beat_variables_beat_the_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "interval = \"30s\"\ntop = 7\nsummary-queue = 9\nmin-age = \"2m\"\n",
    )
    .unwrap();
    let out = agent()
        .args(["config", "--interval", "1m"])
        .env("HERD_CONFIG", &file)
        .env("HERD_TOP", "3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line(&text, "interval"), "interval = \"1m\"  # flag");
    assert_eq!(line(&text, "top"), "top = 3  # environment HERD_TOP");
    let from_file = format!("# file {}", file.display());
    assert_eq!(
        line(&text, "summary-queue"),
        format!("summary-queue = 9  {from_file}")
    );
    assert_eq!(
        line(&text, "min-age"),
        format!("min-age = \"2m\"  {from_file}")
    );
    assert_eq!(line(&text, "watch-queue"), "watch-queue = 256  # default");

    // What it printed is a file that gives the same configuration.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &text).unwrap();
    let out = agent()
        .args(["config", "--config"])
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(line(&text, "interval").starts_with("interval = \"1m\""));
    assert!(line(&text, "top").starts_with("top = 3 "));
}

#[test]
fn a_bad_file_stops_the_agent_naming_file_key_value_and_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    for (content, wants) in [
        (
            "interval = \"often\"\n",
            &["interval = \"often\"", "a duration"][..],
        ),
        (
            "intervall = \"10s\"\n",
            &["unknown key `intervall`", "interval, "],
        ),
        (
            "log-target = \"syslog\"\n",
            &["syslog", "one of auto, journald, stderr"],
        ),
    ] {
        std::fs::write(&file, content).unwrap();
        let out = agent()
            .arg("--config")
            .arg(&file)
            .arg("run")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{content}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&file.display().to_string()), "{err}");
        for want in wants {
            assert!(err.contains(want), "{content}: {err} lacks {want}");
        }
    }
    let out = agent()
        .args(["config", "--config", "/nonexistent/herd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_bad_aggregator_address_stops_the_agent_before_it_touches_the_host() {
    let dir = tempfile::tempdir().unwrap();
    for (url, wants) in [
        ("ftp://aggregator:7443", "unsupported address"),
        ("https://", "unsupported address"),
        ("http://aggregator:7443", "plain text"),
        (
            "https://aggregator:7443",
            "needs --tls-cert, --tls-key and --tls-ca",
        ),
    ] {
        let out = agent()
            .args(["run", "--aggregator", url, "--duration", "1s", "--socket"])
            .arg(dir.path().join("agent.sock"))
            .env("HERD_LOG_TARGET", "stderr")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(url) && err.contains(wants), "{url}: {err}");
        // Said before the host checks, eBPF and discovery: nothing about them in its log,
        // whoever runs it.
        for later in ["host checks", "eBPF", "cgroup"] {
            assert!(!err.contains(later), "{url}: {err}");
        }
    }
}
