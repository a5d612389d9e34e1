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
use std::time::{Duration, Instant};

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
const V1_CONTROLLERS: [&str; 6] = ["cpuset", "cpu", "cpuacct", "memory", "pids", "blkio"];
/// The v1 controllers without which packrun cannot measure or limit.
const V1_REQUIRED: [&str; 4] = ["cpuset", "cpuacct", "memory", "pids"];
/// The v2 controllers enabled for packrun's subtree (those the parent offers).
const V2_CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

/// Parses /proc/self/mountinfo text into the setup it shows: v1 when any v1
/// controller we need is mounted (hybrid hosts included), else v2.
pub fn detect(mountinfo: &str) -> Result<Hierarchy, CgroupError> {
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    let mut v2: Option<PathBuf> = None;
    for line in mountinfo.lines() {
        // "36 35 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,... shared:9 - cgroup cgroup rw,cpu,cpuacct"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split_whitespace().nth(4).unwrap_or("");
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or("");
        let _source = r.next();
        let opts = r.next().unwrap_or("");
        let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
        match fstype {
            "cgroup" => {
                for o in opts.split(',') {
                    if V1_CONTROLLERS.contains(&o) && !mounts.iter().any(|(c, _)| c == o) {
                        mounts.push((o.to_string(), mount_point.clone()));
                    }
                }
            }
            "cgroup2"
                // Prefer the canonical location when there are several.
                if (v2.is_none() || mount_point == Path::new("/sys/fs/cgroup")) => {
                    v2 = Some(mount_point);
                }
            _ => {}
        }
    }
    if !mounts.is_empty() {
        let missing: Vec<&str> = V1_REQUIRED
            .iter()
            .copied()
            .filter(|c| !mounts.iter().any(|(m, _)| m == c))
            .collect();
        if !missing.is_empty() {
            return Err(CgroupError::Setup(format!(
                "cgroup v1 controllers not mounted: {} (mount them, or boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2)",
                missing.join(", ")
            )));
        }
        return Ok(Hierarchy::V1 { mounts });
    }
    match v2 {
        Some(root) => Ok(Hierarchy::V2 {
            root,
            parent: PathBuf::new(),
        }),
        None => Err(CgroupError::Setup(
            "no cgroup file system is mounted (expected cgroup2 at /sys/fs/cgroup or v1 controllers)".into(),
        )),
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// This process's v2 cgroup from /proc/self/cgroup text ("0::/user.slice/x").
pub fn own_v2_cgroup(proc_self_cgroup: &str) -> Option<PathBuf> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim_start_matches('/')))
}

/// The running host's setup. On v2, packrun nests its groups inside the
/// cgroup it was started in when that one was delegated to it (systemd's
/// Delegate=yes marks it with the `trusted.delegate` attribute; a Slurm step
/// is recognised by SLURM_JOB_ID; `PACKRUN_CGROUP=self` says so for any
/// other delegation), else below the root.
pub fn detect_host() -> Result<Hierarchy, CgroupError> {
    let text = fsx::read_to_string("/proc/self/mountinfo")?;
    let mut h = detect(&text)?;
    if let Hierarchy::V2 { root, parent } = &mut h {
        let own = delegated_parent(
            own_v2_cgroup(&fsx::read_to_string("/proc/self/cgroup")?).unwrap_or_default(),
        );
        let delegated = !own.as_os_str().is_empty()
            && (std::env::var_os("SLURM_JOB_ID").is_some()
                || std::env::var("PACKRUN_CGROUP").is_ok_and(|v| v == "self")
                || is_marked_delegated(&root.join(&own))
                || !writable(&root.join("cgroup.subtree_control")));
        if delegated {
            *parent = own;
        }
    }
    Ok(h)
}

/// The leaf packrun moves itself into (see `prepare_v2_parent`).
const SUPERVISOR: &str = "supervisor";

/// A packrun started from a process that an earlier packrun moved into the
/// `supervisor` leaf belongs to the delegated cgroup above that leaf.
fn delegated_parent(own: PathBuf) -> PathBuf {
    match own.file_name() {
        Some(n) if n == SUPERVISOR => own.parent().map(Path::to_path_buf).unwrap_or_default(),
        _ => own,
    }
}

/// systemd (since v251) marks the cgroup of a unit with Delegate=yes with
/// the extended attribute `trusted.delegate` (and `user.delegate`) = "1".
fn is_marked_delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|a| matches!(xattr::get(dir, a), Ok(Some(v)) if v == b"1"))
}

fn writable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
}

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

/// v1 cpuset: a new group starts with empty cpus and mems, and the kernel
/// refuses tasks until both are set, and refuses a child's value that is not
/// a subset of its parent's (EACCES). A group another packrun has just made
/// may still be empty: fill it from its parent, the parent first.
fn fill_v1_cpuset(top: &Path, dir: &Path) -> Result<(), CgroupError> {
    if dir == top || !dir.starts_with(top) || !dir.join("cpuset.cpus").exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(top);
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if fsx::read_trimmed(dir.join(f))?.is_empty() {
            fill_v1_cpuset(top, parent)?;
            let v = fsx::read_trimmed(parent.join(f))?;
            fsx::write(dir.join(f), v)?;
        }
    }
    Ok(())
}

/// Enables, in `dir`'s subtree_control, the controllers packrun uses that `dir` offers.
fn enable_v2_controllers(dir: &Path) -> Result<(), CgroupError> {
    let offered = fsx::read_to_string(dir.join("cgroup.controllers"))?;
    let want: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| offered.split_whitespace().any(|o| o == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if !want.is_empty() {
        fsx::write(dir.join("cgroup.subtree_control"), want.join(" "))?;
    }
    Ok(())
}

/// On a delegated v2 subtree the runner sits in the cgroup it must create
/// children in; the kernel's "no internal processes" rule makes enabling
/// controllers there fail with EBUSY, so the runner first moves itself into
/// a leaf `<parent>/supervisor`, then enables controllers in `<parent>`.
pub fn prepare_v2_parent(h: &Hierarchy) -> Result<(), CgroupError> {
    let Hierarchy::V2 { root, parent } = h else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() {
        // The root cgroup is exempt from the rule; controllers are enabled there already
        // on any system that mounts cgroup2 for use (systemd does).
        return enable_v2_controllers(root);
    }
    let dir = root.join(parent);
    let leaf = dir.join(SUPERVISOR);
    // Other processes of the delegated cgroup may fork while we move them
    // (a shell starting commands): move, enable, and on EBUSY move what
    // appeared meanwhile and try again, for a bounded time.
    let start = Instant::now();
    loop {
        let procs = fsx::read_to_string(dir.join("cgroup.procs"))?;
        if !procs.trim().is_empty() {
            match std::fs::create_dir(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(PathError::new("create cgroup", &leaf, e).into()),
            }
            // Every process of the parent moves (a Slurm step or a service may hold several).
            for pid in procs.split_whitespace() {
                match fsx::write(leaf.join("cgroup.procs"), pid) {
                    Ok(()) => {}
                    // Gone meanwhile.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        match enable_v2_controllers(&dir) {
            Err(CgroupError::Io(e))
                if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < KILL_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
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
        let mem = self.dir_of("memory");
        let cpu = self.dir_of("cpu");
        let pids = self.dir_of("pids");
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
            Hierarchy::V1 { .. } => {
                if let Some(d) = &mem {
                    if let Some(m) = l.memory {
                        fsx::write(d.join("memory.limit_in_bytes"), m.to_string())?;
                        // Swap off: memory+swap equal to memory (only with swap accounting).
                        fsx::write_if_present(
                            d.join("memory.memsw.limit_in_bytes"),
                            m.to_string(),
                        )?;
                    }
                    // Socket buffers: v1 charges them to a memcg only once its
                    // kmem.tcp limit is written, and then to that counter, not
                    // to memory.usage_in_bytes. Written, it charges TCP and UDP
                    // receive buffers alike (both go through the socket's memcg),
                    // and the run's peak adds its maximum (see `usage`). The
                    // limit is the run's memory limit, or none (-1), which still
                    // turns the counting on.
                    let tcp = l.memory.map_or("-1".to_string(), |m| m.to_string());
                    fsx::write_if_present(d.join("memory.kmem.tcp.limit_in_bytes"), tcp)?;
                    // Best effort: the root group refuses it and some kernels lack it.
                    let _ = fsx::write_if_present(d.join("memory.swappiness"), "0");
                }
                if let (Some(d), Some(q)) = (&cpu, l.cpu_quota) {
                    fsx::write(d.join("cpu.cfs_period_us"), "100000")?;
                    fsx::write(
                        d.join("cpu.cfs_quota_us"),
                        ((q * 100_000.0).round() as u64).max(1000).to_string(),
                    )?;
                }
                if let Some(d) = &pids {
                    fsx::write(d.join("pids.max"), l.pids.to_string())?;
                }
                if let Some(d) = self.dir_of("blkio") {
                    for t in &l.io {
                        let dev = format!("{}:{}", t.major, t.minor);
                        for (file, v) in [
                            ("blkio.throttle.read_bps_device", t.read_bps),
                            ("blkio.throttle.write_bps_device", t.write_bps),
                            ("blkio.throttle.read_iops_device", t.read_iops),
                            ("blkio.throttle.write_iops_device", t.write_iops),
                        ] {
                            if let Some(v) = v {
                                fsx::write(d.join(file), format!("{dev} {v}"))?;
                            }
                        }
                    }
                }
            }
            Hierarchy::V2 { .. } => {
                let d = &self.dirs[0];
                if let Some(m) = l.memory {
                    fsx::write(d.join("memory.max"), m.to_string())?;
                    fsx::write_if_present(d.join("memory.swap.max"), "0")?;
                }
                if let Some(q) = l.cpu_quota {
                    let quota = ((q * 100_000.0).round() as u64).max(1000);
                    fsx::write(d.join("cpu.max"), format!("{quota} 100000"))?;
                }
                fsx::write(d.join("pids.max"), l.pids.to_string())?;
                for t in &l.io {
                    let mut s = format!("{}:{}", t.major, t.minor);
                    for (k, v) in [
                        ("rbps", t.read_bps),
                        ("wbps", t.write_bps),
                        ("riops", t.read_iops),
                        ("wiops", t.write_iops),
                    ] {
                        if let Some(v) = v {
                            s.push_str(&format!(" {k}={v}"));
                        }
                    }
                    fsx::write(d.join("io.max"), s)?;
                }
            }
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
        let read = |d: &Path, f: &str| fsx::read_to_string(d.join(f));
        match &self.h {
            Hierarchy::V1 { .. } => {
                if let Some(d) = self.dir_of("cpuacct") {
                    u.cpu_ns = account::single(&read(&d, "cpuacct.usage")?).unwrap_or(0);
                    // The user/system split of v1 is sampled at ticks and does not add up to
                    // the exact total: keep the total, split it in the sampled ratio. Both
                    // samples from one file where the kernel has it (4.7+): per CPU.
                    let all = fsx::read_if_present(d.join("cpuacct.usage_all"))?;
                    let all = all.as_deref().and_then(account::cpuacct_usage_all);
                    let (user, system) = if let Some(us) = all {
                        us
                    } else if let Some(user) = fsx::read_if_present(d.join("cpuacct.usage_user"))? {
                        (
                            account::single(&user).unwrap_or(0),
                            account::single(&read(&d, "cpuacct.usage_sys")?).unwrap_or(0),
                        )
                    } else {
                        // cpuacct.stat counts USER_HZ ticks (100 per second on every Linux ABI).
                        let st = read(&d, "cpuacct.stat")?;
                        (
                            account::flat_keyed(&st, "user").unwrap_or(0) * 10_000_000,
                            account::flat_keyed(&st, "system").unwrap_or(0) * 10_000_000,
                        )
                    };
                    (u.user_ns, u.system_ns) = account::split_cpu(u.cpu_ns, user, system);
                }
                if let Some(d) = self.dir_of("memory") {
                    if let Some(st) = fsx::read_if_present(d.join("memory.stat"))? {
                        u.major_faults = account::flat_keyed(&st, "pgmajfault").unwrap_or(0);
                    }
                    // Pages and socket buffers are two counters on v1: the peak
                    // is the sum of their maxima (at least the peak of the sum).
                    let tcp = fsx::read_if_present(d.join("memory.kmem.tcp.max_usage_in_bytes"))?;
                    u.memory_peak_bytes = account::single(&read(&d, "memory.max_usage_in_bytes")?)
                        .unwrap_or(0)
                        + tcp.as_deref().and_then(account::single).unwrap_or(0);
                    u.oom_kills = account::flat_keyed(&read(&d, "memory.oom_control")?, "oom_kill")
                        .unwrap_or(0);
                }
                if let Some(d) = self.dir_of("blkio") {
                    let text = match fsx::read_if_present(
                        d.join("blkio.throttle.io_service_bytes_recursive"),
                    )? {
                        Some(t) => Some(t),
                        None => fsx::read_if_present(d.join("blkio.throttle.io_service_bytes"))?,
                    };
                    if let Some(t) = text {
                        (u.io_read_bytes, u.io_write_bytes) = account::blkio_v1(&t);
                    }
                }
                if let Some(d) = self.dir_of("cpu") {
                    if let Some(st) = fsx::read_if_present(d.join("cpu.stat"))? {
                        u.cpu_throttled_ns =
                            account::flat_keyed(&st, "throttled_time").unwrap_or(0);
                    }
                }
                // Newer kernels keep pids.peak on v1 too; older ones only the samples
                // (a last one taken here, where the file is missing).
                let peak = match self.dir_of("pids") {
                    Some(d) => fsx::read_if_present(d.join("pids.peak"))?,
                    None => None,
                };
                u.pids_peak = match peak {
                    Some(t) => account::single(&t).unwrap_or(0),
                    None => {
                        self.sample();
                        self.pids_seen.get()
                    }
                };
            }
            Hierarchy::V2 { .. } => {
                let d = &self.dirs[0];
                let st = read(d, "cpu.stat")?;
                u.cpu_ns = account::flat_keyed(&st, "usage_usec").unwrap_or(0) * 1000;
                u.user_ns = account::flat_keyed(&st, "user_usec").unwrap_or(0) * 1000;
                u.system_ns = account::flat_keyed(&st, "system_usec").unwrap_or(0) * 1000;
                u.cpu_throttled_ns = account::flat_keyed(&st, "throttled_usec").unwrap_or(0) * 1000;
                self.sample();
                u.memory_peak_bytes = match fsx::read_if_present(d.join("memory.peak"))? {
                    Some(t) => account::single(&t).unwrap_or(0),
                    None => self.memory_seen.get(),
                };
                if let Some(st) = fsx::read_if_present(d.join("memory.stat"))? {
                    u.major_faults = account::flat_keyed(&st, "pgmajfault").unwrap_or(0);
                }
                if let Some(t) = fsx::read_if_present(d.join("memory.events"))? {
                    u.oom_kills = account::flat_keyed(&t, "oom_kill").unwrap_or(0);
                }
                if let Some(t) = fsx::read_if_present(d.join("io.stat"))? {
                    (u.io_read_bytes, u.io_write_bytes) = account::io_stat_v2(&t);
                }
                u.pids_peak = match fsx::read_if_present(d.join("pids.peak"))? {
                    Some(t) => account::single(&t).unwrap_or(0),
                    None => self.pids_seen.get(),
                };
            }
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

const KILL_WAIT: Duration = Duration::from_secs(5);

/// The tasks of a cgroup directory; one that is gone has none. An
/// unreadable list is an error: an empty one would pass for "all killed".
fn procs_of(d: &Path) -> Result<Vec<i32>, CgroupError> {
    match fsx::read_if_present(d.join("cgroup.procs"))? {
        None => Ok(Vec::new()),
        Some(t) => Ok(t
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()),
    }
}

fn sigkill_all(pids: &[i32]) {
    for &p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Kills every task of a run's directories: `cgroup.kill` on v2 where the
/// kernel has it (5.14+); on older v2 freeze, SIGKILL each task, thaw, so
/// nothing forks away between reading the list and killing it. On v1,
/// SIGKILL each listed task until none is left: the list holds the run's
/// pid-namespace init, whose death kills the rest (see V1_CONTROLLERS).
fn kill_dirs(h: &Hierarchy, dirs: &[PathBuf]) -> Result<(), CgroupError> {
    signal_kill(h, dirs)?;
    if wait_empty(dirs, KILL_WAIT)? {
        return Ok(());
    }
    let first = dirs
        .first()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let left: Vec<i32> = dirs
        .iter()
        .map(|d| procs_of(d))
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    Err(CgroupError::Setup(format!(
        "{first}: {} task(s) still alive {} s after SIGKILL: {left:?}",
        left.len(),
        KILL_WAIT.as_secs(),
    )))
}

/// The kill itself, without waiting (see `kill_dirs`).
fn signal_kill(h: &Hierarchy, dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let Some(first) = dirs.first() else {
        return Ok(());
    };
    if !first.exists() {
        return Ok(());
    }
    match h {
        Hierarchy::V2 { .. } if first.join("cgroup.kill").exists() => {
            fsx::write(first.join("cgroup.kill"), "1")?;
        }
        Hierarchy::V2 { .. } => {
            let _ = fsx::write(first.join("cgroup.freeze"), "1");
            let procs = procs_of(first);
            if let Ok(p) = &procs {
                sigkill_all(p);
            }
            let _ = fsx::write(first.join("cgroup.freeze"), "0");
            procs?;
        }
        Hierarchy::V1 { .. } => sigkill_all(&procs_of(first)?),
    }
    Ok(())
}

/// Waits (up to `max`) until no directory holds a task, SIGKILLing again
/// anything that slipped through (a fork racing the freeze on v2, the rest
/// of the namespace on v1). True when empty.
fn wait_empty(dirs: &[PathBuf], max: Duration) -> Result<bool, CgroupError> {
    let start = Instant::now();
    let mut delay = Duration::from_micros(200);
    loop {
        let mut left = Vec::new();
        for d in dirs {
            left.extend(procs_of(d)?);
        }
        if left.is_empty() {
            return Ok(true);
        }
        sigkill_all(&left);
        if start.elapsed() >= max {
            return Ok(false);
        }
        std::thread::sleep(delay.min(max.saturating_sub(start.elapsed())));
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

/// rmdir each directory, retrying EBUSY while the kernel lets go of dead
/// tasks (bounded); a directory already gone is fine.
fn remove_dirs(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let mut first_err = None;
    for d in dirs {
        let start = Instant::now();
        loop {
            match std::fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < KILL_WAIT => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    first_err.get_or_insert(PathError::new("remove cgroup", d, e));
                    break;
                }
            }
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(e.into()),
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

/// On cgroup v1, this process's path in the hierarchy of `controller`
/// (without slashes; "" at the root), from the text of /proc/self/cgroup.
fn own_v1_path(proc_self_cgroup: &str, controller: &str) -> Option<String> {
    proc_self_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim().trim_matches('/').to_string())
    })
}

/// On cgroup v1, the step's cgroup from the text of /proc/self/cgroup: the
/// cpuset controller's path (the one that confines the step's CPUs; a
/// cpuset child must be a subset of it), plus `/packrun`. None when the
/// process sits at the cpuset root (Slurm's task/cgroup is off).
pub fn step_cgroup_base_v1(proc_self_cgroup: &str) -> Option<String> {
    let path = own_v1_path(proc_self_cgroup, "cpuset")?;
    (!path.is_empty()).then(|| format!("{path}/packrun"))
}

/// The base of a batch's run cgroups (`Options::cgroup_base`), made for
/// the batch and removed again when dropped, on every way out.
#[derive(Debug)]
pub struct RunsBase {
    h: Hierarchy,
    name: String,
}

impl RunsBase {
    /// `packrun`, except inside a Slurm step (SLURM_JOB_ID set) on cgroup
    /// v1, where it is below the step's cgroup so the runs are child
    /// cgroups of it and stay inside what Slurm gave the step. The step's
    /// path is made in the controllers Slurm does not manage (cpuset values
    /// filled from the parent).
    ///
    /// On v2, `detect_host` nests packrun's groups below the process's own
    /// cgroup already whenever SLURM_JOB_ID is set.
    pub fn make(h: &Hierarchy) -> Result<RunsBase, CgroupError> {
        let plain = RunsBase {
            h: h.clone(),
            name: "packrun".into(),
        };
        let Hierarchy::V1 { mounts } = h else {
            return Ok(plain);
        };
        if std::env::var_os("SLURM_JOB_ID").is_none() {
            return Ok(plain);
        }
        let Some(name) = step_cgroup_base_v1(&fsx::read_to_string("/proc/self/cgroup")?) else {
            return Ok(plain);
        };
        let step = Path::new(&name).parent().expect("base ends in /packrun");
        for (_, m) in mounts {
            ensure_dir(h, m, &m.join(step))?;
        }
        Ok(RunsBase { h: h.clone(), name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Removes what `make` and the runs left below the step's cgroup: the base
/// in every controller, then on v1, in controllers where this process is
/// not in the step's path (Slurm does not manage them), the step path made
/// for packrun. rmdir fails on a cgroup with children or tasks, so nothing
/// still in use is touched.
impl Drop for RunsBase {
    fn drop(&mut self) {
        let Hierarchy::V1 { mounts } = &self.h else {
            return;
        };
        let base = self.name.as_str();
        if base == "packrun" {
            return;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        for (ctrl, root) in mounts {
            let _ = std::fs::remove_dir(root.join(base));
            let mine = own_v1_path(&own, ctrl);
            if mine.is_some_and(|m| !m.is_empty() && base.starts_with(&m)) {
                continue;
            }
            let mut p = Path::new(base).parent();
            while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
                if std::fs::remove_dir(root.join(dir)).is_err() {
                    break;
                }
                p = dir.parent();
            }
        }
    }
}

/// Removes `<base>/<batch>` once its runs are gone, and `<base>` when no
/// other batch uses it (best effort: another packrun may be creating one).
pub fn remove_batch(h: &Hierarchy, base: &str, batch: &str) {
    let _ = remove_dirs(&h.dirs(base, Path::new(batch)));
    if base.is_empty() {
        // A single run's group below the top: nothing of ours above it.
        return;
    }
    for d in h.dirs(base, Path::new("")) {
        let _ = std::fs::remove_dir(d);
    }
}

/// Names of the batch cgroups below `<base>` (in any hierarchy).
pub fn list_batches(h: &Hierarchy, base: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for d in h.dirs(base, Path::new("")) {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let n = e.file_name().to_string_lossy().into_owned();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    names
}

/// Kills and removes every run cgroup of a batch, then the batch itself
/// (crash recovery: the runner that made them is gone).
pub fn cleanup_batch(h: &Hierarchy, base: &str, batch: &str) -> Result<(), CgroupError> {
    let batch_dirs = h.dirs(base, Path::new(batch));
    let mut runs: Vec<String> = Vec::new();
    for d in &batch_dirs {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !runs.contains(&n) {
                    runs.push(n);
                }
            }
        }
    }
    for r in runs {
        let dirs: Vec<PathBuf> = batch_dirs
            .iter()
            .map(|d| d.join(&r))
            .filter(|d| d.exists())
            .collect();
        kill_dirs(h, &dirs)?;
        remove_dirs(&dirs)?;
    }
    // A single run's batch (`packrun exec`) is the run's own group.
    let live: Vec<PathBuf> = batch_dirs.into_iter().filter(|d| d.exists()).collect();
    kill_dirs(h, &live)?;
    remove_dirs(&live)
}

#[cfg(test)]
mod tests {
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
