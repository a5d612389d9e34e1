//! The raw clone: clone3(2) with CLONE_VM | CLONE_VFORK from a spawner
//! thread (init shares the runner's memory), the futex the thread and the
//! runner meet on, the copying clone where that cannot be, and init's
//! stack. The riskiest unsafe code of the crate: kept to this file.

use super::child;
use super::plan::Plan;
use super::spawner::{become_owner, join_mount_namespace, join_network, stage_host_tree};
use super::stack::ChildStack;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;

/// clone(2): CLONE_INTO_CGROUP (libc's constant is deprecated: it overflows a c_int).
pub(super) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone(2): struct clone_args, CLONE_ARGS_SIZE_VER2 (88 bytes, with `cgroup`).
#[repr(C)]
#[derive(Default)]
pub(super) struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What init needs while it shares the runner's memory, owned by its
/// spawner thread until init is gone.
pub(super) struct SpawnData {
    pub(super) plan: Plan,
    pub(super) fds: child::Fds,
    /// init's stack (unused where there is no shared clone).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) stack: ChildStack,
}

// SAFETY: the raw pointers in `Plan` (argv and envp arrays, the job's stack)
// and in `ChildStack` point into memory the same value owns (the CStrings'
// and Vecs' heap buffers, the mappings), which moving it to another thread
// neither moves nor frees; nothing else refers to them.
unsafe impl Send for SpawnData {}

/// The thread blocked in clone3 while its init lives: None when init ran,
/// else the error and the data back (for the copying clone to use).
pub(super) type Spawner = std::thread::JoinHandle<Option<(io::Error, Box<SpawnData>)>>;

/// clone3(2) with CLONE_VM | CLONE_VFORK from a thread of its own, as
/// posix_spawn starts a process from a multi-threaded program: init shares
/// the runner's memory instead of getting a copy, so no page table is
/// copied at the clone, no page is copied when the runner or init writes it
/// afterwards, and none is freed at init's exit. The spawner thread sleeps
/// in clone3 until init is gone; the runner's other threads go on. init
/// runs on a stack of its own and on the spawner thread's thread-local
/// storage (errno: that thread does nothing meanwhile), allocates nothing
/// and only reads `plan` and `fds`, which the thread owns until init is
/// gone (see child.rs). Returns init's pid and pidfd once the kernel has
/// stored them (before init runs), and the thread.
/// Where the kernel stores init's pid and pidfd (before init first
/// runs), and the word init sets to 1 (and wakes) once it runs, or the
/// thread sets to 2 when clone3 failed.
struct Ids {
    pid: AtomicI32,
    pidfd: AtomicI32,
    state: AtomicU32,
    /// Set by the runner once it has its copy of the pidfd (1), or
    /// kept the kernel's (2): see the end of the thread.
    taken: AtomicU32,
}
struct InitArgs<'a> {
    plan: &'a Plan,
    fds: &'a child::Fds,
    state: &'a AtomicU32,
}
#[cfg(target_arch = "x86_64")]
extern "C" fn entry(arg: *mut libc::c_void) -> ! {
    // SAFETY: `arg` points at the InitArgs on the spawner thread's
    // stack, which sleeps in clone3 until init is gone.
    let args = unsafe { &*(arg as *const InitArgs<'_>) };
    args.state.store(1, Ordering::Release);
    futex_wake(args.state);
    child::init(args.plan, args.fds)
}

#[cfg(target_arch = "x86_64")]
pub(super) fn clone_shared(
    plan: Plan,
    cgroup_dir: Option<BorrowedFd<'_>>,
    fds: child::Fds,
) -> Result<(i32, OwnedFd, Spawner), SpawnFailed> {
    let stack = ChildStack::new().map_err(|e| (e, None))?;
    let data = Box::new(SpawnData { plan, fds, stack });
    let ids = Arc::new(Ids {
        pid: AtomicI32::new(0),
        pidfd: AtomicI32::new(-1),
        state: AtomicU32::new(0),
        taken: AtomicU32::new(0),
    });
    let cgroup = cgroup_dir.map(|d| d.as_raw_fd());
    let thread_ids = Arc::clone(&ids);
    let thread = std::thread::Builder::new()
        .name("packrun-init".into())
        .stack_size(64 << 10)
        .spawn(move || {
            let mut data = data;
            let sysfs = match before_clone(&mut data) {
                Ok(sysfs) => sysfs,
                Err(e) => {
                    thread_ids.state.store(2, Ordering::Release);
                    futex_wake(&thread_ids.state);
                    return Some((e, data));
                }
            };
            let (lowest, size) = data.stack.usable();
            let mut args = CloneArgs {
                flags: data.plan.flags
                    | (libc::CLONE_VM
                        | libc::CLONE_VFORK
                        | libc::CLONE_PIDFD
                        | libc::CLONE_PARENT_SETTID) as u64,
                pidfd: thread_ids.pidfd.as_ptr() as u64,
                parent_tid: thread_ids.pid.as_ptr() as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: lowest,
                stack_size: size,
                ..Default::default()
            };
            if let Some(fd) = cgroup {
                args.flags |= CLONE_INTO_CGROUP;
                args.cgroup = fd as u64;
            }
            let init_args = InitArgs {
                plan: &data.plan,
                fds: &data.fds,
                state: &thread_ids.state,
            };
            // SAFETY: see `clone3_on_stack`; `args`, the id slots (kept
            // alive by `thread_ids`), `init_args` and `data` outlive the
            // call, which returns only once init has exited.
            let rc = unsafe {
                clone3_on_stack(
                    &mut args,
                    entry,
                    &init_args as *const InitArgs<'_> as *mut libc::c_void,
                )
            };
            drop(sysfs);
            if rc < 0 {
                thread_ids.state.store(2, Ordering::Release);
                futex_wake(&thread_ids.state);
                return Some((io::Error::from_raw_os_error(-rc as i32), data));
            }
            // clone3 returns once init let go of its memory, before its
            // mount namespace is gone: see `outlive_init`.
            while thread_ids.taken.load(Ordering::Acquire) == 0 {
                futex_wait(&thread_ids.taken, 0);
            }
            if thread_ids.taken.load(Ordering::Acquire) == 1 {
                outlive_init(
                    thread_ids.pidfd.load(Ordering::Acquire),
                    data.fds.staged.first() == Some(&true),
                );
            }
            None
        })
        // The closure, with the plan, is gone with the failed spawn.
        .map_err(|e| (e, None))?;
    while ids.state.load(Ordering::Acquire) == 0 {
        futex_wait(&ids.state, 0);
    }
    let pid = ids.pid.load(Ordering::Acquire);
    if ids.state.load(Ordering::Acquire) == 1 && pid > 0 {
        let pidfd = ids.pidfd.load(Ordering::Acquire);
        // A copy for the runner; the thread closes the kernel's once init
        // is gone. Without a copy, the runner keeps the kernel's.
        // SAFETY: fcntl(2) F_DUPFD_CLOEXEC on the live pidfd the kernel
        // stored, which the thread does not close before `taken` is set.
        let copy = unsafe { libc::fcntl(pidfd, libc::F_DUPFD_CLOEXEC, 0) };
        let (fd, taken) = if copy >= 0 { (copy, 1) } else { (pidfd, 2) };
        ids.taken.store(taken, Ordering::Release);
        futex_wake(&ids.taken);
        // SAFETY: a descriptor that only the runner owns from here on.
        return Ok((pid, unsafe { OwnedFd::from_raw_fd(fd) }, thread));
    }
    ids.taken.store(2, Ordering::Release);
    futex_wake(&ids.taken);
    Err(match thread.join() {
        Ok(Some((e, data))) => (e, Some(data)),
        Ok(None) => (io::Error::other("init's pid was not stored"), None),
        Err(_) => (io::Error::other("the thread starting init panicked"), None),
    })
}

/// The spawner thread's own set-up before it clones init: into the pooled
/// network namespace first (init, made in a user namespace of its own,
/// could not join it), then the host's tree as the run's overlays (see
/// MountOp::HostTree), mounted in a mount namespace of this thread's (or a
/// pooled one joined), which init's is a copy of, and last the run's
/// owner as effective ids, so that the user namespace clone3 makes next
/// belongs to the run's root's host id. Returns the sysfs mount of the
/// joined network namespace, held until init has its copy.
#[cfg(target_arch = "x86_64")]
fn before_clone(data: &mut SpawnData) -> io::Result<Option<OwnedFd>> {
    let sysfs = match data.plan.join_net {
        Some(net) => match join_network(net) {
            Ok(fd) => {
                data.fds.sysfs = fd.as_raw_fd();
                Some(fd)
            }
            Err(e) => {
                data.plan.own_network().map_err(|_| e)?;
                None
            }
        },
        None => None,
    };
    data.fds.staged = match &data.plan.join_tree {
        Some((ns, staged)) if join_mount_namespace(*ns) => staged.clone(),
        _ => stage_host_tree(&data.plan.stage, &data.plan.host_trees),
    };
    if let Some((uid, gid)) = data.plan.owner {
        become_owner(uid, gid)?;
    }
    Ok(sysfs)
}

/// The spawner thread, holding the kernel's pidfd of init (which the
/// runner took a copy of), waits for init's end when the run has overlays
/// of its own, so that they are torn down here (an RCU grace period
/// each), after the run, not in init's exit, which the run's end waits
/// for. Pooled overlays, which a `HostTree` holds, are torn down when the
/// pool lets them go (`HostTree::retire`).
#[cfg(target_arch = "x86_64")]
fn outlive_init(pidfd: RawFd, own_overlays: bool) {
    // SAFETY: the kernel's pidfd, which the runner left to this thread (it
    // took a copy); nothing else closes it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    if !own_overlays {
        return;
    }
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one live pollfd.
    while unsafe { libc::poll(&mut p, 1, -1) } == -1
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

/// futex(2) FUTEX_WAIT while `word` is `expected` (returns at once otherwise,
/// or on a spurious wake-up: callers loop).
#[cfg(target_arch = "x86_64")]
fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: futex(2) on a live, aligned u32 of this process, no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// futex(2) FUTEX_WAKE for every waiter on `word`. Private futexes work
/// between init and the runner: they share one address space.
#[cfg(target_arch = "x86_64")]
fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: futex(2) on a live, aligned u32 of this address space.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Why `clone_shared` did not start init, with the plan back when the
/// copying clone may still start it (clone3 refused before running it).
pub(super) type SpawnFailed = (io::Error, Option<Box<SpawnData>>);

/// Elsewhere: no shared clone (the trampoline is x86_64 assembly), so
/// always the copying clone.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn clone_shared(
    plan: Plan,
    _cgroup_dir: Option<BorrowedFd<'_>>,
    fds: child::Fds,
) -> Result<(i32, OwnedFd, Spawner), SpawnFailed> {
    let stack = ChildStack {
        base: std::ptr::null_mut(),
        len: 0,
    };
    Err((
        io::Error::from_raw_os_error(libc::ENOSYS),
        Some(Box::new(SpawnData { plan, fds, stack })),
    ))
}

/// clone3(2) whose child starts on `args.stack` and calls `entry(arg)`.
/// Returns the child's pid, or -errno. A raw system call, because the
/// child cannot return into the caller's frames: with CLONE_VM they are the
/// parent's, on the parent's stack.
///
/// # Safety
/// `args` must describe a mapped stack that nothing else uses, and `entry`
/// must not return and must only touch memory that stays valid and
/// unwritten by others while the child may use it.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_on_stack(
    args: &mut CloneArgs,
    entry: extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> i64 {
    let rc: i64;
    // The child returns from `syscall` with rax = 0 and rsp at the top of
    // its stack (16-byte aligned, so `call` leaves the alignment the ABI
    // expects at entry); r12 and r13 survive the system call. rbp = 0 ends
    // backtraces there.
    // SAFETY: the caller's contract above.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => rc,
            in("rdi") args as *mut CloneArgs,
            in("rsi") size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rc
}

/// clone3(2) (with CLONE_INTO_CGROUP when a cgroup is given), falling back
/// to clone(2) where clone3 is missing. Returns init's pid and pidfd; the
/// child never returns from here.
pub(super) fn clone(
    plan: &Plan,
    cgroup_dir: Option<BorrowedFd<'_>>,
    fds: &child::Fds,
) -> io::Result<(i32, OwnedFd)> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: plan.flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(dir) = cgroup_dir {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = dir.as_raw_fd() as u64;
    }
    // SAFETY: clone3(2) without CLONE_VM and with a null stack behaves like
    // fork(2): the child gets a copy of this address space and returns here
    // on a copy of this stack. `args` and `pidfd` outlive the call. In the
    // child we only call `child::init`, which never returns and never
    // allocates (see its docs).
    let mut rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // No clone3 (kernel < 5.3, or a seccomp profile hiding it): plain
        // clone; the caller's `place` moves init into its cgroups instead.
        // SAFETY: clone(2) with a null stack and no CLONE_VM is fork-like
        // (as above); with CLONE_PIDFD the pidfd is stored through the
        // parent_tid argument, the third on every architecture.
        rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                plan.flags | libc::CLONE_PIDFD as u64 | libc::SIGCHLD as u64,
                0usize,
                &mut pidfd as *mut libc::c_int,
                0usize,
                0usize,
            )
        };
    }
    match rc {
        -1 => Err(io::Error::last_os_error()),
        0 => child::init(plan, fds),
        pid => {
            // SAFETY: the kernel stored a new pidfd that nothing else owns.
            Ok((pid as i32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
        }
    }
}
