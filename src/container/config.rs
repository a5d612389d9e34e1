//! What a container is given and what it reports: its configuration, how
//! setup failed, how the job ended.

use super::ids;
use crate::cpulist::CpuList;
use crate::jobfile::{MemPolicy, Mount, Network, Rootfs};
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Everything the container needs to start one run.
#[derive(Debug)]
pub struct ContainerConfig {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub hostname: String,
    pub rootfs: Rootfs,
    pub network: Network,
    pub mounts: Vec<Mount>,
    /// Device nodes bound into its /dev: (host path, path inside), e.g.
    /// its GPUs' nodes.
    pub devices: Vec<(PathBuf, PathBuf)>,
    /// (host directory, target inside) bound read-write.
    pub writable: Vec<(PathBuf, PathBuf)>,
    pub user: Option<(u32, u32)>,
    pub capabilities: Vec<String>,
    /// (resource name like "nofile", value) soft = hard.
    pub rlimits: Vec<(String, u64)>,
    /// set_mempolicy for the job.
    pub mempolicy: Option<(MemPolicy, CpuList)>,
    /// Job's stdin (None = /dev/null).
    pub stdin: Option<OwnedFd>,
    /// Job's stdout and stderr.
    pub output: JobOutput,
    /// cgroup v1 `tasks` files of the run's groups, opened for writing:
    /// init writes "0" to each before anything else, moving itself in. A
    /// task moving itself skips the RCU grace period that writing another
    /// task's pid to cgroup.procs waits for (10-17 ms on a busy machine).
    pub join_tasks: Vec<OwnedFd>,
    /// With `Network::None`: a network namespace to join (see
    /// `new_network_namespace`) instead of making a fresh one. A batch
    /// reuses one for runs that never overlap in time, since making a
    /// network namespace and the kernel's deferred teardown of it are the
    /// most expensive part of a short run. Joined by the thread that
    /// clones init, before the clone: a namespace the runner made belongs
    /// to the host's user namespace, which init (in its own) could not join.
    /// Ignored where init is cloned the copying way (rootless).
    pub netns: Option<OwnedFd>,
    /// On the host's tree, as root: the run's overlays come from a pool
    /// (see `HostTree`): `host_tree` is one a run before this one used,
    /// which the run takes when it was made for the same overlays and is
    /// still fresh; else the run makes a new one. Either way the
    /// container keeps it for `Container::take_host_tree`, for a later
    /// run. Without `pool_host_tree` each run mounts its own overlays.
    pub pool_host_tree: bool,
    pub host_tree: Option<HostTree>,
    /// The run's uid and gid maps: its own user namespace. None: the
    /// host's ids (`userns: host`, root only).
    pub ids: Option<ids::IdMaps>,
    /// Host paths to cover with a fresh tmpfs besides `jobfile::HIDDEN_PATHS`.
    pub hidden: Vec<PathBuf>,
    /// Paths of `jobfile::HIDDEN_PATHS` to leave visible (read-only).
    pub visible: Vec<PathBuf>,
    /// `container.aio`: the job may make AIO contexts (io_setup(2)), each
    /// of at most the run's share of fs.aio-max-nr events; without it
    /// io_setup says ENOSYS, as on a kernel without AIO.
    pub aio: bool,
}

/// Where the job's stdout and stderr go.
#[derive(Debug)]
pub enum JobOutput {
    /// These descriptors.
    Fds { stdout: OwnedFd, stderr: OwnedFd },
    /// Files that init creates (or truncates) as its first step, before it
    /// joins the run's cgroups, rather than the runner: making a new inode
    /// is slow on some file systems (ext4 without a journal scans for
    /// recently deleted ones), and the runner's one thread is what limits a
    /// batch of short runs. A relative path is from the runner's directory.
    Files { stdout: PathBuf, stderr: PathBuf },
}

impl ContainerConfig {
    /// `argv` in a container of the host's root, read-only, with no network,
    /// hostname "packrun", no extra mounts, limits or capabilities, stdin
    /// from /dev/null; set the other fields with struct update syntax.
    pub fn new(argv: Vec<String>, stdout: OwnedFd, stderr: OwnedFd) -> ContainerConfig {
        ContainerConfig {
            argv,
            env: Vec::new(),
            workdir: None,
            hostname: "packrun".into(),
            rootfs: Rootfs::Host,
            network: Network::None,
            mounts: Vec::new(),
            devices: Vec::new(),
            writable: Vec::new(),
            user: None,
            capabilities: Vec::new(),
            rlimits: Vec::new(),
            mempolicy: None,
            stdin: None,
            output: JobOutput::Fds { stdout, stderr },
            join_tasks: Vec::new(),
            netns: None,
            pool_host_tree: false,
            host_tree: None,
            ids: default_ids(),
            hidden: Vec::new(),
            visible: Vec::new(),
            aio: false,
        }
    }
}

/// The maps of a run on CPU 0 with root inside, from this machine's source
/// (see `ids`): what `ContainerConfig::new` gives. None where the source
/// has no ids for it.
pub fn default_ids() -> Option<ids::IdMaps> {
    ids::IdSource::host(ids::machine_slots())
        .maps(0, (0, 0))
        .ok()
}

/// Why a container did not start: the step and errno.
#[derive(Debug, Clone, thiserror::Error)]
#[error("container setup failed at {step}: {message}")]
pub struct SetupError {
    pub step: String,
    pub message: String,
}

impl SetupError {
    pub(super) fn new(step: impl Into<String>, message: impl Into<String>) -> Self {
        SetupError {
            step: step.into(),
            message: message.into(),
        }
    }

    pub(super) fn os(step: impl Into<String>, err: io::Error) -> Self {
        match err.raw_os_error() {
            Some(errno) => SetupError::new(step, describe_errno(errno)),
            None => SetupError::new(step, err.to_string()),
        }
    }
}

/// "No such file or directory (ENOENT)".
pub(super) fn describe_errno(errno: i32) -> String {
    let e = nix::errno::Errno::from_raw(errno);
    format!("{} ({e:?})", e.desc())
}

/// How the job ended, as init saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobStatus {
    /// The job's exit code when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed the job (or init, when init itself was killed
    /// from outside, e.g. by the cgroup kill, before it could report).
    pub signal: Option<i32>,
    /// Bytes read and written through the block layer by every process of
    /// the run (getrusage of init's reaped children, 512-byte blocks), when
    /// init reported them.
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
}

/// Default PATH when the job's environment has none (the one runc and docker use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long after it was made a pooled `HostTree` is still handed to a
/// new run. Overlayfs leaves it undefined what a mount shows of changes
/// made to its lower layers (the host's tree) while it is mounted: a path
/// an earlier run looked up may still show the file it found then. A run
/// whose overlays come from the pool sees the host's tree as it is, or
/// for paths looked up before as it was, at most this long before it
/// started; a run that starts later gets new overlays.
pub const HOST_TREE_REUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// A mount namespace of the runner's (held by a descriptor) with a run's
/// staging tmpfs and read-only overlays of the host's tree mounted, as the
/// spawner thread mounts them (`stage_host_tree`): handed from a run that
/// ended to a later one, whose spawner thread joins it instead of mounting
/// its own, and init's namespace is a copy of it. Mounting an overlay
/// per mount of the host's, and the kernel's teardown of each (an RCU
/// grace period per superblock), cost a batch of short runs 7-15% of
/// its time. Sharing them between runs that never overlap in time keeps
/// a run's locks in the run: a lock on an overlay's inode is held by the
/// run's processes or their open files, all gone once its init exited,
/// before the namespace goes back (`Container::take_host_tree`). Runs at
/// the same time never share one. The namespace, its tmpfs and overlays
/// live only as long as the descriptor: at the latest, with packrun.
#[derive(Debug)]
pub struct HostTree {
    pub(super) ns: OwnedFd,
    pub(super) stage: [CString; 3],
    pub(super) trees: Vec<(CString, CString)>,
    pub(super) staged: Vec<bool>,
    pub(super) made: std::time::Instant,
}

impl HostTree {
    /// Still young enough to hand to a run (`HOST_TREE_REUSE`).
    pub fn fresh(&self) -> bool {
        self.made.elapsed() < HOST_TREE_REUSE
    }

    /// Drops `trees` on a thread of their own: the last descriptor of a
    /// mount namespace closed tears its overlays down, an RCU grace
    /// period each, which the run loop should not wait for.
    pub fn retire(trees: Vec<HostTree>) {
        if trees.is_empty() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("host-tree-end".into())
            .stack_size(64 << 10)
            .spawn(move || drop(trees));
        // Without a thread they are dropped here, with the closure.
        drop(spawned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_described_with_its_name() {
        assert_eq!(
            describe_errno(libc::ENOENT),
            "No such file or directory (ENOENT)"
        );
    }
}
