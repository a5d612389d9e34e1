//! `packrun doctor`: checks what a run needs on this machine and prints, for
//! every problem, the command or setting that fixes it. Every check reads
//! below a root path (`/` on the machine, a fake tree in tests).

use crate::cpulist::CpuList;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Runs can start, but results may be noisier or limits looser.
    Warn,
    /// Runs cannot start.
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// The exact command or setting that fixes it (Warn and Fail).
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(
    name: &'static str,
    level: Level,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// What the checks look at: a root and this process's identity.
#[derive(Debug, Clone)]
pub struct Probe {
    pub root: PathBuf,
    pub euid: u32,
    pub egid: u32,
    /// Supplementary groups (getgroups).
    pub groups: Vec<u32>,
    pub pid: i32,
    /// CPUs this process may run on (sched_getaffinity); None if unknown.
    pub affinity: Option<CpuList>,
    /// PATH, where newuidmap and newgidmap are looked for (below `root`).
    pub path_env: OsString,
    /// XDG_RUNTIME_DIR, which decides where a user's CPU claims live.
    pub runtime_dir: Option<OsString>,
}

impl Probe {
    /// This machine and this process.
    pub fn host() -> Probe {
        let affinity = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .ok()
            .map(|set| {
                CpuList::from_ids(
                    (0..nix::sched::CpuSet::count() as u32)
                        .filter(|&c| set.is_set(c as usize).unwrap_or(false)),
                )
            });
        Probe {
            root: PathBuf::from("/"),
            euid: nix::unistd::Uid::effective().as_raw(),
            egid: nix::unistd::Gid::effective().as_raw(),
            groups: nix::unistd::getgroups()
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default(),
            pid: std::process::id() as i32,
            affinity,
            path_env: std::env::var_os("PATH").unwrap_or_default(),
            runtime_dir: std::env::var_os("XDG_RUNTIME_DIR"),
        }
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel.trim_start_matches('/'))).ok()
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
}

/// The cgroup mounts found in mountinfo.
#[derive(Debug, Default, PartialEq)]
pub struct Mounts {
    /// Mount point of the cgroup2 file system, if any.
    pub v2: Option<String>,
    /// v1 hierarchies: (mount point, controllers).
    pub v1: Vec<(String, Vec<String>)>,
}

/// Parses /proc/self/mountinfo text: `id parent maj:min root mountpoint opts
/// [optional fields] - fstype source superopts`.
pub fn parse_mountinfo(text: &str) -> Mounts {
    let mut m = Mounts::default();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let mut post = post.split_whitespace();
        let (fstype, _source, opts) = (post.next(), post.next(), post.next().unwrap_or(""));
        match fstype {
            Some("cgroup2")
                // The unified mount of a hybrid setup holds no controllers;
                // prefer /sys/fs/cgroup itself when both exist.
                if (m.v2.is_none() || point == "/sys/fs/cgroup") => {
                    m.v2 = Some(point.to_string());
                }
            Some("cgroup") => {
                let ctrls: Vec<String> = opts
                    .split(',')
                    // Mount options that are not controllers (cgroups(7)).
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro"
                                | "xattr"
                                | "noprefix"
                                | "clone_children"
                                | "cpuset_v2_mode"
                                | "favordynmods"
                        ) && !o.contains('=')
                    })
                    .map(String::from)
                    .collect();
                if !ctrls.is_empty() {
                    m.v1.push((point.to_string(), ctrls));
                }
            }
            _ => {}
        }
    }
    m
}

/// The controllers packrun needs, and the optional one for I/O limits.
const REQUIRED: [&str; 4] = ["cpu", "cpuset", "memory", "pids"];

/// Every check, in the order they print.
pub fn checks(p: &Probe) -> Vec<Check> {
    let mounts = parse_mountinfo(&p.read("proc/self/mountinfo").unwrap_or_default());
    let mut out = vec![privileges(p, &mounts)];
    out.extend(cgroups(p, &mounts));
    out.extend(namespaces(p));
    out.push(seccomp(p));
    out.push(user_ids(p));
    out.push(numa(p));
    out.push(gpus(p, &mounts));
    out.extend(gpu_usage(p));
    out.push(affinity(p));
    out.push(smt(p));
    out.push(governor(p));
    out.push(turbo(p));
    out.push(aslr(p));
    out.push(isolation(p));
    out.push(swap(p));
    out.push(socket_memory(p, &mounts));
    out.push(locks(p));
    out.push(claims(p));
    out.push(results_disk(p));
    out.push(aio_share(p));
    out.push(user_counter_shares(p));
    out.push(rlimit_shares(p));
    out.push(pty_share(p));
    out.push(pid_max(p));
    out.push(counters(p));
    out.push(shaping(p));
    out
}

/// Which counters (see `counters`) runs can choose on this machine.
fn counters(p: &Probe) -> Check {
    let powercap = p.path(crate::counters::POWERCAP);
    counters_from(&|c| crate::counters::refusal(c, &powercap))
}

/// The counters check from why each counter cannot be counted (None: it
/// can): those that can, then those that cannot grouped by why. Counters
/// are chosen per job, so only software events that cannot be counted
/// (a permission, which has a fix) warn.
fn counters_from(refusal: &dyn Fn(crate::counters::Counter) -> Option<String>) -> Check {
    use crate::counters::{Counter, Source};
    const N: &str = "counters";
    let mut can = Vec::new();
    let mut cannot: Vec<(String, Vec<&str>)> = Vec::new();
    let mut software_refused = None;
    for c in Counter::ALL {
        match refusal(c) {
            None => can.push(c.name()),
            Some(why) => {
                if c.source() == Source::Software {
                    software_refused.get_or_insert(why.clone());
                }
                match cannot.iter_mut().find(|(w, _)| *w == why) {
                    Some((_, names)) => names.push(c.name()),
                    None => cannot.push((why, vec![c.name()])),
                }
            }
        }
    }
    let mut detail = match can.is_empty() {
        true => "none can be counted".to_string(),
        false => can.join(", "),
    };
    for (why, names) in &cannot {
        let _ = write!(detail, "; not {} ({why})", names.join(", "));
    }
    match software_refused {
        Some(_) => bad(
            N,
            Level::Warn,
            detail,
            "sysctl -w kernel.perf_event_paranoid=1, or run packrun as root",
        ),
        None => ok(N, detail),
    }
}

/// What the shaping of private networks' links needs: the tbf qdisc for
/// `rate`, netem for `delay` and `loss`. Tried in a namespace of its own
/// on this machine as root; elsewhere only the kernel's module files tell.
fn shaping(p: &Probe) -> Check {
    let here = p.root == Path::new("/") && p.euid == 0;
    let tried = |kind: &str| here.then(|| crate::net::has_qdisc(kind).ok()).flatten();
    let release = p.read("proc/sys/kernel/osrelease").unwrap_or_default();
    let module = |name: &str| {
        let dir = p.path(&format!("lib/modules/{}/kernel/net/sched", release.trim()));
        std::fs::read_dir(dir).is_ok_and(|d| {
            d.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{name}.ko"))
            })
        })
    };
    shaping_check(
        (tried("tbf"), module("sch_tbf")),
        (tried("netem"), module("sch_netem")),
    )
}

/// The shaping check from what was found: per qdisc, whether adding one
/// worked (None: not tried) and whether the kernel has it as a module.
fn shaping_check(tbf: (Option<bool>, bool), netem: (Option<bool>, bool)) -> Check {
    const N: &str = "link shaping";
    let fix = |module: &str, config: &str, keys: &str| {
        match module {
        "" => format!("a kernel built with {config} (no module of it here): {keys} of `networks:` cannot be used on this one"),
        m => format!("modprobe {m}"),
    }
    };
    let missing = |(tried, module): (Option<bool>, bool), name: &'static str| match tried {
        Some(false) => Some(if module { name } else { "" }),
        _ => None,
    };
    match (missing(tbf, "sch_tbf"), missing(netem, "sch_netem")) {
        (None, None) if tbf.0.is_none() => ok(
            N,
            format!(
                "not tried (as root on this machine packrun tries tbf and netem); modules here: sch_tbf {}, sch_netem {}",
                if tbf.1 { "yes" } else { "no (built in, or absent)" },
                if netem.1 { "yes" } else { "no (built in, or absent)" }
            ),
        ),
        (None, None) => ok(N, "tbf (`rate`) and netem (`delay`, `loss`) work"),
        (None, Some(m)) => bad(
            N,
            Level::Warn,
            "no netem qdisc: private networks with `delay` or `loss` are refused (`rate` works, with tbf)",
            fix(m, "CONFIG_NET_SCH_NETEM", "`delay` and `loss`"),
        ),
        (Some(m), _) => bad(
            N,
            Level::Warn,
            "no tbf qdisc: private networks with `rate` are refused",
            fix(m, "CONFIG_NET_SCH_TBF", "`rate`"),
        ),
    }
}

/// Runs at once (one per CPU this process may use) and the shares of the
/// counters the kernel keeps per user or per machine (container::shares).
fn shares_of(p: &Probe) -> crate::container::shares::Shares {
    let slots = p.affinity.as_ref().map_or(1, |a| a.len().max(1) as u32);
    crate::container::shares::compute(
        &p.path("/proc"),
        slots,
        &crate::container::shares::own_rlimits(),
    )
}

fn aio_share(p: &Probe) -> Check {
    const N: &str = "AIO contexts";
    let s = shares_of(p);
    match s.aio {
        Some((max, share)) => ok(
            N,
            format!("fs.aio-max-nr {max} events for the whole machine: a run has no AIO (io_setup says ENOSYS) unless its job sets container.aio; then each io_setup may ask for at most {share} events ({max} / ({} runs + 1)); how many contexts it makes is not bounded", s.slots),
        ),
        None => ok(N, "fs.aio-max-nr unreadable: this kernel may have no AIO"),
    }
}

/// Whose counters runs charge: as root a host uid of each run's own id
/// block (its root's), rootless the user's, shared by the user's runs.
fn counter_owner(p: &Probe) -> String {
    match p.euid {
        0 => "each run charges the host uid of its root (its own id block)".into(),
        uid => format!("every run charges your uid {uid}, which the runs split"),
    }
}

fn user_counter_shares(p: &Probe) -> Check {
    const N: &str = "inotify, fanotify";
    let s = shares_of(p);
    if s.user.is_empty() {
        return ok(N, "/proc/sys/user unreadable");
    }
    let each: Vec<String> = s
        .user
        .iter()
        .map(|(name, host, share)| format!("{name} {share} of {host}"))
        .collect();
    ok(
        N,
        format!(
            "per user and user namespace: {}; each run's share, set in its own user namespace: {}",
            counter_owner(p),
            each.join(", ")
        ),
    )
}

fn rlimit_shares(p: &Probe) -> Check {
    const N: &str = "per-user rlimits";
    let s = shares_of(p);
    let show = |v: u64| match v {
        u64::MAX => "unlimited".to_string(),
        v => v.to_string(),
    };
    let each: Vec<String> = s
        .rlimits
        .iter()
        .map(|(name, soft, share)| format!("{name} {} of {}", show(*share), show(*soft)))
        .collect();
    ok(
        N,
        format!(
            "summed over a user's processes: {}; each run's share unless its job's rlimits: say otherwise: {}",
            counter_owner(p),
            each.join(", ")
        ),
    )
}

fn pty_share(p: &Probe) -> Check {
    const N: &str = "ptys";
    match shares_of(p).pty {
        Some((open, share)) => ok(
            N,
            format!("{open} for every devpts but the host's (kernel.pty.max - kernel.pty.reserve): each run's devpts holds at most {share}"),
        ),
        None => ok(N, "kernel.pty.max unreadable"),
    }
}

fn pid_max(p: &Probe) -> Check {
    const N: &str = "pid_max";
    let slots = shares_of(p).slots as u64;
    let pids = slots * crate::jobfile::DEFAULT_PIDS;
    match p.read("proc/sys/kernel/pid_max").and_then(|t| t.trim().parse::<u64>().ok()) {
        Some(max) if pids >= max => bad(
            N,
            Level::Warn,
            format!("{max} pids for the machine, and {slots} runs at {} pids each (resources.pids) may take {pids}: the host could run out", crate::jobfile::DEFAULT_PIDS),
            format!("sysctl -w kernel.pid_max={}", (pids * 2).min(4_194_304)),
        ),
        Some(max) => ok(
            N,
            format!("{max} pids for the machine; {slots} runs at {} pids each (resources.pids) take at most {pids}", crate::jobfile::DEFAULT_PIDS),
        ),
        None => ok(N, "kernel.pid_max unreadable"),
    }
}

/// The command that puts a command into a cgroup delegated to the user.
pub const DELEGATE: &str = "systemd-run --user --scope -p Delegate=yes";

/// The fix when a delegated cgroup lacks controllers, for systemd's user
/// managers (whose default is `Delegate=pids memory cpu`).
const DELEGATE_CONTROLLERS: &str = "as root: mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload, then log in again";

/// What decides whether this process may create the runs' cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub euid: u32,
    /// The cgroup version packrun uses here (1 or 2).
    pub version: u8,
    /// The cgroup the runs go below (v2; on a delegated subtree packrun's own).
    pub parent: PathBuf,
    /// Its owner; None when it cannot be read.
    pub owner: Option<u32>,
    /// Whether its cgroup.procs or cgroup.subtree_control is writable for this user.
    pub writable: bool,
    /// What its cgroup.controllers offers; None when unreadable.
    pub controllers: Option<Vec<String>>,
}

impl Facts {
    /// The facts of cgroup `dir` (absolute) for a process of `euid` in `groups`.
    pub fn of_dir(euid: u32, groups: &[u32], version: u8, dir: PathBuf) -> Facts {
        let may_write = |f: &str| {
            std::fs::metadata(dir.join(f)).is_ok_and(|m| {
                let bit = if m.uid() == euid {
                    0o200
                } else if groups.contains(&m.gid()) {
                    0o020
                } else {
                    0o002
                };
                m.mode() & bit != 0
            })
        };
        Facts {
            euid,
            version,
            owner: std::fs::metadata(&dir).ok().map(|m| m.uid()),
            writable: may_write("cgroup.procs") || may_write("cgroup.subtree_control"),
            controllers: std::fs::read_to_string(dir.join("cgroup.controllers"))
                .ok()
                .map(|t| t.split_whitespace().map(String::from).collect()),
            parent: dir,
        }
    }

    /// This process's facts on hierarchy `h` (see `cgroup::detect_host`).
    pub fn read(h: &crate::cgroup::Hierarchy) -> Facts {
        let euid = nix::unistd::Uid::effective().as_raw();
        match h {
            crate::cgroup::Hierarchy::V1 { .. } => Facts {
                euid,
                version: 1,
                parent: PathBuf::new(),
                owner: None,
                writable: false,
                controllers: None,
            },
            crate::cgroup::Hierarchy::V2 { root, parent } => {
                let mut groups: Vec<u32> = nix::unistd::getgroups()
                    .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                    .unwrap_or_default();
                groups.push(nix::unistd::Gid::effective().as_raw());
                let dir = if parent.as_os_str().is_empty() {
                    root.clone()
                } else {
                    root.join(parent)
                };
                Facts::of_dir(euid, &groups, 2, dir)
            }
        }
    }
}

/// How a process may run packrun's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Root,
    /// Not root, in a cgroup v2 subtree delegated to it.
    Delegated,
}

/// Why a process may not run packrun's runs, and the one command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub fix: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; fix: {}", self.reason, self.fix)
    }
}

/// Root may always; anybody else needs cgroup v2 and a parent cgroup
/// delegated to them (owned by them, or with cgroup.procs or
/// cgroup.subtree_control writable) that offers the controllers a run
/// uses. `command` is the command line to repeat in the fix.
pub fn standing(f: &Facts, command: &str) -> Result<Standing, Refusal> {
    if f.euid == 0 {
        return Ok(Standing::Root);
    }
    let uid = f.euid;
    if f.version != 2 {
        return Err(Refusal {
            reason: format!("running as uid {uid} on cgroup v1, where only root may create cgroups (without root packrun needs a delegated cgroup v2)"),
            fix: format!("sudo {command}"),
        });
    }
    let dir = f.parent.display();
    if f.owner != Some(uid) && !f.writable {
        return Err(Refusal {
            reason: format!(
                "running as uid {uid} in cgroup {dir}, which is not delegated to you (owned by {}, cgroup.procs and cgroup.subtree_control not writable); expected a cgroup v2 subtree delegated to uid {uid}",
                f.owner.map_or("an unknown uid".into(), |o| format!("uid {o}"))
            ),
            fix: format!("{DELEGATE} {command}"),
        });
    }
    if let Some(offered) = &f.controllers {
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|c| !offered.iter().any(|o| o == c))
            .collect();
        if !missing.is_empty() {
            return Err(Refusal {
                reason: format!(
                    "running as uid {uid} in the delegated cgroup {dir}, which offers {}; expected {} (missing: {})",
                    if offered.is_empty() {
                        "no controllers".to_string()
                    } else {
                        format!("the controllers `{}`", offered.join(" "))
                    },
                    REQUIRED.join(", "),
                    missing.join(", ")
                ),
                fix: DELEGATE_CONTROLLERS.into(),
            });
        }
    }
    Ok(Standing::Delegated)
}

/// Words joined for a POSIX shell, quoted where needed.
pub fn shell_join(words: impl IntoIterator<Item = String>) -> String {
    words
        .into_iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
            if plain {
                w
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn privileges(p: &Probe, mounts: &Mounts) -> Check {
    const N: &str = "privileges";
    if p.euid == 0 {
        return ok(N, "running as root");
    }
    // The cgroup the runs would go below: this process's own (above the
    // `supervisor` leaf an earlier packrun made), as cgroup::detect_host finds it.
    let own = p
        .read(&format!("proc/{}/cgroup", p.pid))
        .or_else(|| p.read("proc/self/cgroup"))
        .and_then(|t| crate::cgroup::own_v2_cgroup(&t))
        .map(|c| match c.file_name() {
            Some(n) if n == "supervisor" => c.parent().map(Path::to_path_buf).unwrap_or_default(),
            _ => c,
        })
        .unwrap_or_default();
    let version = if mounts.v1.is_empty() { 2 } else { 1 };
    let dir = match &mounts.v2 {
        Some(mp) if own.as_os_str().is_empty() => p.path(mp),
        Some(mp) => p.path(mp).join(own),
        None => PathBuf::new(),
    };
    let mut groups = p.groups.clone();
    groups.push(p.egid);
    let facts = Facts::of_dir(p.euid, &groups, version, dir);
    match standing(&facts, "packrun run FILE") {
        Ok(_) => ok(
            N,
            format!(
                "running as uid {} in a delegated cgroup v2 subtree: rootless",
                p.euid
            ),
        ),
        Err(r) => bad(N, Level::Fail, r.reason, r.fix),
    }
}

fn cgroups(p: &Probe, mounts: &Mounts) -> Vec<Check> {
    const V: &str = "cgroup version";
    let unified_fix = "add systemd.unified_cgroup_hierarchy=1 to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot)";
    // /proc/cgroups: `subsys_name hierarchy num_cgroups enabled`.
    let enabled: Vec<(String, bool)> = p
        .read("proc/cgroups")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[0].to_string(), f[3] == "1"))
        })
        .collect();
    let disabled = |c: &str| enabled.iter().any(|(n, e)| n == c && !e);
    let v2_ctrls: Vec<String> = mounts
        .v2
        .as_ref()
        .and_then(|mp| std::fs::read_to_string(p.path(mp).join("cgroup.controllers")).ok())
        .map(|t| t.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let v1_ctrls: Vec<&String> = mounts.v1.iter().flat_map(|(_, c)| c).collect();
    // A hybrid setup mounts cgroup2 too, holding no controller packrun uses
    // (often only hugetlb); it counts as v1.
    let v2_in_use = v2_ctrls.iter().any(|c| REQUIRED.contains(&c.as_str()));
    let (version, have): (Check, Vec<String>) = if v2_in_use
        || (mounts.v2.is_some() && mounts.v1.is_empty())
    {
        (
            ok(
                V,
                format!("cgroup v2 at {}", mounts.v2.as_deref().unwrap_or("?")),
            ),
            v2_ctrls,
        )
    } else if !mounts.v1.is_empty() {
        (
            bad(
                V,
                Level::Warn,
                format!(
                    "cgroup v1{} (supported; v2 adds memory.peak, cgroup.kill and exact I/O accounting)",
                    if mounts.v2.is_some() {
                        ", hybrid with an empty cgroup2 mount"
                    } else {
                        ""
                    }
                ),
                unified_fix,
            ),
            v1_ctrls.iter().map(|s| s.to_string()).collect(),
        )
    } else {
        return vec![bad(
            V,
            Level::Fail,
            "no cgroup file system mounted",
            "mount -t cgroup2 none /sys/fs/cgroup",
        )];
    };
    let v2 = version.detail.starts_with("cgroup v2");
    let mut missing = Vec::new();
    let mut fixes = Vec::new();
    for c in REQUIRED {
        if have.iter().any(|h| h == c) {
            continue;
        }
        missing.push(c);
        if disabled(c) {
            fixes.push(format!(
                "kernel command line cgroup_enable={c}{}",
                if c == "memory" {
                    " cgroup_memory=1"
                } else {
                    ""
                }
            ));
        } else if v2 && v1_ctrls.iter().any(|h| *h == c) {
            fixes.push(format!("move the v1 controllers to v2: {unified_fix}"));
        } else if !v2 && enabled.iter().any(|(n, _)| n == c) {
            fixes.push(format!(
                "mkdir -p /sys/fs/cgroup/{c} && mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{c}"
            ));
        } else {
            fixes.push(format!(
                "a kernel with the {c} controller (CONFIG_CGROUP_{})",
                c.to_uppercase()
            ));
        }
    }
    let ctrl = controllers_check(&have, v2, &missing, fixes);
    vec![version, ctrl]
}

/// The controllers line: which of the required ones (and the I/O one)
/// are usable, and the fixes of the missing ones.
fn controllers_check(have: &[String], v2: bool, missing: &[&str], mut fixes: Vec<String>) -> Check {
    const C: &str = "cgroup controllers";
    let io = if v2 { "io" } else { "blkio" };
    let mut usable: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !missing.contains(c))
        .collect();
    if have.iter().any(|h| h == io) {
        usable.push(io);
    }
    let ctrl = if missing.is_empty() {
        if usable.contains(&io) {
            ok(C, format!("usable: {}", usable.join(", ")))
        } else {
            bad(
                C,
                Level::Warn,
                format!(
                    "usable: {}; no {io} controller, so I/O limits are refused",
                    usable.join(", ")
                ),
                "a kernel with CONFIG_BLK_CGROUP; on v1: mount -t cgroup -o blkio cgroup /sys/fs/cgroup/blkio".to_string(),
            )
        }
    } else {
        bad(
            C,
            Level::Fail,
            format!(
                "missing: {} (usable: {})",
                missing.join(", "),
                usable.join(", ")
            ),
            {
                fixes.dedup();
                fixes.join("; ")
            },
        )
    };
    ctrl
}

fn namespaces(p: &Probe) -> Vec<Check> {
    const N: &str = "namespaces";
    let mut fail = Vec::new();
    let mut fixes = Vec::new();
    // (file in /proc/self/ns, sysctl suffix, kernel option); every run has
    // a user namespace of its own, as root too.
    for (ns, sysctl, config) in [
        ("mnt", "mnt", "(always built in)"),
        ("pid", "pid", "CONFIG_PID_NS"),
        ("net", "net", "CONFIG_NET_NS"),
        ("uts", "uts", "CONFIG_UTS_NS"),
        ("ipc", "ipc", "CONFIG_IPC_NS"),
        ("cgroup", "cgroup", "CONFIG_CGROUPS"),
        ("user", "user", "CONFIG_USER_NS"),
    ] {
        if !p.path(&format!("proc/self/ns/{ns}")).exists() {
            fail.push(format!("{ns} (no /proc/self/ns/{ns})"));
            fixes.push(format!("a kernel with {config}=y"));
            continue;
        }
        if p.read(&format!("proc/sys/user/max_{sysctl}_namespaces"))
            .is_some_and(|v| v.trim() == "0")
        {
            fail.push(format!("{ns} (user.max_{sysctl}_namespaces is 0)"));
            fixes.push(format!("sysctl -w user.max_{sysctl}_namespaces=15000"));
        }
    }
    // Knobs that keep user namespaces from everybody but root.
    if p.euid != 0 {
        for (knob, off, why, on) in [
            (
                "unprivileged_userns_clone",
                "0",
                "only root may create one",
                "1",
            ),
            (
                "apparmor_restrict_unprivileged_userns",
                "1",
                "AppArmor denies them to unconfined programs",
                "0",
            ),
        ] {
            if p.read(&format!("proc/sys/kernel/{knob}"))
                .is_some_and(|v| v.trim() == off)
            {
                fail.push(format!("user (kernel.{knob} is {off}: {why})"));
                fixes.push(format!("sysctl -w kernel.{knob}={on}"));
            }
        }
    }
    if !fail.is_empty() {
        return vec![bad(
            N,
            Level::Fail,
            format!("cannot create: {}", fail.join(", ")),
            fixes.join("; "),
        )];
    }
    vec![ok(N, "mnt, pid, net, uts, ipc, cgroup, user")]
}

/// The name of `uid` in passwd text, or the uid of user `name`.
fn passwd_lookup(text: &str, uid: Option<u32>, name: Option<&str>) -> Option<(String, u32)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id = f.get(2)?.parse::<u32>().ok()?;
        (Some(id) == uid || Some(f[0]) == name).then(|| (f[0].to_string(), id))
    })
}

/// Where a run's user ids come from (see `container::ids`), from the
/// probe's /etc/subuid, /etc/subgid, /etc/passwd and PATH.
fn user_ids(p: &Probe) -> Check {
    use crate::container::ids;
    const N: &str = "user ids";
    let slots = list(p, "sys/devices/system/cpu/online")
        .and_then(|l| l.iter().max())
        .map_or(1, |m| m + 1);
    let passwd = p.read("etc/passwd").unwrap_or_default();
    let host = p.root == Path::new("/");
    let user_name = passwd_lookup(&passwd, Some(p.euid), None)
        .map(|(n, _)| n)
        .or_else(|| {
            host.then(|| nix::unistd::User::from_uid(p.euid.into()).ok().flatten())
                .flatten()
                .map(|u| u.name)
        });
    let packrun_uid = passwd_lookup(&passwd, None, Some("packrun"))
        .map(|(_, id)| id)
        .or_else(|| {
            host.then(|| nix::unistd::User::from_name("packrun").ok().flatten())
                .flatten()
                .map(|u| u.uid.as_raw())
        });
    let on_path = |name: &str| {
        std::env::split_paths(&p.path_env)
            .filter(|d| d.is_absolute())
            .any(|d| p.path(&d.to_string_lossy()).join(name).is_file())
    };
    let probe = ids::Probe {
        euid: p.euid,
        egid: p.egid,
        user_name: user_name.clone(),
        packrun_uid,
        subuid: p.read("etc/subuid").unwrap_or_default(),
        subgid: p.read("etc/subgid").unwrap_or_default(),
        helpers: on_path("newuidmap") && on_path("newgidmap"),
        slots,
    };
    let source = ids::IdSource::detect(&probe);
    if !matches!(source, ids::IdSource::Own { .. }) {
        return ok(N, source.describe());
    }
    let user = user_name.unwrap_or_else(|| p.euid.to_string());
    let mut fixes = Vec::new();
    if !probe.helpers {
        fixes.push("apt-get install uidmap".to_string());
    }
    let has_range = ids::parse_subid(&probe.subuid, &user, p.euid).is_some()
        && ids::parse_subid(&probe.subgid, &user, p.egid).is_some();
    if has_range && probe.helpers {
        // Present, but too small for two ids per CPU.
        fixes.push(format!(
            "give {user} at least {} ids in /etc/subuid and /etc/subgid, e.g. the line {user}:100000:65536 in each",
            2 * slots
        ));
    } else if !has_range {
        fixes.push(format!(
            "add the line {user}:100000:65536 to /etc/subuid and to /etc/subgid"
        ));
    }
    bad(
        N,
        Level::Warn,
        format!("{}: a job sees no other user or group", source.describe()),
        format!("as root: {}", fixes.join(", and ")),
    )
}

fn seccomp(p: &Probe) -> Check {
    const N: &str = "seccomp";
    let status = p.read("proc/self/status").unwrap_or_default();
    let Some(mode) = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_string()))
    else {
        return bad(
            N,
            Level::Fail,
            "no Seccomp field in /proc/self/status",
            "a kernel with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y",
        );
    };
    match p.read("proc/sys/kernel/seccomp/actions_avail") {
        Some(a) if a.split_whitespace().any(|x| x == "errno") => ok(
            N,
            format!(
                "filters available{}",
                if mode == "2" {
                    " (packrun itself runs under a filter; they stack)"
                } else {
                    ""
                }
            ),
        ),
        _ => bad(
            N,
            Level::Fail,
            "seccomp filters unavailable (no errno action in /proc/sys/kernel/seccomp/actions_avail)",
            "a kernel with CONFIG_SECCOMP_FILTER=y",
        ),
    }
}

fn list(p: &Probe, rel: &str) -> Option<CpuList> {
    CpuList::parse(p.read(rel)?.trim()).ok()
}

fn numa(p: &Probe) -> Check {
    match list(p, "sys/devices/system/node/online") {
        Some(n) if n.len() > 1 => ok(
            "NUMA",
            format!(
                "{} nodes ({n}); runs get memory on their CPUs' node",
                n.len()
            ),
        ),
        Some(n) => ok("NUMA", format!("one node ({n})")),
        None => ok(
            "NUMA",
            "no NUMA information (kernel without CONFIG_NUMA): one memory node",
        ),
    }
}

/// The GPUs, whether their driver's nodes exist, and how a run's GPUs are
/// kept its own here.
fn gpus(p: &Probe, mounts: &Mounts) -> Check {
    const N: &str = "GPUs";
    let found = match crate::gpus::read(&p.root, &|_| None, true) {
        Ok(g) => g,
        Err(e) => {
            return bad(
                N,
                Level::Warn,
                format!("cannot read the PCI devices: {e}"),
                "mount sysfs: mount -t sysfs sysfs /sys",
            )
        }
    };
    if found.is_empty() {
        return ok(
            N,
            "none (no PCI display or 3D controller of NVIDIA, AMD or Intel); runs cannot ask for gpus",
        );
    }
    let mut missing: Vec<String> = Vec::new();
    let mut vendors: Vec<crate::gpus::Vendor> = Vec::new();
    for g in &found {
        if g.devices.is_empty() {
            missing.push(format!("{} has no device node", g.bus_id));
        }
        for d in &g.devices {
            if !p.path(&d.to_string_lossy()).exists() {
                missing.push(d.display().to_string());
            }
        }
        if !vendors.contains(&g.vendor) {
            vendors.push(g.vendor);
        }
    }
    for v in &vendors {
        for d in v.shared_nodes() {
            // nvidia-uvm-tools comes and goes with profilers; the others are needed.
            if !p.path(d).exists() && !d.ends_with("-tools") {
                missing.push(d.to_string());
            }
        }
    }
    let list: Vec<String> = found
        .iter()
        .map(|g| format!("{} {} (node {})", g.vendor.name(), g.bus_id, g.node))
        .collect();
    let enforced = if mounts
        .v1
        .iter()
        .any(|(_, c)| c.iter().any(|c| c == "devices"))
    {
        "the devices cgroup (v1) lets each run open only its own"
    } else if p.euid == 0 {
        "a BPF device program on each run's cgroup (v2) lets each run open only its own"
    } else {
        "runs see only their own GPUs' nodes, but without root on cgroup v2 no device program can stop a run that reaches another's node (docs/gpus.md)"
    };
    let detail = format!("{} found: {}; {enforced}", found.len(), list.join(", "));
    if missing.is_empty() {
        ok(N, detail)
    } else {
        bad(
            N,
            Level::Warn,
            format!("{detail}; missing: {}", missing.join(", ")),
            "load the GPU driver (NVIDIA: `nvidia-modprobe -u -c=0` or `nvidia-smi` once as root; AMD: modprobe amdgpu; Intel: modprobe i915 or xe)",
        )
    }
}

/// Whether runs' GPU memory and utilization can be measured (said only
/// where there are GPUs).
fn gpu_usage(p: &Probe) -> Option<Check> {
    const N: &str = "GPU usage";
    let found = crate::gpus::read(&p.root, &|_| None, true).ok()?;
    if found.is_empty() {
        return None;
    }
    if !found
        .iter()
        .any(|g| g.vendor == crate::gpus::Vendor::Nvidia)
    {
        return Some(ok(
            N,
            "not measured for AMD and Intel GPUs: gpu_memory_peak_bytes and gpu_utilization stay empty",
        ));
    }
    Some(match crate::nvml::Nvml::load() {
        Ok(_) => ok(
            N,
            "NVIDIA's management library loads: each run's gpu_memory_peak_bytes and gpu_utilization are sampled",
        ),
        Err(e) => bad(
            N,
            Level::Warn,
            format!("{e}: gpu_memory_peak_bytes and gpu_utilization stay empty"),
            "install NVIDIA's driver with its management library (Debian: apt-get install libnvidia-ml1; other systems: the driver package that holds libnvidia-ml.so.1)",
        ),
    })
}

fn affinity(p: &Probe) -> Check {
    const N: &str = "CPUs";
    let Some(online) = list(p, "sys/devices/system/cpu/online") else {
        return bad(
            N,
            Level::Fail,
            "cannot read /sys/devices/system/cpu/online",
            "mount sysfs: mount -t sysfs sysfs /sys",
        );
    };
    match &p.affinity {
        Some(a) if !online.is_subset(a) => bad(
            N,
            Level::Warn,
            format!(
                "packrun may use CPUs {} of the online {online} (a cpuset or taskset limits it); runs go only there",
                a.intersection(&online)
            ),
            format!("start packrun outside that limit: taskset -c {online} packrun run JOBFILE, or widen the cpuset of its cgroup (systemctl set-property <unit> AllowedCPUs={online})"),
        ),
        _ => ok(N, format!("{} online ({online}), all usable by packrun", online.len())),
    }
}

fn smt(p: &Probe) -> Check {
    const N: &str = "SMT";
    match p
        .read("sys/devices/system/cpu/smt/control")
        .map(|s| s.trim().to_string())
        .as_deref()
    {
        Some("on") => bad(
            N,
            Level::Warn,
            "on: two runs on sibling threads of one core slow each other down",
            "echo off | tee /sys/devices/system/cpu/smt/control (or give runs whole cores)",
        ),
        Some(s) => ok(N, s.to_string()),
        None => ok(N, "unknown (no /sys/devices/system/cpu/smt/control)"),
    }
}

fn governor(p: &Probe) -> Check {
    const N: &str = "CPU frequency";
    let g = crate::machine::read(&p.root).governor;
    match g.as_str() {
        "none" => ok(N, "no cpufreq driver (fixed frequency or a VM)"),
        "performance" => ok(N, "governor performance on every CPU"),
        other => bad(
            N,
            Level::Warn,
            format!("governor {other}: clock speed varies with load, so times vary"),
            "echo performance | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
        ),
    }
}

fn turbo(p: &Probe) -> Check {
    const N: &str = "turbo";
    match crate::machine::read(&p.root).turbo.as_str() {
        "on" => bad(
            N,
            Level::Warn,
            "turbo on: a CPU's clock depends on how many others are busy, so parallel runs slow each other",
            "echo 1 > /sys/devices/system/cpu/intel_pstate/no_turbo (intel_pstate), or echo 0 > /sys/devices/system/cpu/cpufreq/boost",
        ),
        "off" => ok(N, "off"),
        _ => ok(N, "no turbo control (a VM, or a driver without one)"),
    }
}

fn aslr(p: &Probe) -> Check {
    const N: &str = "ASLR";
    match crate::machine::read(&p.root).aslr.as_str() {
        "full" | "partial" => ok(
            N,
            "on: each run's memory layout differs, a source of run-to-run variance (sysctl -w kernel.randomize_va_space=0 turns it off for the machine)",
        ),
        "off" => ok(N, "off: memory layouts repeat from run to run"),
        _ => ok(N, "unknown"),
    }
}

fn isolation(p: &Probe) -> Check {
    const N: &str = "isolated CPUs";
    let m = crate::machine::read(&p.root);
    match (m.isolated_cpus.is_empty(), m.nohz_full_cpus.is_empty()) {
        (true, true) => ok(
            N,
            "none (isolcpus and nohz_full unset): the kernel may run other work on a run's CPUs",
        ),
        _ => ok(
            N,
            format!(
                "isolcpus {}, nohz_full {}",
                if m.isolated_cpus.is_empty() {
                    "-"
                } else {
                    &m.isolated_cpus
                },
                if m.nohz_full_cpus.is_empty() {
                    "-"
                } else {
                    &m.nohz_full_cpus
                }
            ),
        ),
    }
}

fn swap(p: &Probe) -> Check {
    const N: &str = "swap";
    let swaps = p.read("proc/swaps").unwrap_or_default();
    let n = swaps
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    if n == 0 {
        ok(N, "off")
    } else {
        bad(
            N,
            Level::Warn,
            format!("{n} swap device(s) on: a run at its memory limit may swap (slow) instead of being OOM-killed where the kernel cannot turn swap off per cgroup"),
            "swapoff -a",
        )
    }
}

/// How a run's socket buffers count against its memory limit here.
fn socket_memory(p: &Probe, mounts: &Mounts) -> Check {
    const N: &str = "socket memory";
    let v1_memory = mounts
        .v1
        .iter()
        .find(|(_, c)| c.iter().any(|c| c == "memory"));
    match v1_memory {
        None => ok(
            N,
            "cgroup v2: socket buffers are in each run's memory.current, under its limit and in its peak",
        ),
        Some((point, _)) if p.path(point).join("memory.kmem.tcp.limit_in_bytes").exists() => ok(
            N,
            "cgroup v1: each run's memory.kmem.tcp limit is its memory limit (TCP and UDP receive buffers count there, not in memory.usage_in_bytes); its peak adds their maximum, so a run holds at most its limit in pages and its limit in socket buffers",
        ),
        Some(_) => bad(
            N,
            Level::Warn,
            "cgroup v1 without memory.kmem.tcp: socket buffers a run holds count against no limit and are not in its peak",
            "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2), or a kernel with CONFIG_MEMCG_KMEM",
        ),
    }
}

/// Whether a lock a run takes on a host file stays in the run: its root
/// is read-only overlays of the host's mounts (as root, with overlayfs).
fn locks(p: &Probe) -> Check {
    const N: &str = "host file locks";
    let overlay = p.read("proc/filesystems").is_some_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    });
    match (p.euid == 0, overlay) {
        (true, true) => ok(
            N,
            "a run on the host's tree sees it through read-only overlays: its flock and fcntl locks are on the overlay's inodes, never the host's",
        ),
        (true, false) => bad(
            N,
            Level::Warn,
            "no overlay file system: runs get the host's tree bound as it is, and a run's flock or fcntl read lock on a world-readable host file blocks the host's programs (apt's on /var/cache/debconf/config.dat)",
            "modprobe overlay",
        ),
        (false, _) => bad(
            N,
            Level::Warn,
            "rootless: runs get the host's tree bound as it is (only root can copy the host's mounts to overlay them), so a run's locks on host files are the user's own and reach the host's inodes, as the user's own programs' do",
            "run packrun as root for runs whose locks stay their own",
        ),
    }
}

/// Claims of other live packrun processes of this user (in
/// /run/packrun/cpus for root; see `cpulock::runtime_dir`):
/// `<pid> <start ticks> <cpu list>` lines.
fn claims(p: &Probe) -> Check {
    const N: &str = "other packruns";
    let file = crate::run::cpulock::runtime_dir(p.euid, p.runtime_dir.as_deref()).join("cpus");
    let text = p.read(&file.to_string_lossy()).unwrap_or_default();
    let mut live = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [pid, ticks, cpus] = f[..] else { continue };
        let (Ok(pid), Ok(ticks)) = (pid.parse::<i32>(), ticks.parse::<u64>()) else {
            continue;
        };
        if pid == p.pid {
            continue;
        }
        let alive = p
            .read(&format!("proc/{pid}/stat"))
            .and_then(|s| crate::run::cpulock::parse_start_ticks(&s))
            == Some(ticks);
        if alive {
            live.push((pid, cpus.to_string()));
        }
    }
    if live.is_empty() {
        return ok(N, "no CPUs held by another packrun");
    }
    bad(
        N,
        Level::Warn,
        live.iter()
            .map(|(pid, c)| format!("packrun {pid} holds CPUs {c}"))
            .collect::<Vec<_>>()
            .join("; ")
            + "; a new batch uses only the other CPUs",
        format!(
            "wait for it to end, or stop it: kill {}",
            live.iter()
                .map(|(p, _)| p.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
}

/// The free space under the folder a batch started here writes its results
/// to (`results/`, or where it would be made), and each run's default
/// disk budget there (see `results::disk_share`).
fn results_disk(p: &Probe) -> Check {
    let dir = crate::results::default_dir("x")
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cwd = std::env::current_dir().unwrap_or_default();
    let at = cwd.join(&dir);
    // The folder itself, else the nearest one that exists (it is made there).
    let existing = at
        .ancestors()
        .map(|a| p.path(&a.to_string_lossy()))
        .find(|a| a.is_dir())
        .unwrap_or_else(|| p.root.clone());
    let free = crate::results::free_space(&existing);
    let slots = p.affinity.as_ref().map_or(1, |a| a.len().max(1));
    disk_line(&at, free.map_err(|e| crate::fsx::chain(&e)), slots)
}

/// The `results disk` line for `free` bytes free under `dir` and at most
/// `slots` runs at once.
fn disk_line(dir: &Path, free: Result<Option<u64>, String>, slots: usize) -> Check {
    const N: &str = "results disk";
    let human = crate::report::human_bytes;
    let free = match free {
        Ok(Some(f)) => f,
        Ok(None) => {
            return ok(
                N,
                format!(
                    "the file system under {} reports no size (ramfs): runs get no default disk budget there",
                    dir.display()
                ),
            )
        }
        Err(e) => {
            return bad(
                N,
                Level::Warn,
                format!("free space under {} unknown: {e}", dir.display()),
                "give a folder packrun can write with --out DIR",
            )
        }
    };
    // For a batch of one run a slot; more runs keep more for their rows.
    let reserve = crate::results::reserve_for(slots);
    let Some(share) = crate::results::disk_share(free, reserve + (1 << 20), slots) else {
        return bad(
            N,
            Level::Fail,
            format!(
                "{} free under {}: packrun keeps {} (2 MiB + 2 KiB a run) there for its records and needs 1 MiB more",
                human(free),
                dir.display(),
                human(reserve)
            ),
            "free space there, or give another folder with --out DIR",
        );
    };
    let detail = format!(
        "{} free under {}; packrun keeps 2 MiB + 2 KiB a run for its records; each of up to {slots} runs at once may write {} (writable dirs and logs) unless its job sets resources.disk",
        human(free),
        dir.display(),
        human(share)
    );
    if share < 64 << 20 {
        return bad(
            N,
            Level::Warn,
            detail + ": little room per run",
            "free space there, or give another folder with --out DIR",
        );
    }
    ok(N, detail)
}

/// The checks as lines for the terminal, ending with the verdict. No colour.
pub fn render(checks: &[Check]) -> String {
    let w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for c in checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(s, "{tag}  {:<w$}  {}", c.name, c.detail);
        if let Some(f) = &c.fix {
            let _ = writeln!(s, "      {:<w$}  fix: {f}", "");
        }
    }
    let _ = writeln!(
        s,
        "{}",
        match summary(checks) {
            Ok(()) => format!(
                "verdict: runs can start ({} warning(s))",
                checks.iter().filter(|c| c.level == Level::Warn).count()
            ),
            Err(e) => format!("verdict: {e}"),
        }
    );
    s
}

/// One line: Ok when no check fails, else the failures and their fixes.
pub fn summary(checks: &[Check]) -> Result<(), String> {
    let fails: Vec<&Check> = checks.iter().filter(|c| c.level == Level::Fail).collect();
    if fails.is_empty() {
        return Ok(());
    }
    Err(format!(
        "runs cannot start: {} (details: packrun doctor)",
        fails
            .iter()
            .map(|c| format!(
                "{}: {} — fix: {}",
                c.name,
                c.detail,
                c.fix.as_deref().unwrap_or("?")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// The doctor's one-line verdict for this machine.
pub fn verdict() -> Result<(), String> {
    summary(&checks(&Probe::host()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_check_lists_what_can_be_counted_and_groups_the_rest_by_why() {
        use crate::counters::{Counter, Source};
        let here = |c: Counter| match c.source() {
            Source::Software => None,
            Source::Hardware => Some("this machine's kernel exposes no hardware counters".into()),
            Source::Energy => Some("no RAPL zones".to_string()),
        };
        let c = counters_from(&here);
        assert_eq!(c.level, Level::Ok);
        assert_eq!(
            c.detail,
            "task-clock, context-switches, cpu-migrations, page-faults, major-faults, minor-faults; not instructions, cycles, branches, branch-misses, cache-references, cache-misses (this machine's kernel exposes no hardware counters); not energy-pkg, energy-dram (no RAPL zones)"
        );
        let c = counters_from(&|_| Some("kernel.perf_event_paranoid is 3".into()));
        assert_eq!(c.level, Level::Warn);
        assert!(c.detail.starts_with("none can be counted; not task-clock,"));
        assert!(c.fix.unwrap().contains("perf_event_paranoid=1"));
    }

    const V2_MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const V1_MOUNTINFO: &str = "\
31 25 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw,nsdelegate
34 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
35 25 0:31 / /sys/fs/cgroup/cpuset rw,nosuid shared:10 - cgroup cgroup rw,cpuset
36 25 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory
37 25 0:33 / /sys/fs/cgroup/pids rw,nosuid shared:12 - cgroup cgroup rw,pids
38 25 0:34 / /sys/fs/cgroup/systemd rw,nosuid shared:13 - cgroup cgroup rw,xattr,name=systemd
";

    /// A fake root with a healthy v2 machine; tests then break one thing.
    struct Tree(tempfile::TempDir);

    impl Tree {
        fn healthy() -> Tree {
            let t = Tree(tempfile::tempdir().unwrap());
            t.put("proc/self/mountinfo", V2_MOUNTINFO);
            t.put(
                "sys/fs/cgroup/cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            );
            t.put(
                "proc/cgroups",
                "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t80\t1\nmemory\t0\t80\t1\n",
            );
            for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup", "user"] {
                t.put(&format!("proc/self/ns/{ns}"), "");
                t.put(&format!("proc/sys/user/max_{ns}_namespaces"), "63371\n");
            }
            t.put(
                "proc/self/status",
                "Name:\tpackrun\nSeccomp:\t0\nSeccomp_filters:\t0\n",
            );
            t.put(
                "proc/sys/kernel/seccomp/actions_avail",
                "kill_process kill_thread trap errno user_notif trace log allow\n",
            );
            t.put("sys/devices/system/node/online", "0-1\n");
            t.put("sys/devices/system/cpu/online", "0-7\n");
            t.put("sys/devices/system/cpu/smt/control", "off\n");
            t.put("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
            t.put(
                "proc/filesystems",
                "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n",
            );
            t
        }
        fn put(&self, rel: &str, text: &str) {
            let p = self.0.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        fn probe(&self) -> Probe {
            Probe {
                root: self.0.path().to_path_buf(),
                euid: 0,
                egid: 0,
                groups: Vec::new(),
                pid: 4242,
                affinity: Some(CpuList::parse("0-7").unwrap()),
                path_env: "/usr/local/bin:/usr/bin:/bin".into(),
                runtime_dir: None,
            }
        }
        /// A probe of a user in the cgroup `SCOPE`; the user owns that
        /// cgroup when `delegated` (as root the tree is given to uid 4242),
        /// else is a uid other than its owner.
        fn user_in_scope(&self, delegated: bool) -> Probe {
            let dir = self.0.path().join("sys/fs/cgroup").join(SCOPE);
            for f in ["cgroup.procs", "cgroup.subtree_control"] {
                self.put(&format!("sys/fs/cgroup/{SCOPE}/{f}"), "");
            }
            self.put(
                &format!("sys/fs/cgroup/{SCOPE}/cgroup.controllers"),
                "cpuset cpu io memory pids\n",
            );
            self.put("proc/self/cgroup", &format!("0::/{SCOPE}\n"));
            let me = nix::unistd::getuid().as_raw();
            let owner = if me == 0 {
                for p in ["", "cgroup.procs", "cgroup.subtree_control"] {
                    std::os::unix::fs::chown(dir.join(p), Some(4242), None).unwrap();
                }
                4242
            } else {
                me
            };
            let mut p = self.probe();
            p.euid = if delegated { owner } else { owner + 1 };
            p.egid = p.euid;
            p
        }
    }

    const SCOPE: &str = "user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope";

    fn find<'a>(c: &'a [Check], name: &str) -> &'a Check {
        c.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn gpus_are_listed_and_a_missing_driver_node_warns() {
        let t = Tree::healthy();
        let gpu = "sys/bus/pci/devices/0000:3b:00.0";
        t.put(&format!("{gpu}/class"), "0x030200\n");
        t.put(&format!("{gpu}/vendor"), "0x10de\n");
        t.put(&format!("{gpu}/numa_node"), "1\n");
        t.put(
            "proc/driver/nvidia/gpus/0000:3b:00.0/information",
            "Device Minor: \t 0\n",
        );
        t.put("sys/bus/pci/devices/0000:18:00.0/class", "0x020000\n");
        for d in ["dev/nvidia0", "dev/nvidiactl", "dev/nvidia-uvm"] {
            t.put(d, "");
        }
        let c = checks(&t.probe());
        let g = find(&c, "GPUs");
        assert_eq!(g.level, Level::Ok, "{g:?}");
        assert!(
            g.detail
                .starts_with("1 found: nvidia 0000:3b:00.0 (node 1); a BPF device program"),
            "{g:?}"
        );
        std::fs::remove_file(t.0.path().join("dev/nvidia-uvm")).unwrap();
        let c = checks(&t.probe());
        let g = find(&c, "GPUs");
        assert_eq!(g.level, Level::Warn);
        assert!(g.detail.ends_with("missing: /dev/nvidia-uvm"), "{g:?}");
        assert!(g.fix.as_deref().unwrap().contains("nvidia-modprobe"));
        if !Path::new("/proc/driver/nvidia").exists() {
            // This machine has no NVIDIA driver, so no management library.
            let u = find(&c, "GPU usage");
            assert_eq!(u.level, Level::Warn, "{u:?}");
            assert!(
                u.detail.contains("libnvidia-ml.so.1") && u.detail.ends_with("stay empty"),
                "{u:?}"
            );
        }
    }

    #[test]
    fn a_healthy_v2_machine_passes_every_check() {
        let t = Tree::healthy();
        let c = checks(&t.probe());
        let not_ok: Vec<&Check> = c.iter().filter(|c| c.level != Level::Ok).collect();
        assert!(not_ok.is_empty(), "{not_ok:#?}");
        assert!(summary(&c).is_ok());
        assert!(find(&c, "cgroup controllers")
            .detail
            .contains("cpu, cpuset, memory, pids, io"));
    }

    #[test]
    fn mountinfo_tells_v1_controllers_from_the_empty_unified_mount() {
        let m = parse_mountinfo(V1_MOUNTINFO);
        assert_eq!(m.v2.as_deref(), Some("/sys/fs/cgroup/unified"));
        assert_eq!(
            m.v1[0],
            (
                "/sys/fs/cgroup/cpu,cpuacct".into(),
                vec!["cpu".into(), "cpuacct".into()]
            )
        );
        assert_eq!(
            m.v1.len(),
            4,
            "the named systemd hierarchy has no controllers"
        );
    }

    #[test]
    fn cgroup_v1_warns_and_names_the_kernel_option_for_v2() {
        let t = Tree::healthy();
        t.put("proc/self/mountinfo", V1_MOUNTINFO);
        std::fs::remove_file(t.0.path().join("sys/fs/cgroup/cgroup.controllers")).unwrap();
        let c = checks(&t.probe());
        let v = find(&c, "cgroup version");
        assert_eq!(v.level, Level::Warn);
        assert!(v
            .fix
            .as_ref()
            .unwrap()
            .contains("systemd.unified_cgroup_hierarchy=1"));
        // No blkio hierarchy: a warning, not a failure.
        assert_eq!(find(&c, "cgroup controllers").level, Level::Warn);
        assert!(summary(&c).is_ok());
    }

    #[test]
    fn socket_memory_says_how_it_counts_on_each_cgroup_version() {
        let t = Tree::healthy();
        let v2 = checks(&t.probe());
        assert!(find(&v2, "socket memory").detail.contains("memory.current"));
        t.put("proc/self/mountinfo", V1_MOUNTINFO);
        let c = checks(&t.probe());
        let s = find(&c, "socket memory");
        assert_eq!(s.level, Level::Warn, "{s:?}");
        t.put(
            "sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes",
            "9223372036854771712\n",
        );
        let c = checks(&t.probe());
        let s = find(&c, "socket memory");
        assert_eq!(s.level, Level::Ok, "{s:?}");
        assert!(s.detail.contains("memory.kmem.tcp"), "{s:?}");
    }

    #[test]
    fn locks_stay_in_the_run_only_as_root_with_overlayfs() {
        let t = Tree::healthy();
        let mut p = t.probe();
        assert_eq!(find(&checks(&p), "host file locks").level, Level::Ok);
        p.euid = 1000;
        let l = checks(&p);
        let l = find(&l, "host file locks");
        assert_eq!(l.level, Level::Warn);
        assert!(l.detail.contains("rootless"), "{l:?}");
        t.put("proc/filesystems", "nodev\ttmpfs\n\text4\n");
        let l = checks(&t.probe());
        let l = find(&l, "host file locks");
        assert_eq!(l.level, Level::Warn);
        assert_eq!(l.fix.as_deref(), Some("modprobe overlay"));
    }

    #[test]
    fn a_disabled_memory_controller_fails_with_the_kernel_option() {
        let t = Tree::healthy();
        t.put("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n");
        t.put(
            "proc/cgroups",
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t1\t0\n",
        );
        let c = checks(&t.probe());
        let k = find(&c, "cgroup controllers");
        assert_eq!(k.level, Level::Fail);
        assert!(k.detail.contains("missing: memory"), "{}", k.detail);
        assert_eq!(
            k.fix.as_deref(),
            Some("kernel command line cgroup_enable=memory cgroup_memory=1")
        );
        assert!(summary(&c).unwrap_err().contains("cgroup_enable=memory"));
    }

    #[test]
    fn a_zero_namespace_sysctl_fails_with_the_sysctl_that_fixes_it() {
        let t = Tree::healthy();
        t.put("proc/sys/user/max_pid_namespaces", "0\n");
        let c = checks(&t.probe());
        let n = find(&c, "namespaces");
        assert_eq!(n.level, Level::Fail);
        assert_eq!(
            n.fix.as_deref(),
            Some("sysctl -w user.max_pid_namespaces=15000")
        );
    }

    #[test]
    fn user_namespaces_off_fail_as_every_run_needs_one() {
        let t = Tree::healthy();
        t.put("proc/sys/user/max_user_namespaces", "0\n");
        let n = find(&checks(&t.probe()), "namespaces").clone();
        assert_eq!(n.level, Level::Fail);
        assert_eq!(
            n.detail,
            "cannot create: user (user.max_user_namespaces is 0)"
        );
        assert_eq!(
            n.fix.as_deref(),
            Some("sysctl -w user.max_user_namespaces=15000")
        );
    }

    #[test]
    fn debian_and_ubuntu_knobs_fail_only_without_root_each_with_its_sysctl() {
        let t = Tree::healthy();
        t.put("proc/sys/kernel/unprivileged_userns_clone", "0\n");
        t.put(
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        );
        assert_eq!(find(&checks(&t.probe()), "namespaces").level, Level::Ok);
        let mut p = t.probe();
        p.euid = 1000;
        let n = find(&checks(&p), "namespaces").clone();
        assert_eq!(n.level, Level::Fail);
        assert!(
            n.detail.contains("kernel.unprivileged_userns_clone is 0")
                && n.detail
                    .contains("kernel.apparmor_restrict_unprivileged_userns is 1"),
            "{}",
            n.detail
        );
        assert_eq!(
            n.fix.as_deref(),
            Some("sysctl -w kernel.unprivileged_userns_clone=1; sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
        );
        t.put("proc/sys/kernel/unprivileged_userns_clone", "1\n");
        t.put(
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "0\n",
        );
        assert_eq!(find(&checks(&p), "namespaces").level, Level::Ok);
    }

    #[test]
    fn no_seccomp_filter_support_fails() {
        let t = Tree::healthy();
        std::fs::remove_file(t.0.path().join("proc/sys/kernel/seccomp/actions_avail")).unwrap();
        assert_eq!(find(&checks(&t.probe()), "seccomp").level, Level::Fail);
    }

    #[test]
    fn not_root_outside_a_delegated_cgroup_fails_and_names_the_systemd_run_command() {
        let t = Tree::healthy();
        let p = t.user_in_scope(false);
        let c = checks(&p);
        let k = find(&c, "privileges");
        assert_eq!(k.level, Level::Fail);
        assert!(
            k.detail
                .contains(&format!("running as uid {} in cgroup ", p.euid))
                && k.detail.contains(SCOPE)
                && k.detail.contains("not delegated to you"),
            "{}",
            k.detail
        );
        assert_eq!(
            k.fix.as_deref(),
            Some("systemd-run --user --scope -p Delegate=yes packrun run FILE")
        );
        assert!(summary(&c).unwrap_err().contains("Delegate=yes"));
    }

    #[test]
    fn not_root_in_a_delegated_cgroup_v2_subtree_runs_rootless() {
        let t = Tree::healthy();
        let p = t.user_in_scope(true);
        let k = find(&checks(&p), "privileges").clone();
        assert_eq!(k.level, Level::Ok, "{k:?}");
        assert_eq!(
            k.detail,
            format!(
                "running as uid {} in a delegated cgroup v2 subtree: rootless",
                p.euid
            )
        );
    }

    #[test]
    fn a_delegated_cgroup_seen_from_the_supervisor_leaf_is_its_parent() {
        let t = Tree::healthy();
        let p = t.user_in_scope(true);
        // Another packrun moved this shell into the leaf, and that leaf
        // offers nothing: the parent is what is judged.
        t.put(
            &format!("sys/fs/cgroup/{SCOPE}/supervisor/cgroup.controllers"),
            "",
        );
        t.put("proc/self/cgroup", &format!("0::/{SCOPE}/supervisor\n"));
        assert_eq!(find(&checks(&p), "privileges").level, Level::Ok);
    }

    #[test]
    fn a_delegated_cgroup_without_cpuset_fails_and_names_the_user_manager_drop_in() {
        let t = Tree::healthy();
        let p = t.user_in_scope(true);
        // systemd's default for user managers: Delegate=pids memory cpu.
        t.put(
            &format!("sys/fs/cgroup/{SCOPE}/cgroup.controllers"),
            "cpu memory pids\n",
        );
        let k = find(&checks(&p), "privileges").clone();
        assert_eq!(k.level, Level::Fail);
        assert!(k.detail.contains("(missing: cpuset)"), "{}", k.detail);
        assert!(
            k.fix
                .as_deref()
                .unwrap()
                .contains("Delegate=cpu cpuset io memory pids"),
            "{:?}",
            k.fix
        );
    }

    #[test]
    fn not_root_on_cgroup_v1_fails_and_says_to_use_sudo() {
        let t = Tree::healthy();
        t.put("proc/self/mountinfo", V1_MOUNTINFO);
        let mut p = t.probe();
        p.euid = 1000;
        let k = find(&checks(&p), "privileges").clone();
        assert_eq!(k.level, Level::Fail);
        assert!(k.detail.contains("cgroup v1"), "{}", k.detail);
        assert_eq!(k.fix.as_deref(), Some("sudo packrun run FILE"));
    }

    fn facts(euid: u32, version: u8, owner: u32, writable: bool) -> Facts {
        Facts {
            euid,
            version,
            parent: "/sys/fs/cgroup/a.scope".into(),
            owner: Some(owner),
            writable,
            controllers: Some(REQUIRED.iter().map(|c| c.to_string()).collect()),
        }
    }

    #[test]
    fn root_may_always_and_a_user_only_in_a_v2_cgroup_it_owns_or_may_write() {
        let cmd = "packrun run 'my jobs.yaml'";
        assert_eq!(standing(&facts(0, 1, 0, false), cmd), Ok(Standing::Root));
        assert_eq!(
            standing(&facts(1000, 2, 1000, false), cmd),
            Ok(Standing::Delegated)
        );
        // A cgroup of root's whose cgroup.procs the user may write (a Slurm step).
        assert_eq!(
            standing(&facts(1000, 2, 0, true), cmd),
            Ok(Standing::Delegated)
        );
        let r = standing(&facts(1000, 2, 0, false), cmd).unwrap_err();
        assert_eq!(
            r.fix,
            "systemd-run --user --scope -p Delegate=yes packrun run 'my jobs.yaml'"
        );
        assert!(
            r.reason.contains("cgroup /sys/fs/cgroup/a.scope")
                && r.reason.contains("owned by uid 0")
                && r.reason
                    .contains("expected a cgroup v2 subtree delegated to uid 1000"),
            "{}",
            r.reason
        );
        let mut bare = facts(1000, 2, 1000, false);
        bare.controllers = Some(Vec::new());
        let r = standing(&bare, cmd).unwrap_err();
        assert!(
            r.reason
                .contains("offers no controllers; expected cpu, cpuset, memory, pids"),
            "{}",
            r.reason
        );
        let r = standing(&facts(1000, 1, 1000, true), cmd).unwrap_err();
        assert!(r.reason.contains("on cgroup v1"), "{}", r.reason);
        assert_eq!(r.fix, "sudo packrun run 'my jobs.yaml'");
    }

    #[test]
    fn writability_follows_the_owner_group_and_other_bits_for_the_given_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for f in ["cgroup.procs", "cgroup.subtree_control"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let set = |f: &str, mode: u32| {
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(mode))
                .unwrap()
        };
        let meta = std::fs::metadata(dir.path()).unwrap();
        let (owner, group) = (meta.uid(), meta.gid());
        let stranger = owner + 1;
        let of = |uid: u32, groups: &[u32]| Facts::of_dir(uid, groups, 2, dir.path().to_path_buf());
        set("cgroup.procs", 0o644);
        set("cgroup.subtree_control", 0o644);
        assert!(of(owner, &[]).writable);
        assert_eq!(of(owner, &[]).owner, Some(owner));
        assert!(!of(stranger, &[]).writable);
        set("cgroup.procs", 0o664);
        assert!(
            of(stranger, &[group]).writable,
            "group-writable cgroup.procs"
        );
        assert!(!of(stranger, &[]).writable);
        set("cgroup.subtree_control", 0o646);
        assert!(of(stranger, &[]).writable, "world-writable subtree_control");
        assert_eq!(of(stranger, &[]).controllers, None);
    }

    #[test]
    fn words_are_quoted_for_the_shell_only_where_needed() {
        let w = |v: &[&str]| shell_join(v.iter().map(|s| s.to_string()));
        assert_eq!(
            w(&["packrun", "run", "jobs/a-1.yaml"]),
            "packrun run jobs/a-1.yaml"
        );
        assert_eq!(w(&["x", "it's here", ""]), "x 'it'\\''s here' ''");
    }

    #[test]
    fn root_ids_come_from_the_default_range_split_by_the_online_cpus() {
        let t = Tree::healthy();
        let k = find(&checks(&t.probe()), "user ids").clone();
        assert_eq!(k.level, Level::Ok);
        // 8 CPUs online (0-7): 65,536 ids each.
        assert!(
            k.detail
                .starts_with("each run its own 65536 ids from 1610612736-")
                && k.detail.contains("packrun's default range"),
            "{}",
            k.detail
        );
        t.put(
            "etc/passwd",
            "root:x:0:0::/root:/bin/sh\npackrun:x:990:990::/:/bin/false\n",
        );
        t.put("etc/subuid", "packrun:200000:80000\n");
        t.put("etc/subgid", "990:300000:80000\n");
        let k = find(&checks(&t.probe()), "user ids").clone();
        assert!(
            k.detail
                .starts_with("each run its own 10000 ids from 200000-279999"),
            "{}",
            k.detail
        );
    }

    #[test]
    fn shaping_names_the_module_to_load_or_the_kernel_option_missing() {
        let c = shaping_check((Some(true), false), (Some(false), true));
        assert_eq!(c.level, Level::Warn);
        assert!(c.detail.contains("`delay` or `loss` are refused"), "{c:?}");
        assert_eq!(c.fix.as_deref(), Some("modprobe sch_netem"));
        let c = shaping_check((Some(true), false), (Some(false), false));
        assert!(c
            .fix
            .unwrap()
            .starts_with("a kernel built with CONFIG_NET_SCH_NETEM"));
        let c = shaping_check((Some(false), true), (Some(true), true));
        assert_eq!(c.fix.as_deref(), Some("modprobe sch_tbf"));
        let c = shaping_check((Some(true), false), (Some(true), false));
        assert_eq!((c.level, c.fix), (Level::Ok, None));
        let c = shaping_check((None, true), (None, false));
        assert_eq!(c.level, Level::Ok);
        assert!(c.detail.contains("not tried"), "{c:?}");
    }

    #[test]
    fn rootless_ids_use_the_subordinate_range_when_newuidmap_is_on_path() {
        let t = Tree::healthy();
        t.put("etc/passwd", "alice:x:1000:1000::/home/alice:/bin/sh\n");
        t.put("etc/subuid", "alice:100000:65536\n");
        t.put("etc/subgid", "alice:100000:65536\n");
        t.put("usr/bin/newuidmap", "");
        t.put("usr/bin/newgidmap", "");
        let mut p = t.probe();
        (p.euid, p.egid) = (1000, 1000);
        let k = find(&checks(&p), "user ids").clone();
        assert_eq!(k.level, Level::Ok, "{k:?}");
        assert!(
            k.detail.contains("your uid 1000") && k.detail.contains("100000:65536"),
            "{}",
            k.detail
        );
        // Not on this PATH: the user's own id alone.
        p.path_env = "/opt/bin".into();
        let k = find(&checks(&p), "user ids").clone();
        assert_eq!(k.level, Level::Warn);
        assert_eq!(k.fix.as_deref(), Some("as root: apt-get install uidmap"));
    }

    #[test]
    fn rootless_without_subordinate_ids_warns_and_names_the_package_and_the_line() {
        let t = Tree::healthy();
        t.put("etc/passwd", "alice:x:1000:1000::/home/alice:/bin/sh\n");
        let mut p = t.probe();
        (p.euid, p.egid) = (1000, 1000);
        let k = find(&checks(&p), "user ids").clone();
        assert_eq!(k.level, Level::Warn);
        assert!(k.detail.contains("your uid 1000 alone"), "{}", k.detail);
        assert_eq!(
            k.fix.as_deref(),
            Some("as root: apt-get install uidmap, and add the line alice:100000:65536 to /etc/subuid and to /etc/subgid")
        );
        t.put("usr/bin/newuidmap", "");
        t.put("usr/bin/newgidmap", "");
        t.put("etc/subuid", "alice:100000:8\n");
        t.put("etc/subgid", "alice:100000:8\n");
        let k = find(&checks(&p), "user ids").clone();
        assert_eq!(k.level, Level::Warn);
        assert!(
            k.fix
                .as_deref()
                .unwrap()
                .contains("give alice at least 16 ids"),
            "{:?}",
            k.fix
        );
    }

    #[test]
    fn turbo_on_warns_and_aslr_and_isolated_cpus_are_reported() {
        let t = Tree::healthy();
        t.put("sys/devices/system/cpu/intel_pstate/no_turbo", "0\n");
        t.put("proc/sys/kernel/randomize_va_space", "0\n");
        t.put("sys/devices/system/cpu/isolated", "2-3\n");
        let c = checks(&t.probe());
        assert_eq!(find(&c, "turbo").level, Level::Warn);
        assert!(find(&c, "turbo").fix.as_ref().unwrap().contains("no_turbo"));
        assert!(find(&c, "ASLR").detail.starts_with("off"));
        assert!(find(&c, "isolated CPUs").detail.contains("isolcpus 2-3"));
        t.put("sys/devices/system/cpu/intel_pstate/no_turbo", "1\n");
        assert_eq!(find(&checks(&t.probe()), "turbo").level, Level::Ok);
    }

    #[test]
    fn a_narrow_affinity_smt_a_powersave_governor_and_swap_each_warn() {
        let t = Tree::healthy();
        t.put("sys/devices/system/cpu/smt/control", "on\n");
        t.put(
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "powersave\n",
        );
        t.put(
            "proc/swaps",
            "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n",
        );
        let mut p = t.probe();
        p.affinity = Some(CpuList::parse("0-3").unwrap());
        let c = checks(&p);
        for (name, fix) in [
            ("CPUs", "taskset -c 0-7"),
            ("SMT", "echo off | tee /sys/devices/system/cpu/smt/control"),
            (
                "CPU frequency",
                "echo performance | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
            ),
            ("swap", "swapoff -a"),
        ] {
            let k = find(&c, name);
            assert_eq!(k.level, Level::Warn, "{name}");
            assert!(k.fix.as_ref().unwrap().contains(fix), "{name}: {:?}", k.fix);
        }
        assert!(find(&c, "CPUs")
            .detail
            .contains("CPUs 0-3 of the online 0-7"));
        assert!(summary(&c).is_ok(), "warnings do not stop runs");
    }

    #[test]
    fn live_claims_of_another_packrun_are_named_and_stale_ones_ignored() {
        let t = Tree::healthy();
        // pid 77 alive with start ticks 5000; pid 78 gone; 79 reused (other ticks).
        let stat = |ticks: u64| {
            format!("77 (packrun) S 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {ticks} 0 0\n")
        };
        t.put("proc/77/stat", &stat(5000));
        t.put("proc/79/stat", &stat(1));
        t.put("run/packrun/cpus", "77 5000 0-3\n78 6000 4\n79 7000 5-6\n");
        let k = find(&checks(&t.probe()), "other packruns").clone();
        assert_eq!(k.level, Level::Warn);
        assert_eq!(
            k.detail,
            "packrun 77 holds CPUs 0-3; a new batch uses only the other CPUs"
        );
        assert_eq!(
            k.fix.as_deref(),
            Some("wait for it to end, or stop it: kill 77")
        );
    }

    #[test]
    fn a_users_claims_are_read_from_their_runtime_dir_not_roots() {
        let t = Tree::healthy();
        let stat = "77 (packrun) S 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5000 0 0\n";
        t.put("proc/77/stat", stat);
        t.put("run/packrun/cpus", "77 5000 0-3\n");
        t.put("run/user/1000/packrun/cpus", "77 5000 4-5\n");
        let mut p = t.probe();
        p.euid = 1000;
        p.runtime_dir = Some("/run/user/1000".into());
        let k = find(&checks(&p), "other packruns").clone();
        assert!(
            k.detail.starts_with("packrun 77 holds CPUs 4-5"),
            "{}",
            k.detail
        );
        p.runtime_dir = None;
        t.put("tmp/packrun-1000/cpus", "77 5000 6\n");
        let k = find(&checks(&p), "other packruns").clone();
        assert!(
            k.detail.starts_with("packrun 77 holds CPUs 6;"),
            "{}",
            k.detail
        );
    }

    #[test]
    fn render_prints_each_fix_under_its_check_and_a_verdict() {
        let t = Tree::healthy();
        t.put(
            "proc/swaps",
            "Filename\tType\tSize\tUsed\tPriority\n/dev/sda2 partition 1 0 -2\n",
        );
        let text = render(&checks(&t.probe()));
        assert!(text.contains("WARN  swap"), "{text}");
        assert!(text.contains("fix: swapoff -a"), "{text}");
        assert!(
            text.ends_with("verdict: runs can start (1 warning(s))\n"),
            "{text}"
        );
    }

    #[test]
    fn the_results_disk_line_shows_the_free_space_and_each_runs_share_or_fails_without_room() {
        let dir = Path::new("/data/results");
        let c = disk_line(dir, Ok(Some(10 << 30)), 4);
        assert_eq!(c.level, Level::Ok);
        assert!(
            c.detail.starts_with("10.0 GiB free under /data/results;"),
            "{}",
            c.detail
        );
        assert!(
            c.detail
                .contains("each of up to 4 runs at once may write 2.5 GiB"),
            "{}",
            c.detail
        );
        let c = disk_line(dir, Ok(Some(100 << 20)), 4);
        assert_eq!(c.level, Level::Warn);
        assert!(c.detail.contains("may write 24.2 MiB"), "{}", c.detail);
        let c = disk_line(dir, Ok(Some(2 << 20)), 2);
        assert_eq!(c.level, Level::Fail);
        assert!(
            c.detail
                .starts_with("2.0 MiB free under /data/results: packrun keeps"),
            "{}",
            c.detail
        );
        assert!(c.fix.unwrap().contains("--out"));
        // ramfs reports no size: nothing to share out, and no refusal.
        let c = disk_line(dir, Ok(None), 2);
        assert_eq!(c.level, Level::Ok);
        assert!(c.detail.contains("reports no size"), "{}", c.detail);
    }

    #[test]
    fn shared_counters_show_what_each_of_the_machines_runs_gets() {
        let t = Tree::healthy();
        t.put("proc/sys/fs/aio-max-nr", "65536\n");
        t.put("proc/sys/kernel/pty/max", "4096\n");
        t.put("proc/sys/kernel/pty/reserve", "1024\n");
        t.put("proc/sys/user/max_inotify_instances", "128\n");
        t.put("proc/sys/kernel/pid_max", "8192\n");
        let mut p = t.probe(); // 8 CPUs: 8 runs at once
        let c = checks(&p);
        assert!(find(&c, "AIO contexts")
            .detail
            .contains("at most 7281 events"));
        assert!(find(&c, "ptys").detail.contains("at most 341"));
        let inotify = &find(&c, "inotify, fanotify").detail;
        assert!(
            inotify.contains("max_inotify_instances 14 of 128"),
            "{inotify}"
        );
        assert!(inotify.contains("host uid of its root"), "{inotify}");
        assert_eq!(find(&c, "pid_max").level, Level::Warn);
        p.euid = 1000;
        let c = checks(&p);
        assert!(find(&c, "per-user rlimits")
            .detail
            .contains("your uid 1000"));
        assert_eq!(find(&c, "pid_max").level, Level::Warn);
        t.put("proc/sys/kernel/pid_max", "4194304\n");
        assert_eq!(find(&checks(&p), "pid_max").level, Level::Ok);
    }
}
