//! Starting a container: prepare its plan (plan.rs), clone its init
//! (clone.rs), put it in its cgroups, write its id maps and hand it the
//! idmapped copies of its mounts with the go message.

use super::clone::{clone, clone_shared};
use super::config::HostTree;
use super::handle::{give_to_job, Container};
use super::plan::{is_root, make_mount_points, Plan};
use super::rootfs::path_cstr;
use super::rootfs::{make_root_dir, RootDir};
use super::{child, ids};
use super::{ContainerConfig, SetupError};
use crate::jobfile::Rootfs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Starts the container and waits until the job has exec'd: see
/// `spawn_async`, then `Container::wait_setup`. On a setup error the
/// container is gone (killed and reaped) when this returns.
pub fn spawn(
    cfg: ContainerConfig,
    cgroup_dir: Option<BorrowedFd<'_>>,
    place: &mut dyn FnMut(i32) -> std::io::Result<()>,
) -> Result<Container, SetupError> {
    let mut c = spawn_async(cfg, cgroup_dir, place)?;
    c.wait_setup()?; // on error, dropping `c` kills and reaps it
    Ok(c)
}

/// Starts the container. `place` is called with init's host pid while init
/// waits, to put it in the run's cgroups before anything else happens; on
/// v2 `cgroup_dir` (an open cgroup directory) lets clone3 start it there.
///
/// Returns as soon as init was told to go, while it still builds the root:
/// poll `Container::setup_fd` and call `Container::poll_setup` to learn
/// when the job has exec'd or which step failed (then drop the container:
/// that kills and reaps it). Errors up to the go byte are returned here,
/// the container gone. Init gets PR_SET_PDEATHSIG(SIGKILL): it dies, with
/// its namespace, when the thread that cloned it exits: the spawner thread
/// of `clone_shared`, which lives as long as init, or else the caller, so
/// call this from a thread that outlives the run (the run loop).
pub fn spawn_async(
    mut cfg: ContainerConfig,
    cgroup_dir: Option<BorrowedFd<'_>>,
    place: &mut dyn FnMut(i32) -> std::io::Result<()>,
) -> Result<Container, SetupError> {
    let root =
        RootDir(make_root_dir().map_err(|e| SetupError::os("create the root directory", e))?);
    let mut plan = Plan::new(&cfg, &root.0)?;
    let host_tree = match cfg.pool_host_tree && is_root() {
        true => HostTree::for_plan(&mut plan, cfg.host_tree.take()),
        false => None,
    };
    if let (Rootfs::Dir(dir), true) = (&cfg.rootfs, cfg.ids.is_some() && is_root()) {
        make_mount_points(&plan, &root.0, dir)?;
    }
    let writable: Vec<PathBuf> = cfg.writable.iter().map(|(h, _)| h.clone()).collect();
    for dir in &writable {
        give_to_job(dir, cfg.ids.as_ref(), cfg.user).map_err(|e| SetupError::new("prepare", e))?;
    }
    let (go_r, go_w) = go_channel().map_err(|e| SetupError::os("socketpair", e))?;
    let (err_r, err_w) = pipe().map_err(|e| SetupError::os("pipe", e))?;
    let (status_r, status_w) = pipe().map_err(|e| SetupError::os("pipe", e))?;
    set_nonblocking(&err_r).map_err(|e| SetupError::os("pipe", e))?;
    let fds = child::Fds {
        go: go_r.as_raw_fd(),
        err: err_w.as_raw_fd(),
        status: status_w.as_raw_fd(),
        join_tasks: cfg.join_tasks.iter().map(|f| f.as_raw_fd()).collect(),
        sysfs: -1,
        staged: Vec::new(),
    };

    // Rootless runs keep the copying clone: newuidmap may need init to be
    // a process of its own, and a pooled network namespace is not theirs.
    // A rootless run on a private network (packrun in a user namespace of
    // its own) takes the shared clone: its spawner thread joins the
    // network namespace made for it before the clone.
    let (pid, pidfd, spawner) = match is_root() || plan.private_net {
        false => {
            let mut plan = plan;
            plan.own_network()
                .and_then(|()| clone(&plan, cgroup_dir, &fds))
                .map(|(pid, fd)| (pid, fd, None))
        }
        true => match clone_shared(plan, cgroup_dir, fds) {
            Ok((pid, fd, thread)) => Ok((pid, fd, Some(thread))),
            // No clone3 (see `clone`): the copying clone, which falls back
            // to clone(2), in a network namespace of its own.
            Err((e, Some(mut data))) if e.raw_os_error() == Some(libc::ENOSYS) => data
                .plan
                .own_network()
                .and_then(|()| clone(&data.plan, cgroup_dir, &data.fds))
                .map(|(pid, fd)| (pid, fd, None)),
            Err((e, _)) => Err(e),
        },
    }
    .map_err(|e| SetupError::os("clone", e))?;
    drop((go_r, err_w, status_w));
    let netns = cfg.netns.take();
    let ids = cfg.ids.take();
    // What the runner makes idmapped copies of, in the order of init's
    // slots: the mounts, no writable dir (those are the job's own, see
    // give_to_job), then a directory root.
    let mut to_idmap: Vec<Option<PathBuf>> =
        cfg.mounts.iter().map(|m| Some(m.source.clone())).collect();
    to_idmap.extend(cfg.writable.iter().map(|_| None));
    if let Rootfs::Dir(dir) = &cfg.rootfs {
        to_idmap.push(Some(dir.clone()));
    }
    drop(cfg); // the job's stdio now belongs to the container
    let mut container = Container {
        pid,
        pidfd,
        spawner,
        netns,
        host_tree,
        ids,
        writable,
        status: status_r,
        setup: Some(err_r),
        setup_msg: Vec::new(),
        root: None,
        reaped: false,
    };

    if let Some(ids) = &container.ids {
        write_id_maps(pid, ids).map_err(|e| SetupError::new("write uid/gid maps", e))?;
    }
    place(pid).map_err(|e| SetupError::new("place in cgroups", e.to_string()))?;
    let idmapped = match &container.ids {
        Some(_) if is_root() => idmapped_mounts(pid, &to_idmap),
        _ => Vec::new(),
    };
    let sent = send_go(&go_w, &idmapped);
    drop(idmapped);
    if sent.is_err() {
        let write_err = sent.expect_err("checked");
        // init is gone: its error (if any) is on the error pipe.
        container.root = Some(root);
        container.wait_setup()?;
        return Err(SetupError::os("start init", write_err));
    }
    drop(go_w);
    container.root = Some(root);
    Ok(container)
}

/// Idmapped copies of the job's mounts (mount_setattr(2)
/// MOUNT_ATTR_IDMAP with the run's user namespace): through them the
/// host's ids show as the run's, so host root's files are the run's
/// root's, and what the job writes lands as the host ids it maps to. Only
/// the runner can make them (CAP_SYS_ADMIN over the file system's user
/// namespace, the host's); init attaches them. None where the file system
/// cannot idmap (kernel < 5.12, NFS, tmpfs before 6.3): that bind is a
/// plain one, where the job reaches files as its mapped ids.
fn idmapped_mounts(pid: i32, sources: &[Option<PathBuf>]) -> Vec<Option<OwnedFd>> {
    if sources.iter().all(Option::is_none) {
        return Vec::new();
    }
    let Ok(userns) = std::fs::File::open(format!("/proc/{pid}/ns/user")) else {
        return Vec::new();
    };
    sources
        .iter()
        .map(|s| {
            s.as_ref()
                .and_then(|s| idmapped(s, userns.as_raw_fd()).ok())
        })
        .collect()
}

fn idmapped(source: &Path, userns: RawFd) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let path = path_cstr(source).map_err(|e| io::Error::other(e.to_string()))?;
    // SAFETY: open_tree(2) on a live C string; we own the new descriptor.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by no one else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attr = child::MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    // SAFETY: mount_setattr(2) reads `size` bytes of a live struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const child::MountAttr,
            size_of::<child::MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// The go message (see child::receive_go): a byte, a byte per mount saying
/// whether its idmapped copy comes along, and those copies as SCM_RIGHTS.
/// MSG_NOSIGNAL: an init that died of a setup error gives EPIPE, not a
/// SIGPIPE that would end the runner.
fn send_go(sock: &OwnedFd, idmapped: &[Option<OwnedFd>]) -> io::Result<()> {
    let mut data = vec![1u8];
    data.extend(idmapped.iter().map(|m| u8::from(m.is_some())));
    let fds: Vec<RawFd> = idmapped.iter().flatten().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the CMSG_* helpers compute sizes and addresses inside
    // `control`, which is large enough by CMSG_SPACE and aligned for a
    // cmsghdr (u64); sendmsg(2) reads the buffers the msghdr points at.
    unsafe {
        let space = libc::CMSG_SPACE(size_of_val(fds.as_slice()) as u32) as usize;
        let mut control = vec![0u64; space.div_ceil(8)];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of_val(fds.as_slice()) as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(cmsg) as *mut RawFd,
                fds.len(),
            );
        }
        if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) != data.len() as isize {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes init's uid and gid maps (user_namespaces(7)): as root directly;
/// rootless, the user's own ids alone directly (after denying setgroups,
/// as the kernel requires), or subordinate ids through the setuid helpers
/// newuidmap and newgidmap.
fn write_id_maps(pid: i32, maps: &ids::IdMaps) -> Result<(), String> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let write = |file: &str, text: String| {
        crate::fsx::write(proc.join(file), text).map_err(|e| crate::fsx::chain(&e))
    };
    // SAFETY: getuid(2)/getgid(2) cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let own = |m: &[ids::IdMap], id: u32| m.len() == 1 && m[0].outside == id && m[0].count == 1;
    if is_root() || (own(&maps.uid, uid) && own(&maps.gid, gid)) {
        write("uid_map", ids::IdMaps::map_text(&maps.uid))?;
        if !is_root() {
            write("setgroups", "deny".into())?;
        }
        return write("gid_map", ids::IdMaps::map_text(&maps.gid));
    }
    for (helper, m) in [("newuidmap", &maps.uid), ("newgidmap", &maps.gid)] {
        let out = std::process::Command::new(helper)
            .arg(pid.to_string())
            .args(ids::IdMaps::helper_args(m))
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("{helper}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{helper} {pid} {}: {} ({})",
                ids::IdMaps::helper_args(m).join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ));
        }
    }
    Ok(())
}

/// The channel for the go byte: a socket pair, not a pipe, so that sending
/// to an init that already died of a setup error gives EPIPE
/// (MSG_NOSIGNAL) instead of a SIGPIPE that would end the runner (packrun
/// restores SIGPIPE's default action for its command-line tools).
fn go_channel() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair(2) writes two new descriptors into the array; we
    // take ownership of them right away.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } == -1
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe with both ends close-on-exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two new descriptors into the array; we take
    // ownership of them right away.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl(2) F_GETFL/F_SETFL on a descriptor we own; no memory involved.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags == -1 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) == -1
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Restores the default action of SIGPIPE, which Rust's runtime ignores, so
/// that `packrun topology | head` ends quietly like other Unix tools instead
/// of panicking on a closed stdout.
pub fn restore_default_sigpipe() {
    // SAFETY: SIG_DFL is a valid disposition and no handler runs Rust code;
    // called at start-up before any thread exists. See signal(7).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Whether packrun entered a user namespace of its own
/// (`enter_user_namespace`).
static OWN_USER_NAMESPACE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Makes packrun, run by an ordinary user, the owner with every capability
/// of a user namespace of its own that maps the user's own uid and gid
/// alone (user_namespaces(7)), for private networks: the network
/// namespaces packrun then makes belong to it, so it may join them, link
/// them and shape their links, and the runs' user namespaces become its
/// children, so that their init may start in the namespace made for it.
/// (From the host's user namespace none of this works: setns(2) into a
/// network namespace needs CAP_SYS_ADMIN in the caller's own user
/// namespace too, and a run's namespace owned by a sibling user namespace
/// takes no link from packrun's.) The kernel lets only a process with one
/// thread change its user namespace. Files keep the user's ids; setuid
/// helpers (newuidmap) do not work inside, so runs map the user's id alone.
pub fn enter_user_namespace() -> io::Result<()> {
    if OWN_USER_NAMESPACE.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(());
    }
    let status = crate::fsx::read_to_string("/proc/self/status")
        .map_err(|e| io::Error::other(crate::fsx::chain(&e)))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(str::trim)
        .unwrap_or("?");
    if threads != "1" {
        return Err(io::Error::other(format!(
            "packrun runs {threads} threads; only a process with one may enter a user namespace"
        )));
    }
    // SAFETY: getuid(2)/getgid(2) cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: unshare(2) takes flags only; the process has one thread.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == -1 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("unshare(CLONE_NEWUSER): {e}"),
        ));
    }
    let write = |file: &str, text: String| {
        crate::fsx::write(format!("/proc/self/{file}"), text)
            .map_err(|e| io::Error::other(crate::fsx::chain(&e)))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))?;
    OWN_USER_NAMESPACE.store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

/// Whether packrun is in a user namespace of its own
/// (`enter_user_namespace`).
pub fn in_own_user_namespace() -> bool {
    OWN_USER_NAMESPACE.load(std::sync::atomic::Ordering::Acquire)
}

/// A new network namespace with only loopback, up: what `Network::None`
/// gives a run, made by the runner so that runs can join it one after the
/// other (`ContainerConfig::netns`). Made on a thread of its own that ends
/// right after, so no thread of the runner leaves the host's network. Needs
/// root (CAP_SYS_ADMIN).
pub fn new_network_namespace() -> io::Result<OwnedFd> {
    let made =
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(|| -> io::Result<OwnedFd> {
                // SAFETY: unshare(2) takes flags only; it moves this thread alone.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } == -1 {
                    return Err(io::Error::last_os_error());
                }
                let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
                child::set_loopback_up().map_err(|(step, errno)| {
                    let e = io::Error::from_raw_os_error(errno);
                    io::Error::new(e.kind(), format!("{step} lo: {e}"))
                })?;
                Ok(ns.into())
            })?;
    made.join()
        .map_err(|_| io::Error::other("the thread making a network namespace panicked"))?
}
