//! The effective configuration: every setting, its value and the layer it came from, and
//! that as TOML a program reads back as its file.

use std::{any::TypeId, fmt::Write as _, path::PathBuf};

use clap::{ArgAction, ArgMatches, Command, parser::ValueSource};

use super::{FileLayer, is_switch, settable};

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A flag on the command line.
    Flag,
    /// An environment variable, by name.
    Env(String),
    /// The configuration file.
    File(PathBuf),
    /// The built-in default.
    Default,
    /// Not set anywhere: the feature it controls is off.
    Unset,
}

/// One setting as the program will use it.
#[derive(Clone, Debug)]
pub struct Setting {
    /// The long flag name, which is also the file's key.
    pub key: String,
    /// Its environment variable.
    pub env: Option<String>,
    /// Its values as given (empty when unset).
    pub values: Vec<String>,
    /// Where they came from.
    pub source: Source,
    /// Whether it is a switch (`true` or `false`).
    pub switch: bool,
    /// Whether it is a number (printed bare in TOML).
    pub number: bool,
    /// Whether it takes several values (printed as an array).
    pub many: bool,
}

/// Every setting of `command` (the flags with long names, but the file's own flag), as
/// `matches` (clap's result for that command) has them.
pub fn effective(
    command: &Command,
    matches: &ArgMatches,
    file: &FileLayer,
    file_flag: &str,
) -> Vec<Setting> {
    command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long().filter(|long| settable(long, file_flag))?;
            let id = arg.get_id().as_str();
            let values: Vec<String> = matches
                .get_raw(id)
                .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env(env.clone().unwrap_or_default()),
                Some(ValueSource::DefaultValue) if file.keys.contains(long) => {
                    Source::File(file.path.clone().unwrap_or_default())
                }
                Some(ValueSource::DefaultValue) if !values.is_empty() => Source::Default,
                _ => Source::Unset,
            };
            let id_of = arg.get_value_parser().type_id();
            let number = [
                TypeId::of::<u8>(),
                TypeId::of::<u16>(),
                TypeId::of::<u32>(),
                TypeId::of::<u64>(),
                TypeId::of::<usize>(),
                TypeId::of::<i32>(),
                TypeId::of::<i64>(),
                TypeId::of::<f32>(),
                TypeId::of::<f64>(),
            ]
            .into_iter()
            .any(|t| id_of == t);
            Some(Setting {
                key: long.to_owned(),
                env,
                values,
                source,
                switch: is_switch(arg),
                number,
                many: matches!(arg.get_action(), ArgAction::Append)
                    || arg.get_num_args().is_some_and(|n| n.max_values() > 1),
            })
        })
        .collect()
}

/// The settings as TOML, one line each with where its value came from; an unset setting is
/// a comment. Read back as a file, it gives the same configuration.
pub fn to_toml(settings: &[Setting]) -> String {
    let mut out = String::new();
    for setting in settings {
        let origin = match &setting.source {
            Source::Flag => "flag".to_owned(),
            Source::Env(name) => format!("environment {name}"),
            Source::File(path) => format!("file {}", path.display()),
            Source::Default => "default".to_owned(),
            Source::Unset => {
                let env = setting
                    .env
                    .as_deref()
                    .map(|e| format!(", {e}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "# {} = …  (unset: --{}{env})",
                    setting.key, setting.key
                );
                continue;
            }
        };
        let value = |v: &String| {
            // A number-typed setting may take text with a unit (`64MiB`): that is a string
            // in TOML, which the file reads back the same.
            if setting.switch || (setting.number && v.parse::<f64>().is_ok()) {
                v.clone()
            } else {
                toml::Value::String(v.clone()).to_string()
            }
        };
        let rendered = if setting.many {
            let items: Vec<String> = setting.values.iter().map(value).collect();
            format!("[{}]", items.join(", "))
        } else {
            setting.values.first().map(value).unwrap_or_default()
        };
        let _ = writeln!(out, "{} = {rendered}  # {origin}", setting.key);
    }
    out
}
