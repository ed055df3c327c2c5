//! Fixtures for the eBPF signal tests: `herd-work` processes with a known effect, a loop
//! device, and tracefs. Each cleans up after itself on drop, pass or fail.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
};

use anyhow::Context as _;

/// A running `herd-work` process; killed on drop if it is still running.
pub struct Work {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Work {
    /// Starts `herd-work`, which joins `cgroups` (directories in any hierarchy) and then runs
    /// `args`; returns once it has joined them.
    pub fn start<I, S>(cgroups: &[&Path], args: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(crate::built_binary("herd-work")?);
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
            .context("starting herd-work")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut work = Self { child, stdout };
        let ready = work.line()?;
        anyhow::ensure!(
            ready == "ready",
            "herd-work said {ready:?} instead of ready"
        );
        Ok(work)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the process prints.
    pub fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        anyhow::ensure!(!line.is_empty(), "herd-work exited before printing a line");
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
            anyhow::bail!("herd-work failed: {status}\n{stderr}");
        }
        Ok(())
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loop device over a sparse file, detached and deleted on drop.
pub struct LoopDevice {
    device: PathBuf,
    backing: PathBuf,
}

impl LoopDevice {
    /// Makes a `size`-byte backing file at `backing` and attaches a free loop device to it.
    pub fn new(backing: &Path, size: u64) -> anyhow::Result<Self> {
        fs::File::create(backing)
            .and_then(|file| file.set_len(size))
            .with_context(|| format!("creating {}", backing.display()))?;
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .context("running losetup (util-linux)")?;
        if !output.status.success() {
            let _ = fs::remove_file(backing);
            anyhow::bail!(
                "losetup failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let device = PathBuf::from(String::from_utf8(output.stdout)?.trim());
        Ok(Self {
            device,
            backing: backing.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.device
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        match Command::new("losetup").arg("-d").arg(&self.device).status() {
            Ok(status) if status.success() => {}
            other => eprintln!("cannot detach {}: {other:?}", self.device.display()),
        }
        let _ = fs::remove_file(&self.backing);
    }
}

/// tracefs at /sys/kernel/tracing, which the tracepoint programs attach through: mounted
/// here if nothing had mounted it, and then unmounted on drop.
pub struct Tracefs {
    mounted_here: bool,
}

const TRACEFS: &str = "/sys/kernel/tracing";

impl Tracefs {
    pub fn ensure() -> anyhow::Result<Self> {
        let mounted = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .any(|dir| Path::new(dir).join("events").is_dir());
        if mounted {
            return Ok(Self {
                mounted_here: false,
            });
        }
        let status = Command::new("mount")
            .args(["-t", "tracefs", "nodev", TRACEFS])
            .status()
            .context("running mount")?;
        anyhow::ensure!(status.success(), "mounting tracefs at {TRACEFS}: {status}");
        Ok(Self { mounted_here: true })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = Command::new("umount").arg(TRACEFS).status();
        }
    }
}

/// A small tmpfs mounted on a fresh directory, for files that must run out of room;
/// unmounted and removed on drop.
pub struct SmallTmpfs {
    dir: PathBuf,
}

impl SmallTmpfs {
    pub fn new(name: &str, size: u64) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("herd-test-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .context("running mount")?;
        if !status.success() {
            let _ = fs::remove_dir(&dir);
            anyhow::bail!("mounting a tmpfs at {}: {status}", dir.display());
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        match Command::new("umount").arg(&self.dir).status() {
            Ok(status) if status.success() => {
                let _ = fs::remove_dir(&self.dir);
            }
            other => eprintln!("cannot unmount {}: {other:?}", self.dir.display()),
        }
    }
}
