//! What init and the job do, prepared before clone: every string, array
//! and limit they need, so that the child (which shares the runner's
//! memory) only reads.

use super::rootfs::{cstr, hidden_paths, new_root, path_cstr, root_ops, Home, MountOp};
use super::stack::ChildStack;
use super::{caps, seccomp, shares};
use super::{ContainerConfig, JobOutput, SetupError, DEFAULT_PATH};
use crate::cpulist::CpuList;
use crate::jobfile::{MemPolicy, Network};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Most mounts and writable dirs of one run (their sources are held open
/// in an array on init's stack while it builds the root).
pub const MAX_BINDS: usize = 250;

/// The mount points a directory root lacks, made by the runner in the
/// directory itself: on an idmapped copy of it init (with a host uid the
/// copy does not map) could not make them. They are what init would make
/// before the root turns read-only.
pub(super) fn make_mount_points(plan: &Plan, root: &Path, dir: &Path) -> Result<(), SetupError> {
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
    pub(super) flags: u64,
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
    pub(super) host_trees: Vec<(CString, CString)>,
    pub(super) stage: Option<[CString; 3]>,
    pub(super) hostname: CString,
    pub(super) loopback: bool,
    /// A network namespace the spawner thread joins before the clone, so
    /// init is in it from the start (it could not join it from its own
    /// user namespace); its sysfs then comes from `child::Fds::sysfs`.
    pub(super) join_net: Option<RawFd>,
    /// The run is on a private network: `join_net` holds its link, and no
    /// other namespace will do.
    pub(super) private_net: bool,
    /// A pooled mount namespace with the staging tmpfs and the overlays
    /// of `host_trees` mounted (see `HostTree`) and which of them are: the
    /// spawner thread joins it instead of mounting them itself.
    pub(super) join_tree: Option<(RawFd, Vec<bool>)>,
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
    pub(super) owner: Option<(u32, u32)>,
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
    pub(super) _argv: Vec<CString>,
    pub(super) argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the strings `env_ptrs` points into.
    pub(super) _env: Vec<CString>,
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
    /// Fails for a run on a private network, whose namespace holds its
    /// link: a namespace of its own would have none.
    pub(super) fn own_network(&mut self) -> io::Result<()> {
        if self.private_net {
            return Err(io::Error::other(
                "a run on a private network must join the namespace made for it",
            ));
        }
        if self.join_net.take().is_some() {
            self.unshare |= libc::CLONE_NEWNET;
            self.loopback = true;
        }
        Ok(())
    }

    pub(super) fn new(cfg: &ContainerConfig, base: &Path) -> Result<Plan, SetupError> {
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
            private_net: matches!(cfg.network, Network::Private(_)),
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
pub(super) fn user_limits(userns: bool) -> Result<Vec<(CString, CString)>, SetupError> {
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
/// `Plan::bind_sources`), at most `MAX_BINDS`.
fn bind_sources_of(cfg: &ContainerConfig) -> Result<Vec<CString>, SetupError> {
    let sources = cfg
        .mounts
        .iter()
        .map(|m| &m.source)
        .chain(cfg.writable.iter().map(|(s, _)| s))
        .map(|p| path_cstr(p))
        .collect::<Result<Vec<_>, _>>()?;
    // One slot more for a directory root (see idmapped_mounts).
    if sources.len() >= MAX_BINDS {
        return Err(SetupError::new(
            "prepare",
            format!(
                "{} mounts and writable dirs: at most {} per run",
                sources.len(),
                MAX_BINDS
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
            crate::jobfile::DEFAULT_NOFILE,
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
pub(super) fn namespaces(cfg: &ContainerConfig) -> (u64, libc::c_int, Option<RawFd>) {
    let mut flags = libc::CLONE_NEWPID as u64;
    if cfg.ids.is_some() {
        flags |= libc::CLONE_NEWUSER as u64;
    }
    let mut unshare = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    let join_net = match (&cfg.netns, &cfg.network) {
        (Some(fd), Network::None | Network::Private(_)) => Some(fd.as_raw_fd()),
        _ => None,
    };
    // A private network's run without its namespace gets one with
    // loopback only: never the host's.
    if cfg.network != Network::Host && join_net.is_none() {
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

pub(super) fn is_root() -> bool {
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
        assert_eq!(value("nofile"), Some(crate::jobfile::DEFAULT_NOFILE));
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
