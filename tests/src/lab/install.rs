//! Installs Debian packages, only those that are missing: the lab's, and (through
//! `cargo xtask setup`) what building Herd needs.

use std::process::Command;

use super::{LabError, cmd};

/// Announces a package step, without the lab's prefix: `cargo xtask setup` and `bench` use
/// it too.
fn step(what: impl AsRef<str>) {
    eprintln!("==> {}", what.as_ref());
}

/// containerd and its runtime and network plugins; busybox, stress-ng and curl go into the
/// tools image; gcc builds the static pause binary; iproute2 and iptables manage and check
/// the lab's network.
pub const PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "stress-ng",
    "busybox-static",
    "curl",
    "gcc",
    "libc6-dev",
    "iproute2",
    "iptables",
];

pub fn ensure_packages() -> Result<(), LabError> {
    ensure(PACKAGES)
}

/// Installs those of `packages` that are not installed yet, saying which.
pub fn ensure(packages: &[&str]) -> Result<(), LabError> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        step(format!("packages present: {}", packages.join(" ")));
        return Ok(());
    }
    step(format!("installing packages: {}", missing.join(" ")));
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}
