//! Running host programs loudly: every step and command is printed before it runs, so that
//! a person watching `lab up` sees what it does to the machine.

use std::process::{Command, Stdio};

use super::LabError;

/// Announces a step.
pub fn step(what: impl AsRef<str>) {
    eprintln!("==> lab: {}", what.as_ref());
}

/// Runs `command` after printing it; its stdout on success.
pub fn run(command: &mut Command) -> Result<String, LabError> {
    eprintln!("    $ {}", show(command));
    output(command)
}

/// Runs `command` without printing it; its stdout on success.
pub fn output(command: &mut Command) -> Result<String, LabError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: show(command),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: show(command),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn show(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
