//! The lab: a real container node on this machine, made by the project. Debian's
//! containerd, runc and CNI plugins run privately (own root, state, socket, bridge); images
//! are built locally and imported; pods are created over CRI the way a kubelet creates
//! them, with faults injected into chosen replicas. `down` leaves nothing behind.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd_tests::lab::LabError> {
//! use herd_tests::lab::{Fault, FaultKind, Lab, LabSpec, Workload};
//!
//! let spec = LabSpec::new().workload(
//!     Workload::deployment("web")
//!         .replicas(3)
//!         .cpu_millis(200)
//!         .memory_mib(64)
//!         .fault(Fault::new(1, FaultKind::CpuHog).for_secs(30)),
//! );
//! let lab = Lab::up(&spec).await?; // torn down on drop, pass or fail
//! for pod in lab.pods().await? {
//!     println!("{} {:?}", pod.name, pod.cgroup_parent);
//! }
//! lab.down().await?;
//! # Ok(())
//! # }
//! ```

mod cgroups;
mod cleanup;
pub mod cluster;
mod cmd;
mod containerd;
mod cri;
mod error;
mod fault;
pub mod herd_images;
mod images;
pub mod install;
pub mod kubelet;
mod mounts;
mod oci;
mod paths;
mod pod;
mod process;
mod spec;

use std::{path::PathBuf, time::Duration};

use herd_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

pub use cgroups::Qos;
pub use cleanup::Leftovers;
pub use error::LabError;
pub use herd_images::HerdImage;
pub use install::{PACKAGES, ensure as ensure_packages};
pub use paths::{BRIDGE, LabPaths, NETWORK, NodeLayout, PAUSE_IMAGE, SUBNET, TOOLS_IMAGE};
pub use pod::{
    APP_NAME, CONTAINER_NAME, CONTROLLER_REVISION_HASH, Container, POD_NAME, POD_NAMESPACE,
    POD_TEMPLATE_HASH, POD_UID, Pod,
};
pub use spec::{FORK_STORM_PIDS_MAX, Fault, FaultKind, Kind, LabSpec, Load, Workload};

use cmd::step;

/// How long containerd may take to answer after it starts.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running lab. One made by [`Lab::up`] is taken down when dropped, unless
/// [`Lab::keep`] hands it over to the machine.
pub struct Lab {
    paths: LabPaths,
    runtime: RuntimeServiceClient<Channel>,
    guard: TeardownGuard,
}

impl Lab {
    /// Installs what is missing, starts containerd, builds and imports the images and
    /// runs every replica of `spec`. Whatever fails on the way is taken down again.
    pub async fn up(spec: &LabSpec) -> Result<Self, LabError> {
        let paths = LabPaths::default();
        require_root()?;
        spec.validate()?;
        if containerd::running_pid(&paths).is_some() {
            return Err(LabError::AlreadyUp(paths.socket()));
        }
        if !cleanup::leftovers(&paths).is_clean() {
            step("an earlier lab left things behind; cleaning up first");
            cleanup::teardown(&paths).await?;
        }
        install::ensure_packages()?;

        // From here on a failure, or a panic in the caller, takes the lab down.
        let guard = TeardownGuard {
            paths: Some(paths.clone()),
        };
        containerd::write_config(&paths)?;
        containerd::start(&paths)?;
        let runtime = cri::wait_ready(&paths, READY_WITHIN).await?;
        images::build_and_import(&paths)?;
        let mut lab = Self {
            paths,
            runtime,
            guard,
        };
        for workload in &spec.workloads {
            for replica in 0..workload.replicas {
                lab.add_pod(workload, replica).await?;
            }
        }
        step(format!(
            "lab is up: containerd at {}",
            lab.paths.socket().display()
        ));
        Ok(lab)
    }

    /// The lab that is already running, e.g. one `cargo xtask lab up` started. Dropping it
    /// leaves the lab running.
    pub async fn attach() -> Result<Self, LabError> {
        let paths = LabPaths::default();
        if containerd::running_pid(&paths).is_none() {
            return Err(LabError::NotUp(paths.socket()));
        }
        let runtime = cri::wait_ready(&paths, Duration::from_secs(5)).await?;
        Ok(Self {
            paths,
            runtime,
            guard: TeardownGuard { paths: None },
        })
    }

    /// containerd's CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.paths.socket()
    }

    pub fn paths(&self) -> &LabPaths {
        &self.paths
    }

    /// A CRI runtime client of the lab's containerd.
    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// Imports an OCI image archive (e.g. one of [`HerdImage`]'s) into the lab's containerd.
    pub fn import_image(&self, archive: &std::path::Path) -> Result<(), LabError> {
        images::import(&self.paths, archive)
    }

    /// All pods and containers, as CRI lists them, with their cgroups.
    pub async fn pods(&self) -> Result<Vec<Pod>, LabError> {
        pod::list(&mut self.runtime.clone()).await
    }

    /// Runs one more replica of `workload`, as replica index `replica` (which picks its
    /// faults and, for a StatefulSet, its name).
    pub async fn add_pod(&mut self, workload: &Workload, replica: u32) -> Result<Pod, LabError> {
        step(format!(
            "running {}/{} replica {replica}",
            workload.namespace, workload.name
        ));
        let sandbox_id = pod::run(&mut self.runtime, &self.paths, workload, replica).await?;
        self.pods()
            .await?
            .into_iter()
            .find(|pod| pod.sandbox_id == sandbox_id)
            .ok_or(LabError::PodMissing(sandbox_id))
    }

    /// Runs one more replica of `workload` and returns its sandbox id, without listing the
    /// lab's pods afterwards; several may run at once (churn).
    pub async fn start_pod(&self, workload: &Workload, replica: u32) -> Result<String, LabError> {
        pod::run(&mut self.runtime.clone(), &self.paths, workload, replica).await
    }

    /// Stops and removes the pod of `sandbox_id` (pod uid `uid`) and its pod cgroup; several
    /// may run at once.
    pub async fn stop_pod(&self, sandbox_id: &str, uid: &str) -> Result<(), LabError> {
        pod::remove(&mut self.runtime.clone(), &self.paths, sandbox_id, uid).await
    }

    /// Kills containerd with SIGKILL, as a crash would; its pods run on under their shims.
    pub fn kill_runtime(&self) -> Result<(), LabError> {
        let pid = containerd::running_pid(&self.paths)
            .ok_or_else(|| LabError::NotUp(self.paths.socket()))?;
        step(format!("killing containerd (pid {pid})"));
        process::kill(pid);
        Ok(())
    }

    /// Starts containerd again after [`Lab::kill_runtime`] and waits until it answers.
    pub async fn restart_runtime(&mut self) -> Result<(), LabError> {
        containerd::start(&self.paths)?;
        self.runtime = cri::wait_ready(&self.paths, READY_WITHIN).await?;
        Ok(())
    }

    /// Stops and removes a pod, and its pod cgroup, as the kubelet does on deletion.
    pub async fn remove_pod(&mut self, pod: &Pod) -> Result<(), LabError> {
        step(format!("removing pod {}/{}", pod.namespace, pod.name));
        pod::remove(&mut self.runtime, &self.paths, &pod.sandbox_id, &pod.uid).await
    }

    /// Leaves the lab running after this value is gone (`cargo xtask lab up`).
    pub fn keep(mut self) {
        self.guard.paths = None;
    }

    /// Takes the lab down and checks that nothing is left.
    pub async fn down(mut self) -> Result<(), LabError> {
        self.guard.paths = None;
        cleanup::teardown(&self.paths).await
    }
}

/// Takes down the lab, running or not, or whatever a crashed `up` left.
pub async fn down() -> Result<(), LabError> {
    require_root()?;
    cleanup::teardown(&LabPaths::default()).await
}

/// Runs a lab test's body on a runtime of its own; the lab goes down afterwards pass or fail,
/// unless the body failed because it found a lab up already, which is someone else's.
pub fn run_test(body: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(body);
    let taken = result
        .as_ref()
        .is_err_and(|err| matches!(err.downcast_ref::<LabError>(), Some(LabError::AlreadyUp(_))));
    let down = if taken {
        Ok(())
    } else {
        runtime.block_on(down())
    };
    result?;
    Ok(down?)
}

/// What the lab left on this machine; empty when clean.
pub fn leftovers() -> Leftovers {
    cleanup::leftovers(&LabPaths::default())
}

/// Takes the lab down when dropped, even while a test panics. The teardown runs on a
/// thread of its own so that it works inside or outside an async runtime.
struct TeardownGuard {
    paths: Option<LabPaths>,
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        let Some(paths) = self.paths.take() else {
            return;
        };
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread tokio runtime");
            runtime.block_on(cleanup::teardown(&paths))
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("lab teardown: {err}"),
            Err(_) => eprintln!("lab teardown panicked"),
        }
    }
}

fn require_root() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}
