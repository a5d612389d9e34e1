//! A run's share of what the kernel counts per user or for the whole
//! machine, with no cgroup to bound it.
//!
//! Per user, charged up the user-namespace tree: inotify instances and
//! watches, fanotify groups and marks (`/proc/sys/user/max_*`, one set
//! per user namespace), and the rlimits the kernel sums over a user's
//! processes (`sigpending`, `msgqueue`, `memlock`). Every level of the
//! tree counts what is charged below it, up to the host's counter of the
//! namespace's owner (the host uid that made it). As root each run's
//! namespace is made by a host uid of the run's own id block, so a run
//! charges a counter no one else uses; rootless, every run's namespace
//! belongs to the user, so the runs split the user's limit: each gets a
//! share. Machine-wide, with no per-user split at all: AIO contexts
//! (`fs.aio-max-nr`) and ptys (`kernel.pty.max`).
//!
//! A share is the limit divided by the runs that can run at once (one per
//! CPU packrun may use) plus one, which is left to the owner's own
//! processes outside any run: the user's shell and tools rootless.

use std::path::Path;
use std::sync::OnceLock;

/// The per-user-namespace limits each run's init sets in its own
/// namespace (name under /proc/sys/user).
pub const USER_SYSCTLS: [&str; 4] = [
    "max_inotify_instances",
    "max_inotify_watches",
    "max_fanotify_groups",
    "max_fanotify_marks",
];

/// The rlimits the kernel sums per user (across a user namespace's
/// processes of one uid), which each run gets a share of unless its job
/// sets them in `rlimits:`.
pub const SHARED_RLIMITS: [&str; 3] = ["sigpending", "msgqueue", "memlock"];

/// The host's limits and each run's share of them, read once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shares {
    /// Runs that can run at once: the CPUs this process may use.
    pub slots: u32,
    /// (name under /proc/sys/user, host value, share), where readable.
    pub user: Vec<(&'static str, u64, u64)>,
    /// (rlimit name, the runner's soft limit, share; u64::MAX = unlimited).
    pub rlimits: Vec<(&'static str, u64, u64)>,
    /// fs.aio-max-nr and the most events one io_setup(2) of a run that
    /// opts into AIO may ask for.
    pub aio: Option<(u64, u64)>,
    /// kernel.pty.max minus kernel.pty.reserve (what every devpts but the
    /// host's shares) and each run's devpts `max=`.
    pub pty: Option<(u64, u64)>,
}

/// `limit` split between `slots` runs and the owner: at least 1;
/// unlimited stays unlimited.
pub fn share(limit: u64, slots: u32) -> u64 {
    if limit == u64::MAX {
        return limit;
    }
    (limit / (u64::from(slots) + 1)).max(1)
}

/// The shares from the host's values (`proc` is /proc; the rlimits are
/// given as read).
pub fn compute(proc: &Path, slots: u32, rlimits: &[(&'static str, u64)]) -> Shares {
    let read = |rel: &str| -> Option<u64> {
        std::fs::read_to_string(proc.join(rel))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    let user = USER_SYSCTLS
        .iter()
        .filter_map(|&name| {
            let host = read(&format!("sys/user/{name}"))?;
            Some((name, host, share(host, slots)))
        })
        .collect();
    let rlimits = rlimits
        .iter()
        .map(|&(name, soft)| {
            let mut s = share(soft, slots);
            // Locked memory is locked in pages.
            if name == "memlock" && s != u64::MAX {
                s = (s / 4096 * 4096).max(4096).min(soft);
            }
            (name, soft, s)
        })
        .collect();
    let aio = read("sys/fs/aio-max-nr").map(|max| (max, share(max, slots)));
    let pty = read("sys/kernel/pty/max")
        .zip(read("sys/kernel/pty/reserve"))
        .map(|(max, reserve)| {
            let open = max.saturating_sub(reserve);
            (open, share(open, slots))
        });
    Shares {
        slots,
        user,
        rlimits,
        aio,
        pty,
    }
}

/// This machine's shares, read once per process.
pub fn shares() -> &'static Shares {
    static SHARES: OnceLock<Shares> = OnceLock::new();
    SHARES.get_or_init(|| {
        let slots = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .ok()
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&c| set.is_set(c).unwrap_or(false))
                    .count() as u32
            })
            .filter(|&n| n > 0)
            .unwrap_or(1);
        compute(Path::new("/proc"), slots, &own_rlimits())
    })
}

/// This process's soft limits of `SHARED_RLIMITS`, what runs share.
pub fn own_rlimits() -> Vec<(&'static str, u64)> {
    SHARED_RLIMITS
        .iter()
        .filter_map(|&name| Some((name, soft_rlimit(name)?)))
        .collect()
}

/// This process's soft limit (u64::MAX for unlimited).
fn soft_rlimit(name: &str) -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource};
    let res = match name {
        "sigpending" => Resource::RLIMIT_SIGPENDING,
        "msgqueue" => Resource::RLIMIT_MSGQUEUE,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        _ => return None,
    };
    let (soft, _) = getrlimit(res).ok()?;
    Some(if soft == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        soft
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_leaves_one_part_to_the_owner_and_is_never_zero() {
        assert_eq!(share(128, 2), 42);
        assert_eq!(share(128, 1), 64);
        assert_eq!(share(3, 8), 1);
        assert_eq!(share(u64::MAX, 4), u64::MAX);
    }

    #[test]
    fn shares_come_from_the_hosts_proc_values() {
        let dir = std::env::temp_dir().join(format!("packrun-shares-{}", std::process::id()));
        for (rel, v) in [
            ("sys/user/max_inotify_instances", "128\n"),
            ("sys/user/max_fanotify_marks", "205042\n"),
            ("sys/fs/aio-max-nr", "65536\n"),
            ("sys/kernel/pty/max", "4096\n"),
            ("sys/kernel/pty/reserve", "1024\n"),
        ] {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        }
        let s = compute(&dir, 2, &[("memlock", 8 << 20), ("sigpending", u64::MAX)]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            s.user,
            [
                ("max_inotify_instances", 128, 42),
                ("max_fanotify_marks", 205042, 68347)
            ]
        );
        assert_eq!(
            s.rlimits,
            [
                ("memlock", 8 << 20, 2793472),
                ("sigpending", u64::MAX, u64::MAX)
            ]
        );
        assert_eq!(s.aio, Some((65536, 21845)));
        assert_eq!(s.pty, Some((3072, 1024)));
    }
}
