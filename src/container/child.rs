//! What runs after clone: init (pid 1 in the new pid namespace) and the job
//! (pid 2, its child).
//!
//! Rules for this file: init was made by a raw clone of a possibly
//! multi-threaded runner, so no atfork handler ran and a lock another thread
//! held at that moment (the allocator's, stdio's) stays locked forever here.
//! Usually init even shares the runner's memory (`clone_shared`), while the
//! runner's other threads go on. So: no allocation, no `std::io` printing,
//! no panics, no writes to memory but its own stack and thread-local slots;
//! only system calls on data prepared by `Plan::new` before the clone
//! (signal-safety(7)), through libc wrappers that touch no process-wide
//! state (credentials change by raw system calls, not glibc's setuid, which
//! would signal the runner's threads). Every failure goes to the error pipe
//! as `errno` + "step path" and ends the process with `_exit`.

use super::plan::{Plan, PlanOutput, MAX_BINDS};
use super::rootfs::{MountArgs, MountOp};
use std::ffi::CStr;
use std::os::fd::RawFd;

/// Largest error message (fits in PIPE_BUF, so one write is atomic).
pub const ERR_MAX: usize = 1024;

/// The runner's pipe ends the child uses.
pub struct Fds {
    /// init's end of the go channel (a socket): the go byte after `place`.
    pub go: RawFd,
    /// Write end, close-on-exec: setup errors.
    pub err: RawFd,
    /// Write end: the job's raw wait status, from init.
    pub status: RawFd,
    /// cgroup v1 `tasks` files init joins by writing "0" (prepared before clone).
    pub join_tasks: Vec<RawFd>,
    /// A detached sysfs mount of the run's (pooled) network namespace that
    /// init moves onto /sys, or -1: init mounts a fresh one.
    pub sysfs: RawFd,
    /// Per `MountOp::HostTree` slot: whether the thread that cloned init
    /// mounted that overlay already, in the mount namespace init starts
    /// in (and with slot 0, the host's root, the `MountOp::Stage`).
    /// Not, rootless or where refused: then the host's tree is bound as
    /// it is.
    pub staged: Vec<bool>,
}

thread_local! {
    /// The job's pid, for the signal forwarder. Thread-local, not a plain
    /// static: an init that shares the runner's memory (see
    /// `clone_shared`) runs on the thread-local storage of its own spawner
    /// thread, so each init has its own, while a static would be shared by
    /// all. A const-initialised Cell is a bare TLS slot: safe in a handler.
    static JOB_PID: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// Signals init forwards to the job.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot; always valid.
    unsafe { *libc::__errno_location() }
}

/// Reports `step detail` with `errno` on the error pipe and exits.
fn fail(fds: &Fds, step: &str, detail: &[u8], errno: i32, code: i32) -> ! {
    let mut buf = [0u8; ERR_MAX];
    buf[..4].copy_from_slice(&errno.to_ne_bytes());
    let mut n = 4;
    let sep: &[u8] = if detail.is_empty() { b"" } else { b" " };
    for part in [step.as_bytes(), sep, detail] {
        let take = part.len().min(ERR_MAX - n);
        buf[n..n + take].copy_from_slice(&part[..take]);
        n += take;
    }
    // SAFETY: write(2) from a live stack buffer, then _exit(2), which runs
    // no atexit handlers and flushes nothing (nothing here is shared state).
    unsafe {
        libc::write(fds.err, buf.as_ptr().cast(), n);
        libc::_exit(code)
    }
}

/// `rc == -1` → fail with errno.
fn check(rc: libc::c_long, fds: &Fds, step: &str, detail: &CStr) {
    if rc == -1 {
        fail(fds, step, detail.to_bytes(), errno(), 1);
    }
}

fn opt_ptr(s: &Option<std::ffi::CString>) -> *const libc::c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Closes every descriptor except 0-2 and `keep` (init never execs, so
/// close-on-exec does not help: without this it would hold copies of the
/// runner's descriptors, e.g. other runs' output pipes, for its lifetime).
fn close_others(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut first: u32 = 3;
    for &fd in keep.iter() {
        if fd < 0 || (fd as u32) < first {
            continue;
        }
        if fd as u32 > first {
            // SAFETY: close_range(2) closes descriptors this process owns
            // and will not use; those in `keep` are outside the range.
            unsafe { close_range(first, fd as u32 - 1, 0) };
        }
        first = fd as u32 + 1;
    }
    // SAFETY: as above.
    unsafe { close_range(first, u32::MAX, 0) };
}

/// Every signal back to its default action (the runner's handlers are not
/// meant to run here) and an empty signal mask.
fn reset_signals() {
    // SAFETY: sigaction(2) with SIG_DFL for each catchable signal (failures
    // for SIGKILL/SIGSTOP and unused numbers are expected and harmless);
    // sigprocmask(2) with an empty set built on the stack.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() + 1 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

extern "C" fn forward(sig: libc::c_int) {
    let job = JOB_PID.get();
    if job > 0 {
        // SAFETY: kill(2) is async-signal-safe; errors (job gone) are moot.
        unsafe { libc::kill(job, sig) };
    }
}

fn forwarded_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset(3) on a stack sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Creates (or truncates) a log file for the job, write-only.
fn create(path: &CStr, fds: &Fds) -> RawFd {
    // SAFETY: open(2) on a C string prepared before clone.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o666,
        )
    };
    check(fd as _, fds, "create", path);
    fd
}

/// Starts the job as posix_spawn does: clone(2) with CLONE_VM | CLONE_VFORK
/// on a stack of its own, so init's memory is shared, not copied, and init
/// sleeps until the job has exec'd (or failed and exited). The job only makes
/// system calls on its own stack and on `plan`, which init does not touch
/// meanwhile; it has its own descriptor table, signal handlers and
/// credentials (no CLONE_FILES, CLONE_SIGHAND or CLONE_THREAD).
fn spawn_job(plan: &Plan, fds: &Fds, output: [RawFd; 2], chrooted: bool) -> libc::pid_t {
    type Args<'a> = (&'a Plan, &'a Fds, [RawFd; 2], bool);
    extern "C" fn entry(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points at the tuple on init's stack below, alive:
        // init is suspended until this process has exec'd or exited.
        let (plan, fds, output, chrooted) = unsafe { &*(arg as *const Args<'_>) };
        job_main(plan, fds, *output, *chrooted)
    }
    let pair: Args<'_> = (plan, fds, output, chrooted);
    // SAFETY: clone(3) runs `entry` on the mapped stack prepared before
    // the runner cloned init; see above for the sharing.
    unsafe {
        libc::clone(
            entry,
            plan.job_stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &pair as *const Args<'_> as *mut libc::c_void,
        )
    }
}

/// pid 1 of the container.
pub fn init(plan: &Plan, fds: &Fds) -> ! {
    // The job's log files, made here rather than by the runner (see
    // JobOutput::Files); before joining the run's cgroups, which then
    // count only the run's own work.
    let output = match &plan.output {
        PlanOutput::Fds(stdout, stderr) => [*stdout, *stderr],
        PlanOutput::Files(stdout, stderr) => [create(stdout, fds), create(stderr, fds)],
    };
    // Into the run's cgroups, before anything else runs here.
    for &fd in &fds.join_tasks {
        // SAFETY: write(2) of a live two-byte buffer to a descriptor we hold.
        let n = unsafe { libc::write(fd, c"0".as_ptr().cast(), 1) };
        check(n as _, fds, "join cgroup", c"tasks");
    }
    let mut keep = [
        fds.go,
        fds.err,
        fds.status,
        plan.stdin.unwrap_or(-1),
        output[0],
        output[1],
        fds.sysfs,
    ];
    close_others(&mut keep);
    reset_signals();
    // SAFETY: prctl(2) PR_SET_PDEATHSIG takes a signal number, no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };

    // The other namespaces (see Plan::unshare), owned by the run's user
    // namespace, in which init holds every capability from its clone on,
    // id maps or not: made while the runner writes the maps, not after.
    // The cgroup namespace waits for the go message: its root is the
    // cgroup init sits in then. init keeps its host uid until the job
    // switches: host paths it binds (a results folder below a 0700 home)
    // are reached as their owner, not as an unmapped id.
    set_user_limits(plan, fds);
    // SAFETY: unshare(2) takes flags only.
    let rc = unsafe { libc::unshare(plan.unshare & !libc::CLONE_NEWCGROUP) };
    check(rc as _, fds, "unshare namespaces", c"");
    // SAFETY: sethostname(2) reads `len` bytes of a live C string.
    let rc = unsafe { libc::sethostname(plan.hostname.as_ptr(), plan.hostname.as_bytes().len()) };
    check(rc as _, fds, "sethostname", &plan.hostname);
    if plan.loopback {
        loopback_up(fds);
    }

    // Wait until the runner has placed us in the run's cgroups (and sent
    // the idmapped copies of the job's mounts, if any).
    let mut idmapped = [-1 as RawFd; MAX_BINDS];
    receive_go(fds, &mut idmapped);
    // SAFETY: closing our copy of the go socket, not used again.
    unsafe { libc::close(fds.go) };
    if plan.unshare & libc::CLONE_NEWCGROUP != 0 {
        // SAFETY: unshare(2) takes flags only.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWCGROUP) };
        check(rc as _, fds, "unshare the cgroup namespace", c"");
    }

    let chrooted = build_root(plan, fds, &idmapped);
    // After pivot_root the old root is detached, so every path resolves
    // inside the new root: a successful chdir proves workdir is inside it.
    // SAFETY: chdir(2) on a live C string.
    check(
        unsafe { libc::chdir(plan.workdir.as_ptr()) } as _,
        fds,
        "chdir to workdir",
        &plan.workdir,
    );

    // Block the forwarded signals until the job's pid is known, then install the forwarder.
    let set = forwarded_set();
    // SAFETY: sigprocmask(2) and sigaction(2) with stack structs; `forward`
    // only loads an atomic and calls kill(2), both async-signal-safe.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = forward as *const () as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        for sig in FORWARDED {
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    let job = spawn_job(plan, fds, output, chrooted);
    if job == -1 {
        fail(fds, "fork the job", b"", errno(), 1);
    }
    let job = job as i32;
    JOB_PID.set(job);
    // SAFETY: unblocking with a stack sigset; closing descriptors that only
    // the job needs (its stdio) or that must reach EOF (the error pipe).
    unsafe {
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::close(fds.err);
        for fd in [plan.stdin.unwrap_or(-1), output[0], output[1]] {
            if fd > 2 {
                libc::close(fd);
            }
        }
    }

    reap_until_the_job_ends(job, fds)
}

/// The run's shares of the per-user-namespace limits (inotify,
/// fanotify): /proc/sys/user belongs to the user namespace of whoever
/// opens it, here the run's, in which init holds CAP_SYS_RESOURCE, which
/// the job does not (and its /proc/sys is read-only). The kernel checks a
/// charge against every namespace up the tree, so these bound the run
/// even where its parent's counter is shared with other runs (rootless).
fn set_user_limits(plan: &Plan, fds: &Fds) {
    for (path, value) in &plan.user_limits {
        // SAFETY: open(2), write(2) and close(2) on C strings prepared
        // before clone and a descriptor of our own.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            check(fd as _, fds, "set the run's share of", path);
            let len = value.as_bytes().len();
            let n = libc::write(fd, value.as_ptr().cast(), len);
            if n != len as isize {
                fail(fds, "set the run's share of", path.as_bytes(), errno(), 1);
            }
            libc::close(fd);
        }
    }
}

/// Reaps every process of the namespace until the job ends, then writes
/// the job's status report and exits: init exiting makes the kernel
/// SIGKILL everything left in the pid namespace (pid_namespaces(7)).
fn reap_until_the_job_ends(job: i32, fds: &Fds) -> ! {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes into a local.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == job {
            // With the status go the blocks read and written by every
            // process the namespace reaped (all of them: init is their
            // reaper), which counts direct I/O that cgroup v1's blkio
            // counters miss.
            // SAFETY: rusage is plain integers, for which zero is valid.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: getrusage(2) writes into a local.
            unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
            let mut report = [0u8; 20];
            report[..4].copy_from_slice(&status.to_ne_bytes());
            report[4..12].copy_from_slice(&(ru.ru_inblock as i64).to_ne_bytes());
            report[12..].copy_from_slice(&(ru.ru_oublock as i64).to_ne_bytes());
            // SAFETY: write(2) of the status report from a local; then
            // _exit(2), which runs no atexit handlers.
            unsafe {
                // One write under PIPE_BUF: all or nothing.
                libc::write(fds.status, report.as_ptr().cast(), report.len());
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                libc::_exit(code)
            }
        }
        if pid == -1 && errno() == libc::ECHILD {
            // SAFETY: as above; cannot happen while the job lives.
            unsafe { libc::_exit(1) };
        }
    }
}

#[repr(C)]
pub(super) struct MountAttr {
    pub(super) attr_set: u64,
    pub(super) attr_clr: u64,
    pub(super) propagation: u64,
    pub(super) userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// mount_setattr(2) AT_RECURSIVE MOUNT_ATTR_RDONLY: the whole tree at `path`
/// read-only in one call (kernel ≥ 5.12).
fn read_only(path: &CStr, fds: &Fds, shown: &CStr) {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) reads `size` bytes of a live struct and a live C string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    };
    check(rc, fds, "make read-only (mount_setattr)", shown);
}

/// mkdir -p, without allocating.
fn mkdir_all(path: &CStr, fds: &Fds) {
    let bytes = path.to_bytes_with_nul();
    let mut buf = [0u8; libc::PATH_MAX as usize];
    if bytes.len() > buf.len() {
        fail(fds, "mkdir", path.to_bytes(), libc::ENAMETOOLONG, 1);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    let len = bytes.len() - 1;
    for i in 1..=len {
        if i == len || buf[i] == b'/' {
            let saved = buf[i];
            buf[i] = 0;
            // SAFETY: mkdir(2) on a NUL-terminated prefix in a stack buffer.
            if unsafe { libc::mkdir(buf.as_ptr().cast(), 0o755) } == -1 && errno() != libc::EEXIST {
                fail(fds, "mkdir", path.to_bytes(), errno(), 1);
            }
            buf[i] = saved;
        }
    }
}

/// Makes mounts private, builds the new root and pivots into it. Returns
/// true when the host's root is the initramfs, which pivot_root(2) cannot
/// leave: then the new root is moved onto / and chroot'ed into instead.
fn build_root(plan: &Plan, fds: &Fds, idmapped: &[RawFd; MAX_BINDS]) -> bool {
    make_mounts_private(fds);
    let sources = open_bind_sources(plan, fds);
    // The host's root was bound with everything below it (no overlay).
    let mut host_bound = false;
    for op in &plan.ops {
        match op {
            MountOp::Stage { dir, empty, root } => {
                if fds.staged.first() == Some(&true) {
                    unlock_staged_root(root, fds);
                } else {
                    stage(dir, empty, root, fds);
                }
            }
            MountOp::HostTree {
                slot,
                source,
                target,
                shown,
                ..
            } => {
                let staged = slot.and_then(|s| fds.staged.get(s).copied());
                if host_bound || staged == Some(true) {
                    continue;
                }
                let root = source.to_bytes() == b"/";
                bind_host_tree(source, target, fds, shown, root);
                host_bound = root;
            }
            MountOp::Mount(args) => mount(args, fds),
            MountOp::RootDir(args) => match idmapped[plan.bind_sources.len()] {
                -1 => mount(args, fds),
                tree => move_tree(tree, &args.target, fds, args.what, &args.shown),
            },
            MountOp::ReadOnly { target, shown } => read_only(target, fds, shown),
            MountOp::Bind {
                what,
                slot,
                target,
                shown,
            } => match idmapped[*slot] {
                -1 => bind_from(sources[*slot], target, fds, what, shown),
                tree => move_tree(tree, target, fds, what, shown),
            },
            MountOp::Become => become_job_user(plan, fds),
            MountOp::Sysfs { target } => mount_sysfs(target, fds),
            MountOp::MkdirAll { path } => mkdir_all(path, fds),
            MountOp::Mkdir { path, mode } => mkdir(path, *mode, fds),
            MountOp::Touch { path } => touch(path, fds),
            MountOp::Symlink { target, link } => symlink(target, link, fds),
            MountOp::Mask { path, shown } => mask(path, fds, shown),
            MountOp::ReadOnlyPath { path, shown } => read_only_path(path, fds, shown),
        }
    }
    if enter_root(plan, fds) {
        return true;
    }
    for fd in sources.into_iter().chain(*idmapped).filter(|&fd| fd >= 0) {
        // SAFETY: closing the descriptors opened or received above.
        unsafe { libc::close(fd) };
    }
    false
}

/// The root the thread that cloned init staged (with the overlays below
/// it) bound onto itself: in this namespace, a copy made from the run's
/// user namespace, that root is locked to its parent, and pivot_root(2)
/// refuses a locked new root; the top of a bind is not locked.
fn unlock_staged_root(root: &CStr, fds: &Fds) {
    // SAFETY: mount(2) on a C string prepared before clone.
    let rc = unsafe {
        libc::mount(
            root.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    check(rc as _, fds, "bind the staged root on", c"/");
}

/// The run's staging tmpfs (see MountOp::Stage).
fn stage(dir: &CStr, empty: &CStr, root: &CStr, fds: &Fds) {
    // SAFETY: mount(2) on C strings prepared before clone and static ones.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            dir.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"mode=755,size=64k".as_ptr().cast(),
        )
    };
    check(rc as _, fds, "mount the staging tmpfs on", dir);
    mkdir(empty, 0o555, fds);
    mkdir(root, 0o755, fds);
}

/// The host's tree at `source` bound on `target` with everything below
/// it, as it is (locks taken through it reach the host's inodes). Only
/// the host's root must be there: a mount below it that the job's ids
/// cannot reach (below a directory of host root's only, as docker's are),
/// or that another mount hides, is left out, as the job could not reach
/// it either.
fn bind_host_tree(source: &CStr, target: &CStr, fds: &Fds, shown: &CStr, required: bool) {
    // SAFETY: mount(2) on C strings prepared before clone.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if required {
        check(rc as _, fds, "bind the host's tree", shown);
    }
}

/// Nothing done below leaks back into the runner's mount namespace.
fn make_mounts_private(fds: &Fds) {
    // SAFETY: mount(2) with null source/type/data changes propagation only.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    check(rc as _, fds, "make mounts private on", c"/");
}

/// The sources of the job's binds, opened as the host uid init still
/// has (see Plan::bind_sources), in this mount namespace; -1 past them.
fn open_bind_sources(plan: &Plan, fds: &Fds) -> [RawFd; MAX_BINDS] {
    let mut sources = [-1 as RawFd; MAX_BINDS];
    for (slot, source) in sources.iter_mut().zip(&plan.bind_sources) {
        // SAFETY: open(2) O_PATH on a C string prepared before clone.
        *slot = unsafe { libc::open(source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        check(*slot as _, fds, "open the source of a bind", source);
    }
    sources
}

fn mount(args: &MountArgs, fds: &Fds) {
    // SAFETY: mount(2) on C strings prepared before clone, alive in `plan`.
    let rc = unsafe {
        libc::mount(
            opt_ptr(&args.source),
            args.target.as_ptr(),
            opt_ptr(&args.fstype),
            args.flags,
            opt_ptr(&args.data).cast(),
        )
    };
    check(rc as _, fds, args.what, &args.shown);
}

/// A fresh sysfs on `target`: the one the spawner thread made, moved, or
/// else a new mount.
fn mount_sysfs(target: &CStr, fds: &Fds) {
    let rc = if fds.sysfs >= 0 {
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
        // SAFETY: move_mount(2) of a descriptor we hold onto a live C string.
        unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fds.sysfs,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        }
    } else {
        // SAFETY: mount(2) on a live C string and static ones.
        unsafe {
            libc::mount(
                c"sysfs".as_ptr(),
                target.as_ptr(),
                c"sysfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
                std::ptr::null(),
            ) as libc::c_long
        }
    };
    check(rc, fds, "mount sysfs on", c"/sys");
}

fn mkdir(path: &CStr, mode: libc::mode_t, fds: &Fds) {
    // SAFETY: mkdir(2) on a C string prepared before clone.
    if unsafe { libc::mkdir(path.as_ptr(), mode) } == -1 && errno() != libc::EEXIST {
        fail(fds, "mkdir", path.to_bytes(), errno(), 1);
    }
}

/// An empty file (to bind something onto).
fn touch(path: &CStr, fds: &Fds) {
    // SAFETY: open(2) on a C string prepared before clone; the new
    // descriptor is closed right away.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            // Read-only: an existing mount point need not be writable
            // (on an idmapped root it belongs to the run's ids).
            libc::O_CREAT | libc::O_RDONLY | libc::O_CLOEXEC,
            0o644,
        )
    };
    check(fd as _, fds, "create", path);
    // SAFETY: as above.
    unsafe { libc::close(fd) };
}

fn symlink(target: &CStr, link: &CStr, fds: &Fds) {
    // SAFETY: symlink(2) on C strings prepared before clone.
    let rc = unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) };
    if rc == -1 && errno() != libc::EEXIST {
        fail(fds, "symlink", link.to_bytes(), errno(), 1);
    }
}

/// runc's masking: /dev/null bound over a file, an empty read-only tmpfs
/// over a directory, nothing when `path` is missing.
fn mask(path: &CStr, fds: &Fds, shown: &CStr) {
    // SAFETY: mount(2) on a C string prepared before clone and static ones.
    let rc = unsafe {
        libc::mount(
            c"/dev/null".as_ptr(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc == -1 {
        match errno() {
            libc::ENOENT => {}
            libc::ENOTDIR => {
                // SAFETY: as above.
                let rc = unsafe {
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        path.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        c"size=0".as_ptr().cast(),
                    )
                };
                check(rc as _, fds, "mask", shown);
            }
            e => fail(fds, "mask", shown.to_bytes(), e, 1),
        }
    }
}

/// runc's read-only paths: `path` bound onto itself read-only; nothing
/// when it is missing.
fn read_only_path(path: &CStr, fds: &Fds, shown: &CStr) {
    // SAFETY: mount(2) on a C string prepared before clone.
    let rc = unsafe {
        libc::mount(
            path.as_ptr(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if rc == -1 && errno() == libc::ENOENT {
        return;
    }
    check(rc as _, fds, "bind read-only path", shown);
    read_only(path, fds, shown);
}

/// Into the new root: pivot_root(2), or, where the host's root is the
/// initramfs, a move onto / and chroot (then returns true).
fn enter_root(plan: &Plan, fds: &Fds) -> bool {
    // runc's trick: pivot_root(".", ".") stacks the old root on top of the
    // new one; unmounting "." (lazily) then detaches the old root with every
    // mount under it, without needing a put_old directory in a read-only tree.
    // SAFETY: chdir(2), pivot_root(2), umount2(2), mount(2) and chroot(2)
    // on C strings that live in `plan` or are static.
    unsafe {
        check(
            libc::chdir(plan.root.as_ptr()) as _,
            fds,
            "chdir to new root",
            &plan.root,
        );
        let rc = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr());
        if rc == -1 && errno() == libc::EINVAL && root_is_initramfs() {
            // The initramfs (rootfs) has no parent mount, so pivot_root
            // refuses to move it; runc's answer for such hosts: move the
            // new root over / and chroot into it. The job gets no
            // capability that could undo a chroot (see job_main).
            check(
                libc::mount(
                    c".".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_MOVE,
                    std::ptr::null(),
                ) as _,
                fds,
                "move the new root onto /",
                &plan.root,
            );
            check(libc::chroot(c".".as_ptr()) as _, fds, "chroot", &plan.root);
            check(libc::chdir(c"/".as_ptr()) as _, fds, "chdir", c"/");
            return true;
        }
        check(rc, fds, "pivot_root", &plan.root);
        check(
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH) as _,
            fds,
            "detach old root",
            c"",
        );
        check(libc::chdir(c"/".as_ptr()) as _, fds, "chdir", c"/");
    }
    false
}

/// Reads the go message: one byte, then a byte per mount of the job (1:
/// an idmapped copy of it comes along, in order, as SCM_RIGHTS). Exits
/// when the runner gave up (or died) before sending it.
fn receive_go(fds: &Fds, idmapped: &mut [RawFd; MAX_BINDS]) {
    let mut data = [0u8; 1 + MAX_BINDS];
    // Room for a cmsghdr and MAX_BINDS descriptors, aligned for cmsghdr.
    let mut control = [0u64; 2 + MAX_BINDS / 2];
    // SAFETY: recvmsg(2) into local buffers whose sizes the msghdr states;
    // the CMSG_* helpers only compute addresses inside `control`.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        let n = loop {
            let n = libc::recvmsg(fds.go, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 1 {
                break n as usize;
            }
            if n == 0 || errno() != libc::EINTR {
                libc::_exit(1);
            }
        };
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return;
        }
        let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
        let received = libc::CMSG_DATA(cmsg) as *const RawFd;
        let mut k = 0;
        for (slot, &flag) in idmapped.iter_mut().zip(&data[1..n]) {
            if flag == 1 && k < count {
                *slot = received.add(k).read_unaligned();
                k += 1;
            }
        }
    }
}

/// Attaches a detached mount (an idmapped copy the runner made) at `target`.
fn move_tree(tree: RawFd, target: &CStr, fds: &Fds, what: &str, shown: &CStr) {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: move_mount(2) of a descriptor we hold onto a live C string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(rc, fds, what, shown);
}

/// Binds the tree at `source` (an O_PATH descriptor) onto `target`, with
/// everything mounted below it: open_tree(2) OPEN_TREE_CLONE|AT_RECURSIVE,
/// then move_mount(2), as mount --rbind does by path.
fn bind_from(source: RawFd, target: &CStr, fds: &Fds, what: &str, shown: &CStr) {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: open_tree(2) and move_mount(2) on our descriptors and C
    // strings prepared before clone; the clone's descriptor is closed.
    unsafe {
        let tree = libc::syscall(
            libc::SYS_open_tree,
            source,
            c"".as_ptr(),
            OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | libc::AT_EMPTY_PATH as libc::c_uint
                | AT_RECURSIVE,
        );
        check(tree, fds, what, shown);
        let rc = libc::syscall(
            libc::SYS_move_mount,
            tree as RawFd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        libc::close(tree as RawFd);
        check(rc, fds, what, shown);
    }
}

/// init takes the job's ids inside its user namespace (see MountOp::Become).
/// Its capabilities there stay: cloned by root, init's ids are host
/// root's, which the namespace does not map, so the kernel's rules for
/// leaving root (capabilities(7)) do not apply; cloned with the run's
/// root as effective uid (see spawner::become_owner), init is the
/// namespace's root once the maps are written, and leaving it would clear
/// its capabilities: PR_SET_KEEPCAPS keeps the permitted ones and the
/// effective ones are raised again. A change of credentials clears the
/// parent-death signal, which is set again.
fn become_job_user(plan: &Plan, fds: &Fds) {
    let (uid, gid) = plan.job_ids;
    // SAFETY: raw setgroups(2), setresgid(2), setresuid(2) on stack values
    // (glibc's wrappers would signal the runner's threads: see the top),
    // and prctl(2) with integers.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1 as libc::c_ulong) as _,
            fds,
            "prctl PR_SET_KEEPCAPS",
            c"",
        );
        let rc = libc::syscall(libc::SYS_setgroups, 1, &gid as *const libc::gid_t);
        // Denied where only the user's own ids are mapped: they keep theirs.
        if rc == -1 && errno() != libc::EPERM {
            fail(fds, "setgroups", b"", errno(), 1);
        }
        check(
            libc::syscall(libc::SYS_setresgid, gid, gid, gid),
            fds,
            "take the job's gid",
            c"",
        );
        check(
            libc::syscall(libc::SYS_setresuid, uid, uid, uid),
            fds,
            "take the job's uid",
            c"",
        );
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        check(
            libc::syscall(
                libc::SYS_capget,
                &header as *const CapHeader,
                data.as_mut_ptr(),
            ),
            fds,
            "capget",
            c"",
        );
        for d in &mut data {
            d.effective = d.permitted;
        }
        check(
            libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()),
            fds,
            "capset",
            c"",
        );
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
}

/// Whether / is the initramfs: the rootfs mount, which has no parent
/// (its statfs type is ramfs or tmpfs, and "/.." is "/" itself at the
/// top of the mount tree). Checked only after pivot_root said EINVAL.
fn root_is_initramfs() -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    // SAFETY: statfs(2) into a zeroed local.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c"/".as_ptr(), &mut st) } == -1 {
        return false;
    }
    matches!(st.f_type as i64, RAMFS_MAGIC | TMPFS_MAGIC)
}

fn loopback_up(fds: &Fds) {
    if let Err((step, errno)) = set_loopback_up() {
        fail(fds, step, b"lo", errno, 1);
    }
}

/// `ip link set lo up` in the caller's network namespace, via
/// SIOCGIFFLAGS/SIOCSIFFLAGS on a socket (netdevice(7)). Allocates nothing;
/// an error is the failed step and errno.
pub(super) fn set_loopback_up() -> Result<(), (&'static str, i32)> {
    // SAFETY: socket(2); ioctl(2) on a zeroed `ifreq` whose name is "lo"
    // (NUL-terminated, shorter than IFNAMSIZ); the kernel reads and writes
    // only that struct. The socket is closed on every path.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock == -1 {
            return Err(("socket for", errno()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut result = Ok(());
        if libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut ifr) == -1 {
            result = Err(("SIOCGIFFLAGS", errno()));
        } else {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &ifr) == -1 {
                result = Err(("SIOCSIFFLAGS up", errno()));
            }
        }
        libc::close(sock);
        result
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// pid 2: the job, from privileges down to execve.
fn job_main(plan: &Plan, fds: &Fds, output: [RawFd; 2], chrooted: bool) -> ! {
    reset_signals();
    refuse_chroot_escapes(plan, fds, chrooted);
    // SAFETY: setsid(2) takes no arguments.
    check(unsafe { libc::setsid() } as _, fds, "setsid", c"");
    set_stdio(plan, fds, output);
    set_limits(plan, fds);
    // Capabilities (capabilities(7)): shrink the bounding set while we
    // still hold CAP_SETPCAP, switch user keeping the permitted set,
    // then set effective/permitted/inheritable and ambient to the kept ones.
    drop_from_bounding_set(plan, fds);
    take_job_ids(plan, fds);
    // SAFETY: prctl(2) with integers.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    check(rc as _, fds, "prctl PR_SET_NO_NEW_PRIVS", c"");
    set_capabilities(plan, fds);
    load_seccomp(plan, fds);
    exec(plan, fds)
}

/// In a chroot (see build_root), CAP_SYS_CHROOT leads out of it (chroot
/// into a subdirectory, then `..` past the old root) and CAP_SYS_ADMIN
/// could unmount the new root: neither is handed out there.
fn refuse_chroot_escapes(plan: &Plan, fds: &Fds, chrooted: bool) {
    const ESCAPES: u64 = (1 << 18) | (1 << 21); // CAP_SYS_CHROOT, CAP_SYS_ADMIN;
    if chrooted && plan.caps & ESCAPES != 0 {
        fail(
            fds,
            "keep CAP_SYS_CHROOT or CAP_SYS_ADMIN: the host's root is the initramfs, where a run is only chroot'ed, and these capabilities would lead out of it",
            b"",
            libc::EPERM,
            1,
        );
    }
}

/// The job's stdin (or /dev/null), stdout and stderr on 0-2, and nothing
/// else of the runner's beyond exec.
fn set_stdio(plan: &Plan, fds: &Fds, output: [RawFd; 2]) {
    // SAFETY: open(2) on a C string prepared before clone; fcntl(2),
    // dup2(2) and close_range(2) on descriptors this process holds (the
    // job owns its copy of init's table).
    unsafe {
        // First above 2, so that dup2 onto 0-2 cannot clobber a source.
        let stdin = match plan.stdin {
            Some(fd) => fd,
            None => {
                let fd = libc::open(plan.dev_null.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                check(fd as _, fds, "open", &plan.dev_null);
                fd
            }
        };
        let mut high = [0; 3];
        for (i, fd) in [stdin, output[0], output[1]].into_iter().enumerate() {
            high[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
            check(high[i] as _, fds, "dup stdio", c"");
        }
        for (i, fd) in high.into_iter().enumerate() {
            check(libc::dup2(fd, i as i32) as _, fds, "dup2 stdio", c"");
        }
        // Nothing of the runner's beyond stdio reaches the job.
        close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    }
}

/// rlimits and the memory policy.
fn set_limits(plan: &Plan, fds: &Fds) {
    // SAFETY: setrlimit(2) and set_mempolicy(2) read stack structs and a
    // mask prepared before clone, alive in `plan`.
    unsafe {
        for (resource, value, name) in &plan.rlimits {
            let lim = libc::rlimit {
                rlim_cur: *value,
                rlim_max: *value,
            };
            check(
                libc::setrlimit(*resource as _, &lim) as _,
                fds,
                "setrlimit",
                name,
            );
        }
        if let Some((mode, mask)) = &plan.mempolicy {
            let maxnode = mask.len() * libc::c_ulong::BITS as usize + 1;
            check(
                libc::syscall(libc::SYS_set_mempolicy, *mode, mask.as_ptr(), maxnode),
                fds,
                "set_mempolicy",
                c"",
            );
        }
    }
}

/// Drops every capability not kept from the bounding set (needs
/// CAP_SETPCAP, so before the ids change).
fn drop_from_bounding_set(plan: &Plan, fds: &Fds) {
    for cap in 0..=plan.last_cap {
        // SAFETY: prctl(2) with integers.
        if plan.caps & (1 << cap) == 0
            && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) } == -1
            && errno() != libc::EINVAL
        {
            fail(
                fds,
                "drop capability from the bounding set",
                b"",
                errno(),
                1,
            );
        }
    }
}

/// The job's ids: in its user namespace always (init kept the host uid
/// it was cloned with, which the namespace does not map), with the host's
/// ids only when `user` asks; the permitted capabilities are kept.
fn take_job_ids(plan: &Plan, fds: &Fds) {
    if !(plan.userns || plan.user.is_some()) {
        return;
    }
    let (uid, gid) = plan.job_ids;
    // SAFETY: prctl(2) with integers; raw setgroups(2), setresgid(2) and
    // setresuid(2) on stack values.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1 as libc::c_ulong) as _,
            fds,
            "prctl PR_SET_KEEPCAPS",
            c"",
        );
        // Raw system calls: glibc's wrappers broadcast the change to
        // every thread it believes exists (nptl setxid), waiting forever
        // on the runner's threads, which do not exist in this process.
        // A rootless namespace that maps the user's own ids alone has
        // setgroups denied (the user keeps their own groups there).
        let rc = libc::syscall(libc::SYS_setgroups, 1, &gid as *const libc::gid_t);
        if rc == -1 && !(plan.userns && errno() == libc::EPERM) {
            fail(fds, "setgroups", b"", errno(), 1);
        }
        check(
            libc::syscall(libc::SYS_setresgid, gid, gid, gid),
            fds,
            "setresgid",
            c"",
        );
        check(
            libc::syscall(libc::SYS_setresuid, uid, uid, uid),
            fds,
            "setresuid",
            c"",
        );
    }
}

/// Effective, permitted, inheritable and ambient capabilities: the kept ones.
fn set_capabilities(plan: &Plan, fds: &Fds) {
    // SAFETY: prctl(2) with integers; capset(2) reads a stack header and
    // a stack array of two data structs (version 3).
    unsafe {
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) == -1
            && errno() != libc::EINVAL
        {
            fail(fds, "clear ambient capabilities", b"", errno(), 1);
        }
        let (lo, hi) = (plan.caps as u32, (plan.caps >> 32) as u32);
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: lo,
                permitted: lo,
                inheritable: lo,
            },
            CapData {
                effective: hi,
                permitted: hi,
                inheritable: hi,
            },
        ];
        check(
            libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()),
            fds,
            "capset",
            c"",
        );
        for cap in 0..=plan.last_cap {
            if plan.caps & (1 << cap) != 0 {
                let rc = libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                );
                check(rc as _, fds, "raise ambient capability", c"");
            }
        }
    }
}

/// The seccomp filters, in order.
fn load_seccomp(plan: &Plan, fds: &Fds) {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const seccompiler::sock_filter,
    }
    for prog in plan.seccomp {
        let fprog = SockFprog {
            len: prog.len() as libc::c_ushort,
            filter: prog.as_ptr(),
        };
        // SAFETY: seccomp(2) reads a stack sock_fprog pointing into a
        // program compiled before clone, alive for the process.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const SockFprog,
            )
        };
        check(rc, fds, "seccomp", c"");
    }
}

/// execve(2) of the first PATH candidate that runs (execvpe's rule:
/// report EACCES over ENOENT).
fn exec(plan: &Plan, fds: &Fds) -> ! {
    let mut err = libc::ENOENT;
    for path in &plan.candidates {
        // SAFETY: execve(2) on a C string and null-terminated arrays of
        // pointers into C strings, all prepared before clone and alive in
        // `plan`.
        unsafe {
            libc::execve(
                path.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.env_ptrs.as_ptr(),
            )
        };
        match errno() {
            libc::ENOENT | libc::ENOTDIR => {}
            e => {
                err = e;
                if e != libc::EACCES {
                    break;
                }
            }
        }
    }
    fail(fds, "execve", plan.argv0.to_bytes(), err, 127)
}

/// close_range(2) through the raw system call: musl's libc has no wrapper.
///
/// # Safety
/// The caller must own every descriptor in the range and not use any of
/// them afterwards (with flags 0), as with close(2).
unsafe fn close_range(first: u32, last: u32, flags: libc::c_uint) -> libc::c_long {
    // SAFETY: the syscall takes three integers; soundness is the caller's contract above.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) }
}
