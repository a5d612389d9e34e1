//! Parse cgroup stat files into a `Usage`. Pure parsers take `&str`; the
//! only I/O is reading the files it is given.

/// What a run used, read from its cgroup before removal.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub user_ns: u64,
    pub system_ns: u64,
    /// Total CPU time (may exceed user+system by rounding on v1).
    pub cpu_ns: u64,
    pub memory_peak_bytes: u64,
    /// Times the kernel's OOM killer killed a task of this cgroup.
    pub oom_kills: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub pids_peak: u64,
    pub cpu_throttled_ns: u64,
    /// Page faults that had to read from disk (memory.stat `pgmajfault`).
    pub major_faults: u64,
}

/// What disturbed a run from outside its cgroup, over its lifetime:
/// differences of machine counters taken at its start and end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disturbance {
    /// Thermal throttle events on the run's CPUs (core and package counts
    /// of /sys/devices/system/cpu/cpuN/thermal_throttle; 0 where the
    /// kernel has none, as in most VMs).
    pub thermal_throttles: u64,
    /// Pages swapped in and out on the whole machine (/proc/vmstat
    /// pswpin, pswpout): swapping while a run ran slows it.
    pub swap_in_pages: u64,
    pub swap_out_pages: u64,
}

impl Disturbance {
    /// Whether anything disturbed the run.
    pub fn any(&self) -> bool {
        self.thermal_throttles + self.swap_in_pages + self.swap_out_pages > 0
    }
}

/// Machine counters a run's disturbance is the difference of.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    thermal: u64,
    /// How many throttle counts were read: a count read at the end but not
    /// at the start would make the difference its whole value.
    thermal_read: u32,
    /// None: /proc/vmstat could not be read.
    swaps: Option<(u64, u64)>,
}

impl Counters {
    /// Reads them below `root` (`/`) for `cpus`: what the machine has of
    /// them (see `Sources`; a machine without swap or thermal counters
    /// costs no read per run).
    pub fn read(root: &std::path::Path, cpus: impl Iterator<Item = u32>) -> Counters {
        Counters::read_from(root, cpus, Sources::of(root))
    }

    pub fn read_from(
        root: &std::path::Path,
        cpus: impl Iterator<Item = u32>,
        sources: Sources,
    ) -> Counters {
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
        let swaps = match sources.swap {
            true => read(root.join("proc/vmstat")).map(|t| vmstat_swaps(&t)),
            false => Some((0, 0)),
        };
        let (mut thermal, mut thermal_read) = (0, 0);
        for cpu in cpus.filter(|_| sources.thermal) {
            let dir = root.join(format!("sys/devices/system/cpu/cpu{cpu}/thermal_throttle"));
            for f in ["core_throttle_count", "package_throttle_count"] {
                if let Some(n) = read(dir.join(f)).and_then(|t| single(&t)) {
                    thermal += n;
                    thermal_read += 1;
                }
            }
        }
        Counters {
            thermal,
            thermal_read,
            swaps,
        }
    }

    /// What happened between `self` (the start) and `end`. A counter read
    /// at only one of the two ends counts nothing rather than its whole
    /// value since boot.
    pub fn since(&self, end: &Counters) -> Disturbance {
        let thermal_throttles = match self.thermal_read == end.thermal_read {
            true => end.thermal.saturating_sub(self.thermal),
            false => 0,
        };
        let (swap_in_pages, swap_out_pages) = match (self.swaps, end.swaps) {
            (Some((i0, o0)), Some((i1, o1))) => (i1.saturating_sub(i0), o1.saturating_sub(o0)),
            _ => (0, 0),
        };
        Disturbance {
            thermal_throttles,
            swap_in_pages,
            swap_out_pages,
        }
    }
}

/// Which machine counters exist below a root: swap devices (/proc/swaps
/// lists one; without one nothing swaps) and thermal throttle counts.
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    pub swap: bool,
    pub thermal: bool,
}

impl Sources {
    pub fn of(root: &std::path::Path) -> Sources {
        Sources {
            swap: std::fs::read_to_string(root.join("proc/swaps"))
                .is_ok_and(|t| t.lines().count() > 1),
            thermal: root
                .join("sys/devices/system/cpu/cpu0/thermal_throttle")
                .is_dir(),
        }
    }
}

/// `pswpin` and `pswpout` of /proc/vmstat text.
pub fn vmstat_swaps(text: &str) -> (u64, u64) {
    (
        flat_keyed(text, "pswpin").unwrap_or(0),
        flat_keyed(text, "pswpout").unwrap_or(0),
    )
}

/// Value of `key` in a flat keyed file ("usage_usec 10\nuser_usec 7\n":
/// cpu.stat, memory.events, memory.oom_control).
pub fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Sums `rbytes` and `wbytes` over every device of a v2 `io.stat`
/// ("8:0 rbytes=1 wbytes=2 rios=3 ...").
pub fn io_stat_v2(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        for field in line.split_whitespace().skip(1) {
            match field.split_once('=') {
                Some(("rbytes", v)) => r += v.parse::<u64>().unwrap_or(0),
                Some(("wbytes", v)) => w += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    (r, w)
}

/// Sums Read and Write over every device of a v1
/// `blkio.throttle.io_service_bytes` ("8:0 Read 4096\n8:0 Write 0\n...Total 4096").
pub fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_dev, op, v] = f.as_slice() {
            let v = v.parse::<u64>().unwrap_or(0);
            match *op {
                "Read" => r += v,
                "Write" => w += v,
                _ => {}
            }
        }
    }
    (r, w)
}

/// User and system time summed over the CPUs of a v1 `cpuacct.usage_all`
/// ("cpu user system\n0 10 20\n1 5 0\n"); None for anything else.
pub fn cpuacct_usage_all(text: &str) -> Option<(u64, u64)> {
    let mut lines = text.lines();
    if lines.next()?.split_whitespace().collect::<Vec<_>>() != ["cpu", "user", "system"] {
        return None;
    }
    let (mut user, mut system) = (0u64, 0u64);
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, u, s] = f.as_slice() else {
            return None;
        };
        user += u.parse::<u64>().ok()?;
        system += s.parse::<u64>().ok()?;
    }
    Some((user, system))
}

/// A single number file ("123\n"); "max" reads as None.
pub fn single(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Splits an exact CPU total in the ratio of sampled user and system times
/// (v1's cpuacct.usage_user/_sys are tick samples that do not add up to
/// cpuacct.usage). Without samples it is all counted as user time.
pub fn split_cpu(total: u64, user: u64, system: u64) -> (u64, u64) {
    let sum = user as u128 + system as u128;
    if sum == 0 {
        return (total, 0);
    }
    let u = (total as u128 * user as u128 / sum) as u64;
    (u, total - u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuacct_usage_all_sums_user_and_system_over_the_cpus() {
        let text = "cpu user system\n0 76000000 579979400\n1 0 52000000\n";
        assert_eq!(cpuacct_usage_all(text), Some((76_000_000, 631_979_400)));
        assert_eq!(cpuacct_usage_all("cpu user system\n"), Some((0, 0)));
        assert_eq!(cpuacct_usage_all("0 1 2\n"), None);
        assert_eq!(cpuacct_usage_all("cpu user system\n0 x 2\n"), None);
    }

    #[test]
    fn disturbance_is_the_difference_of_thermal_and_swap_counters() {
        let root = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let p = root.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w("proc/vmstat", "nr_free_pages 5\npswpin 10\npswpout 20\n");
        w(
            "proc/swaps",
            "Filename Type Size Used Priority\n/swap file 1 0 -2\n",
        );
        w(
            "sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count",
            "0\n",
        );
        w(
            "sys/devices/system/cpu/cpu1/thermal_throttle/core_throttle_count",
            "3\n",
        );
        w(
            "sys/devices/system/cpu/cpu1/thermal_throttle/package_throttle_count",
            "1\n",
        );
        let start = Counters::read(root.path(), [0, 1].into_iter());
        w("proc/vmstat", "pswpin 12\npswpout 20\n");
        w(
            "sys/devices/system/cpu/cpu1/thermal_throttle/core_throttle_count",
            "5\n",
        );
        let d = start.since(&Counters::read(root.path(), [0, 1].into_iter()));
        assert_eq!(
            d,
            Disturbance {
                thermal_throttles: 2,
                swap_in_pages: 2,
                swap_out_pages: 0
            }
        );
        assert!(d.any());
        assert!(!Disturbance::default().any());

        // A count or vmstat unreadable at the start is no disturbance at the
        // end (it was the whole count since boot).
        std::fs::rename(
            root.path().join("proc/vmstat"),
            root.path().join("proc/vmstat.away"),
        )
        .unwrap();
        let pkg = "sys/devices/system/cpu/cpu1/thermal_throttle/package_throttle_count";
        std::fs::remove_file(root.path().join(pkg)).unwrap();
        let start = Counters::read(root.path(), [0, 1].into_iter());
        std::fs::rename(
            root.path().join("proc/vmstat.away"),
            root.path().join("proc/vmstat"),
        )
        .unwrap();
        w(pkg, "7\n");
        let d = start.since(&Counters::read(root.path(), [0, 1].into_iter()));
        assert_eq!(d, Disturbance::default());
    }

    #[test]
    fn cpu_stat_v2_keys() {
        let t = "usage_usec 2000123\nuser_usec 1500000\nsystem_usec 500123\nnr_periods 0\nnr_throttled 0\nthrottled_usec 42\n";
        assert_eq!(flat_keyed(t, "usage_usec"), Some(2000123));
        assert_eq!(flat_keyed(t, "throttled_usec"), Some(42));
        assert_eq!(flat_keyed(t, "usage"), None);
    }

    #[test]
    fn oom_kill_from_v1_oom_control_and_v2_memory_events() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(flat_keyed(v1, "oom_kill"), Some(2));
        let v2 = "low 0\nhigh 0\nmax 17\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(flat_keyed(v2, "oom_kill"), Some(1));
        assert_eq!(flat_keyed(v2, "oom_group_kill"), Some(0));
    }

    #[test]
    fn io_stat_v2_sums_devices() {
        let t = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n8:0 rbytes=100 wbytes=4\n";
        assert_eq!(io_stat_v2(t), (1459300, 314773508));
        assert_eq!(io_stat_v2(""), (0, 0));
    }

    #[test]
    fn blkio_v1_sums_read_and_write_and_skips_total() {
        let t = "254:0 Read 8192\n254:0 Write 67108864\n254:0 Sync 67117056\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 67117056\nTotal 67117056\n";
        assert_eq!(blkio_v1(t), (8192, 67108864));
    }

    #[test]
    fn cpu_total_is_split_in_the_sampled_ratio_and_adds_up() {
        assert_eq!(
            split_cpu(533_000_000, 580_000_000, 20_000_000),
            (515_233_333, 17_766_667)
        );
        let (u, s) = split_cpu(7, 1, 2);
        assert_eq!(u + s, 7);
        assert_eq!(split_cpu(100, 0, 0), (100, 0));
    }

    #[test]
    fn single_values_and_max() {
        assert_eq!(single("123\n"), Some(123));
        assert_eq!(single("max\n"), None);
    }
}
