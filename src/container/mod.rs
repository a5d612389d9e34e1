//! Clone into namespaces, build the root, drop privileges, exec.
//! All `unsafe` of the crate lives here; every block says why it is sound.
//!
//! Shape of a container (`spawn.rs` starts it, `child.rs` is the code that
//! runs after clone, `handle.rs` what the runner holds afterwards):
//!
//! ```text
//! runner ──clone3──▶ init (pid 1: new pid[, user] ns; from a spawner
//!   │                      thread with CLONE_VM|CLONE_VFORK: see clone_shared)
//!   │ place(pid) in cgroups     │ waits for the go byte
//!   │ [uid/gid maps]            │ unshare mount, uts, ipc, net[, cgroup] ns
//!   │                           │ mounts, pivot_root, hostname, lo up, chdir
//!   │ go byte ───────────────▶  │ fork ──▶ job (pid 2): setsid, stdio, rlimits, mempolicy,
//!   │                           │          uid/gid, no_new_privs, capabilities, seccomp, execve
//!   │ ◀── error pipe: EOF after the job's execve, or "step: errno"
//!   │                           │ reaps everything, forwards SIGTERM/SIGINT/..., writes the
//!   │ ◀── status pipe: the job's raw wait status; init then exits (which kills the namespace)
//! ```
//!
//! Everything the child needs (C strings, the mount list of `rootfs.rs`,
//! the seccomp programs, the exec candidates) is prepared before clone
//! (`plan::Plan`), from the `config.rs` types: the runner may
//! have threads, and after a raw clone the child must not allocate (another
//! thread may have held the allocator's lock at the moment of the clone).
//!
//! User ids (see `ids`): every run has a user namespace of its own. As
//! root its ids map to a block of unprivileged host ids, and the namespace
//! is made by the host id of the run's root (`spawner::become_owner`), so
//! that what the kernel counts per user is charged to the run (`shares`);
//! rootless it maps the job's ids to the user's (and subordinate ids).
#![allow(unsafe_code)]

mod caps;
mod child;
mod clone;
mod config;
mod handle;
pub mod ids;
mod plan;
mod rootfs;
mod seccomp;
pub mod shares;
mod spawn;
mod spawner;
mod stack;

pub use config::{
    default_ids, ContainerConfig, HostTree, JobOutput, JobStatus, SetupError, DEFAULT_PATH,
    HOST_TREE_REUSE,
};
pub use handle::Container;
pub use rootfs::remove_stale_root_dirs;
pub use spawn::{
    enter_user_namespace, in_own_user_namespace, new_network_namespace, restore_default_sigpipe,
    spawn, spawn_async,
};
