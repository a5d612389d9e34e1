//! Clone into namespaces, build the root, drop privileges, exec.
//! All `unsafe` of the crate lives here; every block says why it is sound.
#![allow(unsafe_code)]

use crate::cpulist::CpuList;
use crate::spec::{MemPolicy, Mount, Network, Rootfs};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;

/// Everything the container needs to start one run.
#[derive(Debug)]
pub struct ContainerConfig {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub hostname: String,
    pub rootfs: Rootfs,
    pub network: Network,
    pub mounts: Vec<Mount>,
    /// (host directory, target inside) bound read-write.
    pub writable: Vec<(PathBuf, PathBuf)>,
    pub user: Option<(u32, u32)>,
    pub capabilities: Vec<String>,
    /// (resource name like "nofile", value) soft = hard.
    pub rlimits: Vec<(String, u64)>,
    /// set_mempolicy for the job.
    pub mempolicy: Option<(MemPolicy, CpuList)>,
    /// Job's stdin (None = /dev/null), stdout and stderr.
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Why a container did not start: the step and errno.
#[derive(Debug, Clone, thiserror::Error)]
#[error("container setup failed at {step}: {message}")]
pub struct SetupError {
    pub step: String,
    pub message: String,
}

/// A started container: its init (pid 1 inside) as seen from the host.
#[derive(Debug)]
pub struct Container {
    pub pid: i32,
    /// pidfd of init: readable when it exits.
    pub pidfd: OwnedFd,
}

/// Starts the container. `place` is called with init's host pid while init
/// waits, to put it in the run's cgroups before anything else happens; on
/// v2 `cgroup_dir` (an open cgroup directory) lets clone3 start it there.
pub fn spawn(
    cfg: ContainerConfig,
    cgroup_dir: Option<BorrowedFd<'_>>,
    place: &mut dyn FnMut(i32) -> std::io::Result<()>,
) -> Result<Container, SetupError> {
    let _ = (cfg, cgroup_dir, place);
    todo!("container::spawn")
}

/// How the job ended, as init saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobStatus {
    /// Exit code when the job exited.
    pub exit_code: Option<i32>,
    /// Signal number when the job was killed by a signal.
    pub signal: Option<i32>,
}

impl Container {
    /// Reaps init (call once its pidfd is readable) and returns the job's status.
    pub fn wait(self) -> JobStatus {
        todo!("Container::wait")
    }
}
