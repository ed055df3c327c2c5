//! Spawning `herd-resource-load`, a process that joins given cgroups and then loads one
//! resource (disk, network, CPU, memory) with a known effect on one eBPF signal. Killed on
//! drop, pass or fail.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::Path,
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
};

use anyhow::Context as _;

/// A running `herd-resource-load` process; killed on drop if it is still running.
pub struct ResourceLoad {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl ResourceLoad {
    /// Starts `herd-resource-load`, which joins `cgroups` (directories in any hierarchy) and then runs
    /// `args`; returns once it has joined them.
    pub fn start<I, S>(cgroups: &[&Path], args: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(crate::built_binary("herd-resource-load")?);
        for cgroup in cgroups {
            command.arg("--join").arg(cgroup);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Kept for `finish` to report; a workload that is meant to fail stays quiet.
            .stderr(Stdio::piped())
            .spawn()
            .context("starting herd-resource-load")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut load = Self { child, stdout };
        let ready = load.line()?;
        anyhow::ensure!(
            ready == "ready",
            "herd-resource-load said {ready:?} instead of ready"
        );
        Ok(load)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the process prints.
    pub fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        anyhow::ensure!(
            !line.is_empty(),
            "herd-resource-load exited before printing a line"
        );
        Ok(line.trim_end().to_string())
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        Ok(self.child.wait()?)
    }

    /// Waits for the process and fails, with what it printed on stderr, unless it
    /// succeeded.
    pub fn finish(mut self) -> anyhow::Result<()> {
        let status = self.wait()?;
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            anyhow::bail!("herd-resource-load failed: {status}\n{stderr}");
        }
        Ok(())
    }
}

impl Drop for ResourceLoad {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
