//! One interface over cgroup v1 and v2 (a closed enum): create, limit,
//! attach, read, kill, remove. Every function takes the cgroupfs root
//! (through `Hierarchy`) so tests can use fake trees.
//!
//! Layout: `<parent>/<base>/<batch>/<run>`, where `<parent>` is the
//! hierarchy root, or on a delegated v2 subtree the cgroup packrun was
//! started in (see `Hierarchy::V2::parent`).

use crate::account::{self, Usage};
use crate::cpulist::CpuList;
use crate::fsx::{self, Context, PathError};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cleanup;
mod delegate;
pub mod devices;
mod v1;
mod v2;

pub use cleanup::{cleanup_batch, list_batches, remove_batch};
use cleanup::{kill_dirs, procs_of, remove_dirs, signal_kill, wait_empty};
pub use delegate::{
    detect, detect_host, own_v2_cgroup, prepare_v2_parent, step_cgroup_base_v1, RunsBase,
};
use v1::fill_v1_cpuset;
use v2::enable_v2_controllers;

/// The host's cgroup setup, detected once from the mount table.
#[derive(Debug, Clone, PartialEq)]
pub enum Hierarchy {
    /// Unified hierarchy mounted at `root`; packrun's groups go below
    /// `root/parent` (`parent` is "" unless packrun runs in a delegated subtree).
    V2 { root: PathBuf, parent: PathBuf },
    /// Per-controller mounts (controller name -> mount point); covers hybrid
    /// hosts (v1 controllers plus a cgroup2 mount holding none of them) too.
    V1 { mounts: Vec<(String, PathBuf)> },
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Io(#[from] PathError),
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
    /// Character devices (major, minor) its tasks may not open: other
    /// runs' GPUs (see `devices`). On v2 applied only as root.
    pub deny_devices: Vec<(u32, u32)>,
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

/// The v1 controllers a run uses. cpu and cpuacct are often co-mounted;
/// directories are de-duplicated by path.
///
/// No freezer: killing a run needs no freeze. Every run has its own pid
/// namespace and its seccomp filter forbids setns, unshare and clone with
/// namespace flags, so every task of the run lives in that namespace, and
/// SIGKILL to its init kills them all at once (zap_pid_ns_processes; no
/// fork succeeds in a dying namespace). The freezer cost a group per run
/// and, on each freeze, static-key text patching (IPIs to every CPU).
/// `devices` is joined only by runs with devices to deny.
const V1_CONTROLLERS: [&str; 7] = [
    "cpuset", "cpu", "cpuacct", "memory", "pids", "blkio", "devices",
];
/// The v1 controllers without which packrun cannot measure or limit.
const V1_REQUIRED: [&str; 4] = ["cpuset", "cpuacct", "memory", "pids"];
/// The v2 controllers enabled for packrun's subtree (those the parent offers).
const V2_CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

impl Hierarchy {
    /// The directories of `<base>/<rel>` in every hierarchy packrun uses
    /// (on v1 one per mount, de-duplicated for co-mounted controllers).
    fn dirs(&self, base: &str, rel: &Path) -> Vec<PathBuf> {
        self.dirs_for(base, rel, |_| true)
    }

    /// Like `dirs`, on v1 only in the hierarchies with a controller that
    /// `needed` names.
    fn dirs_for(&self, base: &str, rel: &Path, needed: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2 { root, parent } => vec![root.join(parent).join(base).join(rel)],
            Hierarchy::V1 { mounts } => {
                let mut v: Vec<PathBuf> = Vec::new();
                for (c, m) in mounts {
                    let d = m.join(base).join(rel);
                    if needed(c) && !v.contains(&d) {
                        v.push(d);
                    }
                }
                v
            }
        }
    }

    fn v1_mount(&self, controller: &str) -> Option<&Path> {
        match self {
            Hierarchy::V1 { mounts } => mounts
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, p)| p.as_path()),
            Hierarchy::V2 { .. } => None,
        }
    }

    pub fn version(&self) -> u8 {
        match self {
            Hierarchy::V1 { .. } => 1,
            Hierarchy::V2 { .. } => 2,
        }
    }
}

/// Creates `dir` (and missing parents below `top`) the way each version needs.
fn ensure_dir(h: &Hierarchy, top: &Path, dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        if let Some(p) = dir.parent() {
            if p != top && p.starts_with(top) {
                ensure_dir(h, top, p)?;
            }
        }
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            // Another packrun made it a moment ago.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(PathError::new("create cgroup", dir, e).into()),
        }
    }
    match h {
        Hierarchy::V1 { .. } => fill_v1_cpuset(top, dir),
        Hierarchy::V2 { .. } => {
            // "No internal processes": only groups without tasks hand
            // controllers to children; ours never hold tasks above the runs.
            enable_v2_controllers(dir)
        }
    }
}

/// Creates `<base>/<batch>` (controllers enabled on v2) once per batch, so
/// that creating a run's group is a single mkdir per hierarchy.
pub fn prepare_batch(h: &Hierarchy, base: &str, batch: &str) -> Result<(), CgroupError> {
    for d in h.dirs(base, Path::new(batch)) {
        let base_dir = d.parent().unwrap_or(&d).to_path_buf();
        let top = base_dir.parent().unwrap_or(&base_dir).to_path_buf();
        ensure_dir(h, &top, &base_dir)?;
        ensure_dir(h, &top, &d)?;
        // v1: socket counting (see RunCgroup::apply) turned on in the
        // batch's group as well, unlimited, holds the kernel's switch for it
        // on while the batch runs, rather than flipping it (a code patch)
        // on and off with every run's group. Best effort.
        let _ = fsx::write_if_present(d.join("memory.kmem.tcp.limit_in_bytes"), "-1");
    }
    Ok(())
}

/// A run's cgroup (on v1: one directory per controller mount it uses).
#[derive(Debug)]
pub struct RunCgroup {
    h: Hierarchy,
    dirs: Vec<PathBuf>,
    removed: bool,
    /// Sampled maxima where the kernel keeps no peak (v1 pids, old v2 memory).
    pids_seen: Cell<u64>,
    memory_seen: Cell<u64>,
    sampled: Cell<bool>,
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
        let rel = Path::new(batch).join(run);
        // On v1 a run joins the hierarchies it needs: `cpu` only for a quota
        // (cpuacct counts the time) and `blkio` only for I/O throttles (v1's
        // blkio counters miss direct and buffered I/O that init's rusage
        // counts). Each hierarchy less is a mkdir, a join and an rmdir less.
        let needed = |c: &str| match c {
            "cpu" => limits.cpu_quota.is_some(),
            "blkio" => !limits.io.is_empty(),
            "devices" => !limits.deny_devices.is_empty(),
            _ => true,
        };
        let dirs = h.dirs_for(base, &rel, needed);
        let tops: Vec<PathBuf> = h
            .dirs_for(base, Path::new(""), needed)
            .iter()
            .map(|d| d.parent().unwrap_or(d).to_path_buf())
            .collect();
        let mut cg = RunCgroup {
            h: h.clone(),
            dirs: Vec::new(),
            removed: false,
            pids_seen: Cell::new(0),
            memory_seen: Cell::new(0),
            sampled: Cell::new(false),
        };
        for (d, top) in dirs.iter().zip(&tops) {
            let mut made = std::fs::create_dir(d);
            if made
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                // The batch's (or the base's) group is not there yet.
                if let Some(parent) = d.parent() {
                    ensure_dir(h, top, parent)?;
                }
                made = std::fs::create_dir(d);
            }
            match made {
                Ok(()) => {}
                // A leftover of a crashed run with the same key: reuse after emptying it.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(PathError::new("create cgroup", d, e).into()),
            }
            // Registered at once so that Drop removes what was made if a later step fails.
            cg.dirs.push(d.clone());
        }
        cg.apply(limits)?;
        Ok(cg)
    }

    fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        match &self.h {
            Hierarchy::V2 { .. } => self.dirs.first().cloned(),
            Hierarchy::V1 { .. } => {
                let m = self.h.v1_mount(controller)?;
                self.dirs.iter().find(|d| d.starts_with(m)).cloned()
            }
        }
    }

    fn apply(&self, l: &Limits) -> Result<(), CgroupError> {
        let cs = self.dir_of("cpuset");
        // cpuset.cpus and .mems must be set before the first task joins (v1 refuses tasks otherwise).
        if let Some(d) = &cs {
            if !l.cpus.is_empty() {
                fsx::write(d.join("cpuset.cpus"), l.cpus.to_string())?;
            }
            if !l.mems.is_empty() {
                fsx::write(d.join("cpuset.mems"), l.mems.to_string())?;
            }
        }
        match &self.h {
            Hierarchy::V1 { .. } => v1::apply(self, l)?,
            Hierarchy::V2 { .. } => v2::apply(&self.dirs[0], l)?,
        }
        Ok(())
    }

    /// Moves `pid` into every directory of this cgroup.
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            fsx::write(d.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// On v1, the `tasks` file of every directory, for a task to join by
    /// writing "0" (see container::ContainerConfig::join_tasks).
    pub fn v1_tasks_files(&self) -> Vec<PathBuf> {
        match self.h {
            Hierarchy::V1 { .. } => self.dirs.iter().map(|d| d.join("tasks")).collect(),
            Hierarchy::V2 { .. } => Vec::new(),
        }
    }

    /// On v2, whether `pid` is in this group already (clone3 with
    /// CLONE_INTO_CGROUP put it there, unless the kernel lacked clone3).
    pub fn holds(&self, pid: i32) -> bool {
        let Hierarchy::V2 { root, .. } = &self.h else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return false;
        };
        let Some(own) = own_v2_cgroup(&text) else {
            return false;
        };
        self.dirs
            .first()
            .is_some_and(|d| d.strip_prefix(root).is_ok_and(|rel| rel == own))
    }

    pub fn version(&self) -> u8 {
        self.h.version()
    }

    /// On v2, the directory to open for clone3(CLONE_INTO_CGROUP).
    pub fn v2_dir(&self) -> Option<&Path> {
        match self.h {
            Hierarchy::V2 { .. } => self.dirs.first().map(|d| d.as_path()),
            Hierarchy::V1 { .. } => None,
        }
    }

    /// Notes the current pids and memory where the kernel keeps no peak
    /// (pids.peak is 6.1+, v2's memory.peak 5.19+; v1 has
    /// memory.max_usage_in_bytes). Returns whether samples are needed at
    /// all here: the run loop samples on a tick while the run lives, since
    /// a value read after the kill is no peak.
    pub fn sample(&self) -> bool {
        let mut needed = false;
        if let Some(d) = self.dir_of("pids") {
            if !d.join("pids.peak").exists() {
                needed = true;
                if let Some(n) = std::fs::read_to_string(d.join("pids.current"))
                    .ok()
                    .and_then(|t| account::single(&t))
                {
                    self.pids_seen.set(self.pids_seen.get().max(n));
                }
            }
        }
        if let Hierarchy::V2 { .. } = self.h {
            if !self.dirs[0].join("memory.peak").exists() {
                needed = true;
                if let Some(n) = std::fs::read_to_string(self.dirs[0].join("memory.current"))
                    .ok()
                    .and_then(|t| account::single(&t))
                {
                    self.memory_seen.set(self.memory_seen.get().max(n));
                }
            }
        }
        if needed {
            self.sampled.set(true);
        }
        needed
    }

    /// Whether its memory or pids peak comes from samples (see `sample`).
    pub fn peaks_sampled(&self) -> bool {
        self.sampled.get()
    }

    /// The CPU time its tasks used so far.
    pub fn cpu_time(&self) -> Result<Duration, CgroupError> {
        let read = |d: &Path, f: &str| fsx::read_to_string(d.join(f));
        let ns = match &self.h {
            Hierarchy::V1 { .. } => match self.dir_of("cpuacct") {
                Some(d) => account::single(&read(&d, "cpuacct.usage")?),
                None => None,
            },
            Hierarchy::V2 { .. } => {
                account::flat_keyed(&read(&self.dirs[0], "cpu.stat")?, "usage_usec")
                    .map(|u| u * 1000)
            }
        };
        ns.map(Duration::from_nanos).ok_or_else(|| {
            CgroupError::Setup(format!(
                "{}: no CPU time in its cpu.stat or cpuacct.usage",
                self.dirs
                    .first()
                    .map_or(String::new(), |d| d.display().to_string())
            ))
        })
    }

    pub fn usage(&self) -> Result<Usage, CgroupError> {
        let mut u = Usage::default();
        match &self.h {
            Hierarchy::V1 { .. } => v1::usage(self, &mut u)?,
            Hierarchy::V2 { .. } => v2::usage(self, &mut u)?,
        }
        Ok(u)
    }

    /// Pids of every task in it.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(d) = self.dirs.first() else {
            return Ok(Vec::new());
        };
        Ok(fsx::read_to_string(d.join("cgroup.procs"))?
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Kills every task and waits (bounded, up to 5 s) until it is empty.
    pub fn kill(&self) -> Result<(), CgroupError> {
        kill_dirs(&self.h, &self.dirs)
    }

    /// Sends the kill (see `kill_dirs`) without waiting for it: what the
    /// event loop does, which must not sleep.
    pub fn start_kill(&self) -> Result<(), CgroupError> {
        signal_kill(&self.h, &self.dirs)
    }

    /// Whether every task is gone (what is left is killed again); waits up
    /// to `max` for it.
    pub fn wait_empty(&self, max: Duration) -> Result<bool, CgroupError> {
        wait_empty(&self.dirs, max)
    }

    /// After the run's init was reaped: true when its cgroup is empty,
    /// else kills what is left and waits up to `max` (`start_kill`, then
    /// `wait_empty`). init's exit killed its pid namespace, so the list is
    /// empty but for a task that left it: one read, not a kill and a read
    /// of every directory. Every task of the run is in all its directories
    /// (init joined them all, its descendants inherit them, and the job
    /// may not move itself); `try_remove` finds any other (EBUSY) anyway.
    pub fn end(&self, max: Duration) -> Result<bool, CgroupError> {
        if let Some(first) = self.dirs.first() {
            if procs_of(first)?.is_empty() {
                return Ok(true);
            }
        }
        self.start_kill()?;
        self.wait_empty(max)
    }

    /// One attempt at removing it, for the event loop: Ok(None) when gone,
    /// Ok(Some(self)) while tasks are left or the kernel still holds it
    /// (EBUSY): try again later.
    pub fn try_remove(mut self) -> Result<Option<RunCgroup>, CgroupError> {
        // rmdir itself says whether tasks are left (EBUSY): no list read
        // first; what is left is killed again.
        for d in &self.dirs {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    self.wait_empty(Duration::ZERO)?;
                    return Ok(Some(self));
                }
                Err(e) => {
                    self.removed = true;
                    return Err(PathError::new("remove cgroup", d, e).into());
                }
            }
        }
        self.removed = true;
        Ok(None)
    }

    /// Removes it (with retries while the kernel lets go of dying tasks).
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        remove_dirs(&self.dirs)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.removed && !self.dirs.is_empty() {
            let _ = kill_dirs(&self.h, &self.dirs);
            let _ = remove_dirs(&self.dirs);
        }
    }
}

/// Device numbers (major, minor) of the whole block device holding `path`.
/// Throttling is per disk: the kernel refuses a partition in io.max and
/// blkio.throttle.*, so a partition maps to its disk.
pub fn device_of(path: &Path) -> Result<(u32, u32), CgroupError> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).at("stat", path)?.dev();
    let (major, minor) = (
        nix::sys::stat::major(dev) as u32,
        nix::sys::stat::minor(dev) as u32,
    );
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.exists() {
        return Err(CgroupError::Setup(format!(
            "{} is on device {major}:{minor}, which is not a block device (tmpfs, overlay or network file system): I/O limits need a disk",
            path.display()
        )));
    }
    if sys.join("partition").exists() {
        let disk = fsx::read_trimmed(sys.join("../dev"))?;
        if let Some((a, b)) = disk.split_once(':') {
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                return Ok((a, b));
            }
        }
    }
    Ok((major, minor))
}

#[cfg(test)]
mod tests {
    use super::delegate::delegated_parent;
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const SYSTEMD_LEGACY: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
28 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
32 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid shared:15 - cgroup cgroup rw,cpuset
33 25 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:16 - cgroup cgroup rw,memory
34 25 0:31 / /sys/fs/cgroup/pids rw,nosuid shared:17 - cgroup cgroup rw,pids
";

    const UNIFIED: &str = "\
26 21 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_host_is_v1_with_every_controller_a_run_uses() {
        let Hierarchy::V1 { mounts } = detect(HYBRID).unwrap() else {
            panic!("not v1")
        };
        let get = |c: &str| {
            mounts
                .iter()
                .find(|(m, _)| m == c)
                .map(|(_, p)| p.clone())
                .unwrap()
        };
        assert_eq!(get("memory"), PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(get("blkio"), PathBuf::from("/sys/fs/cgroup/blkio"));
        assert!(
            !mounts.iter().any(|(c, _)| c == "freezer"),
            "runs need no freezer group: {mounts:?}"
        );
    }

    #[test]
    fn co_mounted_controllers_share_one_directory() {
        let h = detect(SYSTEMD_LEGACY).unwrap();
        let Hierarchy::V1 { mounts } = &h else {
            panic!("not v1")
        };
        assert!(mounts.contains(&("cpu".into(), "/sys/fs/cgroup/cpu,cpuacct".into())));
        assert!(mounts.contains(&("cpuacct".into(), "/sys/fs/cgroup/cpu,cpuacct".into())));
        let dirs = h.dirs("packrun", Path::new("b1/r1"));
        assert_eq!(dirs.len(), 4, "{dirs:?}");
    }

    #[test]
    fn unified_host_is_v2() {
        assert_eq!(
            detect(UNIFIED).unwrap(),
            Hierarchy::V2 {
                root: "/sys/fs/cgroup".into(),
                parent: PathBuf::new()
            }
        );
    }

    #[test]
    fn v1_without_memory_controller_names_what_is_missing() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n";
        let e = detect(text).unwrap_err().to_string();
        assert!(e.contains("cpuacct, memory, pids"), "{e}");
        assert!(detect("").is_err());
    }

    #[test]
    fn a_second_packrun_started_from_the_supervisor_leaf_uses_the_delegated_cgroup() {
        assert_eq!(
            delegated_parent("system.slice/x.service/supervisor".into()),
            PathBuf::from("system.slice/x.service")
        );
        assert_eq!(
            delegated_parent("system.slice/x.service".into()),
            PathBuf::from("system.slice/x.service")
        );
    }

    #[test]
    fn own_cgroup_comes_from_the_unified_line() {
        assert_eq!(
            own_v2_cgroup("0::/system.slice/x.service\n").unwrap(),
            PathBuf::from("system.slice/x.service")
        );
        assert_eq!(own_v2_cgroup("0::/\n").unwrap(), PathBuf::new());
        assert_eq!(own_v2_cgroup("4:memory:/a\n"), None);
    }

    /// A fake v2 tree: the kernel's files as plain files.
    fn fake_v2() -> (tempfile::TempDir, Hierarchy) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        (
            t,
            Hierarchy::V2 {
                root,
                parent: PathBuf::new(),
            },
        )
    }

    #[test]
    fn v2_limits_are_written_where_the_kernel_reads_them() {
        let (t, h) = fake_v2();
        // Pre-create what the kernel would show in each new directory.
        let base = t.path().join("packrun");
        for d in [base.clone(), base.join("b1")] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        }
        let run = base.join("b1/r1");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("memory.swap.max"), "max\n").unwrap();
        let limits = Limits {
            cpus: CpuList::parse("2-3").unwrap(),
            mems: CpuList::parse("1").unwrap(),
            memory: Some(64 << 20),
            cpu_quota: Some(1.5),
            pids: 100,
            io: vec![IoThrottle {
                major: 8,
                minor: 0,
                read_bps: Some(1000),
                write_iops: Some(7),
                ..IoThrottle::default()
            }],
            deny_devices: Vec::new(),
        };
        prepare_batch(&h, "packrun", "b1").unwrap();
        let cg = RunCgroup::create(&h, "packrun", "b1", "r1", &limits).unwrap();
        let r = |f: &str| std::fs::read_to_string(run.join(f)).unwrap();
        assert_eq!(r("cpuset.cpus"), "2-3");
        assert_eq!(r("cpuset.mems"), "1");
        assert_eq!(r("memory.max"), "67108864");
        assert_eq!(r("memory.swap.max"), "0");
        assert_eq!(r("cpu.max"), "150000 100000");
        assert_eq!(r("pids.max"), "100");
        assert_eq!(r("io.max"), "8:0 rbps=1000 wiops=7");
        assert_eq!(cg.v2_dir(), Some(run.as_path()));
        // Usage from the kernel's v2 files.
        std::fs::write(
            run.join("cpu.stat"),
            "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\nthrottled_usec 3\n",
        )
        .unwrap();
        std::fs::write(run.join("memory.peak"), "209715200\n").unwrap();
        std::fs::write(
            run.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(
            run.join("io.stat"),
            "8:0 rbytes=10 wbytes=67108864 rios=1 wios=2\n",
        )
        .unwrap();
        std::fs::write(run.join("pids.peak"), "17\n").unwrap();
        let u = cg.usage().unwrap();
        assert_eq!(
            (u.cpu_ns, u.user_ns, u.system_ns, u.cpu_throttled_ns),
            (2_000_000_000, 1_500_000_000, 500_000_000, 3000)
        );
        assert_eq!(
            (
                u.memory_peak_bytes,
                u.oom_kills,
                u.io_write_bytes,
                u.pids_peak
            ),
            (209715200, 1, 67108864, 17)
        );
        // Controllers enabled for the children on the way down.
        assert_eq!(
            std::fs::read_to_string(base.join("cgroup.subtree_control")).unwrap(),
            "+cpuset +cpu +io +memory +pids"
        );
        // Fake files keep rmdir from working on a plain directory; the test tree is removed with the temp dir.
        std::mem::forget(cg);
    }

    #[test]
    fn v2_without_memory_peak_falls_back_to_samples_of_memory_current() {
        let (t, h) = fake_v2();
        let run = t.path().join("packrun/b/r");
        std::fs::create_dir_all(&run).unwrap();
        for d in [t.path().join("packrun"), t.path().join("packrun/b")] {
            std::fs::write(d.join("cgroup.controllers"), "memory pids\n").unwrap();
        }
        let cg = RunCgroup::create(
            &h,
            "packrun",
            "b",
            "r",
            &Limits {
                pids: 5,
                ..Limits::default()
            },
        )
        .unwrap();
        std::fs::write(run.join("cpu.stat"), "usage_usec 1\n").unwrap();
        for m in ["100", "300", "200"] {
            std::fs::write(run.join("memory.current"), m).unwrap();
            cg.sample();
        }
        assert_eq!(cg.usage().unwrap().memory_peak_bytes, 300);
        std::mem::forget(cg);
    }

    #[test]
    fn sampling_is_needed_and_noted_only_where_the_kernel_keeps_no_peak() {
        let (t, h) = fake_v2();
        let run = t.path().join("packrun/b/r");
        std::fs::create_dir_all(&run).unwrap();
        for d in [t.path().join("packrun"), t.path().join("packrun/b")] {
            std::fs::write(d.join("cgroup.controllers"), "memory pids\n").unwrap();
        }
        let cg = RunCgroup::create(&h, "packrun", "b", "r", &Limits::default()).unwrap();
        std::fs::write(run.join("memory.current"), "4096").unwrap();
        std::fs::write(run.join("pids.current"), "3").unwrap();
        assert!(cg.sample(), "no memory.peak or pids.peak: samples needed");
        assert!(cg.peaks_sampled());
        std::fs::write(run.join("memory.peak"), "8192").unwrap();
        std::fs::write(run.join("pids.peak"), "4").unwrap();
        let cg2 = RunCgroup::create(&h, "packrun", "b", "r", &Limits::default()).unwrap();
        assert!(!cg2.sample(), "the kernel keeps both peaks");
        assert!(!cg2.peaks_sampled());
        std::mem::forget((cg, cg2));
    }

    #[test]
    fn an_unreadable_task_list_is_an_error_not_an_empty_cgroup() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("r");
        // cgroup.procs that cannot be read (here: a directory).
        std::fs::create_dir_all(dir.join("cgroup.procs")).unwrap();
        let e = wait_empty(std::slice::from_ref(&dir), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("cgroup.procs"), "{e}");
        // A directory that is gone holds no task.
        assert!(wait_empty(&[t.path().join("gone")], Duration::ZERO).unwrap());
    }

    #[test]
    fn v1_runs_join_the_devices_hierarchy_only_with_devices_to_deny() {
        let t = tempfile::tempdir().unwrap();
        let mounts: Vec<(String, PathBuf)> = ["cpuset", "cpuacct", "memory", "pids", "devices"]
            .iter()
            .map(|c| (c.to_string(), t.path().join(c)))
            .collect();
        for (_, m) in &mounts {
            std::fs::create_dir_all(m.join("packrun/b1")).unwrap();
        }
        let h = Hierarchy::V1 { mounts };
        let cg = RunCgroup::create(&h, "packrun", "b1", "cpu-only", &Limits::default()).unwrap();
        assert!(!t.path().join("devices/packrun/b1/cpu-only").exists());
        assert_eq!(cg.v1_tasks_files().len(), 4);
        std::mem::forget(cg);
        let limits = Limits {
            deny_devices: vec![(195, 1)],
            ..Limits::default()
        };
        let cg = RunCgroup::create(&h, "packrun", "b1", "gpu", &limits).unwrap();
        let deny = t.path().join("devices/packrun/b1/gpu/devices.deny");
        assert_eq!(std::fs::read_to_string(deny).unwrap(), "c 195:1 rwm");
        assert_eq!(
            cg.v1_tasks_files().len(),
            5,
            "its init joins the devices group too"
        );
        std::mem::forget(cg);
    }

    #[test]
    fn v1_limits_go_to_each_controller_and_usage_reads_v1_files() {
        let t = tempfile::tempdir().unwrap();
        let mounts: Vec<(String, PathBuf)> = ["cpuset", "cpuacct", "memory", "pids"]
            .iter()
            .map(|c| (c.to_string(), t.path().join(c)))
            .collect();
        for (_, m) in &mounts {
            std::fs::create_dir_all(m).unwrap();
        }
        let h = Hierarchy::V1 { mounts };
        // The kernel's socket buffer counter of the run's memory group.
        let mem = t.path().join("memory/packrun/b1/r1");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(
            mem.join("memory.kmem.tcp.limit_in_bytes"),
            "9223372036854771712",
        )
        .unwrap();
        let limits = Limits {
            cpus: CpuList::parse("3").unwrap(),
            mems: CpuList::parse("0").unwrap(),
            memory: Some(1 << 20),
            pids: 64,
            ..Limits::default()
        };
        let cg = RunCgroup::create(&h, "packrun", "b1", "r1", &limits).unwrap();
        let run = |c: &str, f: &str| {
            std::fs::read_to_string(t.path().join(c).join("packrun/b1/r1").join(f)).unwrap()
        };
        assert_eq!(run("cpuset", "cpuset.cpus"), "3");
        assert_eq!(run("cpuset", "cpuset.mems"), "0");
        assert_eq!(run("memory", "memory.limit_in_bytes"), "1048576");
        assert_eq!(run("memory", "memory.kmem.tcp.limit_in_bytes"), "1048576");
        assert_eq!(run("pids", "pids.max"), "64");
        let acct = t.path().join("cpuacct/packrun/b1/r1");
        std::fs::write(acct.join("cpuacct.usage"), "2000000000\n").unwrap();
        std::fs::write(acct.join("cpuacct.usage_user"), "1900000000\n").unwrap();
        std::fs::write(acct.join("cpuacct.usage_sys"), "100000000\n").unwrap();
        std::fs::write(mem.join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        // Socket buffers are a counter of their own on v1: in the peak too.
        std::fs::write(mem.join("memory.kmem.tcp.max_usage_in_bytes"), "8192\n").unwrap();
        std::fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        let u = cg.usage().unwrap();
        assert_eq!(
            (u.cpu_ns, u.user_ns, u.system_ns),
            (2_000_000_000, 1_900_000_000, 100_000_000)
        );
        assert_eq!((u.memory_peak_bytes, u.oom_kills), (4096 + 8192, 3));
        // Where the kernel has cpuacct.usage_all, the split comes from it.
        std::fs::write(
            acct.join("cpuacct.usage_all"),
            "cpu user system\n0 500000000 0\n1 100000000 400000000\n",
        )
        .unwrap();
        let u = cg.usage().unwrap();
        assert_eq!(
            (u.cpu_ns, u.user_ns, u.system_ns),
            (2_000_000_000, 1_200_000_000, 800_000_000)
        );
        std::mem::forget(cg);
    }

    #[test]
    fn a_v1_cpuset_group_left_empty_by_a_concurrent_packrun_is_filled_from_its_parents() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path();
        std::fs::write(top.join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(top.join("cpuset.mems"), "0-1\n").unwrap();
        // Both levels exist, as another packrun made them, but are still empty.
        for d in ["packrun", "packrun/b1"] {
            std::fs::create_dir_all(top.join(d)).unwrap();
            std::fs::write(top.join(d).join("cpuset.cpus"), "\n").unwrap();
            std::fs::write(top.join(d).join("cpuset.mems"), "\n").unwrap();
        }
        fill_v1_cpuset(top, &top.join("packrun/b1")).unwrap();
        for d in ["packrun", "packrun/b1"] {
            assert_eq!(
                std::fs::read_to_string(top.join(d).join("cpuset.cpus")).unwrap(),
                "0-3"
            );
            assert_eq!(
                std::fs::read_to_string(top.join(d).join("cpuset.mems")).unwrap(),
                "0-1"
            );
        }
    }

    #[test]
    fn step_cgroup_base_is_the_cpuset_path_of_the_step_on_v1() {
        let v1 = "6:freezer:/slurm_n1/uid_0/job_1/step_0\n3:cpuset:/slurm_n1/uid_0/job_1/step_0\n1:cpu:/\n0::/\n";
        assert_eq!(
            step_cgroup_base_v1(v1).as_deref(),
            Some("slurm_n1/uid_0/job_1/step_0/packrun")
        );
        assert_eq!(step_cgroup_base_v1("3:cpuset:/\n0::/\n"), None);
        assert_eq!(step_cgroup_base_v1("0::/system.slice/x\n"), None);
    }

    #[test]
    fn list_batches_sees_every_hierarchy() {
        let t = tempfile::tempdir().unwrap();
        let h = Hierarchy::V1 {
            mounts: vec![
                ("cpuset".into(), t.path().join("a")),
                ("memory".into(), t.path().join("b")),
            ],
        };
        std::fs::create_dir_all(t.path().join("a/packrun/b1-2")).unwrap();
        std::fs::create_dir_all(t.path().join("b/packrun/b3-4")).unwrap();
        let mut v = list_batches(&h, "packrun");
        v.sort();
        assert_eq!(v, vec!["b1-2", "b3-4"]);
    }
}
