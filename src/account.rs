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
}
