//! Spawning `herd-syscall-load`, a process that makes an exact number of syscalls on cue.

use std::{
    fs,
    io::Write as _,
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

/// Path of the `herd-syscall-load` binary, built by cargo beside the test binaries.
pub fn binary() -> anyhow::Result<PathBuf> {
    crate::built_binary("herd-syscall-load")
}

/// Waits until the process is blocked in `read` (syscall 0), so that its start-up syscalls
/// are behind it before it is moved into a cgroup.
pub fn wait_until_blocked_in_read(pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let path = format!("/proc/{pid}/syscall");
    while Instant::now() < deadline {
        if fs::read_to_string(&path)?.starts_with("0 ") {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(5));
    }
    anyhow::bail!("pid {pid} did not block in read within 10 s")
}

/// A `herd-syscall-load` process that waits for its cue before making its syscalls.
pub struct CountedLoad {
    child: Child,
    cue: Option<ChildStdin>,
}

impl CountedLoad {
    /// Starts a process that will make `calls` successful and `failures` failing syscalls
    /// once cued, and waits blocked in `read` until then.
    pub fn spawn(calls: u64, failures: u64) -> anyhow::Result<Self> {
        let mut child = Command::new(binary()?)
            .args(["counted", "--calls", &calls.to_string()])
            .args(["--failures", &failures.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting herd-syscall-load")?;
        let cue = child.stdin.take();
        Ok(Self { child, cue })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the process make its syscalls and waits for it to exit.
    pub fn cue_and_wait(mut self) -> anyhow::Result<()> {
        let mut cue = self.cue.take().context("cued twice")?;
        cue.write_all(b"go\n")?;
        drop(cue);
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "herd-syscall-load failed: {status}");
        Ok(())
    }
}

impl Drop for CountedLoad {
    fn drop(&mut self) {
        // Only reached with the child still running when a test failed before its cue.
        if self.cue.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
