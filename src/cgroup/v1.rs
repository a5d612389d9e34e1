//! cgroup v1: a directory per controller mount, limits and counters in
//! each controller's own files.

use super::{CgroupError, Limits, RunCgroup};
use crate::account::{self, Usage};
use crate::fsx;
use std::path::Path;

/// v1 cpuset: a new group starts with empty cpus and mems, and the kernel
/// refuses tasks until both are set, and refuses a child's value that is not
/// a subset of its parent's (EACCES). A group another packrun has just made
/// may still be empty: fill it from its parent, the parent first.
pub(super) fn fill_v1_cpuset(top: &Path, dir: &Path) -> Result<(), CgroupError> {
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

/// Memory (with socket buffers), CPU quota, pids and I/O limits, each in
/// its controller's directory (the cpuset is written before, for both
/// versions).
pub(super) fn apply(cg: &RunCgroup, l: &Limits) -> Result<(), CgroupError> {
    if let Some(d) = cg.dir_of("devices") {
        for line in super::devices::v1_deny_lines(&l.deny_devices) {
            fsx::write(d.join("devices.deny"), line)?;
        }
    }
    let mem = cg.dir_of("memory");
    let cpu = cg.dir_of("cpu");
    let pids = cg.dir_of("pids");
    if let Some(d) = &mem {
        if let Some(m) = l.memory {
            fsx::write(d.join("memory.limit_in_bytes"), m.to_string())?;
            // Swap off: memory+swap equal to memory (only with swap accounting).
            fsx::write_if_present(d.join("memory.memsw.limit_in_bytes"), m.to_string())?;
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
    if let Some(d) = cg.dir_of("blkio") {
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
    Ok(())
}

/// What the run used, from each controller's counters.
pub(super) fn usage(cg: &RunCgroup, u: &mut Usage) -> Result<(), CgroupError> {
    let read = |d: &Path, f: &str| fsx::read_to_string(d.join(f));
    if let Some(d) = cg.dir_of("cpuacct") {
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
    if let Some(d) = cg.dir_of("memory") {
        if let Some(st) = fsx::read_if_present(d.join("memory.stat"))? {
            u.major_faults = account::flat_keyed(&st, "pgmajfault").unwrap_or(0);
        }
        // Pages and socket buffers are two counters on v1: the peak
        // is the sum of their maxima (at least the peak of the sum).
        let tcp = fsx::read_if_present(d.join("memory.kmem.tcp.max_usage_in_bytes"))?;
        u.memory_peak_bytes = account::single(&read(&d, "memory.max_usage_in_bytes")?).unwrap_or(0)
            + tcp.as_deref().and_then(account::single).unwrap_or(0);
        u.oom_kills =
            account::flat_keyed(&read(&d, "memory.oom_control")?, "oom_kill").unwrap_or(0);
    }
    if let Some(d) = cg.dir_of("blkio") {
        let text = match fsx::read_if_present(d.join("blkio.throttle.io_service_bytes_recursive"))?
        {
            Some(t) => Some(t),
            None => fsx::read_if_present(d.join("blkio.throttle.io_service_bytes"))?,
        };
        if let Some(t) = text {
            (u.io_read_bytes, u.io_write_bytes) = account::blkio_v1(&t);
        }
    }
    if let Some(d) = cg.dir_of("cpu") {
        if let Some(st) = fsx::read_if_present(d.join("cpu.stat"))? {
            u.cpu_throttled_ns = account::flat_keyed(&st, "throttled_time").unwrap_or(0);
        }
    }
    // Newer kernels keep pids.peak on v1 too; older ones only the samples
    // (a last one taken here, where the file is missing).
    let peak = match cg.dir_of("pids") {
        Some(d) => fsx::read_if_present(d.join("pids.peak"))?,
        None => None,
    };
    u.pids_peak = match peak {
        Some(t) => account::single(&t).unwrap_or(0),
        None => {
            cg.sample();
            cg.pids_seen.get()
        }
    };
    Ok(())
}
