//! Starting a container: the plan prepared before clone, the raw clone
//! (sharing the runner's memory from a spawner thread, or copying it),
//! the id maps and idmapped mounts, and the go message.

use super::handle::{give_to_job, Container};
use super::rootfs::{cstr, hidden_paths, new_root, path_cstr, root_ops, Home, MountOp};
use super::{caps, child, ids, seccomp, shares};
use super::{ContainerConfig, JobOutput, SetupError, DEFAULT_PATH};
use crate::cpulist::CpuList;
use crate::spec::{MemPolicy, Network, Rootfs};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    let (pid, pidfd, spawner) = match is_root() {
        false => {
            let mut plan = plan;
            plan.own_network();
            clone(&plan, cgroup_dir, &fds).map(|(pid, fd)| (pid, fd, None))
        }
        true => match clone_shared(plan, cgroup_dir, fds) {
            Ok((pid, fd, thread)) => Ok((pid, fd, Some(thread))),
            // No clone3 (see `clone`): the copying clone, which falls back
            // to clone(2), in a network namespace of its own.
            Err((e, Some(mut data))) if e.raw_os_error() == Some(libc::ENOSYS) => {
                data.plan.own_network();
                clone(&data.plan, cgroup_dir, &data.fds).map(|(pid, fd)| (pid, fd, None))
            }
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

/// The mount points a directory root lacks, made by the runner in the
/// directory itself: on an idmapped copy of it init (with a host uid the
/// copy does not map) could not make them. They are what init would make
/// before the root turns read-only.
fn make_mount_points(plan: &Plan, root: &Path, dir: &Path) -> Result<(), SetupError> {
    use std::os::unix::ffi::OsStrExt;
    let in_dir = |c: &CString| {
        let p = Path::new(std::ffi::OsStr::from_bytes(c.as_bytes()));
        p.strip_prefix(root).ok().map(|rel| dir.join(rel))
    };
    for op in &plan.ops {
        match op {
            MountOp::ReadOnly { .. } => break,
            MountOp::MkdirAll { path } => {
                if let Some(p) = in_dir(path) {
                    std::fs::create_dir_all(&p)
                        .map_err(|e| SetupError::os(format!("mkdir {}", p.display()), e))?;
                }
            }
            MountOp::Touch { path } => {
                if let Some(p) = in_dir(path).filter(|p| !p.exists()) {
                    std::fs::File::create(&p)
                        .map_err(|e| SetupError::os(format!("create {}", p.display()), e))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What init and the job do, prepared before clone.
pub(super) struct Plan {
    /// Namespaces clone makes: the pid namespace (only clone can make init
    /// its pid 1) and, rootless, the user namespace the runner maps ids of.
    flags: u64,
    /// Namespaces init makes itself with unshare(2) once told to go: the
    /// same isolation, but their cost (a network namespace above all) is
    /// paid by init, in parallel, not by the runner's one thread.
    pub(super) unshare: libc::c_int,
    pub(super) root: CString,
    pub(super) ops: Vec<MountOp>,
    /// The `MountOp::HostTree` ops with a slot (target, overlay options),
    /// in slot order, and the `MountOp::Stage` (its tmpfs, the empty layer
    /// and the root): what the thread that clones init mounts first (see
    /// `child::Fds::staged`).
    host_trees: Vec<(CString, CString)>,
    stage: Option<[CString; 3]>,
    pub(super) hostname: CString,
    pub(super) loopback: bool,
    /// A network namespace the spawner thread joins before the clone, so
    /// init is in it from the start (it could not join it from its own
    /// user namespace); its sysfs then comes from `child::Fds::sysfs`.
    join_net: Option<RawFd>,
    /// A pooled mount namespace with the staging tmpfs and the overlays
    /// of `host_trees` mounted (see `HostTree`) and which of them are: the
    /// spawner thread joins it instead of mounting them itself.
    join_tree: Option<(RawFd, Vec<bool>)>,
    /// The job's ids inside: `user`, or root.
    pub(super) job_ids: (u32, u32),
    /// Host paths of the job's mounts and writable dirs, in the order of
    /// the `MountOp::Bind` slots: init opens them (O_PATH) while it still
    /// has the host uid it was cloned with, which reaches them as their
    /// owner does (a results folder below a 0700 home), then takes the
    /// job's ids before it makes anything in the run's own file systems.
    pub(super) bind_sources: Vec<CString>,
    /// The run has a user namespace of its own.
    pub(super) userns: bool,
    /// As root: the host uid and gid the spawner thread takes as its
    /// effective ids to clone init, so that the run's user namespace
    /// belongs to them (the host ids of the run's root) and not to host
    /// root: the kernel charges what the run's processes take of every
    /// per-user counter (inotify, fanotify, pending signals, message
    /// queues, locked memory) to the namespace's owner as well.
    owner: Option<(u32, u32)>,
    /// (/proc/sys/user/max_* file, value): the run's shares of the
    /// per-user-namespace limits, which init sets in its new namespace
    /// (see shares.rs).
    pub(super) user_limits: Vec<(CString, CString)>,
    pub(super) workdir: CString,
    // job
    pub(super) stdin: Option<RawFd>,
    /// The job's stdout and stderr: descriptors, or files init creates.
    pub(super) output: PlanOutput,
    pub(super) dev_null: CString,
    pub(super) rlimits: Vec<(u32, u64, CString)>,
    pub(super) mempolicy: Option<(i32, Vec<libc::c_ulong>)>,
    pub(super) user: Option<(u32, u32)>,
    /// Capability bitmask to keep.
    pub(super) caps: u64,
    pub(super) last_cap: u32,
    pub(super) seccomp: &'static [seccompiler::BpfProgram],
    /// The job's stack: init starts the job with CLONE_VM | CLONE_VFORK,
    /// as posix_spawn does, so no page table is copied and none is freed
    /// again at its execve; init waits until the job has exec'd.
    pub(super) job_stack: ChildStack,
    pub(super) argv0: CString,
    pub(super) candidates: Vec<CString>,
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    pub(super) argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the strings `env_ptrs` points into.
    _env: Vec<CString>,
    pub(super) env_ptrs: Vec<*const libc::c_char>,
}

/// `JobOutput` prepared for the child.
pub(super) enum PlanOutput {
    Fds(RawFd, RawFd),
    Files(CString, CString),
}

impl Plan {
    /// A network namespace of its own instead of a pooled one (where init
    /// is not cloned by a thread that could join it first).
    fn own_network(&mut self) {
        if self.join_net.take().is_some() {
            self.unshare |= libc::CLONE_NEWNET;
            self.loopback = true;
        }
    }

    fn new(cfg: &ContainerConfig, base: &Path) -> Result<Plan, SetupError> {
        let root = &new_root(cfg, base);
        let userns = cfg.ids.is_some();
        let job_ids = cfg.user.unwrap_or((0, 0));
        check_job_ids(cfg, job_ids)?;
        let hidden = hidden_paths(cfg);
        let home = Home::of(job_ids.0, &hidden);
        let bind_sources = bind_sources_of(cfg)?;
        let argv0 = cfg
            .argv
            .first()
            .ok_or_else(|| SetupError::new("prepare", "empty command"))?;
        let argv = cfg
            .argv
            .iter()
            .map(|a| cstr(a, "argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let env = job_env(&cfg.env, home)?;
        let candidates = exec_candidates(argv0, &cfg.env)
            .iter()
            .map(|p| path_cstr(p))
            .collect::<Result<Vec<_>, _>>()?;
        let rlimits = job_rlimits(&cfg.rlimits)?;
        let mempolicy = job_mempolicy(cfg.mempolicy.as_ref())?;
        let caps = capability_mask(&cfg.capabilities)?;
        let workdir = cfg.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
        if !workdir.is_absolute() {
            return Err(SetupError::new(
                "prepare",
                format!("workdir `{}`: expected an absolute path", workdir.display()),
            ));
        }
        let (flags, unshare, join_net) = namespaces(cfg);
        let ops = root_ops(cfg, root, &hidden, home, job_ids, userns)?;
        let host_trees = ops
            .iter()
            .filter_map(|op| match op {
                MountOp::HostTree {
                    slot: Some(_),
                    target,
                    data,
                    ..
                } => Some((target.clone(), data.clone())),
                _ => None,
            })
            .collect();
        let stage = ops.iter().find_map(|op| match op {
            MountOp::Stage { dir, empty, root } => Some([dir.clone(), empty.clone(), root.clone()]),
            _ => None,
        });

        Ok(Plan {
            flags,
            unshare,
            root: path_cstr(root)?,
            ops,
            host_trees,
            stage,
            bind_sources,
            hostname: cstr(&cfg.hostname, "hostname")?,
            loopback: cfg.network == Network::None && join_net.is_none(),
            join_net,
            join_tree: None,
            job_ids,
            userns,
            owner: owner_of(cfg),
            user_limits: user_limits(userns)?,
            workdir: path_cstr(&workdir)?,
            stdin: cfg.stdin.as_ref().map(|f| f.as_raw_fd()),
            output: plan_output(&cfg.output)?,
            dev_null: cstr("/dev/null", "path")?,
            rlimits,
            mempolicy,
            user: cfg.user,
            caps,
            last_cap: caps::last_cap(),
            seccomp: seccomp_programs(cfg.aio)?,
            job_stack: ChildStack::new().map_err(|e| SetupError::os("map the job's stack", e))?,
            argv0: cstr(argv0, "argument")?,
            candidates,
            argv_ptrs: null_terminated(&argv),
            _argv: argv,
            env_ptrs: null_terminated(&env),
            _env: env,
        })
    }
}

/// As root with a user namespace of the run's own: the host ids its root
/// maps to (see `Plan::owner`).
fn owner_of(cfg: &ContainerConfig) -> Option<(u32, u32)> {
    let ids = cfg.ids.as_ref().filter(|_| is_root())?;
    Some((ids.host_uid(0)?, ids.host_gid(0)?)).filter(|&(u, g)| u != 0 && g != 0)
}

/// The run's shares of the per-user-namespace limits, for init to write
/// (none without a user namespace of its own).
fn user_limits(userns: bool) -> Result<Vec<(CString, CString)>, SetupError> {
    if !userns {
        return Ok(Vec::new());
    }
    shares::shares()
        .user
        .iter()
        .map(|&(name, _, share)| {
            Ok((
                cstr(format!("/proc/sys/user/{name}"), "path")?,
                cstr(share.to_string(), "limit")?,
            ))
        })
        .collect()
}

/// The job's ids inside must be in the run's id maps; without maps (the
/// host's ids) the runner must be root.
fn check_job_ids(cfg: &ContainerConfig, job_ids: (u32, u32)) -> Result<(), SetupError> {
    if let Some(ids) = &cfg.ids {
        if ids.host_uid(job_ids.0).is_none() || ids.host_gid(job_ids.1).is_none() {
            return Err(SetupError::new(
                "prepare",
                format!(
                    "the job's ids {}:{} inside are not in the run's id maps ({})",
                    job_ids.0,
                    job_ids.1,
                    ids.describe()
                ),
            ));
        }
    } else if !is_root() {
        return Err(SetupError::new(
            "prepare",
            "the host's ids (userns: host) need root",
        ));
    }
    Ok(())
}

/// The host paths of the job's mounts, then of its writable dirs (see
/// `Plan::bind_sources`), at most `child::MAX_BINDS`.
fn bind_sources_of(cfg: &ContainerConfig) -> Result<Vec<CString>, SetupError> {
    let sources = cfg
        .mounts
        .iter()
        .map(|m| &m.source)
        .chain(cfg.writable.iter().map(|(s, _)| s))
        .map(|p| path_cstr(p))
        .collect::<Result<Vec<_>, _>>()?;
    // One slot more for a directory root (see idmapped_mounts).
    if sources.len() >= child::MAX_BINDS {
        return Err(SetupError::new(
            "prepare",
            format!(
                "{} mounts and writable dirs: at most {} per run",
                sources.len(),
                child::MAX_BINDS
            ),
        ));
    }
    Ok(sources)
}

/// The job's environment as `NAME=value` strings: `env`, plus PATH, HOME,
/// USER and LOGNAME where it lacks them.
fn job_env(env: &[(String, String)], home: Home) -> Result<Vec<CString>, SetupError> {
    let mut out = Vec::with_capacity(env.len() + 1);
    for (k, v) in env {
        if k.is_empty() || k.contains('=') {
            return Err(SetupError::new(
                "prepare",
                format!("environment variable name `{k}`: expected a name without `=`"),
            ));
        }
        out.push(cstr(format!("{k}={v}"), "environment variable")?);
    }
    let has = |name: &str| env.iter().any(|(k, _)| k == name);
    if !has("PATH") {
        out.push(cstr(format!("PATH={DEFAULT_PATH}"), "PATH")?);
    }
    for (name, value) in [
        ("HOME", home.path),
        ("USER", home.user),
        ("LOGNAME", home.user),
    ] {
        if !has(name) {
            out.push(cstr(format!("{name}={value}"), name)?);
        }
    }
    Ok(out)
}

/// (resource, value, name) of each limit, with the default `nofile`
/// and the run's shares of `sigpending`, `msgqueue` and `memlock` unless
/// the job sets them.
fn job_rlimits(limits: &[(String, u64)]) -> Result<Vec<(u32, u64, CString)>, SetupError> {
    let mut out = Vec::new();
    for (name, value) in limits {
        let res = rlimit_resource(name).ok_or_else(|| {
            SetupError::new(
                "prepare",
                format!("unknown rlimit `{name}`: expected one of as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack"),
            )
        })?;
        out.push((res, *value, cstr(name, "rlimit")?));
    }
    // The limits the kernel sums per user: a share each (see shares.rs).
    for &(name, _, share) in &shares::shares().rlimits {
        if share != u64::MAX && !limits.iter().any(|(n, _)| n == name) {
            let res = rlimit_resource(name).expect("a shared rlimit is a resource");
            out.push((res, share, cstr(name, "rlimit")?));
        }
    }
    if !limits.iter().any(|(n, _)| n == "nofile") {
        out.push((
            rlimit_resource("nofile").expect("nofile is a resource"),
            crate::spec::DEFAULT_NOFILE,
            cstr("nofile", "rlimit")?,
        ));
    }
    Ok(out)
}

/// set_mempolicy(2)'s mode and node mask.
fn job_mempolicy(
    policy: Option<&(MemPolicy, CpuList)>,
) -> Result<Option<(i32, Vec<libc::c_ulong>)>, SetupError> {
    match policy {
        None => Ok(None),
        Some((_, nodes)) if nodes.is_empty() => Err(SetupError::new(
            "prepare",
            "memory policy with an empty node list",
        )),
        Some((policy, nodes)) => {
            let mode = match policy {
                MemPolicy::Preferred => 1,  // MPOL_PREFERRED
                MemPolicy::Bind => 2,       // MPOL_BIND
                MemPolicy::Interleave => 3, // MPOL_INTERLEAVE
            };
            let bits = libc::c_ulong::BITS;
            let max = nodes.iter().max().unwrap_or(0);
            let mut mask = vec![0 as libc::c_ulong; (max / bits + 1) as usize];
            for n in nodes.iter() {
                mask[(n / bits) as usize] |= 1 << (n % bits);
            }
            Ok(Some((mode, mask)))
        }
    }
}

/// The bitmask of the capabilities to keep.
fn capability_mask(names: &[String]) -> Result<u64, SetupError> {
    let mut caps = 0u64;
    for name in names {
        caps |= 1
            << caps::number(name).ok_or_else(|| {
                SetupError::new(
                    "prepare",
                    format!("unknown capability `{name}`: expected a name like CAP_NET_RAW"),
                )
            })?;
    }
    Ok(caps)
}

/// The namespaces clone makes, those init makes with unshare(2), and the
/// pooled network namespace to join instead of a new one (see `Plan`).
fn namespaces(cfg: &ContainerConfig) -> (u64, libc::c_int, Option<RawFd>) {
    let mut flags = libc::CLONE_NEWPID as u64;
    if cfg.ids.is_some() {
        flags |= libc::CLONE_NEWUSER as u64;
    }
    let mut unshare = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    let join_net = match (&cfg.netns, cfg.network) {
        (Some(fd), Network::None) => Some(fd.as_raw_fd()),
        _ => None,
    };
    if cfg.network == Network::None && join_net.is_none() {
        unshare |= libc::CLONE_NEWNET;
    }
    // Made after the go byte, when init sits in the run's cgroups: on v2
    // where clone3 started it there, else where `place` moved it (v1 too).
    unshare |= libc::CLONE_NEWCGROUP;
    (flags, unshare, join_net)
}

/// `JobOutput` for the child: the descriptors, or the files' C strings.
fn plan_output(output: &JobOutput) -> Result<PlanOutput, SetupError> {
    Ok(match output {
        JobOutput::Fds { stdout, stderr } => {
            PlanOutput::Fds(stdout.as_raw_fd(), stderr.as_raw_fd())
        }
        JobOutput::Files { stdout, stderr } => {
            PlanOutput::Files(path_cstr(stdout)?, path_cstr(stderr)?)
        }
    })
}

/// The job's seccomp programs, compiled once per process for each of the
/// two AIO choices (see seccomp.rs).
fn seccomp_programs(aio: bool) -> Result<&'static [seccompiler::BpfProgram], SetupError> {
    type Programs = OnceLock<Result<Vec<seccompiler::BpfProgram>, String>>;
    static PROGRAMS: Programs = OnceLock::new();
    static WITH_AIO: Programs = OnceLock::new();
    let made = match aio {
        false => PROGRAMS.get_or_init(|| seccomp::programs(None)),
        true => WITH_AIO.get_or_init(|| {
            let most = shares::shares().aio.map_or(0, |(_, share)| share);
            seccomp::programs(Some(most))
        }),
    };
    match made {
        Ok(p) => Ok(p),
        Err(e) => Err(SetupError::new("seccomp", e.clone())),
    }
}

// The RLIMIT_* constants are u32 on glibc and c_int on musl: the casts
// are needed on one of them.
#[allow(clippy::unnecessary_cast)]
fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "as" => libc::RLIMIT_AS,
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        _ => return None,
    } as u32)
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The PATH candidates for argv[0] (execvp's rule: a name with a slash is used as is).
fn exec_candidates(argv0: &str, env: &[(String, String)]) -> Vec<PathBuf> {
    if argv0.contains('/') {
        return vec![PathBuf::from(argv0)];
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(argv0))
        .collect()
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
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

/// clone(2): CLONE_INTO_CGROUP (libc's constant is deprecated: it overflows a c_int).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone(2): struct clone_args, CLONE_ARGS_SIZE_VER2 (88 bytes, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
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
    plan: Plan,
    fds: child::Fds,
    /// init's stack (unused where there is no shared clone).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    stack: ChildStack,
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
#[cfg(target_arch = "x86_64")]
fn clone_shared(
    plan: Plan,
    cgroup_dir: Option<BorrowedFd<'_>>,
    fds: child::Fds,
) -> Result<(i32, OwnedFd, Spawner), SpawnFailed> {
    use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
    use std::sync::Arc;
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
    extern "C" fn entry(arg: *mut libc::c_void) -> ! {
        // SAFETY: `arg` points at the InitArgs on the spawner thread's
        // stack, which sleeps in clone3 until init is gone.
        let args = unsafe { &*(arg as *const InitArgs<'_>) };
        args.state.store(1, Ordering::Release);
        futex_wake(args.state);
        child::init(args.plan, args.fds)
    }

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
            // Into the pooled network namespace first: init, made in a
            // user namespace of its own, could not join it.
            let sysfs = match data.plan.join_net {
                Some(net) => match join_network(net) {
                    Ok(fd) => {
                        data.fds.sysfs = fd.as_raw_fd();
                        Some(fd)
                    }
                    Err(_) => {
                        data.plan.own_network();
                        None
                    }
                },
                None => None,
            };
            // The host's tree as the run's overlays (see MountOp::HostTree),
            // mounted here in a mount namespace of this thread's, which
            // init's is a copy of.
            data.fds.staged = match &data.plan.join_tree {
                Some((ns, staged)) if join_mount_namespace(*ns) => staged.clone(),
                _ => stage_host_tree(&data.plan.stage, &data.plan.host_trees),
            };
            // The run's user namespace belongs to its root's host id (after
            // the overlays, which are mounted as the runner).
            if let Some((uid, gid)) = data.plan.owner {
                if let Err(e) = become_owner(uid, gid) {
                    drop(sysfs);
                    thread_ids.state.store(2, Ordering::Release);
                    futex_wake(&thread_ids.state);
                    return Some((e, data));
                }
            }
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
            // mount namespace is gone. This thread waits for init's end
            // (on the pidfd the kernel stored, which the runner took a copy
            // of) before it ends, so that the overlays, which its mount
            // namespace holds too, are torn down here (an RCU grace period
            // each), after the run, not in init's exit, which the run's end
            // waits for. (Pooled overlays, which a `HostTree` holds, are
            // torn down when the pool lets them go: `HostTree::retire`.)
            while thread_ids.taken.load(Ordering::Acquire) == 0 {
                futex_wait(&thread_ids.taken, 0);
            }
            if thread_ids.taken.load(Ordering::Acquire) == 1 {
                // SAFETY: the kernel's pidfd, which the runner left to this
                // thread (it took a copy); nothing else closes it.
                let pidfd =
                    unsafe { OwnedFd::from_raw_fd(thread_ids.pidfd.load(Ordering::Acquire)) };
                if data.fds.staged.first() == Some(&true) {
                    let mut p = libc::pollfd {
                        fd: pidfd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: poll(2) on one live pollfd.
                    while unsafe { libc::poll(&mut p, 1, -1) } == -1
                        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                    {
                    }
                }
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

/// In the calling thread: joins the network namespace `net` and makes a
/// detached, read-only sysfs mount for it (fsopen, fsconfig, fsmount),
/// which init moves onto the run's /sys. A sysfs shows the network
/// devices of the namespace of whoever makes it, and only a process with
/// CAP_SYS_ADMIN over the namespace's owner may make one: init, in a user
/// namespace of its own, is not that for a namespace the runner made.
#[cfg(target_arch = "x86_64")]
fn join_network(net: RawFd) -> io::Result<OwnedFd> {
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
fn become_owner(uid: u32, gid: u32) -> io::Result<()> {
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
fn stage_host_tree(stage: &Option<[CString; 3]>, host_trees: &[(CString, CString)]) -> Vec<bool> {
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
    ns: OwnedFd,
    stage: [CString; 3],
    trees: Vec<(CString, CString)>,
    staged: Vec<bool>,
    made: std::time::Instant,
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

    /// The pooled tree for `plan` to join: `offered` when it was made for
    /// the same overlays and is still fresh, else a new one; None where
    /// the plan has no overlays or they could not be made (then the
    /// spawner thread mounts its own, as without the pool).
    fn for_plan(plan: &mut Plan, offered: Option<HostTree>) -> Option<HostTree> {
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
fn join_mount_namespace(ns: RawFd) -> bool {
    // SAFETY: unshare(2) and setns(2) on a namespace descriptor the
    // container holds until init runs; they change this thread's own file
    // system context and mount namespace, not the runner's.
    unsafe { libc::unshare(libc::CLONE_FS) == 0 && libc::setns(ns, libc::CLONE_NEWNS) == 0 }
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
type SpawnFailed = (io::Error, Option<Box<SpawnData>>);

/// Elsewhere: no shared clone (the trampoline is x86_64 assembly), so
/// always the copying clone.
#[cfg(not(target_arch = "x86_64"))]
fn clone_shared(
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
fn clone(
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

/// Memory a child cloned with CLONE_VM runs on, with a guard page below it
/// (a stack overflow faults instead of writing into memory it shares): the
/// job until its execve, and init when it shares the runner's memory.
pub(super) struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    /// Far more than the job's setup uses (system calls on small locals).
    const SIZE: usize = 256 << 10;
    const GUARD: usize = 4096;

    fn new() -> io::Result<ChildStack> {
        let len = Self::SIZE + Self::GUARD;
        // SAFETY: an anonymous private mapping of our own; the lowest page
        // is made inaccessible as the guard. Nothing else refers to it.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            if libc::mprotect(base, Self::GUARD, libc::PROT_NONE) != 0 {
                let e = io::Error::last_os_error();
                libc::munmap(base, len);
                return Err(e);
            }
            Ok(ChildStack { base, len })
        }
    }

    /// The top of the stack (stacks grow down on every Linux ABI we build for).
    pub(super) fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our own mapping, 16-byte aligned (page aligned).
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }

    /// clone3's view: the lowest usable address (above the guard) and the size.
    #[cfg(target_arch = "x86_64")]
    fn usable(&self) -> (u64, u64) {
        (self.base as u64 + Self::GUARD as u64, Self::SIZE as u64)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once; init has its own copy.
        unsafe { libc::munmap(self.base, self.len) };
    }
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

/// Where the directories new roots are mounted on live: packrun's state
/// directory, /run/packrun as root, else this user's own (0700) one, not
/// a shared /tmp where another user could make the name first.
fn root_dir_base() -> PathBuf {
    crate::fsx::runtime_dir(
        nix::unistd::geteuid().as_raw(),
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
    )
}

/// The directory to mount the new root on: packrun's runtime directory
/// itself, made once per process. Every container mounts its root there
/// inside its own mount namespace only (see child::make_mounts_private),
/// so on the host it stays as it is, and runs that start at once share it:
/// no directory to make and remove per run.
fn make_root_dir() -> io::Result<PathBuf> {
    let base = root_dir_base();
    // Checked (and made) once per process, not per run.
    static MADE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    MADE.get_or_init(|| crate::fsx::private_dir(&base).map_err(|e| crate::fsx::chain(&e)))
        .clone()
        .map_err(io::Error::other)?;
    Ok(base)
}

/// The directory init mounts the root on, held until setup is over.
#[derive(Debug)]
pub(super) struct RootDir(PathBuf);

/// Removes the root directories (`/run/packrun/root-<pid>-<n>`, rootless
/// in the user's state directory) that an older packrun (one directory per
/// container) killed in the middle of starting a container left behind. They
/// are empty on the host: the mounts on them lived in the dead container's
/// mount namespace. Directories of live processes are left alone.
pub fn remove_stale_root_dirs() {
    let Ok(entries) = std::fs::read_dir(root_dir_base()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("root-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_candidates_follow_path_unless_the_name_has_a_slash() {
        let env = vec![("PATH".to_string(), "/a::/b".to_string())];
        assert_eq!(
            exec_candidates("sh", &env),
            vec![
                PathBuf::from("/a/sh"),
                PathBuf::from("./sh"),
                PathBuf::from("/b/sh")
            ]
        );
        assert_eq!(exec_candidates("./x", &env), vec![PathBuf::from("./x")]);
        assert_eq!(
            exec_candidates("true", &[])[0],
            PathBuf::from("/usr/local/sbin/true")
        );
    }

    #[test]
    fn the_per_user_rlimits_default_to_the_runs_share_unless_the_job_sets_them() {
        let set = job_rlimits(&[("memlock".into(), 0)]).unwrap();
        let value = |name: &str| {
            set.iter()
                .find(|(_, _, n)| n.to_str() == Ok(name))
                .map(|(_, v, _)| *v)
        };
        assert_eq!(value("memlock"), Some(0));
        assert_eq!(value("nofile"), Some(crate::spec::DEFAULT_NOFILE));
        for (name, soft, share) in &shares::shares().rlimits {
            if *name != "memlock" && *soft != u64::MAX {
                assert_eq!(value(name), Some(*share), "{name}");
                assert!(share < soft, "{name}: {share} of {soft}");
            }
        }
        assert_eq!(
            set.iter()
                .filter(|(_, _, n)| n.to_str() == Ok("memlock"))
                .count(),
            1
        );
    }

    #[test]
    fn unknown_rlimit_names_are_rejected_with_the_list() {
        #[allow(clippy::unnecessary_cast)] // u32 on glibc, c_int on musl
        let nofile = libc::RLIMIT_NOFILE as u32;
        assert_eq!(rlimit_resource("nofile"), Some(nofile));
        assert_eq!(rlimit_resource("files"), None);
    }
}
