//! Where packrun's groups go: the host's setup read from the mount table,
//! a delegated v2 subtree (systemd's Delegate=yes, a Slurm step,
//! `PACKRUN_CGROUP=self`) and the supervisor leaf packrun moves into there,
//! a Slurm step's v1 paths, and the base a batch's runs sit under.

use super::cleanup::KILL_WAIT;
use super::v2::enable_v2_controllers;
use super::{ensure_dir, CgroupError, Hierarchy, V1_CONTROLLERS, V1_REQUIRED};
use crate::fsx::{self, PathError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
pub(super) const SUPERVISOR: &str = "supervisor";

/// A packrun started from a process that an earlier packrun moved into the
/// `supervisor` leaf belongs to the delegated cgroup above that leaf.
pub(super) fn delegated_parent(own: PathBuf) -> PathBuf {
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
