//! One configuration in four layers, highest first: flags, the environment (`HERD_*`), a TOML
//! file, the built-in defaults.
//!
//! The layers are generic over a clap [`Command`], so that a flag added to a program is
//! configurable in every layer without code of its own:
//! - every argument with a long name gets the variable `<prefix><LONG_NAME>` unless it names
//!   one already ([`with_env_names`]: `--min-age` is `HERD_MIN_AGE`);
//! - the file's keys are the long flag names (`min-age = "90s"`), and each value becomes the
//!   argument's default before clap parses ([`apply_file`]), so that clap's own order (flag,
//!   then variable, then default) puts the file between the environment and the built-in
//!   default. A value is checked by the argument's own parser first: an unknown key or a bad
//!   value stops start-up naming the file, the key, the value and what is allowed.
//!
//! [`effective`] reads back every setting with where its value came from, which
//! `herd-agent config` prints as TOML that can be used as a file. Both daemons use it:
//! `herd-agent` (its `config` module) and `herd-aggregator`.

mod show;

use std::{
    any::TypeId,
    collections::BTreeSet,
    ffi::{OsStr, OsString},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Arg, ArgAction, Command};
use thiserror::Error;

pub use show::{Setting, Source, effective, to_toml};

/// Where a program's configuration file is found.
#[derive(Clone, Copy, Debug)]
pub struct FileSpec {
    /// The flag naming the file, without dashes (`config` for `--config PATH`).
    pub flag: &'static str,
    /// The prefix of every setting's variable (`HERD_`); the file's own is `<prefix>CONFIG`.
    pub env_prefix: &'static str,
    /// The file read when neither the flag nor its variable names one. It may be absent:
    /// then the defaults apply, and nothing is said but in `herd-agent config`.
    pub default_path: &'static str,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "the configuration file {path} has an unknown key `{key}`; the keys are the long flag \
         names: {allowed}"
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        allowed: String,
    },
    #[error(
        "the configuration file {path} sets `{key} = {value}`, which is not allowed ({reason}); \
         {key} takes {expected}"
    )]
    BadValue {
        path: PathBuf,
        key: String,
        value: String,
        reason: String,
        expected: String,
    },
}

/// The file layer as it was read: which file, and which settings it gave.
#[derive(Clone, Debug, Default)]
pub struct FileLayer {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// The default path that was looked for and found absent, if that is what happened.
    pub absent_default: Option<PathBuf>,
    /// The keys (long flag names) the file set.
    pub keys: BTreeSet<String>,
}

/// Gives every argument with a long name the variable `<prefix><LONG_NAME>` (upper case, `-`
/// as `_`) unless it has one, in every subcommand too.
pub fn with_env_names(command: Command, prefix: &str) -> Command {
    command
        .mut_args(|arg| match arg.get_long() {
            Some(long) if arg.get_env().is_none() => {
                let name = env_name(prefix, long);
                arg.env(name)
            }
            _ => arg,
        })
        .mut_subcommands(|sub| with_env_names(sub, prefix))
}

/// `HERD_` and `min-age` give `HERD_MIN_AGE`.
pub fn env_name(prefix: &str, long: &str) -> String {
    format!("{prefix}{}", long.to_uppercase().replace('-', "_"))
}

/// Finds the file (`--config PATH` in `args`, else the variable, else the default path where
/// it exists), and makes each of its settings the default of the arguments of that long
/// name, in every subcommand. `env` looks a variable up (`std::env::var_os` in a program).
pub fn apply_file(
    command: Command,
    args: &[OsString],
    spec: &FileSpec,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(Command, FileLayer), ConfigError> {
    let path = match flag_value(args, spec.flag) {
        Some(path) => PathBuf::from(path),
        None => match env(&env_name(spec.env_prefix, spec.flag)) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => {
                let default = PathBuf::from(spec.default_path);
                if !default.exists() {
                    let layer = FileLayer {
                        absent_default: Some(default),
                        ..FileLayer::default()
                    };
                    return Ok((command, layer));
                }
                default
            }
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    apply_text(command, path, &text, spec)
}

/// Makes each setting of a configuration file's `text` (read from `path`, which errors
/// name) the default of the arguments of that long name, as [`apply_file`] does once it has
/// read the file.
pub fn apply_text(
    command: Command,
    path: PathBuf,
    text: &str,
    spec: &FileSpec,
) -> Result<(Command, FileLayer), ConfigError> {
    let mut layer = FileLayer::default();
    let table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Toml {
        path: path.clone(),
        source: Box::new(source),
    })?;
    let mut command = command;
    for (key, value) in table {
        let Some(arg) = find_arg(&command, &key, spec.flag) else {
            return Err(ConfigError::UnknownKey {
                path,
                allowed: keys(&command, spec.flag).join(", "),
                key,
            });
        };
        let values = scalars(&value).ok_or_else(|| ConfigError::BadValue {
            path: path.clone(),
            key: key.clone(),
            value: value.to_string(),
            reason: "not a string, number or boolean".into(),
            expected: expected(arg),
        })?;
        check(arg, &values).map_err(|reason| ConfigError::BadValue {
            path: path.clone(),
            key: key.clone(),
            value: value.to_string(),
            reason,
            expected: expected(arg),
        })?;
        command = set_default(command, &key, &values);
        layer.keys.insert(key);
    }
    layer.path = Some(path);
    Ok((command, layer))
}

/// Every key a file may set: the long names of the arguments, in every subcommand, sorted.
pub fn keys(command: &Command, file_flag: &str) -> Vec<String> {
    fn collect(command: &Command, file_flag: &str, out: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long()
                && settable(long, file_flag)
            {
                out.insert(long.to_owned());
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, file_flag, out);
        }
    }
    let mut out = BTreeSet::new();
    collect(command, file_flag, &mut out);
    out.into_iter().collect()
}

fn settable(long: &str, file_flag: &str) -> bool {
    !matches!(long, "help" | "version") && long != file_flag
}

/// The value of `--flag VALUE` or `--flag=VALUE` among the arguments (the last one wins, as
/// in clap), up to a `--`.
fn flag_value(args: &[OsString], flag: &str) -> Option<OsString> {
    let long = format!("--{flag}");
    let prefix = format!("--{flag}=");
    let mut found = None;
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == long {
            found = args.next().cloned();
        } else if let Some(value) = text.strip_prefix(&prefix) {
            found = Some(OsString::from(value));
        }
    }
    found
}

fn find_arg<'a>(command: &'a Command, long: &str, file_flag: &str) -> Option<&'a Arg> {
    if !settable(long, file_flag) {
        return None;
    }
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_arg(sub, long, file_flag))
        })
}

/// A TOML value as the strings clap parses: a scalar, or an array of scalars for an
/// argument that takes several values.
fn scalars(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Integer(i) => Some(vec![i.to_string()]),
        toml::Value::Float(f) => Some(vec![f.to_string()]),
        toml::Value::Boolean(b) => Some(vec![b.to_string()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Array(_) | toml::Value::Table(_) => None,
                other => scalars(other).and_then(|mut v| v.pop()),
            })
            .collect(),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// Parses the values with the argument's own parser, as if they were given as flags.
fn check(arg: &Arg, values: &[String]) -> Result<(), String> {
    if is_switch(arg) {
        return match values {
            [v] if v == "true" || v == "false" => Ok(()),
            _ => Err("a switch is true or false".into()),
        };
    }
    let long = arg.get_long().unwrap_or_default();
    let mut tokens: Vec<String> = Vec::new();
    if matches!(arg.get_action(), ArgAction::Append) {
        tokens.extend(values.iter().map(|v| format!("--{long}={v}")));
    } else if let [v] = values {
        tokens.push(format!("--{long}={v}"));
    } else {
        tokens.push(format!("--{long}"));
        tokens.extend(values.iter().cloned());
    }
    let probe = arg
        .clone()
        .env(None)
        .default_value(None)
        .required(false)
        .global(false);
    Command::new("config-file")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(probe)
        .try_get_matches_from(tokens)
        .map(drop)
        .map_err(|err| {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_owned()
        })
}

/// What an argument takes, in words.
fn expected(arg: &Arg) -> String {
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| value.get_name().to_owned())
        .collect();
    if is_switch(arg) {
        return "true or false".into();
    }
    if !possible.is_empty() {
        return format!("one of {}", possible.join(", "));
    }
    let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
        || matches!(arg.get_action(), ArgAction::Append);
    let kind = type_words(arg);
    if many {
        format!("{kind}, or an array of them")
    } else {
        kind.to_owned()
    }
}

fn type_words(arg: &Arg) -> &'static str {
    let id = arg.get_value_parser().type_id();
    let is = |t: TypeId| id == t;
    if is(TypeId::of::<Duration>()) {
        "a duration such as \"500ms\", \"10s\", \"5m\" or \"1h 30m\""
    } else if is(TypeId::of::<SocketAddr>()) {
        "an address and port such as \"127.0.0.1:9464\""
    } else if is(TypeId::of::<PathBuf>()) {
        "a path"
    } else if [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
    ]
    .into_iter()
    .any(is)
    {
        "a whole number (within the range the error names)"
    } else if is(TypeId::of::<f64>()) || is(TypeId::of::<f32>()) {
        "a number"
    } else {
        "a string"
    }
}

fn set_default(command: Command, long: &str, values: &[String]) -> Command {
    command
        .mut_args(|arg| {
            if arg.get_long() == Some(long) {
                arg.default_values(
                    values
                        .iter()
                        .map(OsStr::new)
                        .map(|v| clap::builder::OsStr::from(v.to_string_lossy().into_owned())),
                )
            } else {
                arg
            }
        })
        .mut_subcommands(|sub| set_default(sub, long, values))
}

/// What differs between a README's table of settings and `command`'s flags: the table with
/// the header `| flag | variable | file key | default | meaning |` in the section whose
/// heading starts with `section` (`## Configuration`). A flag without a row, a row without a
/// flag, or a row whose variable, key or default is not the flag's is one line each. The
/// daemons' tests call it, so that the documented settings are the real ones.
pub fn table_disagreements(
    readme: &str,
    section: &str,
    command: &Command,
    file_flag: &str,
) -> Vec<String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(section))
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = section
        .lines()
        .skip_while(|line| !line.starts_with("| flag | variable | file key |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect();
    let mut problems = Vec::new();
    if rows.is_empty() {
        problems.push("no settings table".to_owned());
    }
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long().filter(|l| !matches!(*l, "help" | "version")) else {
            continue;
        };
        let flag = format!("`--{long}`");
        let Some(row) = rows.iter().find(|row| row[0] == flag) else {
            problems.push(format!("no row for {flag}"));
            continue;
        };
        let env = arg.get_env().map(|e| format!("`{}`", e.to_string_lossy()));
        if env.as_deref() != row.get(1).map(String::as_str) {
            problems.push(format!(
                "{flag}: variable {:?}, the program has {env:?}",
                row.get(1)
            ));
        }
        let key = if long == file_flag {
            "—".to_owned()
        } else {
            format!("`{long}`")
        };
        if row.get(2) != Some(&key) {
            problems.push(format!("{flag}: file key {:?}, expected {key}", row.get(2)));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let cell = row.get(3).cloned().unwrap_or_default();
        if !defaults.is_empty() {
            let want = format!("`{}`", defaults.join(","));
            if !cell.starts_with(&want) {
                problems.push(format!("{flag}: default {cell:?}, the program has {want}"));
            }
        } else if cell.is_empty() {
            problems.push(format!("{flag}: the default cell is empty"));
        }
        if row.get(4).is_none_or(|m| m.is_empty()) {
            problems.push(format!("{flag}: no meaning"));
        }
    }
    for row in &rows {
        let known = command
            .get_arguments()
            .any(|arg| arg.get_long().is_some_and(|l| row[0] == format!("`--{l}`")));
        if !known {
            problems.push(format!("{} has a row but is not a flag", row[0]));
        }
    }
    problems
}

/// Whether `path` is where this spec looks by default.
pub fn is_default_path(spec: &FileSpec, path: &Path) -> bool {
    path == Path::new(spec.default_path)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use clap::{Args, FromArgMatches as _, Parser, Subcommand};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Option<Cmd>,
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        Run(RunArgs),
        Probe {
            #[arg(long, value_delimiter = ',')]
            require: Vec<String>,
        },
    }

    #[derive(Args, Debug, Clone)]
    struct RunArgs {
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        interval: Duration,
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1000))]
        summary_queue: u32,
        #[arg(long)]
        insecure: bool,
        #[arg(long, env = "HERD_NODE_NAME")]
        node_name: Option<String>,
        #[arg(long, value_enum, default_value = "auto")]
        target: Target,
    }

    #[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
    enum Target {
        Auto,
        Stderr,
    }

    const SPEC: FileSpec = FileSpec {
        flag: "config",
        env_prefix: "HERDTEST_",
        default_path: "/nonexistent/herd-test.toml",
    };

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("prog")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn parse(
        list: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(Cli, clap::ArgMatches, FileLayer), ConfigError> {
        let args = args(list);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (command, layer) = apply_file(Cli::command_for_test(), &args, &SPEC, |name| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        })?;
        let matches = command.try_get_matches_from(&args).unwrap();
        Ok((Cli::from_arg_matches(&matches).unwrap(), matches, layer))
    }

    impl Cli {
        fn command_for_test() -> Command {
            with_env_names(<Self as clap::CommandFactory>::command(), SPEC.env_prefix)
        }
    }

    #[test]
    fn every_argument_gets_a_variable_named_for_its_flag() {
        let command = Cli::command_for_test();
        let env = |long: &str| {
            command
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
        };
        assert_eq!(
            env("summary-queue").as_deref(),
            Some("HERDTEST_SUMMARY_QUEUE")
        );
        assert_eq!(env("config").as_deref(), Some("HERDTEST_CONFIG"));
        // A name given by hand is kept.
        assert_eq!(env("node-name").as_deref(), Some("HERD_NODE_NAME"));
        let probe = command.find_subcommand("probe").unwrap();
        let require = probe.get_arguments().find(|a| a.get_id() == "require");
        assert_eq!(
            require.and_then(|a| a.get_env()).map(|e| e.to_owned()),
            Some("HERDTEST_REQUIRE".into())
        );
    }

    #[test]
    fn the_file_sits_between_the_defaults_and_the_flags() {
        let f = file("interval = \"30s\"\nsummary-queue = 9\ninsecure = true\n");
        let path = f.path().to_str().unwrap();
        let (cli, matches, layer) = parse(&["--config", path], &[]).unwrap();
        assert_eq!(cli.run.interval, Duration::from_secs(30));
        assert_eq!(cli.run.summary_queue, 9);
        assert!(cli.run.insecure);
        assert_eq!(layer.path.as_deref(), Some(f.path()));
        let settings = effective(&Cli::command_for_test(), &matches, &layer, SPEC.flag);
        let interval = settings.iter().find(|s| s.key == "interval").unwrap();
        assert_eq!(interval.source, Source::File(f.path().to_owned()));

        // A flag beats the file, wherever it stands.
        let (cli, matches, _) =
            parse(&["--interval", "1m", &format!("--config={path}")], &[]).unwrap();
        assert_eq!(cli.run.interval, Duration::from_secs(60));
        let settings = effective(&Cli::command_for_test(), &matches, &layer, SPEC.flag);
        let interval = settings.iter().find(|s| s.key == "interval").unwrap();
        assert_eq!(interval.source, Source::Flag);
        let queue = settings.iter().find(|s| s.key == "summary-queue").unwrap();
        assert_eq!(queue.values, ["9"]);
    }

    #[test]
    fn the_file_is_found_through_its_variable_and_applies_to_subcommands() {
        let f = file("interval = \"2m\"\nrequire = [\"btf\", \"cgroup2\"]\n");
        let path = f.path().to_str().unwrap();
        let (cli, _, _) = parse(&["run"], &[("HERDTEST_CONFIG", path)]).unwrap();
        let Some(Cmd::Run(run)) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(run.interval, Duration::from_secs(120));
        let (cli, _, _) = parse(&["probe"], &[("HERDTEST_CONFIG", path)]).unwrap();
        let Some(Cmd::Probe { require }) = cli.command else {
            panic!("probe expected")
        };
        assert_eq!(require, ["btf", "cgroup2"]);
    }

    #[test]
    fn an_absent_default_file_means_defaults() {
        let (cli, matches, layer) = parse(&[], &[]).unwrap();
        assert_eq!(cli.run.interval, Duration::from_secs(10));
        assert_eq!(
            layer.absent_default.as_deref(),
            Some(Path::new(SPEC.default_path))
        );
        let settings = effective(&Cli::command_for_test(), &matches, &layer, SPEC.flag);
        let node = settings.iter().find(|s| s.key == "node-name").unwrap();
        assert_eq!(node.source, Source::Unset);
        let interval = settings.iter().find(|s| s.key == "interval").unwrap();
        assert_eq!(interval.source, Source::Default);
    }

    #[test]
    fn an_absent_named_file_stops_start_up() {
        let err = parse(&["--config", "/nonexistent/named.toml"], &[]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/named.toml"), "{err}");
    }

    #[test]
    fn an_unknown_key_names_the_key_the_file_and_the_keys() {
        let f = file("intervall = \"30s\"\n");
        let err = parse(&["--config", f.path().to_str().unwrap()], &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`intervall`"), "{text}");
        assert!(text.contains(f.path().to_str().unwrap()), "{text}");
        assert!(text.contains("interval, node-name, require"), "{text}");
    }

    #[test]
    fn a_bad_value_names_the_key_the_value_and_what_is_allowed() {
        for (line, wants) in [
            (
                "interval = \"often\"",
                &["interval = \"often\"", "a duration"][..],
            ),
            (
                "summary-queue = 5000",
                &["summary-queue = 5000", "1..=1000"],
            ),
            (
                "target = \"syslog\"",
                &["target = \"syslog\"", "one of auto, stderr"],
            ),
            (
                "insecure = \"yes\"",
                &["insecure = \"yes\"", "true or false"],
            ),
            ("interval = { s = 1 }", &["interval", "a duration"]),
        ] {
            let f = file(line);
            let err = parse(&["--config", f.path().to_str().unwrap()], &[]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(f.path().to_str().unwrap()), "{text}");
            for want in wants {
                assert!(text.contains(want), "{line}: {text} lacks {want}");
            }
        }
    }

    #[test]
    fn the_effective_configuration_reads_back_as_the_same_file() {
        let f =
            file("interval = \"30s\"\nsummary-queue = 9\ninsecure = true\ntarget = \"stderr\"\n");
        let (_, matches, layer) = parse(&["--config", f.path().to_str().unwrap()], &[]).unwrap();
        let settings = effective(&Cli::command_for_test(), &matches, &layer, SPEC.flag);
        let text = to_toml(&settings);
        let again = file(&text);
        let (cli, _, _) = parse(&["--config", again.path().to_str().unwrap()], &[]).unwrap();
        assert_eq!(cli.run.interval, Duration::from_secs(30));
        assert_eq!(cli.run.summary_queue, 9);
        assert!(cli.run.insecure);
        assert_eq!(cli.run.target, Target::Stderr);
    }

    #[test]
    fn the_flag_is_found_before_parsing() {
        assert_eq!(
            flag_value(&args(&["run", "--config", "a.toml"]), "config"),
            Some("a.toml".into())
        );
        assert_eq!(
            flag_value(&args(&["--config=b.toml", "x"]), "config"),
            Some("b.toml".into())
        );
        assert_eq!(flag_value(&args(&["--", "--config", "c"]), "config"), None);
        assert_eq!(flag_value(&args(&["--configure", "c"]), "config"), None);
    }
}
