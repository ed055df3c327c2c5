//! Kernel fixtures for the eBPF signal tests: a loop device, tracefs and a small tmpfs. Each
//! cleans up after itself on drop, pass or fail.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

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
