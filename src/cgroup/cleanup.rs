//! Ending and removing groups: killing every task of a run's directories,
//! waiting until they are empty, rmdir with retries, and the batches a
//! killed packrun left behind.

use super::{CgroupError, Hierarchy};
use crate::fsx::{self, PathError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(super) const KILL_WAIT: Duration = Duration::from_secs(5);

/// The tasks of a cgroup directory; one that is gone has none. An
/// unreadable list is an error: an empty one would pass for "all killed".
pub(super) fn procs_of(d: &Path) -> Result<Vec<i32>, CgroupError> {
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
pub(super) fn kill_dirs(h: &Hierarchy, dirs: &[PathBuf]) -> Result<(), CgroupError> {
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
pub(super) fn signal_kill(h: &Hierarchy, dirs: &[PathBuf]) -> Result<(), CgroupError> {
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
pub(super) fn wait_empty(dirs: &[PathBuf], max: Duration) -> Result<bool, CgroupError> {
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
pub(super) fn remove_dirs(dirs: &[PathBuf]) -> Result<(), CgroupError> {
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
