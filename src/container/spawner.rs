//! What the spawner thread does for its init before clone, in its own
//! context only: joins the pooled network namespace (and makes the sysfs
//! that shows it), mounts the host tree's overlays in a mount namespace
//! of its own, and takes the run's owner as its effective ids.

use super::config::HostTree;
use super::plan::Plan;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// In the calling thread: joins the network namespace `net` and makes a
/// detached, read-only sysfs mount for it (fsopen, fsconfig, fsmount),
/// which init moves onto the run's /sys. A sysfs shows the network
/// devices of the namespace of whoever makes it, and only a process with
/// CAP_SYS_ADMIN over the namespace's owner may make one: init, in a user
/// namespace of its own, is not that for a namespace the runner made.
#[cfg(target_arch = "x86_64")]
pub(super) fn join_network(net: RawFd) -> io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // MOUNT_ATTR_RDONLY | NOSUID | NODEV | NOEXEC
    const ATTRS: libc::c_uint = 0x1 | 0x2 | 0x4 | 0x8;
    // SAFETY: setns(2) on a descriptor the caller keeps open; it moves
    // this thread alone, which only clones init afterwards.
    if unsafe { libc::setns(net, libc::CLONE_NEWNET) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // Without root, in packrun's own user namespace: fsopen(2) needs
    // CAP_SYS_ADMIN over the owner of the caller's mount namespace, which
    // is the host's; a copy of it for this thread alone is packrun's.
    // SAFETY: unshare(2) with flags only; it changes this thread's file
    // system context and mount namespace, which init then inherits.
    if !super::plan::is_root() && unsafe { libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) } == -1
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsopen(2) with a static C string; we own the new descriptor.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"sysfs".as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by no one else.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    // SAFETY: fsconfig(2) and fsmount(2) on our fs context, with null key
    // and value as FSCONFIG_CMD_CREATE takes them.
    unsafe {
        if libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        let m = libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, ATTRS);
        if m < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(m as RawFd))
    }
}

/// In the calling (spawner) thread only: the effective uid and gid
/// become the run's `uid` and `gid`, so that the user namespace it clones
/// next belongs to them (user_namespaces(7): a namespace's owner is its
/// creator's effective uid), while everything else stays as root's: the
/// real and saved ids stay 0, the file-system ids go back to 0 (the
/// runner's files and cgroups are reached as before: CLONE_INTO_CGROUP
/// checks write permission on cgroup.procs with them), and the effective
/// capabilities, which the kernel clears when the effective uid leaves 0,
/// are raised again from the permitted set that a real uid of 0 keeps
/// (capabilities(7)). init inherits exactly these credentials. The thread
/// never switches back: it only sleeps in clone3 until init is gone, then
/// ends. Raw system calls, because glibc's setresuid changes every thread
/// of the process (nptl setxid).
///
/// The change of effective ids also makes the runner's memory, which init
/// shares, not dumpable (PR_SET_DUMPABLE 0): its /proc files stay host
/// root's and nothing in a run's user namespace may ptrace init.
#[cfg(target_arch = "x86_64")]
pub(super) fn become_owner(uid: u32, gid: u32) -> io::Result<()> {
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const KEEP: libc::c_long = -1;
    let ok = |rc: libc::c_long| {
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: raw setresgid(2), setfsgid(2), setresuid(2), setfsuid(2) on
    // integers, and capget(2)/capset(2) on a stack header and a stack
    // array of two data structs (version 3); they change this thread only.
    unsafe {
        ok(libc::syscall(
            libc::SYS_setresgid,
            KEEP,
            gid as libc::c_long,
            KEEP,
        ))?;
        libc::syscall(libc::SYS_setfsgid, 0 as libc::c_long);
        ok(libc::syscall(
            libc::SYS_setresuid,
            KEEP,
            uid as libc::c_long,
            KEEP,
        ))?;
        libc::syscall(libc::SYS_setfsuid, 0 as libc::c_long);
        let mut header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        ok(libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ))?;
        for d in &mut data {
            d.effective = d.permitted;
        }
        ok(libc::syscall(
            libc::SYS_capset,
            &header as *const CapHeader,
            data.as_ptr(),
        ))?;
    }
    Ok(())
}

/// Mounts, in a mount namespace of the calling thread's own, the run's
/// staging tmpfs and the overlays of the host's tree (`Plan::stage` and
/// `Plan::host_trees`): whether each overlay was mounted. Here, as the
/// runner's ids in a namespace of the host's user namespace, the host's
/// mounts are not locked, as they are in the run's. Nothing if the
/// namespace cannot be made or the staging tmpfs not mounted.
#[cfg(target_arch = "x86_64")]
pub(super) fn stage_host_tree(
    stage: &Option<[CString; 3]>,
    host_trees: &[(CString, CString)],
) -> Vec<bool> {
    let Some([dir, empty, root]) = stage else {
        return Vec::new();
    };
    if host_trees.is_empty() {
        return Vec::new();
    }
    // SAFETY: unshare(2) and mount(2) with flags and C strings of the
    // plan; they change this thread's own file system context and mount
    // namespace (a private copy), not the runner's.
    unsafe {
        if libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) == -1
            || libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == -1
            || libc::mount(
                c"tmpfs".as_ptr(),
                dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=755,size=64k".as_ptr().cast(),
            ) == -1
            || libc::mkdir(empty.as_ptr(), 0o555) == -1
            || libc::mkdir(root.as_ptr(), 0o755) == -1
        {
            return Vec::new();
        }
        let mut staged = Vec::with_capacity(host_trees.len());
        for (target, data) in host_trees {
            // The host's root first: without it, nothing below.
            let ok = staged.first() != Some(&false)
                && libc::mount(
                    c"overlay".as_ptr(),
                    target.as_ptr(),
                    c"overlay".as_ptr(),
                    libc::MS_RDONLY,
                    data.as_ptr().cast(),
                ) == 0;
            staged.push(ok);
        }
        staged
    }
}

impl HostTree {
    /// The pooled tree for `plan` to join: `offered` when it was made for
    /// the same overlays and is still fresh, else a new one; None where
    /// the plan has no overlays or they could not be made (then the
    /// spawner thread mounts its own, as without the pool).
    pub(super) fn for_plan(plan: &mut Plan, offered: Option<HostTree>) -> Option<HostTree> {
        let stage = plan.stage.as_ref()?;
        if plan.host_trees.is_empty() {
            return None;
        }
        let tree = match offered {
            Some(t) if t.fresh() && &t.stage == stage && t.trees == plan.host_trees => t,
            _ => HostTree::new(plan)?,
        };
        plan.join_tree = Some((tree.ns.as_raw_fd(), tree.staged.clone()));
        Some(tree)
    }

    /// Mounts the plan's staging tmpfs and overlays in a mount namespace
    /// of a thread of its own, which ends right after.
    #[cfg(target_arch = "x86_64")]
    fn new(plan: &Plan) -> Option<HostTree> {
        let (stage, trees) = (&plan.stage, &plan.host_trees[..]);
        let made = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("host-tree".into())
                .stack_size(64 << 10)
                .spawn_scoped(s, || {
                    let staged = stage_host_tree(stage, trees);
                    if staged.is_empty() {
                        return None;
                    }
                    let ns = std::fs::File::open("/proc/thread-self/ns/mnt").ok()?;
                    Some((OwnedFd::from(ns), staged))
                })
                .ok()?
                .join()
                .ok()?
        });
        let (ns, staged) = made?;
        Some(HostTree {
            ns,
            stage: plan.stage.clone()?,
            trees: plan.host_trees.clone(),
            staged,
            made: std::time::Instant::now(),
        })
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn new(_plan: &Plan) -> Option<HostTree> {
        None
    }
}

/// In the calling thread: joins the mount namespace `ns` (a pooled
/// `HostTree`) with a file system context of its own; false where the
/// kernel refused.
#[cfg(target_arch = "x86_64")]
pub(super) fn join_mount_namespace(ns: RawFd) -> bool {
    // SAFETY: unshare(2) and setns(2) on a namespace descriptor the
    // container holds until init runs; they change this thread's own file
    // system context and mount namespace, not the runner's.
    unsafe { libc::unshare(libc::CLONE_FS) == 0 && libc::setns(ns, libc::CLONE_NEWNS) == 0 }
}
