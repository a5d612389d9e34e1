//! cgroup v2: one directory per run, controllers enabled down the tree.

use super::{CgroupError, Limits, RunCgroup, V2_CONTROLLERS};
use crate::account::{self, Usage};
use crate::fsx;
use std::path::Path;

/// Enables, in `dir`'s subtree_control, the controllers packrun uses that `dir` offers.
pub(super) fn enable_v2_controllers(dir: &Path) -> Result<(), CgroupError> {
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

/// Memory, CPU quota, pids and I/O limits in the run's one directory (the
/// cpuset is written before, for both versions).
pub(super) fn apply(d: &Path, l: &Limits) -> Result<(), CgroupError> {
    // Without root no device program can be loaded: the run's own nodes
    // are all it is given, and its row says so (docs/gpus.md).
    if !l.deny_devices.is_empty() && nix::unistd::geteuid().is_root() {
        super::devices::attach_v2(d, &l.deny_devices).map_err(CgroupError::Setup)?;
    }
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
    Ok(())
}

/// What the run used, from its directory's counters.
pub(super) fn usage(cg: &RunCgroup, u: &mut Usage) -> Result<(), CgroupError> {
    let read = |d: &Path, f: &str| fsx::read_to_string(d.join(f));
    let d = &cg.dirs[0];
    let st = read(d, "cpu.stat")?;
    u.cpu_ns = account::flat_keyed(&st, "usage_usec").unwrap_or(0) * 1000;
    u.user_ns = account::flat_keyed(&st, "user_usec").unwrap_or(0) * 1000;
    u.system_ns = account::flat_keyed(&st, "system_usec").unwrap_or(0) * 1000;
    u.cpu_throttled_ns = account::flat_keyed(&st, "throttled_usec").unwrap_or(0) * 1000;
    cg.sample();
    u.memory_peak_bytes = match fsx::read_if_present(d.join("memory.peak"))? {
        Some(t) => account::single(&t).unwrap_or(0),
        None => cg.memory_seen.get(),
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
        None => cg.pids_seen.get(),
    };
    Ok(())
}
