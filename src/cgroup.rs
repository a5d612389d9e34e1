//! One interface over cgroup v1 and v2 (a closed enum): create, limit,
//! attach, read, kill, remove. Every function takes the cgroupfs root
//! (through `Hierarchy`) so tests can use fake trees.

use crate::account::Usage;
use crate::cpulist::CpuList;
use std::path::{Path, PathBuf};

/// The host's cgroup setup, detected once from the mount table.
#[derive(Debug, Clone, PartialEq)]
pub enum Hierarchy {
    /// Unified hierarchy at `root`.
    V2 { root: PathBuf },
    /// Per-controller mounts (controller name -> mount point); covers hybrid hosts too.
    V1 { mounts: Vec<(String, PathBuf)> },
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Io(#[from] crate::fsx::PathError),
    #[error("{0}")]
    Setup(String),
}

/// Limits applied to a run's cgroup before any task joins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub cpus: CpuList,
    pub mems: CpuList,
    pub memory: Option<u64>,
    /// CFS quota in CPUs.
    pub cpu_quota: Option<f64>,
    pub pids: u64,
    pub io: Vec<IoThrottle>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IoThrottle {
    pub major: u32,
    pub minor: u32,
    pub read_bps: Option<u64>,
    pub write_bps: Option<u64>,
    pub read_iops: Option<u64>,
    pub write_iops: Option<u64>,
}

/// Parses /proc/self/mountinfo text into the setup it shows.
pub fn detect(mountinfo: &str) -> Result<Hierarchy, CgroupError> {
    let _ = mountinfo;
    todo!("cgroup::detect")
}

/// The running host's setup.
pub fn detect_host() -> Result<Hierarchy, CgroupError> {
    todo!("cgroup::detect_host")
}

/// A run's cgroup (on v1: one directory per controller it uses).
#[derive(Debug)]
pub struct RunCgroup {
    _private: (),
}

impl RunCgroup {
    /// Creates `<base>/<batch>/<run>` with `limits` applied.
    pub fn create(
        h: &Hierarchy,
        base: &str,
        batch: &str,
        run: &str,
        limits: &Limits,
    ) -> Result<RunCgroup, CgroupError> {
        let _ = (h, base, batch, run, limits);
        todo!("RunCgroup::create")
    }
    /// Moves `pid` into every directory of this cgroup.
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        let _ = pid;
        todo!()
    }
    /// On v2, the directory to open for clone3(CLONE_INTO_CGROUP).
    pub fn v2_dir(&self) -> Option<&Path> {
        todo!()
    }
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        todo!()
    }
    /// Pids of every task in it.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        todo!()
    }
    /// Kills every task and waits until it is empty.
    pub fn kill(&self) -> Result<(), CgroupError> {
        todo!()
    }
    /// Removes it (with retries while the kernel lets go of dying tasks).
    pub fn remove(self) -> Result<(), CgroupError> {
        todo!()
    }
}
