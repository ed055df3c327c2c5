//! What can go wrong while standing up, using or tearing down the lab.

use std::{io, path::PathBuf, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root: it installs packages, runs containerd and makes cgroups")]
    NotRoot,
    #[error("cannot start `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error(
        "no v1 pids hierarchy is mounted below /sys/fs/cgroup, so a pod's pids.max ({0}) \
         cannot be set"
    )]
    NoPidsHierarchy(u32),
    #[error("invalid lab spec: {0}")]
    Spec(String),
    #[error("cannot parse lab spec {path}: {source}")]
    SpecFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cannot connect to the lab's containerd at {socket}: {source}")]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("CRI {call} failed: {status}")]
    Cri {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("{what} did not happen within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("a lab is already up (containerd answers at {0}); run `cargo xtask lab down` first")]
    AlreadyUp(PathBuf),
    #[error("no lab is up (nothing answers at {0}); run `cargo xtask lab up` first")]
    NotUp(PathBuf),
    #[error("{0} cannot go into the image: `ldd` says {1}")]
    Library(PathBuf, String),
    #[error("pod sandbox {0} is not listed right after it started")]
    PodMissing(String),
    #[error("the lab left things behind:\n{0}")]
    Leftovers(String),
}

impl LabError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn cri(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Cri {
            call,
            status: Box::new(status),
        }
    }
}
